-- The core's guarantees (API.md §3b): a script's mistake is an error, never a
-- crash; a busy task can be stopped; cancellation and timeouts as asyncio.
-- The semantics are written from asyncio's behaviour (CPython's
-- test_asyncio/test_tasks.py, test_timeouts.py, test_waitfor.py).
local aio = require "luaio"
local S = require "spec.support"

local function sleeper(sec, v) return function() aio.sleep(sec) return v end end

describe("done callbacks that raise", function()
  it("are logged, and the callbacks after them and the waiters still run", function()
    local out, err, code = S.run_code([[
      local aio = require 'luaio'
      local t = aio.spawn(function() aio.sleep(0.01) return 7 end)
      local seen = {}
      t:add_done_callback(function() error('first callback fails') end)
      t:add_done_callback(function() seen[#seen + 1] = 'second' end)
      t:add_done_callback(function() error(setmetatable({}, {__tostring = function() error('and so does its tostring') end})) end)
      t:add_done_callback(function() seen[#seen + 1] = 'fourth' end)
      print(t:wait(), table.concat(seen, ','))
      -- on a finished task: called at once, an error is logged the same way
      t:add_done_callback(function() error('late callback fails') end)
      for i = 1, 200 do local u = aio.spawn(function() end); u:add_done_callback(error); u:wait() end
      print(aio.spawn(function() return 'still fine' end):wait())]])
    assert.equals(0, code, err)
    assert.equals("7\tsecond,fourth\nstill fine\n", out)
    assert.matches("error in a done callback: [^\n]*first callback fails", err)
    assert.matches("error in a done callback: %(error object whose __tostring fails%)", err)
    assert.matches("late callback fails", err)
  end)

  it("on a failed task: the callback's error is logged, the task's error stays retrievable", function()
    local out, err, code = S.run_code([[
      local aio = require 'luaio'
      local t = aio.spawn(function() error('task failed', 0) end)
      t:add_done_callback(function() error('callback failed', 0) end)
      print(pcall(t.wait, t))]])
    assert.equals(0, code, err)
    assert.equals("false\ttask failed\n", out)
    assert.matches("error in a done callback: callback failed", err)
  end)
end)

describe("waiting where the task cannot yield", function()
  local contexts = {
    ["a table.sort comparator"] = function(wait) table.sort({ 3, 1, 2 }, function(a, b) wait() return a < b end) end,
    ["a string.gsub callback"] = function(wait) string.gsub("abc", "%w", function() wait() end) end,
    ["__tostring through tostring"] = function(wait) tostring(setmetatable({}, { __tostring = function() wait() return "" end })) end,
    ["a coroutine resumed inside table.sort"] = function(wait)
      table.sort({ 3, 1, 2 }, function(a, b) coroutine.wrap(wait)() return a < b end)
    end,
  }
  local waits = {
    sleep = function() aio.sleep(0.01) end,
    ["sleep(0)"] = function() aio.sleep(0) end,
    lock = function() local l = aio.Lock() l:acquire() l:acquire() end,
    event = function() aio.Event():wait() end,
    queue = function() aio.Queue():get() end,
    gather = function() aio.gather { sleeper(0.01) } end,
    wait_for = function() aio.wait_for(sleeper(0.01), 1) end,
    timeout = function() aio.timeout(1, aio.sleep, 0.01) end,
    task_wait = function() aio.spawn(sleeper(0.01)):wait() end,
    read_file = function() aio.fs.read_file("/etc/hostname") end,
    to_thread = function() aio.to_thread(function() return 1 end) end,
  }
  for cname, context in pairs(contexts) do
    for wname, wait in pairs(waits) do
      it(wname .. " inside " .. cname .. " raises at once and leaves nothing armed", function()
        local before = aio.stats()
        local ok, err = pcall(context, wait)
        assert.is_false(ok)
        assert.equals("string", type(err))
        assert.matches("cannot wait here: attempt to yield across a C%-call boundary", err)
        aio.sleep(0.03)   -- anything left armed would now finish a task that moved on
        local after = aio.stats()
        -- nothing new armed (earlier specs' timers may expire meanwhile)
        assert.is_true(after.timers <= before.timers, after.timers .. " timers, " .. before.timers .. " before")
        assert.is_true(after.tasks <= before.tasks, after.tasks .. " tasks, " .. before.tasks .. " before")
      end)
    end
  end

  it("inside a spawned task, an xpcall message handler and __gc", function()
    local out, err, code = S.run_code([[
      local aio = require 'luaio'
      local t = aio.spawn(function()
        local r = {}
        r[1] = select(2, pcall(table.sort, {2, 1}, function(a, b) aio.sleep(0.01) return a < b end))
        r[2] = select(2, xpcall(error, function(m) local ok, e = pcall(aio.sleep, 0.01) return e end, 'x'))
        setmetatable({}, {__gc = function() local ok, e = pcall(aio.sleep, 0.01) r[3] = e end})
        collectgarbage() collectgarbage()
        aio.sleep(0.05)
        return r
      end)
      local r = t:wait()
      for i = 1, 3 do print(r[i]) end
      print('alive')]])
    assert.equals(0, code, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equals(4, #lines, out)
    for i = 1, 3 do assert.matches("cannot wait here", lines[i]) end
    assert.equals("alive", lines[4])
  end)
end)

describe("waiting on the current task", function()
  it("raises InvalidStateError from wait, wait_for, gather, shield, wait and as_completed", function()
    local me = aio.current_task()
    local calls = {
      function() me:wait() end,
      function() aio.wait_for(me, 1) end,
      function() aio.wait_for(me) end,
      function() aio.gather { me } end,
      function() aio.shield(me) end,
      function() aio.wait { me } end,
      function() aio.as_completed { me } end,
    }
    for i, call in ipairs(calls) do
      local ok, err = pcall(call)
      assert.is_false(ok, i)
      assert.is_true(aio.is_error(err, "InvalidStateError"), i .. ": " .. tostring(err))
    end
    assert.equals(0, me:cancelling())
  end)

  it("from inside a spawned task too, without spinning", function()
    local t = aio.spawn(function() return pcall(aio.wait_for, aio.current_task(), 1) end)
    local ok, err = t:wait()
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "InvalidStateError"))
  end)
end)

describe("cancellation as asyncio", function()
  it("cancelling a task waiting in t:wait() cancels t and waits for its cleanup", function()
    local cleaned = false
    local t = aio.spawn(function()
      local _ <close> = setmetatable({}, { __close = function() aio.sleep(0.02) cleaned = true end })
      aio.sleep(5)
    end)
    local waiter = aio.spawn(function() return t:wait() end)
    aio.sleep(0.01)
    waiter:cancel("stop")
    local ok, err = pcall(waiter.wait, waiter)
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "CancelledError"))
    assert.equals("stop", err.message)
    assert.is_true(cleaned)               -- t had finished cleaning up before the waiter ended
    assert.is_true(t:cancelled())
  end)

  it("if t swallows the cancellation and returns, the waiter gets its result", function()
    local t = aio.spawn(function()
      pcall(aio.sleep, 5)
      aio.sleep(0.01)
      return "survived"
    end)
    local waiter = aio.spawn(function() return t:wait() end)
    aio.sleep(0.01)
    waiter:cancel()
    assert.equals("survived", waiter:wait())
    assert.equals(1, waiter:cancelling())
  end)

  it("a cancel asked while the waiter runs goes to t at the wait", function()
    local t = aio.spawn(sleeper(5))
    local waiter = aio.spawn(function()
      aio.current_task():cancel()
      return t:wait()
    end)
    local ok, err = pcall(waiter.wait, waiter)
    assert.is_true(aio.is_error(err, "CancelledError"))
    assert.is_true(t:cancelled())
  end)

  it("wait_for cancelled from outside cancels its item and waits for it", function()
    local cleaned = false
    local item = aio.spawn(function()
      local ok = pcall(aio.sleep, 5)
      aio.sleep(0.02)
      cleaned = true
    end)
    local waiter = aio.spawn(function() return aio.wait_for(item, 10) end)
    aio.sleep(0.01)
    waiter:cancel()
    local ok, err = pcall(waiter.wait, waiter)
    assert.is_true(cleaned)
    assert.is_true(item:done())
  end)

  it("wait_for(x, 0) raises TimeoutError; a function is never started", function()
    local started = false
    local ok, err = pcall(aio.wait_for, function() started = true end, 0)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    aio.sleep(0.01)
    assert.is_false(started)
    local t = aio.spawn(sleeper(5))
    ok, err = pcall(aio.wait_for, t, 0)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    assert.is_true(t:cancelled())
    -- an item already done gives its result
    local done = aio.spawn(function() return 5 end)
    aio.sleep(0)
    assert.equals(5, aio.wait_for(done, 0))
  end)

  it("a timeout after a caught CancelledError is still a TimeoutError", function()
    local t = aio.spawn(function()
      pcall(aio.sleep, 5)                          -- catches one cancellation
      local ok, err = pcall(aio.timeout, 0.01, aio.sleep, 5)
      local ok2, err2 = pcall(aio.wait_for, sleeper(5), 0.01)
      return err, err2
    end)
    aio.sleep(0.01)
    t:cancel()
    local err, err2 = t:wait()
    assert.is_true(aio.is_error(err, "TimeoutError"), tostring(err))
    assert.is_true(aio.is_error(err2, "TimeoutError"), tostring(err2))
  end)

  it("an inner scope's expiry never swallows the outer one's (loop busy past both)", function()
    local t0 = aio.now()
    local ok, err = pcall(aio.timeout, 0.05, function()
      aio.timeout(0.1, function()
        local t = aio.now()
        while aio.now() - t < 0.2 do end          -- busy past both deadlines
        aio.sleep(0)                               -- both expiries land here
        aio.sleep(5)
      end)
      aio.sleep(5)
      return "outer returned late"
    end)
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "TimeoutError"), tostring(err))
    assert.equals(0.05, err.timeout)
    assert.is_true(aio.now() - t0 < 1)
    assert.equals(0, aio.current_task():cancelling())
  end)

  it("an outer cancel inside a timeout stays a CancelledError", function()
    local t = aio.spawn(function() return aio.timeout(5, aio.sleep, 5) end)
    aio.sleep(0.01)
    t:cancel()
    local ok, err = pcall(t.wait, t)
    assert.is_true(aio.is_error(err, "CancelledError"))
  end)

  it("a timeout that expires while its body no longer waits leaves no stray cancel", function()
    local r = aio.timeout(0.01, function()
      local t = aio.now()
      while aio.now() - t < 0.05 do end
      return "done"
    end)
    assert.equals("done", r)
    aio.sleep(0.02)           -- would raise if a cancellation were left pending
    assert.equals(0, aio.current_task():cancelling())
  end)

  it("cancelling() and uncancel() count as asyncio's", function()
    local t = aio.spawn(sleeper(5))
    aio.sleep(0)
    t:cancel()
    t:cancel()
    assert.equals(2, t:cancelling())
    assert.equals(1, t:uncancel())
    pcall(t.wait, t)
    assert.is_true(t:cancelled())
  end)

  it("wait and as_completed treat their list as a set", function()
    local a = aio.spawn(sleeper(0.01, "a"))
    local done, pending = aio.wait { a, a, a }
    assert.equals(1, #done)
    assert.equals(0, #pending)
    local b = aio.spawn(sleeper(0.01, "b"))
    local n = 0
    for t in aio.as_completed { b, b } do n = n + 1 t:wait() end
    assert.equals(1, n)
  end)

  it("aio.wait({}) raises", function()
    local ok, err = pcall(function() aio.wait {} end)
    assert.is_false(ok)
    assert.matches("^spec/guarantees_spec.lua:%d+: bad argument #1 to 'aio.wait'", err)
  end)

  it("task_group passes a single child error unchanged and groups several", function()
    local mine = { reason = "mine" }
    local ok, err = pcall(aio.task_group, function(tg) tg:spawn(function() error(mine) end) end)
    assert.equals(mine, err)
    assert.is_nil(mine.errors)
    ok, err = pcall(aio.task_group, function(tg)
      tg:spawn(function() aio.sleep(0.01) error(mine) end)
      tg:spawn(function() pcall(aio.sleep, 1) error("second", 0) end)
    end)
    assert.is_true(aio.is_error(err, "TaskGroupError"))
    assert.same({ mine, "second" }, err.errors)
    assert.is_nil(mine.errors)
  end)
end)

describe("a task that never yields", function()
  -- the signal goes once the snippet started (its "ready" line is dropped)
  local function run_busy(code, signal, extra)
    local out, err, status = S.signal_when_ready("print('ready') io.stdout:flush() " .. code, signal, extra)
    return out:gsub("^ready\n", ""), err, status
  end

  it("is stopped by SIGTERM (143) after cleanup runs", function()
    local t0 = aio.now()
    local out, _, code = run_busy([[
      local aio = require 'luaio'
      local ok = pcall(function() while true do end end)
      print('cleanup') io.stdout:flush()]], "kill -TERM $pid")
    assert.equals(143, code)
    assert.equals("cleanup\n", out)
    assert.is_true(aio.now() - t0 < 3)
  end)

  it("is stopped by SIGINT (130), also in a spawned task", function()
    local out, _, code = run_busy([[
      local aio = require 'luaio'
      aio.spawn(function() while true do end end)
      local ok, err = pcall(aio.sleep, 10)
      print('main cleanup', err.message)]], "kill -INT $pid")
    assert.equals(130, code)
    assert.equals("main cleanup\tSIGINT\n", out)
  end)

  it("a second SIGINT within 2 s exits at once with 130", function()
    local t0 = aio.now()
    local out, _, code = run_busy([[
      local aio = require 'luaio'
      local ok = pcall(aio.sleep, 10)
      while true do end   -- a cleanup that never ends
    ]], "kill -INT $pid; sleep 0.3; kill -INT $pid")
    assert.equals(130, code)
    assert.is_true(aio.now() - t0 < 3)
  end)

  it("is reported in debug mode while it still runs, with its traceback", function()
    local out, err, code = run_busy([[
      local aio = require 'luaio'
      aio.set_debug(true, { slow_callback = 0.1 })
      local function spin() while true do end end
      spin()]], "sleep 0.5; kill -TERM $pid")
    assert.equals(143, code)
    assert.matches("slow task Task%-1 has been running for 0%.%d+ s without yielding %(still running%)", err)
    assert.matches("in %a+ 'spin'", err)
  end)
end)

describe("coroutine.close on a coroutine parked in a wait", function()
  it("is refused, so the task keeps what it is handed (here a lock)", function()
    local lock = aio.Lock()
    lock:acquire()
    local co = coroutine.create(function() local g <close> = lock:acquire() return "got it" end)
    local t = aio.spawn(function() return coroutine.resume(co) end)
    aio.sleep(0)
    local ok, err = pcall(coroutine.close, co)
    assert.is_false(ok)
    assert.matches("cannot close a coroutine that is waiting inside a task", err)
    lock:release()
    assert.same({ true, "got it" }, { t:wait() })
    assert.is_false(lock:locked())            -- released by the coroutine's <close>
    assert.is_true(coroutine.close(co))       -- a finished one closes as in Lua
  end)

  it("is refused for the coroutine of a pending task", function()
    local co
    local t = aio.spawn(function() co = coroutine.running() aio.sleep(0.02) return "done" end)
    aio.sleep(0.01)
    local ok, err = pcall(coroutine.close, co)
    assert.is_false(ok)
    assert.matches("cannot close the coroutine of a pending task", err)
    assert.equals("done", t:wait())
    assert.is_true(coroutine.close(co))
  end)
end)
