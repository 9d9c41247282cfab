-- aio.redis (API.md §14) against real redis-server processes (started by
-- the test in a temp directory, stopped by PID: spec/lib/redis_server.lua):
-- every reply type in RESP2 and RESP3, binary values, big replies,
-- pipelines, pub/sub, AUTH (password and ACL user), SELECT, the Unix
-- socket, TLS, many tasks on one client, the pool (its limit, FIFO, a
-- server killed and restarted, idle connections closed by the server), the
-- server killed mid-command; cancellation, timeouts and bad input for every
-- waiting call; and redis-py (/usr/bin/python3) reading what luaio wrote and
-- the other way round.
local aio = require "luaio"
local P = require "spec.lib.peers"
local R = require "spec.lib.redis_server"

local MiB = 1024 * 1024
local VALGRIND = os.getenv("LUAIO_VALGRIND")

local expect = require "spec.lib.expect"
local raises, bad_arg = expect.raises, expect.bad_arg

-- every byte value, n bytes
local function bytes(n)
  local t = {}
  for i = 0, 255 do t[#t + 1] = string.char(i) end
  local s = table.concat(t)
  return s:rep(n // 256 + 1):sub(1, n)
end

-- a server that accepts and never answers -> server, port
local function silent_server()
  local conns = {}
  local s = aio.start_server(function(st)
    conns[#conns + 1] = st
    st:read_all()
  end, "127.0.0.1", 0)
  return s, s.port
end

-- wait until cond() (a guard against hangs only)
local function eventually(cond, sec)
  local deadline = aio.now() + (sec or 20)
  while not cond() do
    assert(aio.now() < deadline, "condition not met in time")
    aio.sleep(0.02)
  end
end

if R.missing then
  pending(R.missing)
  return
end

describe("aio.redis against redis-server", function()
  local srv, c
  setup(function()
    srv = R.start()
    c = aio.redis.connect(srv:url())
  end)
  teardown(function()
    if c then c:close() end
    if srv then srv:stop() end
  end)

  it("is named by debug mode's report when left open, with the line that opened it", function()
    local r = aio.exec({ P.luaio_bin(), "-e", ("aio.set_debug(true)\nlocal c = aio.redis.connect(%q)\n"
      .. "local closed = aio.redis.connect(%q) closed:close()"):format(srv:url(), srv:url()) }, { timeout = 60 })
    assert.equals(0, r.status, r.stderr)
    assert.matches("left open at loop close:\n  Redis connection to 127%.0%.0%.1:%d+ %(created at %(command line%):2%)\n$", r.stderr)
  end)

  it("RESP2 replies: status, integer, bulk, nil, arrays with holes, nested arrays, errors", function()
    assert.equals("OK", c:set("k", "v"))
    assert.equals("v", c:get("k"))
    assert.equals(nil, c:get("no such key"))
    assert.equals(1, c:incr("counter:a"))
    assert.equals("integer", math.type(c:incrby("counter:a", 41)))
    assert.same({ "v", nil, "v" }, c:mget("k", "missing", "k"))
    assert.same({}, c:lrange("empty", 0, -1))
    assert.equals(nil, c:blpop("empty", 0.01))          -- the null array
    local nested = c:eval("return {1, {2, {3, 'x'}}, redis.status_reply('ST'), redis.error_reply('MYERR bad')}", 0)
    assert.same({ 1, { 2, { 3, "x" } }, "ST" }, { nested[1], nested[2], nested[3] })
    assert.is_true(aio.is_error(nested[4], "RedisError"))
    assert.equals("MYERR", nested[4].code)
    local err = raises("RedisError", c.lpush, c, "k", "x")
    assert.equals("WRONGTYPE", err.code)
    assert.matches("^RedisError: WRONGTYPE", tostring(err))
    assert.equals("v", c:get("k"), "the connection is fine after an error reply")
  end)

  it("RESP3 (protocol = 3): every type DEBUG PROTOCOL sends, and the same commands as RESP2", function()
    local c3 <close> = aio.redis.connect { url = srv:url(), protocol = 3 }
    local function dp(kind) return c3:call("DEBUG", "PROTOCOL", kind) end
    assert.equals("Hello World", dp("string"))
    assert.equals(12345, dp("integer"))
    assert.equals(3.141, dp("double"))
    assert.equals("float", math.type(dp("double")))
    assert.equals("1234567999999999999999999999999999999", dp("bignum"))
    assert.equals(nil, dp("null"))
    assert.same({ 0, 1, 2 }, dp("array"))
    assert.same({ 0, 1, 2 }, dp("set"))
    assert.same({ [0] = false, [1] = true, [2] = false }, dp("map"))
    assert.equals("Some real reply following the attribute", dp("attrib"))
    assert.equals("Some real reply following the push reply", dp("push"))
    assert.equals("This is a verbatim\nstring", dp("verbatim"))
    assert.equals(true, dp("true"))
    assert.equals(false, dp("false"))
    assert.equals("OK", c3:set("k3", "v3"))
    c3:hset("h3", "a", "1", "b", "2")
    assert.same({ a = "1", b = "2" }, c3:hgetall("h3"))
    assert.same({ a = "1", b = "2" }, c3:call("HGETALL", "h3"))
    assert.equals("WRONGTYPE", raises("RedisError", c3.lpush, c3, "k3", "x").code)
    -- and in RESP2: the flat array from call(), the table from the method
    assert.same({ a = "1", b = "2" }, c:hgetall("h3"))
    local flat = c:call("HGETALL", "h3")
    assert.equals(4, #flat)
    assert.equals(0, c:call("DEBUG", "PROTOCOL", "false"))
    assert.equals("3.141", c:call("DEBUG", "PROTOCOL", "double"))
  end)

  it("values are binary safe: empty, NUL bytes, every byte, 1 MiB, 64 MiB; numbers as Redis reads them", function()
    for _, v in ipairs { "", "\0", "a\0b\r\nc", bytes(256), bytes(MiB) } do
      c:set("bin", v)
      assert.equals(v, c:get("bin"))
    end
    if not VALGRIND then
      local big = bytes(64 * MiB)
      c:set("big", big)
      assert.equals(64 * MiB, c:strlen("big"))
      assert.equals(big, c:get("big"))
      c:del("big")
    end
    c:set("num", 42)
    assert.equals("42", c:get("num"))
    c:set("num", 0.1)
    assert.equals(0.1, tonumber(c:get("num")))
    assert.equals("-9223372036854775808", (c:set("num", math.mininteger) and c:get("num")))
    c:zadd("z", math.huge, "top", -math.huge, "bottom", 1.5, "mid")
    assert.same({ "bottom", "mid", "top" }, c:zrange("z", 0, -1))
  end)

  it("a big array: LRANGE of 100,000 elements", function()
    local n = VALGRIND and 20000 or 100000
    for base = 0, n - 1, 1000 do
      local args = {}
      for i = base + 1, base + 1000 do args[#args + 1] = "item" .. i end
      c:rpush("biglist", table.unpack(args))
    end
    local all = c:lrange("biglist", 0, -1)
    assert.equals(n, #all)
    assert.equals("item1", all[1])
    assert.equals("item" .. n, all[n])
    for i = 1, n, 997 do assert.equals("item" .. i, all[i]) end
    c:del("biglist")
  end)

  it("a pipeline of 1,000 commands: one array of replies, an error reply in its slot", function()
    local r = c:pipeline(function(p)
      for i = 1, 499 do p:set("p" .. i, i) end
      p:lpush("p1", "x")                    -- WRONGTYPE, in the middle
      for i = 1, 500 do p:get("p" .. i) end
    end)
    assert.equals(999, #r)                  -- (the 1,000th reply is nil: GET of a key never set)
    for i = 1, 499 do assert.equals("OK", r[i]) end
    assert.is_true(aio.is_error(r[500], "RedisError"))
    assert.equals("WRONGTYPE", r[500].code)
    for i = 1, 499 do assert.equals(tostring(i), r[500 + i]) end
    assert.equals(nil, r[1000])
    -- p:call, chaining, MULTI/EXEC inside, hgetall reshaped, empty pipelines
    local t = c:pipeline(function(p)
      p:call("SET", "pa", "1"):incr("pa")
      p:multi() p:incr("pa") p:incr("pa") p:exec()
      p:hset("ph", "f", "v") p:hgetall("ph")
    end)
    assert.same({ "OK", 2, "OK", "QUEUED", "QUEUED", { 3, 4 }, 1, { f = "v" } }, t)
    assert.same({}, c:pipeline(function() end))
  end)

  it("a pipeline whose function raises sends nothing; bad arguments are argument errors", function()
    local ok, err = pcall(c.pipeline, c, function(p) p:set("never", "1") error("mine") end)
    assert.is_false(ok)
    assert.matches("mine", err)
    assert.equals(0, c:exists("never"))
    bad_arg("#2 to 'set' %(string or number expected, got boolean%)", function()
      c:pipeline(function(p) p:set("k", true) end)
    end)
    bad_arg("#1 to 'pipeline' %(function expected, got string%)", function() c:pipeline("x") end)
    assert.equals("v", c:get("k"))
  end)

  it("100 tasks on one client: every reply goes to its caller", function()
    local tasks = {}
    for i = 1, 100 do
      tasks[i] = aio.spawn(function()
        c:set("t" .. i, "value" .. i)
        local r = c:pipeline(function(p) p:get("t" .. i) p:incr("shared") end)
        return c:get("t" .. i), r[1], c:append("t" .. i, "!")
      end)
    end
    for i = 1, 100 do
      local a, b, len = tasks[i]:wait()
      assert.equals("value" .. i, a)
      assert.equals("value" .. i, b)
      assert.equals(#("value" .. i) + 1, len)
    end
    assert.equals("100", c:get("shared"))
  end)

  it("pub/sub: subscribe, publish from redis-cli and from another client, unsubscribe ends messages()", function()
    local sub = aio.redis.connect(srv:url()):subscribe("news", "sport")
    assert.equals(1, c:publish("news", "first"))
    assert.same({ channel = "news", data = "first" }, sub:receive())
    srv:cli("PUBLISH", "sport", "from cli")
    assert.same({ channel = "sport", data = "from cli" }, sub:receive())
    c:publish("news", bytes(300))
    assert.equals(bytes(300), sub:receive().data)
    -- commands on a subscribed connection are refused, clearly
    raises("InvalidStateError", sub.client.get, sub.client, "k")
    sub:subscribe("more")
    eventually(function() return c:publish("more", "x") == 1 end)
    local got = {}
    aio.spawn(function()
      c:publish("news", "a")
      c:publish("sport", "b")
      sub:unsubscribe()
    end)
    for m in sub:messages() do got[#got + 1] = m.channel .. "=" .. m.data end
    assert.same({ "more=x", "news=a", "sport=b" }, { got[#got - 2], got[#got - 1], got[#got] })
    sub:close()
    sub:close()
    raises("ConnectionError", sub.receive, sub)
  end)

  it("psubscribe: pattern messages carry the pattern; RESP3 subscriptions read the same", function()
    for _, proto in ipairs { 2, 3 } do
      local sub <close> = aio.redis.connect { url = srv:url(), protocol = proto }:psubscribe("room:*", "x?")
      c:publish("room:1", "hi")
      assert.same({ pattern = "room:*", channel = "room:1", data = "hi" }, sub:receive())
      c:publish("xy", "z")
      assert.same({ pattern = "x?", channel = "xy", data = "z" }, sub:receive())
      c:publish("other", "no")
      c:publish("room:2", "yes")
      assert.equals("yes", sub:receive().data)
    end
  end)

  it("SELECT: db from the URL path and from opts", function()
    local c2 <close> = aio.redis.connect(srv:url("/2"))
    c2:set("in2", "yes")
    assert.equals(nil, c:get("in2"))
    local c2b <close> = aio.redis.connect { url = srv:url(), db = 2 }
    assert.equals("yes", c2b:get("in2"))
    raises("RedisError", aio.redis.connect, { url = srv:url(), db = 99 })
  end)

  it("the Unix socket: unix:///path?db=N", function()
    local u <close> = aio.redis.connect("unix://" .. srv.sock .. "?db=3")
    u:set("via", "unix")
    local u2 <close> = aio.redis.connect { path = srv.sock, db = 3 }
    assert.equals("unix", u2:get("via"))
    assert.equals(nil, c:get("via"))
  end)

  it("the server killed mid-command: ConnectionError naming host:port, for the caller and later calls", function()
    local victim = R.start()
    local v = aio.redis.connect(victim:url())
    local t = aio.spawn(function() return v:blpop("nothing", 0) end)
    eventually(function() return victim:cli("CLIENT", "LIST"):find("cmd=blpop", 1, true) ~= nil end)
    victim:kill()
    local ok, err = pcall(t.wait, t)
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "ConnectionError"), tostring(err))
    assert.matches("127.0.0.1:" .. victim.port, err.message, 1, true)
    raises("ConnectionError", v.get, v, "k")
    victim:stop()
    local refused = raises("ConnectionError", aio.redis.connect, victim:url())
    assert.matches("127.0.0.1:" .. victim.port, refused.message, 1, true)
  end)

  it("redis-py reads what luaio wrote, luaio reads what redis-py wrote", function()
    local ok = pcall(P.python, "import redis")
    if not ok then return pending("python3-redis is not installed") end
    c:set("from:luaio", "a\0b" .. bytes(1000))
    c:hset("from:luaio:h", "f", "v")
    c:rpush("from:luaio:l", "1", "2", "3")
    local out = P.python([[
import sys, redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]))
assert r.get("from:luaio") == b"a\0b" + bytes(range(256)) * 3 + bytes(range(232)), "bulk"
assert r.hgetall("from:luaio:h") == {b"f": b"v"}
assert r.lrange("from:luaio:l", 0, -1) == [b"1", b"2", b"3"]
r.set("from:py", b"\x00\xff\r\n" * 1000)
r.hset("from:py:h", mapping={"x": "1", "y": "2"})
r.zadd("from:py:z", {"a": 1.5, "b": 2.5})
print("ok")
]], { tostring(srv.port) })
    assert.equals("ok\n", out)
    assert.equals(("\0\255\r\n"):rep(1000), c:get("from:py"))
    assert.same({ x = "1", y = "2" }, c:hgetall("from:py:h"))
    assert.same({ "a", "1.5", "b", "2.5" }, c:zrange("from:py:z", 0, -1, "WITHSCORES"))
  end)
end)

describe("AUTH and TLS", function()
  local srv
  setup(function()
    srv = R.start { password = "s3cret", tls = true }
    srv:cli("ACL", "SETUSER", "alice", "on", ">alicepw", "~*", "+@all")
  end)
  teardown(function() if srv then srv:stop() end end)

  it("a password (URL or opts), an ACL user; wrong ones raise RedisError", function()
    local a <close> = aio.redis.connect(srv:url())
    assert.equals("PONG", a:ping())
    local b <close> = aio.redis.connect { port = srv.port, password = "s3cret" }
    assert.equals("PONG", b:ping())
    local u <close> = aio.redis.connect("redis://alice:alicepw@127.0.0.1:" .. srv.port)
    assert.equals("alice", u:acl("whoami"))
    local u3 <close> = aio.redis.connect { url = "redis://alice:alicepw@127.0.0.1:" .. srv.port, protocol = 3 }
    assert.equals("alice", u3:acl("whoami"))
    local e = raises("RedisError", aio.redis.connect, { port = srv.port, password = "wrong" })
    assert.matches("WRONGPASS", e.message)
    raises("RedisError", aio.redis.connect, "redis://alice:nope@127.0.0.1:" .. srv.port)
    raises("RedisError", aio.redis.connect, { port = srv.port, user = "alice", password = "wrong", protocol = 3 })
    local none <close> = aio.redis.connect { port = srv.port }
    assert.equals("NOAUTH", raises("RedisError", none.get, none, "k").code)
    -- the URL's password, replaced by opts'
    raises("RedisError", aio.redis.connect, { url = srv:url(), password = "other" })
  end)

  it("rediss:// with the run's CA; without it the certificate is refused (TLSError)", function()
    local url = ("rediss://:s3cret@127.0.0.1:%d/1"):format(srv.tls_port)
    local t <close> = aio.redis.connect { url = url, tls = { ca_file = srv.ca } }
    t:set("tls", bytes(100000))
    assert.equals(bytes(100000), t:get("tls"))
    local plain <close> = aio.redis.connect(srv:url("/1"))
    assert.equals(100000, plain:strlen("tls"))
    raises("TLSError", aio.redis.connect, url)
    local nv <close> = aio.redis.connect { url = url, tls = { verify = false } }
    assert.equals("PONG", nv:ping())
    local sub <close> = aio.redis.connect { url = url, tls = { ca_file = srv.ca } }:subscribe("secure")
    plain:publish("secure", "m")
    assert.equals("m", sub:receive().data)
  end)
end)

describe("the pool", function()
  local srv
  setup(function() srv = R.start() end)
  teardown(function() if srv then srv:stop() end end)

  it("has the client's methods; max_connections is respected; waiting tasks are served in FIFO order", function()
    local pool <close> = aio.redis.pool { url = srv:url(), max_connections = 3 }
    assert.equals(3, pool.max_connections)
    assert.equals(10, aio.redis.pool(srv:url()).max_connections)      -- the default
    assert.equals("OK", pool:set("pk", "pv"))
    assert.equals("pv", pool:get("pk"))
    assert.equals("pv", pool:call("GET", "pk"))
    assert.same({ "OK", "x" }, pool:pipeline(function(p) p:set("px", "x") p:get("px") end))
    pool:hset("phs", "a", "b")
    assert.same({ a = "b" }, pool:hgetall("phs"))
    -- 3 connections held by BLPOPs: the next tasks wait, then get them in order
    local holders = {}
    for i = 1, 3 do holders[i] = aio.spawn(function() return pool:blpop("hold" .. i, 0) end) end
    eventually(function() return pool:stats().open == 3 and pool:stats().idle == 0 end)
    local plain <close> = aio.redis.connect(srv:url())
    local clients = select(2, plain:client("list"):gsub("\n", "\n"))
    assert.is_true(clients <= 4, "at most 3 pool connections and this one")
    for i = 1, 3 do plain:rpush("hold" .. i, "go") end
    for i = 1, 3 do assert.same({ "hold" .. i, "go" }, holders[i]:wait()) end
    assert.equals(3, pool:stats().open)
    -- one connection, held: the tasks waiting for it get it in the order they came
    local one <close> = aio.redis.pool { url = srv:url(), max_connections = 1 }
    local holder = aio.spawn(function() return one:blpop("hold", 0) end)
    eventually(function() return one:stats().open == 1 and one:stats().idle == 0 end)
    local order, waiters = {}, {}
    for i = 1, 5 do
      waiters[i] = aio.spawn(function()
        one:incr("order")
        order[#order + 1] = i
      end)
    end
    eventually(function() return one:stats().waiting == 5 end)
    plain:rpush("hold", "go")
    holder:wait()
    for i = 1, 5 do waiters[i]:wait() end
    assert.same({ 1, 2, 3, 4, 5 }, order)
    assert.equals("5", plain:get("order"))
  end)

  it("recovers after the server is killed and restarted on the same port", function()
    local own = R.start()
    local pool <close> = aio.redis.pool { url = own:url(), max_connections = 2 }
    assert.equals("OK", pool:set("a", "1"))
    own:kill()
    raises("ConnectionError", pool.get, pool, "a")
    own:restart()
    assert.equals(nil, pool:get("a"))           -- (nothing persisted)
    assert.equals("OK", pool:set("a", "2"))
    assert.equals("2", pool:get("a"))
    own:stop()
  end)

  it("replaces a connection the server closed for being idle (CONFIG SET timeout 1)", function()
    local own = R.start()
    local pool <close> = aio.redis.pool { url = own:url(), max_connections = 1 }
    pool:config("set", "timeout", "1")
    local id = pool:client("id")
    eventually(function() return not own:cli("CLIENT", "LIST"):find("id=" .. id .. " ", 1, true) end)
    aio.sleep(0.1)
    assert.equals("PONG", pool:ping())
    assert.is_true(pool:client("id") ~= id)
    own:stop()
  end)

  it("a call cancelled or timed out in flight drops its connection; the pool goes on", function()
    local pool <close> = aio.redis.pool { url = srv:url(), max_connections = 1 }
    local id = pool:client("id")
    local t = aio.spawn(function() return pool:blpop("never", 0) end)
    eventually(function() return pool:stats().idle == 0 end)
    aio.sleep(0.05)
    t:cancel()
    raises("CancelledError", t.wait, t)
    assert.equals("PONG", pool:ping())
    assert.is_true(pool:client("id") ~= id)
    raises("TimeoutError", aio.timeout, 0.2, pool.blpop, pool, "never", 0)
    assert.equals("PONG", pool:ping())
    -- a task cancelled while it waits for a connection takes nothing with it
    local hold = aio.spawn(function() return pool:blpop("held", 0) end)
    eventually(function() return pool:stats().idle == 0 and pool:stats().open == 1 end)
    local waiter = aio.spawn(function() return pool:ping() end)
    eventually(function() return pool:stats().waiting == 1 end)
    waiter:cancel()
    raises("CancelledError", waiter.wait, waiter)
    local plain <close> = aio.redis.connect(srv:url())
    plain:rpush("held", "x")
    hold:wait()
    assert.equals("PONG", pool:ping())
    bad_arg("#2 to 'set'", function() pool:set("k", {}) end)
    bad_arg("aio.redis.pool", aio.redis.pool, { max_connections = 0 })
    -- a wrong self: the argument error, nothing sent
    bad_arg("luaio.redis.Pool expected, got table", pool.get, {}, "k")
    bad_arg("luaio.redis.Pool expected, got luaio.redis.Client", pool.call, plain, "GET", "k")
    bad_arg("luaio.redis.Client expected, got luaio.redis.Pool", plain.get, pool, "k")
    bad_arg("luaio.redis.Client expected, got string", plain.close, "x")
    bad_arg("luaio.redis.Client expected, got nil", plain.subscribe, nil, "ch")
    pool:close()
    raises("ConnectionError", pool.ping, pool)
  end)

  it("pool:subscribe uses a connection of its own", function()
    local pool <close> = aio.redis.pool { url = srv:url(), max_connections = 1 }
    local sub <close> = pool:subscribe("pc")
    assert.equals(1, pool:publish("pc", "m"))
    assert.equals("m", sub:receive().data)
  end)
end)

describe("waiting calls: cancellation, timeouts, bad input", function()
  local srv
  setup(function() srv = R.start() end)
  teardown(function() if srv then srv:stop() end end)

  it("connect: bad input is an argument error; URL fields and opts", function()
    bad_arg("#1 to 'aio.redis.connect' %(string or table expected, got number%)", aio.redis.connect, 42)
    bad_arg("bad Redis URL", aio.redis.connect, "http://x")
    bad_arg("bad Redis URL", aio.redis.connect, "redis://h/notadb")
    bad_arg("port must be", aio.redis.connect, { port = 70000 })
    bad_arg("opts.timeout", aio.redis.connect, { timeout = -1 })
    bad_arg("protocol must be 2 or 3", aio.redis.connect, { protocol = 4 })
    bad_arg("opts.db", aio.redis.connect, { db = "x" })
    -- opts override the URL's fields
    local c <close> = aio.redis.connect { url = "redis://127.0.0.1:1/5", port = srv.port, db = 0 }
    assert.equals("PONG", c:ping())
    raises("ConnectionError", aio.redis.connect, "redis://127.0.0.1:1")
  end)

  it("connect: cancelled and timed out in the handshake (a server that never answers)", function()
    local quiet <close>, port = silent_server()
    raises("TimeoutError", aio.redis.connect, { port = port, password = "x", timeout = 0.2 })
    raises("TimeoutError", aio.timeout, 0.2, aio.redis.connect, { port = port, password = "x" })
    local t = aio.spawn(aio.redis.connect, { port = port, db = 1 })
    aio.sleep(0.05)
    t:cancel()
    raises("CancelledError", t.wait, t)
  end)

  it("call: cancelled or timed out in flight breaks the client (ConnectionError after)", function()
    local c = aio.redis.connect(srv:url())
    local t = aio.spawn(function() return c:blpop("never", 0) end)
    local behind = aio.spawn(function() aio.sleep(0.02) return c:ping() end)
    aio.sleep(0.1)
    t:cancel()
    raises("CancelledError", t.wait, t)
    local e = raises("ConnectionError", behind.wait, behind)
    assert.equals("ECANCELED", e.code)
    raises("ConnectionError", c.ping, c)
    local c2 = aio.redis.connect(srv:url())
    raises("TimeoutError", aio.wait_for, function() return c2:blpop("never", 0) end, 0.2)
    raises("ConnectionError", c2.ping, c2)
    local c3 <close> = aio.redis.connect { url = srv:url(), timeout = 0.2 }
    assert.equals("PONG", c3:ping())
    raises("TimeoutError", c3.blpop, c3, "never", 0)
    raises("ConnectionError", c3.ping, c3)
    -- bad input: nothing is sent, the client stays usable
    local c4 <close> = aio.redis.connect(srv:url())
    bad_arg("#2 to 'set' %(string or number expected, got boolean%)", function() c4:set("k", true) end)
    bad_arg("#3 to 'call' %(string or number expected, got table%)", function() c4:call("SET", "k", {}) end)
    bad_arg("#1 to 'call' %(string expected, got nil%)", function() c4:call() end)
    bad_arg("NaN", function() c4:set("k", 0 / 0) end)
    assert.equals("PONG", c4:ping())
    c:close() c2:close()
  end)

  it("pipeline: cancelled in flight breaks the client", function()
    local c = aio.redis.connect(srv:url())
    local t = aio.spawn(function() return c:pipeline(function(p) p:ping() p:blpop("never", 0) end) end)
    aio.sleep(0.1)
    t:cancel()
    raises("CancelledError", t.wait, t)
    raises("ConnectionError", c.ping, c)
    c:close()
  end)

  it("receive: cancelled or timed out, the subscription goes on; bad input", function()
    local pub <close> = aio.redis.connect(srv:url())
    local sub <close> = aio.redis.connect(srv:url()):subscribe("cx")
    local t = aio.spawn(function() return sub:receive() end)
    aio.sleep(0.05)
    t:cancel()
    raises("CancelledError", t.wait, t)
    raises("TimeoutError", aio.timeout, 0.1, sub.receive, sub)
    pub:publish("cx", "after")
    assert.equals("after", sub:receive().data)
    bad_arg("#1 to 'subscribe' %(string expected, got no value%)", function() pub:subscribe() end)
    bad_arg("#2 to 'psubscribe' %(string expected, got number%)", function() pub:psubscribe("a", 1) end)
    assert.equals("PONG", pub:ping())
  end)

  it("a protocol error (a server that is not Redis) raises ProtocolError and closes the connection", function()
    local fake <close> = aio.start_server(function(s)
      s:readline()
      s:write("?not resp\r\n")
      s:read_all()
    end, "127.0.0.1", 0)
    local c = aio.redis.connect { port = fake.port }
    raises("ProtocolError", c.ping, c)
    assert.matches("ProtocolError", raises("ConnectionError", c.ping, c).message)
    local big <close> = aio.start_server(function(s)
      s:readline()
      s:write("$1000\r\n")
      s:read_all()
    end, "127.0.0.1", 0)
    local c2 = aio.redis.connect { port = big.port, max_bulk = 100 }
    local e = raises("ProtocolError", c2.ping, c2)
    assert.matches("max_bulk", e.message)
  end)
end)
