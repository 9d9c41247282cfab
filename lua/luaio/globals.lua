-- What luaio replaces in the global environment (init.lua installs them):
-- a `require` that may wait, and an os.exit that does not close the state
-- under a running loop.
local core = require "luaio.core"

local package, type, error, ipairs = package, type, error, ipairs
local M = {}

-- A `require` that may wait: a Lua loader runs as a plain Lua call, so a
-- module whose top level calls waiting functions loads inside a task.
function M.require(name)
  local loaded = package.loaded[name]
  if loaded ~= nil then return loaded end
  if type(name) ~= "string" then error("bad argument #1 to 'require' (string expected, got " .. type(name) .. ")", 2) end
  local msgs = {}
  for _, searcher in ipairs(package.searchers) do
    local loader, extra = searcher(name)
    if type(loader) == "function" then
      local r = loader(name, extra)
      if r ~= nil then package.loaded[name] = r
      elseif package.loaded[name] == nil then package.loaded[name] = true end
      return package.loaded[name], extra
    elseif type(loader) == "string" then
      msgs[#msgs + 1] = "\n\t" .. loader
    end
  end
  error(("module '%s' not found:%s"):format(name, table.concat(msgs)), 2)
end

-- os.exit inside a running loop must not close the state under the loop's
-- feet: it flushes and leaves without closing.
local real_exit, current_task = os.exit, core.current_task
function M.exit(code, close)
  io.stdout:flush()
  io.stderr:flush()
  if current_task() then close = false end
  return real_exit(code, close)
end

return M
