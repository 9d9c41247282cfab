-- The WebSocket opening handshake (RFC 6455 §4), both sides: the client's
-- upgrade request and the check of the server's 101; the server's checks
-- of an upgrade request (426, 400, 403) and its 101.
local core = require "luaio.core"
local common = require "luaio.http.common"
local deflate = require "luaio.ws.deflate"

local new_error, ws_key, ws_accept = core.error, core.ws_key, core.ws_accept
local header_block, parse_url = common.header_block, common.parse_url
local concat, type, tostring, error, ipairs = table.concat, type, tostring, error, ipairs
local fmt = string.format

local M = {}

local function handshake_error(message, fields)
  return new_error("WebSocketError", "handshake failed: " .. message, fields or { code = 1002 })
end

-- a header's comma-separated tokens, lowercased, as a set
local function token_set(value)
  local set = {}
  for tok in tostring(value or ""):gmatch("[^,%s]+") do set[tok:lower()] = true end
  return set
end

-- a header's comma-separated items, in order
local function item_list(value)
  local list = {}
  for item in tostring(value or ""):gmatch("[^,]+") do
    item = item:match("^%s*(.-)%s*$")
    if item ~= "" then list[#list + 1] = item end
  end
  return list
end

-- ws:// and wss:// URLs, as parse_url's http:// and https://
function M.parse_ws_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)(://.*)$")
  local lower = scheme and scheme:lower()
  if lower ~= "ws" and lower ~= "wss" then
    error(new_error("ValueError", "ws:// or wss:// URL expected, got " .. url), 3)
  end
  local u = parse_url((lower == "wss" and "https" or "http") .. rest)
  u.scheme = lower
  return u
end

-- Client: send the upgrade request on stream, check the 101.
-- -> protocol, deflate codec (or nil)
function M.client(stream, u, opts)
  local key = ws_key()
  local extra, has_host = "", false
  if opts.headers then
    local _
    extra, _, _, has_host = header_block(opts.headers)
  end
  local protocols = opts.protocols
  stream:write("GET ", u.target, " HTTP/1.1\r\n", has_host and "" or ("Host: " .. u.authority .. "\r\n"),
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ", key,
    "\r\nSec-WebSocket-Version: 13\r\n",
    protocols and #protocols > 0 and ("Sec-WebSocket-Protocol: " .. concat(protocols, ", ") .. "\r\n") or "",
    opts.compress and ("Sec-WebSocket-Extensions: " .. deflate.OFFER .. "\r\n") or "",
    extra, "\r\n")
  local head, status, why = stream:_read_head("response")
  if head == false then error(handshake_error("the server closed the connection"), 0) end
  if not head then error(handshake_error(fmt("bad response head (%s)", tostring(why or status))), 0) end
  local h = head.headers
  if head.status ~= 101 then
    error(handshake_error(fmt("the server answered %d %s", head.status, head.reason or ""),
      { code = 1002, status = head.status }), 0)
  end
  if not token_set(h.upgrade).websocket or not token_set(h.connection).upgrade then
    error(handshake_error("101 without Upgrade: websocket / Connection: Upgrade"), 0)
  end
  if h["sec-websocket-accept"] ~= ws_accept(key) then
    error(handshake_error("wrong Sec-WebSocket-Accept"), 0)
  end
  local protocol = h["sec-websocket-protocol"]
  if protocol then
    local offered = false
    for _, p in ipairs(protocols or {}) do if p == protocol then offered = true end end
    if not offered then error(handshake_error("the server chose a subprotocol not offered: " .. protocol), 0) end
  end
  local codec, why2
  if h["sec-websocket-extensions"] then
    if not opts.compress then
      error(handshake_error("the server answered with extensions that were not offered"), 0)
    end
    codec, why2 = deflate.agreed(h["sec-websocket-extensions"])
    if codec == false then error(handshake_error(why2), 0) end
  end
  return protocol, codec
end

-- Server: -> nil, status, headers, body to refuse the request; or true,
-- protocol, codec, response head to write
function M.server(req, opts)
  local h = req.headers
  if req.method ~= "GET" then
    return nil, 405, { Allow = "GET" }, "405 Method Not Allowed\n"
  end
  if not token_set(h.upgrade).websocket or not token_set(h.connection).upgrade then
    return nil, 426, { Upgrade = "websocket", Connection = "Upgrade", ["Sec-WebSocket-Version"] = "13" },
      "426 Upgrade Required: this is a WebSocket endpoint\n"
  end
  if h["sec-websocket-version"] ~= "13" then
    return nil, 426, { ["Sec-WebSocket-Version"] = "13" }, "426 Upgrade Required: WebSocket version 13 only\n"
  end
  local key = h["sec-websocket-key"]
  -- base64 of 16 bytes: 22 characters and "=="
  if type(key) ~= "string" or #key ~= 24 or not key:match("^[%w+/]+==$") then
    return nil, 400, nil, "400 Bad Request: bad Sec-WebSocket-Key\n"
  end
  if opts.origins then
    local origin, allowed = h.origin, false
    for _, o in ipairs(opts.origins) do if o == origin then allowed = true end end
    if not allowed then return nil, 403, nil, "403 Forbidden: origin not allowed\n" end
  end
  -- the first of the server's subprotocols that the client offers
  local protocol
  if opts.protocols then
    local offered = {}
    for _, p in ipairs(item_list(h["sec-websocket-protocol"])) do offered[p] = true end
    for _, p in ipairs(opts.protocols) do
      if offered[p] then protocol = p break end
    end
  end
  local codec, extension
  if opts.compress and h["sec-websocket-extensions"] then
    codec, extension = deflate.accept(h["sec-websocket-extensions"])
  end
  local head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    .. "Sec-WebSocket-Accept: " .. ws_accept(key) .. "\r\n"
    .. (protocol and ("Sec-WebSocket-Protocol: " .. protocol .. "\r\n") or "")
    .. (extension and ("Sec-WebSocket-Extensions: " .. extension .. "\r\n") or "")
    .. "\r\n"
  return true, protocol, codec, head
end

return M
