-- luaio.testing: the virtual clock (API.md §15; the rules: src/vclock.c,
-- docs/manual-testing.md). The busted run is a task on the real clock; each
-- test body wrapped in testing.it runs as a task on a virtual one.
local aio = require "luaio"
local testing = require "luaio.testing"
local S = require "spec.support"
local P = require "spec.lib.peers"

local vit = function(name, body) return it(name, testing.it(body)) end

local raises = require("spec.lib.expect").raises

describe("the virtual clock", function()
  vit("starts at 0; sleep(3600) returns at once with now() == 3600", function()
    assert.equals(0, aio.now())
    aio.sleep(3600)
    assert.equals(3600, aio.now())
    aio.sleep(0.7)
    assert.equals(3600.7, aio.now())
  end)

  it("is off again after the run: advance says so", function()
    testing.it(function() aio.sleep(10) end)()
    local ok, err = pcall(testing.advance, 1)
    assert.is_false(ok)
    assert.matches("the clock is not virtual", err)
  end)

  vit("aio.timeout expires on it, nested: the innermost expired is reported", function()
    local cleaned
    local err = raises("TimeoutError", aio.timeout, 5, function()
      local ok, e = pcall(aio.sleep, 10)
      cleaned = aio.now()
      error(e, 0)
    end)
    assert.equals(5, cleaned)
    assert.matches("5 s", err.message)
    err = raises("TimeoutError", aio.timeout, 30, function() return aio.timeout(2, aio.sleep, 100) end)
    assert.matches("2 s", err.message)
    assert.equals(7, aio.now())
    assert.same({ "v" }, { aio.timeout(10, function() aio.sleep(9.999) return "v" end) })
  end)

  vit("wait_for cancels at the deadline and waits for the item's cleanup", function()
    local t = aio.spawn(function()
      local ok, err = pcall(aio.sleep, 100)
      aio.sleep(1)                  -- slow cleanup, on the same clock
      error(err, 0)
    end)
    raises("TimeoutError", aio.wait_for, t, 3)
    assert.equals(4, aio.now())
    assert.is_true(t:cancelled())
    assert.equals("in time", aio.wait_for(function() aio.sleep(2) return "in time" end, 2.001))
  end)

  vit("as_completed: completion order, then TimeoutError", function()
    local function after(sec, v) return function() aio.sleep(sec) return v end end
    local got = {}
    for t in aio.as_completed({ after(3, "c"), after(1, "a"), after(2, "b") }) do got[#got + 1] = t:wait() end
    assert.same({ "a", "b", "c" }, got)
    got = {}
    local ok, err = pcall(function()
      for t in aio.as_completed({ after(1, "x"), after(10, "y"), after(2, "z") }, 2.5) do got[#got + 1] = t:wait() end
    end)
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    assert.same({ "x", "z" }, got)
    assert.equals(5.5, aio.now())
  end)

  vit("queues: a get with a deadline times out, or gets what comes in time; nothing lost", function()
    local q = aio.Queue()
    raises("TimeoutError", aio.wait_for, function() return q:get() end, 2)
    assert.equals(2, aio.now())
    aio.spawn(function() aio.sleep(1) q:put("x") end)
    assert.equals("x", aio.timeout(5, q.get, q))
    assert.equals(3, aio.now())
    q:put("kept")
    assert.equals("kept", q:get_nowait())
    local bounded = aio.Queue(1)
    bounded:put(1)
    raises("TimeoutError", aio.timeout, 4, bounded.put, bounded, 2)
    assert.equals(1, bounded:qsize())
  end)

  vit("Lock and Semaphore acquire with a timeout; the primitive stays consistent", function()
    local lock = aio.Lock()
    local holder = aio.spawn(function() local _ <close> = lock:acquire() aio.sleep(10) end)
    aio.sleep(0)
    raises("TimeoutError", aio.wait_for, function() return lock:acquire() end, 4)
    assert.equals(4, aio.now())
    assert.is_truthy(aio.timeout(7, lock.acquire, lock))
    assert.equals(10, aio.now())
    lock:release()
    holder:wait()
    assert.is_false(lock:locked())
    local sem = aio.Semaphore(1)
    sem:acquire()
    aio.spawn(function() aio.sleep(3) sem:release() end)
    raises("TimeoutError", aio.timeout, 2, sem.acquire, sem)
    assert.is_truthy(aio.timeout(2, sem.acquire, sem))
    assert.equals(13, aio.now())
    assert.is_true(sem:locked())
  end)

  vit("a client and a server of the same loop: their sleeps and timeouts are virtual", function()
    local server <close> = aio.start_server(function(s)
      for line in s:lines() do
        aio.sleep(2)
        s:write(line:upper() .. "\n")
      end
    end, "127.0.0.1", 0)
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    c:set_timeout(3)
    c:write("hi\n")
    assert.equals("HI", c:readline())
    assert.equals(2, aio.now())
    c:set_timeout(1)
    c:write("late\n")
    raises("TimeoutError", c.readline, c)
    assert.equals(3, aio.now())
    c:set_timeout(nil)
    assert.equals("LATE", c:readline())     -- the line arrives, nothing was lost
    assert.equals(4, aio.now())
  end)

  vit("a stream timeout against a silent peer of the same loop; a blocked writer too", function()
    local server <close> = aio.start_server(function() aio.sleep(1e6) end, "127.0.0.1", 0)
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    c:set_timeout(30)
    raises("TimeoutError", c.read, c, 10)
    assert.equals(30, aio.now())
    c:set_timeout(nil)
    c:set_limits(nil, 1024)
    raises("TimeoutError", aio.timeout, 5, function()
      local chunk = ("w"):rep(65536)
      while true do c:write(chunk) end
    end)
    assert.equals(35, aio.now())
    server:close_connections()
  end)

  it("a stream timeout against a silent real peer (another process)", function()
    local dir = P.tmpdir("vclock")
    local proc, port = P.python_server(dir, "silent", [[
import socket, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print("PORT", s.getsockname()[1])
conns = []
while True:
    c, _ = s.accept()
    conns.append(c)
]])
    local ok, err = pcall(testing.it(function()
      local c <close> = aio.open_connection("127.0.0.1", port)
      c:set_timeout(120)
      raises("TimeoutError", c.readline, c)
      assert.equals(120, aio.now())
    end))
    proc:stop()
    P.rmtree(dir)
    assert(ok, err)
  end)

  vit("work that finishes by itself holds the clock: a thread job, a child", function()
    local v = aio.wait_for(function()
      return aio.to_thread(function()
        local t = os.clock()
        while os.clock() - t < 0.05 do end
        return "job"
      end)
    end, 0.001)
    assert.equals("job", v)
    local r = aio.timeout(0.001, aio.exec, { "sleep", "0.05" })
    assert.equals(0, r.status)
    assert.equals(0, aio.now())
  end)

  vit("equal deadlines fire in the order they were set", function()
    local log = {}
    for i = 1, 20 do aio.spawn(function() aio.sleep(1) log[#log + 1] = i end) end
    aio.sleep(2)
    for i = 1, 20 do assert.equals(i, log[i]) end
  end)

  it("runs the same way each time: two runs, the same event log", function()
    local function scenario()
      local log, q, lock = {}, aio.Queue(2), aio.Lock()
      local function note(what) log[#log + 1] = ("%.3f %s"):format(aio.now(), what) end
      local seed = 7
      local function rnd() seed = (seed * 1103515245 + 12345) % 2147483648 return seed % 1000 / 250 end
      local ts = {}
      for i = 1, 6 do
        ts[#ts + 1] = aio.spawn(function()
          for j = 1, 4 do
            aio.sleep(rnd())
            q:put(i * 10 + j)
            note("put " .. (i * 10 + j))
          end
        end)
      end
      for w = 1, 3 do
        ts[#ts + 1] = aio.spawn(function()
          while true do
            local ok, x = pcall(aio.wait_for, function() return q:get() end, 1.5)
            if not ok then note("idle " .. w) break end
            local _ <close> = lock:acquire()
            aio.sleep(0.25)
            note(("got %d by %d"):format(x, w))
          end
        end)
      end
      aio.gather(ts)
      return table.concat(log, "\n")
    end
    local a = testing.it(scenario)()
    local b = testing.it(scenario)()
    assert.is_true(#a > 0)
    assert.equals(a, b)
  end)
end)

describe("testing.advance", function()
  vit("fires what falls due in deadline order, letting woken tasks run between", function()
    local log = {}
    aio.spawn(function() aio.sleep(1) log[#log + 1] = "1" aio.sleep(0.5) log[#log + 1] = "1.5" end)
    aio.spawn(function() aio.sleep(2) log[#log + 1] = "2" end)
    local late = aio.spawn(function() aio.sleep(3) log[#log + 1] = "3" end)
    testing.advance(2.5)
    assert.same({ "1", "1.5", "2" }, log)
    assert.equals(2.5, aio.now())
    assert.is_false(late:done())
    testing.advance(0)
    assert.is_false(late:done())
    testing.advance(10)
    assert.is_true(late:done())
    assert.same({ "1", "1.5", "2", "3" }, log)
    assert.equals(12.5, aio.now())
  end)

  vit("under a timeout: the deadline cancels the advance at its own time", function()
    raises("TimeoutError", aio.timeout, 1, testing.advance, 10)
    assert.equals(1, aio.now())
    aio.sleep(1)                      -- the clock goes on from there
    assert.equals(2, aio.now())
  end)

  vit("cancelled while it advances: the clock stays where it got", function()
    local t = aio.spawn(testing.advance, 5)
    aio.spawn(function() aio.sleep(2) t:cancel() end)
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "CancelledError"))
    assert.equals(2, aio.now())
  end)

  vit("bad input: a clear error, the clock unchanged", function()
    for _, bad in ipairs { -1, 0 / 0, math.huge } do
      local ok, err = pcall(testing.advance, bad)
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'testing.advance' %(a finite non%-negative number", err)
    end
    local ok, err = pcall(testing.advance, "1")
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'testing.advance' %(number expected, got string%)", err)
    assert.equals(0, aio.now())
  end)

  it("outside a virtual run: the clock is not virtual", function()
    local ok, err = pcall(testing.advance, 1)
    assert.is_false(ok)
    assert.matches("testing.advance: the clock is not virtual", err)
  end)
end)

describe("testing.run and testing.it", function()
  vit("do not nest; aio.run inside is refused too", function()
    local ok, err = pcall(testing.it(function() end))
    assert.is_false(ok)
    assert.matches("cannot be nested", err)
    ok, err = pcall(testing.run, function() end)
    assert.is_false(ok)
    assert.matches("testing.run cannot be called while a loop is running", err)
    ok, err = pcall(aio.run, function() end)
    assert.is_false(ok)
    assert.matches("not re%-entrant", err)
  end)

  it("pass results and errors through, and cancel what the body left pending", function()
    assert.same({ 1, nil, 3 }, { testing.it(function(a, b, c) aio.sleep(5) return a, b, c end)(1, nil, 3) })
    local left
    local ok, err = pcall(testing.it(function()
      left = aio.spawn(aio.sleep, 1e9)
      aio.sleep(1)
      error(aio.new_error("ValueError", "boom"), 0)
    end))
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "ValueError"))
    assert.is_true(left:cancelled())
    assert.has_error(function() testing.it(42) end, "bad argument #1 to 'testing.it' (function expected, got number)")
  end)

  it("at a script's top level under the luaio command", function()
    local out, err, code = S.run_script([[
local aio = require "luaio"
local testing = require "luaio.testing"
print(testing.run(function(x) aio.sleep(86400) return x, aio.now() end, "day"))
]])
    assert.equals(0, code, err)
    assert.equals("day\t86400.0\n", out)
    out, err, code = S.run_script([[
local aio = require "luaio"
require("luaio.testing").run(function() aio.sleep(5) error(aio.new_error("ValueError", "at " .. aio.now()), 0) end)
]])
    assert.equals(1, code)
    assert.matches("ValueError: at 5.0", err)
  end)

  local stock_it = os.getenv("LUAIO_SANITIZED") and pending or it
  stock_it("from stock lua5.4, outside any task", function()
    local dir = S.luaio:gsub("luaio$", "")
    local out, err, code = S.sh("lua5.4 -e " .. S.quote('package.cpath = "' .. dir .. '?.so;" .. package.cpath\n' .. [[
local aio = require "luaio"
local testing = require "luaio.testing"
print(testing.run(function() aio.sleep(60) return aio.now() end))
print(pcall(testing.run, function() return testing.run(print) end))
print(aio.run(function() return pcall(testing.advance, 1) end))
]]))
    assert.equals(0, code, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equals("60.0", lines[1])
    assert.matches("^false\t.*testing.run cannot be called while a loop is running", lines[2])
    assert.matches("^false\t.*the clock is not virtual", lines[3])
  end)

  stock_it("from stock lua5.4, required first (before luaio itself)", function()
    local dir = S.luaio:gsub("luaio$", "")
    local out, err, code = S.sh("lua5.4 -e " .. S.quote('package.cpath = "' .. dir .. '?.so;" .. package.cpath\n' .. [[
local testing = require "luaio.testing"
print(testing.run(function() local aio = require "luaio" aio.sleep(3600) return aio.now() end))
]]))
    assert.equals(0, code, err)
    assert.equals("3600.0\n", out)
  end)
end)
