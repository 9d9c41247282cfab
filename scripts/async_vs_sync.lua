-- Course §1 "Coroutines et async/await": three 1-second jobs, first one after
-- the other with a blocking wait, then as three concurrent tasks.
-- In Python: `await asyncio.sleep(1)` inside `async def`; here a task is a
-- plain function and aio.sleep suspends it (there is no `await` keyword).
local aio = require "luaio"

local function blocking_job(name)
  print(("  %s: start (blocking)"):format(name))
  os.execute("sleep 1")            -- like time.sleep(1): the whole program waits
  print(("  %s: done"):format(name))
  return name
end

local function async_job(name)
  print(("  %s: start"):format(name))
  aio.sleep(1)                     -- only this task waits; the others run
  print(("  %s: done"):format(name))
  return name
end

print("Synchronous: 3 jobs of 1 s, one after the other")
local t0 = aio.now()
for i = 1, 3 do blocking_job("job " .. i) end
local sync_time = aio.now() - t0
print(("Synchronous total: %.2f s"):format(sync_time))

print("Asynchronous: the same 3 jobs as concurrent tasks")
t0 = aio.now()
local results = aio.gather {
  function() return async_job("job 1") end,
  function() return async_job("job 2") end,
  function() return async_job("job 3") end,
}
local async_time = aio.now() - t0
print(("Asynchronous total: %.2f s (results: %s)"):format(async_time, table.concat(results, ", ")))
print(("Speed-up: %.1fx"):format(sync_time / async_time))
