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
