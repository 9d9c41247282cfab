-- spawn: 100,000 coroutines x 10 sleep(0) on luv with a plain scheduler.
package.path = arg[0]:match("(.*/)") .. "../lib/?.lua;" .. package.path
local co = require "luvco"
co.run(function()
  local function worker() for _ = 1, 10 do co.sleep(0) end end
  local t0 = co.now()
  local fns = {}
  for i = 1, 100000 do fns[i] = worker end
  co.gather(fns)
  print(("metric seconds %.4f"):format(co.now() - t0))
end)
