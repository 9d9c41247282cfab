-- Course §15 "Débogage et monitoring": debug mode on (a task that blocks
-- the loop is reported), and a monitor that times operations and prints a
-- report (count, total, mean, min/max) per operation name.
local aio = require "luaio"

aio.set_debug(true, { slow_callback = 0.1 })   -- loop.set_debug(True)
print("🐛 Debug mode on")

local function blocking_step()
  local t0 = os.clock()
  while os.clock() - t0 < 0.2 do end           -- holds the loop: debug mode warns on stderr
end
aio.spawn(blocking_step).name = "blocking-step"
aio.sleep(0.3)

local Monitor = {}
Monitor.__index = Monitor

function Monitor.new() return setmetatable({ stats = {}, order = {} }, Monitor) end

function Monitor:log(name, duration)
  if not self.stats[name] then self.stats[name] = {} self.order[#self.order + 1] = name end
  table.insert(self.stats[name], duration)
end

function Monitor:watch(name, fn, ...)
  local t0 = aio.now()
  local _ <close> = setmetatable({}, { __close = function() self:log(name, aio.now() - t0) end })
  return fn(...)
end

function Monitor:report()
  print("📊 ASYNC PERFORMANCE REPORT")
  print(("-"):rep(40))
  for _, name in ipairs(self.order) do
    local d = self.stats[name]
    local total, min, max = 0, math.huge, 0
    for _, x in ipairs(d) do total, min, max = total + x, math.min(min, x), math.max(max, x) end
    print(name .. ":")
    print(("  Runs: %d"):format(#d))
    print(("  Total time: %.3fs"):format(total))
    print(("  Mean: %.3fs"):format(total / #d))
    print(("  Min/Max: %.3fs / %.3fs"):format(min, max))
    print()
  end
end

local m = Monitor.new()
m:watch("db_query", aio.sleep, 0.1)
m:watch("api_call", aio.sleep, 0.2)
m:watch("db_query", aio.sleep, 0.15)
m:watch("file_read", aio.sleep, 0.05)
m:report()
