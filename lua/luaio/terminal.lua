-- luaio.terminal: lines typed by a person, for the prompt (repl.lua) and
-- `luaio --attach` (attach.lua), over the luaio command's line reader
-- (core.read_line and the history functions, src/lineread.c; a program
-- that is not the luaio command has none: see read_in_thread).
--
--   local term = terminal.open(history_name [, env_suffix])   -- inside a task
--     (history in ~/<history_name>, or $LUAIO_HISTORY<env_suffix>)
--   term:read(prompt) ⏸ -> line | nil at end of input | false: Ctrl-C
--   term:busy(task)   while set, Ctrl-C cancels that task (with "SIGINT")
--   term:remember(text)   into the history (and its file)
--   term:close()
--
-- Ctrl-C belongs to the terminal object while it is open (an aio.on_signal
-- handler): at the prompt it drops the line being typed (as bash and python
-- do) and asks again; otherwise it cancels the task set with busy(). Each
-- read runs in a task of its own, so the one reading is never cancelled by
-- a Ctrl-C meant for the line.
local core = require "luaio.core"

local M = {}
local Terminal = {}
Terminal.__index = Terminal

-- the history file: $LUAIO_HISTORY (empty: none) with suffix, else
-- ~/<default_name>
local function history_path(default_name, suffix)
  local env = os.getenv("LUAIO_HISTORY")
  if env then return env ~= "" and (env .. (suffix or "")) or nil end
  local home = os.getenv("HOME")
  return home and home ~= "" and (home .. "/" .. default_name) or nil
end

-- Outside the luaio command (luaio.so, an embedder) there is no
-- core.read_line: lines are then read by a thread of the pool (the loop still
-- runs; no editing; a read cancelled still takes the next line).
local function read_in_thread(prompt)
  local aio = require "luaio"
  io.write(prompt or "")
  io.flush()
  return aio.to_thread(function() return io.read("l") end)
end

function M.open(history_default, env_suffix)
  local aio = require "luaio"
  local self = setmetatable({ editing = core.line_editing and core.line_editing() or false,
                              read_line = core.read_line or read_in_thread }, Terminal)
  if self.editing and history_default then
    local path = history_path(history_default, env_suffix)
    if path then pcall(core.history_file, path, 1000) end
  end
  core.interrupt_lines(true)            -- a line that never yields is interrupted too
  self.sigint = aio.on_signal("SIGINT", function()
    if core.interrupt_lines(true) > 0 then return end   -- it was: the code running got it
    if self.reader then
      io.write("^C")
      self.reader:cancel()
    elseif self.target and not self.target:done() then
      self.target:cancel("SIGINT")
    end
  end)
  return self
end

function Terminal:read(prompt)
  local aio = require "luaio"
  local t = aio.spawn(self.read_line, prompt)
  t.name = "read_line"
  self.reader = t
  local ok, line = pcall(t.wait, t)
  self.reader = nil
  if ok then return line end
  if not t:done() then t:cancel() end          -- we were cancelled: the read goes too
  if t:cancelled() and aio.current_task():cancelling() == 0 then return false end
  error(line, 0)
end

function Terminal:busy(task) self.target = task end

function Terminal:remember(text)
  if self.editing and text:find("%S") then core.add_history(text) end
end

function Terminal:close()
  if self.sigint then self.sigint:close() self.sigint = nil core.interrupt_lines(false) end
end

return M
