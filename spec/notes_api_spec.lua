-- scripts/notes_api.lua: a JSON API on PostgreSQL with a Redis cache, run
-- against a real PostgreSQL 15 and a real redis-server started here (in temp
-- dirs, stopped by PID): the self-demo, then the server under requests,
-- with Redis killed and brought back meanwhile.
local aio = require "luaio"
local P = require "spec.lib.peers"
local PG = require "spec.lib.pg_server"
local R = require "spec.lib.redis_server"

local skip = PG.missing() or P.missing("redis-server")

describe("scripts/notes_api.lua (PostgreSQL + Redis cache)", function()
  if skip then pending(skip) return end
  local pg, redis, dir

  setup(function()
    pg = PG.start()
    redis = R.start()
    dir = P.tmpdir("notes")
  end)

  teardown(function()
    if redis then redis:stop() end
    if pg then pg:stop() end
    P.rmtree(dir)
  end)

  local function run_script(args)
    local argv = { P.luaio_bin(), "scripts/notes_api.lua" }
    for _, a in ipairs(args) do argv[#argv + 1] = a end
    return aio.exec(argv, { timeout = 60 })
  end

  it("shows the cache at work in its self-demo, and stores an injection as text", function()
    local r = run_script({ "--pg", pg:url(), "--redis", redis:url() })
    assert.equals(0, r.status, r.stderr)
    local out = r.stdout
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.matches("^POST +/notes +%-> 201", lines[1])
    assert.matches("%-> 200 %(cache miss%)", lines[2])
    assert.matches("%-> 200 %(cache hit%)", lines[3])
    assert.matches("^PUT .*%-> 200.*bread", lines[4])
    assert.matches("%-> 200 %(cache miss%).*bread", lines[5])       -- the write dropped the entry
    assert.matches("DROP TABLE notes", lines[6], nil, true)
    assert.matches("%-> 422", lines[8])
    assert.matches("^DELETE.*%-> 204", lines[9])
    assert.matches("%-> 404", lines[10])
    assert.matches('"redis":true', lines[11])
    -- the table survived the title that tried to drop it
    assert.equals("1", (pg:psql("SELECT count(*) FROM notes WHERE title LIKE '%DROP TABLE%'", "luaio_test"):gsub("%s", "")))
  end)

  it("refuses to start without both URLs (usage, status 2)", function()
    local r = run_script({ "--pg", pg:url() })
    assert.equals(2, r.status)
    assert.matches("usage: luaio scripts/notes_api.lua", r.stderr)
    r = run_script({ "--bogus" })
    assert.equals(2, r.status)
    assert.matches("unknown argument %-%-bogus", r.stderr)
  end)

  describe("serving", function()
    local server, base

    before_each(function()
      local port = P.free_port()
      server = P.start({ P.luaio_bin(), "scripts/notes_api.lua", "--pg", pg:url(), "--redis", redis:url(),
                         "--serve", tostring(port) }, { dir = dir, name = "notes_api." .. port, cwd = P.cwd() })
      server:wait_for("notes API on http://127%.0%.0%.1:" .. port, 30)
      base = "http://127.0.0.1:" .. port
    end)

    after_each(function() if server then server:stop() end end)

    local function create(title, tags)
      local res = aio.http.post(base .. "/notes", { json = { title = title, tags = tags } })
      assert.equals(201, res.status, res.body)
      return res:json()
    end

    it("answers 50 concurrent readers of one note the same, then from the cache", function()
      local note = create("shared")
      local results = aio.gather((function()
        local fns = {}
        for i = 1, 50 do fns[i] = function() return aio.http.get(base .. "/notes/" .. note.id) end end
        return fns
      end)())
      for _, res in ipairs(results) do
        assert.equals(200, res.status)
        assert.equals("shared", res:json().title)
        assert.is_truthy(res.headers["x-cache"] == "hit" or res.headers["x-cache"] == "miss")
      end
      assert.equals("hit", aio.http.get(base .. "/notes/" .. note.id).headers["x-cache"])
    end)

    it("keeps answering from PostgreSQL while Redis is down, and caches again once it is back", function()
      local note = create("resilient", { "ops" })
      assert.equals("miss", aio.http.get(base .. "/notes/" .. note.id).headers["x-cache"])
      redis:kill()
      local res = aio.http.get(base .. "/notes/" .. note.id, { timeout = 30 })
      assert.equals(200, res.status)
      assert.equals("miss", res.headers["x-cache"])
      assert.equals("resilient", res:json().title)
      local health = aio.http.get(base .. "/health")
      assert.equals(200, health.status)
      assert.is_false(health:json().redis)
      assert.matches("cache unavailable", server:output())
      redis:restart()
      local deadline = aio.now() + 30
      local status
      repeat
        aio.sleep(0.1)
        status = aio.http.get(base .. "/notes/" .. note.id).headers["x-cache"]
      until status == "hit" or aio.now() > deadline
      assert.equals("hit", status)
    end)

    it("answers bad input with 400, 404 and 422, and stores nothing", function()
      local before = pg:psql("SELECT count(*) FROM notes", "luaio_test")
      local bad = aio.http.post(base .. "/notes", { body = "{not json", headers = { ["Content-Type"] = "application/json" } })
      assert.equals(400, bad.status)
      assert.equals(422, aio.http.post(base .. "/notes", { json = { title = 42 } }).status)
      assert.equals(422, aio.http.post(base .. "/notes", { json = { title = ("x"):rep(201) } }).status)
      assert.equals(422, aio.http.post(base .. "/notes", { json = { title = "t", tags = { 1 } } }).status)
      assert.equals(422, aio.http.post(base .. "/notes", { json = { title = "t", tags = "ops" } }).status)
      assert.equals(422, aio.http.post(base .. "/notes", { json = { 1, 2 } }).status)   -- an array: no title
      assert.equals(404, aio.http.get(base .. "/notes/abc").status)
      assert.equals(404, aio.http.get(base .. "/notes/99999999999999999999").status)
      assert.equals(404, aio.http.delete(base .. "/notes/123456789").status)
      assert.equals(404, aio.http.put(base .. "/notes/123456789", { json = { title = "t" } }).status)
      assert.equals(before, pg:psql("SELECT count(*) FROM notes", "luaio_test"))
    end)

    it("filters by tag with a bound parameter (a quote in the tag is data)", function()
      create("tagged", { "it's" })
      local res = aio.http.get(base .. "/notes", { params = { tag = "it's" } })
      assert.equals(200, res.status)
      local list = res:json()
      assert.equals(1, #list)
      assert.equals("tagged", list[1].title)
      assert.same({}, aio.http.get(base .. "/notes", { params = { tag = "') OR 1=1 --" } }):json())
    end)
  end)
end)
