-- echo server on cqueues: one coroutine per connection. PORT from arg[1].
local cqueues = require "cqueues"
local socket = require "cqueues.socket"
local cq = cqueues.new()
local server = assert(socket.listen { host = "127.0.0.1", port = tonumber(arg[1]), reuseaddr = true, backlog = 1024 })
cq:wrap(function()
  for con in server:clients() do
    cq:wrap(function()
      con:setmode("b", "bn")          -- binary; writes go out at once
      while true do
        local data = con:read(-65536)  -- whatever arrived, up to 64 KiB
        if not data then break end
        con:write(data)
      end
      con:close()
    end)
  end
end)
assert(cq:loop())
