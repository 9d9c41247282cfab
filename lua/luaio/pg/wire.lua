-- PostgreSQL protocol 3.0 messages (the frontend's, built; the backend's
-- bodies, parsed). Framing and DataRows are C's (pg_wire.c, read through
-- stream:_read_pg); everything here is one string.pack/unpack per message.
local spack, sunpack, char, concat = string.pack, string.unpack, string.char, table.concat

local M = {}

local PROTOCOL_3 = 196608
M.SSL_REQUEST = spack(">i4i4", 8, 80877103)

-- a typed message: type byte, Int32 length (itself included), body
local function msg(t, body) return t .. spack(">i4", #body + 4) .. body end
M.msg = msg

function M.startup(params)
  local parts = { spack(">i4", PROTOCOL_3) }
  for k, v in pairs(params) do parts[#parts + 1] = k .. "\0" .. v .. "\0" end
  parts[#parts + 1] = "\0"
  local body = concat(parts)
  return spack(">i4", #body + 4) .. body
end

function M.cancel_request(pid, key) return spack(">i4i4i4i4", 16, 80877102, pid, key) end
function M.password(s) return msg("p", s .. "\0") end
function M.sasl_initial(mech, data) return msg("p", mech .. "\0" .. spack(">s4", data)) end
function M.sasl_response(data) return msg("p", data) end
function M.query(sql) return msg("Q", sql .. "\0") end
function M.parse(name, sql) return msg("P", name .. "\0" .. sql .. "\0\0\0") end
function M.describe(kind, name) return msg("D", kind .. name .. "\0") end
function M.close(kind, name) return msg("C", kind .. name .. "\0") end
M.SYNC = msg("S", "")
M.TERMINATE = msg("X", "")
M.EXECUTE = msg("E", "\0\0\0\0\0")        -- the unnamed portal, every row

-- Bind the unnamed portal to statement `name`: values[i] a string or nil
-- (NULL), binary[i] true for a parameter sent in binary format; results:
-- the result format codes (Int16 count, Int16 each; nil: all text)
function M.bind(name, n, values, binary, results)
  local parts = { "\0", name, "\0" }
  if binary then
    parts[#parts + 1] = spack(">i2", n)
    for i = 1, n do parts[#parts + 1] = binary[i] and "\0\1" or "\0\0" end
  else
    parts[#parts + 1] = "\0\0"
  end
  parts[#parts + 1] = spack(">i2", n)
  for i = 1, n do
    local v = values[i]
    parts[#parts + 1] = v == nil and "\255\255\255\255" or spack(">s4", v)
  end
  parts[#parts + 1] = results or "\0\0"
  return msg("B", concat(parts))
end

-- ---- backend bodies ----------------------------------------------------------

-- ErrorResponse / NoticeResponse: field code byte -> value
local FIELDS = {
  S = "severity_local", V = "severity", C = "code", M = "message", D = "detail", H = "hint",
  P = "position", p = "internal_position", q = "internal_query", W = "where", s = "schema",
  t = "table", c = "column", d = "data_type", n = "constraint", F = "file", L = "line", R = "routine",
}
function M.error_fields(body)
  local f, pos = {}, 1
  while pos <= #body do
    local code = body:sub(pos, pos)
    if code == "\0" then break end
    local value
    value, pos = sunpack("z", body, pos + 1)
    f[FIELDS[code] or code] = value
  end
  if f.position then f.position = math.tointeger(tonumber(f.position)) or f.position end
  if f.internal_position then f.internal_position = tonumber(f.internal_position) end
  f.severity = f.severity or f.severity_local
  return f
end

-- RowDescription -> names, type oids
function M.row_description(body)
  local n, pos = sunpack(">i2", body)
  local names, oids = {}, {}
  for i = 1, n do
    local name, oid
    name, pos = sunpack("z", body, pos)
    oid, pos = sunpack(">i4", body, pos + 6)
    pos = pos + 8
    names[i], oids[i] = name, oid
  end
  return names, oids
end

-- ParameterDescription -> type oids
function M.parameter_description(body)
  local n, pos = sunpack(">i2", body)
  local oids = {}
  for i = 1, n do oids[i], pos = sunpack(">I4", body, pos) end
  return oids
end

-- NotificationResponse -> {channel=, payload=, pid=}
function M.notification(body)
  local pid, channel, payload = sunpack(">i4zz", body)
  return { channel = channel, payload = payload, pid = pid }
end

-- CommandComplete's tag -> affected rows (INSERT 0 n, UPDATE n, SELECT n, ...)
function M.affected(tag)
  return math.tointeger(tonumber(tag:match("(%d+)%z?$")))
end

M.char = char
return M
