-- WebSocket echo server on aio.http.app() and app:websocket: PORT
local aio = require "luaio"
local app = aio.http.app()
app:websocket("/", function(ws)
  for data, kind in ws:messages() do ws:send(data, kind) end
end)
local server = app:listen("127.0.0.1", tonumber(arg[1]), { backlog = 1024 })
server:serve_forever()
