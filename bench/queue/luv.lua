-- queue: 1,000,000 items through a bounded coroutine queue(100) on luv, 1 producer, 4 consumers.
package.path = arg[0]:match("(.*/)") .. "../lib/?.lua;" .. package.path
local co = require "luvco"
co.run(function()
  local N, q = 1000000, co.Queue(100)
  local t0 = co.now()
  local consumers = {}
  for i = 1, 4 do consumers[i] = function() while q:get() do end end end
  local done = false
  co.spawn(function() co.gather(consumers) done = true end)
  for i = 1, N do q:put(i) end
  for _ = 1, 4 do q:put(false) end
  while not done do co.sleep(0) end
  print(("metric items_per_second %.0f"):format(N / (co.now() - t0)))
end)
