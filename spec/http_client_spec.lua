-- The HTTP client (API.md §6) against Python's stdlib http.server.
local aio = require "luaio"
local S = require "spec.support"

local PY = [[
import http.server, json, sys, time, threading
conns = set()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def send(self, code, body, ctype="text/plain", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra: self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD": self.wfile.write(body)
    def do_HEAD(self): self.do_GET()
    def do_GET(self):
        conns.add(self.client_address[1])
        p = self.path
        if p.startswith("/status/"): return self.send(int(p.split("/")[2]), b"status body")
        if p == "/json": return self.send(200, json.dumps({"a": 1, "b": [1, 2]}).encode(), "application/json")
        if p == "/headers": return self.send(200, json.dumps(dict(self.headers)).encode(), "application/json", [("X-Mixed-Case", "Yes")])
        if p == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        if p.startswith("/redirect/"):
            n = int(p.split("/")[2])
            return self.send(302, b"", extra=[("Location", "/redirect/%d" % (n - 1) if n > 1 else "/json")])
        if p == "/relative": return self.send(301, b"", extra=[("Location", "json")])
        if p == "/slow":
            time.sleep(1)
            return self.send(200, b"slow")
        if p == "/conns": return self.send(200, str(len(conns)).encode())
        if p.startswith("/echo-path/"): return self.send(200, p.encode())
        if p == "/xlist": return self.send(200, "|".join(self.headers.get_all("X-List") or []).encode())
        return self.send(404, b"not found")
    def do_POST(self):
        conns.add(self.client_address[1])
        n = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(n)
        if self.path == "/see-other": return self.send(303, b"", extra=[("Location", "/json")])
        self.send(200, json.dumps({"len": n, "type": self.headers.get("Content-Type"), "body": body.decode()}).encode(), "application/json")
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(sys.argv[1], "w") as f: f.write(str(srv.server_address[1]))
threading.Timer(60, srv.shutdown).start()
srv.serve_forever()
]]

describe("HTTP client", function()
  local job, base, script, portfile
  setup(function()
    script = S.tmpfile(PY, ".py")
    portfile = os.tmpname()
    os.remove(portfile)
    job = S.bg("python3 " .. script .. " " .. portfile)
    local port
    for _ = 1, 500 do
      local f = io.open(portfile)
      if f then port = tonumber(f:read("a")) f:close() end
      if port then break end
      aio.sleep(0.02)
    end
    assert(port, "python http.server did not start")
    base = "http://127.0.0.1:" .. port
  end)
  teardown(function()
    os.execute("pkill -f " .. script .. " >/dev/null 2>&1")
    job:wait()
    os.remove(script)
    os.remove(portfile)
  end)

  it("GET: status, reason, case-insensitive headers, body, json(), url", function()
    local r = aio.http.get(base .. "/json")
    assert.equals(200, r.status)
    assert.equals("OK", r.reason)
    assert.equals("application/json", r.headers["Content-Type"])
    assert.equals("application/json", r.headers["content-type"])
    assert.same({ a = 1, b = { 1, 2 } }, r:json())
    assert.equals(base .. "/json", r.url)
  end)

  it("sends opts.headers", function()
    local r = aio.http.get(base .. "/headers", { headers = { ["X-Token"] = "abc" } })
    assert.equals("abc", r:json()["X-Token"])
    assert.equals("Yes", r.headers["x-mixed-case"])
  end)

  it("a non-2xx status is not an error; raise_for_status raises HTTPError", function()
    local r = aio.http.get(base .. "/status/404")
    assert.equals(404, r.status)
    local ok, err = pcall(r.raise_for_status, r)
    assert.is_true(aio.is_error(err, "HTTPError"))
    assert.equals(404, err.status)
    assert.equals(r, aio.http.get(base .. "/status/200"):raise_for_status() and r)
  end)

  it("reads a chunked response", function()
    assert.equals("hello chunked world", aio.http.get(base .. "/chunked").body)
  end)

  it("POST with body and with json", function()
    local r = aio.http.post(base .. "/echo", { body = "raw bytes" })
    assert.same({ len = 9, body = "raw bytes" }, { len = r:json().len, body = r:json().body })
    r = aio.http.post(base .. "/echo", { json = { k = "v" } })
    assert.equals("application/json", r:json().type)
    assert.same({ k = "v" }, aio.json.decode(r:json().body))
  end)

  it("follows redirects up to max_redirects, relative ones too", function()
    local r = aio.http.get(base .. "/redirect/3")
    assert.equals(200, r.status)
    assert.equals(base .. "/json", r.url)
    -- past max_redirects: an error, as in requests, aiohttp and curl -L; 0 follows none
    local ok, err = pcall(aio.http.get, base .. "/redirect/3", { max_redirects = 1 })
    assert.is_true(aio.is_error(err, "HTTPError"))
    assert.equals(302, err.status)
    assert.equals(302, err.response.status)
    assert.matches("too many redirects", err.message)
    r = aio.http.get(base .. "/redirect/3", { max_redirects = 0 })
    assert.equals(302, r.status)
    assert.equals(base .. "/redirect/3", r.url)
    assert.equals(200, aio.http.get(base .. "/relative").status)
    r = aio.http.post(base .. "/see-other", { body = "x" })
    assert.equals(200, r.status)
    assert.equals(base .. "/json", r.url)
  end)

  it("HEAD gets headers and no body", function()
    local r = aio.http.request("HEAD", base .. "/json")
    assert.equals(200, r.status)
    assert.equals("", r.body)
  end)

  it("times out with TimeoutError", function()
    local ok, err = pcall(aio.http.get, base .. "/slow", { timeout = 0.1 })
    assert.is_true(aio.is_error(err, "TimeoutError"))
  end)

  it("a Session reuses its connection (counted by the server)", function()
    local before = tonumber(aio.http.get(base .. "/conns").body)
    local session <close> = aio.http.Session({ headers = { ["X-Session"] = "1" } })
    for _ = 1, 5 do assert.equals(200, session:get(base .. "/json").status) end
    local after = tonumber(session:get(base .. "/conns").body)
    assert.equals(before + 1, after)   -- the one-shot /conns counted itself; the session adds one
    assert.equals(1, session.connections_made)
    assert.equals("1", session:get(base .. "/headers"):json()["X-Session"])
  end)

  it("a Session limits its connections", function()
    local session <close> = aio.http.Session({ max_connections = 2 })
    local fns = {}
    for i = 1, 6 do fns[i] = function() return session:get(base .. "/json").status end end
    local r = aio.gather(fns)
    for i = 1, 6 do assert.equals(200, r[i]) end
    assert.is_true(session.connections_made <= 2)
  end)

  it("bad input gets clear errors", function()
    local ok, err = pcall(aio.http.get, "http://127.0.0.1:99999/")
    assert.is_true(aio.is_error(err, "ValueError"))
    assert.matches("bad port", err.message)
    ok, err = pcall(aio.http.get, "https://127.0.0.1:1/", { tls = "yes" })
    assert.matches("bad argument #2 to 'aio.http.get' (opts.tls: table or boolean expected, got string)", tostring(err), 1, true)
    ok, err = pcall(aio.http.get, "not a url")
    assert.is_false(ok)
    ok, err = pcall(aio.http.get, "ftp://x/")
    assert.is_true(aio.is_error(err, "ProtocolError"))
    ok, err = pcall(aio.http.get, "http://127.0.0.1:1/")
    assert.is_true(aio.is_error(err, "ConnectionError"))
    assert.has_error(function() aio.http.post(base .. "/echo", { body = {} }) end)
    ok, err = pcall(aio.http.get, base .. "/json", { timeout = "soon" })
    assert.matches("bad argument #2 to 'aio.http.get' (opts.timeout: number expected, got string)", tostring(err), 1, true)
    ok, err = pcall(aio.http.get, base .. "/json", { max_redirects = -1 })
    assert.matches("bad argument #2 to 'aio.http.get' (opts.max_redirects: integer >= 0 expected, got -1)", tostring(err), 1, true)
  end)

  it("encodes what a request line cannot hold, refuses header injection, lets the caller's Host win", function()
    local r = aio.http.get(base .. "/echo-path/a b\"\195\169")
    assert.equals("/echo-path/a%20b%22%C3%A9", r.body)
    r = aio.http.get(base .. "/headers", { headers = { Host = "example.test" } })
    assert.equals("example.test", r:json().Host)
    assert.equals("1|2", aio.http.get(base .. "/xlist", { headers = { ["X-List"] = { "1", "2" } } }).body)
    local ok, err = pcall(aio.http.get, base .. "/json", { headers = { ["X-Evil"] = "a\r\nX-Injected: 1" } })
    assert.is_false(ok)
    assert.matches("line break", tostring(err))
    ok, err = pcall(aio.http.get, "http://127.0.0.1\r\nX-Injected: 1/")
    assert.is_true(aio.is_error(err, "ValueError"))
    ok, err = pcall(aio.http.request, "GET /x", base .. "/json")
    assert.matches("bad argument #1 to 'aio.http.request' (method token expected, got \"GET /x\")", tostring(err), 1, true)
    ok, err = pcall(aio.http.Session, { headers = { ["Bad Name"] = "x" } })
    assert.matches("bad header name", tostring(err))
  end)

  it("a cancelled request leaves the session usable", function()
    local session <close> = aio.http.Session()
    local t = aio.spawn(function() return session:get(base .. "/slow") end)
    aio.sleep(0.05)
    t:cancel()
    pcall(t.wait, t)
    assert.equals(200, session:get(base .. "/json").status)
  end)
end)

describe("aio.json", function()
  it("round trips and names the position of bad input", function()
    local v = aio.json.decode(aio.json.encode({ a = { 1, 2, 3 }, s = "x", n = aio.json.null }))
    assert.same({ 1, 2, 3 }, v.a)
    assert.equals(aio.json.null, v.n)
    local ok, err = pcall(aio.json.decode, '{"a": [1, 2,, 3]}')
    assert.is_false(ok)
    assert.matches("char%a* %d+", err)
  end)

  it("decodes whole numbers as integers, as Python's json does", function()
    local v = aio.json.decode('{"id": 7, "n": [1, -2, 3.5, 1e3], "big": 9007199254740993, "deep": [[{"x": 0}]]}')
    assert.equals("integer", math.type(v.id))
    assert.equals("7", tostring(v.id))
    assert.same({ "integer", "integer", "float", "integer" },
      { math.type(v.n[1]), math.type(v.n[2]), math.type(v.n[3]), math.type(v.n[4]) })
    assert.equals(1000, v.n[4])
    assert.equals("float", math.type(v.big))          -- past 2^53 a float is no longer exact
    assert.equals("integer", math.type(v.deep[1][1].x))
    assert.equals("integer", math.type(aio.json.decode("42")))
    assert.equals("string", type(aio.json.decode('"7"')))
  end)
end)
