-- The HTTP/1.1 client (API.md §6, §6b): sessions with a connection pool per
-- scheme, host, port and TLS settings; requests with one retry on a reused
-- connection; bodies read whole (up to max_body) or streamed; gzip and
-- deflate decoded; redirects that do not carry credentials to another
-- origin; an optional cookie jar. Returns { Session, request, get, ... }.
local core = require "luaio.core"
local common = require "luaio.http.common"
local body = require "luaio.http.body"
local open_connection = require("luaio.streams").open_connection
local with_timeout = require("luaio.combinators").timeout   -- aio.timeout
local new_semaphore = require("luaio.sync").Semaphore
local json = require "luaio.json"
local resources = require "luaio.resources"
local check_self = require("luaio.check").check_self

-- the real metatable: a __metatable field cannot make a table pass for ours
local getmetatable = debug.getmetatable
local is_error, new_error = core.is_error, core.error
local arg_error, type_name, need_task = core.arg_error, core.type_name, core.need_task
local check_opts, headers_of, parse_url = common.check_opts, common.headers_of, common.parse_url
local read_head, header_block, url_join = common.read_head, common.header_block, common.url_join
local encode_query = common.encode_query
local concat, type, tostring, error, pcall = table.concat, type, tostring, error, pcall
local setmetatable = setmetatable
local fmt = string.format

local json_bodies = setmetatable({}, { __mode = "k" })   -- request opts -> its json, encoded
local DEFAULT_MAX_BODY = 64 * 1024 * 1024

local M = {}

-- Responses -------------------------------------------------------------
local Response = {}
Response.__index = Response
Response.__name = "luaio.http.Response"

function Response:json()
  if getmetatable(self) ~= Response then check_self(self, Response) end
  if self.body == nil then self.body = self:read_all() end
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

-- the connection goes back to the pool once the body was read to its end
local function body_finished(self)
  local conn = self._conn
  if not conn then return end
  self._conn = nil
  if self._reader:done() and self._reusable then conn.checkin() else conn.stream:close() end
  conn.release()
end

-- resp:read([n]) ⏸ -> the next piece of a streamed body, nil at its end
function Response:read(n)
  if getmetatable(self) ~= Response then check_self(self, Response) end
  if n ~= nil and (math.type(n) ~= "integer" or n < 1) then
    arg_error(2, "byte count (integer >= 1) expected, got " .. tostring(n))
  end
  need_task("resp:read")
  local r = self._reader
  if not r then
    if self.body == nil or self._at then return nil end    -- closed, or a whole body handed out
    self._at = true
    return self.body ~= "" and self.body or nil
  end
  local ok, piece
  if self._timeout then ok, piece = pcall(with_timeout, self._timeout, r.read, r, n)
  else ok, piece = pcall(r.read, r, n) end
  if not ok then
    if not is_error(piece, "CancelledError") then body_finished(self) end
    error(piece, 0)
  end
  if piece == nil then body_finished(self) end
  return piece
end

function Response:chunks()
  if getmetatable(self) ~= Response then check_self(self, Response) end
  return function() return Response.read(self) end
end

-- resp:read_all() ⏸ -> the rest of the body
function Response:read_all()
  if getmetatable(self) ~= Response then check_self(self, Response) end
  need_task("resp:read_all")
  if not self._reader then
    if self._at then return "" end
    self._at = true
    return self.body or ""
  end
  local parts = {}
  for piece in self:chunks() do parts[#parts + 1] = piece end
  return concat(parts)
end

-- resp:close(): a body not read to its end closes the connection
function Response:close()
  if getmetatable(self) ~= Response then check_self(self, Response) end
  if self._conn then
    self._conn.stream:close()
    self._conn.release()
    self._conn = nil
  end
end
Response.__close = function(self)
  if getmetatable(self) ~= Response then check_self(self, Response) end
  Response.close(self)
end

-- Sessions --------------------------------------------------------------
local Session = {}
Session.__index = Session
Session.__name = "luaio.http.Session"

local SESSION_OPTS = { max_connections = "count1", timeout = "seconds", headers = "table", tls = "tls",
  cookies = "boolean" }

-- opts.headers: names that are tokens, values without line breaks
local function check_headers(headers, n, level)
  if headers == nil then return end
  local ok, why = header_block(headers)
  if not ok then arg_error(n, "opts.headers: " .. why, (level or 1) + 1) end
end

local function new_session(opts)
  return setmetatable({ _idle = {}, _opts = opts, _sem = new_semaphore(opts.max_connections or 100),
    _closed = false, headers = opts.headers or {}, timeout = opts.timeout, connections_made = 0,
    cookies = opts.cookies and require("luaio.http.cookies").jar() or nil }, Session)
end

function M.Session(opts)
  opts = check_opts(opts, 1, SESSION_OPTS)
  check_headers(opts.headers, 1)
  local session = new_session(opts)
  resources.track(session, "HTTP session")
  return session
end

function Session:close()
  if getmetatable(self) ~= Session then check_self(self, Session) end
  self._closed = true
  resources.untrack(self)
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
      if s:buffered() == 0 then return s, key, true end
      s:close()
    end
  end
  self.connections_made = self.connections_made + 1
  return open_connection(u.host, u.port, u.tls and { tls = tls or true } or nil), key, false
end

local function checkin(self, key, s)
  if self._closed then s:close() return end
  local list = self._idle[key] or {}
  self._idle[key] = list
  list[#list + 1] = s
end

-- headers were checked by the request's checks; a Host of the caller's replaces ours
local function send_request(s, method, u, headers, req_body)
  local lines, _, has_length, has_host = header_block(headers)
  s:write(method, " ", u.target, " HTTP/1.1\r\n", has_host and "" or ("Host: " .. u.authority .. "\r\n"),
    lines, (req_body ~= nil and not has_length) and ("Content-Length: " .. #req_body .. "\r\n") or "", "\r\n",
    req_body or "")
end

-- the final head (interim 1xx skipped)
local function read_response_head(s)
  while true do
    local head, _, why = read_head(s, "response")
    if head == false then
      error(new_error("ConnectionError", "the server closed the connection without answering", { code = "ECONNRESET" }), 0)
    end
    if not head then error(new_error("ProtocolError", "bad response head: " .. tostring(why)), 0) end
    if head.status >= 200 or head.status == 101 then return head end
  end
end

-- a reader for the response's body (nil when it has none); -> reader, reusable
local function body_reader(s, method, head, opts)
  local st = head.status
  if method == "HEAD" or st == 204 or st == 304 or st < 200 then return nil, head.keep_alive end
  local max = opts.max_body or DEFAULT_MAX_BODY
  local length = head.content_length
  if length and length > max then
    error(new_error("HTTPError", fmt("response body too large (%d bytes, max_body %d)", length, max),
      { status = st }), 0)
  end
  local r
  if head.chunked then r = body.reader(s, "chunked", nil, max)
  elseif length then r = body.reader(s, "length", length, max)
  else r = body.reader(s, "eof", nil, max) end
  local coding = head.headers["content-encoding"]
  if coding and opts.decompress ~= false then
    coding = coding:lower():match("^%s*(.-)%s*$")
    if coding == "gzip" or coding == "x-gzip" or coding == "deflate" then r:decode(coding == "deflate" and "deflate" or "gzip") end
  end
  return r, head.keep_alive and (head.chunked or length ~= nil)
end

local function merged_headers(self, opts)
  local h = { ["User-Agent"] = "luaio/0.1" }
  for k, v in pairs(self.headers) do h[k] = v end
  if opts.headers then for k, v in pairs(opts.headers) do h[k] = v end end
  return h
end

local function has_header(h, name)
  for k in pairs(h) do if k:lower() == name then return k end end
end

local function origin(u) return u.scheme .. "://" .. u.host .. ":" .. u.port end

-- credentials do not follow a redirect to another origin
local CREDENTIALS = { authorization = true, cookie = true, ["proxy-authorization"] = true }
local function drop_credentials(headers)
  for k in pairs(headers) do
    if CREDENTIALS[k:lower()] then headers[k] = nil end
  end
end

local function response_of(head, url)
  return setmetatable({ status = head.status, reason = head.reason,
    headers = headers_of(head.headers, head.repeated), url = url, version = head.version }, Response)
end

-- one exchange on a pooled connection (retried once on a fresh one when a
-- reused connection turns out closed): -> head, stream, pool key
local function exchange(self, method, u, headers, req_body, tls)
  for attempt = 1, 2 do
    local s, key, reused = checkout(self, u, tls)
    local ok, head = pcall(function()
      send_request(s, method, u, headers, req_body)
      return read_response_head(s)
    end)
    if ok then return head, s, key end
    s:close()
    if not (reused and attempt == 1 and (is_error(head, "ConnectionError")
            or is_error(head, "IncompleteReadError") or is_error(head, "OSError"))) then
      error(head, 0)
    end
  end
end

local function store_cookies(self, u, head)
  if not self.cookies then return end
  local lines = head.repeated and head.repeated["set-cookie"]
  if not lines then
    local one = head.headers["set-cookie"]
    lines = one and { one }
  end
  if lines then self.cookies:store(u, lines) end
end

local function add_cookies(self, u, headers)
  if not self.cookies or has_header(headers, "cookie") then return end
  local line = self.cookies:header(u)
  if line then headers.Cookie = line end
end

local function is_redirect(st) return st == 301 or st == 302 or st == 303 or st == 307 or st == 308 end

local function perform(self, method, url, opts)
  method = method:upper()
  local req_body = opts.body
  local headers = merged_headers(self, opts)
  if opts.json ~= nil then
    req_body = json_bodies[opts] or json.encode(opts.json)
    if not has_header(headers, "content-type") then headers["Content-Type"] = "application/json" end
  elseif opts.form ~= nil then
    req_body = encode_query(opts.form, 1)
    if not has_header(headers, "content-type") then headers["Content-Type"] = "application/x-www-form-urlencoded" end
  end
  -- sent with decompress = false too: the raw coded body is what a proxy passes on
  if not has_header(headers, "accept-encoding") then
    headers["Accept-Encoding"] = "gzip, deflate"
  end
  if opts.params then
    url = url:gsub("#.*$", "")
    local q = encode_query(opts.params, 1)
    if q ~= "" then url = url .. (url:find("?", 1, true) and "&" or "?") .. q end
  end
  local max_redirects = opts.max_redirects or 5     -- 0: redirects are not followed
  local redirects = max_redirects
  local u = parse_url(url)
  while true do
    local slot = self._sem:acquire()                -- one connection slot per request
    local sent = headers
    if self.cookies and not has_header(headers, "cookie") then
      sent = {}
      for k, v in pairs(headers) do sent[k] = v end
      add_cookies(self, u, sent)
    end
    local ok, head, s, key = pcall(exchange, self, method, u, sent, req_body, opts.tls or self._opts.tls)
    if not ok then slot:release() error(head, 0) end
    store_cookies(self, u, head)
    local resp = response_of(head, url)
    local ok2, reader, reusable = pcall(body_reader, s, method, head, opts)
    if not ok2 then s:close() slot:release() error(reader, 0) end
    local conn = { stream = s, release = function() slot:release() end,
      checkin = function() checkin(self, key, s) end }
    -- a streamed body's reads have the request's timeout each
    resp._reader, resp._reusable, resp._conn = reader, reusable, conn
    resp._timeout = opts.stream and (opts.timeout or self.timeout) or nil
    if not reader then
      resp._conn = nil
      if reusable then conn.checkin() else s:close() end
      slot:release()
      resp.body = ""
    end
    local st, location = head.status, head.headers.location
    local follow = location and is_redirect(st) and max_redirects > 0
    if follow and redirects == 0 then     -- as requests, aiohttp, curl -L: exceeding is an error
      resp:close()
      error(new_error("HTTPError", ("too many redirects (more than %d), last %d to %s"):format(
        max_redirects, st, location), { status = st, url = url, response = resp }), 0)
    end
    if not follow then
      if not opts.stream and reader then
        local ok3, whole = pcall(Response.read_all, resp)
        if not ok3 then resp:close() error(whole, 0) end
        resp.body, resp._reader, resp._at = whole, nil, nil
      end
      return resp
    end
    -- a redirect: its body is dropped (read when small, else the connection closed)
    if reader and head.content_length and head.content_length <= 65536 then pcall(Response.read_all, resp) end
    resp:close()
    redirects = redirects - 1
    local next_url = url_join(url, location)
    local nu = parse_url(next_url)
    if u.scheme == "https" and nu.scheme == "http" and not opts.allow_downgrade then
      error(new_error("HTTPError", fmt("redirect from https to http refused (%s); opts.allow_downgrade allows it",
        next_url), { status = st, url = url, response = resp }), 0)
    end
    if origin(nu) ~= origin(u) then drop_credentials(headers) end
    url, u = next_url, nu
    if st == 303 or ((st == 301 or st == 302) and method == "POST") then
      method = method == "HEAD" and "HEAD" or "GET"
      req_body = nil
      local ct = has_header(headers, "content-type")
      if ct then headers[ct] = nil end
    end
  end
end

-- A request's arguments, checked for the public function `level` frames
-- up (1: the caller of check_request); mi, ui, oi: their argument numbers.
local REQUEST_OPTS = { headers = "table", body = "string", timeout = "seconds",
  max_redirects = "count", tls = "tls", params = "table", form = "table", max_body = "count",
  stream = "boolean", decompress = "boolean", allow_downgrade = "boolean" }
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
  local bodies = (opts.body ~= nil and 1 or 0) + (opts.json ~= nil and 1 or 0) + (opts.form ~= nil and 1 or 0)
  if bodies > 1 then arg_error(oi, "only one of opts.body, opts.json and opts.form", level) end
  if opts.json ~= nil then      -- encoded here, so that a value JSON cannot hold is the caller's error
    local ok, encoded = pcall(json.encode, opts.json)
    if not ok then arg_error(oi, "opts.json: " .. tostring(encoded), level) end
    json_bodies[opts] = encoded
  end
  for _, field in ipairs { "params", "form" } do
    if opts[field] ~= nil then
      local ok, why = pcall(encode_query, opts[field], 1)
      if not ok then arg_error(oi, "opts." .. field .. ": " .. tostring(why):gsub("^.-encode_query: ", ""), level) end
    end
  end
  return opts
end

local function request(self, method, url, opts)
  if self._closed then error(new_error("RuntimeError", "the session is closed"), 3) end
  local timeout = opts.timeout or self.timeout
  if timeout then return with_timeout(timeout, perform, self, method, url, opts) end
  return perform(self, method, url, opts)
end

function Session:request(method, url, opts)
  if getmetatable(self) ~= Session then check_self(self, Session) end
  opts = check_request(method, 2, url, 3, opts, 4)
  need_task("session:request")
  return request(self, method, url, opts)
end

-- one-shot requests: a session of their own, closed afterwards (a streamed
-- response keeps its connection until read or closed)
local function one_shot(method, url, opts)
  local session <close> = new_session({})
  return request(session, method, url, opts)
end
function M.request(method, url, opts)
  opts = check_request(method, 1, url, 2, opts, 3)
  need_task("aio.http.request")
  return one_shot(method, url, opts)
end

for _, m in ipairs { "get", "post", "put", "patch", "delete", "head" } do
  local METHOD, sname, aname = m:upper(), "session:" .. m, "aio.http." .. m
  Session[m] = function(self, url, opts)
    if getmetatable(self) ~= Session then check_self(self, Session) end
    opts = check_request(nil, nil, url, 2, opts, 3)
    need_task(sname)
    return request(self, METHOD, url, opts)
  end
  M[m] = function(url, opts)
    opts = check_request(nil, nil, url, 1, opts, 2)
    need_task(aname)
    return one_shot(METHOD, url, opts)
  end
end

return M
