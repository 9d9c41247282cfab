-- aio.redis: where to connect and how (API.md §14). A URL
-- (redis://[user:password@]host[:port][/db], rediss:// for TLS,
-- unix:///path[?db=N&password=...]) or a table {url=, host=, port=, path=,
-- user=, password=, db=, tls=, timeout=, max_connections=, protocol=,
-- max_bulk=} whose fields override the URL's. Returns a plain settings
-- table; argument errors name the public function.
local core = require "luaio.core"
local check_opts = require("luaio.http.common").check_opts

local unescape, arg_error, type_name = core.http_unescape, core.arg_error, core.type_name
local type, tonumber, tostring, math_type = type, tonumber, tostring, math.type
local fmt = string.format

local M = {}

M.DEFAULT_PORT = 6379
M.MAX_BULK = 512 * 1024 * 1024        -- Redis's own proto-max-bulk-len default

local OPTS = { url = "string", host = "string", port = "any", path = "string", user = "string",
  password = "string", db = "count", tls = "tls", timeout = "seconds", max_connections = "count1",
  protocol = "count1", max_bulk = "count" }

local function bad_url(url, why, level)
  arg_error(1, fmt("bad Redis URL %q (%s)", url, why), level + 1)
end

local function parse_query(q, out, url, level)
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    k, v = unescape(k or pair), unescape(v or "")
    if k == "db" then
      out.db = math_type(tonumber(v)) == "integer" and tonumber(v) or bad_url(url, "db must be an integer", level + 1)
    elseif k == "password" then out.password = v
    elseif k == "user" or k == "username" then out.user = v
    end
  end
end

-- the URL's fields
local function parse_url(url, level)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  scheme = scheme and scheme:lower()
  if scheme ~= "redis" and scheme ~= "rediss" and scheme ~= "unix" then
    bad_url(url, "redis://, rediss:// or unix:// expected", level + 1)
  end
  local out = { tls = scheme == "rediss" or nil }
  local q
  rest, q = rest:match("^([^?#]*)%??([^#]*)")
  if scheme == "unix" then
    if rest == "" then bad_url(url, "no socket path", level + 1) end
    out.path = unescape(rest)
  else
    local auth, hostport, db = rest:match("^([^@/]*)@([^/]*)/?(.*)$")
    if not auth then auth, hostport, db = "", rest:match("^([^/]*)/?(.*)$") end
    if auth ~= "" then
      local u, p = auth:match("^([^:]*):?(.*)$")
      if auth:find(":", 1, true) then out.password = unescape(p) end
      if u ~= "" then out.user = unescape(u) end
    end
    local host, port = hostport:match("^%[([^%]]+)%]:?(%d*)$")
    if not host then host, port = hostport:match("^([^:]*):?(%d*)$") end
    if not host then bad_url(url, "bad host or port", level + 1) end
    if host ~= "" then out.host = unescape(host) end
    if port ~= "" then out.port = tonumber(port) end
    if db ~= "" then
      if not db:match("^%d+$") then bad_url(url, "the path must be a database number", level + 1) end
      out.db = tonumber(db)
    end
  end
  parse_query(q, out, url, level + 1)
  return out
end

-- settings from url_or_opts (argument 1 of the function `level` up)
function M.settings(v, level)
  level = (level or 1) + 1
  local t = type(v)
  if t ~= "string" and t ~= "table" then arg_error(1, "string or table expected, got " .. type_name(v), level) end
  local opts = t == "table" and check_opts(v, 1, OPTS, level) or { url = v }
  local cfg = opts.url and parse_url(opts.url, level) or {}
  for k in pairs(OPTS) do
    if k ~= "url" and opts[k] ~= nil then cfg[k] = opts[k] end
  end
  if cfg.port ~= nil then
    local p = math_type(tonumber(cfg.port)) == "integer" and tonumber(cfg.port)
    if not p or p < 1 or p > 65535 then
      arg_error(1, "port must be an integer within 1..65535, got " .. tostring(cfg.port), level)
    end
    cfg.port = p
  end
  if cfg.protocol ~= nil and cfg.protocol ~= 2 and cfg.protocol ~= 3 then
    arg_error(1, "protocol must be 2 or 3, got " .. tostring(cfg.protocol), level)
  end
  if cfg.path and cfg.tls then arg_error(1, "TLS over a Unix socket is not supported", level) end
  cfg.host = cfg.host or "127.0.0.1"
  cfg.port = cfg.port or M.DEFAULT_PORT
  cfg.protocol = cfg.protocol or 2
  cfg.max_bulk = cfg.max_bulk or M.MAX_BULK
  cfg.max_connections = cfg.max_connections or 10
  cfg.db = cfg.db or 0
  cfg.where = cfg.path or (cfg.host:find(":", 1, true) and fmt("[%s]:%d", cfg.host, cfg.port)
    or fmt("%s:%d", cfg.host, cfg.port))
  return cfg
end

return M
