-- One lifetime rule for every native object (API.md §3b): close() is
-- idempotent, every other method (and field) of a closed object raises a
-- clear error, a method called on the wrong object is a bad self, and no
-- finalizer, however called, crashes the host.
local aio = require "luaio"
local S = require "spec.support"

local function echo_server()
  return aio.start_server(function(s)
    while true do
      local d = s:read()
      if not d then return end
      s:write(d)
    end
  end, "127.0.0.1", 0)
end

-- fn raises an error whose text holds `pattern` (plain)
local function raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "no error, expected " .. pattern)
  assert.is_truthy(tostring(err):find(pattern, 1, true), "error: " .. tostring(err) .. "\nexpected: " .. pattern)
  return err
end

local function closed_error(what, fn, ...)
  local err = raises("the " .. what .. " is closed", fn, ...)
  assert.is_true(aio.is_error(err, "OSError"))
  assert.equals("EBADF", err.code)
end

-- open file descriptors of this process
local function fd_count()
  return #aio.fs.listdir("/proc/self/fd")
end

-- run a chunk under stock lua5.4 with this build's luaio.so (outside any task)
-- stock lua5.4 cannot load the sanitized module (ASan must come first)
local stock_it = os.getenv("LUAIO_SANITIZED") and pending or it

local function stock_lua(code)
  local dir = S.luaio:gsub("luaio$", "")
  return S.sh("lua5.4 -e " .. S.quote('package.cpath = "' .. dir .. '?.so;" .. package.cpath\n' .. code))
end

describe("lifetime: processes", function()
  it("a closed process: close again is a no-op, wait/kill/pid/pipes raise (an exited child)", function()
    local p = aio.spawn_process({ "true" })
    assert.equals(0, (p:wait()))
    p:close()
    p:close()
    assert.is_true(p:closed())
    assert.equals("Process<closed>", tostring(p))
    closed_error("process", p.wait, p)
    closed_error("process", p.kill, p)
    closed_error("process", function() return p.pid end)
    closed_error("process", function() return p.stdout end)
    closed_error("process", function() return p.returncode end)
  end)

  it("a closed process whose child still runs: the same, and the child can still be reaped", function()
    local p = aio.spawn_process({ "sleep", "0.2" })
    local pid = p.pid
    local out = p.stdout
    p:close()
    p:close()
    assert.is_true(out:closed())            -- the pipes went with it
    closed_error("process", p.wait, p)
    closed_error("process", p.kill, p, "SIGKILL")
    closed_error("process", function() return p.pid end)
    assert.is_true(pid > 0)
    aio.sleep(0.3)
    collectgarbage()
    collectgarbage()
  end)

  it("a task waiting in wait() gets the status even if the process is closed meanwhile", function()
    local p = aio.spawn_process({ "sh", "-c", "exit 7" })
    local t = aio.spawn(p.wait, p)
    aio.sleep(0)
    p:close()
    assert.equals(7, (t:wait()))
  end)

  it("wait() can be cancelled and timed out, and waited again", function()
    local p <close> = aio.spawn_process({ "sleep", "0.3" })
    local t = aio.spawn(p.wait, p)
    aio.sleep(0.01)
    t:cancel()
    assert.is_true(aio.is_error(select(2, pcall(t.wait, t)), "CancelledError"))
    local ok, err = pcall(aio.timeout, 0.01, p.wait, p)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    assert.equals(0, (p:wait()))
    assert.equals(0, (p:wait()))           -- an exited child answers at once
  end)

  it("__gc called by hand, then close: the pipes close too, no handle left", function()
    local before = aio.stats().handles
    local p = aio.spawn_process({ "sleep", "10" })
    getmetatable(p).__gc(p)
    closed_error("process", p.kill, p)
    p:close()
    assert.equals(before, aio.stats().handles)
  end)

  it("wait() and kill() outside a task / where the task cannot wait", function()
    local p <close> = aio.spawn_process({ "true" })
    p:wait()
    local ok, err = pcall(table.sort, { 1, 2 }, function() p:wait() return false end)
    assert.matches("process:wait cannot wait here", tostring(err))
    assert.is_false(p:kill())               -- not a waiting function: an exited child is not signalled
  end)

  it("wrong self and wrong types", function()
    local p <close> = aio.spawn_process({ "true" })
    local s = p.stdout
    raises("bad argument #1", p.wait, s)
    raises("bad argument #1", p.kill, 42)
    raises("bad argument #1", p.close, s)
    raises("bad argument #1", s.read, p)
    raises("unknown signal name", p.kill, p, "SIGNOPE")
    raises("bad argument #2", p.kill, p, {})
    local mt = getmetatable(p)
    mt.__gc(42)                             -- finalizers called by hand do nothing
    mt.__gc(s)
    mt.__index(p, "pid")
    raises("bad argument #1", mt.__index, s, "pid")
    p:wait()
  end)
end)

describe("lifetime: streams and servers", function()
  it("a closed stream: every method raises but close and closed", function()
    local server <close> = echo_server()
    local c = aio.open_connection("127.0.0.1", server.port)
    c:close()
    c:close()
    assert.is_true(c:closed())
    assert.equals("Stream<closed>", tostring(c))
    for _, call in ipairs {
      { "read" }, { "read_exactly", 1 }, { "readline" }, { "read_until", "x" }, { "read_all" },
      { "write", "x" }, { "drain" }, { "shutdown" }, { "peername" }, { "sockname" },
      { "set_timeout", 1 }, { "set_limits", 10 }, { "buffered" }, { "tls_info" }, { "lines" },
      { "start_tls", {} },
    } do
      closed_error("stream", c[call[1]], c, table.unpack(call, 2))
    end
  end)

  it("wrong self: a stream method on a server, a listener, a process; and the other way round", function()
    local server <close> = echo_server()
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    raises("bad argument #1", c.read, server)
    raises("bad argument #1", c.write, server._listener, "x")
    raises("bad argument #1", c.close, server)
    raises("bad argument #1", c.lines, server)
    raises("luaio.Stream expected, got luaio.Server", c.start_tls, server, {})
    raises("bad argument #1", c.start_tls, "nope")
    raises("luaio.Server expected, got luaio.Stream", server.close, c)
    raises("bad argument #1", server.wait_closed, c)
    raises("bad argument #1", server.serve_forever, {})
    raises("bad argument #1", server.close_connections, 1)
    raises("luaio.Server expected, got table", server.close, setmetatable({}, getmetatable(server)))
    raises("luaio.Stream expected, got table", c.lines, setmetatable({}, getmetatable(c)))
    raises("bad argument #1", server._listener.accept, c)
    -- the server was not touched: it still serves
    local d <close> = aio.open_connection("127.0.0.1", server.port)
    d:write("still here\n")
    assert.equals("still here", d:readline())
    c:write("and c\n")
    assert.equals("and c", c:readline())
  end)

  it("start_tls misuse raises and leaves the stream open", function()
    local server <close> = echo_server()
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    local reader = aio.spawn(c.read, c)
    aio.sleep(0.01)
    local ok, err = pcall(c.start_tls, c, {})
    assert.matches("another task is already reading from this stream", tostring(err))
    assert.is_false(c:closed())
    c:write("x")
    assert.equals("x", reader:wait())
    ok, err = pcall(c.start_tls, c, { verify = "yes" })
    assert.matches("tls.verify must be a boolean, got string", tostring(err))
    ok, err = pcall(c.start_tls, c, { server = true })
    assert.matches("a TLS server needs tls.cert_file and tls.key_file", tostring(err))
    assert.is_false(c:closed())
    ok, err = pcall(aio.start_server, function() end, "127.0.0.1", 0, { tls = true })
    assert.matches("bad argument #4 to 'aio.start_server' %(a TLS server needs tls.cert_file", tostring(err))
  end)

  it("a closed server: close again is a no-op, wait_closed and serve_forever return, the listener raises", function()
    local server = echo_server()
    local listener = server._listener
    server:close()
    server:close()
    server:wait_closed()
    server:serve_forever()
    closed_error("server", listener.accept, listener)
    closed_error("server", listener.address, listener)
    listener:close()
    assert.equals("Listener<closed>", tostring(listener))
    local ok, err = pcall(aio.open_connection, "127.0.0.1", server.port)
    assert.is_true(aio.is_error(err, "ConnectionError"))
  end)

  it("finalizers called by hand on anything do not crash", function()
    local server <close> = echo_server()
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    local smt, lmt = getmetatable(c), getmetatable(server._listener)
    for _, v in ipairs { 42, "x", {}, server, io.stdout } do
      smt.__gc(v)
      lmt.__gc(v)
    end
    smt.__gc(server._listener)
    lmt.__gc(c)
    c:write("alive\n")
    assert.equals("alive", c:readline())
  end)

  it("set_timeout: nil is none, 0 times out at once what has to wait, bad values are bad arguments", function()
    local server <close> = echo_server()
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    c:set_timeout(0)
    local t0 = aio.now()
    local ok, err = pcall(c.read, c)
    assert.is_true(aio.is_error(err, "TimeoutError"), tostring(err))
    assert.is_true(aio.now() - t0 < 0.05)
    c:write("ping\n")                       -- below the high-water mark: no wait, no timeout
    aio.sleep(0.05)
    assert.equals("ping", c:readline())     -- the data is there: no wait either
    c:set_timeout(nil)
    local reader = aio.spawn(c.read, c)
    aio.sleep(0.05)
    assert.is_false(reader:done())          -- no deadline now
    c:write("x")
    assert.equals("x", reader:wait())
    c:set_timeout(0.05)
    ok, err = pcall(c.read, c)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    c:set_timeout()
    raises("bad argument #2", c.set_timeout, c, -1)
    raises("bad argument #2", c.set_timeout, c, 0 / 0)
    raises("number expected, got string", c.set_timeout, c, "soon")
  end)

  it("write and drain with set_timeout(0) time out at once when they would wait", function()
    local stall = aio.Event()
    local server <close> = aio.start_server(function(s) stall:wait() end, "127.0.0.1", 0)
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    c:set_limits(nil, 1024)
    c:set_timeout(0)
    local big = string.rep("x", 8 * 1024 * 1024)
    local ok, err = pcall(c.write, c, big)   -- the peer does not read: most of it stays queued
    assert.is_true(aio.is_error(err, "TimeoutError"), tostring(err))
    ok, err = pcall(c.drain, c)
    assert.is_true(aio.is_error(err, "TimeoutError"), tostring(err))
    -- drain: cancellation and a deadline
    c:set_timeout(nil)
    local t = aio.spawn(c.drain, c)
    aio.sleep(0.02)
    t:cancel()
    assert.is_true(aio.is_error(select(2, pcall(t.wait, t)), "CancelledError"))
    ok, err = pcall(aio.timeout, 0.02, c.drain, c)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    c:set_timeout(0.02)
    ok, err = pcall(c.drain, c)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    stall:set()
  end)

  stock_it("waiting stream methods raise outside a task (and change nothing)", function()
    local out, err, code = stock_lua([[
      local aio = require "luaio"
      local server, c
      aio.run(function()
        server = aio.start_server(function(s) s:write(s:read_all()) end, "127.0.0.1", 0)
        c = aio.open_connection("127.0.0.1", server.port)
      end)
      for _, m in ipairs { "drain", "read", "readline", "read_all" } do
        local ok, e = pcall(c[m], c)
        print(m, ok, e)
      end
      print("write", pcall(c.write, c, "x"))
      print(select(2, c:buffered()))
    ]])
    assert.equals(0, code, err)
    for _, m in ipairs { "drain", "read", "readline", "read_all", "write" } do
      assert.matches(m .. "\tfalse\tstream:" .. m .. " must be called inside a task", out, 1, true)
    end
    assert.matches("\n0\n$", out)
  end)
end)

describe("lifetime: UDP sockets", function()
  it("close twice; methods of a closed socket raise; wrong self", function()
    local u = aio.udp_bind("127.0.0.1", 0)
    local server <close> = echo_server()
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    raises("bad argument #1", u.recvfrom, c)
    raises("bad argument #1", c.read, u)
    u:close()
    u:close()
    assert.equals("UDP<closed>", tostring(u))
    closed_error("socket", u.recvfrom, u)
    closed_error("socket", u.sendto, u, "x", "127.0.0.1", 9)
    closed_error("socket", u.sockname, u)
    getmetatable(u).__gc(c)
    getmetatable(u).__gc(7)
  end)

  it("recvfrom where the task cannot wait raises, even with a datagram queued", function()
    local u <close> = aio.udp_bind("127.0.0.1", 0)
    local _, port = u:sockname()
    u:sendto("d", "127.0.0.1", port)
    aio.sleep(0.02)
    local ok, err = pcall(table.sort, { 1, 2 }, function() u:recvfrom() return false end)
    assert.matches("socket:recvfrom cannot wait here", tostring(err))
    assert.equals("d", (u:recvfrom()))      -- still queued
  end)

  it("a receiver waiting when the socket closes gets an error", function()
    local u = aio.udp_bind("127.0.0.1", 0)
    local t = aio.spawn(u.recvfrom, u)
    aio.sleep(0.01)
    u:close()
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "OSError"))
  end)
end)

describe("lifetime: files", function()
  local path
  before_each(function() path = S.tmpfile("0123456789") end)
  after_each(function() os.remove(path) end)

  it("close twice; methods of a closed file raise; wrong self", function()
    local f = aio.fs.open(path)
    local server <close> = echo_server()
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    raises("bad argument #1", f.read, c)
    raises("bad argument #1", f.close, c)
    raises("bad argument #1", c.read, f)
    f:close()
    f:close()
    assert.equals("File<closed>", tostring(f))
    closed_error("file", f.read, f)
    closed_error("file", f.write, f, "x")
    closed_error("file", f.seek, f, "set", 0)
    getmetatable(f).__gc(c)
    getmetatable(f).__gc("x")
  end)

  it("close where the task cannot wait raises and keeps the file open", function()
    local f = aio.fs.open(path)
    local ok, err = pcall(table.sort, { 1, 2 }, function() f:close() return false end)
    assert.is_false(ok)
    assert.matches("file:close cannot wait here", tostring(err))
    assert.equals("File<open>", tostring(f))
    assert.equals("0123", f:read(4))
    f:close()
  end)

  stock_it("close outside a task raises and keeps the file open (stock lua5.4)", function()
    local out, err, code = stock_lua([[
      local aio = require "luaio"
      local f = aio.run(function() return aio.fs.open("]] .. path .. [[") end)
      print(pcall(f.close, f))
      print(tostring(f))
      print(aio.run(function() local d = f:read(3) f:close() return d end))
      print(tostring(f))
    ]])
    assert.equals(0, code, err)
    assert.matches("false\t.*file:close must be called inside a task", out)
    assert.matches("File<open>\n012\nFile<closed>\n$", out)
  end)

  it("a cancelled read, then close and collection: no fd leaked", function()
    local before = fd_count()
    for _ = 1, 20 do
      local f = aio.fs.open(path)
      local t = aio.spawn(f.read, f, "a")
      aio.sleep(0)
      t:cancel()
      pcall(t.wait, t)
      f:close()
      local g = aio.fs.open(path)
      g = nil
      collectgarbage()
    end
    aio.sleep(0.05)
    collectgarbage()
    assert.equals(before, fd_count())
  end)

  it("close cancelled while pending does not leak the fd", function()
    local before = fd_count()
    for _ = 1, 20 do
      local f = aio.fs.open(path)
      local t = aio.spawn(function() aio.current_task():cancel() f:close() end)
      pcall(t.wait, t)
      assert.equals("File<closed>", tostring(f))
    end
    aio.sleep(0.05)
    assert.equals(before, fd_count())
  end)
end)

describe("lifetime: signal handlers", function()
  it("close twice; wrong self; finalizers by hand", function()
    local h = aio.on_signal("SIGUSR2", function() end)
    local server <close> = echo_server()
    raises("bad argument #1", h.close, server)
    h:close()
    h:close()
    assert.equals("SignalHandler<closed>", tostring(h))
    getmetatable(h).__gc(server)
    getmetatable(h).__gc(false)
  end)
end)

describe("lifetime: TLS streams", function()
  it("_start_tls refuses what is not a TLS context", function()
    local server <close> = echo_server()
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    raises("bad argument #2", c._start_tls, c, server)
    raises("bad argument #2", c._start_tls, c, 42)
    c:write("ok\n")
    assert.equals("ok", c:readline())
  end)
end)
