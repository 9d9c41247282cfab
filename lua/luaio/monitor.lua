-- The task monitor (API.md §15): a console on a Unix socket (mode 0600) for
-- a running program. `luaio --attach PATH` or `nc -U PATH` talks to it.
--
-- Protocol: the client sends one command per line; each answer is one or
-- more non-empty text lines followed by one empty line. On connect the
-- monitor greets the same way. Commands: ps, where ID, cancel ID, stats,
-- help (docs/manual-debugging.md has the columns and an example).
--
-- The monitor's tasks are daemons (core.set_daemon): they are hidden from
-- ps, and neither they nor the socket keep the program alive or hide a
-- deadlock (monitor.c, listener.c). Started from LUAIO_MONITOR (main.c) or
-- by aio.monitor(path).
local core = require "luaio.core"
local check_type = require("luaio.check").check_type

local spawn, set_daemon, task_info, all_tasks = core.spawn, core.set_daemon, core.task_info, core.all_tasks
local arg_error = core.arg_error
local concat, format, pcall, type, tostring, ipairs = table.concat, string.format, pcall, type, tostring, ipairs

local M = {}

-- ---- what a task waits on, as one line ----------------------------------

-- the object a Lua primitive waits on: its kind (a metatable's __name), and
-- for a queue its fill
local function name_of(obj)
  local mt = getmetatable(obj)
  local name = type(mt) == "table" and type(rawget(mt, "__name")) == "string" and mt.__name or type(obj)
  if name == "luaio.Queue" and type(obj) == "table" and type(rawget(obj, "_core")) == "userdata" then
    local n, max = obj:qsize(), obj:maxsize()
    return format("%s, %d item%s%s", name, n, n == 1 and "" or "s", max > 0 and ("/" .. max) or "")
  end
  return name
end

local function one_line(s) return (tostring(s):gsub("[\t\r\n]", " ")) end

local function wait_line(info)
  if info.wait then return info.wait end
  if info.wait_what then return format("%s (%s)", info.wait_what, name_of(info.wait_on)) end
  if info.wait_on ~= nil then return format("waiting on %s", name_of(info.wait_on)) end
  return "-"
end

local function task_line(info, now)
  local age = info.spawned_time and format("%.1fs", now - info.spawned_time) or "-"
  return concat({ info.id, one_line(info.name), info.state, one_line(wait_line(info)), age,
                  info.spawned_at or "-" }, "\t")
end

-- the program's tasks (not the monitor's), by id
local function program_tasks()
  local list = {}
  for _, t in ipairs(all_tasks()) do
    local info = task_info(t)
    if not info.daemon then list[#list + 1] = info; info.task = t end
  end
  table.sort(list, function(a, b) return a.id < b.id end)
  return list
end

local function find(id)
  local n = math.tointeger(tonumber(id))
  if not n then return nil, format("error: bad task id %q (ps lists them)", id or "") end
  for _, info in ipairs(program_tasks()) do
    if info.id == n then return info end
  end
  return nil, format("error: no pending task with id %d", n)
end

-- ---- the commands: each returns the answer's lines ----------------------

local commands = {}

function commands.ps()
  local lines, now = {}, core.now()
  for _, info in ipairs(program_tasks()) do lines[#lines + 1] = task_line(info, now) end
  if #lines == 0 then lines[1] = "no pending tasks" end
  return lines
end

function commands.where(id)
  local info, err = find(id)
  if not info then return { err } end
  local lines = {}
  for line in (info.task:traceback() or "(no traceback)"):gmatch("[^\n]+") do lines[#lines + 1] = line end
  return lines
end

function commands.cancel(id)
  local info, err = find(id)
  if not info then return { err } end
  info.task:cancel("cancelled from the monitor")
  return { format("cancelled %d %s", info.id, one_line(info.name)) }
end

function commands.stats()
  local st, lines = core.stats(), {}
  local keys = {}
  for k in pairs(st) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do lines[#lines + 1] = format("%s %s", k, tostring(st[k])) end
  lines[#lines + 1] = format("lua_memory_kb %.1f", collectgarbage("count"))
  local rss = core.rss()
  lines[#lines + 1] = "rss_kb " .. (rss and format("%d", rss // 1024) or "-")
  lines[#lines + 1] = format("open_resources %d", st.handles)
  return lines
end

function commands.help()
  return {
    "ps         one line per task: id, name, state, what it waits on, age, spawn position (tab-separated)",
    "where ID   the task's traceback where it waits",
    "cancel ID  cancel the task (it gets a CancelledError)",
    "stats      aio.stats(), memory, open resources",
    "help       this text",
  }
end

local function answer(line)
  local cmd, rest = line:match("^%s*(%S+)%s*(.-)%s*$")
  if not cmd then return { "error: empty command (try help)" } end
  local fn = commands[cmd]
  if not fn then return { format("error: unknown command %q (try help)", cmd) } end
  local ok, lines = pcall(fn, rest ~= "" and rest or nil)
  if not ok then return { "error: " .. one_line(lines) } end
  return lines
end

-- lines -> the text of an answer: no line empty, then the empty line
local function text(lines)
  for i, line in ipairs(lines) do if line == "" then lines[i] = " " end end
  return concat(lines, "\n") .. "\n\n"
end

-- ---- serving -------------------------------------------------------------

local function greeting()
  local pid = "?"
  local f = io.open("/proc/self/stat")
  if f then pid = f:read("n") or "?"; f:close() end
  return text { format("luaio monitor, pid %s, %s; type help", pid, core.version()) }
end

local function serve_client(s, clients)
  clients[s] = true
  pcall(function()
    s:write(greeting())
    while true do
      local line = s:readline()
      if not line or line == "" then break end   -- the client left
      s:write(text(answer((line:gsub("\r?\n$", "")))))
    end
  end)
  clients[s] = nil
  pcall(s.close, s)
end

local function daemon(fn, ...)
  local t = spawn(fn, ...)
  set_daemon(t)
  t.name = "luaio-monitor"
  return t
end

local function accept_loop(listener, clients)
  while true do
    local s = listener:accept()
    daemon(serve_client, s, clients)
  end
end

-- start(path) -> handle {path, close()}: the socket is open when it returns
function M.start(path)
  local listener = core.monitor_listen(path)
  local clients = {}
  local handle = { path = path }
  local accepter = daemon(accept_loop, listener, clients)
  local closed = false
  local function close()
    if closed then return end
    closed = true
    accepter:cancel()
    pcall(listener.close, listener)
    for s in pairs(clients) do pcall(s.close, s) end
    os.remove(path)
  end
  accepter:add_done_callback(close)   -- also when the loop's end cancels it
  handle.close = close
  return setmetatable(handle, { __name = "luaio.Monitor", __close = close })
end

-- aio.monitor(path) -> handle
function M.monitor(...)
  local path = ...
  if select("#", ...) == 0 then arg_error(1, "string expected, got no value", 1) end
  check_type(path, 1, "string")
  if path:find("\0", 1, true) then arg_error(1, "string contains a NUL byte", 1) end
  if path == "" then arg_error(1, "empty path", 1) end
  if #path >= 108 then arg_error(1, "path too long for a Unix socket", 1) end
  return M.start(path)
end

-- LUAIO_MONITOR (main.c): in a worker of `luaio --workers`, each worker
-- gets PATH.N
function M.from_env(path)
  local id = core.worker_info()
  if id then path = path .. "." .. id end
  return M.start(path)
end

return M
