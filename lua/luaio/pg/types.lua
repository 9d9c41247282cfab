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
local TEXT, INT, FLOAT, BOOL, BYTEA = 0, 1, 2, 3, 4
local KIND = {
  [21] = INT, [23] = INT, [20] = INT, [26] = INT,      -- int2, int4, int8, oid
  [700] = FLOAT, [701] = FLOAT, [16] = BOOL, [17] = BYTEA,
}
local JSON = { [114] = true, [3802] = true }           -- json, jsonb
local BYTEA_OID = 17

-- type oids -> kinds (for _read_pg), and the JSON columns' names (or nil)
function M.shape(names, oids)
  local kinds, json_cols = {}, nil
  for i, oid in ipairs(oids) do
    kinds[i] = KIND[oid] or TEXT
    if JSON[oid] then
      json_cols = json_cols or {}
      json_cols[#json_cols + 1] = names[i]
    end
  end
  return kinds, json_cols
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
