-- Message bodies read from a stream piece by piece (API.md §6b), for both
-- sides: framed by Content-Length, by the chunked coding (each line ended
-- by CRLF, as in heads: a bare LF is refused), or by the end of the
-- connection; bounded by a maximum size; optionally decoded (gzip,
-- deflate) on the way.
--
-- A reader's states: "body" (pieces to come), "done" (the body was read to
-- its end: the connection may carry another message), "failed" (a read
-- raised: the connection is unusable).
local core = require "luaio.core"

local chunk_size, new_error = core.http_chunk_size, core.error
local concat, min, error, fmt = table.concat, math.min, error, string.format
local setmetatable = setmetatable

local M = {}

local PIECE = 65536

local Reader = {}
Reader.__index = Reader
Reader.__name = "luaio.http.BodyReader"

-- stream: the connection; framing: "length" (with length), "chunked" or
-- "eof"; max: the largest body allowed (nil: any); on_start: called once
-- before the first read (a server's "100 Continue"); server: the errors
-- are answers the server gives (413, 400) when the handler lets them through.
function M.reader(stream, framing, length, max, on_start, server)
  return setmetatable({ _s = stream, _framing = framing, _left = length or 0, _max = max,
    _total = 0, _state = "body", _on_start = on_start, _crlf = false, _trailers = false,
    _server = server or nil }, Reader)
end

local function too_large(self, max)
  return new_error("HTTPError", fmt("body too large (more than %d bytes)", max or self._max),
    { status = 413, abort = self._server })
end

local function malformed(self, why)
  return new_error("HTTPError", "malformed body: " .. why, { status = 400, abort = self._server })
end

local function closed_inside()
  return new_error("ConnectionError", "the connection closed inside the body", { code = "ECONNRESET" })
end

-- the next chunk's size, or 0 once the last chunk and the trailers are read.
-- Each step is recorded once done (_crlf: the CRLF after a chunk's data is
-- still to read; _trailers: the last chunk was seen), so that a read
-- cancelled while it waits resumes where it stopped.
local function next_chunk(self)
  local s = self._s
  if self._crlf then
    if s:read_exactly(2) ~= "\r\n" then error(malformed(self, "chunk not followed by CRLF"), 0) end
    self._crlf = false
  end
  if not self._trailers then
    local line = s:read_until("\r\n")
    if not line then error(closed_inside(), 0) end
    local size, why = chunk_size(line)
    if not size then error(malformed(self, why), 0) end
    if size > 0 then
      if self._max and self._total + size > self._max then error(too_large(self), 0) end
      self._crlf = true
      return size
    end
    self._trailers = true
  end
  repeat                                     -- trailers, ignored
    local t = s:read_until("\r\n")
    if t and t:find("[\r\n]") then error(malformed(self, "bare CR or LF in a trailer"), 0) end
  until t == nil or t == ""
  return 0
end

-- the next raw piece of at most n bytes, nil at the end of the body
local function raw_piece(self, n)
  local s, framing = self._s, self._framing
  if framing == "eof" then return s:read(n) end
  if self._left == 0 then
    if framing == "length" then return nil end
    self._left = next_chunk(self)
    if self._left == 0 then return nil end
  end
  local piece = s:read(min(n, self._left))
  if not piece then error(closed_inside(), 0) end
  self._left = self._left - #piece
  return piece
end

-- what a cancelled read_all had read already: handed out first (at most n bytes)
local function take_held(self, n)
  local s = concat(self._held)
  self._held = nil
  if n and #s > n then s, self._held = s:sub(1, n), { s:sub(n + 1) } end
  return s
end

-- the next piece (at most n bytes before decoding), nil at the end
local function next_piece(self, n)
  if self._state ~= "body" then
    if self._state == "failed" then error(self._err, 0) end
    return nil
  end
  local start = self._on_start
  if start then self._on_start = nil start() end
  local ok, piece = pcall(raw_piece, self, n or PIECE)
  if ok and piece and self._framing == "eof" and self._max and self._total + #piece > self._max then
    ok, piece = false, too_large(self)
  end
  if ok and self._inflate then ok, piece = pcall(self._inflate, piece) end
  if not ok and core.is_error(piece, "LimitOverrunError") then ok, piece = false, malformed(self, "chunk line too long") end
  if not ok then
    -- a cancellation leaves the reader as it was: the piece is still in the stream
    -- (a failure drops what a read_all had held: the error is what comes next)
    if not core.is_error(piece, "CancelledError") then self._state, self._err, self._held = "failed", piece, nil end
    error(piece, 0)
  end
  if piece == nil then
    self._state = "done"
    return nil
  end
  if not self._inflate then self._total = self._total + #piece end
  if piece == "" then return next_piece(self, n) end     -- the decoder wants more input
  return piece
end

-- read([n]) ⏸ -> the next piece (at most n bytes before decoding), nil at the end
function Reader:read(n)
  if self._held then return take_held(self, n) end
  return next_piece(self, n)
end

-- read_all() ⏸ -> the rest of the body as one string. The pieces read so
-- far are kept in the reader while it waits: a cancelled read_all loses
-- nothing (the next read or read_all gets them).
function Reader:read_all()
  local parts = {}
  if self._held then parts[1] = take_held(self) end
  while true do
    self._held = parts[1] and parts or nil
    local piece = next_piece(self)
    if not piece then
      self._held = nil
      return concat(parts)
    end
    parts[#parts + 1] = piece
  end
end

function Reader:done() return self._state == "done" end

-- Decode what comes through zlib ("gzip", "deflate"): the decoded size is
-- what max bounds then (a small bomb cannot grow past it).
-- "deflate" is zlib data (RFC 9110 §8.4.1.2), but some servers send raw
-- deflate: told apart by the zlib header's check bits, as curl and browsers do
local function deflate_format(first2)
  local cmf, flg = first2:byte(1, 2)
  return (cmf % 16 == 8 and (cmf * 256 + flg) % 31 == 0) and "zlib" or "raw"
end

function Reader:decode(coding)
  local max, inflater, held = self._max, nil, ""
  if coding == "gzip" then inflater = core.inflater("gzip", max) end
  self._max = nil
  self._inflate = function(piece)
    if not inflater then                       -- deflate: wait for two bytes to tell which
      if piece ~= nil and #held + #piece < 2 then held = held .. piece return "" end
      piece = held .. (piece or "")
      if #piece < 2 then error(malformed(self, "truncated deflate data"), 0) end
      inflater = core.inflater(deflate_format(piece), max)
    end
    if piece == nil then
      if not inflater:finished() then error(malformed(self, "truncated " .. coding .. " data"), 0) end
      inflater:close()
      return nil
    end
    local ok, out = pcall(inflater.write, inflater, piece)
    if not ok then
      if core.is_error(out, "ProtocolError") and out.limit then
        error(new_error("HTTPError", out.message, { status = 413, abort = self._server }), 0)
      end
      error(malformed(self, coding .. ": " .. tostring(out.message or out)), 0)
    end
    self._total = inflater:total()
    return out
  end
end

return M
