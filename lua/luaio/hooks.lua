-- The hooks: Lua functions the C side calls by name from core.hooks (the
-- registry table h->hooks_ref). Each is listed, with its caller, in the seam
-- index at the top of src/module.c; C skips a hook that is not a function
-- where it says "optional" there. Requiring this module installs them and
-- returns the hooks table.
local core = require "luaio.core"
local wait = require("luaio.combinators").wait
local resources = require "luaio.resources"

local spawn, all_tasks, current_task, new_error = core.spawn, core.all_tasks, core.current_task, core.error
local pcall, error, ipairs = pcall, error, ipairs
local pack, unpack = table.pack, table.unpack

local hooks = core.hooks

-- spawn(fn, ...) -> task: luaio_spawn (sched.c) and signal handlers (signal.c)
hooks.spawn = spawn

-- run_nested(fn, ...) (host.c, l_run): aio.run(main) written right at the
-- top level of a script that already runs as the main task (the luaio
-- command): scripts written for stock lua5.4 end that way, so main runs as
-- asyncio.run would run it, inside this loop: its results or error come back,
-- and the tasks left pending that it (or they) spawned are cancelled and
-- awaited first. Anywhere else inside a task, aio.run stays an error (host.c
-- decides which case this is).
local function cancel_new_tasks(before)
  local left = {}
  for _, t in ipairs(all_tasks()) do
    if not before[t] and not t:done() then
      t:cancel()
      left[#left + 1] = t
    end
  end
  if #left > 0 then wait(left) end
end

hooks.run_nested = function(fn, ...)
  local before = {}
  for _, t in ipairs(all_tasks()) do before[t] = true end
  local main = spawn(fn, ...)
  local res = pack(pcall(main.wait, main))
  local self = current_task()
  if res[1] and self:cancelling() > 0 and core.interrupted() then
    -- main swallowed the SIGINT/SIGTERM that cancelled it: as asyncio.run
    -- (KeyboardInterrupt), the run still ends by the signal
    res = pack(false, new_error("CancelledError", core.interrupted()))
  end
  local own = main:done() and not res[1] and res[2] ~= nil and main:error() == res[2]
  if not own then
    -- this task was cancelled (SIGINT) or deadlocked: its wait has cancelled
    -- main too, as `await task` does; let main clean up
    pcall(main.wait, main)
  end
  cancel_new_tasks(before)
  if res[1] then return unpack(res, 2, res.n) end
  if own then                          -- main's own error: its traceback is the one to show
    self._reraised_error, self._reraised_traceback = res[2], main:traceback()
  end
  error(res[2], 0)
end

-- run_virtual(fn, ...) (host.c, testing.run at the top level of a script
-- under the luaio command; testing.it inside a task): run_nested on the
-- virtual clock (vclock.c), switched back to the real one at the end
hooks.run_virtual = function(fn, ...)
  if core.clock_virtual() then
    error("testing.run and testing.it cannot be nested (the clock is virtual already)", 2)
  end
  core.set_clock(true)
  local res = pack(pcall(hooks.run_nested, fn, ...))
  core.set_clock(false)
  if res[1] then return unpack(res, 2, res.n) end
  error(res[2], 0)
end

-- slow_task(task, seconds, where) (sched.c, debug mode): a task that held
-- the loop too long
hooks.slow_task = function(task, took, where)
  io.stderr:write(("luaio: slow task %s ran %.3f s without yielding (resumed at %s)\n"):format(
    task.name, took, where or "?"))
end

-- main_done() (host.c, run_until): the main task ended; debug mode lists
-- what is left, before it is cancelled
hooks.main_done = function()
  if not core.get_debug() then return end
  local lines = {}
  for _, t in ipairs(all_tasks()) do         -- (the monitor's own tasks are not the program's)
    if t ~= current_task() and t:status() == "pending" and not core.task_info(t).daemon then
      lines[#lines + 1] = "  task " .. t.name .. (t.spawned_at and (" (spawned at " .. t.spawned_at .. ")") or "")
    end
  end
  resources.labels(lines)
  if #lines > 0 then
    io.stderr:write(("luaio: left open at loop close:\n%s\n"):format(table.concat(lines, "\n")))
  end
end

-- loop_closed() (host.c, run_until): optional, and nothing defines it
-- today; C skips it when it is not a function. It would run once the loop
-- has drained after the main task, before unretrieved task errors are
-- reported.

-- resolve_udp(host, family) -> address (udp.c, sendto with a host name): an
-- address of the socket's family ("inet" or "inet6")
local getaddrinfo = core.getaddrinfo
hooks.resolve_udp = function(host, family)
  for _, a in ipairs(getaddrinfo(host)) do
    if a.family == family then return a.addr end
  end
  error(new_error("OSError", ("sendto: %s has no %s address"):format(host, family), { code = "EAI_ADDRFAMILY" }), 0)
end

return hooks
