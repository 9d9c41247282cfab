-- spawn: 100,000 coroutines x 10 sleep(0) on cqueues, gathered through a condition.
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local N = tonumber(arg[1]) or 100000
local cq = cqueues.new()
local function worker() for _ = 1, 10 do cqueues.sleep(0) end end
cq:wrap(function()
  local t0 = cqueues.monotime()
  local left, all_done = N, condition.new()
  for _ = 1, N do
    cq:wrap(function()
      worker()
      left = left - 1
      if left == 0 then all_done:signal() end
    end)
  end
  while left > 0 do all_done:wait() end
  print(("metric seconds %.4f"):format(cqueues.monotime() - t0))
end)
assert(cq:loop())
