-- The server's request (API.md §6, §6b): target split (origin form, "*",
-- absolute form), the body — read whole before the handler, or left to it
-- (stream_body) through req:read / req:chunks / req:read_all —, json, form,
-- cookies, and the ways to answer in pieces (req:respond, req:sse).
local core = require "luaio.core"
local check = require "luaio.check"
local common = require "luaio.http.common"
local body = require "luaio.http.body"
local response = require "luaio.http.response"
-- form and cookie parsing load on first use
local function form() return require "luaio.http.form" end
local function cookies() return require "luaio.http.cookies" end
local json = require "luaio.json"

local getmetatable = debug.getmetatable
local new_error, arg_error, type_name, need_task = core.error, core.arg_error, core.type_name, core.need_task
local check_self = check.check_self
local headers_of, decode_query = common.headers_of, common.decode_query
local parse_head = core.http_parse_head
local type, tostring, error, pcall, setmetatable, rawget = type, tostring, error, pcall, setmetatable, rawget
local math_type, fmt, find = math.type, string.format, string.find

local M = {}

local Request = { __name = "luaio.http.Request" }
local methods = {}

-- The head's parts that few handlers look at are parsed from its bytes
-- (_raw: the stream checked them already) on first use
local function from_head(k)
  return function(req)
    local h = parse_head(rawget(req, "_raw"), "request")
    if rawget(req, "headers") == nil then req.headers = headers_of(h.headers, h.repeated) end
    if rawget(req, "target") == nil then req.target = h.target end
    if rawget(req, "version") == nil then req.version = h.version end
    return rawget(req, k)
  end
end

-- fields computed on first use: most handlers never look
local lazy = {
  headers = from_head("headers"), target = from_head("target"), version = from_head("version"),
  peer = function(req) return req._conn.peer end,
  query = function(req) return decode_query(rawget(req, "_query")) end,
  params = function() return {} end,             -- (a static route's, or none matched)
  cookies = function(req)
    local h = req.headers.cookie
    return h and cookies().parse_cookie_header(h) or {}
  end,
}
Request.__index = function(req, k)
  local make = lazy[k]
  if make then
    local v = make(req)
    req[k] = v
    return v
  end
  return methods[k]
end

local function abort(status, message)
  return new_error("HTTPError", message, { status = status, abort = true,
    body = fmt("%d %s: %s\n", status, common.REASONS[status], message) })
end

-- path, query of a request target; nil for a target that is neither a
-- path, OPTIONS's "*", nor an absolute URL (RFC 9112 §3.2)
local function split_target(method, target)
  local path, query = target, nil
  if find(target, "?", 1, true) or find(target, "#", 1, true) then
    path, query = target:match("^([^?#]*)%??([^#]*)")
  end
  if path:sub(1, 1) == "/" then return path, query end
  if target == "*" and method == "OPTIONS" then return "*", query end
  local rest = path:match("^[hH][tT][tT][pP][sS]?://[^/]*(.*)$")   -- absolute form
  if rest then return rest == "" and "/" or rest, query end
  return nil
end

-- The stream reads the request (its _read_head "server": method, path and
-- query of an origin-form target, the head's bytes, the body's framing)
-- and splits origin-form targets; the others ("*", absolute form) here:
-- true, or nil when the target is unusable.
function M.split(req)
  local path, query = split_target(req.method, req.target)
  if not path then return nil end
  req.path, req._query = path, query
  return true
end

-- "100 Continue" once the handler starts reading, unless its answer began
-- already (a 1xx after the final head would corrupt the response)
local function send_continue(req)
  return function()
    if not rawget(req, "_res") then req._conn.stream:write("HTTP/1.1 100 Continue\r\n\r\n") end
  end
end

local function has_body(req) return rawget(req, "chunked") or (rawget(req, "content_length") or 0) > 0 end

-- The body's reader, made on first use: by run_handler, or earlier by a
-- middleware that reads the body (the server's max_body then, until the
-- route is known). nil when the request has no body.
local function reader_of(req)
  local r = rawget(req, "_reader")
  if r or not has_body(req) then return r end
  local conn = req._conn
  local max = rawget(req, "_max") or conn.max_body
  local length = rawget(req, "content_length")
  if length and length > max then error(abort(413, fmt("body larger than %d bytes", max)), 0) end
  r = body.reader(conn.stream, rawget(req, "chunked") and "chunked" or "length", length, max,
    rawget(req, "expect_continue") and send_continue(req) or nil, true)
  req._reader = r
  return r
end

-- run the route's handler: the body first, unless the route streams it
function M.run_handler(req, route)
  local length = rawget(req, "content_length")
  if not length and not rawget(req, "chunked") and rawget(req, "_reader") == nil then
    if not route.stream_body then req.body = "" end      -- no body
    return route.handler(req)
  end
  local max = route.max_body or req._conn.max_body
  req._max = max
  local r = rawget(req, "_reader")
  -- (a middleware that read, before the route was known, read within the server's limit)
  if (length and length > max) or (r and r._total > max) then
    error(abort(413, fmt("body larger than %d bytes", max)), 0)
  end
  if r then r._max = max end      -- a middleware began reading: the route's limit from now on
  -- (a middleware may call next twice: the body is read from the stream once)
  if not route.stream_body and rawget(req, "body") == nil then
    r = reader_of(req)
    req.body = r and r:read_all() or ""
  end
  return route.handler(req)
end

-- the body could not be read (a timeout, the client left, malformed)
function M.body_failed(req)
  local r = rawget(req, "_reader")
  return r ~= nil and r._state == "failed"
end

-- the request's body was read to its end (or it has none): the connection
-- can go on. A body nobody read (no route, a 413 on its length, a
-- middleware that answered first, a handler that did not read) makes the
-- next request's start unknown.
function M.finished(req)
  local r = rawget(req, "_reader")
  if r then return r._state == "done" end
  return not has_body(req)
end

function M.writer_of(req) return rawget(req, "_res") end

-- req:read([n]) ⏸ -> the next piece of the body, nil at its end
function methods:read(n)
  if getmetatable(self) ~= Request then check_self(self, Request) end
  if n ~= nil and (math_type(n) ~= "integer" or n < 1) then
    arg_error(2, "byte count (integer >= 1) expected, got " .. tostring(n))
  end
  need_task("req:read")
  local whole = rawget(self, "body")
  if whole then            -- read before the handler ran: hand it out in pieces
    local at = rawget(self, "_at") or 1
    if at > #whole then return nil end
    local last = n and at + n - 1 or #whole
    self._at = last + 1
    return whole:sub(at, last)
  end
  local r = reader_of(self)
  if not r then return nil end
  local piece = r:read(n)
  self._taken = true          -- read_all no longer returns the whole body
  return piece
end

-- req:chunks() -> iterator over the body's pieces
function methods:chunks()
  if getmetatable(self) ~= Request then check_self(self, Request) end
  return function() return methods.read(self) end
end

-- req:read_all() ⏸ -> the rest of the body
function methods:read_all()
  if getmetatable(self) ~= Request then check_self(self, Request) end
  need_task("req:read_all")
  local whole = rawget(self, "body")
  if whole then
    local at = rawget(self, "_at") or 1
    self._at = #whole + 1
    return at == 1 and whole or whole:sub(at)
  end
  local r = reader_of(self)
  if not r then return "" end
  local all = r:read_all()
  -- the whole body, read from its start: it is req.body from now on
  if not rawget(self, "_taken") then self.body, self._at = all, #all + 1 end
  return all
end

local function whole_body(req)
  local b = rawget(req, "body")
  if b then return b end
  b = methods.read_all(req)
  -- read here from the stream (stream_body): req:read goes on at its end
  req.body, req._at = b, #b + 1
  return b
end

-- req:json(): a malformed body is the client's mistake: 400
function methods:json()
  if getmetatable(self) ~= Request then check_self(self, Request) end
  local b = whole_body(self)
  local ok, v = pcall(json.decode, b)
  if not ok then error(abort(400, "malformed JSON body: " .. tostring(v):gsub("^aio%.json%.decode: ", "")), 2) end
  return v
end

-- req:form() ⏸ -> fields of an urlencoded or multipart body
function methods:form()
  if getmetatable(self) ~= Request then check_self(self, Request) end
  need_task("req:form")
  local b = whole_body(self)
  local ok, fields = pcall(form().parse, b, self.headers["content-type"] or "")
  if not ok then
    -- a malformed form (400) or another type (415) is the client's mistake: an answer
    if type(fields) == "table" and fields.status then
      fields.abort = true
      fields.body = fields.body or fmt("%d %s\n", fields.status, tostring(fields.message))
    end
    error(fields, 2)
  end
  return fields
end

local function check_status(status, level)
  if math_type(status) ~= "integer" or status < 100 or status > 999 then
    arg_error(2, "HTTP status (integer 100-999) expected, got " .. tostring(status), level + 1)
  end
end

-- req:respond(status [, headers]) ⏸ -> the response writer; the head goes out now
function methods:respond(status, headers)
  if getmetatable(self) ~= Request then check_self(self, Request) end
  check_status(status, 1)
  if headers ~= nil and type(headers) ~= "table" then arg_error(3, "table expected, got " .. type_name(headers)) end
  need_task("req:respond")
  if rawget(self, "_res") then error(new_error("RuntimeError", "the response was already started"), 2) end
  local res = response.writer(self, self._conn, status, headers, 1, 3)
  self._res = res
  self._conn.streamed = true      -- (the server's fast answer is off)
  return res
end

-- req:sse([headers]) ⏸ -> a Server-Sent Events writer
function methods:sse(headers)
  if getmetatable(self) ~= Request then check_self(self, Request) end
  if headers ~= nil and type(headers) ~= "table" then arg_error(2, "table expected, got " .. type_name(headers)) end
  need_task("req:sse")
  if rawget(self, "_res") then error(new_error("RuntimeError", "the response was already started"), 2) end
  local h = { ["Content-Type"] = "text/event-stream", ["Cache-Control"] = "no-cache",
    ["X-Accel-Buffering"] = "no" }            -- nginx: pass each event on at once
  for k, v in pairs(headers or {}) do
    if type(k) == "string" then
      for name in pairs(h) do if name:lower() == k:lower() then h[name] = nil end end
    end
    h[k] = v
  end
  local res = response.writer(self, self._conn, 200, h, 1, 2)
  self._res = res
  self._conn.streamed = true
  return response.sse(res)
end

M.Request = Request
return M
