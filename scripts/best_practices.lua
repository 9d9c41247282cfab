-- Course §9 "Bonnes pratiques", each one as a short Lua example.
local aio = require "luaio"

-- 1. Resource cleanup: `<close>` is `async with`; a task is cancelled if we leave early.
print("1. Resources")
do
  local Resource = { __close = function(r) print("   closing " .. r.name) end }
  local r <close> = setmetatable({ name = "connection" }, Resource)
  local task = aio.spawn(aio.sleep, 10)
  local ok = pcall(function() return aio.wait_for(task, 0.05) end)
  if not task:done() then task:cancel() end
  print("   task cancelled: " .. tostring(task:cancelled()))
end

-- 2. Limiting concurrency with a Semaphore: at most 10 at once.
print("2. Limiting concurrency")
do
  local sem, running, peak = aio.Semaphore(10), 0, 0
  local jobs = {}
  for i = 1, 50 do
    jobs[i] = function()
      return sem:run(function()
        running = running + 1
        peak = math.max(peak, running)
        aio.sleep(0.01)
        running = running - 1
      end)
    end
  end
  aio.gather(jobs)
  print(("   50 jobs, at most %d at once"):format(peak))
end

-- 3. Errors in gather: return_exceptions keeps the others' results.
print("3. Errors")
do
  local results = aio.gather({
    function() return "fine" end,
    function() error("something broke", 0) end,
    function() aio.sleep(0.01) return "also fine" end,
  }, { return_exceptions = true })
  for i = 1, results.n do
    local r = results[i]
    if r == "fine" or r == "also fine" then print("   Result: " .. r) else print("   Error: " .. tostring(r)) end
  end
end

-- 4. Never block the loop: blocking work goes to the thread pool.
print("4. Avoiding blocking")
do
  local ticks = 0
  local ticker = aio.spawn(function() while true do aio.sleep(0.01) ticks = ticks + 1 end end)
  local sum = aio.to_thread(function(n)            -- runs in its own Lua state
    local s = 0
    for i = 1, n do s = s + i end
    return s
  end, 2e7)
  ticker:cancel()
  print(("   computed %d on the pool; the loop ticked %d times meanwhile"):format(sum, ticks))
end

-- 5. Timeouts and clean cancellation.
print("5. Timeout and cancellation")
do
  local ok, err = pcall(aio.wait_for, function() aio.sleep(5) end, 0.1)
  if aio.is_error(err, "TimeoutError") then print("   Operation too slow, cancelled") end
  local task = aio.spawn(function()
    local okc, e = pcall(aio.sleep, 5)
    print("   task cleaning up after: " .. tostring(e))
    error(e, 0)
  end)
  aio.sleep(0.01)
  task:cancel()
  local okw, e = pcall(task.wait, task)
  if aio.is_error(e, "CancelledError") then print("   Task cancelled cleanly") end
end
