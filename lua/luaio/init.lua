-- luaio: the `aio` facade. The native core (sched.c, host.c, ...) is passed
-- in as `core`; this file adds what is policy rather than speed.
local core = ...
local aio = {}

for _, name in ipairs { "run", "spawn", "sleep", "now", "current_task", "all_tasks",
                        "stats", "set_debug", "is_error", "version" } do
  aio[name] = core[name]
end

local hooks = core.hooks
hooks.spawn = core.spawn

-- The Lua half's waiting functions start with core.need_task(fname) (C): the
-- running task, or the contract's error ("must be called inside a task", or
-- "cannot wait here" where the task cannot yield), at the caller's line,
-- before anything is armed.

-- Argument checks with Lua's own message shape, at the caller's line:
-- "bad argument #N to 'aio.NAME' (T expected, got U)". `n` counts like Lua's
-- (a method's self is #1 and reported as "bad self"); these check an argument
-- of the function that calls them.
local arg_error, type_name = core.arg_error, core.type_name
local type = type
function core.check_type(v, n, tname)
  if type(v) ~= tname then arg_error(n, tname .. " expected, got " .. type_name(v), 2) end
  return v
end
function core.check_opt_type(v, n, tname)
  if v ~= nil and type(v) ~= tname then arg_error(n, tname .. " expected, got " .. type_name(v), 2) end
  return v
end
local function callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__call") ~= nil
end
core.callable = callable
function core.check_callable(v, n)
  if not callable(v) then arg_error(n, "function expected, got " .. type_name(v), 2) end
  return v
end
-- self must be an object of metatable mt (whose __name says what it is)
local rawgetmetatable = debug.getmetatable   -- a __metatable field cannot pass for ours
function core.check_self(self, mt)
  if rawgetmetatable(self) ~= mt then arg_error(1, mt.__name .. " expected, got " .. type_name(self), 2) end
  return self
end
-- a number, not NaN; min (optional) is the least value allowed
function core.check_number(v, n, min)
  if type(v) ~= "number" then arg_error(n, "number expected, got " .. type_name(v), 2) end
  if v ~= v then arg_error(n, "number expected, got NaN", 2) end
  if min and v < min then arg_error(n, ("number >= %s expected, got %s"):format(min, v), 2) end
  return v
end

-- Raise a new luaio error: aio.raise("TimeoutError", "msg", {extra fields})
local new_error = core.error
aio.new_error = new_error
local function raise(name, message, fields, level)
  if type(name) ~= "string" or name == "" then arg_error(1, "an error name expected, got " .. type_name(name)) end
  if message ~= nil and type(message) ~= "string" and type(message) ~= "number" then
    arg_error(2, "string expected, got " .. type_name(message))
  end
  if fields ~= nil and type(fields) ~= "table" then arg_error(3, "table expected, got " .. type_name(fields)) end
  if level ~= nil and math.type(level) ~= "integer" then arg_error(4, "integer expected, got " .. type_name(level)) end
  error(new_error(name, message, fields), level or 2)
end
aio.raise = raise

-- A `require` that may wait: a Lua loader runs as a plain Lua call, so a
-- module whose top level calls waiting functions loads inside a task.
local package, type, error, select = package, type, error, select
local function yieldable_require(name)
  local loaded = package.loaded[name]
  if loaded ~= nil then return loaded end
  if type(name) ~= "string" then error("bad argument #1 to 'require' (string expected, got " .. type(name) .. ")", 2) end
  local msgs = {}
  for _, searcher in ipairs(package.searchers) do
    local loader, extra = searcher(name)
    if type(loader) == "function" then
      local r = loader(name, extra)
      if r ~= nil then package.loaded[name] = r
      elseif package.loaded[name] == nil then package.loaded[name] = true end
      return package.loaded[name], extra
    elseif type(loader) == "string" then
      msgs[#msgs + 1] = "\n\t" .. loader
    end
  end
  error(("module '%s' not found:%s"):format(name, table.concat(msgs)), 2)
end
_G.require = yieldable_require

-- os.exit inside a running loop must not close the state under the loop's
-- feet: it flushes and leaves without closing.
local real_exit = os.exit
os.exit = function(code, close)
  io.stdout:flush()
  io.stderr:flush()
  if core.current_task() then close = false end
  return real_exit(code, close)
end

-- JSON (lua-cjson), with decode errors that name the position.
do
  local ok, cjson = pcall(require, "cjson")
  if ok then
    local json = cjson.new()
    json.encode_sparse_array(true)
    local decode, integers = json.decode, core.json_integers
    aio.json = {
      encode = json.encode,
      decode = function(s)
        if type(s) ~= "string" then arg_error(1, "string expected, got " .. type_name(s)) end
        local okd, v = pcall(decode, s)
        if not okd then error("aio.json.decode: " .. tostring(v), 2) end
        return integers(v)
      end,
      null = json.null,
    }
  end
end

require("luaio.combinators")(aio, core)
require("luaio.sync")(aio, core)
require("luaio.queue")(aio, core)
-- the subsystems' Lua halves, each installing its public names into aio
for _, name in ipairs { "streams", "system", "http" } do
  if package.preload["luaio." .. name] then require("luaio." .. name)(aio, core) end
end

-- aio.run(main) written right at the top level of a script that already runs
-- as the main task (the luaio command): scripts written for stock lua5.4 end
-- that way, so main runs as asyncio.run would run it, inside this loop: its
-- results or error come back, and the tasks left pending that it (or they)
-- spawned are cancelled and awaited first. Anywhere else inside a task,
-- aio.run stays an error (host.c decides which case this is).
hooks.run_nested = function(fn, ...)
  local before = {}
  for _, t in ipairs(core.all_tasks()) do before[t] = true end
  local main = core.spawn(fn, ...)
  local res = table.pack(pcall(main.wait, main))
  local self = core.current_task()
  if res[1] and self:cancelling() > 0 and core.interrupted() then
    -- main swallowed the SIGINT/SIGTERM that cancelled it: as asyncio.run
    -- (KeyboardInterrupt), the run still ends by the signal
    res = table.pack(false, new_error("CancelledError", core.interrupted()))
  end
  local own = main:done() and not res[1] and res[2] ~= nil and main:error() == res[2]
  if not own then
    -- this task was cancelled (SIGINT) or deadlocked: its wait has cancelled
    -- main too, as `await task` does; let main clean up
    pcall(main.wait, main)
  end
  local left = {}
  for _, t in ipairs(core.all_tasks()) do
    if not before[t] and not t:done() then
      t:cancel()
      left[#left + 1] = t
    end
  end
  if #left > 0 then aio.wait(left) end
  if res[1] then return table.unpack(res, 2, res.n) end
  if own then                          -- main's own error: its traceback is the one to show
    self._reraised_error, self._reraised_traceback = res[2], main:traceback()
  end
  error(res[2], 0)
end

-- Debug mode: warnings for tasks that hold the loop too long, and a list of
-- what is left when the main task ends.
hooks.slow_task = function(task, took, where)
  io.stderr:write(("luaio: slow task %s ran %.3f s without yielding (resumed at %s)\n"):format(
    task.name, took, where or "?"))
end

-- open resources that debug mode names at loop close: resource -> label
local open_resources = setmetatable({}, { __mode = "k" })
function aio._track(resource, label) open_resources[resource] = label end
function aio._untrack(resource) open_resources[resource] = nil end

hooks.main_done = function()
  if not core.get_debug() then return end
  local lines = {}
  for _, t in ipairs(core.all_tasks()) do
    if t ~= core.current_task() and t:status() == "pending" then
      lines[#lines + 1] = "  task " .. t.name .. (t.spawned_at and (" (spawned at " .. t.spawned_at .. ")") or "")
    end
  end
  for _, label in pairs(open_resources) do lines[#lines + 1] = "  " .. label end
  local handles = core.stats().handles
  if #lines > 0 or handles > 0 then
    io.stderr:write(("luaio: left open at loop close (%d native handles):\n%s\n"):format(
      handles, table.concat(lines, "\n")))
  end
end

-- Interactive prompt: each line runs inside the loop, in the main task.
function aio.repl()
  io.write(core.version(), "\n")
  while true do
    io.write("> ")
    io.flush()
    local line = io.read("l")
    if not line then io.write("\n") break end
    local chunk, err = load("return " .. line, "=stdin")
    if not chunk then chunk, err = load(line, "=stdin") end
    while not chunk and err and err:match("<eof>$") do
      io.write(">> ")
      io.flush()
      local more = io.read("l")
      if not more then break end
      line = line .. "\n" .. more
      chunk, err = load(line, "=stdin")
    end
    if not chunk then
      io.stderr:write(err, "\n")
    else
      local r = table.pack(xpcall(chunk, debug.traceback))
      if not r[1] then io.stderr:write(tostring(r[2]), "\n")
      elseif r.n > 1 then
        for i = 2, r.n do r[i] = tostring(r[i]) end
        print(table.unpack(r, 2, r.n))
      end
    end
  end
end

package.loaded.luaio = aio
return aio
