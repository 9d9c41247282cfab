-- The bench runner, itself a luaio script: runs every workload for luaio and
-- each peer installed here, interleaving the runs, and prints the medians and
-- luaio's advantage (> 1: luaio ahead) as a Markdown table.
local aio = require "luaio"

local runs, seconds, only = nil, 10, {}
local i = 1
while arg[i] do
  if arg[i] == "-n" then runs = tonumber(arg[i + 1]) i = i + 1
  elseif arg[i] == "-s" then seconds = tonumber(arg[i + 1]) i = i + 1
  else only[arg[i]] = true end
  i = i + 1
end

local LUAIO = os.getenv("LUAIO_BIN") or "build/luaio"   -- the luaio under test (the runner is build/luaio)
local PY = "/usr/bin/python3"         -- Debian's, where python3-uvloop/aiohttp live
local OUT = "build/bench"
os.execute("mkdir -p " .. OUT)

local function sh_ok(cmd) return os.execute(cmd .. " >/dev/null 2>&1") == true end

local function compile(src, exe, pkgs)
  local r = aio.exec({ "sh", "-c", ("cc -O2 -o %s %s $(pkg-config --cflags --libs %s)"):format(exe, src, pkgs) })
  if r.status ~= 0 then error("compiling " .. src .. ":\n" .. r.stderr) end
  return exe
end

local function metrics_of(text)
  local m = {}
  for name, value in text:gmatch("metric (%S+) (%S+)") do m[name] = tonumber(value) end
  return m
end

local function median(xs)
  table.sort(xs)
  local n = #xs
  if n == 0 then return nil end
  return n % 2 == 1 and xs[(n + 1) // 2] or (xs[n // 2] + xs[n // 2 + 1]) / 2
end

local function free_port()
  local s = aio.start_server(function() end, "127.0.0.1", 0)
  local port = s.port
  s:close()
  return port
end

local function wait_listening(port, proc)
  for _ = 1, 200 do
    local ok, c = pcall(aio.open_connection, "127.0.0.1", port)
    if ok then c:close() return true end
    aio.sleep(0.05)
  end
  error("server on port " .. port .. " never listened")
end

-- ---- the workloads ---------------------------------------------------------

local have_uvloop = sh_ok(PY .. " -c 'import uvloop'")
local have_aiohttp = sh_ok(PY .. " -c 'import aiohttp, uvloop'")
local have_node = sh_ok("command -v node")
local have_luv = sh_ok("lua5.4 -e 'require \"luv\"'")
local have_cqueues = sh_ok("lua5.4 -e 'require \"cqueues\"'")
local have_lua_http = have_cqueues and sh_ok("lua5.4 -e 'package.path=\"bench/lib/?.lua;\"..package.path require \"lua_http_path\" require \"http.server\"'")
local have_nginx = sh_ok("command -v nginx")
local have_wrk = sh_ok("command -v wrk")
local have_npm = sh_ok("command -v npm")
local have_websockets = sh_ok(PY .. " -c 'import websockets'")

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- micro workloads: each program prints its own metrics
local micro = {
  { name = "spawn", what = "100,000 tasks x 10 sleep(0), gathered", key = "seconds", lower = true,
    peers = {
      { "luaio", { LUAIO, "bench/spawn/luaio.lua" } },
      { "asyncio", { PY, "bench/spawn/py_asyncio.py" } },
      { "uvloop", { PY, "bench/spawn/py_asyncio.py", "--uvloop" }, have_uvloop },
      { "node", { "node", "bench/spawn/node.js" }, have_node },
      { "luv+coroutines", { "lua5.4", "bench/spawn/luv.lua" }, have_luv },
      { "floor: bare C ring", "floor" },
      { "cqueues", { "lua5.4", "bench/spawn/cqueues.lua" }, have_cqueues },
    } },
  { name = "sleepers", what = "100,000 tasks sleeping 1 s at once", key = "bytes_per_task", lower = true,
    peers = {
      { "luaio", { LUAIO, "bench/sleepers/luaio.lua" } },
      { "asyncio", { PY, "bench/sleepers/py_asyncio.py" } },
      { "uvloop", { PY, "bench/sleepers/py_asyncio.py", "--uvloop" }, have_uvloop },
      { "node", { "node", "--expose-gc", "bench/sleepers/node.js" }, have_node },
      { "luv+coroutines", { "lua5.4", "bench/sleepers/luv.lua" }, have_luv },
      { "floor: bare coroutine", { "lua5.4", "bench/sleepers/floor.lua" } },
    } },
  { name = "queue", what = "1,000,000 items, Queue(100), 1 producer, 4 consumers", key = "items_per_second",
    peers = {
      { "luaio", { LUAIO, "bench/queue/luaio.lua" } },
      { "asyncio", { PY, "bench/queue/py_asyncio.py" } },
      { "uvloop", { PY, "bench/queue/py_asyncio.py", "--uvloop" }, have_uvloop },
      { "node", { "node", "bench/queue/node.js" }, have_node },
      { "luv+coroutines", { "lua5.4", "bench/queue/luv.lua" }, have_luv },
    } },
  -- PostgreSQL 15 started for the run (spec/lib/pg_server.lua), stopped after it
  { name = "pg", what = "PostgreSQL: SELECT $1::int x 20,000 on 1 and on 10 connections; 100,000 rows x 5 columns",
    key = "select_seq_per_second", each = true,
    setup = function(w) w.server = require("spec.lib.pg_server").start() end,
    teardown = function(w) if w.server then w.server:stop() end end,
    peers = {
      { "luaio", function(w) return { LUAIO, "bench/pg/luaio.lua", w.server:url(nil, nil, "sslmode=disable") } end },
      { "asyncpg", function(w) return { PY, "bench/pg/py_asyncpg.py", w.server:url(nil, nil, "sslmode=disable") } end,
        sh_ok(PY .. " -c 'import asyncpg'") },
    } },
}

-- redis: GET/SET rows against one redis-server the runner starts (on first
-- use) and stops at the end; redis-benchmark -q is printed as the ceiling
local have_redis = sh_ok("command -v redis-server") and sh_ok("command -v redis-benchmark")
local have_redis_py = sh_ok(PY .. " -c 'import redis.asyncio'")
local redis_server, redis_port
local function redis_arg()
  if not redis_server then
    redis_port = free_port()
    redis_server = aio.spawn_process({ "redis-server", "--port", tostring(redis_port), "--bind", "127.0.0.1",
      "--save", "", "--appendonly", "no", "--dir", "/tmp", "--logfile", "/dev/null" })
    wait_listening(redis_port)
  end
  return tostring(redis_port)
end
for _, row in ipairs { { "seq", "GET/SET, 1 connection, sequential" },
                       { "concurrent", "GET/SET, 50 concurrent tasks" },
                       { "pipelined", "GET/SET, pipelines of 100" } } do
  local mode = row[1]
  micro[#micro + 1] = { name = "redis", what = row[2], key = "ops_per_second", present = have_redis,
    peers = {
      { "luaio", function() return { LUAIO, "bench/redis/luaio.lua", redis_arg(), mode } end },
      { "redis-py asyncio (hiredis)", function() return { PY, "bench/redis/py_redis.py", redis_arg(), mode } end,
        have_redis_py },
      { "ceiling: redis-benchmark", function() return { "bench/redis/ceiling.sh", redis_arg(), mode } end },
    } }
end

-- network workloads: a server pinned to CPU 0, load from CPU 1 (unless unpinned)
-- nginx.conf templates name their blanks @PORT@, @DIR@ and so on (see vars)
local function nginx_cmd(template, vars)
  local dir = os.tmpname() .. ".nginx"
  os.execute("mkdir -p " .. dir)
  vars.DIR = dir
  local conf = assert(io.open(template)):read("a"):gsub("@(%u+)@", vars)
  local f = assert(io.open(dir .. "/nginx.conf", "w"))
  f:write(conf)
  f:close()
  return { "nginx", "-e", dir .. "/error.log", "-p", dir, "-c", dir .. "/nginx.conf" }
end

-- wrk drives http and https alike: the load for a scheme (on CPU 1, or
-- anywhere when unpinned), and its report parsed
local function wrk_load(scheme, unpinned)
  return function(port)
    local argv = { "wrk", "-t2", "-c100", "-d" .. seconds .. "s", "--latency", scheme .. "://127.0.0.1:" .. port .. "/" }
    if not unpinned then table.move(argv, 1, #argv, 4) argv[1], argv[2], argv[3] = "taskset", "-c", "1" end
    return argv
  end
end

local function wrk_parse(text)
  -- wrk exits 0 even when no request got through (e.g. a TLS handshake that
  -- never succeeds): that is a failure, not a 0 req/s sample
  if text:match("\n%s*0 requests in") then return {} end
  local m = { requests_per_second = tonumber(text:match("Requests/sec:%s*([%d%.]+)")) }
  local v, unit = text:match("99%%%s+([%d%.]+)(%a+)")
  if v then m.p99_ms = tonumber(v) * ({ us = 1e-3, ms = 1, s = 1e3 })[unit] end
  return m
end

-- absolute, for nginx resolves relative paths against its own prefix
local CERTS = aio.exec({ "realpath", OUT }).stdout:match("[^\n]+") .. "/certs"
local CERT, KEY = CERTS .. "/server.pem", CERTS .. "/server.key"
local FILES = CERTS:gsub("/certs$", "/files")

-- ws-echo's Node peer uses the ws package from the npm registry, installed
-- into bench/ws-echo/node_modules on the first run (see .gitignore)
local WS_NODE = "bench/ws-echo/node_modules/ws/package.json"
local ws_node_peer = { "node ws", function(p) return { "node", "bench/ws-echo/node.js", p } end, false }
local ws_python_peer = have_uvloop
  and { "websockets+uvloop", function(p) return { PY, "bench/ws-echo/py_websockets.py", p, "--uvloop" } end,
        have_websockets }
  or { "websockets (asyncio, no uvloop)", function(p) return { PY, "bench/ws-echo/py_websockets.py", p } end,
       have_websockets }

local net = {
  { name = "echo", what = "50 connections ping-ponging 1 KiB (C client)", key = "messages_per_second",
    client = "bench/echo/client.c",
    load = function(port) return { "taskset", "-c", "1", OUT .. "/echo_client", tostring(port), "50", tostring(seconds) } end,
    peers = {
      { "luaio", function(p) return { LUAIO, "bench/echo/luaio.lua", p } end },
      { "asyncio", function(p) return { PY, "bench/echo/py_asyncio.py", p } end },
      { "uvloop", function(p) return { PY, "bench/echo/py_asyncio.py", p, "--uvloop" } end, have_uvloop },
      { "node", function(p) return { "node", "bench/echo/node.js", p } end, have_node },
      { "luv+coroutines", function(p) return { "lua5.4", "bench/echo/luv_co.lua", p } end, have_luv },
      { "luv callbacks", function(p) return { "lua5.4", "bench/echo/luv_cb.lua", p } end, have_luv },
      { "cqueues", function(p) return { "lua5.4", "bench/echo/cqueues.lua", p } end, have_cqueues },
    } },
  { name = "ws-echo", what = "50 WebSocket connections ping-ponging 1 KiB text messages (C client)",
    key = "messages_per_second",
    client = "bench/ws-echo/client.c",
    load = function(port) return { "taskset", "-c", "1", OUT .. "/ws-echo_client", tostring(port), "50", tostring(seconds) } end,
    setup = function()
      if have_node and have_npm and not exists(WS_NODE) then
        local r = aio.exec({ "npm", "install", "--prefix", "bench/ws-echo", "--no-audit", "--no-fund", "ws" },
          { timeout = 300 })
        if r.status ~= 0 then io.stderr:write("ws-echo: npm install ws failed:\n" .. r.stderr .. "\n") end
      end
      ws_node_peer[3] = have_node and exists(WS_NODE)
    end,
    peers = {
      { "luaio", function(p) return { LUAIO, "bench/ws-echo/luaio.lua", p } end },
      ws_node_peer,
      ws_python_peer,
    } },
  { name = "http", what = "hello world, keep-alive, wrk -t2 -c100", key = "requests_per_second",
    wrk = true, load = wrk_load("http"), parse = wrk_parse,
    peers = {
      { "luaio", function(p) return { LUAIO, "bench/http/luaio.lua", p } end },
      { "aiohttp+uvloop", function(p) return { PY, "bench/http/py_aiohttp.py", p } end, have_aiohttp },
      { "node", function(p) return { "node", "bench/http/node.js", p } end, have_node },
      { "nginx", function(p) return nginx_cmd("bench/http/nginx.conf", { PORT = p, WORKERS = "1" }) end, have_nginx },
      { "lua-http (cqueues)", function(p) return { "lua5.4", "bench/http/lua_http.lua", p } end, have_lua_http },
    } },
  -- two worker processes each; nothing is pinned, so wrk shares the cores
  -- with the servers (on a 2-core machine: 2 workers + wrk's 2 threads)
  { name = "http-workers", what = "hello world, keep-alive, wrk -t2 -c100, 2 worker processes, unpinned (wrk shares the cores)",
    key = "requests_per_second", wrk = true, unpinned = true, load = wrk_load("http", true), parse = wrk_parse,
    peers = {
      { "luaio", function(p) return { LUAIO, "--workers", "2", "--grace", "2", "bench/http/luaio.lua", p } end },
      { "luaio, 1 process", function(p) return { LUAIO, "bench/http/luaio.lua", p } end },
      { "nginx", function(p) return nginx_cmd("bench/http/nginx.conf", { PORT = p, WORKERS = "2" }) end, have_nginx },
    } },
  { name = "https", what = "hello world over TLS, keep-alive, wrk -t2 -c100", key = "requests_per_second",
    wrk = true, load = wrk_load("https"), parse = wrk_parse,
    -- fresh throw-away certificates every run: nothing to keep or to expire
    setup = function()
      local r = aio.exec({ "tools/make_test_certs.sh", CERTS })
      if r.status ~= 0 then error("making certificates:\n" .. r.stderr) end
    end,
    peers = {
      { "luaio", function(p) return { LUAIO, "bench/https/luaio.lua", p, CERT, KEY } end },
      { "node", function(p) return { "node", "bench/https/node.js", p, CERT, KEY } end, have_node },
      { "nginx", function(p) return nginx_cmd("bench/https/nginx.conf", { PORT = p, CERT = CERT, KEY = KEY }) end, have_nginx },
    } },
  { name = "download", what = "a 1 GiB file, one curl at a time", key = "bytes_per_second",
    load = function(port)
      return { "taskset", "-c", "1", "curl", "-s", "-o", "/dev/null", "-w", "metric bytes_per_second %{speed_download}\n",
               "http://127.0.0.1:" .. port .. "/download.bin" }
    end,
    -- a sparse file: the page cache holds its zeros, so the disk is out of the measure
    setup = function()
      os.execute("mkdir -p " .. FILES .. " && truncate -s 1G " .. FILES .. "/download.bin")
    end,
    peers = {
      { "luaio", function(p) return { LUAIO, "bench/download/luaio.lua", p, FILES } end },
      { "node", function(p) return { "node", "bench/download/node.js", p, FILES } end, have_node },
      { "nginx", function(p) return nginx_cmd("bench/download/nginx.conf", { PORT = p, ROOT = FILES }) end, have_nginx },
    } },
}

-- ---- running ---------------------------------------------------------------

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- The peers of round r, rotated by r - 1: this VM's speed drifts by tens of
-- per cent within minutes, and a fixed order would give each peer the same
-- slot in every round (luaio always first, right after the last peer).
local function in_turn(peers, r)
  local k, out = (r - 1) % #peers, {}
  for i = 1, #peers do out[i] = peers[(i - 1 + k) % #peers + 1] end
  return out
end

local function run_micro(w, n)
  local samples = {}
  if w.setup then w.setup(w) end
  for r = 1, n do
    for _, peer in ipairs(in_turn(w.peers, r)) do
      local name, argv, present = peer[1], peer[2], peer[3]
      if present ~= false then
        if type(argv) == "function" then argv = argv(w) end
        if argv == "floor" then
          argv = { compile("bench/spawn/floor.c", OUT .. "/spawn_floor", "lua5.4") }
        elseif type(argv) == "function" then argv = argv() end
        local res = aio.exec(argv, { timeout = 120 })
        local m = metrics_of(res.stdout)
        if res.status ~= 0 or not m[w.key] then
          io.stderr:write(("%s/%s failed (status %s):\n%s\n"):format(w.name, name, res.status, res.stderr))
        else
          samples[name] = samples[name] or {}
          table.insert(samples[name], m)
        end
      end
    end
    io.stderr:write(("  %s: run %d/%d done\n"):format(w.name, r, n))
  end
  if w.teardown then w.teardown(w) end
  return samples
end

local function run_net(w, n)
  if w.client then compile(w.client, OUT .. "/" .. w.name .. "_client", "libuv") end
  if w.wrk and not have_wrk then
    io.stderr:write(w.name .. ": wrk is not installed (apt-get install wrk); skipped\n")
    return {}
  end
  if w.setup then w.setup() end
  local samples = {}
  for r = 1, n do
    for _, peer in ipairs(in_turn(w.peers, r)) do
      local name, make, present = peer[1], peer[2], peer[3]
      if present ~= false then
        local port = free_port()
        local argv = make(tostring(port))
        local log = os.tmpname()
        local cmd = { "sh", "-c", "exec " .. (w.unpinned and "" or "taskset -c 0 ") .. table.concat((function()
          local q = {} for k, a in ipairs(argv) do q[k] = quote(a) end return q end)(), " ") .. " >" .. log .. " 2>&1" }
        local proc = aio.spawn_process(cmd)
        local ok, err = pcall(wait_listening, port)
        if ok then
          local res = aio.exec(w.load(port), { timeout = seconds + 60 })
          local m = (w.parse or metrics_of)(res.stdout)
          if m[w.key] then
            samples[name] = samples[name] or {}
            table.insert(samples[name], m)
          else
            io.stderr:write(("%s/%s: no result:\n%s%s\n"):format(w.name, name, res.stdout, res.stderr))
          end
        else
          io.stderr:write(("%s/%s: %s\n%s\n"):format(w.name, name, tostring(err), io.open(log):read("a")))
        end
        proc:kill("SIGTERM")
        aio.wait_for(function() return proc:wait() end, 5)
        os.remove(log)
        aio.sleep(0.5)                       -- let TIME_WAIT sockets and the CPU settle
      end
    end
    io.stderr:write(("  %s: run %d/%d done\n"):format(w.name, r, n))
  end
  return samples
end

local function fmt(name, v)
  if v == nil then return "–" end
  if name == "seconds" or name == "over_seconds" then return ("%.2f s"):format(v) end
  if name == "bytes_per_task" then return ("%.0f B"):format(v) end
  if name:match("per_second$") then
    return v >= 1e6 and ("%.2f M/s"):format(v / 1e6) or ("%.1f k/s"):format(v / 1e3)
  end
  if name == "p99_ms" then return ("%.2f ms"):format(v) end
  return tostring(v)
end

local function report(w, samples, n)
  local names = {}
  for _, s in pairs(samples) do for k in pairs(s[1]) do names[k] = true end end
  local cols = { w.key }
  for k in pairs(names) do if k ~= w.key then cols[#cols + 1] = k end end
  table.sort(cols, function(a, b) if a == w.key then return true elseif b == w.key then return false end return a < b end)
  local lines = { ("### %s — %s (median of %d)"):format(w.name, w.what, n), "",
                  "| peer | " .. table.concat(cols, " | ") .. " | luaio's advantage |",
                  "|---" .. ("|---"):rep(#cols) .. "|---|" }
  local med = {}
  for _, peer in ipairs(w.peers) do
    local s = samples[peer[1]]
    if s then
      med[peer[1]] = {}
      for _, c in ipairs(cols) do
        local xs = {}
        for _, m in ipairs(s) do xs[#xs + 1] = m[c] end
        med[peer[1]][c] = median(xs)
      end
    end
  end
  local base = med.luaio and med.luaio[w.key]
  for _, peer in ipairs(w.peers) do
    local m = med[peer[1]]
    local row = { peer[1] }
    if not m then
      for _ = 1, #cols do row[#row + 1] = "–" end
      row[#row + 1] = peer[3] == false and "not installed" or "failed"
    else
      for _, c in ipairs(cols) do row[#row + 1] = fmt(c, m[c]) end
      local adv = base and m[w.key] and (w.lower and m[w.key] / base or base / m[w.key])
      if w.each and med.luaio and peer[1] ~= "luaio" then      -- every column's ratio (all higher-is-better)
        local r = {}
        for _, c in ipairs(cols) do r[#r + 1] = ("%.2f×"):format(med.luaio[c] / m[c]) end
        adv = table.concat(r, " / ")
        row[#row + 1] = adv
      else
        row[#row + 1] = peer[1] == "luaio" and "1" or adv and ("%.2f×"):format(adv) or "–"
      end
    end
    lines[#lines + 1] = "| " .. table.concat(row, " | ") .. " |"
  end
  print(table.concat(lines, "\n") .. "\n")
  io.stdout:flush()
end

print(("luaio bench, %s, %d cores\n"):format(os.date("%Y-%m-%d"), tonumber(aio.exec({ "nproc" }).stdout) or 0))
for _, w in ipairs(micro) do
  if (next(only) == nil or only[w.name]) and w.present ~= false then
    local n = runs or 5
    report(w, run_micro(w, n), n)
  end
end
for _, w in ipairs(net) do
  if next(only) == nil or only[w.name] then
    local n = runs or 3
    report(w, run_net(w, n), n)
  end
end
if redis_server then redis_server:kill("SIGTERM") redis_server:wait() end
