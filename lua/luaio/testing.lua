-- luaio.testing: the virtual clock for tests (API.md §15). The clock itself
-- is vclock.c (its top says exactly when it jumps); this module gives the
-- ways to run code on it.
--   run(fn, ...)   as aio.run, on a virtual clock starting at 0
--   advance(sec) ⏸ move the clock by hand, firing what falls due in order
--   it(fn)         a busted test body that runs as a task on such a clock
local core = require "luaio.core"
local hooks = require "luaio.hooks"
local check = require "luaio.check"

local sleep, stats, now, arg_error = core.sleep, core.stats, core.now, core.arg_error
local need_task, clock_virtual, clock_fire, clock_set = core.need_task, core.clock_virtual, core.clock_fire, core.clock_set
local error = error

local M = {}

-- a C function, so that it can tell a script's top level (host.c)
M.run = core.run_virtual

-- Let the tasks that are ready run, and those they wake, until one whole
-- loop turn (with its poll of I/O) runs nobody but the caller.
local function settle()
  repeat
    local before = stats().switches
    sleep(0)
    local s = stats()
  until s.switches == before + 1 and s.ready == 0
end

function M.advance(sec)
  check.check_type(sec, 1, "number")
  if not (sec >= 0 and sec < math.huge) then arg_error(1, "a finite non-negative number of seconds expected") end
  need_task("testing.advance")
  if not clock_virtual() then
    error("testing.advance: the clock is not virtual (run the code with testing.run or testing.it)", 2)
  end
  local target = now() + sec
  settle()
  while clock_fire(target) do settle() end
  clock_set(target)
end

function M.it(fn)
  check.check_callable(fn, 1)
  return function(...)
    if core.current_task() then return hooks.run_virtual(fn, ...) end
    return M.run(fn, ...)
  end
end

return M
