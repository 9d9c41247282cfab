-- aio.json: lua-cjson, with decode errors that name the position and
-- integral numbers decoded as integers (json.c). false when lua-cjson is
-- not installed (then aio.json is nil).
local core = require "luaio.core"

local ok, cjson = pcall(require, "cjson")
if not ok then return false end

local arg_error, type_name, integers = core.arg_error, core.type_name, core.json_integers
local type, pcall, error, tostring = type, pcall, error, tostring

local json = cjson.new()
json.encode_sparse_array(true)
local decode = json.decode

return {
  encode = json.encode,
  decode = function(s)
    if type(s) ~= "string" then arg_error(1, "string expected, got " .. type_name(s)) end
    local okd, v = pcall(decode, s)
    if not okd then error("aio.json.decode: " .. tostring(v), 2) end
    return integers(v)
  end,
  null = json.null,
}
