-- A small JSON API, the way a service is written with aio.http (API.md §6b):
-- middleware (request ids, CORS, a bearer token for writes), aio.http.abort
-- for the client's mistakes, JSON and form bodies, an upload read in pieces,
-- Server-Sent Events, static files with caching, gzip.
--   luaio scripts/json_api.lua                 a self-demo against itself, then exits
--   luaio scripts/json_api.lua --serve [port]  serves until Ctrl+C (open / in a browser)
local aio = require "luaio"
local http = aio.http

local TOKEN = os.getenv("API_TOKEN") or "demo"
local HERE = (arg and arg[0] or "scripts/json_api.lua"):match("^(.*)/[^/]*$") or "."

local notes, next_id = {}, 1
local listeners = {}                     -- SSE clients: one queue each

local function publish(event, data)
  for q in pairs(listeners) do
    if q:full() then listeners[q] = nil else q:put_nowait({ event = event, data = data }) end
  end
end

local app = http.app()

-- middleware, outermost first: each wraps everything after it, 404s included
local request_count = 0
app:use(function(req, next)
  request_count = request_count + 1
  local id = tostring(request_count)
  local body, status, headers = next(req)
  headers = headers or {}
  headers["X-Request-Id"] = id
  return body, status, headers
end)

app:use(function(req, next)             -- CORS for browser clients on other origins
  if req.method == "OPTIONS" then
    return "", 204, { ["Access-Control-Allow-Origin"] = "*",
      ["Access-Control-Allow-Methods"] = "GET, POST, DELETE",
      ["Access-Control-Allow-Headers"] = "Content-Type, Authorization" }
  end
  local body, status, headers = next(req)
  headers = headers or {}
  headers["Access-Control-Allow-Origin"] = "*"
  return body, status, headers
end)

app:use(function(req, next)             -- writes need the bearer token
  if req.method ~= "GET" and req.method ~= "HEAD" and req.method ~= "OPTIONS"
     and req.headers.authorization ~= "Bearer " .. TOKEN then
    http.abort(401, { error = "a bearer token is needed" }, { ["WWW-Authenticate"] = "Bearer" })
  end
  return next(req)
end)

app:route("/api/notes", function()
  local list = aio.json.array()          -- [] when there are none, not {}
  for _, n in ipairs(notes) do list[#list + 1] = n end
  return list
end, "GET")

app:route("/api/notes", function(req)
  local ctype = req.headers["content-type"] or ""
  -- JSON or a form post; a malformed JSON body is answered 400 by req:json()
  local fields = ctype:find("json", 1, true) and req:json() or req:form()
  local text = type(fields) == "table" and fields.text
  if type(text) ~= "string" or text == "" then
    http.abort(422, { error = "text: a non-empty string is needed" })
  end
  local note = { id = next_id, text = text }
  next_id = next_id + 1
  notes[#notes + 1] = note
  publish("note", text)
  return note, 201, { Location = "/api/notes/" .. note.id }
end, "POST")

local function find(id)
  for i, n in ipairs(notes) do if tostring(n.id) == id then return n, i end end
  http.abort(404, { error = "no note " .. id })
end

app:route("/api/notes/:id", function(req) return (find(req.params.id)) end, "GET")
app:route("/api/notes/:id", function(req)
  local _, i = find(req.params.id)
  table.remove(notes, i)
  return "", 204
end, "DELETE")

-- an upload of any size, counted as it arrives (never held whole)
app:route("/api/upload", function(req)
  local bytes = 0
  for piece in req:chunks() do bytes = bytes + #piece end
  return { bytes = bytes }
end, "POST", { stream_body = true, max_body = 1024 * 1024 * 1024 })

-- live notes for browsers (EventSource)
app:route("/api/events", function(req)
  local sse = req:sse()
  local q = aio.Queue(100)
  listeners[q] = true
  local ok, err = pcall(function()
    sse:comment("connected")
    while true do
      local ev = aio.wait_for(function() return q:get() end, 15)
      sse:send(ev)
    end
  end)
  listeners[q] = nil
  -- 15 s without a note: a keep-alive comment would do too; here the stream ends
  if not ok and not aio.is_error(err, "TimeoutError") then error(err, 0) end
end, "GET")

app:static("/", HERE .. "/public", { max_age = 60 })

local function demo()
  local server = app:listen("127.0.0.1", 0, { compress = true })
  local base = "http://127.0.0.1:" .. server.port
  local auth = { Authorization = "Bearer " .. TOKEN }
  local function show(what, r)
    print(("%-34s %d %s"):format(what, r.status, r.body))
  end
  show("GET /api/notes (empty list)", http.get(base .. "/api/notes"))
  show("POST without a token", http.post(base .. "/api/notes", { json = { text = "x" } }))
  show("POST malformed JSON", http.post(base .. "/api/notes",
    { body = "{oops", headers = { Authorization = auth.Authorization, ["Content-Type"] = "application/json" } }))
  show("POST empty text", http.post(base .. "/api/notes", { json = { text = "" }, headers = auth }))
  -- a live listener, reading the event stream as it comes
  local listener = aio.spawn(function()
    local r = http.get(base .. "/api/events", { stream = true })
    local seen = ""
    while not seen:find("data: first note", 1, true) do seen = seen .. r:read() end
    r:close()
    return "event received: note"
  end)
  aio.sleep(0.05)
  show("POST JSON", http.post(base .. "/api/notes", { json = { text = "first note" }, headers = auth }))
  print(listener:wait())
  show("POST form", http.post(base .. "/api/notes", { form = { text = "second note" }, headers = auth }))
  show("GET /api/notes/2", http.get(base .. "/api/notes/2"))
  show("DELETE /api/notes/9", http.delete(base .. "/api/notes/9", { headers = auth }))
  local up = http.post(base .. "/api/upload", { body = string.rep("x", 3 * 1024 * 1024), headers = auth })
  show("POST 3 MiB to /api/upload", up)
  local page = http.get(base .. "/")
  print(("%-34s %d %s, %d bytes, ETag %s"):format("GET / (static)", page.status,
    page.headers["content-type"], #page.body, page.headers.etag))
  local again = http.get(base .. "/", { headers = { ["If-None-Match"] = page.headers.etag } })
  print(("%-34s %d"):format("GET / again with If-None-Match", again.status))
  local gz = http.get(base .. "/api/notes", { decompress = false })
  print(("%-34s %d, Content-Encoding %s"):format("GET /api/notes (raw)", gz.status,
    gz.headers["content-encoding"] or "none (under 1 KiB)"))
  server:close()
end

if arg and arg[1] == "--serve" then
  local port = tonumber(arg[2]) or 8080
  local server = app:listen("127.0.0.1", port, { compress = true, access_log = true })
  print(("serving on http://127.0.0.1:%d/ (token %q)"):format(server.port, TOKEN))
  server:serve_forever()
else
  demo()
end
