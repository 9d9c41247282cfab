-- PostgreSQL types <-> Lua values. Results come in text format; each
-- column's type OID picks how pg_wire.c decodes it (a PG_* kind) and which
-- columns are JSON (decoded here, after the rows are in). Parameters go as
-- text, except a string bound to a bytea parameter, sent in binary (its raw
-- bytes); the statement's ParameterDescription says which.
local json = require "luaio.json"

local type, tostring, math_type, format = type, tostring, math.type, string.format
local json_encode, json_decode, json_null = json.encode, json.decode, json.null

local M = {}

-- pg_wire.h's kinds
local TEXT, FLOAT, BYTEA, INT_BIN, FLOAT8_BIN, BOOL_BIN = 0, 2, 4, 5, 6, 7
-- extended queries ask the binary format where it is cheaper for both ends
-- (the server formats nothing); float4 stays text (its shortest decimal)
local KIND = {
  [21] = INT_BIN, [23] = INT_BIN, [20] = INT_BIN,      -- int2, int4, int8
  [700] = FLOAT, [701] = FLOAT8_BIN, [16] = BOOL_BIN, [17] = BYTEA,
}
local TEXT_KIND = { [INT_BIN] = 1, [FLOAT8_BIN] = 2, [BOOL_BIN] = 3 }   -- the same, as text
local JSON = { [114] = true, [3802] = true }           -- json, jsonb
local BYTEA_OID = 17

-- type oids -> kinds (for _read_pg), the JSON columns' names (or nil), and
-- Bind's result format codes (binary where the kind is); text = true: the
-- simple protocol, where every column is text
function M.shape(names, oids, text)
  local kinds, json_cols, formats = {}, nil, { string.pack(">i2", #oids) }
  for i, oid in ipairs(oids) do
    local k = oid == 26 and 1 or KIND[oid] or TEXT     -- oid: text (unsigned, 4 bytes)
    formats[i + 1] = TEXT_KIND[k] and "\0\1" or "\0\0"
    if text then k = TEXT_KIND[k] or k end
    kinds[i] = k
    if JSON[oid] then
      json_cols = json_cols or {}
      json_cols[#json_cols + 1] = names[i]
    end
  end
  return kinds, json_cols, table.concat(formats)
end

function M.decode_json(rows, json_cols)
  for _, row in ipairs(rows) do
    for _, name in ipairs(json_cols) do
      local v = row[name]
      if v ~= nil then row[name] = json_decode(v) end
    end
  end
end

local function float_text(v)
  if v ~= v then return "NaN" end
  if v == math.huge then return "Infinity" end
  if v == -math.huge then return "-Infinity" end
  local i = math.tointeger(v)                          -- whole floats exactly (2^60, not 1.15...e+18)
  if i then return tostring(i) end
  return format("%.17g", v)
end

local BINDABLE = { string = true, number = true, boolean = true, table = true, ["nil"] = true }
-- the index of the first value in args[1 .. n] that cannot be bound, or nil
function M.unbindable(args, n)
  for i = 1, n do
    local v = args[i]
    if not BINDABLE[type(v)] and v ~= json_null then return i end
  end
end

-- the parameter values (args[1 .. n], checked by unbindable) as Bind wants
-- them: values, and the binary flags (nil when all are text)
function M.encode(args, n, oids)
  local values, binary = {}, nil
  for i = 1, n do
    local v = args[i]
    local t = type(v)
    if v == nil or v == json_null then values[i] = nil
    elseif t == "string" then
      values[i] = v
      if oids[i] == BYTEA_OID then
        binary = binary or {}
        binary[i] = true
      end
    elseif t == "boolean" then values[i] = v and "true" or "false"
    elseif math_type(v) == "integer" then values[i] = tostring(v)
    elseif t == "number" then values[i] = float_text(v)
    else values[i] = json_encode(v) end
  end
  return values, binary
end

-- a parameter's text for a script's identifiers: "name" with quotes doubled
function M.quote_ident(s) return '"' .. s:gsub('"', '""') .. '"' end

return M
