-- wrk script of scripts/flood.sh: POST /api/purchase of item "flood", every request_id new
-- (thread number, a random run prefix and a counter), users spread over u0..u99999.
local threads = 0
local counter = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
init = function(args)
  math.randomseed(os.time() + tid)
  prefix = "wrk" .. tid .. "-" .. math.random(1, 1000000000) .. "-"
end
request = function()
  counter = counter + 1
  local body = '{"request_id":"' .. prefix .. counter .. '","user_id":"u' .. (counter % 100000) ..
    '","item_id":"flood","quantity":1}'
  return wrk.format("POST", "/api/purchase", {["Content-Type"] = "application/json"}, body)
end
