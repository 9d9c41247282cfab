-- echo server: PORT from arg[1].
local aio = require "luaio"
local server = aio.start_server(function(s)
  while true do
    local data = s:read(65536)
    if not data then return end
    s:write(data)
  end
end, "127.0.0.1", tonumber(arg[1]), { backlog = 1024 })
server:serve_forever()
