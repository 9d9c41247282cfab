-- The HTTP client's additions for services (API.md §6b): methods, params,
-- forms, body limits, streamed bodies, gzip/deflate, every Set-Cookie, the
-- cookie jar, redirects across origins, URL helpers. The peers are real
-- luaio servers on 127.0.0.1 (Python's servers: http_peers_spec.lua).
local aio = require "luaio"
local S = require "spec.support"
local core = require "luaio.core"

local function serve(app, opts)
  local srv = app:listen("127.0.0.1", 0, opts)
  return srv, "http://127.0.0.1:" .. srv.port
end

-- `n` bytes of zeros as gzip, made by compressing 64 KiB at a time
local function gzip_zeros(n)
  local d <close> = core.deflater("gzip", 9)
  local block, parts = string.rep("\0", 65536), {}
  for _ = 1, n // 65536 do parts[#parts + 1] = d:write(block) end
  parts[#parts + 1] = d:finish()
  return table.concat(parts)
end

describe("HTTP client for services", function()
  local srv, base, bomb, seen
  setup(function()
    seen = {}
    bomb = gzip_zeros(256 * 1024 * 1024)   -- 256 MiB of zeros, ~256 KiB on the wire
    local app = aio.http.app()
    app:route("/method", function(req) return { method = req.method, body = req.body, query = req.query,
      type = req.headers["content-type"] } end, { "GET", "POST", "PUT", "PATCH", "DELETE" })
    app:route("/size/:n", function(req) return string.rep("x", tonumber(req.params.n)) end)
    app:route("/endless", function(req)
      local res = req:respond(200)
      local piece = string.rep("y", 65536)
      while true do res:write(piece) end
    end)
    app:route("/pieces", function(req)
      local res = req:respond(200, { ["Content-Type"] = "text/plain" })
      for i = 1, 5 do res:write("piece" .. i .. ";") aio.sleep(0.01) end
      res:close()
    end)
    app:route("/text", function() return string.rep("compress me please. ", 200) end)
    app:route("/bomb", function() return bomb, 200, { ["Content-Encoding"] = "gzip" } end)
    app:route("/deflate", function()
      local d <close> = core.deflater("zlib")
      return d:write("deflated body", "finish"), 200, { ["Content-Encoding"] = "deflate" }
    end)
    app:route("/cookies/set", function()
      return "set", 200, { ["Set-Cookie"] = { "a=1; Path=/", "b=2; Path=/cookies", "c=3; Max-Age=0",
        "d=4; Path=/; Secure", "e=5; Path=/; HttpOnly" } }
    end)
    app:route("/cookies/show", function(req) return { cookie = req.headers.cookie or "" } end)
    app:route("/show", function(req) return { cookie = req.headers.cookie or "" } end)
    app:route("/creds", function(req)
      seen[#seen + 1] = { auth = req.headers.authorization, cookie = req.headers.cookie, host = req.headers.host }
      return "ok"
    end)
    app:route("/to/:port", function(req)
      return "", 302, { Location = "http://127.0.0.1:" .. req.params.port .. "/creds" }
    end)
    app:route("/same", function() return "", 307, { Location = "/creds" } end)
    app:route("/slow-body", function(req)
      local res = req:respond(200, { ["Content-Length"] = "10" })
      res:write("12345")
      aio.sleep(10)
      res:write("67890")
    end)
    srv, base = serve(app, { compress = true })
  end)
  teardown(function() srv:close() end)

  it("put, patch, delete, head (and the same on a Session)", function()
    for _, m in ipairs { "put", "patch", "delete" } do
      local r = aio.http[m](base .. "/method", { body = "x" })
      assert.equals(m:upper(), r:json().method)
    end
    local h = aio.http.head(base .. "/size/100")
    assert.equals(200, h.status)
    assert.equals("", h.body)
    assert.equals("100", h.headers["content-length"])
    local s <close> = aio.http.Session()
    for _, m in ipairs { "get", "post", "put", "patch", "delete" } do
      assert.equals(m:upper(), s[m](s, base .. "/method"):json().method)
    end
    assert.equals(200, s:head(base .. "/size/5").status)
    assert.equals(1, s.connections_made)
  end)

  it("opts.params go into the query string, opts.form is sent urlencoded", function()
    local r = aio.http.get(base .. "/method?x=0", { params = { q = "a b&c", n = 3, list = { "1", "2" } } }):json()
    assert.same({ x = "0", q = "a b&c", n = "3", list = { "1", "2" } }, r.query)
    r = aio.http.post(base .. "/method", { form = { name = "Zoé", tags = { "a", "b" } } }):json()
    assert.equals("application/x-www-form-urlencoded", r.type)
    assert.same({ name = "Zoé", tags = { "a", "b" } }, aio.http.decode_query(r.body))
    local ok, err = pcall(aio.http.post, base .. "/method", { form = { f = print } })
    assert.matches("bad argument #2 to 'aio.http.post' (opts.form:", tostring(err), 1, true)
    ok, err = pcall(aio.http.post, base .. "/method", { form = {}, body = "x" })
    assert.matches("only one of opts.body, opts.json and opts.form", tostring(err), 1, true)
  end)

  it("max_body: a body at the limit is read, one byte more raises HTTPError", function()
    assert.equals(1000, #aio.http.get(base .. "/size/1000", { max_body = 1000 }).body)
    local ok, err = pcall(aio.http.get, base .. "/size/1001", { max_body = 1000 })
    assert.is_true(aio.is_error(err, "HTTPError"), tostring(err))
    -- an endless chunked body is cut at the limit (default 64 MiB), not at the timeout
    local t0 = aio.now()
    ok, err = pcall(aio.http.get, base .. "/endless", { max_body = 1024 * 1024, timeout = 20 })
    assert.is_true(aio.is_error(err, "HTTPError"), tostring(err))
    assert.matches("too large", err.message)
    assert.is_true(aio.now() - t0 < 5)
    ok, err = pcall(aio.http.get, base .. "/endless", { timeout = 30 })
    assert.is_true(aio.is_error(err, "HTTPError"), tostring(err))
    ok, err = pcall(aio.http.get, base .. "/size/1", { max_body = -1 })
    assert.matches("opts.max_body: integer >= 0 expected, got -1", tostring(err), 1, true)
  end)

  it("stream = true: the head first, then read / chunks / read_all; the connection is reused", function()
    local s <close> = aio.http.Session()
    local r = s:get(base .. "/pieces", { stream = true })
    assert.equals(200, r.status)
    assert.is_nil(r.body)
    local got = {}
    for piece in r:chunks() do got[#got + 1] = piece end
    assert.equals("piece1;piece2;piece3;piece4;piece5;", table.concat(got))
    assert.is_nil(r:read())
    r = s:get(base .. "/pieces", { stream = true })
    assert.equals("piece1;", r:read(7))
    assert.equals("piece2;piece3;piece4;piece5;", r:read_all())
    assert.equals(1, s.connections_made)
    -- closing a half-read response closes its connection; the session goes on
    r = s:get(base .. "/endless", { stream = true })
    local first = r:read(65536)
    assert.is_true(#first > 0 and #first <= 65536)
    r:close()
    assert.equals(200, s:get(base .. "/size/3").status)
    assert.equals(2, s.connections_made)
    -- a streamed read times out with the request's timeout, and can be cancelled
    r = s:get(base .. "/slow-body", { stream = true, timeout = 0.2 })
    assert.equals("12345", r:read())
    local ok, err = pcall(r.read, r)
    assert.is_true(aio.is_error(err, "TimeoutError"), tostring(err))
    r:close()
    r = s:get(base .. "/slow-body", { stream = true })
    assert.equals("12345", r:read())
    local t = aio.spawn(function() return r:read() end)
    aio.sleep(0.05)
    t:cancel()
    assert.is_true(aio.is_error(select(2, pcall(t.wait, t)), "CancelledError"))
    r:close()
    ok, err = pcall(function() local x = r:read(0) return x end)
    assert.matches("bad argument #1 to 'read' (byte count (integer >= 1) expected, got 0)", tostring(err), 1, true)
    ok, err = pcall(r.read, {})
    assert.matches("luaio.http.Response expected", tostring(err), 1, true)
  end)

  it("gzip and deflate bodies are decoded; decompress = false keeps them; a bomb is cut at max_body", function()
    local r = aio.http.get(base .. "/text")
    assert.equals("gzip", r.headers["content-encoding"])
    assert.equals(string.rep("compress me please. ", 200), r.body)
    r = aio.http.get(base .. "/text", { decompress = false })
    assert.is_true(#r.body < 4000)
    assert.equals("\31\139", r.body:sub(1, 2))
    assert.equals("deflated body", aio.http.get(base .. "/deflate").body)
    local ok, err = pcall(aio.http.get, base .. "/bomb", { max_body = 1024 * 1024 })
    assert.is_true(aio.is_error(err, "HTTPError"), tostring(err))
    local before = S.rss_kib()
    ok, err = pcall(aio.http.get, base .. "/bomb")        -- the default: 64 MiB
    assert.is_true(aio.is_error(err, "HTTPError"), tostring(err))
    assert.is_true(S.rss_kib() - before < 200 * 1024)
  end)

  it("headers:get_all lists every Set-Cookie; a Session with cookies = true keeps a jar", function()
    local r = aio.http.get(base .. "/cookies/set")
    assert.same({ "a=1; Path=/", "b=2; Path=/cookies", "c=3; Max-Age=0", "d=4; Path=/; Secure",
      "e=5; Path=/; HttpOnly" }, r.headers:get_all("Set-Cookie"))
    assert.same({ "set" }, { r.body })
    assert.same({}, r.headers:get_all("x-none"))
    assert.same({ "3" }, r.headers:get_all("Content-Length"))
    local s <close> = aio.http.Session({ cookies = true })
    s:get(base .. "/cookies/set")
    -- b only under /cookies, c expired, d only over https, e kept (HttpOnly is for browsers)
    assert.equals("b=2; a=1; e=5", s:get(base .. "/cookies/show"):json().cookie)
    assert.equals("a=1; e=5", s:get(base .. "/show"):json().cookie)
    local plain <close> = aio.http.Session()
    plain:get(base .. "/cookies/set")
    assert.equals("", plain:get(base .. "/show"):json().cookie)
  end)

  it("a redirect to another origin drops Authorization and Cookie; https -> http is refused", function()
    local app2 = aio.http.app()
    app2:route("/creds", function(req)
      seen[#seen + 1] = { auth = req.headers.authorization, cookie = req.headers.cookie, other = true }
      return "other"
    end)
    local srv2 <close> = app2:listen("127.0.0.1", 0)
    local creds = { Authorization = "Bearer secret", Cookie = "sid=1", ["Proxy-Authorization"] = "x" }
    seen = {}
    assert.equals("ok", aio.http.get(base .. "/same", { headers = creds }).body)
    assert.same({ auth = "Bearer secret", cookie = "sid=1", host = "127.0.0.1:" .. srv.port }, seen[1])
    seen = {}
    assert.equals("other", aio.http.get(base .. "/to/" .. srv2.port, { headers = creds }).body)
    assert.same({ other = true }, seen[1])
    -- https -> http: a TLS server redirecting to plain http
    local certs = os.tmpname()
    os.remove(certs)
    local _, e, code = S.sh("tools/make_test_certs.sh " .. certs)
    assert.equals(0, code, e)
    local tls_app = aio.http.app()
    tls_app:route("/down", function() return "", 302, { Location = base .. "/creds" } end)
    local tsrv <close> = tls_app:listen("127.0.0.1", 0,
      { tls = { cert_file = certs .. "/server.pem", key_file = certs .. "/server.key" } })
    local url = "https://localhost:" .. tsrv.port .. "/down"
    local tls = { ca_file = certs .. "/ca.pem" }
    local ok, err = pcall(aio.http.get, url, { tls = tls, headers = creds })
    assert.is_true(aio.is_error(err, "HTTPError"), tostring(err))
    assert.matches("https to http", err.message)
    seen = {}
    assert.equals("ok", aio.http.get(url, { tls = tls, headers = creds, allow_downgrade = true }).body)
    assert.is_nil(seen[1].auth)
    os.execute("rm -rf " .. certs)
  end)

  it("a ConnectionError names the host and port that failed", function()
    local l = aio.start_server(function() end, "127.0.0.1", 0)
    local port = l.port
    l:close()
    local ok, err = pcall(aio.http.get, "http://127.0.0.1:" .. port .. "/")
    assert.is_true(aio.is_error(err, "ConnectionError"))
    assert.matches("127.0.0.1:" .. port, err.message, 1, true)
    ok, err = pcall(aio.open_connection, "127.0.0.1", port)
    assert.matches("127.0.0.1:" .. port, tostring(err), 1, true)
  end)
end)

describe("aio.http URL helpers", function()
  it("parse_url", function()
    local u = aio.http.parse_url("https://Example.com:8443/a/b?x=1&y=2#frag")
    assert.same({ "https", "Example.com", 8443, "/a/b", "x=1&y=2" }, { u.scheme, u.host, u.port, u.path, u.query })
    u = aio.http.parse_url("http://[::1]/")
    assert.same({ "http", "::1", 80, "/" }, { u.scheme, u.host, u.port, u.path })
    assert.is_nil(u.query)
    assert.has_error(function() aio.http.parse_url(1) end)
    assert.is_false(pcall(aio.http.parse_url, "nope"))
  end)

  it("url_join resolves references as RFC 3986 §5.4 does", function()
    local base = "http://a/b/c/d;p?q"
    local cases = {
      ["g"] = "http://a/b/c/g", ["./g"] = "http://a/b/c/g", ["g/"] = "http://a/b/c/g/",
      ["/g"] = "http://a/g", ["//g"] = "http://g", ["?y"] = "http://a/b/c/d;p?y",
      ["g?y"] = "http://a/b/c/g?y", ["#s"] = "http://a/b/c/d;p?q#s", ["g#s"] = "http://a/b/c/g#s",
      [""] = "http://a/b/c/d;p?q", ["."] = "http://a/b/c/", ["./"] = "http://a/b/c/",
      [".."] = "http://a/b/", ["../"] = "http://a/b/", ["../g"] = "http://a/b/g",
      ["../.."] = "http://a/", ["../../g"] = "http://a/g", ["../../../g"] = "http://a/g",
      ["/./g"] = "http://a/g", ["/../g"] = "http://a/g", ["g."] = "http://a/b/c/g.",
      ["g/../h"] = "http://a/b/c/h", ["https://x/y"] = "https://x/y",
    }
    for ref, want in pairs(cases) do assert.equals(want, aio.http.url_join(base, ref), ref) end
    assert.has_error(function() aio.http.url_join(base) end)
  end)

  it("encode_query and decode_query round trip", function()
    local q = aio.http.encode_query({ b = "x y", a = { "1", "2" }, c = 3, d = true })
    assert.equals("a=1&a=2&b=x%20y&c=3&d=true", q)
    assert.same({ a = { "1", "2" }, b = "x y", c = "3", d = "true" }, aio.http.decode_query(q))
    assert.same({ k = "v+w" }, aio.http.decode_query("k=v%2Bw"))
    local ok, err = pcall(aio.http.encode_query, { f = print })
    assert.matches("bad argument #1 to 'aio.http.encode_query'", tostring(err), 1, true)
    assert.has_error(function() aio.http.encode_query("x") end)
  end)
end)
