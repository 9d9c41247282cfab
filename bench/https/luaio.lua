-- hello-world HTTPS server on aio.http.app(): PORT CERT KEY
local aio = require "luaio"
local app = aio.http.app()
app:route("/", function(req) return "Hello, World!" end)
local server = app:listen("127.0.0.1", tonumber(arg[1]),
  { backlog = 1024, tls = { cert_file = arg[2], key_file = arg[3] } })
server:serve_forever()
