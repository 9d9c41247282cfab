-- WebSocket (API.md §12, RFC 6455, RFC 7692): the luaio client against the
-- luaio server; both against Python's websockets (client and server, with
-- and without permessage-deflate); and a raw-socket peer that writes frames
-- by hand for every protocol violation the server must refuse, reading the
-- server's close frame byte by byte. Every waiting call (connect, receive,
-- send, ping, close) is cancelled, timed out and given bad input; every
-- limit is tried at and past it. Python is /usr/bin/python3 (Debian's, with
-- python3-websockets), started by the test in a temp directory and stopped
-- by its PID.
local aio = require "luaio"
local core = require "luaio.core"
local P = require "spec.lib.peers"
-- (ASan and valgrind allocators keep freed memory: RSS says nothing there)
local MEASURE_RSS = not os.getenv("LUAIO_SANITIZED") and not os.getenv("LUAIO_VALGRIND")

local KiB, MiB = 1024, 1024 * 1024
local spack, sunpack = string.pack, string.unpack

local expect = require "spec.lib.expect"
local raises, bad_arg = expect.raises, expect.bad_arg

-- a server for app's routes on 127.0.0.1; -> server, "ws://127.0.0.1:port"
local function serve(app, opts)
  local server = app:listen("127.0.0.1", 0, opts)
  return server, "ws://127.0.0.1:" .. server.port, server.port
end

-- an app with one WebSocket route; handler(ws, req) -> server, base URL, port
local function ws_server(path, handler, opts, listen_opts)
  local app = aio.http.app()
  app:websocket(path, handler, opts)
  return serve(app, listen_opts)
end

local function echo(ws)
  for data, kind in ws:messages() do ws:send(data, kind) end
end

-- deterministic bytes: n of them, every value
local function bytes(n, seed)
  local piece = {}
  for i = 0, 255 do piece[#piece + 1] = string.char((i * 7 + (seed or 0)) % 256) end
  piece = table.concat(piece)
  return piece:rep(n // 256 + 1):sub(1, n)
end

-- deterministic UTF-8 text of exactly n bytes (multi-byte characters inside)
local function text(n)
  local unit = "héllo wörld ✓ " .. "plain ascii. "      -- 2, 2 and 3-byte characters
  local s = unit:rep(n // #unit + 1)
  s = s:sub(1, n)
  -- cut back to a character boundary, pad with ASCII
  while #s > 0 and utf8.len(s) == nil do s = s:sub(1, -2) end
  return s .. ("x"):rep(n - #s)
end

-- run code under stock lua5.4 with the luaio module next to the binary
-- running these specs (outside any task); -> stdout .. stderr
local function stock_lua(code)
  local dir = P.luaio_bin():match("^(.*)/[^/]+$")
  local r = aio.exec({ "lua5.4", "-e", "package.cpath = '" .. dir .. "/?.so;' .. package.cpath " .. code },
    { timeout = 20 })
  return r.stdout .. r.stderr
end

-- a queue's next item within a deadline
local function next_of(q, sec)
  return aio.timeout(sec or 10, q.get, q)
end

-- Raw frames -----------------------------------------------------------------
-- a frame built by hand: opts.fin (default true), rsv1, masked (default true:
-- a client's), key (4 bytes), len (a length field that lies)
local function frame(opcode, payload, opts)
  opts = opts or {}
  local fin = opts.fin ~= false
  local masked = opts.masked ~= false
  local b0 = (fin and 0x80 or 0) | (opts.rsv1 and 0x40 or 0) | opcode
  local n = opts.len or #payload
  local mbit = masked and 0x80 or 0
  local head
  if n <= 125 then head = spack("BB", b0, mbit | n)
  elseif n <= 0xFFFF then head = spack(">BBI2", b0, mbit | 126, n)
  else head = spack(">BBI8", b0, mbit | 127, n) end
  if not masked then return head .. payload end
  local key = opts.key or "\x37\xfa\x21\x3d"
  if key == "\0\0\0\0" or #payload > 64 * KiB then
    -- (a zero key leaves the payload as it is: a big payload is not masked in Lua)
    return head .. "\0\0\0\0" .. payload
  end
  local k = { key:byte(1, 4) }
  local out = {}
  for i = 1, #payload do out[i] = string.char(payload:byte(i) ~ k[(i - 1) % 4 + 1]) end
  return head .. key .. table.concat(out)
end

-- one frame from a server (unmasked): -> fin, opcode, payload, rsv1 | nil at EOF
local function read_frame(c)
  local ok, h = pcall(c.read_exactly, c, 2)
  if not ok then
    if aio.is_error(h, "IncompleteReadError") and #h.partial == 0 then return nil end
    error(h, 0)
  end
  local b0, b1 = h:byte(1, 2)
  assert.equals(0, b1 & 0x80, "a server frame must not be masked")
  local n = b1 & 0x7F
  if n == 126 then n = sunpack(">I2", c:read_exactly(2))
  elseif n == 127 then n = sunpack(">I8", c:read_exactly(8)) end
  local payload = n > 0 and c:read_exactly(n) or ""
  return b0 & 0x80 ~= 0, b0 & 0x0F, payload, b0 & 0x40 ~= 0
end

-- frames until the server's close frame: -> code, reason (nil, nil: no
-- close frame before EOF); then the server must end the connection
local function expect_close(c, sec)
  return aio.timeout(sec or 10, function()
    while true do
      local fin, op, payload = read_frame(c)
      if fin == nil then return nil end
      if op == 8 then
        local code = #payload >= 2 and sunpack(">I2", payload) or 1005
        -- nothing but EOF after it (a reset is an end too)
        local ok, rest = pcall(c.read, c, 1)
        assert.is_true(not ok or rest == nil, "data after the close frame")
        return code, payload:sub(3)
      end
    end
  end)
end

-- the opening handshake by hand: -> stream (after the 101), response head text
local function raw_connect(port, path, extra)
  local c = aio.open_connection("127.0.0.1", port)
  c:write("GET ", path or "/", " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n", extra or "", "\r\n")
  local head = aio.timeout(10, c.read_until, c, "\r\n\r\n")
  assert.matches("^HTTP/1%.1 101", head)
  assert.matches("\r\n[Ss]ec%-[Ww]eb[Ss]ocket%-[Aa]ccept: s3pPLMBiTxaQ9kYGzzhZRbK%+xOo=", head)
  return c, head
end

-- a raw HTTP request; -> status, the whole answer (read until the server closes or 2 s)
local function raw_request(port, request)
  local c <close> = aio.open_connection("127.0.0.1", port)
  c:write(request)
  local got = {}
  pcall(aio.timeout, 2, function()
    while true do
      local d = c:read(65536)
      if not d then break end
      got[#got + 1] = d
      local all = table.concat(got)
      local len = all:match("\r\n[Cc]ontent%-[Ll]ength: (%d+)\r\n")
      local hend = all:find("\r\n\r\n", 1, true)
      if len and hend and #all >= hend + 3 + tonumber(len) then break end
    end
  end)
  local all = table.concat(got)
  return tonumber(all:match("^HTTP/1%.1 (%d+)")), all
end

local UPGRADE = "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n%s\r\n"
local GOOD_KEY = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

--------------------------------------------------------------------------------
describe("luaio client and luaio server", function()
  local server, base

  setup(function()
    local app = aio.http.app()
    app:websocket("/echo", echo)
    server, base = serve(app)
  end)
  teardown(function() server:close() end)

  it("app:websocket exists before aio.websocket is first used", function()
    local r = aio.exec({ P.luaio_bin(), "-e",
      "local aio = require 'luaio' local app = aio.http.app() print(type(app.websocket))" }, { timeout = 20 })
    assert.equals("function\n", r.stdout, r.stderr)
  end)

  it("text and binary round trips: empty, 1, 125, 126, 65535, 65536 bytes and 1 MiB", function()
    local ws <close> = aio.websocket.connect(base .. "/echo")
    assert.is_nil(ws.protocol)
    for _, n in ipairs { 0, 1, 125, 126, 127, 65535, 65536, 65537, MiB } do
      local t = text(n)
      ws:send(t)
      local d, k = ws:receive()
      assert.equals("text", k)
      assert.equals(n, #d)
      assert.is_true(d == t, "text of " .. n .. " bytes differs")
      local b = bytes(n, n)
      ws:send(b, "binary")
      d, k = ws:receive()
      assert.equals("binary", k)
      assert.is_true(d == b, "binary of " .. n .. " bytes differs")
    end
    -- the default kind is text; a number is sent as its text
    ws:send(42)
    assert.same({ "42", "text" }, { ws:receive() })
  end)

  it("16 MiB (max_message exactly) both ways; 16 MiB + 1 is refused with 1009 on the receiving side", function()
    local ws <close> = aio.websocket.connect(base .. "/echo")
    local big = bytes(16 * MiB, 3)
    ws:send(big, "binary")
    local d, k = ws:receive()
    assert.equals("binary", k)
    assert.equals(16 * MiB, #d)
    assert.is_true(d == big)
    d, big = nil, nil
    -- one byte more: the server's receive raises, it closes with 1009
    local seen = aio.Queue()
    local s2, base2 = ws_server("/", function(w)
      local ok, err = pcall(w.receive, w)
      seen:put({ ok, err, w.close_code })
    end)
    local ws2 <close> = aio.websocket.connect(base2 .. "/")
    -- (the server refuses it from the frame's header and closes: the send
    -- may see the connection go before it has written everything)
    local sent, serr = pcall(ws2.send, ws2, ("a"):rep(16 * MiB + 1))
    assert.is_true(sent or aio.is_error(serr, "WebSocketError"), tostring(serr))
    local r = next_of(seen, 20)
    assert.is_false(r[1])
    assert.is_true(aio.is_error(r[2], "WebSocketError"), tostring(r[2]))
    assert.equals(1009, r[2].code)
    assert.equals(1009, r[3])
    local none, code = ws2:receive()
    assert.is_nil(none)
    -- the close frame, unless the connection was reset under it
    assert.is_truthy(code == 1009 or (not sent and code == 1006), tostring(code))
    assert.equals(code, ws2.close_code)
    s2:close()
  end)

  it("the client's max_message: a server message past it is refused with 1009 on the client", function()
    local s2, base2 = ws_server("/", function(w)
      w:send(("b"):rep(1000), "binary")
      w:send(("b"):rep(1001), "binary")
      w:receive()
    end)
    local ws <close> = aio.websocket.connect(base2 .. "/", { max_message = 1000 })
    assert.equals(1000, #ws:receive())
    local err = raises("WebSocketError", ws.receive, ws)
    assert.equals(1009, err.code)
    assert.equals(1009, ws.close_code)
    -- receive after the failure: nil, code, reason
    local none, code = ws:receive()
    assert.is_nil(none)
    assert.equals(1009, code)
    s2:close()
  end)

  it("the server's max_message, at and past it", function()
    local seen = aio.Queue()
    local s2, base2 = ws_server("/", function(w)
      local ok, d = pcall(w.receive, w)
      seen:put({ ok, ok and #d or d })
      ok, d = pcall(w.receive, w)
      seen:put({ ok, ok and #d or d })
    end, { max_message = 100 })
    local ws <close> = aio.websocket.connect(base2 .. "/")
    ws:send(("c"):rep(100))
    ws:send(("c"):rep(101))
    assert.same({ true, 100 }, next_of(seen))
    local r = next_of(seen)
    assert.is_false(r[1])
    assert.equals(1009, r[2].code)
    local none, code = ws:receive()
    assert.is_nil(none)
    assert.equals(1009, code)
    s2:close()
  end)

  it("messages() iterates until the peer closes; <close> closes with 1000", function()
    local seen = aio.Queue()
    local s2, base2 = ws_server("/", function(w)
      for i = 1, 3 do w:send("m" .. i) end
      w:send("bin", "binary")
      w:close(4000, "done")
      seen:put({ w.close_code, w.close_reason })
    end)
    local got = {}
    do
      local ws <close> = aio.websocket.connect(base2 .. "/")
      for d, k in ws:messages() do got[#got + 1] = d .. ":" .. k end
      assert.equals(4000, ws.close_code)
      assert.equals("done", ws.close_reason)
    end
    assert.same({ "m1:text", "m2:text", "m3:text", "bin:binary" }, got)
    assert.same({ 4000, "done" }, next_of(seen))
    -- <close> on the client side
    local closed = aio.Queue()
    local s3, base3 = ws_server("/", function(w)
      local d, code, reason = w:receive()
      closed:put({ d, code, reason })
    end)
    do
      local ws <close> = aio.websocket.connect(base3 .. "/")
      assert.is_truthy(ws)
    end
    assert.same({ nil, 1000, "" }, next_of(closed))
    s2:close()
    s3:close()
  end)

  it("subprotocols: the server's first choice that the client offers; none in common is nil", function()
    local seen = aio.Queue()
    local s2, base2 = ws_server("/", function(w, req)
      seen:put({ w.protocol or false, req.headers["sec-websocket-protocol"] or false })
      w:receive()
    end, { protocols = { "chat.v2", "chat.v1" } })
    local ws = aio.websocket.connect(base2 .. "/", { protocols = { "chat.v1", "chat.v2" } })
    assert.equals("chat.v2", ws.protocol)
    assert.same({ "chat.v2", "chat.v1, chat.v2" }, next_of(seen))
    ws:close()
    ws = aio.websocket.connect(base2 .. "/", { protocols = { "chat.v1" } })
    assert.equals("chat.v1", ws.protocol)
    assert.equals("chat.v1", next_of(seen)[1])
    ws:close()
    ws = aio.websocket.connect(base2 .. "/", { protocols = { "other" } })
    assert.is_nil(ws.protocol)
    assert.is_false(next_of(seen)[1])
    ws:close()
    ws = aio.websocket.connect(base2 .. "/")
    assert.is_nil(ws.protocol)
    ws:close()
    s2:close()
  end)

  it("a server that picks a subprotocol the client did not offer fails the handshake", function()
    local srv = aio.start_server(function(s)
      local head = s:read_until("\r\n\r\n")
      local key = head:match("[Ss]ec%-[Ww]eb[Ss]ocket%-[Kk]ey: ([^\r]+)")
      s:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        "Sec-WebSocket-Accept: ", core.ws_accept(key), "\r\nSec-WebSocket-Protocol: evil\r\n\r\n")
      s:read_all()
    end, "127.0.0.1", 0)
    local err = raises("WebSocketError", aio.websocket.connect, "ws://127.0.0.1:" .. srv.port .. "/",
      { protocols = { "good" } })
    assert.matches("subprotocol", tostring(err))
    srv:close()
  end)

  it("a wrong Sec-WebSocket-Accept or a missing Upgrade fails the handshake", function()
    local answer
    local srv = aio.start_server(function(s)
      s:read_until("\r\n\r\n")
      s:write(answer)
      s:read_all()
    end, "127.0.0.1", 0)
    local url = "ws://127.0.0.1:" .. srv.port .. "/"
    answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
      "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
    assert.matches("Accept", tostring(raises("WebSocketError", aio.websocket.connect, url)))
    answer = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n"
    raises("WebSocketError", aio.websocket.connect, url)
    answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    local err = raises("WebSocketError", aio.websocket.connect, url)
    assert.equals(200, err.status)
    srv:close()
  end)

  it("opts.origins: another origin (or none) is 403 and the handler does not run; an allowed one works", function()
    local ran = 0
    local s2, base2, port = ws_server("/", function(w)
      ran = ran + 1
      w:send("welcome")
      w:receive()
    end, { origins = { "https://good.example" } })
    local status, all = raw_request(port, UPGRADE:format("/", GOOD_KEY ..
      "Sec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n"))
    assert.equals(403, status, all)
    status = raw_request(port, UPGRADE:format("/", GOOD_KEY .. "Sec-WebSocket-Version: 13\r\n"))
    assert.equals(403, status)
    local err = raises("WebSocketError", aio.websocket.connect, base2 .. "/",
      { headers = { Origin = "https://evil.example" } })
    assert.equals(403, err.status)
    assert.equals(0, ran)
    local ws <close> = aio.websocket.connect(base2 .. "/", { headers = { Origin = "https://good.example" } })
    assert.equals("welcome", ws:receive())
    assert.equals(1, ran)
    s2:close()
  end)

  it("426 for a plain GET and for a wrong version, 400 for a bad key, 405 for another method", function()
    local ran = false
    local s2, base2, port = ws_server("/ws", function() ran = true end)
    local r = aio.http.get("http://127.0.0.1:" .. port .. "/ws")
    assert.equals(426, r.status)
    assert.matches("websocket", r.headers["upgrade"]:lower())
    local status, all = raw_request(port, UPGRADE:format("/ws", GOOD_KEY .. "Sec-WebSocket-Version: 8\r\n"))
    assert.equals(426, status)
    assert.matches("\r\n[Ss]ec%-[Ww]eb[Ss]ocket%-[Vv]ersion: 13\r\n", all)
    status = raw_request(port, UPGRADE:format("/ws", "Sec-WebSocket-Version: 13\r\n"))
    assert.equals(400, status)
    for _, key in ipairs { "short==", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ=!", "dGhlIHNhbXBsZSBub25jZ===" } do
      status = raw_request(port, UPGRADE:format("/ws", "Sec-WebSocket-Key: " .. key .. "\r\nSec-WebSocket-Version: 13\r\n"))
      assert.equals(400, status, key)
    end
    status = raw_request(port, UPGRADE:format("/ws", GOOD_KEY .. GOOD_KEY .. "Sec-WebSocket-Version: 13\r\n"))
    assert.equals(400, status)
    r = aio.http.post("http://127.0.0.1:" .. port .. "/ws", { body = "x" })
    assert.equals(405, r.status)
    assert.is_false(ran)
    -- the client reports the refusal
    local err = raises("WebSocketError", aio.websocket.connect, base2 .. "/nowhere")
    assert.equals(404, err.status)
    s2:close()
  end)

  it("ping() returns the round trip in seconds, with and without data, also while another task receives", function()
    local ws <close> = aio.websocket.connect(base .. "/echo")
    local rtt = ws:ping()
    assert.equals("number", type(rtt))
    assert.is_true(rtt >= 0 and rtt < 5)
    assert.is_true(ws:ping("hello") >= 0)
    assert.is_true(ws:ping(("p"):rep(125)) >= 0)
    assert.is_true(ws:ping("") >= 0)
    -- a receiver waits meanwhile: the pong reaches the ping through it
    local got = aio.spawn(function() return ws:receive() end)
    aio.sleep(0.05)
    assert.is_true(ws:ping() >= 0)
    ws:send("after ping")
    assert.equals("after ping", got:wait())
    -- messages that arrive while only the ping reads are kept for receive(), in order
    ws:send("one")
    ws:send("two")
    aio.sleep(0.05)
    assert.is_true(ws:ping() >= 0)
    assert.equals("one", ws:receive())
    assert.equals("two", ws:receive())
    -- several pings at once
    local pings = {}
    for i = 1, 5 do pings[i] = aio.spawn(function() return ws:ping() end) end
    for i = 1, 5 do assert.is_true(pings[i]:wait() >= 0) end
  end)

  it("the server answers pings while its handler sends and never receives", function()
    local s2, base2 = ws_server("/", function(w)
      for i = 1, 50 do w:send("tick " .. i) aio.sleep(0.005) end
      aio.sleep(0.5)
    end)
    local ws <close> = aio.websocket.connect(base2 .. "/")
    assert.is_true(ws:ping() >= 0)
    local n = 0
    while n < 50 do
      local d = ws:receive()
      n = n + 1
      assert.equals("tick " .. n, d)
    end
    s2:close()
  end)

  it("close handshake from the client: code and reason seen on the server; receive after close is nil, code, reason", function()
    local seen = aio.Queue()
    local s2, base2 = ws_server("/", function(w)
      local d, code, reason = w:receive()
      seen:put({ d, code, reason, w.close_code, w.close_reason })
      seen:put({ w:receive() })
      local err = raises("WebSocketError", w.send, w, "late")
      seen:put(err.code)
    end)
    local ws = aio.websocket.connect(base2 .. "/")
    ws:close(4001, "client bye")
    assert.same({ nil, 4001, "client bye", 4001, "client bye" }, next_of(seen))
    assert.same({ nil, 4001, "client bye" }, next_of(seen))
    assert.equals(4001, next_of(seen))
    assert.equals(4001, ws.close_code)
    assert.equals("client bye", ws.close_reason)
    assert.same({ nil, 4001, "client bye" }, { ws:receive() })
    local err = raises("WebSocketError", ws.send, ws, "late")
    assert.equals(4001, err.code)
    raises("WebSocketError", ws.ping, ws)
    ws:close()                                 -- again: nothing
    ws:close(1000)
    -- default code 1000, no reason
    local ws2 = aio.websocket.connect(base2 .. "/")
    ws2:close()
    assert.same({ nil, 1000, "", 1000, "" }, next_of(seen))
    next_of(seen) next_of(seen)
    s2:close()
  end)

  it("close handshake from the server: the client's receive is nil, code, reason", function()
    local seen = aio.Queue()
    local s2, base2 = ws_server("/", function(w)
      w:send("last words")
      w:close(4002, "server bye ✓")
      seen:put({ w.close_code, w.close_reason })
    end)
    local ws <close> = aio.websocket.connect(base2 .. "/")
    assert.equals("last words", ws:receive())
    assert.same({ nil, 4002, "server bye ✓" }, { ws:receive() })
    assert.same({ nil, 4002, "server bye ✓" }, { ws:receive() })
    assert.equals(4002, ws.close_code)
    assert.same({ 4002, "server bye ✓" }, next_of(seen))
    raises("WebSocketError", ws.send, ws, "x")
    s2:close()
  end)

  it("a handler that returns closes with 1000; one that fails closes with 1011 (logged)", function()
    local s2, base2 = ws_server("/ok", function() end)
    local ws = aio.websocket.connect(base2 .. "/ok")
    assert.same({ nil, 1000, "" }, { ws:receive() })
    ws:close()
    -- a failing handler, in a child process (its log is on stderr)
    local dir = P.tmpdir("wsfail")
    local proc, port = P.luaio_server(dir, "fail", [[
      local aio = require "luaio"
      local app = aio.http.app()
      app:websocket("/", function(w) w:receive() error("handler boom") end)
      local server = app:listen("127.0.0.1", 0)
      print("PORT " .. server.port)
      io.stdout:flush()
      server:serve_forever()
    ]])
    ws = aio.websocket.connect("ws://127.0.0.1:" .. port .. "/")
    ws:send("go")
    local none, code = ws:receive()
    assert.is_nil(none)
    assert.equals(1011, code)
    proc:wait_for("handler boom", 5)
    proc:stop()
    P.rmtree(dir)
    s2:close()
  end)

  it("close() from another task while one receives: the receiver gets nil, code, reason", function()
    local ws = aio.websocket.connect(base .. "/echo")
    local r = aio.spawn(function() return { ws:receive() } end)
    aio.sleep(0.05)
    local t0 = aio.now()
    ws:close(4010, "from elsewhere")
    assert.is_true(aio.now() - t0 < 2)
    assert.same({ nil, 4010, "from elsewhere" }, r:wait())
    assert.equals(4010, ws.close_code)
  end)

  it("many tasks sending at once on one compressed connection: every message whole, each task's in order", function()
    local s2, base2 = ws_server("/", echo, { compress = true })
    local ws <close> = aio.websocket.connect(base2 .. "/", { compress = true })
    local got = {}
    local reader = aio.spawn(function()
      for _ = 1, 10 * 50 do
        local d = ws:receive()
        local t, i = d:match("^(%d+)/(%d+) ")
        t, i = tonumber(t), tonumber(i)
        assert(d == ("%d/%d "):format(t, i) .. ("payload "):rep(i), "damaged: " .. d:sub(1, 40))
        got[t] = got[t] or {}
        got[t][#got[t] + 1] = i
      end
    end)
    aio.task_group(function(tg)
      for t = 1, 10 do
        tg:spawn(function()
          for i = 1, 50 do
            ws:send(("%d/%d "):format(t, i) .. ("payload "):rep(i))
            if i % 7 == 0 then aio.sleep(0) end
          end
        end)
      end
    end)
    aio.timeout(20, reader.wait, reader)
    for t = 1, 10 do
      local want = {}
      for i = 1, 50 do want[i] = i end
      assert.same(want, got[t])
    end
    s2:close()
  end)

  it("compressed senders cancelled while they wait do not put the compression contexts out of step", function()
    local release, results = aio.Event(), aio.Queue()
    local s2, base2 = ws_server("/", function(w)
      release:wait()
      local n = 0
      for d, k in w:messages() do
        if k == "text" then
          n = n + 1
          if d == "end" then break end
          local i = tonumber(d:match("^m(%d+) "))
          assert(i and d == ("m%d "):format(i):rep(2000), "damaged message")
        end
      end
      results:put(n)
    end, { compress = true })
    local ws = aio.websocket.connect(base2 .. "/", { compress = true })
    -- fill the socket (incompressible data), then senders queue on the lock
    math.randomseed(11)
    local noise = {}
    for i = 1, 256 * 1024 do noise[i] = string.char(math.random(0, 255)) end
    noise = table.concat(noise)
    local filler = aio.spawn(function() while true do ws:send(noise, "binary") end end)
    aio.sleep(0.2)
    local waiting = {}
    for i = 1, 20 do waiting[i] = aio.spawn(function() ws:send(("m%d "):format(i):rep(2000)) end) end
    aio.sleep(0.05)
    for i = 1, 20, 2 do waiting[i]:cancel() end           -- half of them give up
    filler:cancel()
    release:set()
    for i = 2, 20, 2 do aio.timeout(20, waiting[i].wait, waiting[i]) end
    ws:send("end")
    assert.equals(11, next_of(results, 20))               -- the 10 not cancelled, and "end"
    ws:close()
    s2:close()
  end)

  it("middleware runs around a WebSocket route, and may refuse the upgrade", function()
    local app = aio.http.app()
    local seen = {}
    app:use(function(req, nxt)
      seen[#seen + 1] = req.path
      if req.headers["authorization"] ~= "Bearer ok" then return "no\n", 401 end
      return nxt(req)
    end)
    app:websocket("/ws", echo)
    local s2, base2 = serve(app)
    local err = raises("WebSocketError", aio.websocket.connect, base2 .. "/ws")
    assert.equals(401, err.status)
    local ws <close> = aio.websocket.connect(base2 .. "/ws", { headers = { Authorization = "Bearer ok" } })
    ws:send("through")
    assert.equals("through", ws:receive())
    assert.same({ "/ws", "/ws" }, seen)
    s2:close()
  end)

  it("opts.headers reach the server's req; a Host header of the caller's replaces the default", function()
    local seen = aio.Queue()
    local s2, base2 = ws_server("/h", function(w, req)
      seen:put({ req.headers["x-token"], req.headers["host"], req.path, req.query })
      w:receive()
    end)
    local ws = aio.websocket.connect(base2 .. "/h?room=1", { headers = { ["X-Token"] = "t1" } })
    local r = next_of(seen)
    assert.equals("t1", r[1])
    assert.equals(base2:match("//(.*)$"), r[2])
    assert.equals("/h", r[3])
    ws:close()
    ws = aio.websocket.connect(base2 .. "/h", { headers = { Host = "chat.example" } })
    assert.equals("chat.example", next_of(seen)[2])
    ws:close()
    s2:close()
  end)

  it("ws.close_code and close_reason are nil while open", function()
    local ws <close> = aio.websocket.connect(base .. "/echo")
    assert.is_nil(ws.close_code)
    assert.is_nil(ws.close_reason)
  end)
end)

--------------------------------------------------------------------------------
describe("waiting calls: cancellation, timeouts, bad input", function()
  local server, base, port, silent, silent_port

  setup(function()
    local app = aio.http.app()
    app:websocket("/echo", echo)
    app:websocket("/idle", function(w) aio.sleep(30) end)
    server, base, port = serve(app)
    -- accepts and reads, never answers the handshake
    silent = aio.start_server(function(s) s:read_all() end, "127.0.0.1", 0)
    silent_port = silent.port
  end)
  teardown(function()
    server:close()
    silent:close()
  end)

  it("connect: argument errors, bad URLs", function()
    local connect = aio.websocket.connect
    bad_arg("#1.*string expected, got nil", connect)
    bad_arg("#1.*string expected, got number", connect, 42)
    bad_arg("#2.*table expected, got string", connect, base, "x")
    bad_arg("opts.timeout", connect, base, { timeout = -1 })
    bad_arg("opts.timeout", connect, base, { timeout = "1" })
    bad_arg("opts.max_message", connect, base, { max_message = 0 })
    bad_arg("opts.max_message", connect, base, { max_message = 1.5 })
    bad_arg("opts.compress", connect, base, { compress = "yes" })
    bad_arg("opts.protocols", connect, base, { protocols = "chat" })
    bad_arg("opts.protocols%[1%]", connect, base, { protocols = { "a b" } })
    bad_arg("opts.protocols%[2%]", connect, base, { protocols = { "ok", 3 } })
    bad_arg("opts.headers", connect, base, { headers = { ["Bad Name"] = "x" } })
    bad_arg("opts.headers", connect, base, { headers = { X = "a\r\nb" } })
    bad_arg("opts.tls", connect, base, { tls = 1 })
    raises("ValueError", connect, "http://127.0.0.1:" .. port .. "/echo")
    raises("ValueError", connect, "127.0.0.1/echo")
    raises("ValueError", connect, "ws:///nohost")
  end)

  it("connect: refused, timed out (opts.timeout and aio.timeout), cancelled; nothing left behind", function()
    local err = raises("ConnectionError", aio.websocket.connect, "ws://127.0.0.1:" .. P.free_port() .. "/")
    assert.is_truthy(err.code)
    local t0 = aio.now()
    raises("TimeoutError", aio.websocket.connect, "ws://127.0.0.1:" .. silent_port .. "/", { timeout = 0.2 })
    assert.is_true(aio.now() - t0 < 3)
    raises("TimeoutError", aio.timeout, 0.2, aio.websocket.connect, "ws://127.0.0.1:" .. silent_port .. "/")
    local t = aio.spawn(aio.websocket.connect, "ws://127.0.0.1:" .. silent_port .. "/")
    aio.sleep(0.1)
    t:cancel()
    raises("CancelledError", t.wait, t)
    assert.is_true(t:cancelled())
    -- a timeout larger than needed does not get in the way
    local ws = aio.websocket.connect(base .. "/echo", { timeout = 10 })
    ws:send("fine")
    assert.equals("fine", ws:receive())
    ws:close()
  end)

  it("receive: timed out and cancelled, then still usable; a second receiving task is refused", function()
    local ws <close> = aio.websocket.connect(base .. "/echo")
    raises("TimeoutError", aio.timeout, 0.1, ws.receive, ws)
    local t = aio.spawn(ws.receive, ws)
    aio.sleep(0.05)
    -- another task receiving meanwhile
    local err = raises("RuntimeError", ws.receive, ws)
    assert.matches("already receiving", tostring(err))
    t:cancel()
    raises("CancelledError", t.wait, t)
    ws:send("still here")
    assert.same({ "still here", "text" }, { ws:receive() })
    -- a deadline that passes while a long message arrives in pieces loses nothing
    ws:send(bytes(4 * MiB), "binary")
    local d = ws:receive()
    assert.equals(4 * MiB, #d)
  end)

  it("receive, send, ping, close check self and arguments", function()
    local ws <close> = aio.websocket.connect(base .. "/echo")
    bad_arg("WebSocket expected", ws.receive, nil)
    bad_arg("WebSocket expected", ws.receive, {})
    bad_arg("WebSocket expected", ws.send, 1, "x")
    bad_arg("WebSocket expected", ws.ping, "x")
    bad_arg("WebSocket expected", ws.close, nil)
    bad_arg("WebSocket expected", ws.messages, nil)
    bad_arg("string expected, got table", ws.send, ws, {})
    bad_arg("string expected, got nil", ws.send, ws)
    bad_arg("'text' or 'binary' expected", ws.send, ws, "x", "blob")
    bad_arg("UTF%-8", ws.send, ws, "\xff\xfe")
    bad_arg("UTF%-8", ws.send, ws, "caf\xc3")           -- cut inside a character
    ws:send("\xff\xfe", "binary")
    assert.same({ "\xff\xfe", "binary" }, { ws:receive() })
    bad_arg("string expected", ws.ping, ws, 5)
    bad_arg("125 bytes", ws.ping, ws, ("p"):rep(126))
    for _, code in ipairs { 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 1000.5, "1000" } do
      bad_arg("close code", ws.close, ws, code)
    end
    bad_arg("string expected", ws.close, ws, 1000, 5)
    bad_arg("123 bytes", ws.close, ws, 1000, ("r"):rep(124))
    bad_arg("UTF%-8", ws.close, ws, 1000, "\xff")
    -- nothing above touched the connection
    ws:send("ok")
    assert.equals("ok", ws:receive())
    ws:close(4999, ("r"):rep(123))
    assert.equals(4999, ws.close_code)
    assert.equals(("r"):rep(123), ws.close_reason)
  end)

  -- (stock lua5.4 cannot load a module built with ASan)
  local stock = os.getenv("LUAIO_SANITIZED") and pending or it
  stock("connect, receive, send, ping, close outside a task raise at once", function()
    if P.missing("lua5.4") then pending("lua5.4 is not installed") return end
    assert.matches("aio.websocket.connect must be called inside a task",
      stock_lua("local aio = require 'luaio' print(pcall(aio.websocket.connect, 'ws://127.0.0.1:1/'))"), nil, true)
    local out = stock_lua(([[
      local aio = require "luaio"
      local ws = aio.run(function() return aio.websocket.connect("%s/echo") end)
      for _, m in ipairs { "receive", "send", "ping", "close" } do
        local ok, err = pcall(ws[m], ws, m == "send" and "x" or nil)
        print(m, ok, err)
      end
    ]]):format(base))
    for _, m in ipairs { "receive", "send", "ping", "close" } do
      assert.matches("ws:" .. m .. " must be called inside a task", out, nil, true)
      assert.matches(m .. "\tfalse\t", out, nil, true)
    end
  end)

  it("send: suspends while the peer does not read; timed out and cancelled sends leave no half frame", function()
    local release, results = aio.Event(), aio.Queue()
    local s2, base2 = ws_server("/", function(w)
      release:wait()
      local n, total = 0, 0
      while true do
        local d, code = w:receive()
        if not d then break end
        -- every message whole: "<n>:" then its filler
        local k, rest = d:match("^(%d+):(.*)$")
        assert(k and rest == ("z"):rep(#rest), "a damaged message")
        n, total = n + 1, total + #d
      end
      results:put({ n, total })
    end)
    local ws = aio.websocket.connect(base2 .. "/")
    local piece = ("z"):rep(64 * KiB)
    local sent = 0
    local function sender()
      while true do
        sent = sent + 1
        ws:send(sent .. ":" .. piece)
      end
    end
    raises("TimeoutError", aio.timeout, 0.5, sender)
    local after_timeout = sent
    assert.is_true(after_timeout * 64 * KiB < 64 * MiB, "send never suspended")
    local t = aio.spawn(sender)
    aio.sleep(0.3)
    assert.is_false(t:done())
    t:cancel()
    raises("CancelledError", t.wait, t)
    release:set()
    ws:send("0:")
    ws:close()
    local r = next_of(results, 20)
    -- every message sent (also those whose send was interrupted while it
    -- waited: they were queued whole) arrived whole
    assert.equals(sent + 1, r[1])
    s2:close()
  end)

  it("send: memory stays bounded while a peer does not read", function()
    if not MEASURE_RSS then pending("RSS is meaningless under ASan/valgrind") end
    local dir = P.tmpdir("wsbp")
    local proc, port2 = P.luaio_server(dir, "bp", [[
      local aio = require "luaio"
      local app = aio.http.app()
      local stalled = 0
      app:websocket("/", function(w)
        local piece = ("y"):rep(1024 * 1024)
        local ok = pcall(aio.timeout, 2, function()
          while true do w:send(piece, "binary") stalled = stalled + 1 end
        end)
        local f = io.open("/proc/self/status") local st = f:read("a") f:close()
        print("SENT " .. stalled .. " RSS " .. st:match("VmRSS:%s+(%d+)"))
        io.stdout:flush()
      end)
      local server = app:listen("127.0.0.1", 0)
      print("PORT " .. server.port)
      io.stdout:flush()
      server:serve_forever()
    ]])
    local c <close> = raw_connect(port2, "/")
    local sent, rss = proc:wait_for("SENT (%d+) RSS (%d+)", 15)
    sent, rss = tonumber(sent), tonumber(rss)
    -- the kernel's buffers hold a few MiB; the rest waits in the sender
    assert.is_true(sent < 48, "sent " .. sent .. " MiB to a peer that does not read")
    assert.is_true(rss < 200 * 1024, "RSS " .. rss .. " KiB")
    proc:stop()
    P.rmtree(dir)
  end)

  it("ping: timed out and cancelled against a peer that never answers; the connection goes on", function()
    local frames = aio.Queue()
    local s2, base2 = ws_server("/", function(w)
      -- reads nothing for a while: no pong
      aio.sleep(0.6)
      frames:put(w:receive())
      w:send("bye")
      aio.sleep(0.2)
    end)
    local ws <close> = aio.websocket.connect(base2 .. "/")
    raises("TimeoutError", aio.timeout, 0.1, ws.ping, ws)
    local t = aio.spawn(ws.ping, ws, "x")
    aio.sleep(0.05)
    t:cancel()
    raises("CancelledError", t.wait, t)
    ws:send("hello")
    assert.equals("hello", next_of(frames))
    assert.equals("bye", ws:receive())
  end)

  it("close: timed out and cancelled against a peer that never answers it; the connection is closed after", function()
    local srv = aio.start_server(function(s)
      local head = s:read_until("\r\n\r\n")
      local key = head:match("[Ss]ec%-[Ww]eb[Ss]ocket%-[Kk]ey: ([^\r]+)")
      s:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        "Sec-WebSocket-Accept: ", core.ws_accept(key), "\r\n\r\n")
      aio.sleep(30)                          -- reads nothing, answers nothing
    end, "127.0.0.1", 0)
    local url = "ws://127.0.0.1:" .. srv.port .. "/"
    local ws = aio.websocket.connect(url)
    local t0 = aio.now()
    raises("TimeoutError", aio.timeout, 0.2, ws.close, ws)
    assert.is_true(aio.now() - t0 < 2)
    raises("WebSocketError", ws.send, ws, "x")
    assert.is_nil((ws:receive()))
    ws = aio.websocket.connect(url)
    local t = aio.spawn(ws.close, ws, 4000)
    aio.sleep(0.1)
    t:cancel()
    raises("CancelledError", t.wait, t)
    raises("WebSocketError", ws.send, ws, "x")
    -- a peer that ends the connection instead of answering: close returns, 1006
    local srv2 = aio.start_server(function(s)
      local head = s:read_until("\r\n\r\n")
      local key = head:match("[Ss]ec%-[Ww]eb[Ss]ocket%-[Kk]ey: ([^\r]+)")
      s:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        "Sec-WebSocket-Accept: ", core.ws_accept(key), "\r\n\r\n")
      s:read(100)
    end, "127.0.0.1", 0)
    ws = aio.websocket.connect("ws://127.0.0.1:" .. srv2.port .. "/")
    t0 = aio.now()
    ws:close()
    assert.is_true(aio.now() - t0 < 2)
    assert.equals(1006, ws.close_code)
    srv:close()
    srv2:close()
  end)

  it("the peer going away: receive is nil, 1006; send raises WebSocketError", function()
    local srv = aio.start_server(function(s)
      local head = s:read_until("\r\n\r\n")
      local key = head:match("[Ss]ec%-[Ww]eb[Ss]ocket%-[Kk]ey: ([^\r]+)")
      s:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        "Sec-WebSocket-Accept: ", core.ws_accept(key), "\r\n\r\n", frame(1, "partial", { masked = false }):sub(1, 4))
    end, "127.0.0.1", 0)
    local ws = aio.websocket.connect("ws://127.0.0.1:" .. srv.port .. "/")
    local none, code = ws:receive()
    assert.is_nil(none)
    assert.equals(1006, code)
    local err = raises("WebSocketError", ws.send, ws, "x")
    assert.equals(1006, err.code)
    srv:close()
  end)
end)

--------------------------------------------------------------------------------
describe("keep-alive pings (opts.ping_interval)", function()
  it("a peer that never answers pings is closed with 1011; one that answers stays", function()
    local seen = aio.Queue()
    local s2, _, port = ws_server("/", function(w)
      local d, code, reason = w:receive()
      seen:put({ d, code, reason, w.close_code })
    end, { ping_interval = 0.2 })
    local c <close> = raw_connect(port, "/")
    -- the server pings; this peer never answers
    local fin, op = aio.timeout(2, read_frame, c)
    assert.is_true(fin)
    assert.equals(9, op)
    local code, reason = expect_close(c, 3)
    assert.equals(1011, code)
    assert.is_truthy(reason)
    local r = next_of(seen)
    assert.is_nil(r[1])
    assert.equals(1011, r[2])
    assert.equals(1011, r[4])
    -- the luaio client answers pings (while it receives): still open after several intervals
    local ws <close> = aio.websocket.connect("ws://127.0.0.1:" .. port .. "/")
    raises("TimeoutError", aio.timeout, 1, ws.receive, ws)
    ws:send("alive")
    assert.same({ "alive", "text" }, { table.unpack(next_of(seen), 1, 2) })
    s2:close()
  end)

  it("pings go out while the handler only sends; pongs come back through its pinging reader", function()
    local s2, base2 = ws_server("/", function(w)
      for i = 1, 20 do w:send("n" .. i) aio.sleep(0.05) end
    end, { ping_interval = 0.1 })
    local ws <close> = aio.websocket.connect(base2 .. "/")
    local got = {}
    for d in ws:messages() do got[#got + 1] = d end
    assert.equals(20, #got)
    assert.equals(1000, ws.close_code)
    s2:close()
  end)
end)

--------------------------------------------------------------------------------
describe("permessage-deflate (compress = true)", function()
  local server, base, port

  setup(function()
    local app = aio.http.app()
    app:websocket("/echo", echo, { compress = true })
    app:websocket("/small", echo, { compress = true, max_message = MiB })
    app:websocket("/plain", echo)
    server, base, port = serve(app)
  end)
  teardown(function() server:close() end)

  it("luaio both sides: round trips of every size and kind, empty messages too", function()
    local ws <close> = aio.websocket.connect(base .. "/echo", { compress = true })
    for _, n in ipairs { 0, 1, 125, 126, 65536, MiB } do
      local t = text(n)
      ws:send(t)
      assert.same({ t, "text" }, { ws:receive() })
      local b = bytes(n)
      ws:send(b, "binary")
      local d, k = ws:receive()
      assert.is_true(d == b)
      assert.equals("binary", k)
    end
    -- random (incompressible) bytes
    math.randomseed(5)
    local r = {}
    for i = 1, 100000 do r[i] = string.char(math.random(0, 255)) end
    r = table.concat(r)
    ws:send(r, "binary")
    assert.is_true(ws:receive() == r)
  end)

  it("messages are compressed on the wire, with context takeover across messages", function()
    local c <close>, head = raw_connect(port, "/echo",
      "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n")
    assert.matches("\r\n[Ss]ec%-[Ww]eb[Ss]ocket%-[Ee]xtensions: permessage%-deflate", head)
    -- our messages: raw deflate, sync flushed, tail cut, context kept
    local d = core.deflater("raw", 6, 15)
    local function compressed(msg)
      local out = d:write(msg, "sync")
      assert.equals("\0\0\255\255", out:sub(-4))
      return out:sub(1, -5)
    end
    local inf = core.inflater("raw", nil, 15)
    local msg = text(4000)
    local sizes = {}
    for i = 1, 2 do
      c:write(frame(1, compressed(msg), { rsv1 = true }))
      local fin, op, payload, rsv1 = read_frame(c)
      assert.is_true(fin)
      assert.equals(1, op)
      assert.is_true(rsv1, "the server's message is not compressed")
      sizes[i] = #payload
      assert.equals(msg, inf:write(payload .. "\0\0\255\255"))
    end
    assert.is_true(sizes[1] < #msg / 2, "first message " .. sizes[1] .. " bytes")
    -- the second refers back to the first (context takeover)
    assert.is_true(sizes[2] < 40, "second message " .. sizes[2] .. " bytes")
    -- an uncompressed message (RSV1 clear) is fine too
    c:write(frame(1, "plain"))
    local _, _, payload, rsv1 = read_frame(c)
    assert.is_true(rsv1)
    assert.equals("plain", inf:write(payload .. "\0\0\255\255"))
    c:write(frame(8, spack(">I2", 1000)))
    assert.equals(1000, (expect_close(c)))
  end)

  it("no_context_takeover offers are honoured; server_max_window_bits=8 is declined", function()
    local c <close>, head = raw_connect(port, "/echo",
      "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n")
    assert.matches("server_no_context_takeover", head)
    assert.matches("client_no_context_takeover", head)
    local msg = text(4000)
    local sizes = {}
    for i = 1, 2 do
      local d <close> = core.deflater("raw", 6, 15)
      c:write(frame(1, d:write(msg, "sync"):sub(1, -5), { rsv1 = true }))
      local _, _, payload, rsv1 = read_frame(c)
      assert.is_true(rsv1)
      local inf <close> = core.inflater("raw", nil, 15)       -- a fresh context each time
      assert.equals(msg, inf:write(payload .. "\0\0\255\255"))
      sizes[i] = #payload
    end
    assert.equals(sizes[1], sizes[2])
    local c2 <close>, head2 = raw_connect(port, "/echo",
      "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8, permessage-deflate\r\n")
    assert.matches("permessage%-deflate", head2)
    assert.is_nil(head2:match("server_max_window_bits=8"))
    local c3 <close>, head3 = raw_connect(port, "/echo",
      "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8\r\n")
    assert.is_nil(head3:lower():match("sec%-websocket%-extensions"))
  end)

  it("one side only: no extension agreed, messages go uncompressed", function()
    local ws <close> = aio.websocket.connect(base .. "/plain", { compress = true })
    ws:send("hello")
    assert.equals("hello", ws:receive())
    local ws2 <close> = aio.websocket.connect(base .. "/echo")
    ws2:send(text(10000))
    assert.equals(text(10000), ws2:receive())
    local c <close>, head = raw_connect(port, "/plain", "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    assert.is_nil(head:lower():match("sec%-websocket%-extensions"))
  end)

  it("a message that ends its deflate stream (BFINAL) is read, and so is the next one", function()
    local c <close> = raw_connect(port, "/echo", "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    local inf <close> = core.inflater("raw", nil, 15)
    for i = 1, 3 do
      local d <close> = core.deflater("raw", 6, 15)
      local msg = ("final block %d "):format(i):rep(50)
      c:write(frame(1, d:write(msg, "finish"), { rsv1 = true }))
      local _, op, payload, rsv1 = read_frame(c)
      assert.equals(1, op)
      assert.is_true(rsv1)
      assert.equals(msg, inf:write(payload .. "\0\0\255\255"))
    end
    c:write(frame(8, spack(">I2", 1000)))
    assert.equals(1000, (expect_close(c)))
  end)

  it("a deflate bomb (a small message inflating past max_message) is cut with 1009", function()
    local seen = aio.Queue()
    local s2, _, port2 = ws_server("/", function(w)
      local ok, err = pcall(w.receive, w)
      seen:put({ ok, err })
    end, { compress = true, max_message = MiB })
    local c <close> = raw_connect(port2, "/", "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    local d <close> = core.deflater("raw", 9, 15)
    local bomb = d:write(("\0"):rep(64 * MiB), "sync"):sub(1, -5)
    assert.is_true(#bomb < 100 * KiB)
    c:write(frame(2, bomb, { rsv1 = true }))
    assert.equals(1009, (expect_close(c)))
    local r = next_of(seen)
    assert.is_false(r[1])
    assert.equals(1009, r[2].code)
    -- at the limit exactly it is a message
    local c2 <close> = raw_connect(port2, "/", "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    local d2 <close> = core.deflater("raw", 9, 15)
    c2:write(frame(2, d2:write(("\0"):rep(MiB), "sync"):sub(1, -5), { rsv1 = true }))
    r = next_of(seen)
    assert.is_true(r[1])
    s2:close()
  end)

  it("a deflate bomb against the default 16 MiB limit, and the luaio client's limit", function()
    local seen = aio.Queue()
    local s2, _, port2 = ws_server("/", function(w)
      local ok, err = pcall(w.receive, w)
      seen:put({ ok, err })
    end, { compress = true })
    local c <close> = raw_connect(port2, "/", "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    local d <close> = core.deflater("raw", 9, 15)
    c:write(frame(2, d:write(("\0"):rep(16 * MiB + 1), "sync"):sub(1, -5), { rsv1 = true }))
    assert.equals(1009, (expect_close(c)))
    assert.equals(1009, next_of(seen)[2].code)
    -- the client side: a server sending a message that inflates past the client's max_message
    local s3, base3 = ws_server("/", function(w)
      w:send(("\0"):rep(2 * MiB), "binary")
      w:receive()
    end, { compress = true })
    local ws <close> = aio.websocket.connect(base3 .. "/", { compress = true, max_message = MiB })
    local err = raises("WebSocketError", ws.receive, ws)
    assert.equals(1009, err.code)
    s2:close()
    s3:close()
  end)

  it("corrupt compressed data and RSV1 on a continuation are refused", function()
    local c <close> = raw_connect(port, "/echo", "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    c:write(frame(2, "\255\255\255\255garbage", { rsv1 = true }))
    local code = expect_close(c)
    assert.is_truthy(code == 1007 or code == 1002, tostring(code))
    local c2 <close> = raw_connect(port, "/echo", "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    c2:write(frame(2, "ab", { fin = false }))
    c2:write(frame(0, "cd", { rsv1 = true }))
    assert.equals(1002, (expect_close(c2)))
  end)
end)

--------------------------------------------------------------------------------
describe("many connections", function()
  it("1,000 concurrent connections, 20 messages each, nothing lost", function()
    local N, M = 1000, 20
    local server, base = ws_server("/", echo, nil, { backlog = 1024 })
    local failures = {}
    local total = 0
    aio.task_group(function(tg)
      for i = 1, N do
        tg:spawn(function()
          local ws <close> = aio.websocket.connect(base .. "/", { timeout = 30 })
          for j = 1, M do
            local msg = i .. ":" .. j
            ws:send(msg, j % 2 == 0 and "binary" or "text")
            local d, k = ws:receive()
            if d ~= msg or k ~= (j % 2 == 0 and "binary" or "text") then
              failures[#failures + 1] = ("%s -> %s %s"):format(msg, tostring(d), tostring(k))
            else
              total = total + 1
            end
          end
        end)
      end
    end)
    assert.same({}, failures)
    assert.equals(N * M, total)
    server:close()
  end)
end)

--------------------------------------------------------------------------------
describe("protocol violations from a raw client", function()
  local server, port, seen

  -- the handler reports what its receive saw: {"message", data, kind} /
  -- {"closed", code, reason} / {"error", code}
  local function reporter(w)
    while true do
      local ok, d, k, r = pcall(w.receive, w)
      if not ok then
        seen:put({ "error", aio.is_error(d, "WebSocketError") and d.code or tostring(d), w.close_code })
        return
      end
      if d == nil then
        seen:put({ "closed", k, r })
        return
      end
      seen:put({ "message", d, k })
    end
  end

  setup(function()
    seen = aio.Queue()
    local app = aio.http.app()
    app:websocket("/", reporter)
    app:websocket("/small", reporter, { max_message = 1000 })
    local _
    server, _, port = serve(app)
  end)
  teardown(function() server:close() end)

  -- send frames; -> the server's close code and what its handler saw
  local function violation(frames, path)
    local c <close> = raw_connect(port, path or "/")
    for _, f in ipairs(frames) do c:write(f) end
    local code, reason = expect_close(c)
    local events = {}
    while true do
      local e = next_of(seen)
      events[#events + 1] = e
      if e[1] ~= "message" then break end
    end
    return code, events, reason
  end

  local function refused(expected, frames, path)
    local code, events, reason = violation(frames, path)
    assert.equals(expected, code, reason)
    local last = events[#events]
    assert.same({ "error", expected, expected }, last)
    return events
  end

  it("valid traffic first: fragments reassembled, control frames between fragments", function()
    local c <close> = raw_connect(port, "/")
    c:write(frame(1, "hel", { fin = false }))
    c:write(frame(9, "ping inside"))
    c:write(frame(10, "unsolicited pong"))
    c:write(frame(0, "lo ", { fin = false }))
    c:write(frame(0, "wörld"))
    local fin, op, payload = read_frame(c)
    assert.same({ true, 10, "ping inside" }, { fin, op, payload })
    assert.same({ "message", "hello wörld", "text" }, next_of(seen))
    -- binary in many fragments, an empty one among them
    c:write(frame(2, "\0\1", { fin = false }))
    c:write(frame(0, "", { fin = false }))
    c:write(frame(0, "\2"))
    assert.same({ "message", "\0\1\2", "binary" }, next_of(seen))
    -- an empty text message, unmasked-by-zero-key, and a 64-bit length header with a small payload
    c:write(frame(1, ""))
    assert.same({ "message", "", "text" }, next_of(seen))
    c:write(spack(">BBI8", 0x82, 0x80 | 127, 3) .. "\0\0\0\0" .. "abc")
    assert.same({ "message", "abc", "binary" }, next_of(seen))
    -- a frame byte by byte
    local f = frame(1, "slowly")
    for i = 1, #f do c:write(f:sub(i, i)) aio.sleep(0.001) end
    assert.same({ "message", "slowly", "text" }, next_of(seen))
    -- a close in the middle of a fragmented message is answered
    c:write(frame(1, "half", { fin = false }))
    c:write(frame(8, spack(">I2", 4321) .. "mid"))
    local code, reason = expect_close(c)
    assert.equals(4321, code)
    assert.equals("mid", reason)
    assert.same({ "closed", 4321, "mid" }, next_of(seen))
  end)

  it("an unmasked client frame is 1002", function()
    refused(1002, { frame(1, "hello", { masked = false }) })
  end)

  it("invalid UTF-8 text is 1007, also split across fragments, and found before the message ends", function()
    refused(1007, { frame(1, "bad \xff text") })
    refused(1007, { frame(1, "\xed\xa0\x80") })                      -- a surrogate
    refused(1007, { frame(1, "\xc0\xaf") })                          -- overlong
    refused(1007, { frame(1, "\xf4\x90\x80\x80") })                  -- past U+10FFFF
    refused(1007, { frame(1, "caf\xc3") })                           -- cut at the end
    -- split across fragments: valid when joined
    local c <close> = raw_connect(port, "/")
    c:write(frame(1, "caf\xc3", { fin = false }))
    c:write(frame(0, "\xa9!"))
    assert.same({ "message", "café!", "text" }, next_of(seen))
    c:write(frame(8, spack(">I2", 1000)))
    expect_close(c)
    next_of(seen)
    -- split and invalid: "\xe2\x82" then "x"
    refused(1007, { frame(1, "\xe2\x82", { fin = false }), frame(0, "x") })
    -- found early: the bad first fragment fails before the message would end
    local c2 <close> = raw_connect(port, "/")
    c2:write(frame(1, "ok \xff", { fin = false }))
    assert.equals(1007, (expect_close(c2)))
    assert.same({ "error", 1007, 1007 }, next_of(seen))
  end)

  it("a frame bigger than max_message is 1009 (decided from its header), also a message grown past it in fragments", function()
    refused(1009, { frame(2, ("x"):rep(1001)) }, "/small")
    -- the header alone is enough: nothing of the payload is sent
    refused(1009, { spack(">BBI8", 0x82, 0x80 | 127, 1 << 40) .. "\0\0\0\0" }, "/small")
    refused(1009, { frame(2, ("x"):rep(600), { fin = false }), frame(0, ("x"):rep(401)) }, "/small")
    -- exactly at the limit in fragments: a message
    local c <close> = raw_connect(port, "/small")
    c:write(frame(2, ("x"):rep(600), { fin = false }))
    c:write(frame(0, ("x"):rep(400)))
    local e = next_of(seen)
    assert.equals("message", e[1])
    assert.equals(1000, #e[2])
    c:write(frame(8, spack(">I2", 1000)))
    expect_close(c)
    next_of(seen)
    -- the default limit, 16 MiB, from a header
    refused(1009, { spack(">BBI8", 0x82, 0x80 | 127, 16 * MiB + 1) .. "\0\0\0\0" })
  end)

  it("reserved opcodes are 1002", function()
    for _, op in ipairs { 3, 4, 5, 6, 7, 11, 12, 13, 14, 15 } do
      refused(1002, { frame(op, "x") })
    end
  end)

  it("control frames: fragmented, or longer than 125 bytes, are 1002", function()
    refused(1002, { frame(9, "x", { fin = false }) })
    refused(1002, { frame(8, spack(">I2", 1000), { fin = false }) })
    refused(1002, { frame(9, ("p"):rep(126)) })
    refused(1002, { frame(10, ("p"):rep(126)) })
    refused(1002, { frame(8, spack(">I2", 1000) .. ("r"):rep(124)) })
    -- 125 bytes is fine
    local c <close> = raw_connect(port, "/")
    c:write(frame(9, ("p"):rep(125)))
    local _, op, payload = read_frame(c)
    assert.equals(10, op)
    assert.equals(("p"):rep(125), payload)
    c:write(frame(8, spack(">I2", 1000)))
    expect_close(c)
    next_of(seen)
  end)

  it("a new data frame inside a fragmented message, and a continuation without a start, are 1002", function()
    refused(1002, { frame(1, "a", { fin = false }), frame(1, "b") })
    refused(1002, { frame(2, "a", { fin = false }), frame(2, "b", { fin = false }) })
    refused(1002, { frame(0, "orphan") })
    refused(1002, { frame(0, "orphan", { fin = false }) })
  end)

  it("invalid close codes are 1002; a 1-byte close payload is 1002; a reason that is not UTF-8 is 1007", function()
    for _, code in ipairs { 0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535 } do
      refused(1002, { frame(8, spack(">I2", code)) })
    end
    refused(1002, { frame(8, "\3") })
    refused(1007, { frame(8, spack(">I2", 1000) .. "\xff\xfe") })
    -- valid ones: echoed, seen by the handler
    for _, code in ipairs { 1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999 } do
      local c, events, reason = violation({ frame(8, spack(">I2", code) .. "why ✓") })
      assert.equals(code, c)
      assert.equals("why ✓", reason)
      assert.same({ "closed", code, "why ✓" }, events[#events])
    end
    -- an empty close frame: 1005 seen, an empty close frame back
    local c <close> = raw_connect(port, "/")
    c:write(frame(8, ""))
    assert.equals(1005, (expect_close(c)))
    assert.same({ "closed", 1005, "" }, next_of(seen))
  end)

  it("RSV1 without negotiated compression is 1002; RSV2/RSV3 are 1002", function()
    refused(1002, { frame(1, "x", { rsv1 = true }) })
    refused(1002, { spack("BB", 0x80 | 0x20 | 1, 0x80 | 1) .. "\0\0\0\0x" })
    refused(1002, { spack("BB", 0x80 | 0x10 | 1, 0x80 | 1) .. "\0\0\0\0x" })
    refused(1002, { spack("BB", 0x80 | 0x40 | 9, 0x80 | 0) .. "\0\0\0\0" })   -- RSV1 on a ping
  end)

  it("a 64-bit length with its top bit set is 1002", function()
    refused(1002, { spack(">BBI8", 0x82, 0x80 | 127, 1 << 63) .. "\0\0\0\0" })
  end)

  it("pings and pongs inside a fragmented message; after a close nothing more is read", function()
    local c <close> = raw_connect(port, "/")
    c:write(frame(2, "a", { fin = false }))
    for i = 1, 3 do
      c:write(frame(9, "p" .. i))
      c:write(frame(10, "unasked"))
      c:write(frame(0, tostring(i), { fin = false }))
    end
    c:write(frame(0, "z"))
    for i = 1, 3 do
      local _, op, payload = read_frame(c)
      assert.same({ 10, "p" .. i }, { op, payload })
    end
    assert.same({ "message", "a123z", "binary" }, next_of(seen))
    c:write(frame(8, spack(">I2", 1000)) .. frame(1, "after close"))
    assert.equals(1000, (expect_close(c)))
    assert.same({ "closed", 1000, "" }, next_of(seen))
  end)

  it("a client that hangs up without a close frame: the handler sees nil, 1006", function()
    local c = raw_connect(port, "/")
    c:write(frame(1, "one"))
    assert.same({ "message", "one", "text" }, next_of(seen))
    c:write(frame(1, "two"):sub(1, 5))      -- cut inside a frame
    c:close()
    local e = next_of(seen)
    assert.equals("closed", e[1])
    assert.equals(1006, e[2])
  end)
end)

--------------------------------------------------------------------------------
describe("luaio client against a raw server", function()
  -- a server that answers the handshake, then writes `frames` and records what it reads
  local function raw_server(frames)
    local got = aio.Queue()
    local srv = aio.start_server(function(s)
      local head = s:read_until("\r\n\r\n")
      local key = head:match("[Ss]ec%-[Ww]eb[Ss]ocket%-[Kk]ey: ([^\r]+)")
      s:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        "Sec-WebSocket-Accept: ", core.ws_accept(key), "\r\n\r\n", table.concat(frames))
      -- what the client sends: masked frames
      while true do
        local ok, h = pcall(s.read_exactly, s, 2)
        if not ok then break end
        local b0, b1 = h:byte(1, 2)
        local n = b1 & 0x7F
        if n == 126 then n = sunpack(">I2", s:read_exactly(2)) elseif n == 127 then n = sunpack(">I8", s:read_exactly(8)) end
        local masked = b1 & 0x80 ~= 0
        local key = masked and { s:read_exactly(4):byte(1, 4) } or nil
        local p = n > 0 and s:read_exactly(n) or ""
        if key then
          local out = {}
          for i = 1, #p do out[i] = string.char(p:byte(i) ~ key[(i - 1) % 4 + 1]) end
          p = table.concat(out)
        end
        got:put({ op = b0 & 0x0F, payload = p, masked = masked })
        if b0 & 0x0F == 8 then break end
      end
    end, "127.0.0.1", 0)
    return srv, "ws://127.0.0.1:" .. srv.port .. "/", got
  end

  it("the client masks its frames, reassembles fragments and answers pings", function()
    local srv, url, got = raw_server {
      frame(1, "frag", { fin = false, masked = false }),
      frame(9, "are you there", { masked = false }),
      frame(0, "mented", { masked = false }),
    }
    local ws <close> = aio.websocket.connect(url)
    assert.same({ "fragmented", "text" }, { ws:receive() })
    local pong = next_of(got)
    assert.same({ op = 10, payload = "are you there", masked = true }, pong)
    ws:send("hi")
    assert.same({ op = 1, payload = "hi", masked = true }, next_of(got))
    ws:send(bytes(70000), "binary")
    local big = next_of(got)
    assert.equals(2, big.op)
    assert.is_true(big.payload == bytes(70000))
    srv:close()
  end)

  it("a masked frame from a server is 1002; the client's receive raises and its close frame says so", function()
    local srv, url, got = raw_server { frame(1, "masked!", { masked = true }) }
    local ws = aio.websocket.connect(url)
    local err = raises("WebSocketError", ws.receive, ws)
    assert.equals(1002, err.code)
    assert.equals(1002, ws.close_code)
    local f = next_of(got)
    assert.equals(8, f.op)
    assert.equals(1002, sunpack(">I2", f.payload))
    srv:close()
  end)

  it("invalid UTF-8 from a server is 1007 on the client", function()
    local srv, url, got = raw_server { frame(1, "\xff", { masked = false }) }
    local ws = aio.websocket.connect(url)
    assert.equals(1007, raises("WebSocketError", ws.receive, ws).code)
    assert.equals(1007, sunpack(">I2", next_of(got).payload))
    srv:close()
  end)
end)

--------------------------------------------------------------------------------
local missing = P.missing(P.PYTHON)
  or (aio.exec({ P.PYTHON, "-c", "import websockets" }).status ~= 0 and "python3-websockets is not installed")

-- a websockets server: prints "PORT a" (compression) and "PORT b" (compression=None)
local PY_SERVER = [=[
import asyncio, json, sys
import websockets

last_close = {}

async def handler(ws, path=None):
    path = path if path is not None else ws.path
    try:
        async for msg in ws:
            if msg == "frag":
                await ws.send(["frag", "men", "ted ✓"])
            elif msg == "frag-bin":
                await ws.send([b"\x00\x01", b"", b"\x02" * 70000])
            elif msg == "ping-me":
                waiter = await ws.ping(b"from python")
                await asyncio.wait_for(waiter, 5)
                await ws.send("pong-ok")
            elif msg == "close-me":
                await ws.close(4003, "py bye ✓")
            elif msg == "last-close":
                await ws.send(json.dumps(last_close))
            elif msg == "protocol":
                await ws.send(str(ws.subprotocol))
            elif msg == "extensions":
                await ws.send(",".join(type(e).__name__ for e in ws.extensions))
            else:
                await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    last_close.update({"code": ws.close_code, "reason": ws.close_reason})

async def main():
    a = await websockets.serve(handler, "127.0.0.1", 0, max_size=None, subprotocols=["p1", "p2"])
    b = await websockets.serve(handler, "127.0.0.1", 0, max_size=None, compression=None)
    print("PORT", a.sockets[0].getsockname()[1], flush=True)
    print("PORT", b.sockets[0].getsockname()[1], flush=True)
    await asyncio.Future()

asyncio.run(main())
]=]

-- a websockets client run against a luaio server; prints a JSON report
local PY_CLIENT = [=[
import asyncio, json, sys
import websockets

url, compression = sys.argv[1], sys.argv[2]

async def main():
    out = {}
    kw = {} if compression == "deflate" else {"compression": None}
    async with websockets.connect(url + "/echo", max_size=None, **kw) as ws:
        out["extensions"] = [type(e).__name__ for e in ws.extensions]
        await ws.send("hello ✓")
        out["text"] = await ws.recv()
        await ws.send(b"\x00\x01\x02" * 1000)
        b = await ws.recv()
        out["binary"] = [type(b).__name__, len(b), b == b"\x00\x01\x02" * 1000]
        big = "x" * (1 << 20)
        await ws.send(big)
        out["big"] = (await ws.recv()) == big
        await ws.send(["frag", "men", "ted"])
        out["fragmented"] = await ws.recv()
        await ws.send([b"a", b"b" * 70000])
        fb = await ws.recv()
        out["fragmented_binary"] = [type(fb).__name__, len(fb)]
        waiter = await ws.ping(b"py ping")
        await asyncio.wait_for(waiter, 5)
        out["pong"] = waiter.done() and not waiter.cancelled()
        await ws.send("")
        out["empty"] = await ws.recv()
        await ws.close(4005, "py closes")
        out["close"] = [ws.close_code, ws.close_reason]
    async with websockets.connect(url + "/server-closes", **kw) as ws:
        try:
            await ws.recv()
            await ws.recv()
        except websockets.ConnectionClosed as e:
            out["server_close"] = [e.code, e.reason]
    async with websockets.connect(url + "/proto", subprotocols=["x", "chat"], **kw) as ws:
        out["protocol"] = ws.subprotocol
        out["protocol_seen"] = await ws.recv()
    try:
        async with websockets.connect(url + "/small", **kw) as ws:
            await ws.send("y" * 2000)
            await ws.recv()
    except websockets.ConnectionClosed as e:
        out["too_big"] = e.code
    print(json.dumps(out))

asyncio.run(main())
]=]

describe("Python websockets as the server, the luaio client", function()
  if missing then
    it("is skipped", function() pending(missing) end)
    return
  end

  local dir, proc, deflate_url, plain_url

  setup(function()
    dir = P.tmpdir("pyws")
    local pa, pb
    proc, pa, pb = P.python_server(dir, "ws_server", PY_SERVER, nil, 2)
    deflate_url, plain_url = "ws://127.0.0.1:" .. pa .. "/", "ws://127.0.0.1:" .. pb .. "/"
  end)
  teardown(function()
    if proc then proc:stop() end
    P.rmtree(dir)
  end)

  for _, mode in ipairs { "compressed", "plain" } do
    it(mode .. ": text and binary round trips, fragments, python's pings, close codes both ways", function()
      local compress = mode == "compressed"
      local url = compress and deflate_url or plain_url
      local ws = aio.websocket.connect(url, { compress = compress })
      ws:send("extensions")
      assert.equals(compress and "PerMessageDeflate" or "", ws:receive())
      for _, n in ipairs { 0, 1, 126, 65536, MiB } do
        local t = text(n)
        ws:send(t)
        assert.same({ t, "text" }, { ws:receive() })
        local b = bytes(n)
        ws:send(b, "binary")
        local d, k = ws:receive()
        assert.equals("binary", k)
        assert.is_true(d == b)
      end
      ws:send("frag")
      assert.same({ "fragmented ✓", "text" }, { ws:receive() })
      ws:send("frag-bin")
      local d, k = ws:receive()
      assert.equals("binary", k)
      assert.is_true(d == "\0\1" .. ("\2"):rep(70000))
      ws:send("ping-me")
      assert.equals("pong-ok", ws:receive())        -- our receive answered python's ping
      assert.is_true(ws:ping("lua ping") >= 0)
      ws:send("close-me")
      assert.same({ nil, 4003, "py bye ✓" }, { ws:receive() })
      assert.equals(4003, ws.close_code)
      -- the client closes
      ws = aio.websocket.connect(url, { compress = compress })
      ws:close(4004, "lua bye ✓")
      assert.equals(4004, ws.close_code)
      ws = aio.websocket.connect(url, { compress = compress })
      ws:send("last-close")
      assert.same({ code = 4004, reason = "lua bye ✓" }, aio.json.decode((ws:receive())))
      ws:close()
    end)
  end

  it("subprotocols with python's server", function()
    local ws <close> = aio.websocket.connect(deflate_url, { protocols = { "p2", "zz" } })
    assert.equals("p2", ws.protocol)
    ws:send("protocol")
    assert.equals("p2", ws:receive())
    local ws2 <close> = aio.websocket.connect(deflate_url, { protocols = { "zz" } })
    assert.is_nil(ws2.protocol)
  end)

  it("many compressed messages keep the two contexts in step", function()
    local ws <close> = aio.websocket.connect(deflate_url, { compress = true })
    for i = 1, 300 do
      local m = ("message %d "):format(i):rep(i % 17 + 1)
      ws:send(m)
      assert.equals(m, ws:receive())
    end
  end)
end)

describe("Python websockets as the client, the luaio server", function()
  if missing then
    it("is skipped", function() pending(missing) end)
    return
  end

  for _, mode in ipairs { "deflate", "plain" } do
    it(mode .. ": round trips, fragments, pings, close codes both ways, limits", function()
      local closes = aio.Queue()
      local app = aio.http.app()
      app:websocket("/echo", function(w)
        for data, kind in w:messages() do w:send(data, kind) end
        closes:put({ w.close_code, w.close_reason })
      end, { compress = true })
      app:websocket("/server-closes", function(w)
        w:send("bye soon")
        w:close(4006, "lua server bye ✓")
      end, { compress = true })
      app:websocket("/proto", function(w) w:send(tostring(w.protocol)) w:receive() end,
        { protocols = { "chat" } })
      app:websocket("/small", function(w) pcall(w.receive, w) end, { max_message = 1000 })
      local server, base = serve(app)
      local r = aio.exec({ P.PYTHON, "-c", PY_CLIENT, base, mode }, { timeout = 60 })
      assert.equals(0, r.status, r.stderr)
      local out = aio.json.decode(r.stdout)
      assert.same(mode == "deflate" and { "PerMessageDeflate" } or {}, out.extensions)
      assert.equals("hello ✓", out.text)
      assert.same({ "bytes", 3000, true }, out.binary)
      assert.is_true(out.big)
      assert.equals("fragmented", out.fragmented)
      assert.same({ "bytes", 70001 }, out.fragmented_binary)
      assert.is_true(out.pong)
      assert.equals("", out.empty)
      assert.same({ 4005, "py closes" }, out.close)
      assert.same({ 4005, "py closes" }, next_of(closes))
      assert.same({ 4006, "lua server bye ✓" }, out.server_close)
      assert.equals("chat", out.protocol)
      assert.equals("chat", out.protocol_seen)
      assert.equals(1009, out.too_big)
      server:close()
    end)
  end
end)

describe("Python websockets' keep-alive against a handler that only sends", function()
  if missing then
    it("is skipped", function() pending(missing) end)
    return
  end

  it("the handler's sends answer python's pings: the connection is not dropped for a missing pong", function()
    local app = aio.http.app()
    app:websocket("/push", function(w)
      for i = 1, 30 do w:send("tick " .. i) aio.sleep(0.05) end
      w:close(1000, "done")
    end)
    local server, base = serve(app)
    local r = aio.exec({ P.PYTHON, "-c", [[
import asyncio, json, sys
import websockets
async def main():
    n = 0
    async with websockets.connect(sys.argv[1] + "/push", ping_interval=0.1, ping_timeout=0.3) as ws:
        try:
            async for m in ws:
                n += 1
        except websockets.ConnectionClosed:
            pass
        print(json.dumps([n, ws.close_code, ws.close_reason]))
asyncio.run(main())
]], base }, { timeout = 30 })
    assert.equals(0, r.status, r.stderr)
    assert.same({ 30, 1000, "done" }, aio.json.decode(r.stdout))
    server:close()
  end)
end)

--------------------------------------------------------------------------------
describe("wss://", function()
  it("the client and the server over TLS (a self-signed certificate)", function()
    if P.missing("openssl") then pending("openssl is not installed") end
    local dir = P.tmpdir("wss")
    local r = aio.exec({ "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
      "-keyout", dir .. "/key.pem", "-out", dir .. "/cert.pem", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1" }, { timeout = 60 })
    assert.equals(0, r.status, r.stderr)
    local app = aio.http.app()
    app:websocket("/echo", echo, { compress = true })
    local server = app:listen("127.0.0.1", 0, { tls = { cert_file = dir .. "/cert.pem", key_file = dir .. "/key.pem" } })
    local url = "wss://127.0.0.1:" .. server.port .. "/echo"
    local ws <close> = aio.websocket.connect(url, { tls = { ca_file = dir .. "/cert.pem" }, compress = true })
    for _, n in ipairs { 0, 125, 70000, MiB } do
      local t = text(n)
      ws:send(t)
      assert.equals(t, ws:receive())
    end
    assert.is_true(ws:ping() >= 0)
    -- an unverified certificate fails
    raises("TLSError", aio.websocket.connect, url)
    ws:close()
    server:close()
    P.rmtree(dir)
  end)
end)
