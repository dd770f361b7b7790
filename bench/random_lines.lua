-- wrk script: GET a random line number in [1, LINES] of PATH_PREFIX (env vars).
local lines = tonumber(os.getenv("LINES") or "1000")
local prefix = os.getenv("PATH_PREFIX") or "/lines/"
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
request = function()
  return wrk.format("GET", prefix .. math.random(1, lines))
end
