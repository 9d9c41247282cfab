-- The router of aio.http.app() (API.md §6, §6b): routes with `:name`
-- segments, allowed methods and per-route options, directory prefixes
-- (app:static), found in the order they were added; 404 and 405 answers.
local core = require "luaio.core"
local check = require "luaio.check"
local common = require "luaio.http.common"
local function files() return require "luaio.http.files" end   -- loaded on first use

local getmetatable = debug.getmetatable
local unescape, arg_error, type_name = core.http_unescape, core.arg_error, core.type_name
local check_self, check_callable = check.check_self, check.check_callable
local check_arg, check_opts = common.check_arg, common.check_opts
local concat, type, setmetatable, ipairs = table.concat, type, setmetatable, ipairs
local fmt = string.format

local M = {}

local App = {}
App.__index = App
App.__name = "luaio.http.App"
M.App = App

function M.new(opts)
  return setmetatable({ _routes = {}, _static = {}, _dirs = {}, _middleware = {}, _opts = opts }, App)
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

-- methods: nil (any), a string or an array of strings -> set (GET brings HEAD)
local function allowed_methods(methods, n)
  if methods == nil then return nil end
  if type(methods) == "string" then methods = { methods } end
  if type(methods) ~= "table" then
    arg_error(n, "string or array of strings expected, got " .. type_name(methods), 2)
  end
  local allowed = {}
  for i, m in ipairs(methods) do
    if type(m) ~= "string" then
      arg_error(n, fmt("methods[%d]: string expected, got %s", i, type_name(m)), 2)
    end
    allowed[m:upper()] = true
  end
  if allowed.GET then allowed.HEAD = true end
  return allowed
end

local ROUTE_OPTS = { max_body = "count", stream_body = "boolean" }

function App:route(path, handler, methods, opts)
  if getmetatable(self) ~= App then check_self(self, App) end
  check_arg(path, 2, "string")
  if path:sub(1, 1) ~= "/" then arg_error(2, fmt("path starting with '/' expected, got %q", path)) end
  check_callable(handler, 3)
  local allowed = allowed_methods(methods, 4)
  opts = check_opts(opts, 5, ROUTE_OPTS)
  local route = { segs = compile(path), handler = handler, methods = allowed,
    max_body = opts.max_body, stream_body = opts.stream_body }
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

-- app:static(prefix, dir [, opts]): GET and HEAD under prefix are files of dir
function App:static(prefix, dir, opts)
  if getmetatable(self) ~= App then check_self(self, App) end
  check_arg(prefix, 2, "string")
  if prefix:sub(1, 1) ~= "/" then arg_error(2, fmt("path starting with '/' expected, got %q", prefix)) end
  check_arg(dir, 3, "string")
  if dir:find("\0", 1, true) then arg_error(3, "path without NUL bytes expected") end
  opts = files().check_static_opts(opts, 4)
  prefix = prefix:gsub("/+$", "")
  self._dirs[#self._dirs + 1] = { prefix = prefix, handler = files().static_handler(dir, opts, prefix),
    methods = { GET = true, HEAD = true } }
  return self
end

-- app:websocket(path, handler [, opts]) (API.md §12): checked here, the
-- upgrade handler made by websocket.lua (loaded on first use)
local WS_OPTS = { protocols = "table", max_message = "count1", compress = "boolean", origins = "table",
  ping_interval = "seconds" }
function App:websocket(path, handler, opts)
  if getmetatable(self) ~= App then check_self(self, App) end
  check_arg(path, 2, "string")
  if path:sub(1, 1) ~= "/" then arg_error(2, fmt("path starting with '/' expected, got %q", path)) end
  check_callable(handler, 3)
  opts = check_opts(opts, 4, WS_OPTS)
  local ws = require "luaio.websocket"
  local why = ws._check_server_opts(opts)
  if why then arg_error(4, why) end
  return self:route(path, ws.upgrade_handler(handler, opts), "GET")
end

local function split(path)
  local parts = {}
  for seg in path:gmatch("[^/]+") do parts[#parts + 1] = unescape(seg) end
  return parts
end

-- find(method, path) -> route, params | nil, 404 | nil, 405, "Allow list"
function App:find(method, path)
  if getmetatable(self) ~= App then check_self(self, App) end
  check_arg(method, 2, "string")
  check_arg(path, 3, "string")
  local r = self._static[path]
  if r and (not r.methods or r.methods[method]) then return r, {} end
  local parts = split(path)
  local allow
  for _, route in ipairs(self._routes) do
    local params = match(route, parts)
    if params then
      if not route.methods or route.methods[method] then return route, params end
      allow = allow or {}
      for m in pairs(route.methods) do allow[#allow + 1] = m end
    end
  end
  for _, d in ipairs(self._dirs) do
    local p = d.prefix
    if path == p or path:sub(1, #p + 1) == p .. "/" then
      if d.methods[method] then return d, {} end
      allow = allow or {}
      allow[#allow + 1] = "GET"
      allow[#allow + 1] = "HEAD"
    end
  end
  if allow then
    table.sort(allow)
    local uniq = {}
    for _, m in ipairs(allow) do if uniq[#uniq] ~= m then uniq[#uniq + 1] = m end end
    return nil, 405, concat(uniq, ", ")
  end
  return nil, 404
end

return M
