-- The HTTP/1.1 server (API.md §6, §6b): the connection loop, request
-- bodies, middleware, turning what a handler returned into a response.
-- The router is router.lua, the request object request.lua, streamed
-- responses response.lua, files files.lua. Returns { app, abort } for aio.http.
local core = require "luaio.core"
local check = require "luaio.check"
local common = require "luaio.http.common"
local router = require "luaio.http.router"
local request = require "luaio.http.request"
local response = require "luaio.http.response"
local files = package.loaded["luaio.http.files"]   -- set once files.lua is loaded
local start_server = require("luaio.streams").start_server
local json = require "luaio.json"

local getmetatable = debug.getmetatable
local is_error, aio_now, new_error = core.is_error, core.now, core.error
local arg_error, type_name, need_task = core.arg_error, core.type_name, core.need_task
local check_self, check_callable = check.check_self, check.check_callable
local check_arg, check_opts, headers_of = common.check_arg, common.check_opts, common.headers_of
local REASONS = common.REASONS
local send_head, send_simple, NO_HEADERS = response.send_head, response.send_simple, response.NO_HEADERS
local CLOSE, HEAD_ONLY, OK_LINE = response.CLOSE, response.HEAD_ONLY, response.status_lines[200]
local Request, run_handler = request.Request, request.run_handler
local concat, type, tostring, error, pcall, xpcall = table.concat, type, tostring, error, pcall, xpcall
local setmetatable, math_type = setmetatable, math.type
local fmt = string.format

local M = {}

local App = router.App

-- the server's options (app(opts), listen's opts) that this file reads;
-- start_server checks its own (backlog, reuseport, max_connections, tls);
-- access_log and hsts, of several types, are checked below
local SERVER_OPTS = { header_timeout = "seconds", keepalive_timeout = "seconds", body_timeout = "seconds",
  max_body = "count", max_header = "count1", backlog = "count", max_connections = "count1",
  compress = "boolean" }
-- the defaults that protect a server (API.md §6b)
local DEFAULTS = { header_timeout = 60, keepalive_timeout = 75, body_timeout = 60,
  max_body = 1024 * 1024, max_header = 64 * 1024 }

local function check_server_opts(opts, n, level)
  opts = check_opts(opts, n, SERVER_OPTS, (level or 1) + 1)
  local log = opts.access_log
  if log ~= nil and type(log) ~= "boolean" and type(log) ~= "function" then
    arg_error(n, "opts.access_log: boolean or function expected, got " .. type_name(log), (level or 1) + 1)
  end
  local hsts = opts.hsts
  if hsts ~= nil and type(hsts) ~= "boolean" and not (math_type(hsts) == "integer" and hsts >= 0) then
    arg_error(n, "opts.hsts: boolean or integer >= 0 (max-age) expected, got " .. tostring(hsts), (level or 1) + 1)
  end
  return opts
end

function M.app(opts)
  opts = check_server_opts(opts, 1)
  return router.new(opts)
end

-- aio.http.abort(status [, body [, headers]]): raises what the server turns
-- into that response (not a failure: nothing is logged)
function M.abort(status, body, headers)
  if math_type(status) ~= "integer" or status < 100 or status > 599 then
    arg_error(1, "HTTP status (integer 100-599) expected, got " .. tostring(status))
  end
  check_arg(headers, 3, "table", 1, true)
  error(new_error("HTTPError", fmt("%d %s", status, REASONS[status] or "Unknown"),
    { status = status, body = body, headers = headers, abort = true }), 2)
end

-- no answer: the connection ends (also when a middleware drops the 4th value)
local function gone(req)
  req._gone = true
  return nil, nil, nil, "close"
end

-- An error out of a handler or a middleware as body, status, headers:
-- aborts and body failures (413, 400, 408) are answers; anything else a
-- 500, logged with its traceback. A cancellation goes on.
local function error_response(req, err)
  if is_error(err, "CancelledError") then error(err, 0) end
  req._failed = true                       -- a streamed answer begun is cut short
  -- a streamed answer's client went away (or stopped reading): nobody to
  -- answer, nothing to log
  if req._conn.gone and (is_error(err, "ConnectionError") or is_error(err, "TimeoutError")) then
    return gone(req)
  end
  if type(err) == "table" and err.abort then
    local status = err.status
    local body = err.body
    if body == nil then body = fmt("%d %s\n", status, REASONS[status] or "") end
    return body, status, err.headers
  end
  if is_error(err, "TimeoutError") and request.body_failed(req) then
    return "408 Request Timeout\n", 408
  end
  if request.body_failed(req) then return gone(req) end   -- the client went away while sending
  local where = type(err) == "table" and err.traceback or ""
  io.stderr:write(fmt("luaio: handler for %s %s failed: %s%s\n", req.method, req.path, tostring(err),
    where ~= "" and ("\n" .. where) or ""))
  return "500 Internal Server Error\n", 500
end

local function traceback_of(err)
  if type(err) == "table" then
    if err.abort or getmetatable(err) == nil then return err end
    if err.traceback == nil then pcall(function() err.traceback = debug.traceback(nil, 2) end) end
    return err
  end
  return debug.traceback(tostring(err), 2)
end

-- the innermost layer: route, read the body as the route wants, run the
-- handler. plain: the request has no body and nothing read it (the
-- server's own call, no middleware): its handler runs at once.
local find = App.find
local function dispatch(app, req, plain)
  local method, path = req.method, req.path
  -- (a static route has no params: req.params is made on first use)
  local route, params_or_status, allow = app._static[path], nil, nil
  if not route or (route.methods and not route.methods[method]) then
    route, params_or_status, allow = find(app, method, path)
    if not route then
      local status = params_or_status
      return fmt("%d %s\n", status, REASONS[status]), status, allow and { Allow = allow } or NO_HEADERS
    end
    if params_or_status then req.params = params_or_status end
  end
  local ok, b, st, hd
  if plain and not route.stream_body then
    req.body = ""
    ok, b, st, hd = xpcall(route.handler, traceback_of, req)
  else
    ok, b, st, hd = xpcall(run_handler, traceback_of, req, route)
  end
  if not ok then return error_response(req, b) end
  return b, st, hd
end

-- the middleware chain, outermost first: middleware(req, next)
local function run_chain(app, req)
  local chain = app._middleware
  if #chain == 0 then return dispatch(app, req) end
  local function layer(i, r)
    local mw = chain[i]
    if not mw then return dispatch(app, r) end
    return mw(r, function(inner_req)
      if inner_req ~= nil and getmetatable(inner_req) ~= Request then
        arg_error(1, "luaio.http.Request expected, got " .. type_name(inner_req))
      end
      local b, st, hd, close = layer(i + 1, inner_req or r)
      -- what a middleware gets always has a status and headers it may change
      if hd == nil or hd == NO_HEADERS then hd = {} end
      return b, st or 200, hd, close
    end)
  end
  local ok, b, st, hd = xpcall(layer, traceback_of, 1, req)
  if not ok then return error_response(req, b) end
  return b, st, hd
end

-- What a handler returned as status, headers, body: an invalid status is a
-- 500, a table body goes out as JSON. nil status, reason when it cannot be sent.
local function normalize(b, st, hd)
  if st ~= nil then
    local s = math.tointeger(st)
    if not s or s < 100 or s > 999 then return nil, "an invalid status " .. tostring(st) end
    st = s
  end
  if hd ~= nil and type(hd) ~= "table" then return nil, "headers that are not a table" end
  local headers = hd or NO_HEADERS
  local tb = type(b)
  if tb == "string" then return st or 200, headers, b end
  if b == nil then return st or 200, headers, "" end
  local mt = tb == "table" and getmetatable(b)
  if tb == "table" and (mt == nil or mt == json.array_mt) then
    local ok, body = pcall(json.encode, b)
    if not ok then return nil, "a body that cannot be encoded as JSON: " .. tostring(body) end
    local typed = false
    for k in pairs(headers) do if type(k) == "string" and k:lower() == "content-type" then typed = true end end
    if not typed then
      local copy = { ["Content-Type"] = "application/json" }
      for k, v in pairs(headers) do copy[k] = v end
      headers = copy
    end
    return st or 200, headers, body
  end
  if tb == "number" or tb == "boolean" then return st or 200, headers, tostring(b) end
  return nil, "a body of type " .. type_name(b)
end

local function log_unsendable(req, why)
  io.stderr:write(fmt("luaio: handler for %s %s returned %s\n", req.method, req.path, why))
end

-- A textual body of 1 KiB or more is gzipped when the client accepts it:
-- -> "gzip"; "vary" when it could be but the client does not accept it
-- (a cache must still know that the answer depends on Accept-Encoding);
-- false when it is not for compressing.
local TEXTUAL = { ["application/json"] = true, ["application/javascript"] = true,
  ["application/xml"] = true, ["image/svg+xml"] = true, ["application/manifest+json"] = true }
local function compression(req, status, headers, body)
  if #body < 1024 or status < 200 or status == 204 or status == 206 or status == 304 then return false end
  local ctype = "text/plain"
  for k, v in pairs(headers) do
    local lk = type(k) == "string" and k:lower()
    if lk == "content-encoding" or lk == "content-length" then return false end
    if lk == "cache-control" and tostring(v):lower():find("no-transform", 1, true) then return false end
    if lk == "content-type" then ctype = tostring(v):lower():match("^%s*([^;%s]+)") or "" end
  end
  if not (ctype:sub(1, 5) == "text/" or TEXTUAL[ctype] or ctype:find("%+json$")) then return false end
  local accept = req.headers["accept-encoding"]
  return accept and response.accepts_gzip(accept) and "gzip" or "vary"
end

-- a copy of headers whose Vary names Accept-Encoding (added to the handler's own)
local function with_vary(headers)
  local copy, key = {}, nil
  for k, v in pairs(headers) do
    copy[k] = v
    if type(k) == "string" and k:lower() == "vary" then key = k end
  end
  local v = key and copy[key]
  if v == nil then
    copy.Vary = "Accept-Encoding"
  elseif type(v) == "table" then
    local list = table.move(v, 1, #v, 1, {})
    list[#list + 1] = "Accept-Encoding"
    copy[key] = list
  elseif v ~= "*" and not tostring(v):lower():find("accept-encoding", 1, true) then
    copy[key] = tostring(v) .. ", Accept-Encoding"
  end
  return copy
end

local function gzipped(headers, body)
  local d <close> = core.deflater("gzip")
  local out = d:write(body, "finish")
  local copy = with_vary(headers)
  copy["Content-Encoding"] = "gzip"
  -- a strong ETag names these bytes, not the gzipped ones: weaken it (as nginx)
  for k, v in pairs(copy) do
    if type(k) == "string" and k:lower() == "etag" and type(v) == "string" and v:sub(1, 1) == '"' then
      copy[k] = "W/" .. v
    end
  end
  return copy, out
end

-- send what the handler returned; -> status, bytes of body sent, true
-- when the connection has to end (an answer cut short)
local function send_result(conn, req, b, st, hd)
  local res = rawget(req, "_res")
  if res then
    -- the handler failed after respond: its client must see the answer
    -- cut short, not complete (no last chunk; the connection ends)
    if rawget(req, "_failed") then return res.status, res.bytes, true end
    res:close()
    return res.status, res.bytes
  end
  -- a body left unread (or half read) ends the connection: say so in the head
  if not conn.body_done then conn.keep_alive = false end
  if type(b) == "table" then
    files = files or package.loaded["luaio.http.files"]
    if files and files.is_file(b) then return files.serve(req, b, st, hd) end
  end
  local status, headers, body = normalize(b, st, hd)
  if not status then
    log_unsendable(req, headers)
    status, headers, body = 500, NO_HEADERS, "500 Internal Server Error\n"
  end
  if conn.compress then
    local how = compression(req, status, headers, body)
    if how == "gzip" then headers, body = gzipped(headers, body)
    elseif how == "vary" then headers = with_vary(headers) end
  end
  local head_only = req.method == "HEAD"
  local sent, why = send_head(conn, status, headers, body, head_only)
  if not sent then
    log_unsendable(req, why)
    status, body = 500, "500 Internal Server Error\n"
    send_head(conn, 500, NO_HEADERS, body, head_only)
  end
  return status, head_only and 0 or #body
end

local function access_log(conn, req, status, size, t0)
  local log, seconds = conn.access_log, aio_now() - t0
  if log == true then
    io.stderr:write(fmt("%s - - [%s] \"%s %s %s\" %d %d %.4f\n", req.peer or "-",
      os.date("!%d/%b/%Y:%H:%M:%S +0000"), req.method, req.target, req.version, status, size, seconds))
  else
    local ok, err = pcall(log, req, status, size, seconds)
    if not ok then io.stderr:write("luaio: access_log failed: ", tostring(err), "\n") end
  end
end

-- The requests of a connection: read, route, answer, until the
-- connection ends (a clean EOF, an idle timeout, a bad head: answered;
-- a response that closes it). A TimeoutError raised while reading the head
-- reaches serve_connection, which answers it: no pcall per request. What
-- stays the same for the connection's life is read once, out of the loop.
local function serve_requests(conn)
  local stream, app, compress, extra_head = conn.stream, conn.app, conn.compress, conn.extra_head
  local static, middleware, logging = app._static, app._middleware, conn.access_log
  local wait = conn.header_timeout
  while true do
    conn.reading_head = true
    local req, keep_alive, has_body = stream:_read_head("server", wait, Request)
    conn.reading_head = false
    if not req then
      if req == nil then pcall(send_simple, conn, keep_alive) end   -- (the status to answer)
      return
    end
    local t0 = logging and aio_now()
    req._conn = conn
    if req.path == nil and not request.split(req) then
      send_simple(conn, 400)
      return
    end
    conn.keep_alive = keep_alive and not conn.draining
    local method = req.method
    local b, st, hd, close
    local route = static[req.path]
    -- (gone: no answer; a WebSocket that took the connection over returns nothing)
    if middleware[1] == nil then
      if route and not has_body and not route.stream_body and (not route.methods or route.methods[method]) then
        -- the common case: a route found by its path, no body: dispatch's work, inline
        req.body = ""
        local ok
        ok, b, st, hd = xpcall(route.handler, traceback_of, req)
        if not ok then b, st, hd, close = error_response(req, b) end
      else
        b, st, hd, close = dispatch(app, req, not has_body)
      end
      if b == nil and not close then close = rawget(req, "_gone") end
    else
      b, st, hd, close = run_chain(app, req)
      if not close then close = rawget(req, "_gone") end
    end
    if close then return end
    -- a body left unread (or half read) makes the next request's start unknown
    -- (and ends the connection: a request begins with body_done true, unread false)
    local done = true
    if has_body then
      done = request.finished(req)
      conn.body_done, conn.unread = done, not done
    end
    -- the common case: a string, no headers, nothing streamed or compressed
    -- (_http_response refuses, writing nothing, a body that is not a string)
    if hd == nil and (st == nil or st == 200) and done and not compress and not conn.streamed
       and stream:_http_response(OK_LINE, "", b, (conn.keep_alive and 0 or CLOSE)
         + (method == "HEAD" and HEAD_ONLY or 0), extra_head) ~= false then
      if logging then access_log(conn, req, 200, method == "HEAD" and 0 or #b, t0) end
    else
      local status, size, cut = send_result(conn, req, b, st, hd)
      conn.streamed = false
      if logging then access_log(conn, req, status, size, t0) end
      if cut or not done then return end
    end
    if not conn.keep_alive then return end
    if conn.first then conn.first, wait = false, conn.keepalive_timeout end
  end
end

-- Closing a socket with unread bytes makes the kernel send RST, and a
-- client still sending its body (python's http.client sends all of it
-- before it reads) loses the answer with it: half-close, then read and
-- drop what comes for a bounded while (nginx's lingering close). TLS
-- streams linger in C already.
local LINGER_SECONDS, LINGER_QUIET = 5, 1
local function linger(stream)
  stream:shutdown()
  stream:set_timeout(LINGER_QUIET)
  local deadline = aio_now() + LINGER_SECONDS
  while aio_now() < deadline and stream:read(65536) do end
end

local function hsts_line(v)
  if v == true then return "Strict-Transport-Security: max-age=31536000\r\n" end
  if type(v) == "number" then return "Strict-Transport-Security: max-age=" .. v .. "\r\n" end
  return ""
end

-- A graceful stop (the server closes: Server:close, a worker's stop): every
-- answer from now on says Connection: close; a connection idle between two
-- requests ends at once; one that has not sent its first request yet gets
-- FIRST_REQUEST_WAIT seconds (it was accepted, its request may be on its way).
local FIRST_REQUEST_WAIT = 1
local function end_idle(live, fresh_too)
  for conn in pairs(live.conns) do
    conn.draining, conn.keep_alive = true, false
    if conn.reading_head and not conn.stream:closed() and conn.stream:buffered() == 0 and (fresh_too or not conn.first) then
      conn.task:cancel()
    end
  end
end

local function drain(live)
  live.closed = true
  end_idle(live, false)
  core.call_later(FIRST_REQUEST_WAIT, function() end_idle(live, true) end)
end

-- live: nil, or {conns = set, closed = bool} of the server (listen) whose
-- close drains the connections
local function serve_connection(self, stream, opts, live)
  local function opt(k) local v = opts[k] if v == nil then v = DEFAULTS[k] end return v end
  stream:set_limits(opt("max_header"))
  stream:set_timeout(opt("body_timeout"))   -- between body reads, and for writes
  local host, port = stream:peername()
  local conn = { app = self, stream = stream, peer = host and (port and (host .. ":" .. port) or host) or nil,
    header_timeout = opt("header_timeout"), keepalive_timeout = opt("keepalive_timeout"),
    body_timeout = opt("body_timeout"), max_header = opt("max_header"),   -- (set above; kept to be seen)
    max_body = opt("max_body"), compress = opts.compress, access_log = opts.access_log or nil,
    extra_head = (opts.hsts and stream:tls_info() ~= nil) and hsts_line(opts.hsts) or "",
    keep_alive = true, first = true, reading_head = false, body_done = true, unread = false, streamed = false,
    draining = live ~= nil and live.closed, task = live and core.current_task() }
  if live then live.conns[conn] = true end
  local ok, err = pcall(serve_requests, conn)
  if live then live.conns[conn] = nil end
  -- a peer that resets, hangs up mid-request or breaks its TLS ends its own
  -- connection: nothing for the server log (handler failures are answered
  -- 500 earlier)
  if not ok and conn.reading_head and is_error(err, "TimeoutError") then
    -- a head begun and not finished is answered 408; an idle connection just closes
    if conn.first or stream:buffered() > 0 then pcall(send_simple, conn, 408) end
    ok = true
  end
  if not ok and not (is_error(err, "ConnectionError") or is_error(err, "IncompleteReadError")
                     or is_error(err, "TLSError") or is_error(err, "TimeoutError")) then
    error(err, 0)
  end
  if ok and conn.unread and stream:tls_info() == nil then pcall(linger, stream) end
  pcall(stream.drain, stream)
end

function App:handle_connection(stream, opts)
  if getmetatable(self) ~= App then check_self(self, App) end
  if getmetatable(stream) ~= core.stream_mt then arg_error(2, "luaio.Stream expected, got " .. type_name(stream)) end
  if opts == nil then opts = self._opts else opts = check_server_opts(opts, 3) end
  return serve_connection(self, stream, opts, nil)
end

function App:listen(host, port, opts)
  if getmetatable(self) ~= App then check_self(self, App) end
  check_arg(host, 2, "string", 1, true)
  if port ~= nil and type(port) ~= "number" and type(port) ~= "string" then
    arg_error(3, "number expected, got " .. type_name(port))
  end
  opts = check_server_opts(opts, 4)
  need_task("app:listen")
  local merged = {}
  for k, v in pairs(self._opts) do merged[k] = v end
  for k, v in pairs(opts) do merged[k] = v end
  opts = merged
  local app = self
  local live = { conns = setmetatable({}, { __mode = "k" }), closed = false }
  opts._on_close = function() drain(live) end     -- (start_server's, private)
  -- a tail call: start_server's argument errors point at the caller's line
  return start_server(function(stream) serve_connection(app, stream, opts, live) end, host, port, opts)
end

function App:use(middleware)
  if getmetatable(self) ~= App then check_self(self, App) end
  check_callable(middleware, 2)
  self._middleware[#self._middleware + 1] = middleware
  return self
end

return M
