-- sleepers: 100,000 coroutines sleeping 1 s at once, one luv timer each.
package.path = arg[0]:match("(.*/)") .. "../lib/?.lua;" .. package.path
local co = require "luvco"
co.run(function()
  local N = 100000
  collectgarbage() collectgarbage()
  local r0 = co.rss_kib()
  local t0 = co.now()
  local fns = {}
  for i = 1, N do fns[i] = function() co.sleep(1) end end
  local done = false
  co.spawn(function() co.gather(fns) done = true end)
  co.sleep(0.5)
  collectgarbage() collectgarbage()
  local r1 = co.rss_kib()
  while not done do co.sleep(0.001) end
  print(("metric bytes_per_task %.0f"):format((co.hwm_kib() - r0) * 1024 / N))
  print(("metric settled_bytes_per_task %.0f"):format((r1 - r0) * 1024 / N))
  print(("metric over_seconds %.4f"):format(co.now() - t0 - 1))
end)
