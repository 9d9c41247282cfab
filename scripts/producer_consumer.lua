-- Course §12 "Producer-Consumer": a bounded Queue(5), two producers, two
-- consumers that wait with a timeout, task_done, and a clean stop.
local aio = require "luaio"
math.randomseed(tonumber(os.getenv("LUAIO_SEED")) or os.time())

local PC = {}
PC.__index = PC

function PC.new(size)
  return setmetatable({ queue = aio.Queue(size), active = true, consumed = {} }, PC)
end

function PC:producer(name, n)
  for i = 1, n do
    if not self.active then break end
    local item = ("%s_item_%d"):format(name, i)
    aio.sleep(0.1 + math.random() * 0.4)
    self.queue:put(item)                       -- waits while the queue is full
    print(("📦 %s produced: %s"):format(name, item))
  end
  print(("✅ %s finished"):format(name))
end

function PC:consumer(name)
  while self.active do
    -- `await asyncio.wait_for(queue.get(), timeout=2.0)`
    local ok, item = pcall(aio.timeout, 2, self.queue.get, self.queue)
    if ok then
      print(("🔄 %s handles: %s"):format(name, item))
      aio.sleep(0.2 + math.random() * 0.6)
      self.consumed[#self.consumed + 1] = item
      self.queue:task_done()
      print(("✅ %s finished: %s"):format(name, item))
    elseif aio.is_error(item, "TimeoutError") then
      print(("⏰ %s: timeout, checking whether to stop"):format(name))
      if self.queue:empty() then break end
    else
      error(item, 0)
    end
  end
end

function PC:run(duration)
  print(("🏭 Starting the system (duration: %gs)"):format(duration))
  local tasks = {
    aio.spawn(self.producer, self, "Prod1", 5),
    aio.spawn(self.producer, self, "Prod2", 4),
    aio.spawn(self.consumer, self, "Cons1"),
    aio.spawn(self.consumer, self, "Cons2"),
  }
  aio.sleep(duration)
  self.active = false
  aio.gather(tasks, { return_exceptions = true })
  print("🎉 System stopped")
  table.sort(self.consumed)
  print(("📋 %d items consumed: %s"):format(#self.consumed, table.concat(self.consumed, " ")))
end

PC.new(5):run(tonumber(arg[1]) or 8)
