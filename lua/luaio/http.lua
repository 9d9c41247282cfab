-- HTTP/1.1 server and client (API.md §6) on luaio streams. Heads are read
-- whole by the stream (native search for the blank line, within a limit) and
-- parsed in C (http_parse.c); routing, framing policy and pooling live here.
return function(aio, core)
  -- the real metatable: a __metatable field cannot make a table pass for ours
  local getmetatable = debug.getmetatable
  local chunk_size, unescape = core.http_chunk_size, core.http_unescape
  local is_error, new_error = core.is_error, core.error
  local json = aio.json
  local json_bodies = setmetatable({}, { __mode = "k" })   -- request opts -> its json, encoded
  local concat, type, tostring, error, pcall = table.concat, type, tostring, error, pcall
  local getmetatable, setmetatable, math_type = getmetatable, setmetatable, math.type
  local fmt = string.format
  local check_self, check_callable = core.check_self, core.check_callable
  local arg_error, type_name, need_task = core.arg_error, core.type_name, core.need_task

  local http = {}
  aio.http = http

  -- Argument checks. Each raises Lua's "bad argument #n to 'NAME' (...)"
  -- for the function `level` frames up from the checker's caller (1: the
  -- function calling the checker), positioned at that function's caller.
  local function check_arg(v, n, tname, level, optional)
    if (v ~= nil or not optional) and type(v) ~= tname then
      arg_error(n, tname .. " expected, got " .. type_name(v), (level or 1) + 1)
    end
    return v
  end
  -- opts: nil or a table whose listed fields have the listed kinds:
  -- "string", "table", "boolean", "function", "tls" (true/false or a
  -- table), "seconds" (number >= 0), "count" (integer >= 0), "count1"
  -- (integer >= 1). Unknown fields pass. Returns opts or a new table.
  local KIND_EXPECTED = { tls = "table or boolean", seconds = "number", count = "integer",
    count1 = "integer", any = "any" }
  local function check_opts(opts, n, fields, level)
    level = (level or 1) + 1
    if opts == nil then return {} end
    if type(opts) ~= "table" then arg_error(n, "table expected, got " .. type_name(opts), level) end
    for k, kind in pairs(fields) do
      local v = opts[k]
      if v ~= nil then
        local t, bad = type(v), nil
        if kind == "tls" then bad = t ~= "table" and t ~= "boolean"
        elseif kind == "seconds" then bad = t ~= "number" or not (v >= 0)
        elseif kind == "count" then bad = math_type(v) ~= "integer" or v < 0
        elseif kind == "count1" then bad = math_type(v) ~= "integer" or v < 1
        else bad = t ~= kind end
        if bad then
          local expected, got = KIND_EXPECTED[kind] or kind, type_name(v)
          if t == "number" and (kind == "seconds" or kind == "count" or kind == "count1") then
            -- the right type, out of range: name the value
            expected = kind == "seconds" and "number >= 0" or kind == "count" and "integer >= 0"
              or "integer >= 1"
            got = tostring(v)
          end
          arg_error(n, fmt("opts.%s: %s expected, got %s", k, expected, got), level)
        end
      end
    end
    return opts
  end

  local REASONS = {
    [100] = "Continue", [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
    [206] = "Partial Content", [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
    [304] = "Not Modified", [307] = "Temporary Redirect", [308] = "Permanent Redirect",
    [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
    [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict", [411] = "Length Required",
    [413] = "Content Too Large", [418] = "I'm a teapot", [429] = "Too Many Requests",
    [431] = "Request Header Fields Too Large", [500] = "Internal Server Error",
    [501] = "Not Implemented", [502] = "Bad Gateway", [503] = "Service Unavailable",
    [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
  }
  http.reasons = REASONS

  -- headers with case-insensitive lookup: stored lowercased
  local Headers = { __name = "luaio.http.Headers" }
  Headers.__index = function(t, k)
    if type(k) == "string" then return rawget(t, k:lower()) end
  end
  local function headers_of(t) return setmetatable(t or {}, Headers) end
  function http.headers(t)
    check_arg(t, 1, "table", 1, true)
    return headers_of(t)
  end

  local function decode_query(q)
    local t = {}
    if not q or q == "" then return t end
    for pair in q:gmatch("[^&]+") do
      local k, v = pair:match("^([^=]*)=?(.*)$")
      k, v = unescape(k, true), unescape(v, true)
      local old = t[k]
      if old == nil then t[k] = v
      elseif type(old) == "table" then old[#old + 1] = v
      else t[k] = { old, v } end
    end
    return t
  end
  function http.decode_query(q)
    check_arg(q, 1, "string", 1, true)
    return decode_query(q)
  end

  local function escape(s)
    return (tostring(s):gsub("[^%w%-%._~]", function(c) return fmt("%%%02X", c:byte()) end))
  end
  function http.escape(s)
    local t = type(s)
    if t ~= "string" and t ~= "number" then arg_error(1, "string expected, got " .. type_name(s)) end
    return escape(s)
  end

  local function http_date(t)
    return os.date("!%a, %d %b %Y %H:%M:%S GMT", t)
  end

  -- body framing shared by both sides ----------------------------------
  local function read_chunked(stream, max)
    local parts, total = {}, 0
    while true do
      local line = stream:readline()
      if not line then error(new_error("ProtocolError", "connection closed inside a chunked body"), 0) end
      local size, why = chunk_size(line)
      if not size then error(new_error("ProtocolError", why, { status = 400 }), 0) end
      if size == 0 then
        repeat                               -- trailers, ignored
          local t = stream:readline()
          if t == nil then break end
        until t == ""
        break
      end
      total = total + size
      if max and total > max then error(new_error("ProtocolError", "body too large", { status = 413 }), 0) end
      parts[#parts + 1] = stream:read_exactly(size)
      local crlf = stream:read_exactly(2)
      if crlf ~= "\r\n" then error(new_error("ProtocolError", "chunk not followed by CRLF", { status = 400 }), 0) end
    end
    return concat(parts)
  end

  -- head table | false at a clean EOF | nil, status, reason (read and parsed
  -- natively, where it lies in the read buffer; stray CRLFs before a request
  -- are skipped)
  local function read_head(stream, kind)
    return stream:_read_head(kind)
  end

  -- ===================================================================
  -- Server
  -- ===================================================================
  local App = {}
  App.__index = App
  App.__name = "luaio.http.App"

  -- the server's options (app(opts), listen's opts) that this file reads;
  -- start_server checks its own (backlog, reuseport, max_connections, tls)
  local SERVER_OPTS = { header_timeout = "seconds", max_body = "count", max_header = "count1",
    backlog = "count", max_connections = "count1" }

  function http.app(opts)
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

  -- A handler's headers as lines: a list value is sent as one line per item
  -- (Set-Cookie); a name that is not a token, or a value holding CR or LF
  -- (response splitting), is refused.
  local function header_block(headers)
    local out, has_type, has_length, has_host = {}, false, false, false
    for k, v in pairs(headers) do
      if type(k) ~= "string" or not k:find("^[%w!#$%%&'*+.^_`|~-]+$") then
        return nil, "bad header name " .. tostring(k)
      end
      local lk = k:lower()
      if lk == "content-type" then has_type = true end
      if lk == "content-length" then has_length = true end
      if lk == "host" then has_host = true end
      local items = type(v) == "table" and v or { v }
      for _, x in ipairs(items) do
        x = tostring(x)
        if x:find("[\r\n]") then return nil, "header " .. k .. " holds a line break" end
        out[#out + 1] = k .. ": " .. x .. "\r\n"
      end
    end
    return concat(out), has_type, has_length, has_host
  end

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
      (aio.now() - t0) * 1000))
  end

  -- one request: read, route, answer. Returns false when the connection ends.
  local function serve_request(app, stream, opts, peer)
    local head_timeout = opts.header_timeout
    local head, status, why
    if head_timeout then
      local ok, a, b, c = pcall(aio.timeout, head_timeout, read_head, stream, "request")
      if not ok then
        if is_error(a, "TimeoutError") then
          pcall(simple, stream, 408, nil, false)
          return false
        end
        error(a, 0)
      end
      head, status, why = a, b, c
    else
      head, status, why = read_head(stream, "request")
    end
    if head == false then return false end
    if not head then
      pcall(simple, stream, status, nil, false)
      return false
    end
    local t0 = opts.access_log and aio.now()
    local method = head.method
    local target = head.target
    local path, query = target, nil
    if target:find("[?#]") then path, query = target:match("^([^?#]*)%??([^#]*)") end
    if path == "" or path:sub(1, 1) ~= "/" then
      if head.target == "*" and method == "OPTIONS" then path = "*" else
        simple(stream, 400, nil, false)
        return false
      end
    end
    local max_body = opts.max_body or 1024 * 1024
    local length = head.content_length
    if length and length > max_body then
      simple(stream, 413, nil, false)
      return false
    end
    if head.expect_continue and (length or head.chunked) then stream:write("HTTP/1.1 100 Continue\r\n\r\n") end
    local body = ""
    if head.chunked then
      local ok, b = pcall(read_chunked, stream, max_body)
      if not ok then
        local st = type(b) == "table" and b.status or 400
        if is_error(b, "CancelledError") then error(b, 0) end
        pcall(simple, stream, st, nil, false)
        return false
      end
      body = b
    elseif length and length > 0 then
      local ok, b = pcall(stream.read_exactly, stream, length)
      if not ok then
        if is_error(b, "CancelledError") then error(b, 0) end
        return false
      end
      body = b
    end
    local keep_alive = head.keep_alive
    local req = setmetatable({ method = method, target = target, path = path, _query = query,
      headers = headers_of(head.headers), body = body, peer = peer, version = head.version }, Request)
    local route, params_or_status, allow = app:find(method, path)
    local resp_status, resp_headers, resp_body = 200, NO_HEADERS, ""
    if not route then
      req.params = {}
      resp_status = params_or_status
      if allow then resp_headers = { Allow = allow } end
      resp_body = fmt("%d %s\n", resp_status, REASONS[resp_status])
    else
      req.params = params_or_status
      local ok, b, st, hd = xpcall(route.handler, debug.traceback, req)
      if not ok then
        if is_error(b, "CancelledError") then error(b, 0) end
        io.stderr:write(fmt("luaio: handler for %s %s failed: %s\n", method, path, tostring(b)))
        resp_status, resp_body = 500, "500 Internal Server Error\n"
      else
        if st ~= nil then
          st = math.tointeger(st)
          if not st or st < 100 or st > 999 then
            io.stderr:write(fmt("luaio: handler for %s %s returned an invalid status\n", method, path))
            st = 500
            b = "500 Internal Server Error\n"
          end
        end
        resp_status = st or 200
        if type(hd) == "table" then resp_headers = hd end
        if type(b) == "table" then
          resp_body = json.encode(b)
          local typed = false
          for k in pairs(resp_headers) do if k:lower() == "content-type" then typed = true end end
          if not typed then
            if resp_headers == NO_HEADERS then resp_headers = {} end
            resp_headers["Content-Type"] = "application/json"
          end
        elseif b == nil then resp_body = ""
        else resp_body = tostring(b) end
      end
    end
    local sent, bad = send_response(stream, resp_status, resp_headers, resp_body, method == "HEAD", keep_alive)
    if not sent then
      io.stderr:write(fmt("luaio: handler for %s %s returned a bad header: %s\n", method, path, bad))
      resp_status, resp_body = 500, "500 Internal Server Error\n"
      send_response(stream, 500, NO_HEADERS, resp_body, method == "HEAD", keep_alive)
    end
    if opts.access_log then access_log(req, resp_status, #resp_body, t0) end
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
    return aio.start_server(function(stream) app:handle_connection(stream, opts) end, host, port, opts)
  end

  -- ===================================================================
  -- Client
  -- ===================================================================
  local function parse_url(url)
    local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
    if not scheme then error(new_error("ValueError", "not an absolute URL: " .. url), 3) end
    scheme = scheme:lower()
    if scheme ~= "http" and scheme ~= "https" then
      error(new_error("ProtocolError", "unsupported URL scheme: " .. scheme), 3)
    end
    local authority, target = rest:match("^([^/?#]*)(.*)$")
    if authority:find("[%c%s]") then error(new_error("ValueError", "bad host in URL: " .. url), 3) end
    if authority:find("@", 1, true) then
      error(new_error("ValueError", "user:password@ in a URL is not supported (send an Authorization header): " .. url), 3)
    end
    target = target:gsub("#.*$", "")
    if target == "" then target = "/" elseif target:sub(1, 1) == "?" then target = "/" .. target end
    -- what a request line cannot hold is percent-encoded, as browsers and requests do
    target = target:gsub("[%c%s\"<>\\^`{|}\128-\255]", function(c) return fmt("%%%02X", c:byte()) end)
    local host, port = authority:match("^%[([^%]]+)%]:?(%d*)$")
    if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
    if not host or host == "" then error(new_error("ValueError", "URL without a host: " .. url), 3) end
    local default_port = scheme == "https" and 443 or 80
    port = tonumber(port) or default_port
    if port < 1 or port > 65535 then error(new_error("ValueError", "URL with a bad port: " .. url), 3) end
    local named = host:find(":", 1, true) and ("[" .. host .. "]") or host
    local path, query = target:match("^([^?]*)%??(.*)$")
    return { scheme = scheme, tls = scheme == "https", host = host, port = port, target = target,
             path = path, query = target:find("?", 1, true) and query or nil,
             authority = (port == default_port) and named or (named .. ":" .. port) }
  end
  function http.parse_url(url)
    check_arg(url, 1, "string")
    return parse_url(url)
  end

  local Response = {}
  Response.__index = Response
  Response.__name = "luaio.http.Response"
  function Response:json()
    if getmetatable(self) ~= Response then check_self(self, Response) end
    return json.decode(self.body)
  end
  function Response:raise_for_status()
    if getmetatable(self) ~= Response then check_self(self, Response) end
    if self.status >= 400 then
      error(new_error("HTTPError", fmt("%d %s for %s", self.status, self.reason, self.url), { status = self.status, response = self }), 2)
    end
    return self
  end
  function Response:ok()
    if getmetatable(self) ~= Response then check_self(self, Response) end
    return self.status < 400
  end

  local Session = {}
  Session.__index = Session
  Session.__name = "luaio.http.Session"

  local SESSION_OPTS = { max_connections = "count1", timeout = "seconds", headers = "table", tls = "tls" }

  -- opts.headers: names that are tokens, values without line breaks
  local function check_headers(headers, n, level)
    if headers == nil then return end
    local ok, why = header_block(headers)
    if not ok then arg_error(n, "opts.headers: " .. why, (level or 1) + 1) end
  end

  local function new_session(opts)
    return setmetatable({ _idle = {}, _opts = opts, _sem = aio.Semaphore(opts.max_connections or 100),
      _closed = false, headers = opts.headers or {}, timeout = opts.timeout, connections_made = 0 }, Session)
  end

  function http.Session(opts)
    opts = check_opts(opts, 1, SESSION_OPTS)
    check_headers(opts.headers, 1)
    return new_session(opts)
  end

  function Session:close()
    if getmetatable(self) ~= Session then check_self(self, Session) end
    self._closed = true
    for _, list in pairs(self._idle) do
      for _, s in ipairs(list) do s:close() end
    end
    self._idle = {}
  end
  Session.__close = function(self) return Session.close(self) end

  -- pooled connections are told apart by scheme, host, port and TLS settings
  local function tls_key(tls)
    if type(tls) ~= "table" then return "" end
    local parts = {}
    for k, v in pairs(tls) do
      parts[#parts + 1] = tostring(k) .. "=" .. (type(v) == "table" and concat(v, ",") or tostring(v))
    end
    table.sort(parts)
    return concat(parts, ";")
  end

  local function checkout(self, u, tls)
    local key = u.scheme .. "://" .. u.host .. ":" .. u.port
    if u.tls then key = key .. "|" .. tls_key(tls) end
    local list = self._idle[key]
    while list and #list > 0 do
      local s = table.remove(list)
      if not s:closed() then
        -- a pooled connection the server closed shows EOF or data: drop it
        local pending = s:buffered()
        if pending == 0 then return s, key, true end
        s:close()
      end
    end
    self.connections_made = self.connections_made + 1
    return aio.open_connection(u.host, u.port, u.tls and { tls = tls or true } or nil), key, false
  end

  local function checkin(self, key, s)
    if self._closed then s:close() return end
    local list = self._idle[key] or {}
    self._idle[key] = list
    list[#list + 1] = s
  end

  -- headers were checked by Session:request; a Host of the caller's replaces ours
  local function send_request(s, method, u, headers, body)
    local lines, _, has_length, has_host = header_block(headers)
    s:write(method, " ", u.target, " HTTP/1.1\r\n", has_host and "" or ("Host: " .. u.authority .. "\r\n"),
      lines, (body ~= nil and not has_length) and ("Content-Length: " .. #body .. "\r\n") or "", "\r\n",
      body or "")
  end

  local function read_response(s, method)
    local head, status, why = read_head(s, "response")
    if head == false then
      error(new_error("ConnectionError", "the server closed the connection without answering", { code = "ECONNRESET" }), 0)
    end
    if not head then error(new_error("ProtocolError", "bad response head: " .. tostring(why)), 0) end
    while head.status >= 100 and head.status < 200 and head.status ~= 101 do   -- interim responses
      head, status, why = read_head(s, "response")
      if not head then error(new_error("ProtocolError", "bad response head: " .. tostring(why)), 0) end
    end
    local body = ""
    local st = head.status
    local reusable = head.keep_alive
    if method == "HEAD" or st == 204 or st == 304 then body = ""
    elseif head.chunked then body = read_chunked(s)
    elseif head.content_length then body = s:read_exactly(head.content_length)
    else
      body = s:read_all()                   -- delimited by the end of the connection
      reusable = false
    end
    return head, body, reusable
  end

  local function merged_headers(self, opts)
    local h = { ["User-Agent"] = "luaio/" .. "0.1" }
    for k, v in pairs(self.headers) do h[k] = v end
    if opts.headers then for k, v in pairs(opts.headers) do h[k] = v end end
    return h
  end

  local function resolve(base, location)
    if location:match("^%a[%w+.-]*://") then return location end
    local u = parse_url(base)
    local prefix = u.scheme .. "://" .. u.authority
    if location:sub(1, 2) == "//" then return u.scheme .. ":" .. location end
    if location:sub(1, 1) == "/" then return prefix .. location end
    local dir = u.target:gsub("[?#].*$", ""):match("^(.*/)") or "/"
    return prefix .. dir .. location
  end

  local function response_of(head, body, url)
    return setmetatable({ status = head.status, reason = head.reason, headers = headers_of(head.headers),
      body = body, url = url, version = head.version }, Response)
  end

  local function perform(self, method, url, opts)
    method = method:upper()
    local body = opts.body
    local headers = merged_headers(self, opts)
    if opts.json ~= nil then
      body = json_bodies[opts] or json.encode(opts.json)
      local typed = false
      for k in pairs(headers) do if k:lower() == "content-type" then typed = true end end
      if not typed then headers["Content-Type"] = "application/json" end
    end
    local max_redirects = opts.max_redirects or 5     -- 0: redirects are not followed
    local redirects = max_redirects
    while true do
      local u = parse_url(url)
      local _ <close> = self._sem:acquire()   -- one connection slot per request
      local head, resp_body
      for attempt = 1, 2 do
        local s, key, reused = checkout(self, u, opts.tls or self._opts.tls)
        local ok, a, b, c = pcall(function()
          send_request(s, method, u, headers, body)
          return read_response(s, method)
        end)
        if ok then
          head, resp_body = a, b
          if c then checkin(self, key, s) else s:close() end
          break
        end
        s:close()
        -- a reused connection may have been closed by the server meanwhile: retry once on a new one
        if not (reused and attempt == 1 and (is_error(a, "ConnectionError") or is_error(a, "IncompleteReadError") or is_error(a, "OSError"))) then
          error(a, 0)
        end
      end
      local st = head.status
      local location = head.headers.location
      local follow = location and (st == 301 or st == 302 or st == 303 or st == 307 or st == 308)
        and max_redirects > 0
      if follow and redirects == 0 then     -- as requests, aiohttp, curl -L: exceeding is an error
        local resp = response_of(head, resp_body, url)
        error(new_error("HTTPError", ("too many redirects (more than %d), last %d to %s"):format(
          max_redirects, st, location), { status = st, url = url, response = resp }), 0)
      end
      if follow then
        redirects = redirects - 1
        url = resolve(url, location)
        if st == 303 or ((st == 301 or st == 302) and method == "POST") then
          method = method == "HEAD" and "HEAD" or "GET"
          body = nil
          headers["Content-Type"] = nil
        end
      else
        return response_of(head, resp_body, url)
      end
    end
  end

  -- A request's arguments, checked for the public function `level` frames
  -- up (1: the caller of check_request); mi, ui, oi: their argument numbers.
  local REQUEST_OPTS = { headers = "table", body = "string", timeout = "seconds",
    max_redirects = "count", tls = "tls" }
  local function check_request(method, mi, url, ui, opts, oi, level)
    level = (level or 1) + 1
    if mi then
      if type(method) ~= "string" then arg_error(mi, "string expected, got " .. type_name(method), level) end
      if not method:find("^[%w!#$%%&'*+.^_`|~-]+$") then
        arg_error(mi, fmt("method token expected, got %q", method), level)
      end
    end
    if type(url) ~= "string" then arg_error(ui, "string expected, got " .. type_name(url), level) end
    opts = check_opts(opts, oi, REQUEST_OPTS, level)
    check_headers(opts.headers, oi, level)
    if opts.json ~= nil then      -- encoded here, so that a value JSON cannot hold is the caller's error
      local ok, body = pcall(json.encode, opts.json)
      if not ok then arg_error(oi, "opts.json: " .. tostring(body), level) end
      json_bodies[opts] = body
    end
    return opts
  end

  local function request(self, method, url, opts)
    if self._closed then error(new_error("RuntimeError", "the session is closed"), 3) end
    local timeout = opts.timeout or self.timeout
    if timeout then return aio.timeout(timeout, perform, self, method, url, opts) end
    return perform(self, method, url, opts)
  end

  function Session:request(method, url, opts)
    if getmetatable(self) ~= Session then check_self(self, Session) end
    opts = check_request(method, 2, url, 3, opts, 4)
    need_task("session:request")
    return request(self, method, url, opts)
  end
  function Session:get(url, opts)
    if getmetatable(self) ~= Session then check_self(self, Session) end
    opts = check_request(nil, nil, url, 2, opts, 3)
    need_task("session:get")
    return request(self, "GET", url, opts)
  end
  function Session:post(url, opts)
    if getmetatable(self) ~= Session then check_self(self, Session) end
    opts = check_request(nil, nil, url, 2, opts, 3)
    need_task("session:post")
    return request(self, "POST", url, opts)
  end

  -- one-shot requests: a session of their own, closed afterwards
  local function one_shot(method, url, opts)
    local session <close> = new_session({})
    return request(session, method, url, opts)
  end
  function http.request(method, url, opts)
    opts = check_request(method, 1, url, 2, opts, 3)
    need_task("aio.http.request")
    return one_shot(method, url, opts)
  end
  function http.get(url, opts)
    opts = check_request(nil, nil, url, 1, opts, 2)
    need_task("aio.http.get")
    return one_shot("GET", url, opts)
  end
  function http.post(url, opts)
    opts = check_request(nil, nil, url, 1, opts, 2)
    need_task("aio.http.post")
    return one_shot("POST", url, opts)
  end
end
