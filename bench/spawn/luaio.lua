-- spawn: 100,000 tasks x 10 sleep(0), gathered.
local aio = require "luaio"
local N = tonumber(arg[1]) or 100000
local function worker() for _ = 1, 10 do aio.sleep(0) end end
local t0 = aio.now()
local tasks = {}
for i = 1, N do tasks[i] = aio.spawn(worker) end
aio.gather(tasks)
print(("metric seconds %.4f"):format(aio.now() - t0))
