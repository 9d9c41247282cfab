-- Course exercise 2 "Gestionnaire de tâches": six tasks, at most three at
-- once (a Semaphore), random failures, and a success-rate summary.
local aio = require "luaio"
math.randomseed(tonumber(os.getenv("LUAIO_SEED")) or os.time())

local Task = {}
Task.__index = Task

function Task.new(name, duration, failure_rate)
  return setmetatable({ name = name, duration = duration, failure_rate = failure_rate, status = "waiting" }, Task)
end

function Task:run()
  self.status = "running"
  print("🔄 Start: " .. self.name)
  local ok, err = pcall(function()
    aio.sleep(self.duration)
    if math.random() < self.failure_rate then error("simulated failure of " .. self.name, 0) end
  end)
  if ok then
    self.status, self.result = "done", "Result of " .. self.name
    print("✅ Done: " .. self.name)
  else
    if aio.is_error(err, "CancelledError") then error(err, 0) end
    self.status, self.error = "failed", err
    print(("❌ Failed: %s - %s"):format(self.name, err))
  end
end

local Manager = {}
Manager.__index = Manager

function Manager.new(max_concurrent)
  return setmetatable({ max = max_concurrent, sem = aio.Semaphore(max_concurrent), tasks = {},
                        running = 0, peak = 0 }, Manager)
end

function Manager:add(name, duration, failure_rate)
  local t = Task.new(name, duration, failure_rate)
  self.tasks[#self.tasks + 1] = t
  return t
end

function Manager:run_limited(task)
  local _ <close> = self.sem:acquire()       -- `async with self.semaphore`
  self.running = self.running + 1
  self.peak = math.max(self.peak, self.running)
  print(("   (%d running)"):format(self.running))
  task:run()
  self.running = self.running - 1
end

function Manager:run_all()
  print(("🚀 Running %d tasks (at most %d at once)"):format(#self.tasks, self.max))
  local jobs = {}
  for i, t in ipairs(self.tasks) do jobs[i] = aio.spawn(self.run_limited, self, t) end
  aio.gather(jobs, { return_exceptions = true })
  self:summary()
end

function Manager:summary()
  local done, failed = 0, 0
  for _, t in ipairs(self.tasks) do
    if t.status == "done" then done = done + 1 elseif t.status == "failed" then failed = failed + 1 end
  end
  print("\n📊 Summary:")
  print(("  ✅ Successes: %d"):format(done))
  print(("  ❌ Failures: %d"):format(failed))
  print(("  📈 Success rate: %.1f%%"):format(done / #self.tasks * 100))
  print(("  🔢 Most tasks running at once: %d"):format(self.peak))
end

local m = Manager.new(3)
m:add("Job_1", 2, 0.1)
m:add("Job_2", 1.5, 0.2)
m:add("Job_3", 3, 0.05)
m:add("Job_4", 1, 0.3)
m:add("Job_5", 2.5, 0.15)
m:add("Job_6", 1.8, 0.1)
m:run_all()
