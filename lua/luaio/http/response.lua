-- Server responses (API.md §6, §6b): a whole response in one write (the
-- common case, kept cheap: the stream assembles status line, headers, its
-- cached Date line and the body natively, http_respond.c), and streamed
-- ones — the writer of req:respond (chunked unless the headers set a
-- Content-Length) and the Server-Sent Events writer of req:sse on top of it.
local core = require "luaio.core"
local check = require "luaio.check"
local common = require "luaio.http.common"
local json = require "luaio.json"

local getmetatable = debug.getmetatable
local new_error, is_error, arg_error, type_name = core.error, core.is_error, core.arg_error, core.type_name
local check_self = check.check_self
local header_block, REASONS = common.header_block, common.REASONS
local type, tostring, error, pcall, setmetatable = type, tostring, error, pcall, setmetatable
local concat, fmt = table.concat, string.format

local M = {}

local status_lines = setmetatable({}, { __index = function(t, status)
  local line = fmt("HTTP/1.1 %d %s\r\n", status, REASONS[status] or "Unknown")
  t[status] = line
  return line
end })
M.status_lines = status_lines

-- stream:_http_response's flags (http_respond.c)
local TYPED, SIZED, CLOSE, HEAD_ONLY = 1, 2, 4, 8
M.CLOSE, M.HEAD_ONLY = CLOSE, HEAD_ONLY

local NO_HEADERS = setmetatable({}, { __newindex = function() error("NO_HEADERS is read-only", 2) end })
M.NO_HEADERS = NO_HEADERS

local function has_no_body(status)
  return status < 200 or status == 204 or status == 304
end

-- A whole response: status line, headers, ours, body. false, why when a
-- header cannot be sent (nothing was written then).
function M.send_head(conn, status, headers, body, head_only)
  local extra, flags = "", 0
  if next(headers) ~= nil then
    local has_type, has_length
    extra, has_type, has_length = header_block(headers)
    if not extra then return false, "a bad header: " .. has_type end
    flags = (has_type and TYPED or 0) + (has_length and SIZED or 0)
  end
  if has_no_body(status) then
    -- no body, and none of our Content-Type/Length: a 1xx or 204 has none
    -- and a 304's would describe the resource (RFC 9110 8.6, 15.4.5)
    body, flags = "", TYPED + SIZED
  end
  if not conn.keep_alive then flags = flags + CLOSE end
  if head_only then flags = flags + HEAD_ONLY end
  conn.stream:_http_response(status_lines[status], extra, body, flags, conn.extra_head)
  return true
end

-- a short answer of the server's own (400, 408, 413, ...): the connection ends after it
function M.send_simple(conn, status)
  conn.keep_alive = false
  M.send_head(conn, status, NO_HEADERS, fmt("%d %s\n", status, REASONS[status] or ""), false)
end

-- Accept-Encoding allows gzip: a gzip (or x-gzip) item decides, else "*";
-- a q-value of 0 refuses (RFC 9110 12.5.3)
function M.accepts_gzip(accept)
  local star = false
  for item in accept:lower():gmatch("[^,]+") do
    local coding, params = item:match("^%s*([%w*-]+)%s*(.*)$")
    if coding then
      local q = params:match(";%s*q%s*=%s*([%d.]+)")
      local allowed = not q or (tonumber(q) or 0) > 0
      if coding == "gzip" or coding == "x-gzip" then return allowed end
      if coding == "*" then star = allowed end
    end
  end
  return star
end

-- The response writer -------------------------------------------------
local Writer = { __name = "luaio.http.ResponseWriter" }
Writer.__index = Writer

local function header_value(headers, name)
  for k, v in pairs(headers) do
    if type(k) == "string" and k:lower() == name then return v end
  end
end

-- A write that failed because the peer left is a ConnectionError. The
-- connection remembers that its client is gone (or stopped reading for
-- body_timeout seconds): the server does not log a handler that ends by it.
local function write_failed(conn, err)
  if is_error(err, "OSError") and (err.code == "EPIPE" or err.code == "EBADF") then
    err = new_error("ConnectionError", "the client went away: " .. tostring(err.message), { code = err.code })
  end
  if is_error(err, "ConnectionError") or is_error(err, "TimeoutError") then conn.gone = true end
  error(err, 0)
end
local function write(conn, ...)
  local stream = conn.stream
  local ok, err = pcall(stream.write, stream, ...)
  if not ok then write_failed(conn, err) end
end

-- a streamed answer's head (as write, for a client that went away)
local function write_head(conn, line, headers, flags)
  local stream = conn.stream
  local ok, err = pcall(stream._http_response, stream, line, headers, "", flags, conn.extra_head)
  if not ok then write_failed(conn, err) end
end

-- req:respond's and req:sse's work: the head goes out now; -> Writer.
-- argn: the headers' argument number (self is #1), for errors
function M.writer(req, conn, status, headers, level, argn)
  level = (level or 1) + 1
  local extra, has_type, has_length = "", false, false
  if headers ~= nil and next(headers) ~= nil then
    extra, has_type, has_length = header_block(headers)
    if not extra then arg_error(argn, "headers: " .. has_type, level) end
  end
  local framing, left, te = "chunked", nil, "Transfer-Encoding: chunked\r\n"
  if has_no_body(status) or req.method == "HEAD" then
    framing, te = "none", ""
  elseif has_length then
    left = math.tointeger(tonumber(header_value(headers, "content-length")))
    if not left or left < 0 then arg_error(argn, "headers: Content-Length: integer >= 0 expected", level) end
    framing, te = "length", ""
  elseif req.version == "HTTP/1.0" then    -- no chunked coding in HTTP/1.0: the end of the connection ends the body
    framing, te = "eof", ""
    conn.keep_alive = false
  end
  -- (_stream: files.lua raises its high-water mark while it sends)
  local w = setmetatable({ _stream = conn.stream, _conn = conn, _framing = framing, _left = left,
    status = status, bytes = 0, closed = false }, Writer)
  if not (has_type or has_no_body(status)) then extra = extra .. "Content-Type: application/octet-stream\r\n" end
  write_head(conn, status_lines[status], extra .. te, conn.keep_alive and TYPED + SIZED or TYPED + SIZED + CLOSE)
  return w
end

-- res:write(data) ⏸: suspends while the connection's unsent data is above its high-water mark
function Writer:write(data)
  if getmetatable(self) ~= Writer then check_self(self, Writer) end
  local t = type(data)
  if t == "number" then data = tostring(data)
  elseif t ~= "string" then arg_error(2, "string expected, got " .. type_name(data)) end
  if self.closed then error(new_error("RuntimeError", "the response is closed"), 2) end
  local n, framing = #data, self._framing
  if n == 0 or framing == "none" then return self end
  if framing == "chunked" then
    write(self._conn, fmt("%x\r\n", n), data, "\r\n")
  else
    if framing == "length" then
      if n > self._left then
        error(new_error("ValueError", fmt("write of %d bytes past the Content-Length (%d left)", n, self._left)), 2)
      end
      self._left = self._left - n
    end
    write(self._conn, data)
  end
  self.bytes = self.bytes + n
  return self
end

-- res:close() ⏸ ends the body (idempotent)
function Writer:close()
  if getmetatable(self) ~= Writer then check_self(self, Writer) end
  if self.closed then return end
  self.closed = true
  local framing = self._framing
  if framing == "chunked" then
    write(self._conn, "0\r\n\r\n")
  elseif framing == "length" and self._left > 0 then
    self._conn.keep_alive = false       -- a body shorter than announced: only closing tells
  end
end
Writer.__close = function(self) pcall(Writer.close, self) end

-- Server-Sent Events ---------------------------------------------------
local SSE = { __name = "luaio.http.SSE" }
SSE.__index = SSE

function M.sse(writer)
  return setmetatable({ _w = writer }, SSE)
end

local function field_line(name, v)
  v = tostring(v)
  if v:find("[\r\n]") then
    error(new_error("ValueError", "sse field " .. name .. " holds a line break"), 3)
  end
  return name .. ": " .. v .. "\n"
end

-- sse:send{data=, event=, id=, retry=} ⏸
function SSE:send(ev)
  if getmetatable(self) ~= SSE then check_self(self, SSE) end
  if type(ev) ~= "table" then arg_error(2, "table expected, got " .. type_name(ev)) end
  local out = {}
  if ev.event ~= nil then out[#out + 1] = field_line("event", ev.event) end
  if ev.id ~= nil then out[#out + 1] = field_line("id", ev.id) end
  if ev.retry ~= nil then
    if math.type(ev.retry) ~= "integer" or ev.retry < 0 then
      arg_error(2, "retry: integer >= 0 (milliseconds) expected, got " .. tostring(ev.retry))
    end
    out[#out + 1] = "retry: " .. ev.retry .. "\n"
  end
  local data = ev.data
  if data ~= nil then
    local t = type(data)
    if t == "table" then data = json.encode(data)
    elseif t ~= "string" and t ~= "number" and t ~= "boolean" then
      arg_error(2, "data: string expected, got " .. type_name(data))
    end
    data = tostring(data)
    -- every line of data its own data: line; CRLF, CR and LF all end a line
    for line in (data:gsub("\r\n?", "\n") .. "\n"):gmatch("([^\n]*)\n") do
      out[#out + 1] = "data: " .. line .. "\n"
    end
  end
  if #out == 0 then arg_error(2, "an event needs data, event, id or retry") end
  out[#out + 1] = "\n"
  self._w:write(concat(out))
end

-- sse:comment(text) ⏸: a line the browser ignores (keeps proxies from timing out)
function SSE:comment(text)
  if getmetatable(self) ~= SSE then check_self(self, SSE) end
  local t = type(text)
  if t ~= "string" and t ~= "number" and text ~= nil then arg_error(2, "string expected, got " .. type_name(text)) end
  local out = {}
  for line in (tostring(text or ""):gsub("\r\n?", "\n") .. "\n"):gmatch("([^\n]*)\n") do
    out[#out + 1] = ": " .. line .. "\n"
  end
  self._w:write(concat(out) .. "\n")
end

function SSE:close()
  if getmetatable(self) ~= SSE then check_self(self, SSE) end
  return self._w:close()
end
SSE.__close = function(self)
  if getmetatable(self) ~= SSE then check_self(self, SSE) end
  pcall(Writer.close, self._w)
end

M.Writer, M.SSE = Writer, SSE
return M
