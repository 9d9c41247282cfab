-- redis: GET/SET against a local redis-server, luaio's client.
--   luaio bench/redis/luaio.lua PORT seq|concurrent|pipelined
-- seq: one connection, one command at a time (SET then GET, 20,000 ops);
-- concurrent: 50 tasks, each SET/GET in turn (100,000 ops), on a pool of up
-- to 50 connections (as redis-py's client has) -- and, as an extra metric,
-- the 50 tasks sharing one connection; pipelined: pipelines of 100 commands
-- on one connection (200,000 ops). Prints "metric ops_per_second N".
local aio = require "luaio"
local port, mode = tonumber(arg[1]), arg[2] or "seq"
local url = "redis://127.0.0.1:" .. port
local value = ("x"):rep(64)

local function seq(c, n, prefix)
  for i = 1, n // 2 do
    local k = prefix .. (i % 100)
    c:set(k, value)
    c:get(k)
  end
end

local function concurrent(c, tasks, n)
  local ts = {}
  for t = 1, tasks do ts[t] = aio.spawn(seq, c, n // tasks, "t" .. t .. ":") end
  aio.gather(ts)
end

local function pipelined(c, n, depth)
  for _ = 1, n // depth do
    c:pipeline(function(p)
      for i = 1, depth // 2 do
        p:set("p" .. i, value)
        p:get("p" .. i)
      end
    end)
  end
end

local function timed(n, fn, ...)
  local t0 = aio.now()
  fn(...)
  return n / (aio.now() - t0)
end

if mode == "seq" then
  local c <close> = aio.redis.connect(url)
  seq(c, 2000, "w")                               -- warm up
  print(("metric ops_per_second %.0f"):format(timed(20000, seq, c, 20000, "k")))
elseif mode == "concurrent" then
  local pool <close> = aio.redis.pool { url = url, max_connections = 50 }
  concurrent(pool, 50, 10000)
  print(("metric ops_per_second %.0f"):format(timed(100000, concurrent, pool, 50, 100000)))
  local c <close> = aio.redis.connect(url)
  print(("metric one_connection_ops_per_second %.0f"):format(timed(100000, concurrent, c, 50, 100000)))
else
  local c <close> = aio.redis.connect(url)
  pipelined(c, 10000, 100)
  print(("metric ops_per_second %.0f"):format(timed(200000, pipelined, c, 200000, 100)))
end
