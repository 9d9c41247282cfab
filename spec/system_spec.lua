-- Threads, processes, files, signals, debug mode (API.md §7, §9).
local aio = require "luaio"
local S = require "spec.support"

describe("to_thread", function()
  it("runs CPU work on the pool while the loop keeps ticking", function()
    local ticks = 0
    local ticker = aio.spawn(function() while true do aio.sleep(0.005) ticks = ticks + 1 end end)
    local sum = aio.to_thread(function(n)
      local x = 0
      for i = 1, n do x = x + i % 7 end
      return x
    end, 2e7)
    ticker:cancel()
    assert.is_number(sum)
    -- valgrind runs one thread at a time: the pool's work starves the loop there
    if not os.getenv("LUAIO_VALGRIND") then
      assert.is_true(ticks >= 3, "the loop ticked " .. ticks .. " times")
    end
  end)

  it("copies nil, booleans, numbers, strings and nested tables both ways", function()
    local r = { aio.to_thread(function(...) return ... end, nil, true, 3, 2.5, "s", { a = { 1, 2, { deep = true } } }) }
    assert.is_nil(r[1])
    assert.is_true(r[2])
    assert.equals(3, r[3])
    assert.equals(math.type(3), math.type(r[3]))
    assert.equals(2.5, r[4])
    assert.equals("s", r[5])
    assert.same({ a = { 1, 2, { deep = true } } }, r[6])
  end)

  it("refuses upvalues other than _ENV, naming them", function()
    local secret = 1
    local ok, err = pcall(aio.to_thread, function() return secret end)
    assert.is_false(ok)
    assert.matches("upvalue 'secret'", err)
  end)

  it("refuses values it cannot copy, naming the path", function()
    local ok, err = pcall(aio.to_thread, function() end, 1, { items = { 1, 2, print } })
    assert.matches("arg #2%.items%[3%]: function", err)
    ok, err = pcall(aio.to_thread, function() return coroutine.create(print) end)
    assert.matches("result #1: thread", err)
    local cyc = {}
    cyc.self = cyc
    ok, err = pcall(aio.to_thread, function() end, cyc)
    assert.is_false(ok)
    assert.matches("arg #1%.self%.self.*: table nested deeper than 100 levels %(or a cycle%)$", err)
  end)

  it("carries errors back, and accepts \"module.function\"", function()
    local ok, err = pcall(aio.to_thread, function() error("inside the thread") end)
    assert.is_false(ok)
    assert.matches("inside the thread", err)
    assert.equals("ababab", aio.to_thread("string.rep", "ab", 3))
    ok, err = pcall(aio.to_thread, "nomodule")
    assert.is_false(ok)
  end)

  it("a cancelled wait leaves the pool usable, and works under timeout", function()
    -- jobs that never end by themselves: only the cancellation can end them,
    -- however slowly the worker runs (under valgrind, say)
    local t = aio.spawn(aio.to_thread, function() while true do end end)
    aio.sleep(0.01)
    t:cancel()
    local ok, err = pcall(t.wait, t)
    assert.is_true(aio.is_error(err, "CancelledError"), tostring(err))
    ok, err = pcall(aio.timeout, 0.01, aio.to_thread, function() while true do end end)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    assert.equals(42, aio.to_thread(function() return 42 end))
  end)

  it("cancelling stops the Lua code running in the worker (more loops than pool threads)", function()
    local ts = {}
    for i = 1, 6 do ts[i] = aio.spawn(aio.to_thread, function() while true do end end) end
    aio.sleep(0.05)
    for i = 1, 6 do ts[i]:cancel() end
    for i = 1, 6 do assert.is_true(aio.is_error(select(2, pcall(ts[i].wait, ts[i])), "CancelledError")) end
    -- every pool thread is free again: a new job runs at once
    assert.equals(42, aio.wait_for(function() return aio.to_thread(function() return 42 end) end, 5))
  end)
end)

describe("processes", function()
  it("exec captures status, stdout and stderr", function()
    local r = aio.exec({ "sh", "-c", "echo out; echo err >&2; exit 3" })
    assert.equals(3, r.status)
    assert.equals("out\n", r.stdout)
    assert.equals("err\n", r.stderr)
    assert.equals("hi\n", aio.exec({ "echo", "hi" }).stdout)
  end)

  it("exec feeds stdin and honours env and cwd", function()
    assert.equals("piped", aio.exec({ "cat" }, { stdin = "piped" }).stdout)
    local r = aio.exec({ "sh", "-c", "echo $FOO; pwd" }, { env = { FOO = "bar", PATH = os.getenv("PATH") }, cwd = "/" })
    assert.equals("bar\n/\n", r.stdout)
  end)

  it("exec kills the child on timeout and reports a signal death", function()
    local t0 = aio.now()
    local ok, err = pcall(aio.exec, { "sleep", "5" }, { timeout = 0.2 })
    assert.is_true(aio.is_error(err, "TimeoutError"))
    assert.is_true(aio.now() - t0 < 2)
    local r = aio.exec({ "sh", "-c", "kill -TERM $$" })
    assert.equals(15, r.signal)
  end)

  it("exec: bad input and a missing program", function()
    local ok, err = pcall(aio.exec, { "/no/such/program" })
    assert.is_true(aio.is_error(err, "OSError"))
    assert.equals("ENOENT", err.code)
    assert.has_error(function() aio.exec("echo hi") end)
    assert.has_error(function() aio.exec({}) end)
    assert.has_error(function() aio.exec({ "echo", {} }) end)
    assert.has_error(function() aio.exec({ "echo" }, { timeout = -1 }) end)
    assert.has_error(function() aio.exec({ "echo" }, { timeout = "soon" }) end, "bad argument #2 to 'aio.exec' (opts.timeout: number expected, got string)")
    assert.has_error(function() aio.exec({ "echo" }, { env = "PATH=/bin" }) end, "bad argument #2 to 'aio.exec' (opts.env: table expected, got string)")
    assert.has_error(function() aio.exec({ "echo" }, { cwd = 42 }) end, "bad argument #2 to 'aio.exec' (opts.cwd: string expected, got number)")
  end)

  it("cancelling exec kills the child", function()
    local marker = os.tmpname()
    local t = aio.spawn(aio.exec, { "sh", "-c", "sleep 0.3; echo late > " .. marker })
    aio.sleep(0.05)
    t:cancel()
    pcall(t.wait, t)
    aio.sleep(0.5)
    local f = io.open(marker)
    local content = f and f:read("a") or ""
    if f then f:close() end
    os.remove(marker)
    assert.equals("", content)
  end)

  it("spawn_process gives Stream pipes, pid, wait and kill", function()
    local p <close> = aio.spawn_process({ "cat" })
    assert.is_true(p.pid > 0)
    p.stdin:write("through cat\n")
    assert.equals("through cat", p.stdout:readline())
    p.stdin:close()
    assert.is_nil(p.stdout:readline())
    assert.equals(0, (p:wait()))
    local q <close> = aio.spawn_process({ "sleep", "10" })
    assert.is_true(q:kill("SIGTERM"))
    local status, sig = q:wait()
    assert.equals(15, sig)
    local ok, err = pcall(aio.timeout, 0.05, function()
      local z <close> = aio.spawn_process({ "sleep", "10" })
      local ok2, e = pcall(z.wait, z)
      z:kill("SIGKILL")
      error(e, 0)
    end)
    assert.is_true(aio.is_error(err, "TimeoutError"))
  end)
end)

describe("aio.fs", function()
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    aio.fs.mkdir(dir)
  end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  it("write_file, read_file, append_file, stat, listdir, rename, remove", function()
    aio.fs.write_file(dir .. "/a.txt", "hello")
    aio.fs.append_file(dir .. "/a.txt", " world")
    assert.equals("hello world", aio.fs.read_file(dir .. "/a.txt"))
    local st = aio.fs.stat(dir .. "/a.txt")
    assert.equals(11, st.size)
    assert.equals("file", st.type)
    assert.equals("directory", aio.fs.stat(dir).type)
    aio.fs.mkdir(dir .. "/sub/deeper", { parents = true })
    aio.fs.rename(dir .. "/a.txt", dir .. "/b.txt")
    assert.same({ "b.txt", "sub" }, aio.fs.listdir(dir))
    aio.fs.remove(dir .. "/b.txt")
    aio.fs.remove(dir .. "/sub/deeper")
    assert.same({ "sub" }, aio.fs.listdir(dir))
  end)

  it("write_file is atomic: no temp file left, old content until the rename", function()
    aio.fs.write_file(dir .. "/c", ("x"):rep(100000))
    aio.fs.write_file(dir .. "/c", "short")
    assert.equals("short", aio.fs.read_file(dir .. "/c"))
    assert.same({ "c" }, aio.fs.listdir(dir))
  end)

  it("open gives a file with read, write, seek, close and <close>", function()
    do
      local f <close> = aio.fs.open(dir .. "/f", "w")
      f:write("0123", "456789")
    end
    local f <close> = aio.fs.open(dir .. "/f", "r")
    assert.equals("0123", f:read(4))
    assert.equals(8, f:seek("set", 8))
    assert.equals("89", f:read(100))
    assert.is_nil(f:read(1))
    f:seek("set", 2)
    assert.equals("23456789", f:read(-1))                -- Python's read(-1): the rest
    f:close()
    assert.is_true(aio.fs.exists(dir .. "/f"))
    assert.is_false(aio.fs.exists(dir .. "/none"))
    assert.is_false(aio.fs.exists(dir .. "/f/below-a-file"))
    assert.has_error(function() aio.fs.exists(nil) end)
    local ok, err = pcall(aio.timeout, 0, aio.fs.exists, dir .. "/f")   -- times out like any wait
    assert.is_true(ok or aio.is_error(err, "TimeoutError"))
    local t = aio.spawn(aio.fs.exists, dir .. "/f")
    aio.sleep(0)                                  -- it is waiting now
    t:cancel()
    assert.has_error(function() t:wait() end)
    assert.is_true(t:cancelled())
    assert.is_true(aio.fs.exists(dir .. "/f"))                            -- and the next one works
    local ok, err = pcall(f.read, f, 1)
    assert.is_true(aio.is_error(err, "OSError"))
  end)

  it("failures raise OSError with code and path", function()
    local ok, err = pcall(aio.fs.read_file, dir .. "/missing")
    assert.is_true(aio.is_error(err, "OSError"))
    assert.equals("ENOENT", err.code)
    assert.equals(dir .. "/missing", err.path)
    aio.fs.write_file(dir .. "/file", "x")
    ok, err = pcall(aio.fs.read_file, dir .. "/file/under")
    assert.equals("ENOTDIR", err.code)
    ok, err = pcall(aio.fs.mkdir, dir)
    assert.equals("EEXIST", err.code)
    ok, err = pcall(aio.fs.listdir, dir .. "/missing")
    assert.equals("ENOENT", err.code)
    assert.has_error(function() aio.fs.read_file("") end)
    assert.has_error(function() aio.fs.open(dir .. "/file", "z") end)
    assert.has_error(function() aio.fs.write_file(dir .. "/x", {}) end)
  end)

  it("a cancelled read_file loses nothing and the next one works", function()
    aio.fs.write_file(dir .. "/big", ("b"):rep(1000000))
    local t = aio.spawn(aio.fs.read_file, dir .. "/big")
    t:cancel()
    pcall(t.wait, t)
    assert.equals(1000000, #aio.fs.read_file(dir .. "/big"))
  end)
end)

describe("signals", function()
  local function my_pid()
    local f = io.open("/proc/self/stat")
    local pid = f:read("n")
    f:close()
    return pid
  end

  it("on_signal runs the handler as a task per signal", function()
    local got = {}
    local h = aio.on_signal("SIGUSR1", function(sig) got[#got + 1] = sig end)
    os.execute("kill -USR1 " .. my_pid())
    for _ = 1, 50 do if #got > 0 then break end aio.sleep(0.01) end
    h:close()
    assert.same({ 10 }, got)
    assert.has_error(function() aio.on_signal("SIGNOPE", print) end)
  end)

  it("wait_signal waits for one signal; cancel and timeout work", function()
    local t = aio.spawn(aio.wait_signal, "SIGUSR2")
    aio.sleep(0.01)
    os.execute("kill -USR2 " .. my_pid())
    assert.equals("SIGUSR2", aio.wait_for(t, 2))
    local ok, err = pcall(aio.timeout, 0.02, aio.wait_signal, "SIGUSR2")
    assert.is_true(aio.is_error(err, "TimeoutError"))
  end)

  it("a real SIGINT to a luaio script: cleanup runs, exit 130", function()
    local out, _, code = S.signal_when_ready([[local aio=require'luaio'
      print('ready') io.stdout:flush()
      local _ <close> = setmetatable({}, {__close=function() aio.sleep(0.01) print('cleanup ran') end})
      aio.sleep(10)]], "kill -INT $pid")
    assert.equals(130, code)
    assert.equals("ready\ncleanup ran\n", out)
  end)

  it("a real SIGTERM likewise: cleanup runs, exit 143, no traceback", function()
    local out, err, code = S.signal_when_ready([[local aio=require'luaio'
      print('ready') io.stdout:flush()
      local _ <close> = setmetatable({}, {__close=function() print('cleanup ran') end})
      aio.sleep(10)]], "kill -TERM $pid")
    assert.equals(143, code)
    assert.equals("ready\ncleanup ran\n", out)
    assert.equals("", err)
  end)

  it("an on_signal SIGINT handler replaces the default", function()
    local out, _, code = S.signal_when_ready([[local aio=require'luaio'
      local stop = aio.Event()
      local h = aio.on_signal('SIGINT', function() print('handled') stop:set() end)
      print('ready') io.stdout:flush()
      stop:wait() h:close() print('done')]], "kill -INT $pid")
    assert.equals(0, code)
    assert.equals("ready\nhandled\ndone\n", out)
  end)
end)

describe("debug mode", function()
  it("warns about a task that runs 0.3 s without yielding, naming it", function()
    local _, err = S.run_code([[
      local aio = require 'luaio'
      aio.set_debug(true)
      local t = aio.spawn(function()
        local t0 = os.clock() while os.clock() - t0 < 0.3 do end
      end)
      t.name = 'busy-worker'
      t:wait()]])
    -- reported when it yields; on a loaded machine the watchdog may report it first, while it runs
    assert.is_truthy(err:match("slow task busy%-worker ran 0%.%d+ s without yielding")
      or err:match("slow task busy%-worker has been running for 0%.%d+ s without yielding"), err)
    assert.matches("%(command line%)", err)
  end)

  it("LUAIO_DEBUG=1 turns it on too, with slow_callback settable", function()
    local _, err = S.sh("LUAIO_DEBUG=1 " .. S.luaio .. " -e " .. S.quote([[
      local aio = require 'luaio'
      local t0 = os.clock() while os.clock() - t0 < 0.15 do end
      aio.sleep(0)]]))
    assert.matches("slow task", err)
  end)

  it("lists tasks and resources left open at loop close", function()
    local _, err = S.run_code([[
      local aio = require 'luaio'
      aio.set_debug(true)
      server = aio.start_server(function() end, '127.0.0.1', 0)
      aio.spawn(function() aio.sleep(10) end).name = 'forgotten'
      aio.sleep(0.01)]])
    assert.matches("left open at loop close", err)
    assert.matches("forgotten", err)
    assert.matches("server 127.0.0.1:%d+ %(created at %(command line%):3%)", err)
  end)
end)
