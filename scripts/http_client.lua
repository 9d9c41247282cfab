-- Course §4 "Client HTTP": N URLs fetched concurrently through one Session
-- (aiohttp.ClientSession); status and size per URL; failures are reported,
-- not fatal. With no URLs on the command line, a local httpbin-like server
-- stands in for httpbin.org (plus one URL that refuses connections).
--   luaio scripts/http_client.lua [url ...]
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib/?.lua;" .. package.path
local aio = require "luaio"

local function fetch_url(session, url)
  print("📡 Request to: " .. url)
  local ok, resp = pcall(session.get, session, url, { timeout = 10 })
  if ok then return { url = url, status = resp.status, size = #resp.body, success = true } end
  return { url = url, error = tostring(resp), success = false }
end

local function concurrent_client(urls)
  print(("🌐 Fetching %d URLs in parallel"):format(#urls))
  local t0 = aio.now()
  local results
  do
    local session <close> = aio.http.Session()     -- `async with ClientSession()`
    local jobs = {}
    for i, url in ipairs(urls) do jobs[i] = function() return fetch_url(session, url) end end
    results = aio.gather(jobs)
  end
  local successes = 0
  for _, r in ipairs(results) do if r.success then successes = successes + 1 end end
  print(("\n📊 Results in %.2fs:"):format(aio.now() - t0))
  print(("  ✅ Successes: %d"):format(successes))
  print(("  ❌ Failures: %d"):format(#results - successes))
  for _, r in ipairs(results) do
    if r.success then print(("  ✅ %s: %d (%d chars)"):format(r.url, r.status, r.size))
    else print(("  ❌ %s: %s"):format(r.url, r.error)) end
  end
  return results
end

local urls = { ... }
local server
if #urls == 0 then
  local base
  server, base = require("httpbin").start()
  urls = { base .. "/delay/1", base .. "/status/200", base .. "/json", base .. "/user-agent", base .. "/headers",
           "http://127.0.0.1:1/unreachable" }
end
concurrent_client(urls)
if server then server:close() end
