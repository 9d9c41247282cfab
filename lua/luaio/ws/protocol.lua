-- A WebSocket connection once the handshake is done (RFC 6455, API.md §12):
-- messages in and out, fragments reassembled, text checked as UTF-8, control
-- frames (ping, pong, close) answered between fragments, the close
-- handshake, keep-alive pings. Frames are parsed and built natively
-- (ws_frame.c); compression is deflate.lua's.
--
-- States: "open" -> "closing" (our close frame sent, the peer's awaited) ->
-- "closed" (both sent, or the connection failed or ended).
--
-- One task at a time reads the connection: the one in receive(), or else a
-- ping() waiting for its pong (it keeps the messages it reads for receive),
-- or close() waiting for the peer's close frame, or a send() handling what
-- is already buffered. There is no reader task per connection: pings are
-- answered, and the peer's close seen, while some task reads or sends.
--
-- Errors: a protocol violation sends its close code and raises
-- WebSocketError {code = 1002 | 1007 | 1009} in the task that read it;
-- send/ping on a connection that is closed (or broke) raise WebSocketError
-- {code = close_code or 1006}; receive on it returns nil, code, reason.
local core = require "luaio.core"
local check = require "luaio.check"
local sync = require "luaio.sync"
local combinators = require "luaio.combinators"
local resources = require "luaio.resources"

local getmetatable = debug.getmetatable
local new_error, is_error, arg_error, type_name = core.error, core.is_error, core.arg_error, core.type_name
local need_task, aio_now, spawn, sleep = core.need_task, core.now, core.spawn, core.sleep
local ws_frame, ws_utf8 = core.ws_frame, core.ws_utf8
local check_self = check.check_self
local timeout = combinators.timeout
local concat, type, tostring, error, pcall, setmetatable = table.concat, type, tostring, error, pcall, setmetatable
local math_type, fmt, spack, sunpack = math.type, string.format, string.pack, string.unpack

local M = {}

local OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
local CLOSE_TIMEOUT = 5          -- seconds to wait for the peer's close frame
local MAX_PENDING = 16           -- messages a pinging (or sending) task keeps for receive()

local WebSocket = { __name = "luaio.WebSocket" }
WebSocket.__index = WebSocket
M.WebSocket = WebSocket

-- stream: the connection; client: this side masks (and expects unmasked
-- frames); opts: max_message, protocol, deflate (deflate.lua's codec or nil)
function M.new(stream, client, opts)
  stream:set_timeout(nil)          -- a connection may idle between messages
  return resources.opened(setmetatable({ _s = stream, _client = client, _max = opts.max_message or 16 * 1024 * 1024,
    _deflate = opts.deflate, _state = "open", _lock = sync.Lock(), _pending = {}, _reader = false,
    _want = 0, _pongs = {}, _ping_seq = 0, protocol = opts.protocol, close_code = nil, close_reason = nil }, WebSocket),
    client and "WebSocket (client)" or "WebSocket (server)")
end

local function ws_error(code, message)
  return new_error("WebSocketError", message, { code = code })
end

-- One frame out, whole. A stream write queues all its bytes before it
-- waits (backpressure), so a frame is never cut by a cancelled sender; the
-- lock keeps one task at a time in that wait (the stream refuses a second
-- waiting writer) and frames in call order. A message is compressed inside
-- the lock: with context takeover the peer must get messages in the order
-- the compressor saw them, and one compressed but never sent (its sender
-- cancelled while it waited for the lock) would break every later one.
local function write_frame(self, opcode, payload, compress)
  local rsv1 = false
  if compress then
    if self._state ~= "open" then error(ws_error(self.close_code or 1006, "the WebSocket is closed"), 0) end
    payload, rsv1 = self._deflate:compress(payload), true
  end
  local header, body = ws_frame(opcode, payload, true, rsv1, self._client)
  return self._s:write(header, body)
end

local function send_frame(self, opcode, payload, compress)
  local guard = self._lock:acquire()
  local ok, err = pcall(write_frame, self, opcode, payload, compress)
  guard:release()
  if not ok then error(err, 0) end
end

local function close_payload(code, reason)
  if not code then return "" end
  return spack(">I2", code) .. (reason or "")
end

-- the tasks waiting in ping() look again at who reads (their pong, the
-- reader stopping, room in the pending messages, the connection closing)
local function kick(self)
  for _, waiter in pairs(self._pongs) do waiter.event:set() end
end

-- the connection ends now (after a violation, or the close handshake)
local function finish(self)
  self._state = "closed"
  resources.untrack(self)
  self._s:close()
  if self._deflate then self._deflate:close() end
  kick(self)
end

-- the connection ends without a close handshake (it failed already)
function WebSocket:_abort()
  if getmetatable(self) ~= WebSocket then check_self(self, WebSocket) end
  if self._state ~= "closed" then
    self.close_code = self.close_code or 1006
    finish(self)
  end
end

-- a control frame that should go out but must not hold up the end of the
-- connection (a peer that does not read, a writer stuck on backpressure):
-- bounded; -> true when it was queued. A cancellation ends the connection
-- and goes on.
local function send_bounded(self, opcode, payload)
  local ok, err = pcall(timeout, CLOSE_TIMEOUT, send_frame, self, opcode, payload)
  if not ok and is_error(err, "CancelledError") then
    finish(self)
    error(err, 0)
  end
  return ok
end

-- a protocol violation: close frame with its code (best effort: not when a
-- writer is stuck on backpressure), the connection ends, the waiting side
-- gets WebSocketError
local function fail(self, code, message)
  if self._state ~= "closed" then
    self.close_code, self.close_reason = code, message
    if self._state == "open" and not self._lock:locked() then
      self._state = "closing"
      send_bounded(self, OP_CLOSE, close_payload(code, message:sub(1, 123)))
    end
    finish(self)
  end
  error(ws_error(code, message), 0)
end

-- codes a close frame may carry (1005, 1006 and 1015 are for reports only)
local VALID_CLOSE = { [1000] = true, [1001] = true, [1002] = true, [1003] = true, [1007] = true,
  [1008] = true, [1009] = true, [1010] = true, [1011] = true, [1012] = true, [1013] = true, [1014] = true }
local function valid_close_code(code)
  return VALID_CLOSE[code] or (code >= 3000 and code <= 4999)
end

-- the peer's close frame (checked): answer it (unless ours went first), then end
local function on_close(self, payload)
  local code, reason = 1005, ""
  if #payload == 1 then fail(self, 1002, "close frame with a 1-byte payload") end
  if #payload >= 2 then
    code = sunpack(">I2", payload)
    reason = payload:sub(3)
    if not valid_close_code(code) then fail(self, 1002, "invalid close code " .. code) end
    if ws_utf8(0, reason, true) ~= 0 then fail(self, 1007, "close reason is not UTF-8") end
  end
  self.close_code, self.close_reason = code, reason
  if self._state == "open" then
    self._state = "closing"
    send_bounded(self, OP_CLOSE, payload)      -- the peer's code and reason echoed (as websockets does)
  end
  finish(self)
end

local function on_pong(self, payload)
  local waiter = self._pongs[payload]
  if waiter then
    self._pongs[payload] = nil
    waiter.rtt = aio_now() - waiter.sent
    waiter.event:set()
  end
end

-- the message being reassembled: kind, parts, size, the UTF-8 state
local function start_message(self, opcode, rsv1)
  if self._msg then fail(self, 1002, "a new message inside a fragmented one") end
  if rsv1 and not self._deflate then fail(self, 1002, "RSV1 set without permessage-deflate") end
  self._msg = { kind = opcode == OP_TEXT and "text" or "binary", parts = {}, size = 0, utf8 = 0,
    compressed = rsv1 }
end

local function too_big(self)
  fail(self, 1009, fmt("message larger than %d bytes", self._max))
end

-- a data frame's payload into the message; -> data, kind once it is whole
local function add_fragment(self, fin, payload)
  local msg = self._msg
  msg.size = msg.size + #payload
  if msg.size > self._max then too_big(self) end
  if msg.kind == "text" and not msg.compressed then
    msg.utf8 = ws_utf8(msg.utf8, payload, fin)
    if not msg.utf8 then fail(self, 1007, "text message is not valid UTF-8") end
  end
  msg.parts[#msg.parts + 1] = payload
  if not fin then return nil end
  self._msg = nil
  local data = #msg.parts == 1 and msg.parts[1] or concat(msg.parts)
  if msg.compressed then
    local ok, out = pcall(self._deflate.decompress, self._deflate, data, self._max)
    if not ok then
      if type(out) == "table" and out.limit then too_big(self) end
      fail(self, 1007, "invalid compressed data: " .. tostring(type(out) == "table" and out.message or out))
    end
    data = out
    if msg.kind == "text" and ws_utf8(0, data, true) ~= 0 then fail(self, 1007, "text message is not valid UTF-8") end
  end
  return data, msg.kind
end

-- the connection broke or ended without a close frame
local function broken(self)
  self.close_code, self.close_reason = self.close_code or 1006, self.close_reason or ""
  if self._state ~= "closed" then finish(self) end
  return false
end

-- one frame in and handled: -> data, kind for a whole message; nil (more to
-- read); false when the connection is closed
local function read_frame(self)
  local msg = self._msg
  local limit = self._max - (msg and msg.size or 0)
  local ok, fin, opcode, payload, rsv1 = pcall(self._s._read_ws_frame, self._s, not self._client,
    limit < 125 and 125 or limit, self._deflate ~= nil)
  if not ok then
    local err = fin
    if is_error(err, "WebSocketError") then
      if err.code == 1009 then too_big(self) end
      fail(self, err.code, err.message)
    end
    -- (a TimeoutError: poll's read that would have waited)
    if is_error(err, "CancelledError") or is_error(err, "TimeoutError") then error(err, 0) end
    return broken(self)                               -- the connection broke (or was closed under us)
  end
  if fin == nil then return broken(self) end          -- EOF without a close frame
  if opcode == OP_TEXT or opcode == OP_BINARY then
    start_message(self, opcode, rsv1)
    return add_fragment(self, fin, payload)
  elseif opcode == OP_CONT then
    if not msg then fail(self, 1002, "continuation frame without a message") end
    if rsv1 then fail(self, 1002, "RSV1 set on a continuation frame") end
    return add_fragment(self, fin, payload)
  elseif opcode == OP_PING then
    if self._state == "open" then
      local sent, err = pcall(send_frame, self, OP_PONG, payload)
      if not sent and is_error(err, "CancelledError") then error(err, 0) end
    end
  elseif opcode == OP_PONG then
    on_pong(self, payload)
  elseif opcode == OP_CLOSE then
    on_close(self, payload)
    return false
  end
  return nil
end

-- The reader role: one task reads at a time ("receive", "ping", "close",
-- or "send" polling what is buffered); the others wait for it to stop (reader_done) or for their pong.
-- There is no reader task of its own per connection: the task that wants
-- the next frame reads it (a task per connection would cost a switch per
-- message and memory per idle connection).
local function reader_stopped(self)
  self._reader = false
  local done = self._reader_done
  if done then self._reader_done = nil done:set() end
  if next(self._pongs) then kick(self) end
end

local function read_loop(self, stop)
  while true do
    local d, k = read_frame(self)
    if d == false then return false end
    if d ~= nil or stop(self) then return d, k end
  end
end

-- read as `role` until a whole message arrives, the connection closes, or
-- stop(self) says so after a frame; -> data, kind | nil (stopped) | false (closed)
local function read_as(self, role, stop)
  self._reader = role
  local ok, data, kind = pcall(read_loop, self, stop)
  reader_stopped(self)
  if not ok then error(data, 0) end
  return data, kind
end

-- wait until the reading task stops
local function wait_reader(self)
  local done = self._reader_done
  if not done then done = sync.Event() self._reader_done = done end
  return done:wait()
end

local function closed_result(self)
  return nil, self.close_code or 1006, self.close_reason or ""
end

local function never() return false end

-- ws:receive() ⏸ -> data, kind | nil, code, reason once closed
function WebSocket:receive()
  if getmetatable(self) ~= WebSocket then check_self(self, WebSocket) end
  need_task("ws:receive")
  while true do
    local pending = self._pending
    if pending[1] then
      local m = table.remove(pending, 1)
      if next(self._pongs) then kick(self) end     -- room again for a pinging reader
      return m[1], m[2]
    end
    if self._state == "closed" then return closed_result(self) end
    local reader = self._reader
    if not reader then break end
    if reader == "receive" then
      error(new_error("RuntimeError", "another task is already receiving on this WebSocket"), 2)
    end
    self._want = self._want + 1               -- a ping reading hands over after its frame
    local ok, err = pcall(wait_reader, self)
    self._want = self._want - 1
    if not ok then
      if next(self._pongs) then kick(self) end
      error(err, 0)
    end
  end
  local data, kind = read_as(self, "receive", never)
  if data == false then return closed_result(self) end
  return data, kind
end

-- ws:messages() -> iterator of data, kind (ends when the connection closes)
function WebSocket:messages()
  if getmetatable(self) ~= WebSocket then check_self(self, WebSocket) end
  return function()
    local data, kind = self:receive()
    if data == nil then return nil end
    return data, kind
  end
end

local KINDS = { text = OP_TEXT, binary = OP_BINARY }

local function poll_loop(self)
  local s, pending = self._s, self._pending
  while self._state == "open" and s:buffered() > 0 and #pending < MAX_PENDING do
    local d, k = read_frame(self)
    if d == false then return end
    if d then pending[#pending + 1] = { d, k } end
  end
end

-- A task that only sends still answers pings and sees the peer's close:
-- before a message goes out, the frames already buffered are handled
-- (nothing is waited for: the stream's timeout is 0 meanwhile, so a frame
-- not yet whole stays where it is) and the messages among them kept for
-- receive(). Without this, a handler that never receives would not answer
-- the keep-alive pings of Python's websockets (every 20 s) and be dropped.
-- It costs a send one buffered() call when nothing came in.
local function poll(self)
  local s = self._s
  if self._reader or s:buffered() == 0 or #self._pending >= MAX_PENDING then return end
  self._reader = "send"
  s:set_timeout(0)
  local ok, err = pcall(poll_loop, self)
  if self._state ~= "closed" then s:set_timeout(nil) end
  reader_stopped(self)
  if not ok and not is_error(err, "TimeoutError") then error(err, 0) end
end

local function closed_error(self)
  return ws_error(self.close_code or 1006, "the WebSocket is closed")
end

-- ws:send(data [, kind]) ⏸ (kind "text" by default)
function WebSocket:send(data, kind)
  if getmetatable(self) ~= WebSocket then check_self(self, WebSocket) end
  local t = type(data)
  if t == "number" then data = tostring(data)
  elseif t ~= "string" then arg_error(2, "string expected, got " .. type_name(data)) end
  local opcode = OP_TEXT
  if kind ~= nil then
    opcode = KINDS[kind]
    if not opcode then arg_error(3, fmt("'text' or 'binary' expected, got %s", tostring(kind))) end
  end
  need_task("ws:send")
  if opcode == OP_TEXT and ws_utf8(0, data, true) ~= 0 then
    arg_error(2, "text must be valid UTF-8 (send it as 'binary')")
  end
  if self._state ~= "open" then error(closed_error(self), 2) end
  poll(self)
  if self._state ~= "open" then error(closed_error(self), 2) end
  local ok, err = pcall(send_frame, self, opcode, data, self._deflate ~= nil and #data > 0)
  if not ok then
    if is_error(err, "CancelledError") or is_error(err, "TimeoutError") then error(err, 0) end
    -- the connection broke (or closed while this waited): say so as the API does
    if not is_error(err, "WebSocketError") then broken(self) err = closed_error(self) end
    error(err, 2)
  end
end

-- wait for the pong of `waiter`: read frames while nobody else does,
-- keeping the messages for receive() (at most MAX_PENDING of them: past
-- that, receive() has to take them before more is read)
local function await_pong(self, waiter)
  local function stop(s) return waiter.rtt ~= nil or s._want > 0 end
  while not waiter.rtt and self._state ~= "closed" do
    if self._reader or self._want > 0 or #self._pending >= MAX_PENDING then
      waiter.event:clear()
      waiter.event:wait()
    else
      local d, k = read_as(self, "ping", stop)
      if d then self._pending[#self._pending + 1] = { d, k } end
    end
  end
end

-- ws:ping([data]) ⏸ -> the round trip in seconds
function WebSocket:ping(data)
  if getmetatable(self) ~= WebSocket then check_self(self, WebSocket) end
  if data ~= nil and type(data) ~= "string" then arg_error(2, "string expected, got " .. type_name(data)) end
  if data and #data > 125 then arg_error(2, "ping data of at most 125 bytes expected") end
  need_task("ws:ping")
  if self._state ~= "open" then error(closed_error(self), 2) end
  if not data then
    self._ping_seq = self._ping_seq + 1
    data = spack(">I4", self._ping_seq)
  end
  if self._pongs[data] then
    error(new_error("RuntimeError", "a ping with the same data is already waiting for its pong"), 2)
  end
  local waiter = { event = sync.Event(), sent = aio_now() }
  self._pongs[data] = waiter
  local ok, err = pcall(send_frame, self, OP_PING, data)
  if ok then ok, err = pcall(await_pong, self, waiter) end
  if self._pongs[data] == waiter then self._pongs[data] = nil end
  if not ok then
    if is_error(err, "CancelledError") or is_error(err, "TimeoutError") or is_error(err, "WebSocketError") then
      error(err, 0)
    end
    broken(self)
    error(closed_error(self), 2)
  end
  if not waiter.rtt then error(ws_error(self.close_code or 1006, "the WebSocket closed before the pong"), 2) end
  return waiter.rtt
end

-- the close handshake: our close frame, then frames read (and dropped)
-- until the peer's close frame, within the deadline
local function closing(self, code, reason, deadline)
  if self._state == "open" then
    self._state = "closing"
    timeout(deadline - aio_now(), send_frame, self, OP_CLOSE, close_payload(code or 1000, reason))
  end
  while self._state ~= "closed" do
    local left = deadline - aio_now()
    if left <= 0 then return end
    if self._reader then timeout(left, wait_reader, self)
    else timeout(left, read_as, self, "close", never) end
  end
end

-- ws:close([code [, reason]]) ⏸: the close handshake (code 1000 by default)
function WebSocket:close(code, reason)
  if getmetatable(self) ~= WebSocket then check_self(self, WebSocket) end
  if code ~= nil and not (math_type(code) == "integer" and valid_close_code(code)) then
    arg_error(2, "close code 1000-1003, 1007-1014 or 3000-4999 expected, got " .. tostring(code))
  end
  if reason ~= nil and type(reason) ~= "string" then arg_error(3, "string expected, got " .. type_name(reason)) end
  if reason and #reason > 123 then arg_error(3, "reason of at most 123 bytes expected") end
  if reason and ws_utf8(0, reason, true) ~= 0 then arg_error(3, "reason must be valid UTF-8") end
  need_task("ws:close")
  if self._state == "closed" then return end
  local ok, err = pcall(closing, self, code, reason, aio_now() + (self._close_timeout or CLOSE_TIMEOUT))
  if self._state ~= "closed" then
    self.close_code = self.close_code or 1006
    finish(self)
  end
  if not ok and is_error(err, "CancelledError") then error(err, 0) end
end

-- <close>: the close handshake; a cancellation meanwhile ends the
-- connection and goes on
WebSocket.__close = function(self)
  if getmetatable(self) ~= WebSocket then check_self(self, WebSocket) end
  local ok, err = pcall(WebSocket.close, self)
  if not ok then
    self:_abort()
    if is_error(err, "CancelledError") then error(err, 0) end
  end
end

-- keep-alive: a ping every interval; a peer that has not answered one
-- by the next interval is closed (1011)
function M.keepalive(ws, interval)
  return spawn(function()
    while ws._state == "open" do
      sleep(interval)
      if ws._state ~= "open" then break end
      local ok, err = pcall(timeout, interval, ws.ping, ws)
      if not ok and ws._state == "open" then
        if is_error(err, "CancelledError") then error(err, 0) end
        ws.close_code, ws.close_reason = 1011, "keepalive ping timeout"
        ws._state = "closing"
        send_bounded(ws, OP_CLOSE, close_payload(1011, "keepalive ping timeout"))
        finish(ws)
      end
    end
  end)
end

return M
