-- The TLS protocol profile, checked with the real `openssl s_client` as the
-- peer: a luaio server speaks TLS 1.2+ with ECDHE + AEAD suites only, picks
-- the suite by its own order, and never compresses or renegotiates; a luaio
-- client refuses anything older than TLS 1.2. Each refusal has a control: the
-- same openssl client offer succeeds against a permissive openssl s_server,
-- so a refusal proves the luaio side refused, not the local openssl policy.
local aio = require "luaio"
local S = require "spec.support"

local CERTS = os.tmpname()
os.remove(CERTS)
do
  local _, err, code = S.sh("tools/make_test_certs.sh " .. CERTS)
  assert(code == 0, "making the test certificates failed: " .. err)
  -- the test certificates are ECDSA; the ECDHE-RSA suites need an RSA one
  _, err, code = S.sh(("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.pem"
    .. " -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1"):format(CERTS))
  assert(code == 0, "making the RSA certificate failed: " .. err)
end
local function cert(name) return CERTS .. "/" .. name end
local ECDSA = { cert_file = cert("server.pem"), key_file = cert("server.key") }
local RSA = { cert_file = cert("rsa.pem"), key_file = cert("rsa.key") }
-- lets openssl offer what it refuses by default (TLS 1.0/1.1, SHA-1 suites)
local ANY = "ALL:@SECLEVEL=0"

-- A luaio TLS server answering each connection with "hi" (so s_client has
-- application data to read before its stdin ends the session).
-- (`silent`: it only reads, so nothing it sends can cross what the client sends)
local function luaio_server(tls, silent)
  return aio.start_server(function(s)
    if not silent then pcall(s.write, s, "hi\n") end
    pcall(s.read, s, 100)
  end, "127.0.0.1", 0, { tls = tls })
end

-- openssl s_server accepting everything (extra arguments: -tls1_1, ...), on
-- a port of its own choosing; -> a handle with .port, killed when closed
-- (`local srv <close> = ...`), so a failed assertion leaves no process behind
local function permissive_server(tls, ...)
  local p = aio.spawn_process({ "openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", tls.cert_file,
    "-key", tls.key_file, "-cipher", ANY, "-naccept", "2", ... }, { stderr = "pipe" })
  local srv = setmetatable({}, { __close = function() pcall(p.kill, p) pcall(p.wait, p) end })
  local ok, err = pcall(aio.timeout, 10, function()
    repeat
      local line = assert(p.stdout:readline(), "s_server ended before listening")
      srv.port = tonumber(line:match("^ACCEPT .*:(%d+)"))
    until srv.port
  end)
  if not ok then getmetatable(srv).__close() error(err, 0) end
  return srv
end

-- Run s_client against port with the extra arguments; -> protocol, cipher
-- (nil, nil when the handshake failed) and its whole output.
local function s_client(port, ...)
  local argv = { "openssl", "s_client", "-connect", "127.0.0.1:" .. port, "-servername", "localhost", ... }
  local r = aio.exec(argv, { stdin = "", timeout = 20 })
  local out = r.stdout .. r.stderr
  -- "New, V, Cipher is C": V is the suite's version (TLSv1.0 for a TLS 1.1
  -- session); the session block, when printed, has the session's
  local version, cipher = out:match("New, (%S+), Cipher is (%S+)")
  local proto = out:match("\n%s*Protocol%s*: (%S+)") or version
  if r.status ~= 0 or not proto or not cipher or cipher == "(NONE)" then return nil, nil, out end
  return proto, cipher, out
end

-- the same offer against the permissive openssl server: it must succeed
local function control(tls, ...)
  local srv <close> = permissive_server(tls)
  local proto, cipher, out = s_client(srv.port, ...)
  assert(proto, "control: openssl cannot make this offer here at all:\n" .. out)
  return proto, cipher
end

describe("TLS profile", function()
  teardown(function() os.execute("rm -rf " .. CERTS) end)

  describe("a luaio server", function()
    it("speaks TLS 1.3", function()
      local server <close> = luaio_server(ECDSA)
      local proto, cipher, out = s_client(server.port, "-tls1_3")
      assert.equals("TLSv1.3", proto, out)
      assert.matches("^TLS_", cipher)
    end)

    it("speaks TLS 1.2 with the ECDHE + AEAD suites, for ECDSA and RSA keys", function()
      local server <close> = luaio_server(ECDSA)
      for _, suite in ipairs { "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                               "ECDHE-ECDSA-CHACHA20-POLY1305" } do
        local proto, cipher, out = s_client(server.port, "-tls1_2", "-cipher", suite)
        assert.equals("TLSv1.2", proto, out)
        assert.equals(suite, cipher)
      end
      local rsa <close> = luaio_server(RSA)
      for _, suite in ipairs { "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
                               "ECDHE-RSA-CHACHA20-POLY1305" } do
        local proto, cipher, out = s_client(rsa.port, "-tls1_2", "-cipher", suite)
        assert.equals("TLSv1.2", proto, out)
        assert.equals(suite, cipher)
      end
    end)

    it("refuses TLS 1.1 and 1.0", function()
      for _, version in ipairs { "-tls1_1", "-tls1" } do
        control(ECDSA, version, "-cipher", ANY)
        local server <close> = luaio_server(ECDSA)
        local proto, _, out = s_client(server.port, version, "-cipher", ANY)
        assert.is_nil(proto, out)
      end
    end)

    it("refuses CBC suites and RSA key exchange in TLS 1.2", function()
      local cases = {
        { ECDSA, "ECDHE-ECDSA-AES128-SHA" }, { ECDSA, "ECDHE-ECDSA-AES256-SHA384" },
        { RSA, "ECDHE-RSA-AES128-SHA256" }, { RSA, "AES128-SHA" }, { RSA, "AES128-GCM-SHA256" },
        { RSA, "DHE-RSA-AES128-GCM-SHA256" },
      }
      for _, case in ipairs(cases) do
        local tls, suite = case[1], case[2]
        assert.equals(suite, select(2, control(tls, "-tls1_2", "-cipher", suite .. ":@SECLEVEL=0")))
        local server <close> = luaio_server(tls)
        local proto, cipher, out = s_client(server.port, "-tls1_2", "-cipher", suite .. ":@SECLEVEL=0")
        assert.is_nil(proto, suite .. " was accepted (" .. tostring(cipher) .. ")\n" .. out)
      end
    end)

    it("picks the suite by its own order, not the client's", function()
      local server <close> = luaio_server(ECDSA)
      -- the client prefers CHACHA20, then AES-256, then a CBC suite the server lacks
      local offer = "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA"
      local _, cipher, out = s_client(server.port, "-tls1_2", "-cipher", offer)
      assert.equals("ECDHE-ECDSA-AES256-GCM-SHA384", cipher, out)
      offer = "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"
      _, cipher, out = s_client(server.port, "-tls1_2", "-cipher", offer)
      assert.equals("ECDHE-ECDSA-AES128-GCM-SHA256", cipher, out)
    end)

    it("does not compress and refuses a renegotiation", function()
      -- a silent server: data of its own arriving while the client renegotiates
      -- would end the session with "unexpected record" before the alert
      local server <close> = luaio_server(ECDSA, true)
      local proto, _, out = s_client(server.port, "-tls1_2")
      assert.equals("TLSv1.2", proto, out)
      assert.matches("Compression: NONE", out)
      -- "R" on s_client's stdin asks for a renegotiation; the server answers
      -- with a no_renegotiation alert, which ends the session in OpenSSL 3
      -- (stdin stays open a moment after the "R": at its end s_client would
      -- leave before the server's alert arrives)
      local r = aio.exec({ "sh", "-c", "(printf 'R\\n'; sleep 2) | openssl s_client -connect 127.0.0.1:"
                           .. server.port .. " -tls1_2" }, { timeout = 20 })
      out = r.stdout .. r.stderr
      assert.matches("RENEGOTIATING", out)
      assert.matches("no renegotiation", out)
    end)

    it("applies to an HTTPS server from aio.http", function()
      local app = aio.http.app()
      app:route("/", function() return "ok" end)
      local server <close> = app:listen("127.0.0.1", 0, { tls = ECDSA })
      local proto, cipher, out = s_client(server.port, "-tls1_2")
      assert.equals("TLSv1.2", proto, out)
      assert.equals("ECDHE-ECDSA-AES128-GCM-SHA256", cipher)
      proto, _, out = s_client(server.port, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0")
      assert.is_nil(proto, out)
    end)
  end)

  describe("a luaio client", function()
    it("refuses TLS 1.1 even when the server offers nothing newer", function()
      local srv <close> = permissive_server(ECDSA, "-tls1_1")
      local proto, _, out = s_client(srv.port, "-cipher", ANY)   -- control: it does speak TLS 1.1
      assert.equals("TLSv1.1", proto, out)
      local ok, err = pcall(aio.open_connection, "127.0.0.1", srv.port, { tls = { verify = false } })
      assert.is_false(ok)
      assert.is_true(aio.is_error(err, "TLSError"), tostring(err))
    end)
  end)
end)
