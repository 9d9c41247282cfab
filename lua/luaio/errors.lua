-- aio.new_error and aio.raise: luaio errors (errors.c makes them).
local core = require "luaio.core"

local new_error, arg_error, type_name = core.error, core.arg_error, core.type_name
local type, error, math_type = type, error, math.type

local M = { new_error = new_error }

-- Raise a new luaio error: aio.raise("TimeoutError", "msg", {extra fields})
function M.raise(name, message, fields, level)
  if type(name) ~= "string" or name == "" then arg_error(1, "an error name expected, got " .. type_name(name)) end
  if message ~= nil and type(message) ~= "string" and type(message) ~= "number" then
    arg_error(2, "string expected, got " .. type_name(message))
  end
  if fields ~= nil and type(fields) ~= "table" then arg_error(3, "table expected, got " .. type_name(fields)) end
  if level ~= nil and math_type(level) ~= "integer" then arg_error(4, "integer expected, got " .. type_name(level)) end
  error(new_error(name, message, fields), level or 2)
end

return M
