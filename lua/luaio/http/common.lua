-- HTTP pieces both sides use (API.md §6): argument checks, reason phrases,
-- headers, query strings, body framing (chunked) and head reading, header
-- blocks, URL parsing. Heads are read whole by the stream (native search for
-- the blank line, within a limit) and parsed in C (http_parse.c).
-- Returns the helpers for server.lua and client.lua, and in `api` the public
-- names that http.lua puts into aio.http.
local core = require "luaio.core"

local unescape = core.http_unescape
local new_error, arg_error, type_name = core.error, core.arg_error, core.type_name
local concat, type, tostring, error = table.concat, type, tostring, error
local setmetatable, rawget, math_type = setmetatable, rawget, math.type
local fmt = string.format

local M = {}
local api = {}

-- s without leading and trailing spaces and tabs (linear: the pattern
-- "^%s*(.-)%s*$" is quadratic on long inner runs of spaces)
function M.trim(s)
  local i = s:find("[^ \t]")
  if not i then return "" end
  local j = #s
  while true do
    local c = s:byte(j)
    if c ~= 32 and c ~= 9 then break end
    j = j - 1
  end
  return s:sub(i, j)
end   -- aio.http.reasons, .headers, .decode_query, .escape, .parse_url
M.api = api

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
      if kind == "any" then bad = false     -- the caller checks it
      elseif kind == "tls" then bad = t ~= "table" and t ~= "boolean"
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
M.check_arg, M.check_opts = check_arg, check_opts

local REASONS = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [206] = "Partial Content", [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
  [304] = "Not Modified", [307] = "Temporary Redirect", [308] = "Permanent Redirect",
  [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict", [411] = "Length Required",
  [412] = "Precondition Failed", [413] = "Content Too Large", [415] = "Unsupported Media Type",
  [416] = "Range Not Satisfiable", [402] = "Payment Required", [406] = "Not Acceptable",
  [410] = "Gone", [414] = "URI Too Long", [417] = "Expectation Failed", [421] = "Misdirected Request",
  [422] = "Unprocessable Content", [423] = "Locked", [424] = "Failed Dependency", [425] = "Too Early",
  [426] = "Upgrade Required", [428] = "Precondition Required", [451] = "Unavailable For Legal Reasons",
  [101] = "Switching Protocols", [203] = "Non-Authoritative Information", [205] = "Reset Content",
  [407] = "Proxy Authentication Required", [506] = "Variant Also Negotiates", [507] = "Insufficient Storage",
  [508] = "Loop Detected", [511] = "Network Authentication Required", [418] = "I'm a teapot", [429] = "Too Many Requests",
  [431] = "Request Header Fields Too Large", [500] = "Internal Server Error",
  [501] = "Not Implemented", [502] = "Bad Gateway", [503] = "Service Unavailable",
  [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
}
M.REASONS, api.reasons = REASONS, REASONS

-- headers with case-insensitive lookup: stored lowercased; a field that
-- came several times is joined with ", " and kept whole for get_all
local repeated_of = setmetatable({}, { __mode = "k" })
local Headers = { __name = "luaio.http.Headers" }
-- headers:get_all(name) -> array of every value of that field (each Set-Cookie)
local function get_all(self, name)
  if type(name) ~= "string" then arg_error(1, "string expected, got " .. type_name(name)) end
  name = name:lower()
  local list = repeated_of[self] and repeated_of[self][name]
  if list then return table.move(list, 1, #list, 1, {}) end
  local v = rawget(self, name)
  return v ~= nil and { v } or {}
end
Headers.__index = function(t, k)
  if type(k) == "string" then
    local v = rawget(t, k:lower())
    if v == nil and k == "get_all" then return get_all end
    return v
  end
end
local function headers_of(t, repeated)
  t = setmetatable(t or {}, Headers)
  if repeated then repeated_of[t] = repeated end
  return t
end
M.headers_of = headers_of
function api.headers(t)
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
M.decode_query = decode_query
function api.decode_query(q)
  check_arg(q, 1, "string", 1, true)
  return decode_query(q)
end

local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return fmt("%%%02X", c:byte()) end))
end
M.escape = escape
function api.escape(s)
  local t = type(s)
  if t ~= "string" and t ~= "number" then arg_error(1, "string expected, got " .. type_name(s)) end
  return escape(s)
end

-- encode_query(t) -> "a=1&b=x%20y": keys sorted (the same table, the same
-- string); an array value repeats its key; values are strings, numbers or
-- booleans
local function encode_query(t, level)
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= "string" and type(k) ~= "number" then
      error(fmt("encode_query: key of type %s", type_name(k)), level + 1)
    end
    keys[#keys + 1] = k
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  local function add(k, v)
    local tv = type(v)
    if tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
      error(fmt("encode_query: value of %s is a %s", tostring(k), type_name(v)), level + 2)
    end
    out[#out + 1] = escape(k) .. "=" .. escape(tostring(v))
  end
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "table" then for _, x in ipairs(v) do add(k, x) end else add(k, v) end
  end
  return concat(out, "&")
end
M.encode_query = encode_query
function api.encode_query(t)
  check_arg(t, 1, "table")
  local ok, s = pcall(encode_query, t, 1)
  if not ok then arg_error(1, (tostring(s):gsub("^.-encode_query: ", ""))) end
  return s
end

-- head table | false at a clean EOF | nil, status, reason (read and parsed
-- natively, where it lies in the read buffer)
function M.read_head(stream, kind)
  return stream:_read_head(kind)
end

-- Headers (a handler's, a request's) as lines: a list value is sent as one line per item
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
      local tx = type(x)
      if tx ~= "string" and tx ~= "number" then
        return nil, "header " .. k .. ": string expected, got " .. type_name(x)
      end
      x = tostring(x)
      if x:find("[\r\n]") then return nil, "header " .. k .. " holds a line break" end
      if x:find("\0", 1, true) then return nil, "header " .. k .. " holds a NUL byte" end
      out[#out + 1] = k .. ": " .. x .. "\r\n"
    end
  end
  return concat(out), has_type, has_length, has_host
end
M.header_block = header_block

-- URLs -----------------------------------------------------------------
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
M.parse_url = parse_url
function api.parse_url(url)
  check_arg(url, 1, "string")
  return parse_url(url)
end

-- RFC 3986 §5.2.4: "/a/b/../c/./d" -> "/a/c/d"
local function remove_dot_segments(path)
  local out = {}
  local segs = {}
  for seg in (path .. "/"):gmatch("([^/]*)/") do segs[#segs + 1] = seg end
  -- the last piece: what follows the last "/" (gmatch above added one)
  for i, seg in ipairs(segs) do
    if seg == ".." then
      if #out > 1 then out[#out] = nil end
      if i == #segs then out[#out + 1] = "" end
    elseif seg == "." then
      if i == #segs then out[#out + 1] = "" end
    else
      out[#out + 1] = seg
    end
  end
  local joined = concat(out, "/")
  if path:sub(1, 1) == "/" and joined:sub(1, 1) ~= "/" then joined = "/" .. joined end
  return joined
end

-- url_join(base, ref): ref resolved against base (RFC 3986 §5.2), as a
-- browser follows a link or a Location header
local function url_join(base, ref)
  if ref:match("^%a[%w+.-]*:") then return ref end
  local scheme, authority, path, query = base:match("^(%a[%w+.-]*):(//[^/?#]*)([^?#]*)%??([^#]*)")
  if not scheme then error(new_error("ValueError", "not an absolute URL: " .. base), 3) end
  local has_query = base:match("^[^#]*%?") ~= nil
  local rpath, rrest = ref:match("^([^?#]*)(.*)$")
  if ref:sub(1, 2) == "//" then return scheme .. ":" .. ref end
  if rpath == "" then
    if rrest:sub(1, 1) == "?" then return scheme .. ":" .. authority .. path .. rrest end
    return scheme .. ":" .. authority .. path .. (has_query and ("?" .. query) or "") .. rrest
  end
  local merged
  if rpath:sub(1, 1) == "/" then merged = rpath
  elseif path == "" then merged = "/" .. rpath
  else merged = path:match("^(.*/)") .. rpath end
  if merged:sub(1, 1) ~= "/" then merged = "/" .. merged end
  return scheme .. ":" .. authority .. remove_dot_segments(merged) .. rrest
end
M.url_join = url_join
function api.url_join(base, ref)
  check_arg(base, 1, "string")
  check_arg(ref, 2, "string")
  return url_join(base, ref)
end

return M
