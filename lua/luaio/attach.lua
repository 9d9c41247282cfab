-- `luaio --attach PATH`: a client for a running program's monitor console
-- (LUAIO_MONITOR / aio.monitor: a Unix socket). The protocol is lines: the
-- client sends one command a line; every answer (the greeting sent on
-- connect first) is text lines ended by one empty line. Commands are read
-- with the prompt's line editing ("monitor> ", history in
-- ~/.luaio_attach_history or $LUAIO_HISTORY.attach). Ends on Ctrl-D (status
-- 0) or when the program closes the socket (a message, status 0); a socket
-- that cannot be reached is status 1.
local terminal = require "luaio.terminal"

local M = {}

local function say(fmt, ...)
  io.stderr:write("luaio --attach: ", fmt:format(...), "\n")
  io.stderr:flush()
end

-- print one answer, up to its empty line -> false when the socket closed
local function print_answer(s)
  while true do
    local line = s:readline()
    if line == nil then return false end
    if line == "" then io.stdout:flush() return true end
    io.write(line, "\n")
  end
end

local function session(term, s, path)
  local me = require("luaio").current_task()
  if not print_answer(s) then
    say("%s closed the connection before its greeting", path)
    return 1
  end
  while true do
    local line = term:read("monitor> ")
    if line == nil then return 0 end                 -- Ctrl-D
    if line and line:find("%S") then
      term:remember(line)
      s:write(line, "\n")
      term:busy(me)                                   -- Ctrl-C while the answer comes: leave
      local open = print_answer(s)
      term:busy(nil)
      if not open then
        say("the monitor at %s closed the connection", path)
        return 0
      end
    end
  end
end

-- -> the command's exit status
function M.attach(path)
  local aio = require "luaio"
  local ok, s = pcall(aio.open_connection, path)
  if not ok then
    say("cannot connect to %s: %s", path, tostring(s))
    return 1
  end
  local term = terminal.open(".luaio_attach_history", ".attach")
  local done, status = pcall(session, term, s, path)
  term:close()
  s:close()
  if not done then
    if aio.is_error(status, "ConnectionError") then
      say("the connection to %s broke: %s", path, tostring(status))
      return 1
    end
    error(status, 0)
  end
  return status
end

return M
