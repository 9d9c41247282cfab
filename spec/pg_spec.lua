-- aio.pg (API.md §14) against a real PostgreSQL 15 started for this file
-- (spec/lib/pg_server.lua: temp dir, its own port and Unix socket, TLS with
-- a certificate made per run, stopped by PID in teardown). Types, NULLs,
-- bytea, 100k rows, parameters, errors, transactions, LISTEN/NOTIFY, every
-- authentication method right and wrong, TLS modes, Unix sockets, a backend
-- killed mid-query, the server restarted, a query cancelled on the server,
-- an idle connection terminated, the pool; asyncpg writes rows luaio reads.
local aio = require "luaio"
local P = require "spec.lib.peers"
local S = require "spec.lib.pg_server"

local expect = require "spec.lib.expect"
local raises, bad_arg = expect.raises, expect.bad_arg

-- poll until pred() is true (a guard against hangs, not a timing assertion)
local function eventually(pred, what, sec)
  local deadline = aio.now() + (sec or 30)
  while not pred() do
    if aio.now() > deadline then error("never happened: " .. what, 2) end
    aio.sleep(0.05)
  end
end

local missing = S.missing()

describe("aio.pg against PostgreSQL 15", function()
  if missing then
    it("is skipped", function() pending(missing) end)
    return
  end

  local srv, URL, admin

  setup(function()
    srv = S.start()
    URL = srv:url(nil, nil, "sslmode=disable")
    admin = aio.pg.connect(URL)
  end)

  teardown(function()
    if admin then admin:close() end
    if srv then srv:stop() end
  end)

  -- queries running pg_sleep on the server now
  local function sleepers()
    return admin:query("SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' AND state = 'active' AND pid <> pg_backend_pid()")[1].n
  end

  describe("values", function()
    it("decodes every listed type, NULL and unknown types", function()
      local c <close> = aio.pg.connect(URL)
      local r = c:query([[SELECT 1::int2 AS i2, '-32768'::int2 AS i2n, '-2147483648'::int4 AS i4, 9223372036854775807::int8 AS i8,
        '-9223372036854775808'::int8 AS i8min, 26::oid AS o, 1.5::float4 AS f4, 0.1::float8 AS f8,
        'NaN'::float8 AS nan, 'Infinity'::float8 AS inf, '-Infinity'::float4 AS ninf, 1e300::float8 AS big,
        true AS t, false AS f, 'text'::text AS tx, 'vc'::varchar(5) AS vc, 'nm'::name AS nm,
        12345678901234567890.123456789::numeric AS num, '2024-02-29'::date AS d,
        '2024-02-29 12:34:56.789'::timestamp AS ts, '2024-02-29 12:34:56+00'::timestamptz AS tstz,
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, '\x00ff41'::bytea AS b,
        '{"a": [1, 2.5, "x", null], "b": {"c": true}}'::json AS j, '[1, 2]'::jsonb AS jb,
        NULL::int AS nul, '1 day'::interval AS iv, '10.0.0.1'::inet AS ip, 'x'::char(3) AS ch]])
      assert.equals(1, #r)
      local row = r[1]
      assert.equals(1, row.i2) assert.equals(-32768, row.i2n)
      assert.equals(-2147483648, row.i4)
      assert.equals(math.maxinteger, row.i8)
      assert.equals(math.mininteger, row.i8min)
      assert.equals("integer", math.type(row.i8))
      assert.equals(26, row.o)
      assert.equals(1.5, row.f4)
      assert.equals(0.1, row.f8)
      assert.equals("float", math.type(row.f8))
      assert.is_true(row.nan ~= row.nan)
      assert.equals(math.huge, row.inf)
      assert.equals(-math.huge, row.ninf)
      assert.equals(1e300, row.big)
      assert.is_true(row.t) assert.is_false(row.f)
      assert.equals("text", row.tx) assert.equals("vc", row.vc) assert.equals("nm", row.nm)
      assert.equals("12345678901234567890.123456789", row.num)
      assert.equals("2024-02-29", row.d)
      assert.equals("2024-02-29 12:34:56.789", row.ts)
      assert.matches("^2024%-02%-29 %d%d:34:56", row.tstz)
      assert.equals("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", row.u)
      assert.equals("\0\255A", row.b)
      assert.same({ 1, 2.5, "x", aio.json.null }, { row.j.a[1], row.j.a[2], row.j.a[3], row.j.a[4] })
      assert.is_true(row.j.b.c)
      assert.equals(2, row.jb[2])
      assert.is_nil(row.nul)
      assert.equals("1 day", row.iv)
      assert.equals("10.0.0.1", row.ip)
      assert.equals("x  ", row.ch)
      assert.same({ "i2", "i2n", "i4", "i8", "i8min", "o", "f4", "f8", "nan", "inf", "ninf", "big", "t", "f", "tx", "vc",
        "nm", "num", "d", "ts", "tstz", "u", "b", "j", "jb", "nul", "iv", "ip", "ch" }, r.columns)
      assert.equals(1, r.affected)
    end)

    it("binds every Lua type as a parameter and reads it back", function()
      local c <close> = aio.pg.connect(URL)
      local r = c:query("SELECT $1::int8 AS i, $2::float8 AS f, $3::text AS s, $4::bool AS b, $5::int AS n, "
        .. "$6::jsonb AS j, $7::float8 AS nan, $8::float8 AS inf, $9::bool AS f2, $10::numeric AS num",
        math.mininteger, 0.1, "héllo ✓ 𝄞", true, nil, { a = { 1, 2 }, b = "x" }, 0 / 0, -math.huge, false, 2 ^ 60)
      local row = r[1]
      assert.equals(math.mininteger, row.i)
      assert.equals(0.1, row.f)
      assert.equals("héllo ✓ 𝄞", row.s)
      assert.is_true(row.b) assert.is_false(row.f2)
      assert.is_nil(row.n)
      assert.same({ a = { 1, 2 }, b = "x" }, { a = { row.j.a[1], row.j.a[2] }, b = row.j.b })
      assert.is_true(row.nan ~= row.nan)
      assert.equals(-math.huge, row.inf)
      assert.equals("1152921504606846976", row.num)
      -- aio.json.null binds as NULL too
      assert.is_nil(c:query("SELECT $1::text AS x", aio.json.null)[1].x)
    end)

    it("bytea with all 256 byte values, through a parameter and back", function()
      local c <close> = aio.pg.connect(URL)
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      all = table.concat(all)
      c:execute("DROP TABLE IF EXISTS blobs; CREATE TABLE blobs (id int PRIMARY KEY, data bytea)")
      c:query("INSERT INTO blobs VALUES ($1, $2), (2, $3)", 1, all, all:rep(1000))
      local r = c:query("SELECT data, length(data) AS n, md5(data) AS h FROM blobs ORDER BY id")
      assert.equals(all, r[1].data)
      assert.equals(256, r[1].n)
      assert.equals(all:rep(1000), r[2].data)
      assert.equals(require("luaio.core").md5_hex(all), r[1].h)
      -- the escape output format decodes too
      c:execute("SET bytea_output = 'escape'")
      assert.equals(all, c:query("SELECT data FROM blobs WHERE id = 1")[1].data)
    end)

    it("unicode text round-trips, in names too", function()
      local c <close> = aio.pg.connect(URL)
      local s = "日本語 — ñ — 😀 — \u{10FFFF}"
      local r = c:query('SELECT $1::text AS "ключ"', s)
      assert.equals(s, r[1]["ключ"])
      assert.same({ "ключ" }, r.columns)
    end)

    it("100,000 rows of 5 columns", function()
      local c <close> = aio.pg.connect(URL)
      local r = c:query("SELECT g AS i, 'row ' || g AS t, g * 0.5 AS f, g % 2 = 0 AS b, "
        .. "timestamp '2024-01-01' + g * interval '1 second' AS ts FROM generate_series(1, 100000) g")
      assert.equals(100000, #r)
      assert.equals(100000, r.affected)
      for i = 1, 100000, 9973 do
        local row = r[i]
        assert.equals(i, row.i)
        assert.equals("row " .. i, row.t)
        assert.equals(i % 2 == 0, row.b)
      end
      assert.equals("2024-01-02 03:46:40", r[100000].ts)
    end)

    it("stores an injection string as data: parameters are never spliced", function()
      local c <close> = aio.pg.connect(URL)
      c:execute("DROP TABLE IF EXISTS x; CREATE TABLE x (v text)")
      local evil = "'); DROP TABLE x; --"
      local r = c:query("INSERT INTO x VALUES ($1)", evil)
      assert.equals(1, r.affected)
      assert.equals(evil, c:query("SELECT v FROM x")[1].v)
      assert.equals(evil, c:query("SELECT v FROM x WHERE v = $1", evil)[1].v)
      assert.equals(1, c:query("SELECT count(*) AS n FROM x")[1].n)
    end)
  end)

  describe("statements", function()
    it("execute runs a script of several statements; affected counts", function()
      local c <close> = aio.pg.connect(URL)
      local r = c:execute([[DROP TABLE IF EXISTS s1; CREATE TABLE s1 (id serial PRIMARY KEY, v int);
        INSERT INTO s1 (v) VALUES (1), (2), (3); UPDATE s1 SET v = v * 10 WHERE v > 1]])
      assert.equals(2, r.affected)
      r = c:execute("SELECT v FROM s1 ORDER BY v; SELECT 'x' AS last")
      assert.equals("x", r[1].last)
      assert.equals(3, c:query("DELETE FROM s1 WHERE v >= $1", 1).affected)
      assert.equals(0, #c:query("SELECT * FROM s1"))
      assert.same({ "id", "v" }, c:query("SELECT * FROM s1").columns)
    end)

    it("errors: PgError with every field; the connection stays usable", function()
      local c <close> = aio.pg.connect(URL)
      local e = raises("PgError", c.query, c, "SELECT 1 FROM nowhere WHERE")
      assert.equals("42601", e.code)
      assert.equals("ERROR", e.severity)
      assert.is_number(e.position)
      assert.matches("syntax error", e.message)
      assert.matches("^PgError: ", tostring(e))
      assert.equals(1, c:query("SELECT 1 AS one")[1].one)
      c:execute("DROP TABLE IF EXISTS u1; CREATE TABLE u1 (k text CONSTRAINT u1_k UNIQUE)")
      c:query("INSERT INTO u1 VALUES ($1)", "a")
      e = raises("PgError", c.query, c, "INSERT INTO u1 VALUES ($1)", "a")
      assert.equals("23505", e.code)
      assert.equals("u1_k", e.constraint)
      assert.equals("u1", e.table)
      assert.equals("public", e.schema)
      assert.matches("Key %(k%)=%(a%) already exists", e.detail)
      assert.is_string(e.file) assert.is_string(e.routine)
      e = raises("PgError", c.query, c, "SELECT 1/0")
      assert.equals("22012", e.code)
      e = raises("PgError", c.execute, c, "SELECT 1; SELECT nope; SELECT 3")
      assert.equals("42703", e.code)
      e = raises("PgError", c.query, c, "DO $$ BEGIN RAISE EXCEPTION 'boom' USING HINT = 'a hint', DETAIL = 'a detail'; END $$")
      assert.equals("a hint", e.hint) assert.equals("a detail", e.detail) assert.equals("P0001", e.code)
      assert.is_string(e.where)
      assert.equals(2, c:query("SELECT $1::int + 1 AS v", 1)[1].v)
      assert.equals("I", c.status)
    end)

    it("prepared statements are cached per connection, within a bound", function()
      local c <close> = aio.pg.connect({ url = URL, statement_cache_size = 3 })
      for i = 1, 10 do assert.equals(i, c:query("SELECT $1::int AS v, " .. i .. " AS k", i)[1].v) end
      local n = c:query("SELECT count(*) AS n FROM pg_prepared_statements")[1].n
      assert.is_true(n <= 3, "cached: " .. n)
      local again = c:query("SELECT $1::int AS v, 10 AS k", 5)   -- a cached one still works
      assert.equals(5, again[1].v)
    end)

    it("queries from several tasks on one connection are serialized", function()
      local c <close> = aio.pg.connect(URL)
      local jobs = {}
      for i = 1, 50 do
        jobs[i] = function()
          return c:query("SELECT $1::int AS v, pg_sleep(0.001)", i)[1].v
        end
      end
      local r = aio.gather(jobs)
      for i = 1, 50 do assert.equals(i, r[i]) end
    end)

    it("ParameterStatus and BackendKeyData are kept", function()
      local c <close> = aio.pg.connect(URL)
      assert.matches("^15", c.parameters.server_version)
      assert.equals("UTF8", c.parameters.client_encoding)
      assert.equals(c.pid, c:query("SELECT pg_backend_pid() AS p")[1].p)
      c:execute("SET application_name = 'changed'")
      assert.equals("changed", c.parameters.application_name)
    end)

    it("NoticeResponse is logged in debug mode only", function()
      local code = [[
        local aio = require "luaio"
        aio.run(function()
          aio.set_debug(DEBUG)
          local c = aio.pg.connect(URL)
          c:execute("DO $$ BEGIN RAISE NOTICE 'a notice for you'; END $$")
          c:close()
        end)]]
      local function run(debug)
        local src = code:gsub("DEBUG", tostring(debug)):gsub("URL", ("%q"):format(URL))
        return aio.exec({ P.luaio_bin(), "-e", src }, { timeout = 60 })
      end
      local on, off = run(true), run(false)
      assert.equals(0, on.status, on.stderr)
      assert.equals(0, off.status, off.stderr)
      assert.matches("NOTICE: a notice for you", on.stderr)
      assert.not_matches("a notice for you", off.stderr)
    end)
  end)

  describe("transactions", function()
    it("commit, rollback on error (re-raised), nested savepoints", function()
      local c <close> = aio.pg.connect(URL)
      c:execute("DROP TABLE IF EXISTS tx; CREATE TABLE tx (v int)")
      local a, b = c:transaction(function(conn)
        conn:query("INSERT INTO tx VALUES (1)")
        return "ok", 2
      end)
      assert.equals("ok", a) assert.equals(2, b)
      local ok, err = pcall(c.transaction, c, function(conn)
        conn:query("INSERT INTO tx VALUES (2)")
        error("user failure")
      end)
      assert.is_false(ok)
      assert.matches("user failure", err)
      c:transaction(function(conn)
        conn:query("INSERT INTO tx VALUES (3)")
        local ok2 = pcall(conn.transaction, conn, function()
          conn:query("INSERT INTO tx VALUES (4)")
          conn:query("SELECT 1/0")                    -- fails the savepoint only
        end)
        assert.is_false(ok2)
        conn:transaction(function() conn:query("INSERT INTO tx VALUES (5)") end)
      end)
      local vals = {}
      for _, r in ipairs(c:query("SELECT v FROM tx ORDER BY v")) do vals[#vals + 1] = r.v end
      assert.same({ 1, 3, 5 }, vals)
      assert.equals("I", c.status)
      -- a server error inside: rolled back, PgError re-raised
      local e = raises("PgError", c.transaction, c, function(conn) conn:query("INSERT INTO tx VALUES ('x')") end)
      assert.equals("22P02", e.code)
      assert.equals("I", c.status)
    end)

    it("a task cancelled inside a transaction: rolled back, connection usable", function()
      local c <close> = aio.pg.connect(URL)
      c:execute("DROP TABLE IF EXISTS txc; CREATE TABLE txc (v int)")
      local t = aio.spawn(function()
        c:transaction(function(conn)
          conn:query("INSERT INTO txc VALUES (1)")
          conn:query("SELECT pg_sleep(30)")
        end)
      end)
      eventually(function() return sleepers() > 0 end, "the sleep started")
      t:cancel()
      raises("CancelledError", t.wait, t)
      assert.equals(0, c:query("SELECT count(*) AS n FROM txc")[1].n)
      assert.equals("I", c.status)
      raises("TimeoutError", aio.timeout, 0.3, c.transaction, c, function(conn)
        conn:query("INSERT INTO txc VALUES (2)")
        conn:query("SELECT pg_sleep(30)")
      end)
      assert.equals(0, c:query("SELECT count(*) AS n FROM txc")[1].n)
      eventually(function() return sleepers() == 0 end, "the sleep was cancelled")
    end)
  end)

  describe("LISTEN/NOTIFY", function()
    it("delivers a notification that arrives while the connection is idle", function()
      local c <close> = aio.pg.connect(URL)
      c:listen("idle_chan")
      local got = aio.spawn(function()
        local it = c:notifications()
        return it()
      end)
      aio.sleep(0.2)
      srv:psql("NOTIFY idle_chan, 'from psql'", "luaio_test")
      local n = aio.wait_for(got, 30)
      assert.equals("idle_chan", n.channel)
      assert.equals("from psql", n.payload)
      assert.is_number(n.pid)
      assert.not_equals(c.pid, n.pid)
      -- the connection still answers queries after the idle reader
      assert.equals(1, c:query("SELECT 1 AS v")[1].v)
    end)

    it("queues notifications that arrive during a query; odd channel names are quoted", function()
      local c <close> = aio.pg.connect(URL)
      local chan = 'we"ird ch; DROP'
      c:listen(chan)
      local q = aio.spawn(function() return c:query("SELECT pg_sleep(0.5) AS s") end)
      aio.sleep(0.1)
      admin:query("SELECT pg_notify($1, $2)", chan, "one")
      admin:query("SELECT pg_notify($1, $2)", chan, "two")
      q:wait()
      local it = c:notifications()
      local a = aio.wait_for(function() return it() end, 10)
      local b = aio.wait_for(function() return it() end, 10)
      assert.equals(chan, a.channel)
      assert.same({ "one", "two" }, { a.payload, b.payload })
      assert.equals(admin.pid, a.pid)
      c:unlisten(chan)
    end)

    it("notifications(): cancelled and timed out waits leave the connection usable", function()
      local c <close> = aio.pg.connect(URL)
      c:listen("cancel_chan")
      local it = c:notifications()
      local t = aio.spawn(function() return it() end)
      aio.sleep(0.1)
      t:cancel()
      raises("CancelledError", t.wait, t)
      raises("TimeoutError", aio.timeout, 0.2, it)
      assert.equals(7, c:query("SELECT 7 AS v")[1].v)
      admin:query("NOTIFY cancel_chan, 'late'")
      assert.equals("late", aio.wait_for(function() return it() end, 10).payload)
      bad_arg("aio.pg.Connection expected", c.notifications, 42)
    end)

    it("listen: bad input, cancelled while waiting for the connection", function()
      local c <close> = aio.pg.connect(URL)
      bad_arg("#2.*string expected", c.listen, c, nil)
      bad_arg("#2", c.listen, c, "")
      local busy = aio.spawn(function() return c:query("SELECT pg_sleep(0.5)") end)
      aio.sleep(0.05)
      local l = aio.spawn(function() return c:listen("never") end)
      aio.sleep(0.05)
      l:cancel()
      raises("CancelledError", l.wait, l)
      busy:wait()
      raises("TimeoutError", aio.timeout, 0.05, function()
        aio.spawn(function() c:query("SELECT pg_sleep(0.3)") end)
        aio.sleep(0)
        c:listen("never2")
      end)
      assert.equals(1, c:query("SELECT 1 AS v")[1].v)
    end)
  end)

  describe("authentication and transports", function()
    local function url_for(user, password, extra)
      return ("postgresql://%s:%s@127.0.0.1:%d/luaio_test?sslmode=disable%s"):format(user,
        password:gsub("[^%w]", function(ch) return ("%%%02X"):format(ch:byte()) end), srv.port, extra or "")
    end

    it("trust, cleartext password, md5, SCRAM-SHA-256: right passwords", function()
      for _, u in ipairs { { "u_trust", "" }, { "u_pw", "pw secret" }, { "u_md5", "md5 secret" },
                           { "u_scram", "scr@m:pässword/?" } } do
        local c <close> = aio.pg.connect(url_for(u[1], u[2]))
        assert.equals(u[1], c:query("SELECT current_user AS u")[1].u)
      end
      -- the table form overrides the URL's fields
      local c <close> = aio.pg.connect({ url = url_for("u_md5", "wrong"), user = "u_scram", password = "scr@m:pässword/?" })
      assert.equals("u_scram", c:query("SELECT current_user AS u")[1].u)
    end)

    it("wrong or missing passwords: PgError 28P01; a rejecting pg_hba: 28000", function()
      for _, u in ipairs { "u_pw", "u_md5", "u_scram" } do
        local e = raises("PgError", aio.pg.connect, url_for(u, "wrong"))
        assert.equals("28P01", e.code, u)
        e = raises("PgError", aio.pg.connect, { host = "127.0.0.1", port = srv.port, user = u, database = "luaio_test",
          sslmode = "disable" })
        assert.equals("28P01", e.code)
      end
      srv:hba(S.DEFAULT_HBA:gsub("host all u_trust 127.0.0.1/32 trust", "host all u_trust 127.0.0.1/32 reject"))
      local ok, e = pcall(aio.pg.connect, url_for("u_trust", ""))
      srv:hba(S.DEFAULT_HBA)
      assert.is_false(ok)
      assert.is_true(aio.is_error(e, "PgError"), tostring(e))
      assert.equals("28000", e.code)
      local c <close> = aio.pg.connect(url_for("u_trust", ""))    -- back after the reload
    end)

    it("TLS: prefer (default), require, verify-full; a wrong host name fails", function()
      local base = ("postgresql://postgres@%s:%d/luaio_test"):format("%s", srv.port)
      local c1 <close> = aio.pg.connect(base:format("127.0.0.1"))
      assert.is_truthy(c1.stream:tls_info())
      local c2 <close> = aio.pg.connect(base:format("127.0.0.1") .. "?sslmode=require")
      assert.is_truthy(c2.stream:tls_info())
      assert.is_true(c2:query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")[1].ssl)
      local ca = srv.dir .. "/server.crt"
      local c3 <close> = aio.pg.connect(base:format("localhost") .. "?sslmode=verify-full&sslrootcert=" .. ca)
      assert.equals(1, c3:query("SELECT 1 AS v")[1].v)
      raises("TLSError", aio.pg.connect, base:format("127.0.0.1") .. "?sslmode=verify-full&sslrootcert=" .. ca)
      raises("TLSError", aio.pg.connect, base:format("localhost") .. "?sslmode=verify-full")   -- not a known CA
      local c4 <close> = aio.pg.connect(base:format("127.0.0.1") .. "?sslmode=disable")
      assert.is_falsy(c4.stream:tls_info())
    end)

    it("a Unix socket: ?host=/socket/dir", function()
      local c <close> = aio.pg.connect(("postgres://postgres@/luaio_test?host=%s&port=%d"):format(srv.sock, srv.port))
      assert.is_nil(c:query("SELECT inet_client_addr() AS a")[1].a)
      local c2 <close> = aio.pg.connect({ host = srv.sock, port = srv.port, user = "postgres", database = "luaio_test" })
      assert.equals(1, c2:query("SELECT 1 AS v")[1].v)
    end)
  end)

  describe("cancellation and faults", function()
    it("a task cancelled mid-query cancels the query on the server; the connection stays usable", function()
      local c <close> = aio.pg.connect(URL)
      local t = aio.spawn(function() return c:query("SELECT pg_sleep(60)") end)
      eventually(function() return sleepers() > 0 end, "the sleep started")
      t:cancel()
      raises("CancelledError", t.wait, t)
      eventually(function() return sleepers() == 0 end, "the query left the server")
      assert.equals(3, c:query("SELECT $1::int AS v", 3)[1].v)
      -- a timeout the same way, for query and execute
      raises("TimeoutError", aio.timeout, 0.3, c.query, c, "SELECT pg_sleep(60)")
      raises("TimeoutError", aio.wait_for, function() return c:execute("SELECT pg_sleep(60)") end, 0.3)
      eventually(function() return sleepers() == 0 end, "the queries left the server")
      assert.equals("x", c:execute("SELECT 'x' AS v")[1].v)
      -- the per-connection timeout option
      local ct <close> = aio.pg.connect({ url = URL, timeout = 0.3 })
      raises("TimeoutError", ct.query, ct, "SELECT pg_sleep(60)")
      assert.equals(1, ct:query("SELECT 1 AS v")[1].v)
    end)

    it("a cancelled query whose rows are coming: drained, the connection usable", function()
      local c <close> = aio.pg.connect(URL)
      local t = aio.spawn(function() return c:query("SELECT g, repeat('x', 100) FROM generate_series(1, 3000000) g") end)
      aio.sleep(0.3)
      t:cancel()
      raises("CancelledError", t.wait, t)
      assert.equals(5, c:query("SELECT 5 AS v")[1].v)
    end)

    it("connect: bad input, timeout and cancellation", function()
      bad_arg("#1 to 'aio.pg.connect' %(string or table expected, got number%)", aio.pg.connect, 42)
      bad_arg("postgresql://", aio.pg.connect, "http://x")
      bad_arg("port", aio.pg.connect, { port = 70000 })
      bad_arg("sslmode", aio.pg.connect, { sslmode = "always" })
      bad_arg("field 'user'", aio.pg.connect, { user = 1 })
      -- a server that accepts and never answers
      local silent = aio.start_server(function(s) aio.sleep(60) end, "127.0.0.1", 0)
      local e = raises("TimeoutError", aio.pg.connect, { host = "127.0.0.1", port = silent.port, timeout = 0.2,
        sslmode = "disable" })
      assert.matches("timed out", e.message)
      raises("TimeoutError", aio.wait_for, function() return aio.pg.connect(("postgresql://x@127.0.0.1:%d/x?sslmode=disable"):format(silent.port)) end, 0.2)
      local t = aio.spawn(aio.pg.connect, ("postgresql://x@127.0.0.1:%d/x"):format(silent.port))
      aio.sleep(0.1)
      t:cancel()
      raises("CancelledError", t.wait, t)
      silent:close()
      raises("ConnectionError", aio.pg.connect, ("postgresql://x@127.0.0.1:%d/x"):format(P.free_port()))
    end)

    it("a peer that breaks the protocol: ProtocolError at connect, a clean EOF: ConnectionError", function()
      local function fake(reply)
        return aio.start_server(function(s)
          s:read(8192)                                 -- the startup message
          s:write(reply)
          s:drain()
          aio.sleep(0.2)
        end, "127.0.0.1", 0)
      end
      local bad = fake("R\0\0\0\2")                    -- a length under 4
      raises("ProtocolError", aio.pg.connect, { host = "127.0.0.1", port = bad.port, sslmode = "disable" })
      bad:close()
      local eof = fake("")
      raises("ConnectionError", aio.pg.connect, { host = "127.0.0.1", port = eof.port, sslmode = "disable" })
      eof:close()
      local cut = fake("R\0\0\0\8\0\0")                -- EOF inside a message
      raises("ConnectionError", aio.pg.connect, { host = "127.0.0.1", port = cut.port, sslmode = "disable" })
      cut:close()
      local odd = fake("R\0\0\0\8\0\0\0\99")            -- an authentication method nobody knows
      local e = raises("PgError", aio.pg.connect, { host = "127.0.0.1", port = odd.port, sslmode = "disable" })
      assert.matches("not supported", e.message)
      odd:close()
    end)

    it("query, execute, transaction: bad input; use after close", function()
      local c = aio.pg.connect(URL)
      bad_arg("#2.*string expected, got number", c.query, c, 1)
      bad_arg("#3.*got function", c.query, c, "SELECT $1", print)
      bad_arg("#4.*got thread", c.query, c, "SELECT $1, $2", 1, coroutine.create(print))
      bad_arg("aio.pg.Connection expected", c.query, {}, "SELECT 1")
      bad_arg("#2.*string expected, got nil", c.execute, c)
      bad_arg("#2.*function expected", c.transaction, c, "x")
      -- the wrong number of parameters is the server's error
      local e = raises("PgError", c.query, c, "SELECT $1::int, $2::int", 1)
      assert.equals("08P01", e.code)
      assert.equals(1, c:query("SELECT 1 AS v")[1].v)
      c:close()
      c:close()
      raises("ConnectionError", c.query, c, "SELECT 1")
      raises("ConnectionError", c.execute, c, "SELECT 1")
    end)

    it("an idle connection terminated by the server: the pool's next query works", function()
      local pool <close> = aio.pg.pool({ url = URL, max_connections = 1 })
      local pid = pool:query("SELECT pg_backend_pid() AS p")[1].p
      admin:query("SELECT pg_terminate_backend($1)", pid)
      eventually(function()
        return admin:query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1", pid)[1].n == 0
      end, "the backend is gone")
      aio.sleep(0.1)
      local pid2 = pool:query("SELECT pg_backend_pid() AS p")[1].p
      assert.not_equals(pid, pid2)
      -- a connection of its own sees a ConnectionError, once, then stays closed
      local c = aio.pg.connect(URL)
      admin:query("SELECT pg_terminate_backend($1)", c.pid)
      eventually(function() return c:closed() or not pcall(c.query, c, "SELECT 1") end, "the connection broke", 10)
      raises("ConnectionError", c.query, c, "SELECT 1")
    end)
  end)

  describe("pool", function()
    it("max_connections, FIFO waiters, acquire with <close>, transaction", function()
      local pool <close> = aio.pg.pool({ url = URL, max_connections = 3 })
      assert.equals(3, pool.max_connections)
      local jobs = {}
      for i = 1, 20 do jobs[i] = function() return pool:query("SELECT $1::int AS v, pg_sleep(0.01)", i)[1].v end end
      local r = aio.gather(jobs)
      for i = 1, 20 do assert.equals(i, r[i]) end
      assert.is_true(pool:size() <= 3)
      local pids = admin:query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = 'luaio_test' AND pid <> pg_backend_pid() AND backend_type = 'client backend'")[1].n
      assert.is_true(pids >= 1)
      do
        local c <close> = pool:acquire()
        assert.equals(1, c:query("SELECT 1 AS v")[1].v)
      end
      local a, b = pool:transaction(function(conn)
        conn:execute("CREATE TABLE IF NOT EXISTS pt (v int)")
        conn:query("INSERT INTO pt VALUES (1)")
        return "done", conn
      end)
      assert.equals("done", a)
      assert.equals(1, pool:query("SELECT count(*) AS n FROM pt")[1].n)
      assert.equals("I", b.status)
      assert.equals("x", pool:execute("SELECT 1; SELECT 'x' AS v")[1].v)
      -- FIFO: waiters get the connection in the order they asked
      local small <close> = aio.pg.pool({ url = URL, max_connections = 1 })
      local held = small:acquire()
      local order = {}
      local ts = {}
      for i = 1, 3 do
        ts[i] = aio.spawn(function()
          local c <close> = small:acquire()
          order[#order + 1] = i
          aio.sleep(0.01)
        end)
        aio.sleep(0.01)
      end
      held:release()
      for i = 1, 3 do ts[i]:wait() end
      assert.same({ 1, 2, 3 }, order)
    end)

    it("acquire: timeout, cancellation, bad input; a failed transaction is rolled back", function()
      local pool <close> = aio.pg.pool({ url = URL, max_connections = 1 })
      local c = pool:acquire()
      raises("TimeoutError", aio.timeout, 0.1, pool.acquire, pool)
      local t = aio.spawn(pool.acquire, pool)
      aio.sleep(0.05)
      t:cancel()
      raises("CancelledError", t.wait, t)
      -- given back inside a failed transaction
      c:execute("BEGIN")
      pcall(c.query, c, "SELECT 1/0")
      assert.equals("E", c.status)
      c:release()
      local c2 <close> = pool:acquire()
      assert.equals("I", c2.status)
      assert.equals(1, c2:query("SELECT 1 AS v")[1].v)
      bad_arg("aio.pg.Pool expected", pool.acquire, {})
      bad_arg("#2.*string expected", pool.query, pool, nil)
      bad_arg("#2.*function expected", pool.transaction, pool, 1)
      bad_arg("#1 to 'aio.pg.pool'", aio.pg.pool, true)
      bad_arg("max_connections", aio.pg.pool, { max_connections = 0 })
    end)
  end)

  it("asyncpg writes rows that luaio reads", function()
    if aio.exec({ "/usr/bin/python3", "-c", "import asyncpg" }).status ~= 0 then return pending("no asyncpg") end
    local script = [[
import asyncio, sys, asyncpg, json
async def main():
    c = await asyncpg.connect(sys.argv[1])
    await c.execute("DROP TABLE IF EXISTS from_py; CREATE TABLE from_py (i int8, f float8, t text, b bool, by bytea, j jsonb, n int)")
    rows = [(i, i / 4, "ü" * (i % 5) + str(i), i % 3 == 0, bytes(range(i % 256)), json.dumps({"k": i}), None) for i in range(1000)]
    await c.copy_records_to_table("from_py", records=rows)
    await c.execute("INSERT INTO from_py VALUES ($1, $2, $3, $4, $5, $6, $7)", -2**63, float("nan"), "", False, b"", "[]", 5)
    await c.close()
asyncio.run(main())
]]
    local path = P.write(srv.dir .. "/writer.py", script)
    local r = aio.exec({ "/usr/bin/python3", path, URL }, { timeout = 60 })
    assert.equals(0, r.status, r.stderr)
    local c <close> = aio.pg.connect(URL)
    local rows = c:query("SELECT * FROM from_py ORDER BY i")
    assert.equals(1001, #rows)
    assert.equals(math.mininteger, rows[1].i)
    assert.is_true(rows[1].f ~= rows[1].f)
    assert.equals("", rows[1].t)
    assert.equals(5, rows[1].n)
    for i = 0, 999 do
      local row = rows[i + 2]
      assert.equals(i, row.i)
      assert.equals(i / 4, row.f)
      assert.equals(("ü"):rep(i % 5) .. i, row.t)
      assert.equals(i % 3 == 0, row.b)
      local bytes = {}
      for k = 0, i % 256 - 1 do bytes[#bytes + 1] = string.char(k) end
      assert.equals(table.concat(bytes), row.by)
      assert.equals(i, row.j.k)
      assert.is_nil(row.n)
    end
  end)

  it("scripts/async_context.lua --pg URL: connect, query, close through <close>", function()
    local r = aio.exec({ P.luaio_bin(), "scripts/async_context.lua", "--pg", URL }, { timeout = 60 })
    assert.equals(0, r.status, r.stderr)
    local a, b, c = r.stdout:find("Connecting"), r.stdout:find("Result of: SELECT current_user"), r.stdout:find("Closing")
    assert.is_true(a < b and b < c, r.stdout)
    assert.matches("first: postgres", r.stdout)
    assert.matches("Done", r.stdout)
  end)

  it("is named by debug mode's report when left open, with the line that opened it", function()
    local r = aio.exec({ P.luaio_bin(), "-e", ("aio.set_debug(true)\nlocal c = aio.pg.connect(%q)\n"
      .. "local closed = aio.pg.connect(%q) closed:close()"):format(URL, URL) }, { timeout = 60 })
    assert.equals(0, r.status, r.stderr)
    assert.matches("left open at loop close:\n  PostgreSQL connection to 127%.0%.0%.1:%d+ %(created at %(command line%):2%)\n$", r.stderr)
  end)

  -- last: these stop the server
  describe("the server killed and restarted", function()
    it("a backend killed mid-query: ConnectionError; the pool recovers after a restart", function()
      local pool <close> = aio.pg.pool({ url = URL, max_connections = 2 })
      assert.equals(1, pool:query("SELECT 1 AS v")[1].v)
      local c = aio.pg.connect(URL)
      local t = aio.spawn(function() return c:query("SELECT pg_sleep(60)") end)
      aio.sleep(0.3)
      aio.exec({ "kill", "-KILL", tostring(c.pid) })
      local e = raises("ConnectionError", t.wait, t)
      assert.is_string(e.message)
      raises("ConnectionError", c.query, c, "SELECT 1")
      -- the postmaster restarts its backends after a crash; the pool drops the dead connections
      eventually(function() return pcall(pool.query, pool, "SELECT 1") end, "the pool works after the crash", 60)
      -- a full stop and start on the same port
      admin:close()
      srv:halt()
      raises("ConnectionError", pool.query, pool, "SELECT 1")
      srv:launch()
      eventually(function() return pcall(pool.query, pool, "SELECT 1") end, "the pool works after the restart", 60)
      assert.equals(2, pool:query("SELECT $1::int AS v", 2)[1].v)
      admin = aio.pg.connect(URL)
    end)
  end)
end)
