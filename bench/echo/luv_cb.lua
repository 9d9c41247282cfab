-- echo server on luv with plain callbacks: PORT
local uv = require "luv"
local server = uv.new_tcp()
server:bind("127.0.0.1", tonumber(arg[1]))
server:listen(1024, function()
  local c = uv.new_tcp()
  server:accept(c)
  c:nodelay(true)
  c:read_start(function(err, data)
    if err or not data then c:close() return end
    c:write(data)
  end)
end)
uv.run()
