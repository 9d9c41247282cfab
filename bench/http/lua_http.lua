-- hello-world HTTP server on lua-http (cqueues): PORT from arg[1].
package.path = arg[0]:match("(.*/)") .. "../lib/?.lua;" .. package.path
require "lua_http_path"
local http_server = require "http.server"
local http_headers = require "http.headers"
local server = assert(http_server.listen {
  host = "127.0.0.1", port = tonumber(arg[1]), reuseaddr = true,
  onstream = function(_, stream)
    stream:get_headers()
    local h = http_headers.new()
    h:append(":status", "200")
    h:append("content-type", "text/plain")
    h:append("content-length", "13")
    stream:write_headers(h, false)
    stream:write_chunk("Hello, World!", true)
  end,
})
assert(server:listen())
assert(server:loop())
