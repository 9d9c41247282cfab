-- Queue, PriorityQueue, LifoQueue (API.md §4).
local aio = require "luaio"
local testing = require "luaio.testing"
-- every test runs as a task on the virtual clock: its sleeps and timeouts take no real time
local it = function(name, body) return it(name, testing.it(body)) end

describe("Queue", function()
  it("is FIFO, with qsize/empty/full", function()
    local q = aio.Queue(3)
    assert.is_true(q:empty())
    for i = 1, 3 do q:put_nowait(i) end
    assert.equals(3, q:qsize())
    assert.is_true(q:full())
    assert.same({ 1, 2, 3 }, { q:get_nowait(), q:get_nowait(), q:get_nowait() })
  end)

  it("put_nowait raises QueueFull, get_nowait raises QueueEmpty", function()
    local q = aio.Queue(1)
    q:put_nowait("x")
    local ok, err = pcall(q.put_nowait, q, "y")
    assert.is_true(aio.is_error(err, "QueueFull"))
    q:get_nowait()
    ok, err = pcall(q.get_nowait, q)
    assert.is_true(aio.is_error(err, "QueueEmpty"))
  end)

  it("put waits while full, get waits while empty", function()
    local q = aio.Queue(2)
    local produced = 0
    local producer = aio.spawn(function()
      for i = 1, 10 do q:put(i) produced = i end
    end)
    aio.sleep(0.01)
    assert.equals(2, produced)
    local got = {}
    for i = 1, 10 do got[i] = q:get() end
    producer:wait()
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, got)
  end)

  it("hands every item to exactly one of several consumers", function()
    local q = aio.Queue(5)
    local seen, count = {}, 0
    local consumers = {}
    for c = 1, 4 do
      consumers[c] = aio.spawn(function()
        while true do
          local x = q:get()
          if x == "stop" then return end
          assert(not seen[x], "item seen twice")
          seen[x] = true
          count = count + 1
          q:task_done()
        end
      end)
    end
    for i = 1, 1000 do q:put(i) end
    q:join()
    assert.equals(1000, count)
    for c = 1, 4 do q:put("stop") end
    aio.gather(consumers)
  end)

  it("a cancelled getter loses no item", function()
    local q = aio.Queue()
    local a = aio.spawn(function() return q:get() end)
    local b = aio.spawn(function() return q:get() end)
    aio.sleep(0)
    q:put_nowait("only")     -- wakes a
    a:cancel()               -- before a runs
    assert.equals("only", aio.wait_for(b, 1))
    assert.is_true(a:cancelled())
  end)

  it("task_done and join", function()
    local q = aio.Queue()
    q:put_nowait(1)
    q:put_nowait(2)
    local joined = false
    local j = aio.spawn(function() q:join() joined = true end)
    q:get_nowait() q:task_done()
    aio.sleep(0.01)
    assert.is_false(joined)
    q:get_nowait() q:task_done()
    j:wait()
    assert.is_true(joined)
    local ok, err = pcall(q.task_done, q)
    assert.is_true(aio.is_error(err, "ValueError"))
  end)

  it("shutdown: put raises, get drains then raises, waiters wake", function()
    local q = aio.Queue()
    local waiting = aio.spawn(function() return pcall(q.get, q) end)
    aio.sleep(0)
    q:shutdown()
    local ok, err = waiting:wait()
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "QueueShutDown"))

    local q2 = aio.Queue()
    q2:put_nowait("a")
    q2:shutdown()
    ok, err = pcall(q2.put, q2, "b")
    assert.is_true(aio.is_error(err, "QueueShutDown"))
    assert.equals("a", q2:get())
    ok, err = pcall(q2.get, q2)
    assert.is_true(aio.is_error(err, "QueueShutDown"))
  end)

  it("shutdown(true) drops the items and releases join", function()
    local q = aio.Queue()
    for i = 1, 3 do q:put_nowait(i) end
    q:shutdown(true)
    assert.equals(0, q:qsize())
    q:join()
  end)

  it("get with a timeout", function()
    local q = aio.Queue()
    local ok, err = pcall(aio.timeout, 0.02, q.get, q)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    q:put_nowait(1)
    assert.equals(1, q:get())
  end)

  it("keeps FIFO order while the ring wraps around and grows", function()
    for _, maxsize in ipairs { 0, 3000 } do      -- unbounded; bounded beyond the first ring
      local q, nxt, want = aio.Queue(maxsize), 1, 1
      for round = 1, 6 do
        for _ = 1, 7 * round do q:put_nowait(nxt) nxt = nxt + 1 end
        for _ = 1, 3 * round do assert.equals(want, q:get_nowait()) want = want + 1 end
      end
      for _ = 1, 2000 do q:put(nxt) nxt = nxt + 1 end
      assert.equals(nxt - want, q:qsize())
      while not q:empty() do assert.equals(want, q:get()) want = want + 1 end
      assert.equals(nxt, want)
    end
  end)

  it("stores any value, false and nil too", function()
    local q = aio.Queue(3)
    q:put(false) q:put(nil) q:put_nowait("x")
    assert.equals(3, q:qsize())
    assert.same({ false, nil, "x" }, { q:get(), q:get_nowait(), q:get() })
  end)

  it("keeps no reference to an item taken", function()
    local q, lq = aio.Queue(), aio.LifoQueue()
    local seen = setmetatable({}, { __mode = "k" })
    for _, queue in ipairs { q, lq } do
      local item = {}
      seen[item] = true
      queue:put(item)
      assert.equals(item, queue:get())
    end
    collectgarbage() collectgarbage()
    assert.is_nil(next(seen))
  end)

  it("wakes waiting getters in the order they came", function()
    local q, got = aio.Queue(), {}
    local getters = {}
    for i = 1, 3 do getters[i] = aio.spawn(function()
      local x = q:get()
      got[#got + 1] = { i, x }
    end) end
    aio.sleep(0)
    for x = 1, 3 do q:put(x * 10) end
    aio.gather(getters)
    assert.same({ { 1, 10 }, { 2, 20 }, { 3, 30 } }, got)
  end)

  it("a getter cancelled while waiting leaves the line; the others keep their order", function()
    local q, got = aio.Queue(), {}
    local getters = {}
    for i = 1, 3 do
      getters[i] = aio.spawn(function()
        local x = q:get()
        got[#got + 1] = { i, x }
      end)
    end
    aio.sleep(0)
    getters[2]:cancel()
    aio.sleep(0)
    q:put("x") q:put("y")
    aio.gather({ getters[1], getters[3] })
    assert.is_true(getters[2]:cancelled())
    assert.same({ { 1, "x" }, { 3, "y" } }, got)
    assert.is_nil(next(q._getters))
  end)

  it("the native core refuses what is not a queue's core", function()
    local core = require "luaio.core"
    local ok, err = pcall(core.queue_state, {})
    assert.is_false(ok)
    assert.matches("luaio.queue_core expected, got table", err)
    ok, err = pcall(core.queue_wait, aio.Queue()._core, "peek", aio.current_task())
    assert.is_false(ok)
    assert.matches("invalid option 'peek'", err)
  end)

  it("a cancelled putter passes the room on", function()
    local q = aio.Queue(1)
    q:put("first")
    local a = aio.spawn(function() q:put("a") end)
    local b = aio.spawn(function() q:put("b") end)
    aio.sleep(0)
    assert.equals("first", q:get_nowait())   -- wakes a
    a:cancel()                                -- before a runs
    b:wait()
    assert.is_true(a:cancelled())
    assert.equals("b", q:get_nowait())
    assert.is_true(q:empty())
  end)

  it("put with a timeout", function()
    local q = aio.Queue(1)
    q:put(1)
    local ok, err = pcall(aio.timeout, 0.02, q.put, q, 2)
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    assert.equals(1, q:qsize())
    assert.equals(1, q:get())
    q:put_nowait(3)                           -- no stale putter took the room
    assert.same({ 3 }, { q:get_nowait() })
  end)

  it("put and get called with another queue as self act on that one", function()
    local q1, q2 = aio.Queue(), aio.LifoQueue()
    q1.put(q2, "x")
    assert.equals(0, q1:qsize())
    assert.equals("x", q1.get(q2))
    local ok, err = pcall(q1.get, aio.Lock())
    assert.is_false(ok)
    assert.matches("luaio.Queue expected, got luaio.Lock", err)
  end)

  it("rejects a bad maxsize", function()
    assert.has_error(function() aio.Queue("big") end)
  end)
end)

describe("PriorityQueue and LifoQueue", function()
  it("PriorityQueue orders by x[1] for tables, by x otherwise, stable on ties", function()
    local q = aio.PriorityQueue()
    q:put_nowait({ 3, "c" })
    q:put_nowait({ 1, "a1" })
    q:put_nowait({ 2, "b" })
    q:put_nowait({ 1, "a2" })
    local out = {}
    while not q:empty() do out[#out + 1] = q:get_nowait()[2] end
    assert.same({ "a1", "a2", "b", "c" }, out)
    local p = aio.PriorityQueue()
    for _, x in ipairs { 5, 1, 4, 2, 3 } do p:put(x) end
    out = {}
    for i = 1, 5 do out[i] = p:get() end
    assert.same({ 1, 2, 3, 4, 5 }, out)
  end)

  it("PriorityQueue: an item that cannot be ordered raises and leaves the queue as it was", function()
    local q = aio.PriorityQueue()
    q:put_nowait(5)
    q:put_nowait(1)
    q:put_nowait(3)
    for _, bad in ipairs { {}, "x", { "x" }, 0 / 0, true } do
      local ok, err = pcall(function() q:put_nowait(bad) end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'put_nowait'", err, 1, true)
      ok, err = pcall(function() q:put(bad) end)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'put'", err, 1, true)
      assert.equals(3, q:qsize())
    end
    local ok, err = pcall(function() q:put_nowait("x") end)
    assert.equals("spec/queue_spec.lua:" .. (debug.getinfo(1, "l").currentline - 1) ..
      ": bad argument #1 to 'put_nowait' (cannot order the item among the queued ones " ..
      "(attempt to compare string with number))", err)
    q:put_nowait(2)
    assert.same({ 1, 2, 3, 5 }, { q:get(), q:get(), q:get_nowait(), q:get_nowait() })
    assert.is_true(q:empty())
    -- tables order by x[1]; one without x[1] has no priority
    q:put_nowait({ 2, "b" })
    ok, err = pcall(function() q:put_nowait({ nil, "none" }) end)
    assert.matches("priority", err)
    assert.equals(1, q:qsize())
    assert.equals("b", q:get()[2])
    assert.equals(0, q:qsize())
  end)

  it("PriorityQueue: a key whose __lt fails at get leaves the queue as it was", function()
    local fail = false
    local K = { __lt = function(a, b) if fail then error("no order today") end return a.v < b.v end,
                __eq = function(a, b) return a.v == b.v end }
    local function key(v) return setmetatable({ v = v }, K) end
    local q = aio.PriorityQueue()
    for _, v in ipairs { 4, 2, 3, 1 } do q:put_nowait({ key(v), v }) end
    fail = true
    local ok, err = pcall(q.get_nowait, q)
    assert.is_false(ok)
    assert.matches("no order today", err)
    assert.equals(4, q:qsize())
    fail = false
    local out = {}
    while not q:empty() do out[#out + 1] = q:get()[2] end
    assert.same({ 1, 2, 3, 4 }, out)
  end)

  it("shutdown(true) on a PriorityQueue or LifoQueue drops every item (no ordering needed)", function()
    for _, make in ipairs { aio.PriorityQueue, aio.LifoQueue } do
      local q = make()
      for i = 1, 100 do q:put_nowait((i * 37) % 101) end
      q:shutdown(true)
      assert.equals(0, q:qsize())
      q:join()
      local ok, err = pcall(q.get_nowait, q)
      assert.is_true(aio.is_error(err, "QueueShutDown"))
    end
  end)

  it("LifoQueue is last in, first out", function()
    local q = aio.LifoQueue(3)
    for i = 1, 3 do q:put(i) end
    assert.is_true(q:full())
    assert.same({ 3, 2, 1 }, { q:get(), q:get(), q:get() })
  end)
end)
