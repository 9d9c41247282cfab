-- Course §5 "Serveur HTTP simple": routes /, /stats, /test (2 s, while the
-- others are still served), a 404 page, a request counter and the uptime.
--   luaio scripts/http_server.lua            a short self-demo, then exits
--   luaio scripts/http_server.lua --serve [port]   serves until Ctrl+C
local aio = require "luaio"

local stats = { requests = 0, started = os.time(), t0 = aio.now() }
local function uptime() return ("%.1fs"):format(aio.now() - stats.t0) end
local HTML = { ["Content-Type"] = "text/html; charset=utf-8" }

local app = aio.http.app()
-- every route counts the request first (the chapter's traiter_requete)
local function route(path, handler)
  app:route(path, function(req)
    stats.requests = stats.requests + 1
    print(("📨 %s %s (request #%d)"):format(req.method, req.path, stats.requests))
    return handler(req), 200, HTML
  end)
end

route("/", function()
  return ([[<h1>🚀 Asynchronous Lua server</h1>
<p><strong>Status:</strong> online</p>
<p><strong>Requests served:</strong> %d</p>
<p><strong>Uptime:</strong> %s</p>
<p><a href="/stats">📊 Statistics</a></p><p><a href="/test">🧪 Test page</a></p>
]]):format(stats.requests, uptime())
end)

route("/stats", function()
  aio.sleep(0.1)                     -- e.g. a database query
  return ([[<h1>📊 Server statistics</h1><ul>
<li>Total requests: %d</li><li>Started: %s</li><li>Uptime: %s</li></ul>
]]):format(stats.requests, os.date("%Y-%m-%d %H:%M:%S", stats.started), uptime())
end)

route("/test", function()
  aio.sleep(2)                       -- a long operation: other requests go on meanwhile
  return ([[<h1>🧪 Test page</h1><p>This page simulates a 2 second operation.</p>
<p>Timestamp: %s</p>
]]):format(os.date("%H:%M:%S"))
end)

-- unknown paths: the chapter's own 404 page instead of the default one
app:route("/:anything", function(req)
  stats.requests = stats.requests + 1
  return ("<h1>404 - Page not found</h1><p>Path: %s</p>"):format(req.path), 404, HTML
end)

local serve = arg[1] == "--serve"
local server <close> = app:listen("127.0.0.1", serve and tonumber(arg[2]) or 0)
local base = ("http://127.0.0.1:%d"):format(server.port)
print("🚀 Server started on " .. base)
print("📝 Routes: " .. base .. "/  " .. base .. "/stats  " .. base .. "/test")

if serve then
  print("🛑 Ctrl+C to stop\n")
  io.stdout:flush()
  server:serve_forever()
else
  -- self-demo: /test takes 2 s, yet / and /stats answer meanwhile
  local t0 = aio.now()
  local slow = aio.spawn(aio.http.get, base .. "/test")
  aio.sleep(0.1)
  for _, path in ipairs { "/", "/stats", "/missing" } do
    local r = aio.http.get(base .. path)
    print(("  %s -> %d after %.2fs (while /test still runs: %s)"):format(path, r.status, aio.now() - t0, tostring(not slow:done())))
  end
  print(("  /test -> %d after %.2fs"):format(slow:wait().status, aio.now() - t0))
  print(("✅ %d requests served, uptime %s"):format(stats.requests, uptime()))
end
