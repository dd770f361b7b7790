-- wrk script for bench/snapshots.py: PUT a different ~1 KB document each request
-- (each wrk thread numbers its own, so several threads never send the same body).
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

counter = 0
local pad = string.rep("0123456789abcdef", 63)
request = function()
  counter = counter + 1
  return wrk.format("PUT", nil, nil, pad .. string.format("%04d-%012d\n", tid or 0, counter))
end
