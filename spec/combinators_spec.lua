-- Combinators (API.md §2): gather, wait_for, timeout, wait, as_completed,
-- shield, task_group.
local aio = require "luaio"
local testing = require "luaio.testing"
-- every test runs as a task on the virtual clock: its sleeps and timeouts take no real time
local it = function(name, body) return it(name, testing.it(body)) end

local function sleeper(sec, value) return function() aio.sleep(sec) return value end end
local function failer(sec, err) return function() aio.sleep(sec) error(err, 0) end end

describe("gather", function()
  it("returns first results in input order, keeping nils by index", function()
    local r = aio.gather { sleeper(0.03, "a"), sleeper(0.01, nil), sleeper(0.02, "c") }
    assert.equals(3, r.n)
    assert.equals("a", r[1])
    assert.is_nil(r[2])
    assert.equals("c", r[3])
  end)

  it("accepts tasks and functions, and an empty list", function()
    local t = aio.spawn(function() return 1 end)
    local r = aio.gather { t, function() return 2 end }
    assert.same({ 1, 2, n = 2 }, r)
    assert.same({ n = 0 }, aio.gather {})
  end)

  it("runs items concurrently", function()
    local t0 = aio.now()
    aio.gather { sleeper(0.1), sleeper(0.1), sleeper(0.1), sleeper(0.1) }
    assert.is_true(aio.now() - t0 < 0.3)
  end)

  it("raises the first error and cancels the pending items", function()
    local slow = aio.spawn(sleeper(5))
    local ok, err = pcall(aio.gather, { slow, failer(0.01, "bad"), sleeper(0.02, 1) })
    assert.is_false(ok)
    assert.equals("bad", err)
    aio.sleep(0)
    assert.is_true(slow:cancelled())
  end)

  it("with return_exceptions puts errors in their slots and does not raise", function()
    local r = aio.gather({ sleeper(0.01, "ok"), failer(0.01, "e1"), failer(0, "e2") }, { return_exceptions = true })
    assert.same({ "ok", "e1", "e2", n = 3 }, r)
  end)

  it("cancelling the gathering task cancels every item", function()
    local a, b = aio.spawn(sleeper(5)), aio.spawn(sleeper(5))
    local g = aio.spawn(function() return aio.gather { a, b } end)
    aio.sleep(0.01)
    g:cancel()
    local ok, err = pcall(g.wait, g)
    assert.is_true(aio.is_error(err, "CancelledError"))
    aio.sleep(0)
    assert.is_true(a:cancelled() and b:cancelled())
  end)

  it("rejects bad items with a clear error", function()
    assert.has_error(function() aio.gather { 42 } end, nil)
    local ok, err = pcall(aio.gather, { 42 })
    assert.equals("bad argument #1 to 'aio.gather' (item 1: Task or function expected, got number)", err)
    ok, err = pcall(aio.gather, "x")
    assert.matches("array of tasks or functions expected", err)
  end)

  it("gathers 100,000 tasks", function()
    local fns = {}
    local n = 100000
    for i = 1, n do fns[i] = function() aio.sleep(0) return i end end
    local r = aio.gather(fns)
    assert.equals(n, r.n)
    assert.equals(1, r[1])
    assert.equals(n, r[n])
    local sum = 0
    for i = 1, n do sum = sum + r[i] end
    assert.equals(n * (n + 1) // 2, sum)
  end)

  it("counts a task listed twice twice, and gives its result in both slots", function()
    local t = aio.spawn(sleeper(0.02, "twice"))
    local r = aio.gather { t, sleeper(0.01, "other"), t }
    assert.same({ n = 3, "twice", "other", "twice" }, r)
  end)

  it("with already finished tasks: results at once, a failed one raises without waiting", function()
    local done = aio.spawn(function() return "early" end)
    local failed = aio.spawn(function() error("gone", 0) end)
    aio.sleep(0)
    assert.same({ n = 1, "early" }, aio.gather { done })
    local slow = aio.spawn(sleeper(10, "late"))
    local t0 = aio.now()
    local ok, err = pcall(aio.gather, { slow, failed })
    assert.is_false(ok)
    assert.equals("gone", err)
    assert.equals(t0, aio.now())
    aio.sleep(0)
    assert.equals("cancelled", slow:status())
    local r = aio.gather({ done, failed }, { return_exceptions = true })
    assert.equals("early", r[1])
    assert.equals("gone", r[2])
  end)

  it("a task ending after the gather raised wakes nothing", function()
    local late = aio.spawn(failer(0.02, "late failure"))
    local ok, err = pcall(aio.gather, { failer(0.01, "first"), late })
    assert.is_false(ok)
    assert.equals("first", err)
    aio.sleep(0)
    assert.equals("cancelled", late:status())
    -- the gathering task goes on waiting for something else, undisturbed
    local q = aio.Queue()
    aio.spawn(function() aio.sleep(0.05) q:put("mine") end)
    assert.equals("mine", q:get())
  end)

  it("the gathering task waits on the gather in its traceback", function()
    local gatherer = aio.spawn(aio.gather, { sleeper(1) })
    aio.sleep(0)
    assert.matches("gather", gatherer:traceback())
    gatherer:cancel()
    aio.sleep(0)
    assert.equals("cancelled", gatherer:status())
  end)
end)

describe("wait_for", function()
  it("returns the results within the deadline", function()
    assert.equals("v", aio.wait_for(sleeper(0.01, "v"), 1))
  end)

  it("cancels the item on expiry, waits for it, raises TimeoutError", function()
    local cleaned = false
    local t = aio.spawn(function()
      local ok = pcall(aio.sleep, 5)
      aio.sleep(0.02)               -- slow cleanup: wait_for waits for it
      cleaned = true
    end)
    local ok, err = pcall(aio.wait_for, t, 0.02)
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    assert.is_true(cleaned)
    assert.is_true(t:done())
  end)

  it("passes the item's error through", function()
    local ok, err = pcall(aio.wait_for, failer(0, "inner"), 1)
    assert.equals("inner", err)
  end)

  it("cancelling the waiter cancels the item", function()
    local t = aio.spawn(sleeper(5))
    local w = aio.spawn(function() return aio.wait_for(t, 10) end)
    aio.sleep(0.01)
    w:cancel()
    pcall(w.wait, w)
    aio.sleep(0)
    assert.is_true(t:cancelled())
  end)

  it("rejects a bad timeout", function()
    local ok, err = pcall(aio.wait_for, sleeper(0), "soon")
    assert.equals("bad argument #2 to 'aio.wait_for' (number of seconds expected, got string)", err)
  end)

  it("works around Queue:get as the manual says", function()
    local q = aio.Queue()
    local ok, err = pcall(aio.wait_for, function() return q:get() end, 0.02)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    aio.spawn(function() aio.sleep(0.01) q:put("x") end)
    assert.equals("x", aio.timeout(1, q.get, q))
  end)
end)

describe("timeout", function()
  it("returns fn's results when in time", function()
    local a, b = aio.timeout(1, function(x) aio.sleep(0.01) return x, "y" end, "x")
    assert.equals("x", a)
    assert.equals("y", b)
  end)

  it("raises TimeoutError when the deadline cancels fn, and cleanup runs", function()
    local cleaned = false
    local ok, err = pcall(aio.timeout, 0.02, function()
      local _ <close> = setmetatable({}, { __close = function() cleaned = true end })
      aio.sleep(5)
    end)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    assert.is_true(cleaned)
    assert.equals(0, aio.current_task():cancelling())
    aio.sleep(0.01)          -- no stray cancellation left behind
  end)

  it("nested: the innermost expired one is reported", function()
    local ok, err = pcall(aio.timeout, 1, function()
      return aio.timeout(0.02, aio.sleep, 5)
    end)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    assert.equals(0.02, err.timeout)
    -- outer expires first: the outer one reports
    ok, err = pcall(aio.timeout, 0.02, function()
      return aio.timeout(1, aio.sleep, 5)
    end)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    assert.equals(0.02, err.timeout)
  end)

  it("an outside cancellation stays a CancelledError", function()
    local t = aio.spawn(function() return aio.timeout(5, aio.sleep, 10) end)
    aio.sleep(0.01)
    t:cancel()
    local ok, err = pcall(t.wait, t)
    assert.is_true(aio.is_error(err, "CancelledError"))
  end)

  it("user errors pass through unchanged", function()
    local ok, err = pcall(aio.timeout, 1, function() error("mine") end)
    assert.matches("combinators_spec.lua:%d+: mine", err)
  end)

  it("rejects bad arguments", function()
    assert.has_error(function() aio.timeout(1, 42) end)
    assert.has_error(function() aio.timeout("x", print) end)
  end)
end)

describe("wait", function()
  it("ALL_COMPLETED by default, cancels nothing", function()
    local done, pending = aio.wait { sleeper(0.01), sleeper(0.02) }
    assert.equals(2, #done)
    assert.equals(0, #pending)
  end)

  it("FIRST_COMPLETED and timeout", function()
    local slow = aio.spawn(sleeper(5))
    local done, pending = aio.wait({ slow, sleeper(0.01, 1) }, { return_when = "FIRST_COMPLETED" })
    assert.equals(1, #done)
    assert.equals(slow, pending[1])
    done, pending = aio.wait({ slow }, { timeout = 0.02 })
    assert.equals(0, #done)
    assert.equals(1, #pending)
    assert.is_false(slow:done())
    slow:cancel()
  end)

  it("FIRST_EXCEPTION", function()
    local done, pending = aio.wait({ sleeper(5), failer(0.01, "x"), sleeper(5) }, { return_when = "FIRST_EXCEPTION" })
    assert.equals(1, #done)
    assert.equals("x", done[1]:error())
    for _, t in ipairs(pending) do t:cancel() end
  end)

  it("rejects an unknown return_when", function()
    local ok, err = pcall(aio.wait, {}, { return_when = "SOMETIMES" })
    assert.matches("return_when", err)
  end)
end)

describe("as_completed", function()
  it("yields tasks in completion order", function()
    local order = {}
    for t in aio.as_completed { sleeper(0.03, 3), sleeper(0.01, 1), sleeper(0.02, 2) } do
      order[#order + 1] = t:wait()
    end
    assert.same({ 1, 2, 3 }, order)
  end)

  it("raises TimeoutError when the timeout passes", function()
    local got = {}
    local ok, err = pcall(function()
      for t in aio.as_completed({ sleeper(0.01, "fast"), sleeper(5) }, 0.05) do got[#got + 1] = t:wait() end
    end)
    assert.same({ "fast" }, got)
    assert.is_true(aio.is_error(err, "TimeoutError"))
  end)
end)

describe("shield", function()
  it("cancelling the waiter does not cancel the task", function()
    local t = aio.spawn(sleeper(0.05, "kept"))
    local w = aio.spawn(function() return aio.shield(t) end)
    aio.sleep(0.01)
    w:cancel()
    local ok, err = pcall(w.wait, w)
    assert.is_true(aio.is_error(err, "CancelledError"))
    assert.equals("kept", t:wait())
  end)
end)

describe("task_group", function()
  it("returns when every child is done", function()
    local results = {}
    aio.task_group(function(tg)
      for i = 1, 3 do tg:spawn(function() aio.sleep(0.01 * i) results[i] = i end) end
    end)
    assert.same({ 1, 2, 3 }, results)
  end)

  it("the first child error cancels siblings and body, then is raised", function()
    local sibling_cancelled, body_cancelled = false, false
    local ok, err = pcall(aio.task_group, function(tg)
      tg:spawn(function()
        local ok2, e = pcall(aio.sleep, 5)
        sibling_cancelled = aio.is_error(e, "CancelledError")
      end)
      tg:spawn(failer(0.01, "child failed"))
      local ok3, e = pcall(aio.sleep, 5)
      body_cancelled = aio.is_error(e, "CancelledError")
      error(e, 0)
    end)
    assert.is_false(ok)
    assert.equals("child failed", err)
    assert.is_true(sibling_cancelled)
    assert.is_true(body_cancelled)
    assert.equals(0, aio.current_task():cancelling())
  end)

  it("several child errors are listed in err.errors", function()
    local ok, err = pcall(aio.task_group, function(tg)
      tg:spawn(function() aio.sleep(0.01) error(aio.new_error("ValueError", "one"), 0) end)
      -- a sibling whose cleanup fails too
      tg:spawn(function() pcall(aio.sleep, 5) error(aio.new_error("ValueError", "two"), 0) end)
    end)
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "TaskGroupError"))
    assert.equals("one", err.errors[1].message)
    assert.equals("two", err.errors[2].message)
    assert.equals(err.errors[1], err.first)
    assert.is_nil(err.errors[1].errors)     -- the children's errors pass unchanged
    assert.equals(2, #err.errors)
  end)

  it("refuses spawns after it finished", function()
    local saved
    aio.task_group(function(tg) saved = tg end)
    assert.has_error(function() saved:spawn(print) end)
    local ok, err = pcall(function() aio.task_group(42) end)
    assert.matches("^spec/combinators_spec.lua:%d+: bad argument #1 to 'aio.task_group' %(function expected, got number%)$", err)
  end)

  it("an outside cancellation cancels the children and propagates", function()
    local child
    local t = aio.spawn(function()
      aio.task_group(function(tg) child = tg:spawn(sleeper(5)) aio.sleep(5) end)
    end)
    aio.sleep(0.01)
    t:cancel()
    local ok, err = pcall(t.wait, t)
    assert.is_true(aio.is_error(err, "CancelledError"))
    assert.is_true(child:cancelled())
  end)
end)
