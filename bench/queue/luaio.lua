-- queue: 1,000,000 items through a bounded Queue(100), 1 producer, 4 consumers.
local aio = require "luaio"
local N = tonumber(arg[1]) or 1000000
local q = aio.Queue(100)
local function consumer()
  while q:get() do end               -- false is the stop mark
end
local t0 = aio.now()
local consumers = {}
for i = 1, 4 do consumers[i] = aio.spawn(consumer) end
for i = 1, N do q:put(i) end
for _ = 1, 4 do q:put(false) end
aio.gather(consumers)
print(("metric items_per_second %.0f"):format(N / (aio.now() - t0)))
