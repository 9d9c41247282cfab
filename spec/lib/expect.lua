-- Assertions the specs share: a call that must fail with a luaio error of a
-- given name, or with Lua's argument-error shape.
local aio = require "luaio"
local assert = require "luassert"     -- (busted's assert: a module sees Lua's own as global)

local E = {}

-- pcall(fn, ...) must fail with a luaio error `name`; -> the error
function E.raises(name, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "no error")
  assert.is_true(aio.is_error(err, name), "expected " .. name .. ", got " .. tostring(err))
  return err
end

-- pcall(fn, ...) must fail with an argument error matching `pattern`
function E.bad_arg(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "no error")
  assert.matches("bad argument", tostring(err))
  assert.matches(pattern, tostring(err))
end

return E
