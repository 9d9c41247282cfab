-- streamed download: files of DIR over HTTP with aio.http.file: PORT DIR
local aio = require "luaio"
local app = aio.http.app()
app:static("/", arg[2])
local server = app:listen("127.0.0.1", tonumber(arg[1]), { backlog = 1024 })
server:serve_forever()
