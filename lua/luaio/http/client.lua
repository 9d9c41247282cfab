-- The HTTP/1.1 client (API.md §6): sessions with a connection pool per
-- scheme, host, port and TLS settings, requests with one retry on a reused
-- connection, redirects. Returns { Session, request, get, post } for aio.http.
local core = require "luaio.core"
local common = require "luaio.http.common"
local open_connection = require("luaio.streams").open_connection
local with_timeout = require("luaio.combinators").timeout   -- aio.timeout
local new_semaphore = require("luaio.sync").Semaphore
local json = require "luaio.json"
local check_self = require("luaio.check").check_self

-- the real metatable: a __metatable field cannot make a table pass for ours
local getmetatable = debug.getmetatable
local is_error, new_error = core.is_error, core.error
local arg_error, type_name, need_task = core.arg_error, core.type_name, core.need_task
local check_opts, headers_of, parse_url = common.check_opts, common.headers_of, common.parse_url
local read_chunked, read_head, header_block = common.read_chunked, common.read_head, common.header_block
local concat, type, tostring, error, pcall = table.concat, type, tostring, error, pcall
local setmetatable = setmetatable
local fmt = string.format

local json_bodies = setmetatable({}, { __mode = "k" })   -- request opts -> its json, encoded

local M = {}

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
  return setmetatable({ _idle = {}, _opts = opts, _sem = new_semaphore(opts.max_connections or 100),
    _closed = false, headers = opts.headers or {}, timeout = opts.timeout, connections_made = 0 }, Session)
end

function M.Session(opts)
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
  return open_connection(u.host, u.port, u.tls and { tls = tls or true } or nil), key, false
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
  if timeout then return with_timeout(timeout, perform, self, method, url, opts) end
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
function M.request(method, url, opts)
  opts = check_request(method, 1, url, 2, opts, 3)
  need_task("aio.http.request")
  return one_shot(method, url, opts)
end
function M.get(url, opts)
  opts = check_request(nil, nil, url, 1, opts, 2)
  need_task("aio.http.get")
  return one_shot("GET", url, opts)
end
function M.post(url, opts)
  opts = check_request(nil, nil, url, 1, opts, 2)
  need_task("aio.http.post")
  return one_shot("POST", url, opts)
end

return M
