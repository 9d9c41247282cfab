-- A small httpbin-like app so the network demos run offline: the demos
-- start it on 127.0.0.1 when they are given no URLs.
local aio = require "luaio"

local M = {}

function M.app()
  local app = aio.http.app()
  app:route("/delay/:n", function(req)
    local n = tonumber(req.params.n) or 1
    aio.sleep(math.min(n, 10))
    return { delay = n, url = req.path }
  end)
  app:route("/status/:code", function(req)
    local code = math.tointeger(tonumber(req.params.code)) or 400
    return ("status %d\n"):format(code), code
  end)
  app:route("/json", function()
    return { slideshow = { title = "Sample Slide Show", author = "luaio", slides = { { title = "Wake up" }, { title = "Overview" } } } }
  end)
  app:route("/user-agent", function(req) return { ["user-agent"] = req.headers["user-agent"] } end)
  app:route("/headers", function(req) return { headers = req.headers } end)
  app:route("/get", function(req) return { args = req.query, headers = req.headers, origin = req.peer } end)
  return app
end

-- Start it on an ephemeral port; returns the server and its base URL.
function M.start()
  local server = M.app():listen("127.0.0.1", 0)
  return server, ("http://127.0.0.1:%d"):format(server.port)
end

return M
