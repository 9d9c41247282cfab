-- Streams over TCP and Unix sockets (API.md §5), with real peers.
local aio = require "luaio"
local S = require "spec.support"
local testing = require "luaio.testing"

local function echo_server(opts)
  return aio.start_server(function(s)
    while true do
      local data = s:read(65536)
      if not data then return end
      s:write(data)
    end
  end, "127.0.0.1", 0, opts)
end

-- A listening socket nobody accepts on, with the smallest backlog (a raw
-- listener from the core: a Server would accept).
function core_listen_full()
  local server = aio.start_server(function() end, "127.0.0.1", 0, { backlog = 1 })
  server._accepter:cancel()
  return { port = server.port, close = function() server:close() end }
end

local function serve_bytes(payload)   -- sends payload then closes
  return aio.start_server(function(s) s:write(payload) end, "127.0.0.1", 0)
end

describe("streams", function()
  it("_read_head refuses a kind it does not know, short ones too", function()
    local server <close> = echo_server()
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    for _, kind in ipairs { "", "r", "re", "x", "serve", "requests" } do
      local ok, err = pcall(c._read_head, c, kind)
      assert.is_false(ok)
      assert.matches("'request', 'response' or 'server' expected", err)
    end
    c:write("still usable\n")
    assert.equals("still usable", c:readline())
  end)

  it("echo round trips", function()
    local server <close> = echo_server()
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    for i = 1, 50 do
      local msg = ("message %d "):format(i):rep(i)
      c:write(msg)
      assert.equals(msg, c:read_exactly(#msg))
    end
    assert.is_true(server.port > 0)
    assert.equals("127.0.0.1", server.host)
  end)

  it("readline handles \\n, \\r\\n and the last unterminated line", function()
    local server <close> = serve_bytes("one\ntwo\r\n\nthree\r")
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    assert.equals("one", c:readline())
    assert.equals("two", c:readline())
    assert.equals("", c:readline())
    assert.equals("three", c:readline())
    assert.is_nil(c:readline())
    assert.is_nil(c:read(10))
  end)

  it("lines() iterates until EOF", function()
    local server <close> = serve_bytes("a\nb\nc")
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    local got = {}
    for line in c:lines() do got[#got + 1] = line end
    assert.same({ "a", "b", "c" }, got)
  end)

  it("read_until and read_all", function()
    local server <close> = serve_bytes("head--body--tail")
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    assert.equals("head", c:read_until("--"))
    assert.equals("body", c:read_until("--"))
    assert.equals("tail", c:read_all())
    assert.equals("", c:read_all())
    local c2 <close> = aio.open_connection("127.0.0.1", server.port)
    assert.equals("head--body--tail", c2:read(-1))       -- asyncio's read(-1)
    assert.equals("", c2:read(-1))
    assert.has_error(function() c2:read(-2) end)
  end)

  it("read(n) returns at most n bytes as soon as any are there", function()
    local server <close> = serve_bytes("abcdef")
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    assert.equals("abc", c:read(3))
    assert.equals("def", c:read(100))
    assert.is_nil(c:read(1))
  end)

  it("read_exactly short raises IncompleteReadError with partial", function()
    local server <close> = serve_bytes("only5")
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    local ok, err = pcall(c.read_exactly, c, 10)
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "IncompleteReadError"))
    assert.equals("only5", err.partial)
    assert.equals(10, err.expected)
  end)

  it("raises LimitOverrunError past the limit, data kept", function()
    local server <close> = serve_bytes(("x"):rep(300) .. "\nshort\n")
    local c <close> = aio.open_connection("127.0.0.1", server.port, { limit = 100 })
    local ok, err = pcall(c.readline, c)
    assert.is_true(aio.is_error(err, "LimitOverrunError"))
    c:set_limits(1000)
    assert.equals(300, #c:readline())
    assert.equals("short", c:readline())
  end)

  it("rejects bad arguments with clear errors", function()
    local server <close> = echo_server()
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    assert.has_error(function() c:read(0) end)
    assert.has_error(function() c:read_until("") end)
    assert.has_error(function() c:write({}) end)
    local ok, err = pcall(function() aio.open_connection("127.0.0.1", 70000) end)
    assert.matches("^spec/stream_spec.lua:%d+: bad argument #2 to 'aio.open_connection' %(port must be an integer within 1..65535", err)
    assert.has_error(function() aio.open_connection(42, 80) end)
    assert.has_error(function() aio.start_server("nope", "127.0.0.1", 0) end)
  end)

  it("close is idempotent, flushes pending data, and methods then raise", function()
    local got
    local server <close> = aio.start_server(function(s) got = s:read_all() end, "127.0.0.1", 0)
    local c = aio.open_connection("127.0.0.1", server.port)
    local big = ("z"):rep(2 * 1024 * 1024)
    c:set_limits(nil, 16 * 1024 * 1024)   -- queue it all, then close right away
    c:write(big)
    c:close()
    c:close()
    assert.is_true(c:closed())
    local ok, err = pcall(c.write, c, "x")
    assert.is_true(aio.is_error(err, "OSError"))
    for _ = 1, 200 do if got then break end aio.sleep(0.01) end
    assert.equals(#big, #got)
  end)

  it("peername and sockname", function()
    local server <close> = echo_server()
    local c <close> = aio.open_connection("localhost", server.port)
    local host, port = c:peername()
    assert.equals(server.port, port)
    assert.is_truthy(host == "127.0.0.1" or host == "::1")
    local _, lport = c:sockname()
    assert.is_true(lport > 0)
  end)

  it("set_timeout makes a stalled read raise TimeoutError", function()
    local server <close> = aio.start_server(function(s) aio.sleep(5) end, "127.0.0.1", 0)
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    c:set_timeout(0.05)
    local ok, err = pcall(c.readline, c)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    server:close_connections()
  end)

  it("a cancelled read loses no buffered data", function()
    local gate = aio.Event()
    local server <close> = aio.start_server(function(s)
      s:write("first\n")
      gate:wait()
      s:write("second\n")
    end, "127.0.0.1", 0)
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    assert.equals("first", c:readline())
    local reader = aio.spawn(function() return c:readline() end)
    aio.sleep(0.02)
    reader:cancel()
    pcall(reader.wait, reader)
    gate:set()
    assert.equals("second", c:readline())
  end)

  it("read and write under aio.timeout", testing.it(function()   -- on the virtual clock
    local server <close> = aio.start_server(function(s) aio.sleep(5) end, "127.0.0.1", 0)
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    local ok, err = pcall(aio.timeout, 0.05, c.read, c, 10)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    -- a writer blocked by backpressure
    c:set_limits(nil, 1024)
    ok, err = pcall(aio.timeout, 0.2, function()
      local chunk = ("w"):rep(65536)
      while true do c:write(chunk) end
    end)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    server:close_connections()
  end))

  it("connect: refused, timeout, cancel", function()
    local ok, err = pcall(aio.open_connection, "127.0.0.1", 1)
    assert.is_true(aio.is_error(err, "ConnectionError"))
    assert.equals("ECONNREFUSED", err.code)
    assert.is_true(aio.is_error(err, "OSError"))        -- as in Python, a ConnectionError is an OSError
    assert.is_false(aio.is_error(err, "TimeoutError"))
    -- a name that does not resolve fails the same way, with the resolver's code
    ok, err = pcall(aio.open_connection, "no-such-host.invalid", 80)
    assert.is_true(aio.is_error(err, "ConnectionError"))
    assert.matches("^EAI_", err.code)
    assert.matches("cannot resolve no%-such%-host%.invalid", err.message)
    -- a listener that never accepts, with its backlog full: further connects hang
    local stuck = core_listen_full()
    local fns = {}
    for i = 1, 8 do fns[i] = function() return aio.open_connection("127.0.0.1", stuck.port, { timeout = 0.3 }) end end
    local r = aio.gather(fns, { return_exceptions = true })
    local timeouts = 0
    for i = 1, 8 do
      if aio.is_error(r[i], "TimeoutError") then timeouts = timeouts + 1
      elseif type(r[i]) ~= "table" then r[i]:close() end
    end
    -- each TimeoutError is a connect cancelled in flight by its deadline
    assert.is_true(timeouts > 0)
    stuck.close()
  end)

  it("port already in use raises OSError EADDRINUSE", function()
    local a <close> = echo_server()
    local ok, err = pcall(aio.start_server, print, "127.0.0.1", a.port)
    assert.is_true(aio.is_error(err, "OSError"))
    assert.equals("EADDRINUSE", err.code)
  end)

  it("reuseport lets two servers share a port", function()
    local a <close> = aio.start_server(print, "127.0.0.1", 0, { reuseport = true })
    local b <close> = aio.start_server(print, "127.0.0.1", a.port, { reuseport = true })
    assert.equals(a.port, b.port)
  end)

  it("a handler error is logged and the server keeps serving", function()
    local n = 0
    local server <close> = aio.start_server(function(s)
      n = n + 1
      if n == 1 then error("handler blew up") end
      s:write("fine\n")
    end, "127.0.0.1", 0)
    local c1 = aio.open_connection("127.0.0.1", server.port)
    assert.is_nil(c1:readline())
    c1:close()
    local c2 <close> = aio.open_connection("127.0.0.1", server.port)
    assert.equals("fine", c2:readline())
  end)

  it("max_connections limits concurrent handlers", function()
    local active, peak = 0, 0
    local server <close> = aio.start_server(function(s)
      active = active + 1
      peak = math.max(peak, active)
      aio.sleep(0.03)
      s:write("ok\n")
      active = active - 1
    end, "127.0.0.1", 0, { max_connections = 2 })
    local fns = {}
    for i = 1, 6 do
      fns[i] = function()
        local c <close> = aio.open_connection("127.0.0.1", server.port)
        return c:readline()
      end
    end
    local r = aio.gather(fns)
    for i = 1, 6 do assert.equals("ok", r[i]) end
    assert.equals(2, peak)
  end)

  it("serves 1,000 concurrent connections", function()
    local server <close> = echo_server({ backlog = 1024 })
    local fns = {}
    for i = 1, 1000 do
      fns[i] = function()
        local c <close> = aio.open_connection("127.0.0.1", server.port)
        c:write("ping " .. i .. "\n")
        return c:readline()
      end
    end
    local r = aio.gather(fns)
    for i = 1, 1000 do assert.equals("ping " .. i, r[i]) end
  end)

  it("half-close: the peer still answers after our shutdown", function()
    local server <close> = aio.start_server(function(s)
      local all = s:read_all()
      s:write("got " .. #all)
    end, "127.0.0.1", 0)
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    c:write("12345")
    c:shutdown()
    assert.equals("got 5", c:read_all())
    local ok, err = pcall(c.write, c, "more")
    assert.is_true(aio.is_error(err, "OSError"))
  end)

  it("backpressure: 100 MB to a slow reader keeps memory bounded", function()
    local total = 100 * 1024 * 1024
    collectgarbage()     -- what earlier specs left would let the reader's garbage pile up unseen
    local rss0 = S.rss_kib()
    local peak = 0
    local server <close> = aio.start_server(function(s)
      local chunk = ("b"):rep(65536)
      for _ = 1, total // #chunk do
        s:write(chunk)
        peak = math.max(peak, S.rss_kib() - rss0)
      end
    end, "127.0.0.1", 0)
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    local got = 0
    while got < total do
      local d = c:read(65536)
      if not d then break end
      got = got + #d
      if got % (8 * 1024 * 1024) < 65536 then aio.sleep(0.001) end   -- a slow reader
    end
    assert.equals(total, got)
    -- (a sanitizer build keeps freed memory in quarantine: RSS says nothing there)
    if not os.getenv("LUAIO_SANITIZED") and not os.getenv("LUAIO_VALGRIND") then   -- their own memory skews RSS
      assert.is_true(peak < 32 * 1024, "RSS grew by " .. peak .. " KiB")
    end
  end)

  it("accept can be cancelled through server:close and serve_forever", function()
    local server = echo_server()
    local t = aio.spawn(function() server:serve_forever() end)
    aio.sleep(0.01)
    server:close()
    t:wait()
    server:wait_closed()
    local ok, err = pcall(aio.open_connection, "127.0.0.1", server.port)
    assert.is_true(aio.is_error(err, "ConnectionError"))
  end)

  it("serve_forever cancelled closes the server", function()
    local server = echo_server()
    local t = aio.spawn(function() server:serve_forever() end)
    aio.sleep(0.01)
    t:cancel()
    pcall(t.wait, t)
    local ok = pcall(aio.open_connection, "127.0.0.1", server.port)
    assert.is_false(ok)
  end)

  it("Unix socket round trip", function()
    local path = os.tmpname()
    os.remove(path)
    local server <close> = aio.start_server(function(s) s:write(s:readline():reverse(), "\n") end, path)
    local c <close> = aio.open_connection(path)
    c:write("stressed\n")
    assert.equals("desserts", c:readline())
    os.remove(path)
  end)
end)

describe("streams against Python asyncio", function()
  it("a Python asyncio client talks to a luaio server", function()
    local server <close> = aio.start_server(function(s)
      for line in s:lines() do s:write("luaio:" .. line .. "\n") end
    end, "127.0.0.1", 0)
    local script = S.tmpfile(([[
import asyncio
async def main():
    r, w = await asyncio.open_connection("127.0.0.1", %d)
    for word in ("alpha", "beta", "gamma"):
        w.write((word + "\n").encode())
        await w.drain()
        print((await r.readline()).decode().strip())
    w.close()
    await w.wait_closed()
asyncio.run(main())
]]):format(server.port), ".py")
    local out, err, code = S.bg("python3 " .. script):wait()
    os.remove(script)
    assert.equals(0, code, err)
    assert.equals("luaio:alpha\nluaio:beta\nluaio:gamma\n", out)
  end)

  it("a luaio client talks to a Python asyncio server", function()
    local portfile = os.tmpname()
    local script = S.tmpfile(([[
import asyncio
async def handle(r, w):
    while line := await r.readline():
        w.write(b"py:" + line)
        await w.drain()
    w.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    with open(%q, "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    async with server:
        await asyncio.sleep(5)
asyncio.run(main())
]]):format(portfile), ".py")
    os.remove(portfile)
    local job = S.bg("python3 " .. script)
    local port
    for _ = 1, 300 do
      local f = io.open(portfile)
      if f then port = tonumber(f:read("a")) f:close() end
      if port then break end
      aio.sleep(0.02)
    end
    assert.is_not_nil(port, "python server did not start")
    local c <close> = aio.open_connection("127.0.0.1", port)
    c:write("one\ntwo\n")
    assert.equals("py:one", c:readline())
    assert.equals("py:two", c:readline())
    c:close()
    os.remove(portfile)
    os.remove(script)
    os.execute("pkill -f " .. script .. " >/dev/null 2>&1")
    job:wait()
  end)

  it("a peer reset raises ConnectionError ECONNRESET, mid-read and mid-write", function()
    local read_err, write_err
    local server <close> = aio.start_server(function(s)
      local first = s:readline()
      if first == "reader" then
        local ok, e = pcall(s.read_all, s)
        read_err = e
      else
        local ok, e = pcall(function()
          local chunk = ("r"):rep(65536)
          for _ = 1, 2000 do s:write(chunk) end
          s:drain()
        end)
        write_err = e
      end
    end, "127.0.0.1", 0)
    local script = S.tmpfile(([[
import socket, struct, sys, time
for role in ("reader", "writer"):
    s = socket.create_connection(("127.0.0.1", %d))
    s.sendall((role + "\n").encode() + b"partial data")
    time.sleep(0.2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
]]):format(server.port), ".py")
    local _, err, code = S.bg("python3 " .. script):wait()
    os.remove(script)
    assert.equals(0, code, err)
    for _ = 1, 100 do if read_err and write_err then break end aio.sleep(0.02) end
    assert.is_true(aio.is_error(read_err, "ConnectionError"), tostring(read_err))
    assert.equals("ECONNRESET", read_err.code)
    assert.is_true(aio.is_error(write_err, "ConnectionError"), tostring(write_err))
  end)
end)

describe("UDP and DNS", function()
  it("UDP round trip", function()
    local a <close> = aio.udp_bind("127.0.0.1", 0)
    local b <close> = aio.udp_bind("127.0.0.1", 0)
    local _, aport = a:sockname()
    local _, bport = b:sockname()
    b:sendto("ping", "127.0.0.1", aport)
    local data, host, port = a:recvfrom()
    assert.equals("ping", data)
    assert.equals("127.0.0.1", host)
    assert.equals(bport, port)
    a:sendto("pong", host, port)
    assert.equals("pong", (b:recvfrom()))
    b:sendto("by name", "localhost", aport)               -- resolved, as Python's sendto does
    assert.equals("by name", (a:recvfrom()))
    local ok, err = pcall(b.sendto, b, "x", "no-such-host.invalid", aport)
    assert.is_true(aio.is_error(err, "OSError"))
    -- resolving waits, so it can be cancelled or timed out, and the socket stays usable
    local t = aio.spawn(b.sendto, b, "lost", "localhost", aport)
    aio.sleep(0)                                  -- it is waiting now
    t:cancel()
    assert.has_error(function() t:wait() end)
    ok, err = pcall(aio.timeout, 0, b.sendto, b, "late", "localhost", aport)
    assert.is_true(ok or aio.is_error(err, "TimeoutError"))
    assert.has_error(function() b:sendto("x", "localhost", "not a port") end)
    b:sendto("still", "127.0.0.1", aport)
    local got = a:recvfrom()
    if got == "late" then got = a:recvfrom() end
    assert.equals("still", got)
  end)

  it("recvfrom can be cancelled and timed out", function()
    local a <close> = aio.udp_bind("127.0.0.1", 0)
    local ok, err = pcall(aio.timeout, 0.02, a.recvfrom, a)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    assert.has_error(function() a:sendto("x", "127.0.0.1", 0) end)
    assert.has_error(function() a:sendto("x", "not an ip", 9) end)
  end)

  it("getaddrinfo resolves localhost", function()
    local addrs = aio.getaddrinfo("localhost")
    assert.is_true(#addrs >= 1)
    for _, a in ipairs(addrs) do
      assert.is_truthy(a.family == "inet" or a.family == "inet6")
      assert.is_string(a.addr)
    end
    local ok, err = pcall(aio.getaddrinfo, "no-such-host.invalid")
    assert.is_true(aio.is_error(err, "OSError"))
  end)
end)
