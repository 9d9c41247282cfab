-- A JSON API on PostgreSQL with a Redis cache (API.md §14): notes kept in a
-- table, each read through a cache-aside entry in Redis (60 s) that every
-- write drops. Both sides are pools: a request borrows a connection for one
-- query at a time. The cache is an optimisation, never a dependency: with
-- Redis down the API still answers, from PostgreSQL.
--   luaio scripts/notes_api.lua --pg URL --redis URL                 a self-demo, then exits
--   luaio scripts/notes_api.lua --pg URL --redis URL --serve [port]  serves until Ctrl+C
local aio = require "luaio"
local http, json = aio.http, aio.json

local opts = { port = 8080 }
do
  local i = 1
  while arg[i] do
    local a = arg[i]
    if a == "--pg" or a == "--redis" then opts[a:sub(3)] = arg[i + 1] i = i + 1
    elseif a == "--serve" then
      opts.serve = true
      if tonumber(arg[i + 1]) then opts.port = tonumber(arg[i + 1]) i = i + 1 end
    else io.stderr:write("notes_api: unknown argument ", a, "\n") os.exit(2) end
    i = i + 1
  end
  if not (opts.pg and opts.redis) then
    io.stderr:write("usage: luaio scripts/notes_api.lua --pg URL --redis URL [--serve [port]]\n")
    os.exit(2)
  end
end

local db = aio.pg.pool { url = opts.pg, max_connections = 10 }
local cache = aio.redis.pool { url = opts.redis, max_connections = 10, timeout = 2 }
local CACHE_SECONDS = 60
local COLUMNS = "id, title, body, tags, updated_at"

db:execute [[
  CREATE TABLE IF NOT EXISTS notes (
    id bigserial PRIMARY KEY,
    title text NOT NULL,
    body text NOT NULL DEFAULT '',
    tags jsonb NOT NULL DEFAULT '[]',
    updated_at timestamptz NOT NULL DEFAULT now())
]]

-- ---- the cache: every failure is logged once and read as a miss ----------
local cache_down = false
local function cached(what, ...)
  local ok, result = pcall(cache[what], cache, ...)
  if ok then
    if cache_down then io.stderr:write("notes_api: the cache is back\n") end
    cache_down = false
    return result
  end
  if not cache_down then io.stderr:write("notes_api: cache unavailable, serving from PostgreSQL: ", tostring(result), "\n") end
  cache_down = true
end
local function cache_key(id) return "notes:" .. id end

-- ---- input ------------------------------------------------------------------
local function note_id(req)
  local id = req.params.id
  if not id:match("^%d+$") or #id > 18 then http.abort(404, { error = "no such note" }) end
  return math.tointeger(tonumber(id))
end

-- title (required), body, tags (array of strings) from a JSON object
local function note_fields(req)
  local t = req:json()                           -- malformed JSON: 400
  if type(t) ~= "table" then http.abort(400, { error = "a JSON object expected" }) end
  if type(t.title) ~= "string" or t.title == "" or #t.title > 200 then
    http.abort(422, { error = "title: a string of 1 to 200 bytes expected" })
  end
  if t.body ~= nil and type(t.body) ~= "string" then http.abort(422, { error = "body: a string expected" }) end
  local tags = json.array()
  for i, tag in ipairs(type(t.tags) == "table" and t.tags or {}) do
    if type(tag) ~= "string" then http.abort(422, { error = ("tags[%d]: a string expected"):format(i) }) end
    tags[i] = tag
  end
  if t.tags ~= nil and type(t.tags) ~= "table" then http.abort(422, { error = "tags: an array expected" }) end
  return t.title, t.body or "", tags                -- tags: bound as JSON text
end

local JSON = { ["Content-Type"] = "application/json" }
local function with_cache_status(status) return { ["Content-Type"] = "application/json", ["X-Cache"] = status } end

-- ---- routes -------------------------------------------------------------------
local app = http.app()

app:route("/notes", function(req)
  local tag = req.query and req.query.tag
  local rows = db:query("SELECT " .. COLUMNS .. " FROM notes WHERE $1::text IS NULL OR tags ? $1 " ..
                        "ORDER BY id DESC LIMIT 50", tag)
  local list = json.array()
  for i, row in ipairs(rows) do list[i] = row end
  return list
end, "GET")

app:route("/notes", function(req)
  local title, body, tags = note_fields(req)
  local row = db:query("INSERT INTO notes (title, body, tags) VALUES ($1, $2, $3::jsonb) RETURNING " .. COLUMNS,
                       title, body, tags)[1]
  return row, 201, { Location = "/notes/" .. row.id }
end, "POST")

app:route("/notes/:id", function(req)
  local id = note_id(req)
  local text = cached("get", cache_key(id))
  if text then return text, 200, with_cache_status("hit") end
  local row = db:query("SELECT " .. COLUMNS .. " FROM notes WHERE id = $1", id)[1]
  if not row then http.abort(404, { error = "no such note" }) end
  text = json.encode(row)
  cached("set", cache_key(id), text, "EX", CACHE_SECONDS)
  return text, 200, with_cache_status("miss")
end, "GET")

app:route("/notes/:id", function(req)
  local id = note_id(req)
  local title, body, tags = note_fields(req)
  local row = db:query("UPDATE notes SET title = $2, body = $3, tags = $4::jsonb, updated_at = now() " ..
                       "WHERE id = $1 RETURNING " .. COLUMNS, id, title, body, tags)[1]
  cached("del", cache_key(id))                   -- after the write: no stale read can refill it first
  if not row then http.abort(404, { error = "no such note" }) end
  return row
end, "PUT")

app:route("/notes/:id", function(req)
  local id = note_id(req)
  local gone = db:query("DELETE FROM notes WHERE id = $1", id).affected
  cached("del", cache_key(id))
  if gone == 0 then http.abort(404, { error = "no such note" }) end
  return "", 204
end, "DELETE")

app:route("/health", function()
  local pg_ok = pcall(db.query, db, "SELECT 1")
  local redis_ok = cached("ping") == "PONG"
  return { postgresql = pg_ok, redis = redis_ok }, pg_ok and 200 or 503, JSON
end, "GET")

-- ---- serve, or show it working ----------------------------------------------------
if opts.serve then
  local server = app:listen("127.0.0.1", opts.port)
  print(("notes API on http://127.0.0.1:%d/notes (PostgreSQL %s, Redis %s)"):format(server.port, opts.pg, opts.redis))
  io.stdout:flush()
  server:serve_forever()
  return
end

local server <close> = app:listen("127.0.0.1", 0)
local base = "http://127.0.0.1:" .. server.port
local function show(method, path, body)
  local res = http.request(method, base .. path, { json = body })
  local line = ("%-6s %-10s -> %d"):format(method, path, res.status)
  if res.headers["x-cache"] then line = line .. " (cache " .. res.headers["x-cache"] .. ")" end
  print(line .. (res.body ~= "" and ("  " .. res.body:gsub("\n", "")) or ""))
  return res
end
local created = json.decode(show("POST", "/notes", { title = "groceries", body = "milk, eggs", tags = { "home" } }).body)
local path = "/notes/" .. created.id
show("GET", path)                                         -- miss: from PostgreSQL, then cached
show("GET", path)                                         -- hit
show("PUT", path, { title = "groceries", body = "milk, eggs, bread", tags = { "home", "today" } })
show("GET", path)                                         -- miss again: the write dropped the entry
show("POST", "/notes", { title = "'); DROP TABLE notes; --" })   -- stored as text, never spliced
show("GET", "/notes?tag=today")
show("POST", "/notes", { body = "no title" })
show("DELETE", path)
show("GET", path)
show("GET", "/health")
db:close()
cache:close()
