-- aio.repl: the interactive prompt of the luaio command (`luaio` on a
-- terminal, `luaio -i`). The prompt is the main task; it waits for a line in
-- luaio.terminal's read (the loop goes on: servers answer, spawned tasks
-- run), then runs the line as a task of its own and waits for it, so that
-- Ctrl-C cancels just that line. As lua.c: a statement that is not complete
-- yet ("... near <eof>") continues on the next line (">> "); a line that is
-- an expression (or "=expr") prints its values, with aio.pretty. Locals do
-- not outlive their line; globals do.
local core = require "luaio.core"
local terminal = require "luaio.terminal"
local pretty = require("luaio.pretty").pretty

local M = {}

local function incomplete(err)
  return err:sub(-5) == "<eof>"
end

-- an expression first (its values print), then statements
local function compile(text)
  local expr = text:match("^%s*=(.*)$")
  if expr then return load("return " .. expr, "=stdin") end
  local chunk = load("return " .. text, "=stdin")
  if chunk then return chunk end
  return load(text, "=stdin")
end

-- the text of one entry (continued while incomplete) -> chunk, err, text;
-- nil at end of input; false when Ctrl-C dropped it
local function read_entry(term)
  local text = term:read("> ")
  if not text then return text end
  local chunk, err = compile(text)
  while not chunk and incomplete(err) do
    local more = term:read(">> ")
    if more == false then return false end
    if more == nil then break end
    text = text .. "\n" .. more
    chunk, err = compile(text)
  end
  return chunk, err, text
end

local function show_results(r)
  if r.n < 2 then return end
  local out = {}
  for i = 2, r.n do out[#out + 1] = pretty(r[i]) end
  io.write(table.concat(out, "\t"), "\n")
end

local function show_error(task, err)
  if task:cancelled() then                         -- CancelledError: SIGINT
    io.stderr:write(tostring(err), "\n")
    return
  end
  local msg = type(err) == "string" and err or pretty(err)
  local tb = task:traceback()
  if type(tb) ~= "string" then tb = msg
  elseif not tb:find(msg, 1, true) then tb = msg .. "\n" .. tb end
  io.stderr:write(tb, "\n")
end

-- run one chunk as a task; Ctrl-C (term) cancels it
local function run_line(term, chunk, n)
  local aio = require "luaio"
  local t = aio.spawn(chunk)
  t.name = "prompt-" .. n
  term:busy(t)
  local r = table.pack(pcall(t.wait, t))
  term:busy(nil)
  if not r[1] and not t:done() then            -- the prompt itself is cancelled (SIGTERM)
    t:cancel()
    pcall(t.wait, t)
    error(r[2], 0)
  end
  io.stdout:flush()
  if r[1] then show_results(r) else show_error(t, r[2]) end
  io.stdout:flush()
  io.stderr:flush()
end

function M.repl()
  if rawget(_G, "aio") == nil then rawset(_G, "aio", require "luaio") end   -- (main.c sets it too)
  local term = terminal.open(".luaio_history")
  if term.editing then
    io.write(core.version(), "  (aio is predefined; Ctrl-C cancels a line, Ctrl-D exits)\n")
  end
  local ok, err = pcall(function()
    local n = 0
    while true do
      local chunk, cerr, text = read_entry(term)
      if chunk == nil and text == nil then break end       -- end of input
      if text then
        term:remember(text)
        if chunk then
          n = n + 1
          run_line(term, chunk, n)
        else
          io.stderr:write(cerr, "\n")
          io.stderr:flush()
        end
      end
    end
  end)
  term:close()
  if not ok then error(err, 0) end
end

return M
