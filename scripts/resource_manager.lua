-- Course §14 "Optimisation mémoire": connections tracked in a weak-keyed
-- table (weakref.WeakSet), tracked tasks removed by their done callbacks,
-- and a cleanup that cancels what is still running.
local aio = require "luaio"

local Manager = {}
Manager.__index = Manager

function Manager.new()
  return setmetatable({
    connections = setmetatable({}, { __mode = "k" }),   -- forgets what nobody else holds
    active_tasks = {},
  }, Manager)
end

function Manager:create_connection(url)
  print("🔌 Creating connection: " .. url)
  local c = { url = url, active = true }
  self.connections[c] = true
  return c
end

function Manager:track(fn, ...)
  local task = aio.spawn(fn, ...)
  self.active_tasks[task] = true
  task:add_done_callback(function(t) self.active_tasks[t] = nil end)   -- removes itself when done
  return task
end

local function count(t) local n = 0 for _ in pairs(t) do n = n + 1 end return n end

function Manager:cleanup()
  print("🧹 Cleaning up resources")
  local pending = {}
  for task in pairs(self.active_tasks) do
    if not task:done() then task:cancel() end
    pending[#pending + 1] = task
  end
  if #pending > 0 then aio.gather(pending, { return_exceptions = true }) end
  collectgarbage()
  print(("✅ Cleanup done (%d active connections, %d tracked tasks)"):format(count(self.connections), count(self.active_tasks)))
end

local m = Manager.new()
local ok, err = pcall(function()
  local conn = m:create_connection("db://localhost")
  m:create_connection("db://temporary")              -- nobody keeps this one
  local quick = m:track(aio.sleep, 0.5)
  m:track(aio.sleep, 2)
  m:track(aio.sleep, 3)
  print(("📋 tracking %d tasks"):format(count(m.active_tasks)))
  aio.sleep(1)
  print(("📋 after 1 s: %d tasks still tracked (the 0.5 s one removed itself)"):format(count(m.active_tasks)))
  assert(conn.active)
end)
m:cleanup()                                            -- the chapter's `finally`
if not ok then error(err, 0) end
