-- echo server on luv with coroutines, the way a luvit user writes it: each
-- connection is a coroutine; read() suspends it until the callback delivers.
package.path = arg[0]:match("(.*/)") .. "../lib/?.lua;" .. package.path
local uv = require "luv"
local co = require "luvco"

local function wrap(sock)
  local waiting, chunks, eof = nil, {}, false
  sock:read_start(function(err, data)
    if err or not data then eof = true else chunks[#chunks + 1] = data end
    if waiting then local w = waiting waiting = nil co.schedule(w) end
  end)
  local s = {}
  function s.read()
    while #chunks == 0 and not eof do
      waiting = coroutine.running()
      coroutine.yield()
    end
    if #chunks == 0 then return nil end
    local data = table.concat(chunks)
    chunks = {}
    return data
  end
  function s.write(data) sock:write(data) end
  function s.close() sock:close() end
  return s
end

local server = uv.new_tcp()
server:bind("127.0.0.1", tonumber(arg[1]))
server:listen(1024, function()
  local c = uv.new_tcp()
  server:accept(c)
  c:nodelay(true)
  co.spawn(function()
    local s = wrap(c)
    while true do
      local data = s.read()
      if not data then break end
      s.write(data)
    end
    s.close()
  end)
end)
uv.run()
