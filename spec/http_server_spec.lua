-- The HTTP/1.1 server (API.md §6), checked with curl and raw sockets.
local aio = require "luaio"
local S = require "spec.support"

local function make_app()
  local app = aio.http.app()
  app:route("/", function() return "hello\n" end)
  app:route("/users/:id", function(req) return { id = req.params.id, q = req.query.q } end)
  app:route("/echo", function(req) return req.body, 201, { ["X-Len"] = #req.body } end, { "POST", "PUT" })
  app:route("/json", function(req) return { got = req:json() } end, "POST")
  app:route("/headers", function(req) return req.headers["x-custom"] or "none" end)
  app:route("/tags", function(req)
    return { joined = req.headers["x-tag"], each = req.headers:get_all("X-Tag"), none = req.headers:get_all("x-no") }
  end)
  app:route("/boom", function() error("kaboom") end)
  app:route("/slow", function() aio.sleep(0.2) return "slow\n" end)
  app:route("/big", function() return ("D"):rep(10 * 1024 * 1024) end)
  app:route("/peer", function(req) return req.peer end)
  app:route("/typed", function() return "<b>hi</b>", 200, { ["Content-Type"] = "text/html" } end)
  app:route("/cookies", function() return "ok", 200, { ["Set-Cookie"] = { "a=1", "b=2" } } end)
  app:route("/split", function() return "x", 200, { ["X-Evil"] = "a\r\nSet-Cookie: pwned=1" } end)
  app:route("/nothing", function() return "ignored", 204 end)
  app:route("/unchanged", function() return nil, 304, { ETag = '"v1"' } end)
  app:route("/target", function(req)
    return { path = req.path, query = req.query, target = req.target, version = req.version,
             host = req.headers.host, tags = req.headers:get_all("x-tag") }
  end)
  return app
end

local function curl(args)
  local out, err, code = S.bg("curl -sS " .. args):wait(30)
  return out, err, code
end

-- raw request over a socket; returns everything the server sends until it closes
local function raw(port, bytes, opts)
  local c <close> = aio.open_connection("127.0.0.1", port)
  c:write(bytes)
  if opts and opts.half_close then c:shutdown() end
  return aio.timeout(5, c.read_all, c)
end

describe("HTTP server", function()
  local server, base
  setup(function()
    server = make_app():listen("127.0.0.1", 0, { max_body = 1024 * 1024 * 20, max_header = 8192, header_timeout = 0.5 })
    base = "http://127.0.0.1:" .. server.port
  end)
  teardown(function() server:close() end)

  it("answers curl with a text body, Date and Server headers", function()
    local out, err, code = curl("-i " .. base .. "/")
    assert.equals(0, code, err)
    assert.matches("^HTTP/1.1 200 OK\r\n", out)
    assert.matches("\r\nContent%-Type: text/plain; charset=utf%-8\r\n", out)
    assert.matches("\r\nDate: %a+, %d+ %a+ %d+ [%d:]+ GMT\r\n", out)
    assert.matches("\r\nServer: luaio\r\n", out)
    assert.matches("\r\n\r\nhello\n$", out)
  end)

  it("the Date line is an IMF-fixdate of the second the answer was made", function()
    local before = os.date("!%a, %d %b %Y %H:%M:%S GMT")
    local out = raw(server.port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    local after = os.date("!%a, %d %b %Y %H:%M:%S GMT")
    local date = out:match("\r\nDate: ([^\r]*)\r\n")
    assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", date)
    assert.is_true(date == before or date == after, date)
  end)

  it("target, version and headers (read on first use) and path and query split from the target", function()
    local cases = {
      { "/target?a=1&b=2", "HTTP/1.1", "/target", { a = "1", b = "2" } },
      { "/target#frag?x=1", "HTTP/1.1", "/target", {} },
      { "/target?x=1#y", "HTTP/1.0", "/target", { x = "1" } },
      { "http://example.com/target?z=3", "HTTP/1.1", "/target", { z = "3" } },
    }
    for _, case in ipairs(cases) do
      local out = raw(server.port, "GET " .. case[1] .. " " .. case[2] .. "\r\nHost: h.example\r\nX-Tag: a\r\n"
        .. "x-tag: b\r\nConnection: close\r\n\r\n")
      local t = aio.json.decode(out:match("\r\n\r\n(.*)$"))
      assert.same({ path = case[3], query = case[4], target = case[1], version = case[2], host = "h.example",
                    tags = { "a", "b" } }, t)
    end
  end)

  it("req.headers: a repeated field joined with \", \", and each value through get_all", function()
    local out = curl("-H 'X-Tag: a' -H 'X-Tag: b, c' " .. base .. "/tags")
    local t = aio.json.decode(out)
    assert.equals("a, b, c", t.joined)
    assert.same({ "a", "b, c" }, t.each)
    assert.same({}, t.none)
  end)

  it("route params, decoded query, JSON bodies both ways", function()
    local out = curl(base .. "/users/42?q=a%20b")
    assert.same({ id = "42", q = "a b" }, aio.json.decode(out))
    out = curl("-H 'Content-Type: application/json' -d '{\"x\":[1,2]}' " .. base .. "/json")
    assert.same({ got = { x = { 1, 2 } } }, aio.json.decode(out))
  end)

  it("headers are case-insensitive; handler status and headers are sent", function()
    assert.equals("yes", (curl("-H 'X-CUSTOM: yes' " .. base .. "/headers")))
    local out = curl("-i -d 'abc' " .. base .. "/echo")
    assert.matches("^HTTP/1.1 201 Created", out)
    assert.matches("X%-Len: 3", out)
    assert.matches("text/html", (curl("-i " .. base .. "/typed")))
  end)

  it("a list header value is sent as one line per item; a line break in one is refused", function()
    local out = curl("-i " .. base .. "/cookies")
    assert.matches("Set%-Cookie: a=1\r\n", out)
    assert.matches("Set%-Cookie: b=2\r\n", out)
    out = curl("-i " .. base .. "/split")
    assert.matches("^HTTP/1.1 500", out)
    assert.not_matches("pwned", out)
    assert.equals("ok", (curl(base .. "/cookies")))           -- and it keeps serving
  end)

  it("204 and 304 answers carry no body and no length of ours", function()
    local out = raw(server.port, "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\nGET /unchanged HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    local first, second = out:match("^(HTTP/1.1 204.-\r\n\r\n)(HTTP/1.1 304.-\r\n\r\n)$")
    assert.is_string(first, out)
    assert.not_matches("[Cc]ontent%-[LT]", first)
    assert.not_matches("[Cc]ontent%-[LT]", second)
    assert.matches('ETag: "v1"', second)
  end)

  it("reuses a keep-alive connection for several requests", function()
    local _, err = curl("-v " .. base .. "/ " .. base .. "/users/1")
    assert.matches("Re%-using existing connection", err)
  end)

  it("accepts a chunked upload", function()
    local out = S.bg("printf 'chunky data\\n' | curl -sS -H 'Transfer-Encoding: chunked' --data-binary @- " .. base .. "/echo"):wait()
    assert.equals("chunky data\n", out)
  end)

  it("HEAD sends headers only", function()
    local out = curl("-I " .. base .. "/")
    assert.matches("^HTTP/1.1 200", out)
    assert.matches("Content%-Length: 6", out)
    assert.not_matches("hello", out)
  end)

  it("404, 405 with Allow, 500 on a handler error, and keeps serving", function()
    assert.matches("^HTTP/1.1 404", (curl("-i " .. base .. "/missing")))
    local out = curl("-i " .. base .. "/echo")
    assert.matches("^HTTP/1.1 405", out)
    assert.matches("Allow: POST, PUT", out)
    assert.matches("^HTTP/1.1 500", (curl("-i " .. base .. "/boom")))
    assert.equals("hello\n", (curl(base .. "/")))
  end)

  it("413 past max_body, 431 past max_header", function()
    local small = make_app():listen("127.0.0.1", 0, { max_body = 10, max_header = 512 })
    local b = "http://127.0.0.1:" .. small.port
    assert.matches("^HTTP/1.1 413", (curl("-i -d 'more than ten bytes' " .. b .. "/echo")))
    assert.matches("^HTTP/1.1 431", (curl("-i -H 'X-Big: " .. ("x"):rep(2000) .. "' " .. b .. "/")))
    assert.equals("hello\n", (curl(b .. "/")))
    small:close()
  end)

  it("408 when the head does not arrive in time (slowloris)", function()
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    c:write("GET / HTTP/1.1\r\nHost: x\r\n")     -- and then nothing
    local reply = aio.timeout(5, c.read_all, c)
    assert.matches("^HTTP/1.1 408", reply)
    assert.equals("hello\n", (curl(base .. "/")))
  end)

  it("serves /slow while answering / meanwhile", function()
    local slow = S.bg("curl -sS " .. base .. "/slow")
    aio.sleep(0.05)
    local t0 = aio.now()
    assert.equals("hello\n", (curl(base .. "/")))
    assert.equals("slow\n", (slow:wait()))
  end)

  it("pipelined requests are answered in order", function()
    local reply = raw(server.port,
      "GET /users/1 HTTP/1.1\r\nHost: x\r\n\r\n" ..
      "GET /users/2 HTTP/1.1\r\nHost: x\r\n\r\n" ..
      "GET /users/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    local ids = {}
    for id in reply:gmatch('"id":"(%d)"') do ids[#ids + 1] = id end
    assert.same({ "1", "2", "3" }, ids)
  end)

  it("Expect: 100-continue gets an interim answer", function()
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    c:write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    assert.equals("HTTP/1.1 100 Continue", c:readline())
    assert.equals("", c:readline())
    c:write("body")
    assert.equals("HTTP/1.1 201 Created", c:readline())
  end)

  it("HTTP/1.0 closes after the answer unless keep-alive is asked", function()
    local reply = raw(server.port, "GET / HTTP/1.0\r\n\r\n")
    assert.matches("^HTTP/1.1 200", reply)
    assert.matches("Connection: close", reply)
  end)

  it("a 10 MB upload and a 10 MB download", function()
    local path = S.tmpfile(("U"):rep(10 * 1024 * 1024))
    local out, err, code = curl("--data-binary @" .. path .. " " .. base .. "/echo -o /dev/null -w '%{size_download}'")
    os.remove(path)
    assert.equals(0, code, err)
    assert.equals(tostring(10 * 1024 * 1024), out)
    out = curl(base .. "/big -o /dev/null -w '%{size_download}'")
    assert.equals(tostring(10 * 1024 * 1024), out)
  end)

  it("req.peer is the client's address", function()
    assert.matches("^127%.0%.0%.1:%d+$", (curl(base .. "/peer")))
  end)

  it("a client that resets mid-request does not stop the server", function()
    local c = aio.open_connection("127.0.0.1", server.port)
    c:write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial")
    c:close()
    assert.equals("hello\n", (curl(base .. "/")))
  end)

  it("a peer resetting an idle keep-alive connection is not logged as a failure", function()
    local out, err, code = S.run_script([[
      local aio = require "luaio"
      local app = aio.http.app()
      app:route("/", function() return "hi" end)
      local server = app:listen("127.0.0.1", 0)
      -- a real peer that reads its answer, then resets (SO_LINGER 0)
      local r = aio.exec({ "python3", "-c", [=[
import socket, struct, sys
for _ in range(3):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    print(s.recv(4096).split(b"\r\n")[0].decode())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
]=], tostring(server.port) })
      io.write(r.stdout)
      aio.sleep(0.1)
      server:close()
    ]])
    assert.equals(0, code)
    assert.equals(("HTTP/1.1 200 OK\n"):rep(3), out)
    assert.equals("", err)
  end)

  it("routes in the order they were added, static paths included", function()
    local app = aio.http.app()
    app:route("/users/:id", function(req) return "param " .. req.params.id end)
    app:route("/users/me", function() return "static me" end)         -- shadowed by the route above
    app:route("/items", function() return "get items" end, "GET")
    app:route("/items", function() return "post items" end, "POST")
    app:route("/a%20b", function() return "never" end)
    app:route("/plain", function(req) return tostring(next(req.params)) .. " " .. tostring(req.query.x) end)
    local server <close> = app:listen("127.0.0.1", 0)
    local base = "http://127.0.0.1:" .. server.port
    assert.equals("param me", aio.http.get(base .. "/users/me").body)
    assert.equals("get items", aio.http.get(base .. "/items").body)
    assert.equals("post items", aio.http.post(base .. "/items", { body = "" }).body)
    local r = aio.http.request("DELETE", base .. "/items")
    assert.equals(405, r.status)
    assert.equals("GET, HEAD, POST", r.headers.allow)
    assert.equals("nil 1", aio.http.get(base .. "/plain?x=1").body)
    assert.equals("nil nil", aio.http.get(base .. "/plain/").body)    -- trailing slash: same route
    assert.equals("nil nil", aio.http.get(base .. "/pl%61in").body)   -- escapes decoded before matching
  end)

  it("rejects route definitions that make no sense", function()
    local app = aio.http.app()
    assert.has_error(function() app:route("no-slash", print) end)
    assert.has_error(function() app:route("/", "not a function") end)
  end)
end)

describe("HTTP server against malformed heads", function()
  local server
  setup(function() server = make_app():listen("127.0.0.1", 0, { max_header = 4096, max_body = 1000 }) end)
  teardown(function() server:close() end)

  local bad = {
    { "bad method", "G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
    { "empty method", " / HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
    { "bad version", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", 400 },
    { "HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 400 },
    { "lowercase version", "GET / http/1.1\r\nHost: x\r\n\r\n", 400 },
    { "no version", "GET /\r\nHost: x\r\n\r\n", 400 },
    { "extra spaces", "GET  /  HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
    { "missing Host in 1.1", "GET / HTTP/1.1\r\n\r\n", 400 },
    { "two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },
    { "header without colon", "GET / HTTP/1.1\r\nHost: x\r\nBadHeader\r\n\r\n", 400 },
    { "space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400 },
    { "empty header name", "GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", 400 },
    { "bare CR in header", "GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", 400 },
    { "bare LF line end", "GET / HTTP/1.1\r\nHost: x\nA: b\r\n\r\n", 400 },
    { "obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n  c\r\n\r\n", 400 },
    { "NUL in header", "GET / HTTP/1.1\r\nHost: x\r\nA: b\0c\r\n\r\n", 400 },
    { "control char in value", "GET / HTTP/1.1\r\nHost: x\r\nA: b\1c\r\n\r\n", 400 },
    { "CL not a number", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400 },
    { "negative CL", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400 },
    { "CL with plus", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 400 },
    { "huge CL", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400 },
    { "conflicting CLs", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400 },
    { "CL and TE", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400 },
    { "unknown TE", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501 },
    { "TE chunked not last", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501 },
    { "bad chunk size", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400 },
    { "negative chunk size", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabc\r\n0\r\n\r\n", 400 },
    { "huge chunk size", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc\r\n0\r\n\r\n", 400 },
    { "chunk missing CRLF", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", 400 },
    { "chunked over max_body", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" .. ("a"):rep(2000) .. "\r\n0\r\n\r\n", 413 },
    { "CL over max_body", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 413 },
    { "head over max_header", "GET / HTTP/1.1\r\nHost: x\r\nX: " .. ("y"):rep(5000) .. "\r\n\r\n", 431 },
    { "too many headers", "GET / HTTP/1.1\r\nHost: x\r\n" .. ("A: b\r\n"):rep(101) .. "\r\n", 431 },
    { "target with a space", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
    { "target with a control char", "GET /a\1b HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
    { "relative target", "GET index.html HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
    { "garbage", "\1\2\3\4 garbage \255\254\r\n\r\n", 400 },
  }

  for _, case in ipairs(bad) do
    it(("answers %d to: %s"):format(case[3], case[1]), function()
      local reply = raw(server.port, case[2], { half_close = true })
      assert.matches("^HTTP/1.1 " .. case[3], reply)
    end)
  end

  it("is still serving after all of them", function()
    local reply = raw(server.port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.matches("^HTTP/1.1 200", reply)
  end)
end)

-- The head parser scans eight printable bytes at a time and falls back to
-- one byte at a time: a bad byte must be found at every offset, and only
-- the names of the fields it knows are lowercased for its checks.
describe("the head parser's byte checks", function()
  local parse = require("luaio.core").http_parse_head
  local function head(value) return "GET / HTTP/1.1\r\nHost: x\r\nX-Test: " .. value .. "\r\nAccept: */*\r\n\r\n" end

  it("finds a bad byte in a header value at every offset", function()
    for k = 0, 24 do
      local pad = ("abcdefgh"):rep(4):sub(1, k)
      for _, case in ipairs {
        { "\1", 400, "control character in a header value" }, { "\127", 400, "control character in a header value" },
        { "\0", 400, "NUL byte in head" }, { "\n", 400, "line ending without CR" }, { "\r", 400, "bare CR in head" },
      } do
        local h, status, why = parse(head(pad .. case[1] .. "tail-of-the-value"), "request")
        assert.is_nil(h, ("offset %d, byte %d"):format(k, case[1]:byte()))
        assert.equals(case[2], status)
        assert.equals(case[3], why)
      end
      -- a tab and bytes above 0x7f (obs-text) are allowed in values, and kept
      -- (a leading tab is whitespace around the value)
      for _, ok in ipairs { "\t", "\128", "\255" } do
        local h = parse(head(pad .. ok .. "tail-of-the-value"), "request")
        local want = (k == 0 and ok == "\t" and "" or pad .. ok) .. "tail-of-the-value"
        assert.equals(want, h and h.headers["x-test"], ("offset %d"):format(k))
      end
    end
  end)

  it("finds a bad byte in a header name, and knows its fields in any case", function()
    for k = 1, 20 do
      local name = ("X-Abcdefghijklmnopqrst"):sub(1, k)
      assert.equals(400, select(2, parse("GET / HTTP/1.1\r\nHost: x\r\n" .. name .. "\1: v\r\n\r\n", "request")))
      assert.equals(400, select(2, parse("GET / HTTP/1.1\r\nHost: x\r\n" .. name .. " : v\r\n\r\n", "request")))
    end
    local h = parse("POST / HTTP/1.1\r\nHOST: x\r\nCONTENT-LENGTH: 5\r\nEXPECT: 100-Continue\r\nCONNECTION: Close\r\n\r\n", "request")
    assert.equals(5, h.content_length)
    assert.is_true(h.expect_continue)
    assert.is_false(h.keep_alive)
    assert.equals(400, select(2, parse("GET / HTTP/1.1\r\nHost: x\r\nhOsT: y\r\n\r\n", "request")))
    assert.equals(501, select(2, parse("POST / HTTP/1.1\r\nHost: x\r\nTRANSFER-ENCODING: gzip\r\n\r\n", "request")))
  end)
end)
