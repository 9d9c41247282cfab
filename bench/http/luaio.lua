-- hello-world HTTP server on aio.http.app(): PORT
local aio = require "luaio"
local app = aio.http.app()
app:route("/", function(req) return "Hello, World!" end)
local server = app:listen("127.0.0.1", tonumber(arg[1]), { backlog = 1024 })
server:serve_forever()
