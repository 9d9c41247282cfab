-- aio.websocket (API.md §12): the client (aio.websocket.connect) and the
-- server's app:websocket(path, handler [, opts]), assembled from
-- ws/handshake.lua (the opening handshake), ws/protocol.lua (the
-- connection) and ws/deflate.lua (permessage-deflate).
local core = require "luaio.core"
local common = require "luaio.http.common"
local handshake = require "luaio.ws.handshake"
local protocol = require "luaio.ws.protocol"
local open_connection = require("luaio.streams").open_connection
local combinators = require "luaio.combinators"

local is_error, arg_error, type_name, need_task = core.is_error, core.arg_error, core.type_name, core.need_task
local check_arg, check_opts, header_block = common.check_arg, common.check_opts, common.header_block
local type, tostring, error, pcall, xpcall, ipairs = type, tostring, error, pcall, xpcall, ipairs
local fmt = string.format

local M = {}

-- protocols: an array of tokens
local function check_protocols(list, n, level)
  if list == nil then return end
  for i, p in ipairs(list) do
    if type(p) ~= "string" or not p:find("^[%w!#$%%&'*+.^_`|~-]+$") then
      arg_error(n, fmt("opts.protocols[%d]: token expected, got %s", i, type(p) == "string" and fmt("%q", p)
        or type_name(p)), level + 1)
    end
  end
end

local CONNECT_OPTS = { headers = "table", protocols = "table", timeout = "seconds", compress = "boolean",
  tls = "tls", max_message = "count1" }

local function open(u, opts)
  local s = open_connection(u.host, u.port, u.scheme == "wss" and { tls = opts.tls or true } or nil)
  local ok, chosen, codec = pcall(handshake.client, s, u, opts)
  if not ok then
    s:close()
    error(chosen, 0)
  end
  return protocol.new(s, true, { max_message = opts.max_message, protocol = chosen, deflate = codec })
end

-- aio.websocket.connect(url [, opts]) ⏸ -> WebSocket
function M.connect(url, opts)
  check_arg(url, 1, "string")
  opts = check_opts(opts, 2, CONNECT_OPTS)
  check_protocols(opts.protocols, 2, 1)
  if opts.headers then
    local ok, why = header_block(opts.headers)
    if not ok then arg_error(2, "opts.headers: " .. why) end
  end
  local u = handshake.parse_ws_url(url)
  need_task("aio.websocket.connect")
  if opts.timeout then return combinators.timeout(opts.timeout, open, u, opts) end
  return open(u, opts)
end

local function close_quietly(ws, code, reason)
  pcall(ws.close, ws, code, reason)
end

-- the HTTP handler of a WebSocket route: the handshake, then handler(ws, req)
local function upgrade_handler(handler, opts)
  return function(req)
    local accepted, chosen, codec, head = handshake.server(req, opts)
    if not accepted then return head, chosen, codec end     -- body, status, headers
    local stream = req._conn.stream
    stream:write(head)
    req._gone = true                     -- no HTTP answer follows: the connection is the WebSocket's
    local ws = protocol.new(stream, false, { max_message = opts.max_message, protocol = chosen, deflate = codec })
    local keepalive = opts.ping_interval and opts.ping_interval > 0 and protocol.keepalive(ws, opts.ping_interval)
    local ok, err = xpcall(handler, debug.traceback, ws, req)
    if keepalive then keepalive:cancel() end
    if ok then
      close_quietly(ws, 1000)
    elseif is_error(err, "CancelledError") then
      ws._close_timeout = 0.5              -- shutting down: a silent peer must not hold it up
      close_quietly(ws, 1001, "going away")
      error(err, 0)
    elseif is_error(err, "WebSocketError") then
      ws:_abort()                         -- the violation was answered already
    else
      io.stderr:write(fmt("luaio: websocket handler for %s failed: %s\n", req.path, tostring(err)))
      close_quietly(ws, 1011, "internal error")
    end
  end
end

-- app:websocket's options beyond their kinds (router.lua checks those):
-- nil, or what is wrong
function M._check_server_opts(opts)   -- (for router.lua)
  for i, p in ipairs(opts.protocols or {}) do
    if type(p) ~= "string" or not p:find("^[%w!#$%%&'*+.^_`|~-]+$") then
      return fmt("opts.protocols[%d]: token expected, got %s", i, type(p) == "string" and fmt("%q", p) or type_name(p))
    end
  end
  for i, o in ipairs(opts.origins or {}) do
    if type(o) ~= "string" then return fmt("opts.origins[%d]: string expected, got %s", i, type_name(o)) end
  end
end
M.upgrade_handler = upgrade_handler

M.WebSocket = protocol.WebSocket
return M
