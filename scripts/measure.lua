-- Course §13 "Mesure de performance": a wrapper that times any function
-- (the decorator of the chapter); three 1 s operations, one after the
-- other (~3 s) and then concurrently (~1 s).
local aio = require "luaio"

local function measured(name, fn)
  return function(...)
    local t0 = aio.now()
    -- the timing is printed however fn ends (the chapter's try/finally)
    local _ <close> = setmetatable({}, { __close = function()
      print(("⏱️ %s: %.3fs"):format(name, aio.now() - t0))
    end })
    return fn(...)
  end
end

local slow_operation = measured("slow_operation", function()
  aio.sleep(1)
  return "Done"
end)

local concurrent_operations = measured("concurrent_operations", function()
  return aio.gather { slow_operation, slow_operation, slow_operation }
end)

local sequential = measured("sequential", function()
  for _ = 1, 3 do slow_operation() end
end)

print("🧪 asyncio-style performance test")
print("\n1. Sequential:")
sequential()
print("\n2. Concurrent:")
concurrent_operations()
