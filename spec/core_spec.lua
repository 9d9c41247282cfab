-- The loop and tasks (API.md §1), cancellation and errors (§3), the command (§10).
-- This file runs inside the host: the whole busted run is the main task, so
-- waiting functions are called directly in the tests.
local aio = require "luaio"
local S = require "spec.support"
local testing = require "luaio.testing"
local function virtual_it(name, body) return it(name, testing.it(body)) end

describe("tasks", function()
  local it = virtual_it      -- timing logic only: on the virtual clock
  it("spawn starts at the next loop turn, not inside spawn", function()
    local started = false
    local t = aio.spawn(function() started = true; return 1 end)
    assert.is_false(started)
    assert.equals("pending", t:status())
    aio.sleep(0)
    assert.is_true(started)
    assert.equals("done", t:status())
  end)

  it("wait returns every result of the task", function()
    local t = aio.spawn(function(a, b) aio.sleep(0.01); return a + b, "x", nil, 4 end, 1, 2)
    local a, b, c, d = t:wait()
    assert.same({ 3, "x", nil, 4 }, { a, b, c, d })
    assert.is_true(t:done())
    assert.equals(3, (t:result()))
  end)

  it("wait re-raises a task's error unchanged, with position", function()
    local t = aio.spawn(function() error("boom") end)
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.matches("core_spec.lua:%d+: boom", err)
    assert.equals("failed", t:status())
    assert.equals(err, t:error())
  end)

  it("result on a pending task raises InvalidStateError", function()
    local t = aio.spawn(aio.sleep, 0.05)
    local ok, err = pcall(t.result, t)
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "InvalidStateError"))
    t:cancel()
  end)

  it("names tasks Task-N and lets the name be set", function()
    local t = aio.spawn(function() end)
    assert.matches("^Task%-%d+$", t.name)
    t.name = "worker"
    assert.equals("worker", t.name)
    assert.has_error(function() t.name = {} end)
    t:wait()
  end)

  it("current_task and all_tasks", function()
    local me = aio.current_task()
    assert.is_not_nil(me)
    local inner
    local t = aio.spawn(function() inner = aio.current_task(); aio.sleep(0.01) end)
    aio.sleep(0)
    assert.equals(t, inner)
    local found = false
    for _, x in ipairs(aio.all_tasks()) do if x == t then found = true end end
    assert.is_true(found)
    t:wait()
    for _, x in ipairs(aio.all_tasks()) do assert.not_equals(t, x) end
  end)

  it("add_done_callback is called with the task", function()
    local seen
    local t = aio.spawn(function() return 5 end)
    t:add_done_callback(function(x) seen = x end)
    t:wait()
    assert.equals(t, seen)
  end)

  it("stats count tasks, timers and switches", function()
    local s0 = aio.stats()
    local t = aio.spawn(aio.sleep, 0.05)
    aio.sleep(0)
    local s1 = aio.stats()
    assert.is_true(s1.tasks >= 2)
    assert.is_true(s1.timers >= 1)
    assert.is_true(s1.switches > s0.switches)
    assert.is_true(s1.iterations > s0.iterations)
    t:wait()
  end)

  it("keeps fire-and-forget tasks alive through garbage collection", function()
    local done = false
    aio.spawn(function() aio.sleep(0.02); done = true end)
    collectgarbage(); collectgarbage()
    aio.sleep(0.05)
    assert.is_true(done)
  end)

  it("frees finished tasks, coroutines included, in one collection", function()
    collectgarbage()
    local base = collectgarbage("count")
    local function burst()
      local tasks = {}
      for i = 1, 20000 do tasks[i] = aio.spawn(function() aio.sleep(0) return i end) end
      aio.gather(tasks)
    end
    burst()
    collectgarbage()       -- one cycle: no finalizer on a task that did not fail keeps it a cycle longer
    assert.is_true(collectgarbage("count") - base < 4096, ("%.0f KiB left"):format(collectgarbage("count") - base))
  end)
end)

describe("sleep and now", function()
  it("sleeps about the time asked", function()
    local t0 = aio.now()
    aio.sleep(0.05)
    local dt = aio.now() - t0
    assert.is_true(dt >= 0.049 and dt < 0.2, "slept " .. dt)
  end)

  it("sleep(0) lets other ready tasks run", function()
    local order = {}
    local a = aio.spawn(function() for i = 1, 3 do order[#order + 1] = "a" .. i; aio.sleep(0) end end)
    local b = aio.spawn(function() for i = 1, 3 do order[#order + 1] = "b" .. i; aio.sleep(0) end end)
    aio.gather { a, b }
    assert.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, order)
  end)

  it("timers with the same deadline fire in order", function()
    local order = {}
    local ts = {}
    for i = 1, 20 do ts[i] = aio.spawn(function() aio.sleep(0.01); order[#order + 1] = i end) end
    aio.gather(ts)
    for i = 1, 20 do assert.equals(i, order[i]) end
  end)

  it("rejects negative and NaN lengths", function()
    assert.has_error(function() aio.sleep(-1) end)
    assert.has_error(function() aio.sleep(0 / 0) end)
    assert.has_error(function() aio.sleep("x") end)
  end)
end)

describe("cancellation", function()
  local it = virtual_it      -- timing logic only: on the virtual clock
  it("raises CancelledError at the waiting call and marks the task cancelled", function()
    local cleaned = false
    local t = aio.spawn(function()
      local ok, err = pcall(aio.sleep, 10)
      cleaned = true
      error(err, 0)
    end)
    aio.sleep(0.01)
    assert.is_true(t:cancel("stop it"))
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "CancelledError"))
    assert.equals("stop it", err.message)
    assert.is_true(cleaned)
    assert.is_true(t:cancelled())
    assert.equals("cancelled", t:status())
    assert.is_false(t:cancel())
  end)

  it("a task cancelled before it starts never runs", function()
    local ran = false
    local t = aio.spawn(function() ran = true end)
    t:cancel()
    assert.has_error(function() t:wait() end)
    assert.is_false(ran)
    assert.is_true(t:cancelled())
  end)

  it("a task woken but not yet resumed is still cancelled", function()
    local reached = false
    local t = aio.spawn(function() aio.sleep(0); reached = true end)
    aio.sleep(0)           -- t ran and sits in the ready queue again
    t:cancel()
    pcall(t.wait, t)
    assert.is_false(reached)
    assert.is_true(t:cancelled())
  end)

  it("a task may catch CancelledError and finish normally", function()
    local t = aio.spawn(function()
      local ok = pcall(aio.sleep, 10)
      aio.sleep(0.01)       -- may wait again while cleaning up
      return ok and "slept" or "caught"
    end)
    aio.sleep(0)
    t:cancel()
    assert.equals("caught", t:wait())
    assert.equals("done", t:status())
  end)

  it("closes <close> variables while unwinding, and closing may wait", function()
    local log = {}
    local t = aio.spawn(function()
      local _ <close> = setmetatable({}, { __close = function()
        aio.sleep(0.01)
        log[#log + 1] = "closed"
      end })
      aio.sleep(10)
    end)
    aio.sleep(0)
    t:cancel()
    pcall(t.wait, t)
    assert.same({ "closed" }, log)
  end)

  it("cancelling a waiter cancels the awaited task (like await task)", function()
    local inner = aio.spawn(aio.sleep, 10)
    local outer = aio.spawn(function() return inner:wait() end)
    aio.sleep(0.01)
    outer:cancel()
    pcall(outer.wait, outer)
    aio.sleep(0)
    assert.is_true(inner:cancelled())
    -- with the same message, as asyncio passes cancel(msg) on
    inner = aio.spawn(function() local _, e = pcall(aio.sleep, 10) return e.message end)
    outer = aio.spawn(function() return inner:wait() end)
    aio.sleep(0.01)
    outer:cancel("stop now")
    pcall(outer.wait, outer)
    assert.equals("stop now", inner:wait())
  end)

  it("a self-cancel is delivered at the next waiting call", function()
    local t = aio.spawn(function()
      aio.current_task():cancel()
      local ok, err = pcall(aio.sleep, 1)
      return ok, aio.is_error(err, "CancelledError")
    end)
    local ok, is_cancel = t:wait()
    assert.is_false(ok)
    assert.is_true(is_cancel)
  end)
end)

describe("errors", function()
  it("luaio errors have name, message, tostring and is_error", function()
    local ok, err = pcall(aio.timeout, 0.01, aio.sleep, 1)
    assert.is_false(ok)
    assert.equals("TimeoutError", err.name)
    assert.equals("string", type(err.message))
    assert.equals("TimeoutError: " .. err.message, tostring(err))
    assert.is_true(aio.is_error(err))
    assert.is_true(aio.is_error(err, "TimeoutError"))
    assert.is_false(aio.is_error(err, "CancelledError"))
    assert.is_false(aio.is_error("TimeoutError"))
  end)

  it("user error values pass through unchanged", function()
    local obj = { custom = true }
    local t = aio.spawn(function() aio.sleep(0); error(obj) end)
    local ok, err = pcall(t.wait, t)
    assert.equals(obj, err)
  end)
end)

describe("tracebacks", function()
  it("name the task, and in debug mode where it was spawned", function()
    local t = aio.spawn(function() aio.sleep(0) error("x") end)
    t.name = "worker"
    pcall(t.wait, t)
    assert.matches("in task worker", t:traceback())
    local out, err = require("spec.support").run_code([[
      local aio = require 'luaio'
      aio.set_debug(true)
      local t = aio.spawn(function() error('boom') end)
      pcall(t.wait, t)
      print(t:traceback())]])
    assert.matches("spawned at %(command line%):3", out)
  end)
end)

describe("coroutines inside tasks", function()
  it("a waiting call inside coroutine.wrap suspends the task and resumes the coroutine", function()
    local gen = coroutine.wrap(function()
      for i = 1, 3 do aio.sleep(0.001); coroutine.yield(i) end
      return "end"
    end)
    assert.same({ 1, 2, 3, "end" }, { gen(), gen(), gen(), gen() })
  end)

  it("coroutine.resume passes waits through and keeps its own yields", function()
    local co = coroutine.create(function(a)
      local b = coroutine.yield(a + 1)
      aio.sleep(0.001)
      return b * 2
    end)
    assert.same({ true, 2 }, { coroutine.resume(co, 1) })
    assert.same({ true, 20 }, { coroutine.resume(co, 10) })
    assert.equals("dead", coroutine.status(co))
    assert.same({ false, "cannot resume dead coroutine" }, { coroutine.resume(co) })
  end)

  it("cancellation reaches a task waiting inside a nested coroutine", function()
    local t = aio.spawn(function()
      local co = coroutine.wrap(function() aio.sleep(10) end)
      co()
    end)
    aio.sleep(0)
    t:cancel()
    local ok, err = pcall(t.wait, t)
    assert.is_true(aio.is_error(err, "CancelledError"))
  end)

  it("aio.generator iterates with waits between items", function()
    local got = {}
    for v in aio.generator(function(yield, n)
      for i = 1, n do aio.sleep(0.001); yield(i * i) end
    end, 4) do got[#got + 1] = v end
    assert.same({ 1, 4, 9, 16 }, got)
  end)

  it("breaking out of a generator loop closes it", function()
    local closed = false
    for v in aio.generator(function(yield)
      local _ <close> = setmetatable({}, { __close = function() closed = true end })
      for i = 1, 10 do yield(i) end
    end) do
      if v == 2 then break end
    end
    assert.is_true(closed)
  end)

  it("require of a module whose top level waits", function()
    package.preload["spec_waiting_module"] = nil
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local f = io.open(dir .. "/waitmod.lua", "w")
    f:write("local aio = require 'luaio'; aio.sleep(0.01); return { ok = true }")
    f:close()
    local old = package.path
    package.path = dir .. "/?.lua;" .. old
    local m = require "waitmod"
    package.path = old
    os.execute("rm -rf " .. dir)
    assert.is_true(m.ok)
  end)

  it("pcall, metamethods and Lua iterators may wait", function()
    local mt = { __index = function(_, k) aio.sleep(0.001); return k .. "!" end }
    local obj = setmetatable({}, mt)
    assert.equals("x!", obj.x)
    assert.same({ true, 7 }, { pcall(function() aio.sleep(0.001); return 7 end) })
    local function iter(_, i) if i < 3 then aio.sleep(0.001); return i + 1 end end
    local n = 0
    for i in iter, nil, 0 do n = n + i end
    assert.equals(6, n)
  end)
end)

describe("the luaio command", function()
  it("runs a script's top level as the main task, with arg", function()
    local out, _, code = S.run_script("local aio = require 'luaio'; aio.sleep(0.01); print(arg[1], ...)", "hello")
    assert.equals(0, code)
    assert.equals("hello\thello\n", out)
  end)

  it("exits 1 with a traceback naming the script line on an uncaught error", function()
    local _, err, code, path = S.run_script("local x = 1\nerror('bad thing')\n")
    assert.equals(1, code)
    assert.matches("bad thing", err)
    assert.matches(path:gsub("%p", "%%%0") .. ":2:", err)
    assert.matches("traceback", err)
  end)

  it("-e runs code, -v prints the version", function()
    local out, _, code = S.sh(S.luaio .. " -e 'print(1+1)'")
    assert.equals(0, code)
    assert.equals("2\n", out)
    out = S.sh(S.luaio .. " -v")
    assert.matches("^luaio %d+%.%d+", out)
  end)

  it("- reads the script from stdin", function()
    local out, _, code = S.sh("echo 'print(require(\"luaio\").now() > 0)' | " .. S.luaio .. " -")
    assert.equals(0, code)
    assert.equals("true\n", out)
  end)

  -- stock lua5.4 cannot load a sanitizer-built luaio.so (no ASan runtime in it)
  local stock_lua = os.getenv("LUAIO_SANITIZED") and pending or it
  stock_lua("aio.run outside a task, and refuses to nest", function()
    local out, _, code = S.sh("lua5.4 -e " .. S.quote(
      "package.cpath='" .. (os.getenv('LUAIO_MODULE_DIR') or 'build') .. "/?.so;'..package.cpath " ..
      "local aio = require 'luaio' " ..
      "print(aio.run(function(a) aio.sleep(0.01) return a * 2, 'x' end, 21)) " ..
      "print(pcall(aio.sleep, 1)) " ..
      "print(select(2, pcall(aio.run, function() return aio.run(print) end)))"))
    assert.equals(0, code, out)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equals("42\tx", lines[1])
    assert.matches("must be called inside a task %(wrap your code in aio.run%)", lines[2])
    assert.matches("not re%-entrant", lines[3])
  end)

  it("a script written for stock lua5.4 ends with aio.run(main): that works too", function()
    local out, err, code = S.run_code([[
      local aio = require 'luaio'
      local earlier = aio.spawn(function() aio.sleep(0.05) return 'earlier' end)
      local function main(a)
        aio.spawn(function()                     -- left pending: cancelled at main's end
          local ok, e = pcall(aio.sleep, 10)
          print('left-over', aio.is_error(e, 'CancelledError'))
        end)
        aio.sleep(0.01)
        print('nested', pcall(aio.run, print))  -- deeper inside, still not re-entrant
        return a * 2, 'x'
      end
      print(aio.run(main, 21))
      print(aio.run(function() return 'again' end))
      print(earlier:wait())                      -- tasks from before the run are left alone
      aio.run(function() local t = nil; return t.field end)]])
    assert.equals(1, code)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.matches("^nested\tfalse\t.*not re%-entrant", lines[1])
    assert.same({ "left-over\ttrue", "42\tx", "again", "earlier" }, { lines[2], lines[3], lines[4], lines[5] })
    -- the traceback is the failing task's, where the error happened
    assert.matches("attempt to index a nil value", err)
    assert.matches("re%-raised in task", err)
    -- `return aio.run(main)` (a tail call) too; a task's function returning aio.run(...) does not
    out, err, code = S.run_code([[
      local aio = require 'luaio'
      print(pcall(aio.run, function() return aio.run(print) end))
      return aio.run(function() print('tail') end)]])
    assert.equals(0, code, err)
    assert.matches("^false\t.*not re%-entrant%)\ntail\n$", out)
    -- a main that waits for nothing is still a deadlock, named as such
    out, err, code = S.run_code("local aio = require 'luaio'; aio.run(function() aio.Event():wait() end)")
    assert.equals(1, code)
    assert.matches("DeadlockError", err)
  end)

  it("a SIGINT during a top-level aio.run(main) still exits 130 after main cleans up", function()
    local out, _, code = S.signal_when_ready([[local aio=require'luaio'
      aio.run(function()
        print('ready') io.stdout:flush()
        local ok, e = pcall(aio.sleep, 10) print('cleanup', e.message)
      end)
      print('not reached')]], "kill -INT $pid")
    assert.equals(130, code)
    assert.equals("ready\ncleanup\tSIGINT\n", out)
  end)

  stock_lua("every waiting function raises outside a task, even one that need not wait", function()
    local out, _, code = S.sh("lua5.4 -e " .. S.quote(
      "package.cpath='" .. (os.getenv('LUAIO_MODULE_DIR') or 'build') .. "/?.so;'..package.cpath " .. [[
      local aio = require 'luaio'
      local set = aio.Event() set:set()
      local done
      aio.run(function() done = aio.spawn(function() return 1 end) done:wait() end)
      local calls = {
        function() aio.sleep(0) end, function() aio.gather({}) end, function() aio.wait({}) end,
        function() aio.wait_for(function() end, 1) end, function() aio.timeout(1, print) end,
        function() aio.shield(done) end, function() aio.task_group(print) end,
        function() done:wait() end, function() aio.Lock():acquire() end,
        function() aio.Semaphore(1):acquire() end, function() aio.BoundedSemaphore(1):run(print) end,
        function() set:wait() end, function() aio.Queue():join() end, function() aio.Queue():get() end,
        function() aio.start_server(print, '127.0.0.1', 0) end, function() aio.http.app():listen('127.0.0.1', 0) end,
        function() aio.open_connection('127.0.0.1', 1) end, function() aio.udp_bind('127.0.0.1', 0) end,
        function() aio.getaddrinfo('localhost') end, function() aio.http.get('http://127.0.0.1:1/') end,
        function() aio.to_thread(print) end, function() aio.exec({'true'}) end,
        function() aio.fs.read_file('/') end, function() aio.fs.open('/', 'r') end,
        function() aio.wait_signal('SIGUSR1') end,
      }
      local bad = 0
      for i, f in ipairs(calls) do
        local ok, err = pcall(f)
        if ok or not tostring(err):find('must be called inside a task (wrap your code in aio.run)', 1, true) then
          print('call #' .. i .. ' did not raise: ' .. tostring(err)) bad = bad + 1
        end
      end
      print('bad', bad, 'of', #calls)]]))
    assert.equals(0, code, out)
    assert.matches("bad\t0\tof\t25\n", out)
  end)

  it("cancels pending tasks when the main task ends and lets them clean up", function()
    local out, _, code = S.run_code([[
      local aio = require 'luaio'
      aio.spawn(function()
        local ok, err = pcall(aio.sleep, 10)
        aio.sleep(0.01)
        print('cleanup', aio.is_error(err, 'CancelledError'))
      end)
      aio.sleep(0.01)
      print('main done')]])
    assert.equals(0, code)
    assert.equals("main done\ncleanup\ttrue\n", out)
  end)

  it("reports a task error nobody retrieved", function()
    local _, err, code = S.run_code([[
      local aio = require 'luaio'
      aio.spawn(function() error('lost error') end)
      aio.sleep(0.01)]])
    assert.equals(0, code)
    assert.matches("Task exception was never retrieved: Task%-%d+: .*lost error", err)
  end)

  it("reports at loop close a failed task still referenced, but not a retrieved one", function()
    local _, err, code = S.run_code([[
      local aio = require 'luaio'
      keep = aio.spawn(function() error('kept but lost') end)
      local seen = aio.spawn(function() error('looked at') end)
      aio.sleep(0.01)
      seen:error()]])
    assert.equals(0, code)
    assert.matches("never retrieved: Task%-%d+: .*kept but lost", err)
    assert.not_matches("looked at", err)
  end)

  it("reports a deadlock instead of hanging", function()
    local _, err, code = S.run_code("require('luaio').Event():wait()")
    assert.equals(1, code)
    assert.matches("DeadlockError", err)
  end)

  it("SIGINT cancels the main task, cleanup runs, exit 130", function()
    local out, _, code = S.signal_when_ready([[local aio=require'luaio'
      print('ready') io.stdout:flush()
      local ok, e = pcall(aio.sleep, 10) print('cleanup', e.message) error(e, 0)]], "kill -INT $pid")
    assert.equals(130, code)
    assert.equals("ready\ncleanup\tSIGINT\n", out)
  end)
end)
