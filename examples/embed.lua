-- Run by examples/embed.c: tasks wait on the host's native host.compute(n)
-- (thread pool) alongside aio.sleep and a TCP echo.
local aio = require "luaio"

local server = aio.start_server(function(s)
  for line in s:lines() do s:write(line, "\n") end
end, "127.0.0.1", 0)

local results = aio.gather {
  function() return host.compute(3000000) end,
  function() aio.sleep(0.05) return "slept" end,
  function()
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    c:write("ping\n")
    return c:readline()
  end,
}
server:close()
print(("compute=%d, %s, echo=%s"):format(results[1], results[2], results[3]))
assert(results[3] == "ping")

-- a native wait can be cancelled like any other
local ok, err = pcall(aio.wait_for, function() return host.compute(200000000) end, 0.05)
print("cancelled compute:", aio.is_error(err, "TimeoutError"))
return "ok"
