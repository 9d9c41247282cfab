-- permessage-deflate (RFC 7692): the negotiation on both sides and the
-- per-message codec (raw deflate, each message ended by a sync flush whose
-- 00 00 ff ff tail is left off the wire; contexts reset after each message
-- when "no_context_takeover" was agreed).
local core = require "luaio.core"

local M = {}

local TAIL = "\0\0\255\255"
-- what a server keeps per connection: a 4 KiB window and a small hash (as
-- Python's websockets): ~32 KiB instead of zlib's ~256 KiB default
local SERVER_WINDOW, SERVER_MEM_LEVEL = 12, 5

-- "a; b=1, c" -> { { name = "a", params = { b = "1" } }, { name = "c", params = {} } }
local function parse_extensions(header)
  local list = {}
  for item in (header or ""):gmatch("[^,]+") do
    local name, rest = item:match("^%s*([%w!#$%%&'*+.^_`|~-]+)%s*(.*)$")
    if name then
      local params = {}
      for p in rest:gmatch(";%s*([^;]+)") do
        local k, v = p:match("^([%w_-]+)%s*=?%s*\"?([^\"]*)\"?%s*$")
        if k then params[k:lower()] = v ~= "" and v or true end
      end
      list[#list + 1] = { name = name:lower(), params = params }
    end
  end
  return list
end
M.parse_extensions = parse_extensions

local function window_bits(v)
  local n = tonumber(v)
  return n and math.type(n) == "integer" and n >= 8 and n <= 15 and n or nil
end

local Codec = {}
Codec.__index = Codec

-- send_reset / recv_reset: contexts not kept between messages;
-- send_bits / recv_bits: window sizes
local function new_codec(cfg)
  return setmetatable({ _cfg = cfg }, Codec)
end

function Codec:compress(data)
  local d = self._d
  if not d then
    d = core.deflater("raw", 6, self._cfg.send_bits, self._cfg.mem_level or 8)
    self._d = d
  end
  local out = d:write(data, "sync")
  if self._cfg.send_reset then d:reset() end
  if out:sub(-4) == TAIL then out = out:sub(1, -5) end
  return out
end

-- a whole message's payload -> data; max bounds the decompressed size
function Codec:decompress(data, max)
  local i = self._i
  if not i then
    i = core.inflater("raw", nil, 15)       -- a 32 KiB window reads any smaller one
    self._i = i
  end
  local start = i:total()
  local out = i:write(data .. TAIL, max)
  -- a peer that ended its deflate stream (a BFINAL block) starts a new one
  -- with its next message
  if self._cfg.recv_reset or i:finished() then i:reset() end
  if i:total() - start > max then error({ limit = true }) end
  return out
end

function Codec:close()
  if self._d then self._d:close() self._d = nil end
  if self._i then self._i:close() self._i = nil end
end

-- Server: the first acceptable offer of the client's header -> codec,
-- response header value; nil when none is acceptable (no compression)
function M.accept(offer_header)
  for _, ext in ipairs(parse_extensions(offer_header)) do
    if ext.name == "permessage-deflate" then
      local p, ok = ext.params, true
      local cfg = { send_bits = SERVER_WINDOW, mem_level = SERVER_MEM_LEVEL }
      local reply = { "permessage-deflate" }
      for k in pairs(p) do
        if k ~= "server_no_context_takeover" and k ~= "client_no_context_takeover"
           and k ~= "server_max_window_bits" and k ~= "client_max_window_bits" then ok = false end
      end
      if p.server_max_window_bits ~= nil then
        local bits = window_bits(p.server_max_window_bits)
        -- zlib cannot make raw deflate with an 8-bit window: decline that offer
        if not bits or bits == 8 then ok = false
        else cfg.send_bits = math.min(bits, SERVER_WINDOW) end
      end
      if p.client_max_window_bits ~= nil and p.client_max_window_bits ~= true
         and not window_bits(p.client_max_window_bits) then ok = false end
      if ok then
        if p.server_no_context_takeover then cfg.send_reset = true reply[#reply + 1] = "server_no_context_takeover" end
        if p.client_no_context_takeover then cfg.recv_reset = true reply[#reply + 1] = "client_no_context_takeover" end
        reply[#reply + 1] = "server_max_window_bits=" .. cfg.send_bits
        return new_codec(cfg), table.concat(reply, "; ")
      end
    end
  end
  return nil
end

-- Client: what it offers
M.OFFER = "permessage-deflate; client_max_window_bits"

-- Client: the server's answer -> codec | nil (not accepted) | false, why (unacceptable)
function M.agreed(response_header)
  local list = parse_extensions(response_header)
  if #list == 0 then return nil end
  if #list > 1 or list[1].name ~= "permessage-deflate" then
    return false, "the server answered with an extension that was not offered: " .. tostring(response_header)
  end
  local p = list[1].params
  local cfg = { send_bits = 15 }
  for k, v in pairs(p) do
    if k == "server_no_context_takeover" then cfg.recv_reset = true
    elseif k == "client_no_context_takeover" then cfg.send_reset = true
    elseif k == "server_max_window_bits" then
      if not window_bits(v) then return false, "bad server_max_window_bits" end
    elseif k == "client_max_window_bits" then
      local bits = window_bits(v)
      if not bits then return false, "bad client_max_window_bits" end
      if bits == 8 then return false, "client_max_window_bits=8 cannot be honoured (zlib)" end
      cfg.send_bits = bits
    else
      return false, "unknown permessage-deflate parameter " .. k
    end
  end
  return new_codec(cfg)
end

return M
