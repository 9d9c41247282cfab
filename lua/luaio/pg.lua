-- aio.pg: the PostgreSQL client (API.md §14). This file: the connection
-- options (URL and table), connect and the pool. The layers: pg/wire.lua
-- (messages), pg/auth.lua (authentication), pg/types.lua (values),
-- pg/conn.lua (a connection); pg_wire.c reads messages and rows in C.
local core = require "luaio.core"
local check = require "luaio.check"
local combinators = require "luaio.combinators"
local pool = require "luaio.pg.pool"
local conn = require "luaio.pg.conn"

local arg_error, type_name, need_task, unescape = core.arg_error, core.type_name, core.need_task, core.http_unescape
local type, tonumber, math_type = type, tonumber, math.type

local M = { Connection = conn.Conn }

local SSLMODES = { disable = true, allow = true, prefer = true, require = true, ["verify-ca"] = true,
                   ["verify-full"] = true }
-- the table fields and their types (url: the URL they override)
local FIELDS = { url = "string", host = "string", port = "number", user = "string", password = "string",
                 database = "string", sslmode = "string", sslrootcert = "string", timeout = "number",
                 max_connections = "number", application_name = "string", statement_cache_size = "number" }
-- URL query parameters -> fields
local QUERY = { host = "host", port = "port", user = "user", password = "password", dbname = "database",
                sslmode = "sslmode", sslrootcert = "sslrootcert", application_name = "application_name",
                connect_timeout = "timeout" }

-- postgresql://user:password@host:port/database?param=value -> fields (nil, why when not one)
local function parse_url(url)
  local rest = url:match("^postgresql://(.*)$") or url:match("^postgres://(.*)$")
  if not rest then return nil, "a postgresql:// or postgres:// URL expected" end
  local o = {}
  local query
  rest, query = rest:match("^([^?]*)%??(.*)$")
  local authority, path = rest:match("^([^/]*)/?(.*)$")
  local userinfo, hostport = authority:match("^(.*)@(.*)$")
  if not userinfo then hostport = authority end
  if userinfo then
    local u, p = userinfo:match("^([^:]*):(.*)$")
    o.user = unescape(u or userinfo)
    if p then o.password = unescape(p) end
  end
  local host, port = hostport:match("^%[(.*)%]:?(%d*)$")
  if not host then host, port = hostport:match("^([^:]*):?(%d*)$") end
  if not host then return nil, "bad host:port in the URL" end
  if host ~= "" then o.host = unescape(host) end
  if port ~= "" then o.port = tonumber(port) end
  if path ~= "" then o.database = unescape(path) end
  for k, v in query:gmatch("([^&=]+)=?([^&]*)") do
    local field = QUERY[unescape(k)]
    if field then o[field] = unescape(v) end
  end
  if o.port ~= nil then o.port = math.tointeger(tonumber(o.port)) end
  if o.timeout ~= nil then o.timeout = tonumber(o.timeout) end
  return o
end
M.parse_url = parse_url

local function env_user()
  return os.getenv("PGUSER") or os.getenv("USER") or "postgres"
end

-- url_or_opts -> the complete options; argument errors at `n` of the caller's caller
local function options(v, n)
  local o
  if type(v) == "string" then
    local why
    o, why = parse_url(v)
    if not o then arg_error(n, why, 2) end
  elseif type(v) == "table" then
    for k, want in pairs(FIELDS) do
      if v[k] ~= nil and type(v[k]) ~= want then
        arg_error(n, ("field '%s': %s expected, got %s"):format(k, want, type_name(v[k])), 2)
      end
    end
    o = {}
    if v.url then
      local why
      o, why = parse_url(v.url)
      if not o then arg_error(n, "field 'url': " .. why, 2) end
    end
    for k in pairs(FIELDS) do if v[k] ~= nil then o[k] = v[k] end end
  else
    arg_error(n, "string or table expected, got " .. type_name(v), 2)
  end
  o.host = o.host or "localhost"
  o.port = o.port or 5432
  o.user = o.user or env_user()
  o.database = o.database or o.user
  o.sslmode = o.sslmode or (o.host:sub(1, 1) == "/" and "disable" or "prefer")
  o.statement_cache_size = o.statement_cache_size or 256
  o.max_connections = o.max_connections or 10
  if math_type(o.port) ~= "integer" and not (math_type(o.port) == "float" and o.port == o.port // 1) or o.port < 1 or o.port > 65535 then
    arg_error(n, "port must be 1 .. 65535", 2)
  end
  o.port = math.tointeger(o.port)
  if not SSLMODES[o.sslmode] then arg_error(n, "sslmode must be disable, prefer, require, verify-ca or verify-full", 2) end
  if o.timeout ~= nil and not (o.timeout > 0) then arg_error(n, "timeout must be a positive number", 2) end
  if not (o.max_connections >= 1) then arg_error(n, "max_connections must be at least 1", 2) end
  return o
end

-- opts -> a connection within opts.timeout
local function open(o)
  if o.timeout then
    local ok, c = pcall(combinators.timeout, o.timeout, conn.connect, o)
    if ok then return c end
    if core.is_error(c, "TimeoutError") then
      c.message = ("PostgreSQL connect to %s:%s timed out after %g s"):format(o.host, o.port, o.timeout)
    end
    error(c, 0)
  end
  return conn.connect(o)
end

-- aio.pg.connect(url_or_opts) ⏸ -> Connection
function M.connect(url_or_opts)
  need_task("aio.pg.connect")
  return open(options(url_or_opts, 1))
end

-- aio.pg.pool(url_or_opts) -> Pool (connects on demand)
function M.pool(url_or_opts)
  return pool.new(options(url_or_opts, 1), open)
end

M.parse_url = nil
M._parse_url = parse_url
return M
