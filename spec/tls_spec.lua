-- TLS streams, HTTPS client and server, against real peers: openssl s_server,
-- curl, and luaio itself. The certificates are made for this run by
-- tools/make_test_certs.sh (a test CA, a server certificate for localhost
-- and 127.0.0.1, an expired one, one from a CA nobody trusts).
local aio = require "luaio"
local S = require "spec.support"

local CERTS = os.tmpname()
os.remove(CERTS)
do
  local _, err, code = S.sh("tools/make_test_certs.sh " .. CERTS)
  assert(code == 0, "making the test certificates failed: " .. err)
end
local function cert(name) return CERTS .. "/" .. name end
local CA = { ca_file = cert("ca.pem") }
local SERVER_TLS = { cert_file = cert("server.pem"), key_file = cert("server.key") }

local function tls_echo_server(tls, opts)
  opts = opts or {}
  opts.tls = tls or SERVER_TLS
  return aio.start_server(function(s)
    while true do
      local data = s:read(65536)
      if not data then return end
      s:write(data)
    end
  end, "127.0.0.1", 0, opts)
end

-- openssl s_server on a port of its own choosing (it prints "ACCEPT host:port")
local function s_server(...)
  local argv = { "openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", cert("server.pem"),
                 "-key", cert("server.key"), "-naccept", "1", ... }
  local p = aio.spawn_process(argv, { stderr = "pipe" })
  local port
  aio.timeout(10, function()
    repeat
      local line = assert(p.stdout:readline(), "s_server ended before listening")
      port = tonumber(line:match("^ACCEPT .*:(%d+)"))
    until port
  end)
  return p, port
end

local function refused_with(code, port, tls)
  local ok, err = pcall(aio.open_connection, "127.0.0.1", port, { tls = tls })
  assert.is_false(ok)
  assert.is_true(aio.is_error(err, "TLSError"), tostring(err))
  assert.equals(code, err.code)
  return err
end

describe("tls", function()
  teardown(function() os.execute("rm -rf " .. CERTS) end)

  it("a luaio client talks to openssl s_server", function()
    local p, port = s_server("-rev")
    local c <close> = aio.open_connection("localhost", port, { tls = CA })
    c:write("hello tls\n")
    -- s_server -rev answers each line reversed
    local line
    repeat line = c:readline() until line == nil or line:find("slt olleh", 1, true)
    assert.truthy(line and line:find("slt olleh", 1, true))
    local info = c:tls_info()
    assert.matches("^TLSv1%.[23]$", info.protocol)
    assert.is_string(info.cipher)
    assert.equals("CN=localhost", info.peer_subject)
    assert.equals("CN=luaio test CA", info.peer_issuer)
    assert.is_true(info.peer_verified)
    assert.equals("localhost", info.server_name)
    c:close()
    p:kill()
    p:wait()
  end)

  it("the HTTP client fetches https:// from openssl s_server -www", function()
    local p, port = s_server("-www")
    local r = aio.http.get(("https://localhost:%d/"):format(port), { tls = CA })
    assert.equals(200, r.status)
    assert.truthy(r.body:find("Ciphers supported", 1, true), r.body:sub(1, 200))
    p:kill()
    p:wait()
  end)

  it("curl --cacert talks to a luaio HTTPS server, keep-alive and a POST body", function()
    local app = aio.http.app()
    app:route("/hello", function() return "hello over tls" end)
    app:route("/size", function(req) return tostring(#req.body) end, { "POST" })
    local server <close> = app:listen("127.0.0.1", 0, { tls = SERVER_TLS, max_body = 20 * 1024 * 1024 })
    local base = ("https://localhost:%d"):format(server.port)
    local r = aio.exec({ "curl", "-sS", "--cacert", cert("ca.pem"), base .. "/hello", base .. "/hello",
                         "-w", " %{num_connects}" })
    assert.equals(0, r.status, r.stderr)
    assert.equals("hello over tls 1hello over tls 0", r.stdout)   -- the second request reused the connection
    -- 10 MB uploaded by curl
    local path = S.tmpfile(("0123456789abcdef"):rep(10 * 1024 * 1024 // 16))
    r = aio.exec({ "curl", "-sS", "--cacert", cert("ca.pem"), "--data-binary", "@" .. path, base .. "/size" })
    os.remove(path)
    assert.equals(0, r.status, r.stderr)
    assert.equals(tostring(10 * 1024 * 1024), r.stdout)
    -- curl refuses the server without the test CA
    r = aio.exec({ "curl", "-sS", base .. "/hello" })
    assert.are_not.equals(0, r.status)
  end)

  it("moves 10 MB each way over TLS, intact", function()
    local server <close> = tls_echo_server()
    local c <close> = aio.open_connection("localhost", server.port, { tls = CA })
    local chunk = {}
    for i = 1, 4096 do chunk[i] = string.char(i % 251) end
    local payload = table.concat(chunk):rep(10 * 256)      -- 10 MiB of a non-repeating-per-KiB pattern
    local writer = aio.spawn(function()
      c:write(payload)
      c:drain()
    end)
    local got = c:read_exactly(#payload)
    writer:wait()
    assert.equals(#payload, #got)
    assert.is_true(got == payload)
  end)

  it("ALPN picks the server's protocol among the client's", function()
    local server <close> = tls_echo_server({ cert_file = cert("server.pem"), key_file = cert("server.key"),
                                             alpn = { "http/1.1" } })
    local c <close> = aio.open_connection("127.0.0.1", server.port,
      { tls = { ca_file = cert("ca.pem"), alpn = { "h2", "http/1.1" } } })
    assert.equals("http/1.1", c:tls_info().alpn)
  end)

  it("verifies an IP address against the certificate", function()
    local server <close> = tls_echo_server()
    local c <close> = aio.open_connection("127.0.0.1", server.port, { tls = CA })
    c:write("x")
    assert.equals("x", c:read(1))
    assert.is_nil(c:tls_info().server_name)            -- no SNI for an address
  end)

  describe("refuses", function()
    local function server_with(name)
      return tls_echo_server({ cert_file = cert(name .. ".pem"), key_file = cert(name .. ".key") })
    end

    it("a wrong host name: HOSTNAME_MISMATCH", function()
      local server <close> = tls_echo_server()
      local err = refused_with("HOSTNAME_MISMATCH", server.port, { ca_file = cert("ca.pem"), server_name = "example.com" })
      assert.matches("hostname mismatch", err.message)
    end)

    it("an expired certificate: CERT_HAS_EXPIRED", function()
      local server <close> = server_with("expired")
      refused_with("CERT_HAS_EXPIRED", server.port, CA)
    end)

    it("an unknown CA: UNABLE_TO_GET_ISSUER_CERT_LOCALLY", function()
      local server <close> = server_with("stranger")
      refused_with("UNABLE_TO_GET_ISSUER_CERT_LOCALLY", server.port, CA)
    end)

    it("the test CA with only the system store", function()
      local server <close> = tls_echo_server()
      refused_with("UNABLE_TO_GET_ISSUER_CERT_LOCALLY", server.port, true)
    end)

    it("over https:// too, with the reason", function()
      local app = aio.http.app()
      app:route("/", function() return "no" end)
      local server <close> = app:listen("127.0.0.1", 0, { tls = { cert_file = cert("expired.pem"), key_file = cert("expired.key") } })
      local ok, err = pcall(aio.http.get, ("https://localhost:%d/"):format(server.port), { tls = CA })
      assert.is_false(ok)
      assert.is_true(aio.is_error(err, "TLSError"), tostring(err))
      assert.equals("CERT_HAS_EXPIRED", err.code)
    end)

    it("a plain-text peer: TLSError, not a hang", function()
      local server <close> = aio.start_server(function(s)
        s:read()
        s:write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
      end, "127.0.0.1", 0)
      local ok, err = pcall(aio.open_connection, "127.0.0.1", server.port, { tls = CA })
      assert.is_false(ok)
      assert.is_true(aio.is_error(err, "TLSError"), tostring(err))
      assert.is_string(err.code)
    end)

    it("but verify = false accepts any certificate", function()
      local server <close> = server_with("stranger")
      local c <close> = aio.open_connection("127.0.0.1", server.port, { tls = { verify = false } })
      c:write("ok")
      assert.equals("ok", c:read(2))
      assert.is_false(c:tls_info().peer_verified)
    end)
  end)

  describe("handshakes that never finish", function()
    local function silent_server()   -- accepts TCP, never speaks
      local conns = {}
      local server = aio.start_server(function(s)
        conns[#conns + 1] = s
        local data = s:read()
        while data do data = s:read() end
      end, "127.0.0.1", 0)
      return server, conns
    end

    it("are cancelled mid-handshake, leaving the socket closed", function()
      local server <close>, conns = silent_server()
      local t = aio.spawn(aio.open_connection, "127.0.0.1", server.port, { tls = CA })
      aio.sleep(0.1)
      assert.equals(1, #conns)                  -- the ClientHello went out; no answer
      t:cancel()
      local ok, err = pcall(t.wait, t)
      assert.is_false(ok)
      assert.is_true(aio.is_error(err, "CancelledError"))
      assert.is_true(t:cancelled())
      -- the client's socket was closed: the server's read ends
      aio.timeout(2, function() while not conns[1]:closed() do aio.sleep(0.01) end end)
    end)

    it("time out by tls.handshake_timeout with TimeoutError", function()
      local server <close> = silent_server()
      local t0 = aio.now()
      local ok, err = pcall(aio.open_connection, "127.0.0.1", server.port,
        { tls = { ca_file = cert("ca.pem"), handshake_timeout = 0.2 } })
      assert.is_false(ok)
      assert.is_true(aio.is_error(err, "TimeoutError"), tostring(err))
      assert.matches("handshake", err.message)
      assert.is_true(aio.now() - t0 < 2)
    end)

    it("are dropped by a server after its handshake_timeout, which keeps serving", function()
      local tls = { cert_file = cert("server.pem"), key_file = cert("server.key"), handshake_timeout = 0.2 }
      local server <close> = tls_echo_server(tls)
      local idle <close> = aio.open_connection("127.0.0.1", server.port)   -- plain TCP, says nothing
      local t0 = aio.now()
      local ok, data = pcall(idle.read, idle)
      assert.is_true(not ok or data == nil)      -- closed by the server
      assert.is_true(aio.now() - t0 < 2)
      assert.equals(1, server.handshake_failures)
      local garbage <close> = aio.open_connection("127.0.0.1", server.port)
      garbage:write(("\22\3\1\0\5garbage"):rep(100))
      pcall(garbage.read_all, garbage)
      local c <close> = aio.open_connection("localhost", server.port, { tls = CA })
      c:write("still here")
      assert.equals("still here", c:read_exactly(10))
      assert.equals(2, server.handshake_failures)
    end)
  end)

  it("an HTTPS client that breaks its TLS mid-connection ends only that connection, unlogged", function()
    local out, err, code = S.run_script(([[
      local aio = require "luaio"
      local app = aio.http.app()
      app:route("/", function() return "hi" end)
      local server = app:listen("127.0.0.1", 0, { tls = { cert_file = %q, key_file = %q } })
      -- Python's ssl: one good request, then a forged record on the raw socket
      local r = aio.exec({ "python3", "-c", [=[
import os, socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
print(s.recv(4096).split(b"\r\n")[0].decode())
os.write(s.fileno(), b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
try:
    print("after forgery:", s.recv(4096))
except (ssl.SSLError, OSError) as e:
    print("after forgery: closed")
]=], tostring(server.port), %q })
      io.write(r.stdout)
      io.stderr:write(r.stderr)
      local ok = aio.http.get(("https://localhost:%%d/"):format(server.port), { tls = { ca_file = %q } })
      print(ok.body)
      server:close()
    ]]):format(cert("server.pem"), cert("server.key"), cert("ca.pem"), cert("ca.pem")))
    assert.equals(0, code, err)
    assert.matches("^HTTP/1.1 200 OK\nafter forgery: [^\n]*\nhi\n$", out)
    assert.equals("", err)
  end)

  it("start_tls upgrades a plain connection on both ends (STARTTLS)", function()
    local server <close> = aio.start_server(function(s)
      assert.equals("STARTTLS", s:readline())
      s:write("GO\n")
      s:start_tls({ server = true, cert_file = cert("server.pem"), key_file = cert("server.key") })
      s:write("secret: " .. s:readline() .. "\n")
    end, "127.0.0.1", 0)
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    c:write("STARTTLS\n")
    assert.equals("GO", c:readline())
    assert.is_nil(c:tls_info())
    c:start_tls({ ca_file = cert("ca.pem"), server_name = "localhost" })
    c:write("42\n")
    assert.equals("secret: 42", c:readline())
    assert.is_table(c:tls_info())
  end)

  it("a clean close sends close_notify: the peer reads all, then EOF", function()
    local server <close> = aio.start_server(function(s)
      s:write(("x"):rep(300000))
    end, "127.0.0.1", 0, { tls = SERVER_TLS })
    local c <close> = aio.open_connection("localhost", server.port, { tls = CA })
    assert.equals(300000, #c:read_all())
    assert.is_nil(c:read())
  end)

  it("Session pools https connections per host and TLS settings", function()
    local app = aio.http.app()
    app:route("/", function() return "pooled" end)
    local server <close> = app:listen("127.0.0.1", 0, { tls = SERVER_TLS })
    local session <close> = aio.http.Session({ tls = CA })
    for _ = 1, 5 do assert.equals("pooled", session:get(("https://localhost:%d/"):format(server.port)).body) end
    assert.equals(1, session.connections_made)
    session:get(("https://localhost:%d/"):format(server.port), { tls = { ca_file = cert("ca.pem"), alpn = { "http/1.1" } } })
    assert.equals(2, session.connections_made)   -- other TLS settings: another connection
    session:get(("https://127.0.0.1:%d/"):format(server.port))
    assert.equals(3, session.connections_made)   -- another host name
  end)

  describe("bad input gets a clear error", function()
    it("tls must be true or a table", function()
      local ok, err = pcall(aio.open_connection, "127.0.0.1", 1, { tls = "yes" })
      assert.is_false(ok)
      assert.matches("opts.tls must be true or a table", tostring(err))
      ok, err = pcall(aio.open_connection, "127.0.0.1", 1, { tls = { cafile = "x" } })
      assert.matches("unknown TLS option cafile", tostring(err))
      ok, err = pcall(aio.open_connection, "127.0.0.1", 1, { tls = { verify = "no" } })
      assert.matches("tls.verify must be a boolean", tostring(err))
    end)

    it("a server needs a certificate and a key that exist and match", function()
      local ok, err = pcall(aio.start_server, function() end, "127.0.0.1", 0, { tls = true })
      assert.is_false(ok)
      assert.matches("needs tls.cert_file and tls.key_file", tostring(err))
      ok, err = pcall(aio.start_server, function() end, "127.0.0.1", 0,
        { tls = { cert_file = cert("nope.pem"), key_file = cert("server.key") } })
      assert.is_true(aio.is_error(err, "OSError"), tostring(err))
      assert.equals("ENOENT", err.code)
      assert.matches("nope.pem", err.message)
      ok, err = pcall(aio.start_server, function() end, "127.0.0.1", 0,
        { tls = { cert_file = cert("server.pem"), key_file = cert("expired.key") } })
      assert.is_true(aio.is_error(err, "TLSError"), tostring(err))
      assert.matches("does not match", err.message)
      local path = S.tmpfile("not a certificate\n")
      ok, err = pcall(aio.start_server, function() end, "127.0.0.1", 0,
        { tls = { cert_file = path, key_file = cert("server.key") } })
      os.remove(path)
      assert.is_true(aio.is_error(err, "TLSError"), tostring(err))
    end)

    it("a missing CA file is an OSError naming it", function()
      local ok, err = pcall(aio.open_connection, "127.0.0.1", 1, { tls = { ca_file = "/nonexistent/ca.pem" } })
      assert.is_false(ok)
      assert.is_true(aio.is_error(err, "OSError"), tostring(err))
      assert.matches("/nonexistent/ca.pem", err.message)
    end)
  end)
end)

-- Issue 14: close() (and shutdown()) on a TLS stream used to lose the tail of
-- the stream. A TLS 1.3 server sends session tickets after the handshake; a
-- client that only writes never reads them, and closing a socket with unread
-- input makes the kernel send RST and drop what it has not sent yet. Now a
-- closing TLS stream sends everything, then close_notify, then FIN, and reads
-- (and drops) what still comes until the peer's EOF, within a bound.
describe("tls close delivers the whole stream (issue 14)", function()
  -- certificates of its own (the "tls" block above removed its own; and
  -- TLS contexts are cached by file name, so not in the same place)
  local DIR = os.tmpname()
  os.remove(DIR)
  setup(function()
    local _, err, code = S.sh("tools/make_test_certs.sh " .. DIR)
    assert(code == 0, "making the test certificates failed: " .. err)
  end)
  teardown(function() os.execute("rm -rf " .. DIR) end)
  local function cert(name) return DIR .. "/" .. name end       -- luacheck: ignore 431
  local CA = { ca_file = cert("ca.pem") }                       -- luacheck: ignore 431
  local SERVER_TLS = { cert_file = cert("server.pem"), key_file = cert("server.key") }   -- luacheck: ignore 431
  local function s_server()                                     -- luacheck: ignore 431
    local p = aio.spawn_process({ "openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", cert("server.pem"),
                                  "-key", cert("server.key"), "-naccept", "1" }, { stderr = "pipe" })
    local port
    aio.timeout(10, function()
      repeat
        local line = assert(p.stdout:readline(), "s_server ended before listening")
        port = tonumber(line:match("^ACCEPT .*:(%d+)"))
      until port
    end)
    return p, port
  end

  local ITER = tonumber(os.getenv("LUAIO_TLS_CLOSE_ITERATIONS")) or 5
  local PIECE = ("p"):rep(99) .. "\n"
  local TOTAL = 1000 * #PIECE

  -- a strict Python TLS server: per connection, "<bytes read> EOF" when the
  -- stream ended with close_notify, TRUNCATED without it, RESET on a reset
  local PY_SERVER = [=[
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(16)
print(ls.getsockname()[1], flush=True)
for _ in range(int(sys.argv[3])):
    c, _ = ls.accept()
    total, end = 0, "?"
    try:
        s = ctx.wrap_socket(c, server_side=True, suppress_ragged_eofs=False)
        while True:
            b = s.recv(65536)
            if not b:
                end = "EOF"
                break
            total += len(b)
    except ssl.SSLEOFError:
        end = "TRUNCATED"
    except ConnectionResetError:
        end = "RESET"
    except Exception as e:
        end = type(e).__name__
    print(total, end, flush=True)
    c.close()
]=]

  -- a strict Python TLS client: sends a line nobody reads, then reads to the end
  local PY_CLIENT = [=[
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
for _ in range(int(sys.argv[3])):
    total, end = 0, "?"
    raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
        s.sendall(b"a request the server never reads\n")
        while True:
            b = s.recv(65536)
            if not b:
                end = "EOF"
                break
            total += len(b)
    except ssl.SSLEOFError:
        end = "TRUNCATED"
    except ConnectionResetError:
        end = "RESET"
    except Exception as e:
        end = type(e).__name__
    print(total, end, flush=True)
    raw.close()
]=]

  local function py_server(n)
    local p = aio.spawn_process({ "python3", "-c", PY_SERVER, cert("server.pem"), cert("server.key"), tostring(n) })
    local port = tonumber(aio.timeout(10, p.stdout.readline, p.stdout))
    assert(port, "the Python server did not start")
    return p, port
  end

  local function write_all(s)
    for _ = 1, 1000 do s:write(PIECE) end
  end

  -- the ends a writer can choose: close, drain then close, shutdown then close
  local ENDINGS = {
    close = function(s) s:close() end,
    drain = function(s) s:drain() s:close() end,
    shutdown = function(s) s:shutdown() s:close() end,
  }

  for _, how in ipairs({ "close", "drain", "shutdown" }) do
    it(("a luaio client writes 1000 x 100 bytes, then %s: a Python server reads them all, then close_notify"):format(how),
       function()
      local p, port = py_server(ITER)
      for i = 1, ITER do
        local c = aio.open_connection("localhost", port, { tls = CA })
        write_all(c)
        ENDINGS[how](c)
        c:close()                                   -- idempotent
        assert.is_true(c:closed())
        assert.equals(TOTAL .. " EOF", aio.timeout(10, p.stdout.readline, p.stdout), "connection " .. i)
      end
      p:wait()
    end)
  end

  it("a luaio client writes then closes toward openssl s_server: all lines, then a clean end", function()
    for i = 1, math.max(2, ITER // 2) do
      local p, port = s_server()
      local c = aio.open_connection("localhost", port, { tls = CA })
      write_all(c)
      if i % 2 == 0 then c:drain() end
      c:close()
      local out = aio.timeout(10, p.stdout.read_all, p.stdout)
      p:wait()
      local n = 0
      for line in out:gmatch("[^\n]+") do if line .. "\n" == PIECE then n = n + 1 end end
      assert.equals(1000, n, "connection " .. i)
      assert.truthy(out:find("\nDONE\n", 1, true), "s_server saw no close_notify: " .. out:sub(-300))
    end
  end)

  it("a luaio server writes 1000 x 100 bytes and closes (close, drain, shutdown): a Python client reads them all", function()
    local conns = 0
    local server <close> = aio.start_server(function(s)
      conns = conns + 1
      write_all(s)
      local how = ({ "close", "drain", "shutdown" })[conns % 3 + 1]
      ENDINGS[how](s)
    end, "127.0.0.1", 0, { tls = SERVER_TLS })
    local n = 3 * ITER
    local r = aio.exec({ "python3", "-c", PY_CLIENT, tostring(server.port), cert("ca.pem"), tostring(n) })
    assert.equals(0, r.status, r.stderr)
    assert.equals(((TOTAL .. " EOF\n"):rep(n)), r.stdout)
    assert.equals(n, conns)
  end)

  it("a program that closes and ends at once still delivers everything", function()
    local p, port = py_server(1)
    local script = S.tmpfile(([[
      local aio = require "luaio"
      local c = aio.open_connection("localhost", %d, { tls = { ca_file = %q } })
      for _ = 1, 1000 do c:write(%q) end
      c:close()
    ]]):format(port, cert("ca.pem"), PIECE), ".lua")
    local t0 = aio.now()
    local _, err, code = S.bg(S.luaio .. " " .. script):wait(20)
    os.remove(script)
    assert.equals(0, code, err)
    assert.is_true(aio.now() - t0 < 4, "the program waited for its lingering close")
    assert.equals(TOTAL .. " EOF", aio.timeout(10, p.stdout.readline, p.stdout))
    p:wait()
  end)

  describe("toward a peer that never reads", function()
    -- the sockets this process holds open (their inode numbers)
    local function sockets()
      local f = assert(io.open("/proc/self/stat"))
      local pid = f:read("n")
      f:close()
      local set = {}
      for inode in S.sh("ls -l /proc/" .. pid .. "/fd"):gmatch("socket:%[(%d+)%]") do set[inode] = true end
      return set
    end

    local function stuck_close(timeout)
      local release = aio.Event()
      local server <close> = aio.start_server(function() release:wait() end, "127.0.0.1", 0, { tls = SERVER_TLS })
      local before = sockets()
      local c = aio.open_connection("localhost", server.port, { tls = CA })
      if timeout then c:set_timeout(timeout) end
      c:set_limits(nil, 1 << 30)                   -- write() never waits: all of it stays queued
      c:write(("q"):rep(32 * 1024 * 1024))         -- far more than the socket buffers hold
      local new = {}                               -- both ends of the connection
      for inode in pairs(sockets()) do if not before[inode] then new[#new + 1] = inode end end
      assert.equals(2, #new)
      local function still_open()
        local now, n = sockets(), 0
        for _, inode in ipairs(new) do if now[inode] then n = n + 1 end end
        return n
      end
      local t0 = aio.now()
      c:close()
      assert.is_true(aio.now() - t0 < 0.2)        -- close() never waits
      assert.is_true(c:closed())
      local ticks = 0
      local ok = pcall(aio.timeout, (timeout or 5) + 3, function()
        while still_open() > 1 do aio.sleep(0.05) ticks = ticks + 1 end   -- the loop runs on
      end)
      local waited = aio.now() - t0
      release:set()
      assert.is_true(ok, "the client's socket stayed open")
      assert.is_true(ticks > 0)
      return waited
    end

    it("close() gives up after the stream's timeout, without blocking the loop", function()
      local waited = stuck_close(0.3)
      assert.is_true(waited >= 0.25 and waited < 2, tostring(waited))
    end)

    it("close() gives up after 5 s without progress by default", function()
      local waited = stuck_close(nil)
      assert.is_true(waited >= 4.5 and waited < 8, tostring(waited))
    end)
  end)
end)
