-- Load and soak test of the HTTP server (issue: hardening). Run by
-- tools/hardening.sh, which raises the descriptor limit first.
--   load: 10,000 idle keep-alive connections held open while wrk drives
--         1,000 active ones for LOAD_SECONDS (30): no error, bounded memory,
--         and the idle connections still answer afterwards.
--   soak: SOAK_REQUESTS (1,000,000) requests; RSS after them within 5 % of
--         RSS after a warm-up.
-- Prints `metric` lines and exits 1 on a failed check.
local aio = require "luaio"

local LOAD_SECONDS = tonumber(os.getenv("LOAD_SECONDS")) or 30
local SOAK_REQUESTS = tonumber(os.getenv("SOAK_REQUESTS")) or 1000000
local IDLE = tonumber(os.getenv("LOAD_IDLE")) or 10000
local failures = 0
local function check(ok, what)
  print((ok and "ok   " or "FAIL ") .. what)
  if not ok then failures = failures + 1 end
end

local function rss_kib(pid)
  for l in io.lines("/proc/" .. pid .. "/status") do
    local v = l:match("^VmRSS:%s+(%d+)")
    if v then return tonumber(v) end
  end
end

local function wrk(port, conns, seconds)
  -- a 10 s request timeout: wrk's 2 s default counts the tail of 1,000 connections
  -- sharing two cores with their own load generator, not a server fault
  local r = aio.exec({ "wrk", "-t2", "-c" .. conns, "-d" .. seconds .. "s", "--timeout", "10s",
                       "http://127.0.0.1:" .. port .. "/" },
                     { timeout = seconds + 60 })
  local out = r.stdout
  return {
    requests = tonumber(out:match("(%d+) requests in")) or 0,
    rate = tonumber(out:match("Requests/sec:%s*([%d%.]+)")) or 0,
    socket_errors = out:match("Socket errors:[^\n]*"),
    non2xx = tonumber(out:match("Non%-2xx or 3xx responses: (%d+)")) or 0,
    text = out .. r.stderr,
  }
end

-- the server under test, in its own process
local port do
  local s = aio.start_server(function() end, "127.0.0.1", 0)
  port = s.port
  s:close()
end
local server = aio.spawn_process({ "build/luaio", "bench/http/luaio.lua", tostring(port) })
local pid = server.pid
for _ = 1, 100 do
  local ok, c = pcall(aio.open_connection, "127.0.0.1", port)
  if ok then c:close() break end
  aio.sleep(0.05)
end
local server_log = aio.spawn(function() return server.stderr:read_all() end)

-- ---- load ---------------------------------------------------------------------
local idle = {}
local sem = aio.Semaphore(200)
local opening = {}
for i = 1, IDLE do
  opening[i] = aio.spawn(function()
    local _ <close> = sem:acquire()
    idle[i] = aio.open_connection("127.0.0.1", port)
  end)
end
aio.gather(opening)
aio.sleep(0.5)
local rss_idle = rss_kib(pid)
print(("metric idle_connections %d"):format(#idle))
print(("metric rss_kib_with_idle %d"):format(rss_idle))

local peak = rss_idle
local sampling = true
local sampler = aio.spawn(function()
  while sampling do
    peak = math.max(peak, rss_kib(pid) or 0)
    aio.sleep(0.5)
  end
end)
local load = wrk(port, 1000, LOAD_SECONDS)
sampling = false
sampler:wait()
print(("metric load_requests %d"):format(load.requests))
print(("metric load_requests_per_second %.0f"):format(load.rate))
print(("metric load_peak_rss_kib %d"):format(peak))
check(load.requests > 0, "the load ran (" .. load.requests .. " requests)")
check(load.socket_errors == nil, "no socket errors under load " .. (load.socket_errors or ""))
check(load.non2xx == 0, "no non-2xx answers under load")
check(peak < 1024 * 1024, ("memory bounded under load (peak %.0f MiB)"):format(peak / 1024))

-- the idle connections were held all along: a sample of them still answers
local answered = 0
local probes = {}
for i = 1, 200 do
  local c = idle[(i * 50) % #idle + 1]
  probes[i] = aio.spawn(function()
    c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    local line = aio.wait_for(function() return c:readline() end, 10)
    if line == "HTTP/1.1 200 OK" then answered = answered + 1 end
  end)
end
aio.gather(probes, { return_exceptions = true })
check(answered == 200, ("idle connections still served afterwards (%d/200)"):format(answered))
for _, c in ipairs(idle) do c:close() end
idle = nil
collectgarbage()

-- ---- soak ---------------------------------------------------------------------
local warm = wrk(port, 50, 5)
local rss0 = rss_kib(pid)
local total, soak_errors = warm.requests, 0
local t0 = aio.now()
while total < SOAK_REQUESTS do
  local left = SOAK_REQUESTS - total
  local secs = math.max(2, math.min(20, math.ceil(left / math.max(warm.rate, 1000))))
  local r = wrk(port, 50, secs)
  total = total + r.requests
  if r.socket_errors or r.non2xx > 0 then soak_errors = soak_errors + 1 end
end
local rss1 = rss_kib(pid)
local growth = (rss1 - rss0) / rss0 * 100
print(("metric soak_requests %d"):format(total))
print(("metric soak_seconds %.1f"):format(aio.now() - t0))
print(("metric soak_rss_kib_before %d"):format(rss0))
print(("metric soak_rss_kib_after %d"):format(rss1))
print(("metric soak_rss_growth_percent %.2f"):format(growth))
check(soak_errors == 0, "no errors during the soak")
check(growth < 5, ("memory flat over the soak (%.2f %% growth)"):format(growth))

server:kill()
server:wait()
local log = server_log:wait() or ""
check(not log:match("failed"), "nothing failed in the server log" .. (log ~= "" and (":\n" .. log:sub(1, 500)) or ""))
os.exit(failures == 0 and 0 or 1)
