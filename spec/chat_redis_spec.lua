-- The course's chat server with --redis URL (issue 19): two server
-- processes on different ports share one room through a real redis-server
-- (pub/sub); a TCP member of each sees the other's messages. Every process
-- is started in a temp directory and stopped by its PID.
local aio = require "luaio"
local P = require "spec.lib.peers"
local R = require "spec.lib.redis_server"
local C = require "spec.lib.chat"

if R.missing then
  pending(R.missing)
  return
end

describe("chat_server --redis: one room across two processes", function()
  local redis, dir, one, two
  setup(function()
    redis = R.start()
    dir = P.tmpdir("chat-redis")
  end)
  teardown(function()
    if one then one:stop() end
    if two then two:stop() end
    if redis then redis:stop() end
    P.rmtree(dir)
  end)

  it("members on two servers see each other's messages, in one order", function()
    local port1, port2
    one, port1 = C.chat_server(dir, { "--redis", redis:url() })
    local dir2 = dir .. "/two"
    aio.fs.mkdir(dir2)
    two, port2 = C.chat_server(dir2, { "--redis", redis:url() })
    -- each relays once its subscription is confirmed, after it listens: a
    -- member joining before that would be announced on its own server only
    one:wait_for("shared through Redis")
    two:wait_for("shared through Redis")
    local a = C.tcp_client(port1)
    local b = C.tcp_client(port2)
    -- the join notices cross too: b's join reaches a
    a:wait_until(function(t) return t:count("System: A new user joined") >= 2 end, "both join notices")
    a:say("hello from server one")
    b:wait_until(function(t) return t:count(a.name .. ": hello from server one") == 1 end, "a's message on b")
    b:say("and back from two")
    a:wait_until(function(t) return t:count(b.name .. ": and back from two") == 1 end, "b's message on a")
    -- each member saw its own message once (delivered through Redis, not twice)
    assert.equals(1, a:count(a.name .. ": hello from server one"))
    b:wait_until(function(t) return t:count(b.name .. ": and back from two") == 1 end, "b's own message")
    -- Redis carried them: a third client of the channel sees the room's traffic
    local sub <close> = aio.redis.connect(redis:url()):subscribe("chat:room")
    a:say("seen by redis")
    local m = aio.json.decode(aio.timeout(15, sub.receive, sub).data)
    assert.equals("seen by redis", m.message)
    a:close()
    b:close()
  end)
end)
