-- HTTP for services (API.md §6b), the server side, against real peers:
-- curl, raw sockets for framing edge cases, python's http.client, and child
-- luaio processes when what the server writes on stderr matters.
local aio = require "luaio"
local S = require "spec.support"
-- (ASan and valgrind allocators keep freed memory: RSS says nothing there)
local MEASURE_RSS = not os.getenv("LUAIO_SANITIZED") and not os.getenv("LUAIO_VALGRIND")

local MiB = 1024 * 1024

-- the luaio binary running these specs (child servers run the same one)
local LUAIO = os.getenv("LUAIO_BIN")
if not LUAIO then
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("l"):match("^%d+")
  f:close()
  LUAIO = (S.sh("readlink /proc/" .. pid .. "/exe")):gsub("%s+$", "")
end

local function curl(args, timeout)
  return S.bg("curl -sS " .. args):wait(timeout or 30)
end

local function serve(app, opts)
  local server = app:listen("127.0.0.1", 0, opts)
  return server, "http://127.0.0.1:" .. server.port
end

-- a raw request; everything the server sends until it closes
local function raw(port, bytes, opts)
  local c <close> = aio.open_connection("127.0.0.1", port)
  c:write(bytes)
  if opts and opts.half_close then c:shutdown() end
  return aio.timeout(opts and opts.timeout or 5, c.read_all, c)
end

-- one response from a stream: status, headers (names lowercased), body, status line
local function read_response(c, method)
  local line = c:readline()
  if not line then return nil end
  local status = tonumber(line:match("^HTTP/1%.1 (%d+)"))
  local h = {}
  while true do
    local l = assert(c:readline())
    if l == "" then break end
    local k, v = l:match("^([^:]+):%s*(.*)$")
    h[k:lower()] = v
  end
  local body
  if method == "HEAD" or status == 204 or status == 304 or status < 200 then
    body = ""
  elseif h["transfer-encoding"] == "chunked" then
    local parts = {}
    while true do
      local size = tonumber(c:readline(), 16)
      if size == 0 then
        assert(c:readline() == "")
        break
      end
      parts[#parts + 1] = c:read_exactly(size)
      assert(c:read_exactly(2) == "\r\n")
    end
    body = table.concat(parts)
  elseif h["content-length"] then
    body = c:read_exactly(tonumber(h["content-length"]))
  else
    body = c:read_all()
  end
  return status, h, body, line
end

local function connect(port) return aio.open_connection("127.0.0.1", port) end

-- the status of every response in a raw reply
local function statuses(reply)
  local t = {}
  for s in reply:gmatch("HTTP/1%.1 (%d%d%d) ") do t[#t + 1] = tonumber(s) end
  return t
end

local function post(path, body, extra)
  return ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n%s"):format(path, #body, extra or "", body)
end

local function chunked_post(path, chunks, extra)
  local out = { ("POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n%s\r\n"):format(path, extra or "") }
  for _, c in ipairs(chunks) do out[#out + 1] = ("%x\r\n%s\r\n"):format(#c, c) end
  out[#out + 1] = "0\r\n\r\n"
  return table.concat(out)
end

-- A server in a child luaio process, for what it writes on stderr. `routes`
-- is Lua source that adds routes to `app` (aio and app are in scope);
-- h.finish() stops it and returns its stderr and exit status.
local function child_server(routes, opts_src)
  local code = "local aio = require 'luaio'\nlocal app = aio.http.app()\nlocal quit = aio.Event()\n" ..
    "app:route('/quit', function() quit:set() return 'bye' end)\n" .. routes .. "\n" ..
    "local server = app:listen('127.0.0.1', 0, " .. (opts_src or "nil") .. ")\n" ..
    "io.stdout:write(server.port, '\\n') io.stdout:flush()\n" ..
    "quit:wait() aio.sleep(0.05) server:close()\n"
  local path = S.tmpfile(code, ".lua")
  local p = aio.spawn_process({ LUAIO, path }, { stderr = "pipe" })
  local line = aio.timeout(10, p.stdout.readline, p.stdout)
  local port = tonumber(line)
  if not port then
    local err = p.stderr:read_all()
    os.remove(path)
    error("child server did not start: " .. tostring(line) .. " " .. err)
  end
  local h = { port = port, base = "http://127.0.0.1:" .. port }
  function h.finish()
    raw(port, "GET /quit HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    local err = aio.timeout(10, p.stderr.read_all, p.stderr)
    local status = aio.timeout(10, p.wait, p)
    os.remove(path)
    return err, status
  end
  return h
end

-- what the server logs in this process while fn runs (io.stderr is looked up at each write)
local function capture_stderr(fn)
  local real, out = io.stderr, {}
  io.stderr = { write = function(self, ...)
    for i = 1, select("#", ...) do out[#out + 1] = tostring((select(i, ...))) end
    return self
  end }
  local ok, err = pcall(fn)
  io.stderr = real
  if not ok then error(err, 0) end
  return table.concat(out)
end

local function errname(e) return type(e) == "table" and e.name or tostring(e) end

-------------------------------------------------------------------------------
describe("max_body", function()
  local server, base
  local ran = {}
  setup(function()
    local app = aio.http.app()
    app:route("/count", function(req) return tostring(#req.body) end, "POST")
    app:route("/small", function(req) return req.body end, "POST", { max_body = 10 })
    app:route("/big", function(req) return tostring(#req.body) end, "POST", { max_body = 2 * MiB })
    app:route("/zero", function(req) return "[" .. req.body .. "]" end, "POST", { max_body = 0 })
    app:route("/stream", function(req)
      ran.stream = true
      local n = 0
      for piece in req:chunks() do n = n + #piece end
      return tostring(n)
    end, "POST", { stream_body = true, max_body = 10 })
    app:route("/stream-catch", function(req)
      local got = {}
      local ok, err = pcall(function()
        while true do
          local p = req:read()
          if not p then break end
          got[#got + 1] = p
        end
      end)
      if ok then return "read " .. table.concat(got) end
      return ("%s %s after %d bytes"):format(errname(err), tostring(err.status), #table.concat(got))
    end, "POST", { stream_body = true, max_body = 10 })
    server, base = serve(app)        -- no opts: the default max_body, 1 MiB
  end)
  teardown(function() server:close() end)

  it("defaults to 1 MiB: a Content-Length body at the limit is read, one byte more is 413", function()
    local at, past = S.tmpfile(("x"):rep(MiB)), S.tmpfile(("x"):rep(MiB + 1))
    local out, err, code = curl("--data-binary @" .. at .. " " .. base .. "/count")
    assert.equals(0, code, err)
    assert.equals(tostring(MiB), out)
    out = curl("-o /dev/null -w '%{http_code}' --data-binary @" .. past .. " " .. base .. "/count")
    assert.equals("413", out)
    os.remove(at) os.remove(past)
  end)

  it("defaults to 1 MiB for chunked bodies too", function()
    local at, past = S.tmpfile(("x"):rep(MiB)), S.tmpfile(("x"):rep(MiB + 1))
    local chunked = "-H 'Transfer-Encoding: chunked' --data-binary @"
    assert.equals(tostring(MiB), (curl(chunked .. at .. " " .. base .. "/count")))
    assert.equals("413", (curl("-o /dev/null -w '%{http_code}' " .. chunked .. past .. " " .. base .. "/count")))
    os.remove(at) os.remove(past)
  end)

  it("a Content-Length past the limit is answered at once, before the body is sent", function()
    local c <close> = connect(server.port)
    c:write("POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: " .. (MiB + 1) .. "\r\n\r\n")
    local status, h = aio.timeout(5, read_response, c)
    assert.equals(413, status)
    assert.equals("close", h.connection)     -- the body that may follow is not read
  end)

  it("route opts.max_body overrides the server's: at the limit and past it", function()
    assert.same({ 200 }, statuses(raw(server.port, post("/small", "0123456789", "Connection: close\r\n"))))
    assert.matches("\r\n\r\n0123456789$", raw(server.port, post("/small", "0123456789", "Connection: close\r\n")))
    assert.same({ 413 }, statuses(raw(server.port, post("/small", "0123456789A"))))
    assert.matches("\r\n\r\n0123456789$",
      raw(server.port, chunked_post("/small", { "01234", "56789" }, "Connection: close\r\n")))
    assert.same({ 413 }, statuses(raw(server.port, chunked_post("/small", { "01234", "56789", "A" }))))
    assert.same({ 200 }, statuses(raw(server.port, post("/zero", "", "Connection: close\r\n"))))
    assert.same({ 413 }, statuses(raw(server.port, post("/zero", "x"))))
  end)

  it("a route may allow more than the server", function()
    local path = S.tmpfile(("y"):rep(MiB + MiB // 2))
    assert.equals(tostring(MiB + MiB // 2), (curl("--data-binary @" .. path .. " " .. base .. "/big")))
    os.remove(path)
    path = S.tmpfile(("y"):rep(2 * MiB + 1))
    assert.equals("413", (curl("-o /dev/null -w '%{http_code}' --data-binary @" .. path .. " " .. base .. "/big")))
    os.remove(path)
  end)

  it("the body of a 413 is not taken for the next request on the connection", function()
    local reply = raw(server.port, post("/small", "0123456789A") .. "GET /count HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.same({ 413 }, statuses(reply))
    assert.matches("\r\nConnection: close\r\n", reply)
  end)

  it("stream_body: a Content-Length past the route's limit is 413 before the handler runs", function()
    ran.stream = nil
    local c <close> = connect(server.port)
    c:write("POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
    assert.equals(413, (aio.timeout(5, read_response, c)))
    assert.is_nil(ran.stream)
    assert.same({ 200 }, statuses(raw(server.port, post("/stream", "0123456789", "Connection: close\r\n"))))
    assert.is_true(ran.stream)
  end)

  it("stream_body: req:read raises HTTPError 413 past the limit of a chunked body", function()
    local reply = raw(server.port, chunked_post("/stream-catch", { "0123456789" }, "Connection: close\r\n"))
    assert.matches("read 0123456789$", reply)
    reply = raw(server.port, chunked_post("/stream-catch", { "01234", "56789", "A" }))
    assert.matches("HTTPError 413 after 10 bytes$", reply)
    assert.matches("\r\nConnection: close\r\n", reply)     -- the rest of the body was not read
  end)

  it("stream_body: an uncaught 413 from req:read is the answer", function()
    local reply = raw(server.port, chunked_post("/stream", { "01234", "56789", "A" }) .. "GET /count HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.same({ 413 }, statuses(reply))
  end)

  it("route options are checked", function()
    local app = aio.http.app()
    local h = function() end
    assert.has_error(function() app:route("/", h, nil, { max_body = -1 }) end)
    assert.has_error(function() app:route("/", h, nil, { max_body = 1.5 }) end)
    assert.has_error(function() app:route("/", h, nil, { max_body = "10" }) end)
    assert.has_error(function() app:route("/", h, nil, { stream_body = "yes" }) end)
    assert.has_error(function() app:route("/", h, nil, 5) end)
    local ok, err = pcall(function() app:route("/", h, nil, { max_body = -1 }) end)
    assert.is_false(ok)
    assert.matches("bad argument #%d to 'route' %(opts%.max_body: integer >= 0 expected, got %-1%)", err)
  end)
end)

-------------------------------------------------------------------------------
describe("streamed request bodies", function()
  local server, base
  local started = aio.Event()
  local seen = {}
  setup(function()
    local app = aio.http.app()
    app:route("/s/pieces", function(req)
      started:set()
      seen.body_at_start = rawget(req, "body")
      local sizes, parts = {}, {}
      while true do
        local p = req:read(4)
        if p == nil then break end
        sizes[#sizes + 1] = #p
        parts[#parts + 1] = p
      end
      return { sizes = sizes, body = table.concat(parts), after = req:read() == nil }
    end, "POST", { stream_body = true })
    app:route("/s/chunks", function(req)
      local parts = {}
      for p in req:chunks() do parts[#parts + 1] = p end
      return table.concat(parts)
    end, { "POST", "PUT" }, { stream_body = true })
    app:route("/s/all", function(req)
      local all = req:read_all()
      return all .. "|" .. tostring(req:read()) .. "|" .. req:read_all()
    end, "POST", { stream_body = true })
    app:route("/s/noread", function() return "did not read" end, "POST", { stream_body = true })
    app:route("/s/echo", function(req)         -- answers while it reads
      local res = req:respond(200)
      for p in req:chunks() do res:write(p) end
    end, { "POST", "PUT" }, { stream_body = true })
    app:route("/s/json", function(req)
      local v = req:json()
      return { v = v, after = tostring(req:read()) }
    end, "POST", { stream_body = true })
    app:route("/w/whole", function(req)
      local first = req:read(3)
      local rest = req:read_all()
      return { body = req.body, first = first, rest = rest, after = tostring(req:read()) }
    end, "POST")
    app:route("/w/chunks", function(req)
      local parts = {}
      for p in req:chunks() do parts[#parts + 1] = p end
      return table.concat(parts, ",")
    end, "POST")
    -- a read cancelled while it waits leaves the body readable
    app:route("/s/cancel", function(req)
      local first = req:read()
      local t = aio.spawn(function() return req:read() end)
      aio.sleep(0.05)
      t:cancel()
      local ok, err = pcall(t.wait, t)
      seen.cancel = { ok = ok, err = errname(err) }
      started:set()
      return first .. "+" .. req:read_all()
    end, "POST", { stream_body = true })
    -- a read with a deadline: TimeoutError, then the body goes on
    app:route("/s/timeout", function(req)
      local first = req:read()
      local ok, err = pcall(aio.wait_for, function() return req:read() end, 0.1)
      local ok2, err2 = pcall(aio.timeout, 0.1, req.read_all, req)
      seen.timeout = { ok = ok, err = errname(err), ok2 = ok2, err2 = errname(err2) }
      started:set()
      return first .. "+" .. req:read_all()
    end, "POST", { stream_body = true })
    app:route("/s/bad", function(req)
      local errs = {}
      -- (no tail calls: the error names the function called)
      for _, f in ipairs {
        function() local _ = req:read(0) end, function() local _ = req:read(-1) end,
        function() local _ = req:read(1.5) end, function() local _ = req:read("x") end,
        function() local _ = req.read({}) end, function() local _ = req.read_all(5) end,
        function() local _ = req.chunks(nil) end, function() local _ = req.json("x") end,
      } do
        local ok, err = pcall(f)
        errs[#errs + 1] = ok and "no error" or tostring(err)
      end
      return errs
    end, "POST", { stream_body = true })
    server, base = serve(app, { max_body = 1 << 30 })
  end)
  teardown(function() server:close() end)

  it("the handler runs once the head is read, before the body is sent; req:read(n) gives pieces, nil at the end", function()
    started:clear()
    local c <close> = connect(server.port)
    c:write("POST /s/pieces HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    aio.timeout(5, started.wait, started)             -- the handler runs: the body is not sent yet
    assert.is_nil(seen.body_at_start)
    c:write("0123456789")
    local status, _, body = aio.timeout(5, read_response, c)
    assert.equals(200, status)
    local v = aio.json.decode(body)
    assert.equals("0123456789", v.body)
    for _, n in ipairs(v.sizes) do assert.is_true(n >= 1 and n <= 4) end
    assert.is_true(v.after)
  end)

  it("req:chunks() iterates the pieces, for Content-Length and chunked uploads", function()
    local path = S.tmpfile(("abcdefgh"):rep(100000))
    assert.equals(tostring(800000), (curl("--data-binary @" .. path .. " -o /dev/null -w '%{size_download}' " .. base .. "/s/chunks")))
    local out = curl("-H 'Transfer-Encoding: chunked' --data-binary @" .. path .. " " .. base .. "/s/chunks")
    assert.equals(("abcdefgh"):rep(100000), out)
    os.remove(path)
  end)

  it("req:read_all() reads the rest; after it read() is nil and read_all() empty", function()
    local reply = raw(server.port, post("/s/all", "all of it", "Connection: close\r\n"))
    assert.matches("\r\n\r\nall of it|nil|$", reply)
    reply = raw(server.port, chunked_post("/s/all", { "all ", "of ", "it" }, "Connection: close\r\n"))
    assert.matches("\r\n\r\nall of it|nil|$", reply)
    reply = raw(server.port, "POST /s/all HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.matches("\r\n\r\n|nil|$", reply)
  end)

  it("req:json() on a streamed body reads it (and the body is then at its end)", function()
    local reply = raw(server.port, post("/s/json", '{"a":[1,2]}', "Connection: close\r\n"))
    assert.same({ v = { a = { 1, 2 } }, after = "nil" }, aio.json.decode(reply:match("\r\n\r\n(.*)$")))
  end)

  it("without stream_body req.body is the whole body, and read/read_all/chunks still work", function()
    local reply = raw(server.port, post("/w/whole", "abcdefg", "Connection: close\r\n"))
    assert.same({ body = "abcdefg", first = "abc", rest = "defg", after = "nil" },
      aio.json.decode(reply:match("\r\n\r\n(.*)$")))
    reply = raw(server.port, chunked_post("/w/chunks", { "abc", "def" }, "Connection: close\r\n"))
    assert.matches("\r\n\r\nabcdef$", reply)
  end)

  it("Expect: 100-continue is answered only when the handler reads", function()
    local c <close> = connect(server.port)
    c:write("POST /s/noread HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    local status, h, body = aio.timeout(5, read_response, c)
    assert.equals(200, status)              -- no 100 Continue before it
    assert.equals("did not read", body)
    assert.equals("close", h.connection)    -- the body was never read: the connection ends
    assert.is_nil(aio.timeout(5, c.read, c, 100))

    local c2 <close> = connect(server.port)
    c2:write("POST /s/all HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert.equals(100, (aio.timeout(5, read_response, c2)))
    c2:write("hello")
    local status2, _, body2 = aio.timeout(5, read_response, c2)
    assert.equals(200, status2)
    assert.equals("hello|nil|", body2)
  end)

  it("a handler that answers while it reads: no 100 Continue after its head; curl -T streams through", function()
    local c <close> = connect(server.port)
    c:write("POST /s/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert.equals("HTTP/1.1 200 OK", aio.timeout(5, c.readline, c))
    repeat local l = c:readline() until l == ""
    c:write("hello")
    assert.equals("5", aio.timeout(5, c.readline, c))       -- the first chunk, not a "100 Continue"
    assert.equals("hello", c:readline())
    local path = S.tmpfile(("0123456789abcdef"):rep(MiB))       -- 16 MiB
    local out = os.tmpname()
    local _, err, code = curl("-T " .. path .. " -o " .. out .. " " .. base .. "/s/echo")
    assert.equals(0, code, err)
    local _, _, same = S.sh("cmp -s " .. path .. " " .. out)
    assert.equals(0, same)
    os.remove(path) os.remove(out)
  end)

  it("curl with Expect: 100-continue uploads through a stream_body route", function()
    local out, err = curl("-v -H 'Expect: 100-continue' --data-binary 'expected body' " .. base .. "/s/chunks")
    assert.equals("expected body", out)
    assert.matches("HTTP/1.1 100 Continue", err)
  end)

  it("req:read cancelled while it waits (mid chunked framing) leaves the body readable", function()
    started:clear()
    local c <close> = connect(server.port)
    c:write("POST /s/cancel HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    aio.timeout(5, started.wait, started)
    assert.same({ ok = false, err = "CancelledError" }, seen.cancel)
    c:write("6\r\n world\r\n0\r\n\r\n")
    local status, _, body = aio.timeout(5, read_response, c)
    assert.equals(200, status)
    assert.equals("hello+ world", body)
  end)

  it("req:read and req:read_all under a deadline raise TimeoutError, and reading goes on", function()
    started:clear()
    local c <close> = connect(server.port)
    c:write("POST /s/timeout HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\n")
    aio.timeout(5, started.wait, started)
    assert.same({ ok = false, err = "TimeoutError", ok2 = false, err2 = "TimeoutError" }, seen.timeout)
    c:write("abc\r\n0\r\n\r\n")
    local status, _, body = aio.timeout(5, read_response, c)
    assert.equals(200, status)
    assert.equals("hello+abc", body)
  end)

  it("req:read, read_all, chunks and json check their arguments", function()
    local reply = raw(server.port, post("/s/bad", "x", "Connection: close\r\n"))
    local errs = aio.json.decode(reply:match("\r\n\r\n(.*)$"))
    assert.matches("bad argument #1 to 'read' %(byte count %(integer >= 1%) expected, got 0%)", errs[1])
    assert.matches("bad argument #1 to 'read'", errs[2])
    assert.matches("bad argument #1 to 'read'", errs[3])
    assert.matches("bad argument #1 to 'read'", errs[4])
    assert.matches("Request expected, got table", errs[5])
    assert.matches("Request expected, got number", errs[6])
    assert.matches("Request expected, got nil", errs[7])
    assert.matches("Request expected, got string", errs[8])
  end)
end)

-------------------------------------------------------------------------------
describe("a large upload through a stream_body handler", function()
  it("several hundred MB with curl -T (Content-Length and chunked) in bounded memory", function()
    local h = child_server([[
      local function hwm()
        for l in io.lines("/proc/self/status") do
          local v = l:match("^VmHWM:%s+(%d+)")
          if v then return tonumber(v) end
        end
      end
      app:route("/count", function(req)
        local n, before = 0, hwm()
        for piece in req:chunks() do n = n + #piece end
        return { bytes = n, before = before, after = hwm() }
      end, "PUT", { stream_body = true, max_body = 1 << 40 })
    ]])
    local size = 400 * MiB
    local sparse = os.tmpname()
    assert(os.execute("truncate -s " .. size .. " " .. sparse))
    local out, err, code = curl("-T " .. sparse .. " " .. h.base .. "/count", 120)
    os.remove(sparse)
    assert.equals(0, code, err)
    local v = aio.json.decode(out)
    assert.equals(size, v.bytes)
    if MEASURE_RSS then assert.is_true(v.after - v.before < 32 * 1024, ("VmHWM grew from %d to %d KiB"):format(v.before, v.after)) end
    out, err, code = S.bg("head -c " .. size .. " /dev/zero | curl -sS -T - " .. h.base .. "/count"):wait(120)
    assert.equals(0, code, err)
    v = aio.json.decode(out)
    assert.equals(size, v.bytes)
    if MEASURE_RSS then assert.is_true(v.after - v.before < 32 * 1024, ("VmHWM grew from %d to %d KiB"):format(v.before, v.after)) end
    local stderr, status = h.finish()
    assert.equals("", stderr)
    assert.equals(0, status)
  end)
end)

describe("a body the server does not read", function()
  local server
  setup(function()
    local app = aio.http.app()
    app:route("/count", function(req) return tostring(#req.body) end, "POST")
    app:route("/early", function() return "early" end, "POST", { stream_body = true, max_body = 64 * MiB })
    server = serve(app)
  end)
  teardown(function() server:close() end)

  it("a client that sends all its body before reading (python http.client) still gets the 413", function()
    local r = aio.exec({ "/usr/bin/python3", "-c", [[
import http.client, sys
for path in ("/count", "/early"):
    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
    c.request("POST", path, body=b"x" * (8 << 20))
    r = c.getresponse()
    print(r.status, r.getheader("Connection"), r.read().decode().strip())
]], tostring(server.port) }, { timeout = 30 })
    assert.equals("", r.stderr)
    assert.equals("413 close 413 Content Too Large: body larger than 1048576 bytes\n200 close early\n", r.stdout)
  end)

  it("404 and 405 on a request with a body close the connection (the body is not parsed as a request)", function()
    local reply = raw(server.port, post("/missing", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert.same({ 404 }, statuses(reply))
    assert.matches("\r\nConnection: close\r\n", reply)
    reply = raw(server.port, (chunked_post("/count", { "x" }):gsub("^POST", "PUT")))
    assert.same({ 405 }, statuses(reply))
  end)
end)

-------------------------------------------------------------------------------
describe("req:respond", function()
  local server, base
  local seen = {}
  local gone = aio.Event()
  local progress = { bytes = 0, done = false }
  local PIECE = ("p"):rep(65536)
  setup(function()
    local app = aio.http.app()
    app:route("/", function() return "plain\n" end)
    app:route("/r/chunked", function(req)
      local res = req:respond(200, { ["Content-Type"] = "text/plain", ["X-Mine"] = "1" })
      res:write("a")
      res:write("bc")
      res:close()
      return "ignored", 500, { ["X-Ignored"] = "1" }
    end)
    app:route("/r/length", function(req)
      local res = req:respond(200, { ["Content-Length"] = "5" })
      res:write("hel")
      local ok, err = pcall(res.write, res, "lo!")
      seen.past_length = { ok = ok, name = errname(err) }
      res:write("lo")
      res:close()
    end)
    app:route("/r/short", function(req)
      local res = req:respond(200, { ["Content-Length"] = 10 })
      res:write("abc")
    end)
    app:route("/r/open", function(req)
      req:respond(201):write("left open")
    end)
    app:route("/r/twice", function(req)
      local res = req:respond(200)
      local ok, err = pcall(req.respond, req, 200)
      seen.twice = { ok = ok, name = errname(err) }
      ok, err = pcall(req.sse, req)
      seen.sse_after = { ok = ok, name = errname(err) }
      res:write("once")
      res:close()
      ok, err = pcall(res.write, res, "more")
      seen.after_close = { ok = ok, name = errname(err) }
      res:close()                                 -- closing again is nothing
    end)
    app:route("/r/fail", function(req)
      local res = req:respond(200)
      res:write("partial")
      error("midway")
    end)
    app:route("/r/abort", function(req)
      local res = req:respond(200)
      res:write("partial")
      aio.http.abort(404)
    end)
    app:route("/r/gone", function(req)
      local res = req:respond(200)
      local ok, err = pcall(function()
        for _ = 1, 10000 do res:write(PIECE) aio.sleep(0.001) end
      end)
      seen.gone = { ok = ok, name = errname(err), code = type(err) == "table" and err.code or nil }
      gone:set()
    end)
    app:route("/r/pressure", function(req)
      local res = req:respond(200, { ["Content-Length"] = tostring(64 * MiB) })
      progress.bytes, progress.done = 0, false
      for _ = 1, 1024 do
        res:write(PIECE)
        progress.bytes = progress.bytes + #PIECE
      end
      progress.done = true
    end)
    app:route("/r/wait", function(req)
      local res = req:respond(200)
      local t = aio.spawn(function() while true do res:write(PIECE) end end)
      aio.sleep(0.2)
      t:cancel()
      local ok, err = pcall(t.wait, t)
      seen.cancelled = { ok = ok, name = errname(err) }
      ok, err = pcall(aio.timeout, 0.2, function() while true do res:write(PIECE) end end)
      seen.timed_out = { ok = ok, name = errname(err) }
      res:write("end")
    end)
    app:route("/r/bad", function(req)
      local errs = {}
      local function try(f)
        local ok, err = pcall(f)
        errs[#errs + 1] = ok and "no error" or tostring(err)
      end
      try(function() local _ = req:respond("x") end)
      try(function() local _ = req:respond(99) end)
      try(function() local _ = req:respond(1000) end)
      try(function() local _ = req:respond(200, "h") end)
      try(function() local _ = req:respond(200, { ["X-Bad"] = "a\r\nb" }) end)
      try(function() local _ = req:respond(200, { ["Content-Length"] = "abc" }) end)
      try(function() local _ = req:respond(200, { ["X-Nul"] = "a\0b" }) end)
      try(function() local _ = req.respond({}, 200) end)
      local res = req:respond(200)
      try(function() res:write({}) end)
      try(function() res:write(nil) end)
      try(function() res.write(nil, "x") end)
      try(function() res.close(5) end)
      res:write(aio.json.encode(errs))
    end)
    server, base = serve(app)
  end)
  teardown(function() server:close() end)

  it("is chunked by default; the handler's return values are ignored after it", function()
    local c <close> = connect(server.port)
    c:write("GET /r/chunked HTTP/1.1\r\nHost: x\r\n\r\n")
    local status, h, body = aio.timeout(5, read_response, c)
    assert.equals(200, status)
    assert.equals("chunked", h["transfer-encoding"])
    assert.equals("text/plain", h["content-type"])
    assert.equals("1", h["x-mine"])
    assert.is_nil(h["x-ignored"])
    assert.is_nil(h["content-length"])
    assert.equals("abc", body)
    c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")          -- the connection goes on
    assert.equals("plain\n", select(3, aio.timeout(5, read_response, c)))
    local out, err, code = curl(base .. "/r/chunked")
    assert.equals(0, code, err)
    assert.equals("abc", out)
  end)

  it("sends Content-Length when the headers give it; writing past it is an error", function()
    local out = curl("-i " .. base .. "/r/length")
    assert.matches("\r\nContent%-Length: 5\r\n", out)
    assert.not_matches("Transfer%-Encoding", out)
    assert.matches("\r\n\r\nhello$", out)
    assert.same({ ok = false, name = "ValueError" }, seen.past_length)
  end)

  it("a body shorter than its Content-Length closes the connection", function()
    local out, _, code = curl(base .. "/r/short")
    assert.equals(18, code)                       -- curl: transfer closed with bytes remaining
    assert.equals("abc", out)
    local c <close> = connect(server.port)
    c:write("GET /r/short HTTP/1.1\r\nHost: x\r\n\r\n")
    local all = aio.timeout(5, c.read_all, c)     -- ends: the server closed
    assert.matches("\r\n\r\nabc$", all)
  end)

  it("returning from the handler closes the response", function()
    local c <close> = connect(server.port)
    c:write("GET /r/open HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    local status, _, body = aio.timeout(5, read_response, c)
    assert.equals(201, status)
    assert.equals("left open", body)
    assert.equals("plain\n", select(3, aio.timeout(5, read_response, c)))
  end)

  it("HEAD: the head only, and the connection goes on", function()
    local c <close> = connect(server.port)
    c:write("HEAD /r/chunked HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    local status, h = aio.timeout(5, read_response, c, "HEAD")
    assert.equals(200, status)
    assert.equals("text/plain", h["content-type"])
    local status2, _, body = aio.timeout(5, read_response, c)
    assert.equals(200, status2)
    assert.equals("plain\n", body)
  end)

  it("an HTTP/1.0 client gets a body delimited by the end of the connection", function()
    local reply = raw(server.port, "GET /r/chunked HTTP/1.0\r\n\r\n")
    assert.matches("^HTTP/1.1 200", reply)
    assert.not_matches("Transfer%-Encoding", reply)
    assert.matches("\r\nConnection: close\r\n", reply)
    assert.matches("\r\n\r\nabc$", reply)
    reply = raw(server.port, "GET /r/chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert.matches("\r\n\r\nabc$", reply)
  end)

  it("respond twice, sse after respond and write after close are errors", function()
    assert.equals("once", (curl(base .. "/r/twice")))
    assert.same({ ok = false, name = "RuntimeError" }, seen.twice)
    assert.same({ ok = false, name = "RuntimeError" }, seen.sse_after)
    assert.same({ ok = false, name = "RuntimeError" }, seen.after_close)
  end)

  it("a handler that fails after respond cuts the response short (the client can tell)", function()
    local log = capture_stderr(function()
      local _, _, code = curl(base .. "/r/fail")
      assert.equals(18, code)
      local reply = raw(server.port, "GET /r/fail HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.matches("^HTTP/1.1 200", reply)
      assert.not_matches("0\r\n\r\n$", reply)
    end)
    assert.matches("handler for GET /r/fail failed: [^\n]*midway", log)
    log = capture_stderr(function()
      local reply = raw(server.port, "GET /r/abort HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.matches("^HTTP/1.1 200", reply)
      assert.not_matches("0\r\n\r\n$", reply)
    end)
    assert.equals("", log)                         -- an abort is not a failure
  end)

  it("a peer that went away makes write raise ConnectionError", function()
    gone:clear()
    local c = connect(server.port)
    c:write("GET /r/gone HTTP/1.1\r\nHost: x\r\n\r\n")
    c:readline()
    c:close()
    aio.timeout(10, gone.wait, gone)
    assert.is_false(seen.gone.ok)
    assert.equals("ConnectionError", seen.gone.name)
    assert.is_string(seen.gone.code)
  end)

  it("a slow reader makes write wait: what is buffered stays bounded", function()
    local rss0 = S.rss_kib()
    local c <close> = connect(server.port)
    c:write("GET /r/pressure HTTP/1.1\r\nHost: x\r\n\r\n")
    aio.sleep(0.5)                              -- not reading
    assert.is_false(progress.done)
    assert.is_true(progress.bytes < 24 * MiB, "written while nobody read: " .. progress.bytes)
    assert.is_true(S.rss_kib() - rss0 < 24 * 1024)
    local status, _, body = aio.timeout(20, read_response, c)
    assert.equals(200, status)
    assert.equals(64 * MiB, #body)
    assert.is_true(progress.done)
  end)

  it("res:write waiting on a slow reader can be cancelled and timed out; the framing stays whole", function()
    local c <close> = connect(server.port)
    c:write("GET /r/wait HTTP/1.1\r\nHost: x\r\n\r\n")
    aio.sleep(0.6)
    assert.same({ ok = false, name = "CancelledError" }, seen.cancelled)
    assert.same({ ok = false, name = "TimeoutError" }, seen.timed_out)
    local status, _, body = aio.timeout(20, read_response, c)
    assert.equals(200, status)
    assert.matches("^p+end$", body)
  end)

  it("checks its arguments", function()
    local errs = aio.json.decode((curl(base .. "/r/bad")))
    assert.matches("bad argument #1 to 'respond' %(HTTP status %(integer 100%-999%) expected, got x%)", errs[1])
    assert.matches("bad argument #1 to 'respond'", errs[2])
    assert.matches("bad argument #1 to 'respond'", errs[3])
    assert.matches("bad argument #2 to 'respond' %(table expected, got string%)", errs[4])
    assert.matches("bad argument #2 to 'respond' %(headers: .*line break", errs[5])
    assert.matches("bad argument #2 to 'respond' %(headers: Content%-Length", errs[6])
    assert.matches("bad argument #2 to 'respond' %(headers: .*NUL", errs[7])
    assert.matches("Request expected, got table", errs[8])
    assert.matches("bad argument #1 to 'write' %(string expected, got table%)", errs[9])
    assert.matches("bad argument #1 to 'write' %(string expected, got nil%)", errs[10])
    assert.matches("ResponseWriter expected, got nil", errs[11])
    assert.matches("ResponseWriter expected, got number", errs[12])
  end)
end)

-------------------------------------------------------------------------------
describe("req:sse", function()
  local server, base
  local seen = {}
  local next_event, gone = aio.Event(), aio.Event()
  setup(function()
    local app = aio.http.app()
    app:route("/events", function(req)
      local sse = req:sse({ ["X-Extra"] = "1" })
      sse:send { data = "hello" }
      sse:send { event = "tick", id = "7", data = "a\nb\r\nc" }
      sse:send { retry = 1500 }
      sse:comment("keep\nalive")
      sse:send { data = { x = 1 } }
      sse:send { id = 8, data = 42 }
      sse:close()
      local ok, err = pcall(sse.send, sse, { data = "late" })
      seen.after_close = { ok = ok, name = errname(err) }
      return "ignored"
    end)
    app:route("/events/live", function(req)
      local sse = req:sse()
      sse:send { data = "one" }
      next_event:wait()
      sse:send { data = "two" }
      sse:close()
    end)
    app:route("/events/gone", function(req)
      local sse = req:sse()
      local ok, err = pcall(function()
        for i = 1, 100000 do sse:send { data = ("tick %d"):format(i) } aio.sleep(0.005) end
      end)
      seen.gone = { ok = ok, name = errname(err) }
      gone:set()
    end)
    app:route("/events/wait", function(req)
      local sse = req:sse()
      local big = ("e"):rep(65536)
      local ok, err = pcall(aio.timeout, 0.3, function() while true do sse:send { data = big } end end)
      seen.timed_out = { ok = ok, name = errname(err) }
      local t = aio.spawn(function() while true do sse:send { data = big } end end)
      aio.sleep(0.2)
      t:cancel()
      ok, err = pcall(t.wait, t)
      seen.cancelled = { ok = ok, name = errname(err) }
      sse:send { event = "end", data = "" }
    end)
    app:route("/events/bad", function(req)
      local errs = {}
      local function try(f)
        local ok, err = pcall(f)
        errs[#errs + 1] = ok and "no error" or tostring(err)
      end
      try(function() local _ = req:sse(5) end)
      try(function() local _ = req:sse({ ["X-Bad"] = "a\nb" }) end)
      local sse = req:sse()
      try(function() sse:send { event = "a\nb", data = "x" } end)
      try(function() sse:send { id = "x\r", data = "x" } end)
      try(function() sse:send { event = "a\rb" } end)
      try(function() sse:send { retry = -1 } end)
      try(function() sse:send { retry = 1.5 } end)
      try(function() sse:send { retry = "10" } end)
      try(function() sse:send { data = print } end)
      try(function() sse:send("data") end)
      try(function() sse:send {} end)
      try(function() sse:comment({}) end)
      try(function() sse.send(nil, { data = "x" }) end)
      try(function() local _ = req:sse() end)
      try(function() sse:send { retry = 0 } end)          -- at the limit: fine
      sse:send { data = aio.json.encode(errs) }
    end)
    server, base = serve(app)
  end)
  teardown(function() server:close() end)

  local EVENTS = "data: hello\n\n" ..
    "event: tick\nid: 7\ndata: a\ndata: b\ndata: c\n\n" ..
    "retry: 1500\n\n" ..
    ": keep\n: alive\n\n" ..
    'data: {"x":1}\n\n' ..
    "id: 8\ndata: 42\n\n"

  it("curl -N receives the events, with the event-stream headers", function()
    local out, err, code = curl("-N -i " .. base .. "/events")
    assert.equals(0, code, err)
    local head, body = out:match("^(.-\r\n\r\n)(.*)$")
    assert.matches("^HTTP/1.1 200", head)
    assert.matches("\r\nContent%-Type: text/event%-stream\r\n", head)
    assert.matches("\r\nCache%-Control: no%-cache\r\n", head)
    assert.matches("\r\nX%-Extra: 1\r\n", head)
    assert.equals(EVENTS, body)
    assert.same({ ok = false, name = "RuntimeError" }, seen.after_close)
  end)

  it("each event goes out when sent", function()
    next_event:clear()
    local c <close> = connect(server.port)
    c:write("GET /events/live HTTP/1.1\r\nHost: x\r\n\r\n")
    repeat local l = aio.timeout(5, c.readline, c) until l == ""
    assert.equals("data: one\n\n", aio.timeout(5, function()
      local size = tonumber(c:readline(), 16)
      return c:read_exactly(size)
    end))
    next_event:set()
    assert.equals("", c:readline())
    local size = tonumber(aio.timeout(5, c.readline, c), 16)
    assert.equals("data: two\n\n", c:read_exactly(size))
  end)

  it("python's aiohttp reads the stream as lines", function()
    local r = aio.exec({ "/usr/bin/python3", "-c", [[
import asyncio, aiohttp, sys
async def main():
    async with aiohttp.ClientSession() as s:
        async with s.get(sys.argv[1]) as r:
            print(r.headers["Content-Type"])
            async for line in r.content:
                sys.stdout.write(line.decode())
asyncio.run(main())
]], base .. "/events" }, { timeout = 30 })
    assert.equals("", r.stderr)
    assert.equals("text/event-stream\n" .. EVENTS, r.stdout)
  end)

  it("a client that leaves makes send raise ConnectionError", function()
    gone:clear()
    local c = connect(server.port)
    c:write("GET /events/gone HTTP/1.1\r\nHost: x\r\n\r\n")
    c:readline()
    aio.sleep(0.05)
    c:close()
    aio.timeout(10, gone.wait, gone)
    assert.same({ ok = false, name = "ConnectionError" }, seen.gone)
  end)

  it("sse:send waiting on a slow reader can be timed out and cancelled", function()
    local c <close> = connect(server.port)
    c:write("GET /events/wait HTTP/1.1\r\nHost: x\r\n\r\n")
    aio.sleep(0.8)
    assert.same({ ok = false, name = "TimeoutError" }, seen.timed_out)
    assert.same({ ok = false, name = "CancelledError" }, seen.cancelled)
    local status, _, body = aio.timeout(20, read_response, c)
    assert.equals(200, status)
    assert.matches("event: end\ndata: \n\n$", body)
  end)

  it("checks its arguments: no line breaks in event or id, retry an integer >= 0", function()
    local out = curl(base .. "/events/bad")
    assert.equals("retry: 0\n\n", out:sub(1, 10))
    local errs = aio.json.decode(out:match("\ndata: (.*)\n\n$"))
    assert.matches("bad argument #1 to 'sse' %(table expected, got number%)", errs[1])
    assert.matches("bad argument #1 to 'sse'.*line break", errs[2])
    assert.matches("ValueError: sse field event holds a line break", errs[3])
    assert.matches("ValueError: sse field id holds a line break", errs[4])
    assert.matches("ValueError: sse field event holds a line break", errs[5])
    assert.matches("bad argument #1 to 'send' %(retry: integer >= 0", errs[6])
    assert.matches("bad argument #1 to 'send' %(retry", errs[7])
    assert.matches("bad argument #1 to 'send' %(retry", errs[8])
    assert.matches("bad argument #1 to 'send' %(data: string expected, got function%)", errs[9])
    assert.matches("bad argument #1 to 'send' %(table expected, got string%)", errs[10])
    assert.matches("bad argument #1 to 'send' %(an event needs data, event, id or retry%)", errs[11])
    assert.matches("bad argument #1 to 'comment' %(string expected, got table%)", errs[12])
    assert.matches("SSE expected, got nil", errs[13])
    assert.matches("RuntimeError: the response was already started", errs[14])
    assert.equals("no error", errs[15])
  end)
end)

-------------------------------------------------------------------------------
describe("aio.http.abort and req:json", function()
  local server, base
  setup(function()
    local app = aio.http.app()
    app:route("/teapot", function() aio.http.abort(418, "short and stout\n", { ["X-Tea"] = "earl grey" }) end)
    app:route("/forbidden", function() aio.http.abort(403) end)
    app:route("/table", function() aio.http.abort(422, { error = "bad field" }) end)
    app:route("/deep", function()
      local function check(x) if x ~= "ok" then aio.http.abort(409, "conflict\n") end end
      check("no")
      return "unreachable"
    end)
    app:route("/caught", function()
      local ok, err = pcall(aio.http.abort, 404)
      return ("%s %s %s"):format(tostring(ok), errname(err), tostring(err.status))
    end)
    app:route("/json", function(req) return { got = req:json() } end, "POST")
    server, base = serve(app)
  end)
  teardown(function() server:close() end)

  it("abort(status, body, headers) is that response", function()
    local out = curl("-i " .. base .. "/teapot")
    assert.matches("^HTTP/1.1 418 I'm a teapot\r\n", out)
    assert.matches("\r\nX%-Tea: earl grey\r\n", out)
    assert.matches("\r\n\r\nshort and stout\n$", out)
    out = curl("-i " .. base .. "/forbidden")
    assert.matches("^HTTP/1.1 403 Forbidden\r\n", out)
    assert.matches("\r\n\r\n403 Forbidden\n$", out)
    out = curl("-i " .. base .. "/table")
    assert.matches("^HTTP/1.1 422 ", out)
    assert.matches("\r\nContent%-Type: application/json\r\n", out)
    assert.same({ error = "bad field" }, aio.json.decode(out:match("\r\n\r\n(.*)$")))
    assert.matches("^HTTP/1.1 409", (curl("-i " .. base .. "/deep")))
  end)

  it("abort raises an HTTPError with the status (a handler may catch it)", function()
    assert.equals("false HTTPError 404", (curl(base .. "/caught")))
  end)

  it("abort checks its arguments", function()
    for _, bad in ipairs { { "x" }, { 99 }, { 600 }, { 200.5 }, { 200, "b", "h" } } do
      local ok, err = pcall(function() aio.http.abort(table.unpack(bad)) end)
      assert.is_false(ok)
      assert.matches("bad argument #%d to 'aio.http.abort'", err)
    end
  end)

  it("req:json() on a malformed body is a 400; a valid body decodes", function()
    local out = curl("-i -H 'Content-Type: application/json' -d '{\"a\": [1, 2' " .. base .. "/json")
    assert.matches("^HTTP/1.1 400 Bad Request\r\n", out)
    assert.matches("malformed JSON", out)
    assert.matches("^HTTP/1.1 400", (curl("-i -d '' " .. base .. "/json")))
    out = curl("-d '{\"a\": [1, 2], \"b\": {\"c\": \"d\"}}' " .. base .. "/json")
    assert.same({ got = { a = { 1, 2 }, b = { c = "d" } } }, aio.json.decode(out))
  end)
end)

-------------------------------------------------------------------------------
describe("middleware", function()
  local server, base
  local order, seen = {}, {}
  setup(function()
    local app = aio.http.app()
    app:use(function(req, next)
      order[#order + 1] = "m1 in"
      local b, st, hd = next(req)
      order[#order + 1] = "m1 out " .. tostring(st)
      seen[req.path] = { body = type(b) == "string" and b or type(b), status = st, h = hd["X-H"] }
      hd["X-M1"] = "1"
      return b, st, hd
    end)
    app:use(function(req, next)
      order[#order + 1] = "m2 in"
      if req.path == "/secret" and req.headers.authorization ~= "Bearer ok" then
        return "unauthorized\n", 401, { ["WWW-Authenticate"] = "Bearer" }
      end
      if req.path == "/mw-abort" then aio.http.abort(402, "pay first\n") end
      if req.path == "/mw-raise" then error("middleware broke") end
      if req.path == "/signed" then          -- reads the body before the handler
        local b = req:read_all()
        if b:sub(1, 4) ~= "sig:" then return "bad signature\n", 403 end
      end
      if req.path == "/twice" then           -- calls the inner layers twice
        local b1 = next(req)
        local b2, st, hd = next(req)
        return b1 .. "|" .. b2, st, hd
      end
      req.user = "alice"
      local b, st, hd = next(req)
      order[#order + 1] = "m2 out"
      if req.path == "/upper" then b = b:upper() end
      return b, st, hd
    end)
    app:route("/hello", function(req)
      order[#order + 1] = "handler"
      return "hello " .. req.user, 201, { ["X-H"] = "h" }
    end)
    app:route("/upper", function() return "shout" end)
    app:route("/secret", function() return "the secret\n" end)
    app:route("/post-only", function() return "posted" end, "POST")
    app:route("/boom", function() error("handler broke") end)
    app:route("/mw-abort", function() return "never" end)
    app:route("/mw-raise", function() return "never" end)
    app:route("/early", function() return "streamed" end, "POST", { stream_body = true })
    app:route("/signed", function(req) return "body " .. req.body end, "POST", { max_body = 20 })
    app:route("/twice", function(req) return req.body end, "POST")
    server, base = serve(app)
  end)

  it("a middleware may read the body; the handler still gets it whole", function()
    local reply = raw(server.port, post("/signed", "sig:payload", "Connection: close\r\n"))
    assert.matches("^HTTP/1.1 200", reply)
    assert.matches("\r\n\r\nbody sig:payload$", reply)
    assert.same({ 403 }, statuses(raw(server.port, post("/signed", "payload", "Connection: close\r\n"))))
    reply = raw(server.port, chunked_post("/signed", { "sig:", "chunked" }, "Connection: close\r\n"))
    assert.matches("\r\n\r\nbody sig:chunked$", reply)
    -- the route's limit holds for what the middleware did not read yet
    assert.same({ 413 }, statuses(raw(server.port, post("/signed", ("sig:"):rep(6), "Connection: close\r\n"))))
    assert.same({ 413 }, statuses(raw(server.port, chunked_post("/signed", { "sig:", ("x"):rep(20) }, "Connection: close\r\n"))))
  end)

  it("next called twice runs the handler twice on the same body", function()
    local reply = raw(server.port, post("/twice", "abc", "Connection: close\r\n"))
    assert.matches("\r\n\r\nabc|abc$", reply)
  end)
  teardown(function() server:close() end)

  it("run in the order added, around the handler; next(req) returns body, status, headers", function()
    for k in pairs(order) do order[k] = nil end
    local out = curl("-i " .. base .. "/hello")
    assert.matches("^HTTP/1.1 201", out)
    assert.matches("\r\nX%-H: h\r\n", out)
    assert.matches("\r\nX%-M1: 1\r\n", out)
    assert.matches("\r\n\r\nhello alice$", out)
    assert.same({ "m1 in", "m2 in", "handler", "m2 out", "m1 out 201" }, order)
    assert.same({ body = "hello alice", status = 201, h = "h" }, seen["/hello"])
    assert.equals("SHOUT", (curl(base .. "/upper")))
    assert.same({ body = "SHOUT", status = 200 }, seen["/upper"])   -- no status given: 200
  end)

  it("wrap 404 and 405 too", function()
    local out = curl("-i " .. base .. "/nowhere")
    assert.matches("^HTTP/1.1 404", out)
    assert.matches("\r\nX%-M1: 1\r\n", out)
    assert.equals(404, seen["/nowhere"].status)
    out = curl("-i " .. base .. "/post-only")
    assert.matches("^HTTP/1.1 405", out)
    assert.matches("\r\nAllow: POST\r\n", out)
    assert.matches("\r\nX%-M1: 1\r\n", out)
    assert.equals(405, seen["/post-only"].status)
  end)

  it("a middleware may answer without calling next (auth: 401)", function()
    local out = curl("-i " .. base .. "/secret")
    assert.matches("^HTTP/1.1 401", out)
    assert.matches("\r\nWWW%-Authenticate: Bearer\r\n", out)
    assert.not_matches("the secret", out)
    assert.equals("the secret\n", (curl("-H 'Authorization: Bearer ok' " .. base .. "/secret")))
  end)

  it("abort in a middleware is that response; a raising middleware is a 500", function()
    local log = capture_stderr(function()
      local out = curl("-i " .. base .. "/mw-abort")
      assert.matches("^HTTP/1.1 402", out)
      assert.matches("pay first\n$", out)
    end)
    assert.equals("", log)
    log = capture_stderr(function()
      assert.matches("^HTTP/1.1 500", (curl("-i " .. base .. "/mw-raise")))
      -- a handler that raises: the middleware sees the 500
      assert.matches("^HTTP/1.1 500", (curl("-i " .. base .. "/boom")))
    end)
    assert.equals(500, seen["/boom"].status)
    assert.matches("handler for GET /mw%-raise failed: [^\n]*middleware broke\nstack traceback:", log)
    assert.matches("handler for GET /boom failed: [^\n]*handler broke\nstack traceback:", log)
  end)

  it("a middleware that answers before a streamed body is read: the body is not taken for a request", function()
    local reply = raw(server.port, post("/secret", "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert.same({ 401 }, statuses(reply))
  end)

  it("app:use checks its argument", function()
    local app = aio.http.app()
    local ok, err = pcall(function() app:use("x") end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'use' %(function expected, got string%)", err)
    assert.has_error(function() app:use() end)
    assert.has_error(function() app.use(nil, print) end)
  end)
end)

-------------------------------------------------------------------------------
describe("what the server logs", function()
  it("aborts, 400s and 415s are not logged; handler and middleware failures and unsendable results are", function()
    local h = child_server([[
      app:use(function(req, next)
        if req.path == "/mw-abort" then aio.http.abort(401, "who are you\n") end
        if req.path == "/mw-raise" then error("middleware broke") end
        return next(req)
      end)
      app:route("/abort", function() aio.http.abort(418, "teapot\n") end)
      app:route("/json", function(req) return req:json() end, "POST")
      app:route("/form", function(req) return req:form() end, "POST")
      app:route("/boom", function() error("handler broke") end)
      app:route("/cut", function(req) req:respond(200):write("partial") error("midway") end)
      app:route("/gone", function(req)
        local sse = req:sse()
        while true do sse:send { data = "tick" } aio.sleep(0.005) end
      end)
      app:route("/bad/json", function() return { f = print } end)
      app:route("/bad/cr", function() return "x", 200, { ["X-A"] = "a\rb" } end)
      app:route("/bad/lf", function() return "x", 200, { ["X-A"] = "a\nb" } end)
      app:route("/bad/nul", function() return "x", 200, { ["X-A"] = "a\0b" } end)
      app:route("/bad/name", function() return "x", 200, { ["Bad Name"] = "v" } end)
      app:route("/bad/status", function() return "x", 99 end)
      app:route("/bad/type", function() return print end)
    ]])
    local function status_of(args) return (curl("-o /dev/null -w '%{http_code}' " .. args)) end
    assert.equals("418", status_of(h.base .. "/abort"))
    assert.equals("401", status_of(h.base .. "/mw-abort"))
    assert.equals("400", status_of("-d '{' " .. h.base .. "/json"))
    assert.equals("415", status_of("-H 'Content-Type: text/plain' -d 'x' " .. h.base .. "/form"))
    assert.equals("400", status_of("-H 'Content-Type: multipart/form-data' -d 'x' " .. h.base .. "/form"))
    local c = connect(h.port)
    c:write("GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
    c:readline()
    aio.sleep(0.05)
    c:close()
    assert.equals("500", status_of(h.base .. "/mw-raise"))
    assert.equals("500", status_of(h.base .. "/boom"))
    local _, _, code = curl(h.base .. "/cut")
    assert.equals(18, code)
    for _, what in ipairs { "json", "cr", "lf", "nul", "name", "status", "type" } do
      local out = curl("-i " .. h.base .. "/bad/" .. what)
      assert.matches("^HTTP/1.1 500", out, what)
      assert.not_matches("X%-A", out)
    end
    aio.sleep(0.1)
    local stderr, status = h.finish()
    assert.equals(0, status)
    assert.not_matches("teapot", stderr)
    assert.not_matches("who are you", stderr)
    assert.not_matches("HTTPError", stderr)
    assert.not_matches("/gone", stderr)
    assert.not_matches("ConnectionError", stderr)
    assert.matches("handler for GET /mw%-raise failed: [^\n]*middleware broke\nstack traceback:", stderr)
    assert.matches("handler for GET /boom failed: [^\n]*handler broke\nstack traceback:", stderr)
    assert.matches("handler for GET /cut failed: [^\n]*midway", stderr)
    assert.matches("handler for GET /bad/json returned a body that cannot be encoded", stderr)
    assert.matches("handler for GET /bad/cr returned a bad header", stderr)
    assert.matches("handler for GET /bad/lf returned a bad header", stderr)
    assert.matches("handler for GET /bad/nul returned a bad header", stderr)
    assert.matches("handler for GET /bad/name returned a bad header", stderr)
    assert.matches("handler for GET /bad/status returned an invalid status 99", stderr)
    assert.matches("handler for GET /bad/type returned a body of type function", stderr)
  end)
end)

-------------------------------------------------------------------------------
describe("forms and cookies", function()
  local server, base
  setup(function()
    local app = aio.http.app()
    app:route("/form", function(req) return req:form() end, "POST")
    app:route("/form-stream", function(req) return req:form() end, "POST", { stream_body = true })
    app:route("/cookies", function(req) return req.cookies end)
    app:route("/form-bad", function(req)
      local ok, err = pcall(function() local _ = req.form("x") end)
      return tostring(ok) .. " " .. tostring(err)
    end, "POST")
    server, base = serve(app)
  end)
  teardown(function() server:close() end)

  it("urlencoded (a repeated key is a list)", function()
    local out = curl("-d 'a=1&b=x%20y&c=&a=2&d=%C3%A9+z' " .. base .. "/form")
    assert.same({ a = { "1", "2" }, b = "x y", c = "", d = "é z" }, aio.json.decode(out))
    out = curl("-d 'k=v' " .. base .. "/form-stream")
    assert.same({ k = "v" }, aio.json.decode(out))
  end)

  it("multipart from curl -F: a file field is {filename, content_type, data}", function()
    local data = "line one\r\nline two\0binary\255"
    local path = S.tmpfile(data)
    local out, err, code = curl("-F 'name=joe' -F 'upload=@" .. path .. ";filename=notes.txt;type=text/x-notes' " ..
      base .. "/form")
    assert.equals(0, code, err)
    local v = aio.json.decode(out)
    assert.equals("joe", v.name)
    assert.same({ filename = "notes.txt", content_type = "text/x-notes", data = data }, v.upload)
    out = curl("-F 'upload=@" .. path .. ";filename=notes.txt' " .. base .. "/form-stream")
    assert.equals(data, aio.json.decode(out).upload.data)
    os.remove(path)
  end)

  it("another content type is 415, a malformed form 400", function()
    local function status_of(args) return (curl("-o /dev/null -w '%{http_code}' " .. args .. " " .. base .. "/form")) end
    assert.equals("415", status_of("-H 'Content-Type: application/json' -d '{}'"))
    assert.equals("415", status_of("-H 'Content-Type:' -d 'a=1'"))
    assert.equals("400", status_of("-H 'Content-Type: multipart/form-data' -d 'x'"))
    assert.equals("400", status_of("-H 'Content-Type: multipart/form-data; boundary=zz' --data-binary 'not a multipart body'"))
    local out = curl("-i -H 'Content-Type: application/json' -d '{}' " .. base .. "/form")
    assert.matches("^HTTP/1.1 415 ", out)
    assert.matches("\r\n\r\n415 ", out)
  end)

  it("req:form checks self", function()
    assert.matches("^false .*Request expected, got string", (curl("-d 'a=1' " .. base .. "/form-bad")))
  end)

  it("req.cookies is a table from the Cookie header", function()
    assert.same({ a = "1", session = "abc def" }, aio.json.decode((curl("-b 'a=1; session=\"abc def\"' " .. base .. "/cookies"))))
    assert.same({}, aio.json.decode((curl(base .. "/cookies"))) or {})
  end)
end)

-------------------------------------------------------------------------------
describe("compress = true", function()
  local server, base, plain_server
  local TEXT = ("All work and no play makes Jack a dull boy.\n"):rep(50)      -- 2200 bytes
  setup(function()
    local app = aio.http.app()
    app:route("/text", function() return TEXT end)
    app:route("/n/:n", function(req) return ("z"):rep(tonumber(req.params.n)) end)
    app:route("/png", function() return TEXT, 200, { ["Content-Type"] = "image/png" } end)
    app:route("/svg", function() return TEXT, 200, { ["Content-Type"] = "image/svg+xml" } end)
    app:route("/json", function() return { text = TEXT } end)
    app:route("/html", function() return TEXT, 200, { ["content-type"] = "text/html; charset=utf-8" } end)
    app:route("/vary", function() return TEXT, 200, { Vary = "Origin", ETag = '"v1"' } end)
    app:route("/encoded", function() return TEXT, 200, { ["Content-Encoding"] = "identity" } end)
    app:route("/no-transform", function() return TEXT, 200, { ["Cache-Control"] = "no-transform" } end)
    app:route("/created", function() return TEXT, 201 end)
    app:route("/stream", function(req) req:respond(200, { ["Content-Type"] = "text/plain" }):write(TEXT) end)
    server, base = serve(app, { compress = true })
    plain_server = serve(app)
  end)
  teardown(function() server:close() plain_server:close() end)

  local function get(path, accept, method)
    local c <close> = connect(server.port)
    c:write(("%s %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n"):format(method or "GET", path,
      accept and ("Accept-Encoding: " .. accept .. "\r\n") or ""))
    local status, h, body = aio.timeout(5, read_response, c, method)
    return h, body, status
  end

  it("curl --compressed gets gzip for text of 1 KiB or more, with Vary", function()
    local out, err, code = curl("--compressed -i " .. base .. "/text")
    assert.equals(0, code, err)
    assert.matches("\r\nContent%-Encoding: gzip\r\n", out)
    assert.matches("\r\nVary: Accept%-Encoding\r\n", out)
    assert.equals(TEXT, out:match("\r\n\r\n(.*)$"))
    local size = curl("--compressed -o /dev/null -w '%{size_download}' " .. base .. "/text")
    assert.is_true(tonumber(size) < #TEXT / 4, size)
    for _, path in ipairs { "/json", "/html", "/svg", "/created" } do
      local h = get(path, "gzip, deflate")
      assert.equals("gzip", h["content-encoding"], path)
    end
  end)

  it("at 1 KiB and not below", function()
    local h, body = get("/n/1024", "gzip")
    assert.equals("gzip", h["content-encoding"])
    assert.is_true(#body < 100)
    h, body = get("/n/1023", "gzip")
    assert.is_nil(h["content-encoding"])
    assert.equals(1023, #body)
  end)

  it("not for images, nor bodies already encoded or marked no-transform, nor streamed answers", function()
    for _, path in ipairs { "/png", "/encoded", "/no-transform", "/stream" } do
      local h, body = get(path, "gzip")
      assert.is_nil(h["content-encoding"] ~= "identity" and h["content-encoding"] or nil, path)
      assert.equals(TEXT, body, path)
    end
  end)

  it("only when Accept-Encoding allows gzip", function()
    for _, accept in ipairs { false, "identity", "deflate, br", "gzip;q=0", "gzip; q=0.000, deflate", "*;q=0", "gzip;q=0, *" } do
      local h, body = get("/text", accept or nil)
      assert.is_nil(h["content-encoding"], tostring(accept))
      assert.equals(TEXT, body)
      assert.equals("Accept-Encoding", h.vary, tostring(accept))   -- the answer depends on it
    end
    for _, accept in ipairs { "gzip", "GZIP", "deflate, gzip;q=0.5", "*", "x-gzip", "br;q=1, gzip ; q=0.1" } do
      local h = get("/text", accept)
      assert.equals("gzip", h["content-encoding"], accept)
    end
  end)

  it("keeps the handler's Vary and weakens a strong ETag", function()
    local h = get("/vary", "gzip")
    assert.equals("gzip", h["content-encoding"])
    assert.equals("Origin, Accept-Encoding", h.vary)
    assert.equals('W/"v1"', h.etag)
  end)

  it("HEAD tells the length GET would send", function()
    local h1, body = get("/text", "gzip")
    local h2, empty = get("/text", "gzip", "HEAD")
    assert.equals("gzip", h2["content-encoding"])
    assert.equals(tostring(#body), h2["content-length"])
    assert.equals(h1["content-length"], h2["content-length"])
    assert.equals("", empty)
  end)

  it("is off unless asked", function()
    local c <close> = connect(plain_server.port)
    c:write("GET /text HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
    local _, h, body = aio.timeout(5, read_response, c)
    assert.is_nil(h["content-encoding"])
    assert.is_nil(h.vary)
    assert.equals(TEXT, body)
    assert.has_error(function() aio.http.app({ compress = "yes" }) end)
  end)
end)

-------------------------------------------------------------------------------
describe("server defaults and timeouts", function()
  it("app() without options: header 60 s, keep-alive 75 s, body 60 s, max_body 1 MiB, max_header 64 KiB", function()
    -- the values in force on a live connection (waiting 60 s is not a spec)
    local app = aio.http.app()
    local got
    app:route("/", function(req)
      local c = req._conn
      got = { c.header_timeout, c.keepalive_timeout, c.body_timeout, c.max_body, c.max_header }
      return "ok"
    end)
    local server <close>, base = serve(app)
    assert.equals("ok", (curl(base .. "/")))
    assert.same({ 60, 75, 60, 1024 * 1024, 64 * 1024 }, got)
  end)

  it("max_header defaults to 64 KiB: a head at the limit is read, one byte more is 431", function()
    local app = aio.http.app()
    app:route("/", function() return "ok" end)
    local server <close> = serve(app)
    -- a head of `size` bytes before its blank line, in lines of at most 8 KiB
    local function head(size)
      local h = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close"
      local i = 0
      while #h < size do
        local room = size - #h - 2 - 8            -- "\r\n", "X-0000: "
        h = h .. ("\r\nX-%04d: "):format(i) .. ("v"):rep(math.min(8000, room))
        i = i + 1
      end
      return h .. "\r\n\r\n", #h
    end
    local at, n = head(65536)
    assert.equals(65536, n)
    assert.matches("^HTTP/1.1 200", raw(server.port, at))
    local past, m = head(65537)
    assert.equals(65537, m)
    assert.matches("^HTTP/1.1 431", raw(server.port, past))
  end)

  it("server options are checked", function()
    for _, bad in ipairs {
      { header_timeout = -1 }, { header_timeout = "1" }, { keepalive_timeout = -0.5 }, { body_timeout = "x" },
      { max_body = -1 }, { max_body = 1.5 }, { max_header = 0 }, { access_log = "yes" }, { hsts = -1 },
      { hsts = "x" }, { compress = 1 },
    } do
      assert.has_error(function() aio.http.app(bad) end)
    end
    local ok, err = pcall(function() aio.http.app({ header_timeout = -1 }) end)
    assert.is_false(ok)
    assert.matches("opts.header_timeout: number >= 0 expected, got %-1", err)
  end)

  describe("with small values", function()
    local server
    setup(function()
      local app = aio.http.app()
      app:route("/", function() return "ok" end)
      app:route("/slow", function() aio.sleep(0.5) return "slow" end)
      app:route("/echo", function(req) return req.body end, "POST")
      app:route("/stream", function(req) return req:read_all() end, "POST", { stream_body = true })
      app:route("/flood", function(req)
        local res = req:respond(200)
        local piece = ("f"):rep(65536)
        for _ = 1, 4096 do res:write(piece) end
      end)
      server = serve(app, { header_timeout = 0.2, keepalive_timeout = 0.3, body_timeout = 0.2 })
    end)
    teardown(function() server:close() end)

    it("header_timeout: half a head gets 408", function()
      local c <close> = connect(server.port)
      c:write("GET / HTTP/1.1\r\nHost: x\r\n")
      local t0 = aio.now()
      local reply = aio.timeout(5, c.read_all, c)
      assert.matches("^HTTP/1.1 408", reply)
      assert.is_true(aio.now() - t0 < 1.5)
    end)

    it("header_timeout counts the whole head: a client trickling it gets 408", function()
      local c <close> = connect(server.port)
      local t0 = aio.now()
      c:write("GET / HTTP/1.1\r\nHost: x\r\n")
      pcall(function()       -- (a write after the server closed may fail: that is the point)
        for _ = 1, 20 do c:write("X-Slow: 1\r\n") aio.sleep(0.05) end
      end)
      local reply = aio.timeout(5, c.read_all, c)
      assert.matches("^HTTP/1.1 408", reply)
      assert.is_true(aio.now() - t0 < 1.5)
    end)

    it("keepalive_timeout: an idle keep-alive connection is closed, without a 408", function()
      local c <close> = connect(server.port)
      c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.equals(200, (aio.timeout(5, read_response, c)))
      local t0 = aio.now()
      assert.equals("", aio.timeout(5, c.read_all, c))       -- nothing more: closed
      local idle = aio.now() - t0
      assert.is_true(idle > 0.2 and idle < 1.5, tostring(idle))
    end)

    it("keepalive_timeout: a connection that keeps asking stays open", function()
      local c <close> = connect(server.port)
      for _ = 1, 4 do
        c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.equals(200, (aio.timeout(5, read_response, c)))
        aio.sleep(0.15)
      end
    end)

    -- (the head reads' timer stays armed between requests and its deadline
    -- moves on lazily: these see that each request's own deadline holds)
    it("keepalive_timeout: after many requests in a row, the idle connection is still closed", function()
      local c <close> = connect(server.port)
      for _ = 1, 20 do
        c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.equals(200, (aio.timeout(5, read_response, c)))
      end
      assert.equals("", aio.timeout(5, c.read_all, c))       -- closed, no 408
    end)

    it("a handler that outlasts the head's timeout: its answer, then the connection goes on", function()
      local c <close> = connect(server.port)
      c:write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
      local status, _, body = aio.timeout(5, read_response, c)
      assert.same({ 200, "slow" }, { status, body })
      c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.equals(200, (aio.timeout(5, read_response, c)))
      assert.equals("", aio.timeout(5, c.read_all, c))       -- and still times out when idle
    end)

    it("after a request: half a head, or half a body, gets 408", function()
      for _, second in ipairs {
        "GET / HTTP/1.1\r\nHost: x\r\n",
        "POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf",
      } do
        local c <close> = connect(server.port)
        c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.equals(200, (aio.timeout(5, read_response, c)))
        c:write(second)
        assert.matches("^HTTP/1.1 408", aio.timeout(5, c.read_all, c))
      end
    end)

    it("body_timeout: a client that stops mid-body gets 408 (Content-Length, chunked, streamed)", function()
      for _, start in ipairs {
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        "POST /stream HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf",
      } do
        local c <close> = connect(server.port)
        c:write(start)
        local reply = aio.timeout(5, c.read_all, c)
        assert.matches("^HTTP/1.1 408", reply)
        assert.matches("\r\nConnection: close\r\n", reply)
      end
    end)

    it("body_timeout bounds writes too: a client that stops reading is dropped, nothing logged", function()
      local log = capture_stderr(function()
        local c <close> = connect(server.port)
        c:write("GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")
        aio.sleep(0.8)                              -- not reading: the server's writes time out
        local got = aio.timeout(10, c.read_all, c)  -- what was buffered, then the end
        assert.is_true(#got < 64 * MiB)
        assert.not_matches("\r\n0\r\n\r\n$", got)
      end)
      assert.equals("", log)
    end)

    it("body_timeout is between reads: a slow but steady body goes through", function()
      local c <close> = connect(server.port)
      c:write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n")
      for i = 1, 8 do c:write(tostring(i)) aio.sleep(0.1) end
      local status, _, body = aio.timeout(5, read_response, c)
      assert.equals(200, status)
      assert.equals("12345678", body)
    end)
  end)
end)

-------------------------------------------------------------------------------
describe("access_log", function()
  it("a function gets (req, status, bytes, seconds) for every request", function()
    local lines = {}
    local app = aio.http.app()
    app:route("/hello", function() return "hello" end)
    app:route("/slow", function() aio.sleep(0.1) return "slow" end)
    app:route("/stream", function(req)
      local res = req:respond(200)
      res:write("abc") res:write("defg")
    end)
    app:route("/post", function(req) return req.body end, "POST", { max_body = 4 })
    local server <close>, base = serve(app, {
      access_log = function(req, status, bytes, seconds)
        lines[#lines + 1] = { req.method, req.path, status, bytes, seconds }
      end })
    curl(base .. "/hello")
    curl(base .. "/missing")
    curl("-I " .. base .. "/hello")
    curl(base .. "/slow")
    curl(base .. "/stream")
    curl("-d 'too long' " .. base .. "/post")
    local function entry(i) return { lines[i][1], lines[i][2], lines[i][3], lines[i][4] } end
    assert.equals(6, #lines)
    assert.same({ "GET", "/hello", 200, 5 }, entry(1))
    assert.same({ "GET", "/missing", 404, #"404 Not Found\n" }, entry(2))
    assert.same({ "HEAD", "/hello", 200, 0 }, entry(3))
    assert.same({ "GET", "/slow", 200, 4 }, entry(4))
    assert.same({ "GET", "/stream", 200, 7 }, entry(5))
    assert.equals(413, lines[6][3])
    assert.is_true(lines[4][5] >= 0.09 and lines[4][5] < 2)
    assert.is_true(lines[1][5] >= 0 and lines[1][5] < 1)
  end)

  it("a function that raises is reported and the server goes on", function()
    local h = child_server([[
      app:route("/", function() return "fine" end)
    ]], [[{ access_log = function() error("log broke") end }]])
    assert.equals("fine", (curl(h.base .. "/")))
    assert.equals("fine", (curl(h.base .. "/")))
    local stderr = h.finish()
    assert.matches("access_log failed: [^\n]*log broke", stderr)
  end)

  it("true writes a line per request on stderr", function()
    local h = child_server([[
      app:route("/hello", function() return "hello" end, "GET")
    ]], "{ access_log = true }")
    curl(h.base .. "/hello?x=1")
    curl(h.base .. "/nope")
    curl("-d 'x' " .. h.base .. "/hello")
    local stderr, status = h.finish()
    assert.equals(0, status)
    local got = {}
    for line in stderr:gmatch("[^\n]+") do got[#got + 1] = line end
    assert.equals(4, #got, stderr)                               -- the three, and /quit
    assert.matches('^127%.0%.0%.1:%d+ %- %- %[%d%d/%a%a%a/%d%d%d%d:%d%d:%d%d:%d%d %+0000%] "GET /hello%?x=1 HTTP/1%.1" 200 5 %d+%.%d+$', got[1])
    assert.matches('"GET /nope HTTP/1%.1" 404 14 ', got[2])
    assert.matches('"POST /hello HTTP/1%.1" 405 ', got[3])
    assert.matches('"GET /quit HTTP/1%.1" 200 3 ', got[4])
  end)
end)

-------------------------------------------------------------------------------
describe("framing and targets", function()
  local server
  setup(function()
    local app = aio.http.app()
    app:route("/", function() return "root" end)
    app:route("/echo", function(req) return req.body end, "POST")
    app:route("/path", function(req) return req.path .. " " .. tostring(req.query.x) .. " " .. req.target end)
    server = serve(app)
  end)
  teardown(function() server:close() end)

  local function reply_to(bytes) return raw(server.port, bytes, { half_close = true }) end
  local CHUNKED = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

  it("a bare LF in a chunk size line is 400", function()
    assert.matches("^HTTP/1.1 400", reply_to(CHUNKED .. "5\nhello\r\n0\r\n\r\n"))
    assert.matches("^HTTP/1.1 400", reply_to(CHUNKED .. "5\r\nhello\r\n0\n\r\n"))
    assert.matches("^HTTP/1.1 400", reply_to(CHUNKED .. "5\rx\r\nhello\r\n0\r\n\r\n"))
  end)

  it("a chunk not followed by CRLF is 400", function()
    assert.matches("^HTTP/1.1 400", reply_to(CHUNKED .. "5\r\nhello0\r\n\r\n"))
    assert.matches("^HTTP/1.1 400", reply_to(CHUNKED .. "5\r\nhello\n0\r\n\r\n"))
    assert.matches("^HTTP/1.1 400", reply_to(CHUNKED .. "5\r\nhelloXY\r\n0\r\n\r\n"))
  end)

  it("trailers are read and ignored; the connection goes on", function()
    local reply = raw(server.port, CHUNKED .. "5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\nX-Other: 2\r\n\r\n" ..
      "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.same({ 200, 200 }, statuses(reply))
    assert.matches("\r\n\r\nhello world", reply)
    assert.matches("root$", reply)
    assert.matches("^HTTP/1.1 400", reply_to(CHUNKED .. "5\r\nhello\r\n0\r\nX-Bad: a\nb\r\n\r\n"))
  end)

  it("chunk extensions and upper-case hex sizes are accepted", function()
    local reply = raw(server.port, CHUNKED:gsub("\r\n\r\n$", "\r\nConnection: close\r\n\r\n") ..
      "A;name=value\r\n0123456789\r\n0;last\r\n\r\n")
    assert.matches("^HTTP/1.1 200", reply)
    assert.matches("\r\n\r\n0123456789$", reply)
  end)

  it("an absolute-form target is routed by its path, with its query", function()
    local reply = raw(server.port, "GET http://example.com/path?x=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert.matches("^HTTP/1.1 200", reply)
    assert.matches("\r\n\r\n/path 1 http://example.com/path%?x=1$", reply)
    reply = raw(server.port, "GET HTTPS://example.com:8443/path HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert.matches("\r\n\r\n/path nil ", reply)
    reply = raw(server.port, "GET http://example.com HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert.matches("\r\n\r\nroot$", reply)
    reply = raw(server.port, "GET http://example.com?x=2 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert.matches("\r\n\r\nroot$", reply)
    assert.matches("^HTTP/1.1 400", reply_to("GET ftp://example.com/path HTTP/1.1\r\nHost: x\r\n\r\n"))
  end)
end)

-------------------------------------------------------------------------------
describe("hsts", function()
  local CERTS = os.tmpname()
  local app, tls
  setup(function()
    os.remove(CERTS)
    local _, err, code = S.sh("tools/make_test_certs.sh " .. CERTS)
    assert(code == 0, "making the test certificates failed: " .. err)
    tls = { cert_file = CERTS .. "/server.pem", key_file = CERTS .. "/server.key" }
    app = aio.http.app()
    app:route("/", function() return "hi" end)
  end)
  teardown(function() os.execute("rm -rf " .. CERTS) end)

  local function head_of(url)
    local out, err, code = curl("-i --cacert " .. CERTS .. "/ca.pem " .. url)
    assert.equals(0, code, err)
    return out:match("^(.-)\r\n\r\n")
  end

  it("Strict-Transport-Security over https, not over plain http", function()
    local https <close> = app:listen("127.0.0.1", 0, { tls = tls, hsts = true })
    local http <close> = app:listen("127.0.0.1", 0, { hsts = true })
    local h = head_of("https://localhost:" .. https.port .. "/")
    assert.matches("\r\nStrict%-Transport%-Security: max%-age=31536000\r\n", h .. "\r\n")
    h = head_of("https://localhost:" .. https.port .. "/missing")   -- the server's own answers too
    assert.matches("^HTTP/1.1 404", h)
    assert.matches("Strict%-Transport%-Security", h)
    h = head_of("http://127.0.0.1:" .. http.port .. "/")
    assert.not_matches("Strict%-Transport%-Security", h)
  end)

  it("an integer is the max-age; false or none sends nothing", function()
    local a <close> = app:listen("127.0.0.1", 0, { tls = tls, hsts = 600 })
    local b <close> = app:listen("127.0.0.1", 0, { tls = tls, hsts = false })
    local c <close> = app:listen("127.0.0.1", 0, { tls = tls })
    assert.matches("\r\nStrict%-Transport%-Security: max%-age=600\r\n", head_of("https://localhost:" .. a.port .. "/") .. "\r\n")
    assert.not_matches("Strict", head_of("https://localhost:" .. b.port .. "/"))
    assert.not_matches("Strict", head_of("https://localhost:" .. c.port .. "/"))
  end)
end)

-------------------------------------------------------------------------------
describe("waiting in handlers and middleware", function()
  local server
  local seen = {}
  local ready = aio.Event()
  setup(function()
    local app = aio.http.app()
    app:use(function(req, next)
      if req.path == "/slow" then
        local ok, b, st, hd = pcall(aio.timeout, 0.1, next, req)
        if not ok then return "inner layers too slow: " .. errname(b), 504 end
        return b, st, hd
      end
      if req.path == "/next-bad" then
        local ok, err = pcall(function() local _ = next("not a request") end)
        return tostring(ok) .. " " .. tostring(err)
      end
      return next(req)
    end)
    app:route("/slow", function()
      local ok, err = pcall(aio.sleep, 5)
      seen.handler = errname(err)
      if not ok then error(err, 0) end
      return "never"
    end)
    app:route("/next-bad", function() return "never" end)
    app:route("/read_all", function(req)
      local t = aio.spawn(function() return req:read_all() end)
      aio.sleep(0.05)
      t:cancel()
      local ok, err = pcall(t.wait, t)
      seen.read_all = { ok = ok, name = errname(err) }
      local ok2, err2 = pcall(aio.timeout, 0.1, req.form, req)
      local ok3, err3 = pcall(aio.timeout, 0.1, req.json, req)
      seen.form_json = { ok2, errname(err2), ok3, errname(err3) }
      ready:set()
      return req:form()
    end, "POST", { stream_body = true })
    server = serve(app)
  end)
  teardown(function() server:close() end)

  it("next(req) under a deadline: the inner layers are cancelled, the middleware answers", function()
    local t0 = aio.now()
    local reply = raw(server.port, "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.matches("^HTTP/1.1 504", reply)
    assert.matches("inner layers too slow: TimeoutError$", reply)
    assert.is_true(aio.now() - t0 < 2)
    assert.equals("CancelledError", seen.handler)
  end)

  it("next checks its argument", function()
    local reply = raw(server.port, "GET /next-bad HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.matches("\r\n\r\nfalse .*bad argument #1 to 'next' %(luaio%.http%.Request expected, got string%)$", reply)
  end)

  it("req:read_all cancelled, req:form and req:json timed out: the body is still read whole after", function()
    ready:clear()
    local c <close> = connect(server.port)
    c:write("POST /read_all HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n" ..
      "Content-Length: 7\r\n\r\na=")
    aio.timeout(5, ready.wait, ready)
    assert.same({ ok = false, name = "CancelledError" }, seen.read_all)
    assert.same({ false, "TimeoutError", false, "TimeoutError" }, seen.form_json)
    c:write("1&b=2")
    local status, _, body = aio.timeout(5, read_response, c)
    assert.equals(200, status)
    assert.same({ a = "1", b = "2" }, aio.json.decode(body))
  end)
end)
