-- The HTTP/1.1 server (API.md §6): the router (App), the connection loop,
-- request bodies, the response writer. Returns { app = ... } for aio.http.
local core = require "luaio.core"
local check = require "luaio.check"
local common = require "luaio.http.common"
local start_server = require("luaio.streams").start_server
local with_timeout = require("luaio.combinators").timeout   -- aio.timeout
local json = require "luaio.json"

-- the real metatable: a __metatable field cannot make a table pass for ours
local getmetatable = debug.getmetatable
local is_error, unescape, aio_now = core.is_error, core.http_unescape, core.now
local arg_error, type_name, need_task = core.arg_error, core.type_name, core.need_task
local check_self, check_callable = check.check_self, check.check_callable
local check_arg, check_opts, headers_of, decode_query = common.check_arg, common.check_opts, common.headers_of, common.decode_query
local read_chunked, read_head, header_block, REASONS = common.read_chunked, common.read_head, common.header_block, common.REASONS
local concat, type, tostring, error, pcall = table.concat, type, tostring, error, pcall
local setmetatable = setmetatable
local fmt = string.format

local M = {}

local function http_date(t)
  return os.date("!%a, %d %b %Y %H:%M:%S GMT", t)
end

local App = {}
App.__index = App
App.__name = "luaio.http.App"

-- the server's options (app(opts), listen's opts) that this file reads;
-- start_server checks its own (backlog, reuseport, max_connections, tls)
local SERVER_OPTS = { header_timeout = "seconds", max_body = "count", max_header = "count1",
  backlog = "count", max_connections = "count1" }

function M.app(opts)
  opts = check_opts(opts, 1, SERVER_OPTS)
  return setmetatable({ _routes = {}, _static = {}, _opts = opts }, App)
end

local function compile(path)
  local segs = {}
  for seg in path:gmatch("[^/]+") do
    local name = seg:match("^:(.+)$")
    segs[#segs + 1] = name and { param = name } or seg
  end
  return segs
end

local function match(route, parts)
  local segs = route.segs
  if #segs ~= #parts then return nil end
  local params = {}
  for i = 1, #segs do
    local s = segs[i]
    if type(s) == "table" then params[s.param] = parts[i]
    elseif s ~= parts[i] then return nil end
  end
  return params
end

function App:route(path, handler, methods)
  if getmetatable(self) ~= App then check_self(self, App) end
  check_arg(path, 2, "string")
  if path:sub(1, 1) ~= "/" then arg_error(2, fmt("path starting with '/' expected, got %q", path)) end
  check_callable(handler, 3)
  local allowed
  if methods ~= nil then
    if type(methods) == "string" then methods = { methods } end
    if type(methods) ~= "table" then
      arg_error(4, "string or array of strings expected, got " .. type_name(methods))
    end
    allowed = {}
    for i, m in ipairs(methods) do
      if type(m) ~= "string" then
        arg_error(4, fmt("methods[%d]: string expected, got %s", i, type_name(m)))
      end
      allowed[m:upper()] = true
    end
    if allowed.GET then allowed.HEAD = true end
  end
  local route = { segs = compile(path), handler = handler, methods = allowed, list = methods }
  -- a path without parameters is also found by a table lookup, unless an
  -- earlier route would match it first (routes match in order)
  local static = true
  for _, seg in ipairs(route.segs) do if type(seg) == "table" then static = false end end
  if static then
    for _, r in ipairs(self._routes) do
      if match(r, route.segs) then static = false break end
    end
  end
  self._routes[#self._routes + 1] = route
  if static then
    local key = "/" .. concat(route.segs, "/")
    if self._static[key] == nil then self._static[key] = route end
  end
  return self
end

function App:find(method, path)
  if getmetatable(self) ~= App then check_self(self, App) end
  check_arg(method, 2, "string")
  check_arg(path, 3, "string")
  local r = self._static[path]
  if r and (not r.methods or r.methods[method]) then return r, {} end
  local parts = {}
  for seg in path:gmatch("[^/]+") do parts[#parts + 1] = unescape(seg) end
  local allow
  for _, r in ipairs(self._routes) do
    local params = match(r, parts)
    if params then
      if not r.methods or r.methods[method] then return r, params end
      allow = allow or {}
      for m in pairs(r.methods) do allow[#allow + 1] = m end
    end
  end
  if allow then table.sort(allow) return nil, 405, concat(allow, ", ") end
  return nil, 404
end

-- req.query is decoded on first use: most handlers never look
local Request = { __name = "luaio.http.Request" }
function Request:json()
  if getmetatable(self) ~= Request then check_self(self, Request) end
  return json.decode(self.body)
end
Request.__index = function(req, k)
  if k == "query" then
    local q = decode_query(rawget(req, "_query"))
    req.query = q
    return q
  end
  return Request[k]
end

-- the response head goes out as separate strings in one writev: no
-- concatenation, and the status line and Date/Server lines are cached
local status_lines = setmetatable({}, { __index = function(t, status)
  local line = fmt("HTTP/1.1 %d %s\r\n", status, REASONS[status] or "Unknown")
  t[status] = line
  return line
end })
local date_second, date_lines
local function date_and_server()
  local now = os.time()
  if now ~= date_second then
    date_second, date_lines = now, "Date: " .. http_date(now) .. "\r\nServer: luaio\r\n"
  end
  return date_lines
end

local NO_HEADERS = setmetatable({}, { __newindex = function() error("NO_HEADERS is read-only", 2) end })
local length_lines = setmetatable({}, { __index = function(t, n)
  local line = "Content-Length: " .. n .. "\r\n"
  if n < 4096 then t[n] = line end   -- the common sizes, bounded
  return line
end })



local function send_response(stream, status, headers, body, head_only, keep_alive)
  local extra, has_type, has_length = "", false, false
  if next(headers) ~= nil then
    extra, has_type, has_length = header_block(headers)
    if not extra then return false, has_type end
  end
  if status < 200 or status == 204 or status == 304 then
    -- no body, and none of our Content-Type/Length: a 1xx or 204 has none
    -- and a 304's would describe the resource (RFC 9110 8.6, 15.4.5)
    body, has_type, has_length = "", true, true
  end
  stream:write(status_lines[status], extra,
    (has_type or body == "") and "" or "Content-Type: text/plain; charset=utf-8\r\n",
    has_length and "" or length_lines[#body],
    date_and_server(),
    keep_alive and "\r\n" or "Connection: close\r\n\r\n",
    head_only and "" or body)
  return true
end

local function simple(stream, status, extra, keep_alive)
  local body = fmt("%d %s\n", status, REASONS[status] or "")
  send_response(stream, status, extra or {}, body, false, keep_alive)
end

local function access_log(req, status, size, t0)
  io.stderr:write(fmt("%s %s %s %d %d %.1fms\n", req.peer or "-", req.method, req.target, status, size,
    (aio_now() - t0) * 1000))
end

-- The request head, within opts.header_timeout: head, or false when the
-- connection ends (a clean EOF; a timeout or a bad head, both answered)
local function read_request_head(stream, opts)
  local head_timeout = opts.header_timeout
  local head, status
  if head_timeout then
    local ok, a, b = pcall(with_timeout, head_timeout, read_head, stream, "request")
    if not ok then
      if is_error(a, "TimeoutError") then
        pcall(simple, stream, 408, nil, false)
        return false
      end
      error(a, 0)
    end
    head, status = a, b
  else
    head, status = read_head(stream, "request")
  end
  if head == false then return false end
  if not head then
    pcall(simple, stream, status, nil, false)
    return false
  end
  return head
end

-- path, query of the request target; nil (answered 400) for a target that
-- is neither a path nor OPTIONS's "*"
local function split_target(stream, head)
  local target = head.target
  local path, query = target, nil
  if target:find("[?#]") then path, query = target:match("^([^?#]*)%??([^#]*)") end
  if path == "" or path:sub(1, 1) ~= "/" then
    if target == "*" and head.method == "OPTIONS" then return "*", query end
    simple(stream, 400, nil, false)
    return nil
  end
  return path, query
end

-- the request body ("" when none), within opts.max_body; nil when the
-- connection ends (too large: answered 413; a bad chunked body: answered)
local function read_body(stream, head, opts)
  local max_body = opts.max_body or 1024 * 1024
  local length = head.content_length
  if length and length > max_body then
    simple(stream, 413, nil, false)
    return nil
  end
  if head.expect_continue and (length or head.chunked) then stream:write("HTTP/1.1 100 Continue\r\n\r\n") end
  if head.chunked then
    local ok, b = pcall(read_chunked, stream, max_body)
    if not ok then
      local st = type(b) == "table" and b.status or 400
      if is_error(b, "CancelledError") then error(b, 0) end
      pcall(simple, stream, st, nil, false)
      return nil
    end
    return b
  elseif length and length > 0 then
    local ok, b = pcall(stream.read_exactly, stream, length)
    if not ok then
      if is_error(b, "CancelledError") then error(b, 0) end
      return nil
    end
    return b
  end
  return ""
end

-- What a handler returned (body, status, headers) as status, headers, body:
-- an invalid status is a 500, a table body goes out as JSON.
local function handler_response(method, path, b, st, hd)
  if st ~= nil then
    st = math.tointeger(st)
    if not st or st < 100 or st > 999 then
      io.stderr:write(fmt("luaio: handler for %s %s returned an invalid status\n", method, path))
      st = 500
      b = "500 Internal Server Error\n"
    end
  end
  local headers = type(hd) == "table" and hd or NO_HEADERS
  if type(b) == "table" then
    local typed = false
    for k in pairs(headers) do if k:lower() == "content-type" then typed = true end end
    if not typed then
      if headers == NO_HEADERS then headers = {} end
      headers["Content-Type"] = "application/json"
    end
    return st or 200, headers, json.encode(b)
  end
  return st or 200, headers, b == nil and "" or tostring(b)
end

-- route req and run its handler: status, headers, body
local function dispatch(app, req)
  local method, path = req.method, req.path
  local route, params_or_status, allow = app:find(method, path)
  if not route then
    local status = params_or_status
    req.params = {}
    return status, allow and { Allow = allow } or NO_HEADERS, fmt("%d %s\n", status, REASONS[status])
  end
  req.params = params_or_status
  local ok, b, st, hd = xpcall(route.handler, debug.traceback, req)
  if not ok then
    if is_error(b, "CancelledError") then error(b, 0) end
    io.stderr:write(fmt("luaio: handler for %s %s failed: %s\n", method, path, tostring(b)))
    return 500, NO_HEADERS, "500 Internal Server Error\n"
  end
  return handler_response(method, path, b, st, hd)
end

-- one request: read, route, answer. Returns false when the connection ends.
local function serve_request(app, stream, opts, peer)
  local head = read_request_head(stream, opts)
  if not head then return false end
  local t0 = opts.access_log and aio_now()
  local path, query = split_target(stream, head)
  if not path then return false end
  local body = read_body(stream, head, opts)
  if not body then return false end
  local method, keep_alive = head.method, head.keep_alive
  local req = setmetatable({ method = method, target = head.target, path = path, _query = query,
    headers = headers_of(head.headers), body = body, peer = peer, version = head.version }, Request)
  local status, headers, resp_body = dispatch(app, req)
  local sent, bad = send_response(stream, status, headers, resp_body, method == "HEAD", keep_alive)
  if not sent then
    io.stderr:write(fmt("luaio: handler for %s %s returned a bad header: %s\n", method, path, bad))
    status, resp_body = 500, "500 Internal Server Error\n"
    send_response(stream, 500, NO_HEADERS, resp_body, method == "HEAD", keep_alive)
  end
  if opts.access_log then access_log(req, status, #resp_body, t0) end
  return keep_alive
end

function App:handle_connection(stream, opts)
  if getmetatable(self) ~= App then check_self(self, App) end
  if getmetatable(stream) ~= core.stream_mt then arg_error(2, "luaio.Stream expected, got " .. type_name(stream)) end
  if opts == nil then opts = self._opts else check_opts(opts, 3, SERVER_OPTS) end
  stream:set_limits(opts.max_header or 65536)
  local host, port = stream:peername()
  local peer = host and (port and (host .. ":" .. port) or host) or nil
  local ok, err = pcall(function()
    while serve_request(self, stream, opts, peer) do end
  end)
  -- a peer that resets, hangs up mid-request or breaks its TLS ends its own
  -- connection: nothing for the server log (handler failures are answered
  -- 500 earlier)
  if not ok and not (is_error(err, "ConnectionError") or is_error(err, "IncompleteReadError")
                     or is_error(err, "TLSError")) then
    error(err, 0)
  end
  pcall(stream.drain, stream)
end

function App:listen(host, port, opts)
  if getmetatable(self) ~= App then check_self(self, App) end
  check_arg(host, 2, "string", 1, true)
  if port ~= nil and type(port) ~= "number" and type(port) ~= "string" then
    arg_error(3, "number expected, got " .. type_name(port))
  end
  opts = check_opts(opts, 4, SERVER_OPTS)
  need_task("app:listen")
  local merged = {}
  for k, v in pairs(self._opts) do merged[k] = v end
  for k, v in pairs(opts) do merged[k] = v end
  opts = merged
  local app = self
  return start_server(function(stream) app:handle_connection(stream, opts) end, host, port, opts)
end


return M
