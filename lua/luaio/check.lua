-- Argument checks with Lua's own message shape, at the caller's line:
-- "bad argument #N to 'aio.NAME' (T expected, got U)". `n` counts like Lua's
-- (a method's self is #1 and reported as "bad self"); each checks an argument
-- of the function that calls it. arg_error and type_name are errors.c's.
local core = require "luaio.core"

local arg_error, type_name = core.arg_error, core.type_name
local type, getmetatable, rawget = type, getmetatable, rawget
local rawgetmetatable = debug.getmetatable   -- a __metatable field cannot pass for ours

local M = {}

function M.check_type(v, n, tname)
  if type(v) ~= tname then arg_error(n, tname .. " expected, got " .. type_name(v), 2) end
  return v
end

function M.check_opt_type(v, n, tname)
  if v ~= nil and type(v) ~= tname then arg_error(n, tname .. " expected, got " .. type_name(v), 2) end
  return v
end

-- a function, or a table whose metatable has __call
local function callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and rawget(mt, "__call") ~= nil
end
M.callable = callable

function M.check_callable(v, n)
  if not callable(v) then arg_error(n, "function expected, got " .. type_name(v), 2) end
  return v
end

-- self must be an object of metatable mt (whose __name says what it is)
function M.check_self(self, mt)
  if rawgetmetatable(self) ~= mt then arg_error(1, mt.__name .. " expected, got " .. type_name(self), 2) end
  return self
end

-- a number, not NaN; min (optional) is the least value allowed
function M.check_number(v, n, min)
  if type(v) ~= "number" then arg_error(n, "number expected, got " .. type_name(v), 2) end
  if v ~= v then arg_error(n, "number expected, got NaN", 2) end
  if min and v < min then arg_error(n, ("number >= %s expected, got %s"):format(min, v), 2) end
  return v
end

return M
