-- Lock, Semaphore, BoundedSemaphore, Event, Condition (API.md §4).
local aio = require "luaio"

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
