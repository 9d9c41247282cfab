-- Helpers shared by the specs: the luaio binary, running child processes.
local M = {}

M.luaio = os.getenv("LUAIO_BIN") or "build/luaio"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = shell_quote

-- Run a shell command; returns stdout, stderr, exit code (blocking: keep short).
function M.sh(cmd)
  local errf = os.tmpname()
  local p = io.popen(cmd .. " 2>" .. errf, "r")
  local out = p:read("a")
  local _, _, code = p:close()
  local f = io.open(errf, "r")
  local err = f:read("a")
  f:close()
  os.remove(errf)
  return out, err, code
end

-- Run a Lua snippet under a fresh `luaio -e`.
function M.run_code(code, extra)
  return M.sh(M.luaio .. " " .. (extra or "") .. " -e " .. shell_quote(code))
end

-- Write a temporary script and run it with luaio.
function M.run_script(code, args)
  local path = os.tmpname() .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local out, err, status = M.sh(M.luaio .. " " .. path .. " " .. (args or ""))
  os.remove(path)
  return out, err, status, path
end

return M
