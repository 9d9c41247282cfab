-- Lock, Semaphore, BoundedSemaphore, Event, Condition (API.md §4).
local aio = require "luaio"
local testing = require "luaio.testing"
-- every test runs as a task on the virtual clock: its sleeps and timeouts take no real time
local it = function(name, body) return it(name, testing.it(body)) end

describe("Lock", function()
  it("excludes, and hands over in FIFO order", function()
    local lock = aio.Lock()
    local order, inside, max_inside = {}, 0, 0
    local ts = {}
    for i = 1, 5 do
      ts[i] = aio.spawn(function()
        local _ <close> = lock:acquire()
        inside = inside + 1
        max_inside = math.max(max_inside, inside)
        order[#order + 1] = i
        aio.sleep(0.005)
        inside = inside - 1
      end)
    end
    aio.gather(ts)
    assert.equals(1, max_inside)
    assert.same({ 1, 2, 3, 4, 5 }, order)
    assert.is_false(lock:locked())
  end)

  it("acquire/release by hand; release of an unlocked lock raises", function()
    local lock = aio.Lock()
    lock:acquire()
    assert.is_true(lock:locked())
    lock:release()
    assert.is_false(lock:locked())
    local ok, err = pcall(lock.release, lock)
    assert.is_true(aio.is_error(err, "RuntimeError"))
  end)

  it("a cancelled waiter leaves the queue and loses nothing", function()
    local lock = aio.Lock()
    lock:acquire()
    local a = aio.spawn(function() lock:acquire() lock:release() return "a" end)
    local b = aio.spawn(function() local _ <close> = lock:acquire() return "b" end)
    aio.sleep(0)
    a:cancel()
    aio.sleep(0)
    lock:release()
    assert.equals("b", aio.wait_for(b, 1))
    assert.is_true(a:cancelled())
    assert.is_false(lock:locked())
  end)

  it("a waiter handed the lock and then cancelled passes it on", function()
    local lock = aio.Lock()
    lock:acquire()
    local a = aio.spawn(function() lock:acquire() return "a" end)
    local b = aio.spawn(function() local _ <close> = lock:acquire() return "b" end)
    aio.sleep(0)
    lock:release()           -- handed to a, which has not run yet
    a:cancel()
    assert.equals("b", aio.wait_for(b, 1))
    assert.is_false(lock:locked())
  end)

  it("waits with a timeout through aio.timeout", function()
    local lock = aio.Lock()
    lock:acquire()
    local ok, err = pcall(aio.timeout, 0.02, lock.acquire, lock)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    lock:release()
    assert.is_false(lock:locked())
  end)
end)

describe("Semaphore", function()
  it("limits concurrency to n", function()
    local sem = aio.Semaphore(3)
    local running, peak = 0, 0
    local fns = {}
    for i = 1, 10 do
      fns[i] = function()
        return sem:run(function()
          running = running + 1
          peak = math.max(peak, running)
          aio.sleep(0.005)
          running = running - 1
          return i
        end)
      end
    end
    local r = aio.gather(fns)
    assert.equals(3, peak)
    assert.equals(10, r[10])
    assert.equals(3, sem:value())
  end)

  it("guards release through <close>", function()
    local sem = aio.Semaphore(1)
    do
      local _ <close> = sem:acquire()
      assert.equals(0, sem:value())
      assert.is_true(sem:locked())
    end
    assert.equals(1, sem:value())
  end)

  it("bounded raises on over-release; plain does not", function()
    local b = aio.BoundedSemaphore(1)
    local ok, err = pcall(b.release, b)
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "ValueError"))
    local s = aio.Semaphore(1)
    s:release()
    assert.equals(2, s:value())
  end)

  it("rejects a bad initial value", function()
    assert.has_error(function() aio.Semaphore(-1) end)
    assert.has_error(function() aio.Semaphore("x") end)
  end)

  it("sem:run releases when fn fails", function()
    local sem = aio.Semaphore(1)
    local ok, err = pcall(sem.run, sem, function() error("inside") end)
    assert.is_false(ok)
    assert.matches("inside", err)
    assert.equals(1, sem:value())
  end)

  it("cancelled waiters do not leak permits", function()
    local sem = aio.Semaphore(1)
    sem:acquire()
    local ts = {}
    for i = 1, 3 do ts[i] = aio.spawn(function() sem:acquire() sem:release() end) end
    aio.sleep(0)
    ts[2]:cancel()
    sem:release()
    aio.gather({ ts[1], ts[3] })
    assert.equals(1, sem:value())
  end)
end)

describe("Event", function()
  it("wakes every waiter when set", function()
    local ev = aio.Event()
    local woke = 0
    local ts = {}
    for i = 1, 4 do ts[i] = aio.spawn(function() ev:wait() woke = woke + 1 end) end
    aio.sleep(0.01)
    assert.equals(0, woke)
    assert.is_false(ev:is_set())
    ev:set()
    aio.gather(ts)
    assert.equals(4, woke)
    assert.is_true(ev:wait())
    ev:clear()
    assert.is_false(ev:is_set())
  end)

  it("a cancelled waiter raises CancelledError", function()
    local ev = aio.Event()
    local t = aio.spawn(function() ev:wait() end)
    aio.sleep(0)
    t:cancel()
    local ok, err = pcall(t.wait, t)
    assert.is_true(aio.is_error(err, "CancelledError"))
    ev:set()
  end)
end)

describe("Condition", function()
  it("wait/notify with the lock held, wait_for a predicate", function()
    local cond = aio.Condition()
    local items = {}
    local consumer = aio.spawn(function()
      local _ <close> = cond:acquire()
      cond:wait_for(function() return #items >= 2 end)
      return #items
    end)
    for i = 1, 2 do
      aio.sleep(0.005)
      local _ <close> = cond:acquire()
      items[#items + 1] = i
      cond:notify()
    end
    assert.equals(2, consumer:wait())
  end)

  it("notify_all wakes everyone; wait re-acquires the lock", function()
    local cond = aio.Condition(aio.Lock())
    local n = 0
    local ts = {}
    for i = 1, 3 do
      ts[i] = aio.spawn(function()
        cond:acquire()
        cond:wait()
        assert(cond:locked())
        n = n + 1
        cond:release()
      end)
    end
    aio.sleep(0.01)
    cond:acquire()
    cond:notify_all()
    cond:release()
    aio.gather(ts)
    assert.equals(3, n)
  end)

  it("wait without the lock raises", function()
    local cond = aio.Condition()
    local ok, err = pcall(cond.wait, cond)
    assert.is_true(aio.is_error(err, "RuntimeError"))
  end)

  it("a cancelled waiter still re-acquires the lock before raising", function()
    local cond = aio.Condition()
    local held
    local t = aio.spawn(function()
      cond:acquire()
      local ok, err = pcall(cond.wait, cond)
      held = cond:locked()
      cond:release()
      error(err, 0)
    end)
    aio.sleep(0)
    t:cancel()
    pcall(t.wait, t)
    assert.is_true(held)
    assert.is_false(cond:locked())
  end)
end)

-- Strict FIFO (API.md §3b): a released permit goes to the oldest waiter,
-- even when the releasing task asks again at once (asyncio's test_locks.py).
describe("FIFO fairness", function()
  it("Lock: the releasing task asking again at once queues behind the waiters", function()
    local lock = aio.Lock()
    local order = {}
    lock:acquire()
    local ts = {}
    for _, name in ipairs { "a", "b", "c" } do
      ts[#ts + 1] = aio.spawn(function()
        local _ <close> = lock:acquire()
        order[#order + 1] = name
      end)
    end
    aio.sleep(0)
    lock:release()
    lock:acquire()               -- at once, before a has run
    order[#order + 1] = "main"
    lock:release()
    aio.gather(ts)
    assert.same({ "a", "b", "c", "main" }, order)
  end)

  it("Semaphore: the releasing task asking again at once queues behind the waiters", function()
    local sem = aio.Semaphore(1)
    local order = {}
    sem:acquire()
    local ts = {}
    for _, name in ipairs { "a", "b" } do
      ts[#ts + 1] = aio.spawn(function() sem:run(function() order[#order + 1] = name end) end)
    end
    aio.sleep(0)
    sem:release()
    sem:acquire()
    order[#order + 1] = "main"
    sem:release()
    aio.gather(ts)
    assert.same({ "a", "b", "main" }, order)
    assert.equals(1, sem:value())
  end)

  it("Semaphore: a free permit does not go past a waiter woken but not yet resumed", function()
    local sem = aio.Semaphore(2)
    local order = {}
    sem:acquire()
    sem:acquire()
    local b = aio.spawn(function()
      sem:acquire()
      order[#order + 1] = "b"
      sem:release()
    end)
    aio.sleep(0)                 -- b waits
    sem:release()                -- handed to b, which has not run yet
    sem:release()                -- a free permit ...
    assert.is_true(sem:locked()) -- ... but b counts as a waiter until it runs
    sem:acquire()                -- so this waits for b to go first
    order[#order + 1] = "main"
    sem:release()
    b:wait()
    assert.same({ "b", "main" }, order)
    assert.equals(2, sem:value())
    assert.is_false(sem:locked())
  end)

  it("Semaphore: many tasks cycling through keep their turn, permits are conserved", function()
    local sem = aio.Semaphore(2)
    local waiting, violations = {}, 0
    local seq = 0
    local tasks = {}
    for i = 1, 6 do
      tasks[i] = aio.spawn(function()
        for _ = 1, 20 do
          seq = seq + 1
          waiting[i] = seq
          local g <close> = sem:acquire()
          local mine = waiting[i]
          waiting[i] = nil
          for _, s in pairs(waiting) do if s < mine then violations = violations + 1 end end
          if i % 2 == 0 then aio.sleep(0) end
        end
      end)
    end
    aio.gather(tasks)
    assert.equals(0, violations)
    assert.equals(2, sem:value())
  end)

  it("Semaphore: waiters handed permits and then cancelled pass them on in order", function()
    local sem = aio.Semaphore(0)
    local order = {}
    local ts = {}
    for i = 1, 4 do
      ts[i] = aio.spawn(function()
        sem:acquire()
        order[#order + 1] = i
      end)
    end
    aio.sleep(0)
    sem:release()                -- to 1
    sem:release()                -- to 2
    ts[1]:cancel()               -- woken, not yet run: its permit goes to 3
    aio.sleep(0)
    aio.sleep(0)
    assert.same({ 2, 3 }, order)
    assert.is_true(ts[1]:cancelled())
    sem:release()
    ts[4]:wait()
    assert.same({ 2, 3, 4 }, order)
    assert.equals(0, sem:value())
  end)

  it("Semaphore: a waiter cancelled before its turn costs nothing; BoundedSemaphore keeps its bound", function()
    local sem = aio.BoundedSemaphore(1)
    sem:acquire()
    local a = aio.spawn(function() local _ <close> = sem:acquire() return "a" end)
    local b = aio.spawn(function() local _ <close> = sem:acquire() return "b" end)
    aio.sleep(0)
    a:cancel()
    sem:release()
    assert.equals("b", b:wait())
    assert.is_true(a:cancelled())
    assert.equals(1, sem:value())
    assert.is_true(aio.is_error(select(2, pcall(sem.release, sem)), "ValueError"))
  end)

  it("Condition: notify wakes the oldest waiters first", function()
    local cond = aio.Condition()
    local order = {}
    local ts = {}
    for i = 1, 4 do
      ts[i] = aio.spawn(function()
        local _ <close> = cond:acquire()
        cond:wait()
        order[#order + 1] = i
      end)
    end
    aio.sleep(0)
    for _ = 1, 4 do
      cond:acquire()
      cond:notify(1)
      cond:release()
      aio.sleep(0)
    end
    aio.gather(ts)
    assert.same({ 1, 2, 3, 4 }, order)
  end)

  it("Condition: a waiter notified then cancelled passes the notification on", function()
    local cond = aio.Condition()
    local a = aio.spawn(function() local _ <close> = cond:acquire() cond:wait() return "a" end)
    local b = aio.spawn(function() local _ <close> = cond:acquire() cond:wait() return "b" end)
    aio.sleep(0)
    cond:acquire()
    cond:notify(1)               -- wakes a
    cond:release()               -- the lock is free when a learns it is cancelled
    a:cancel()
    local ok, err = pcall(a.wait, a)
    assert.is_true(aio.is_error(err, "CancelledError"))
    assert.equals("b", aio.wait_for(b, 1))
    assert.is_false(cond:locked())
  end)

  it("Condition: wait_for re-checks its predicate and notify_all keeps the order", function()
    local cond = aio.Condition()
    local n, order = 0, {}
    local ts = {}
    for i = 1, 3 do
      ts[i] = aio.spawn(function()
        local _ <close> = cond:acquire()
        cond:wait_for(function() return n > 0 end)
        order[#order + 1] = i
      end)
    end
    aio.sleep(0)
    cond:acquire()
    cond:notify_all()            -- predicate still false: they wait again
    cond:release()
    aio.sleep(0)
    assert.same({}, order)
    cond:acquire()
    n = 1
    cond:notify_all()
    cond:release()
    aio.gather(ts)
    assert.same({ 1, 2, 3 }, order)
  end)
end)

-- A user coroutine parked in a wait (API.md §8): the host's coroutine.close
-- refuses it (src/coro.c; Lua's own close is not reachable from Lua), so the
-- waiter keeps its place and what it is handed.
describe("a coroutine closed while it waits", function()
  -- runs `wait` in a coroutine created and resumed inside a new task;
  -- returns the task and the coroutine, parked
  local function park(wait)
    local co
    local t = aio.spawn(function()
      co = coroutine.create(wait)
      return coroutine.resume(co)
    end)
    aio.sleep(0)
    assert.equals("suspended", coroutine.status(co))
    return t, co
  end

  it("coroutine.close refuses, and the waiter keeps its place", function()
    local lock = aio.Lock()
    lock:acquire()
    local t, co = park(function() local _ <close> = lock:acquire() return "got" end)
    local ok, err = pcall(coroutine.close, co)
    assert.is_false(ok)
    assert.matches("cannot close a coroutine", err)
    lock:release()
    assert.same({ true, "got" }, { aio.wait_for(t, 1) })
    assert.is_false(lock:locked())
  end)

  it("the refusal cannot be bypassed through Lua's own close", function()
    assert.is_nil(debug.getupvalue(coroutine.close, 1))
    -- and it closes what Lua's close closes, as Lua's does
    local closed = false
    local co = coroutine.create(function() local _ <close> = setmetatable({}, { __close = function() closed = true end }) coroutine.yield() end)
    coroutine.resume(co)
    assert.is_true(coroutine.close(co))
    assert.is_true(closed)
    assert.equals("dead", coroutine.status(co))
    local failing = coroutine.create(function() local _ <close> = setmetatable({}, { __close = function() error("in close", 0) end }) coroutine.yield() end)
    coroutine.resume(failing)
    assert.same({ false, "in close" }, { coroutine.close(failing) })
    local ok, err = coroutine.wrap(function() return pcall(coroutine.close, coroutine.running()) end)()
    assert.same({ false, "cannot close a running coroutine" }, { ok, err })
  end)
end)
