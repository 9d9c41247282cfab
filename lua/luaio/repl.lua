-- aio.repl: the interactive prompt; each line runs inside the loop, in the
-- main task.
local version = require("luaio.core").version

-- a chunk for `line`, reading continuation lines while it is incomplete
local function read_chunk(line)
  local chunk, err = load("return " .. line, "=stdin")
  if not chunk then chunk, err = load(line, "=stdin") end
  while not chunk and err and err:match("<eof>$") do
    io.write(">> ")
    io.flush()
    local more = io.read("l")
    if not more then break end
    line = line .. "\n" .. more
    chunk, err = load(line, "=stdin")
  end
  return chunk, err
end

local function run_chunk(chunk)
  local r = table.pack(xpcall(chunk, debug.traceback))
  if not r[1] then io.stderr:write(tostring(r[2]), "\n")
  elseif r.n > 1 then
    for i = 2, r.n do r[i] = tostring(r[i]) end
    print(table.unpack(r, 2, r.n))
  end
end

local M = {}

function M.repl()
  io.write(version(), "\n")
  while true do
    io.write("> ")
    io.flush()
    local line = io.read("l")
    if not line then io.write("\n") break end
    local chunk, err = read_chunk(line)
    if not chunk then io.stderr:write(err, "\n") else run_chunk(chunk) end
  end
end

return M
