-- wrk script for bench/snapshots.py: PUT a different ~1 KB document each request.
counter = 0
wrk.method = "PUT"
local pad = string.rep("0123456789abcdef", 63)
request = function()
  counter = counter + 1
  return wrk.format("PUT", nil, nil, pad .. string.format("%012d\n", counter))
end
