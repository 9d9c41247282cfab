-- Course exercise 1 "Moniteur de sites": every interval, all sites are
-- checked concurrently, each with its own timeout; up/down and response
-- time per site. Offline by default: a local httpbin-like server.
--   luaio scripts/site_monitor.lua [url ...]
package.path = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/lib/?.lua;" .. package.path
local aio = require "luaio"

local function check_site(session, url, timeout)
  local t0 = aio.now()
  local ok, resp = pcall(session.get, session, url, { timeout = timeout })
  if ok then
    return { url = url, status = resp.status, time = aio.now() - t0, up = resp.status < 400 }
  end
  local why = aio.is_error(resp, "TimeoutError") and "Timeout" or tostring(resp)
  return { url = url, error = why, up = false }
end

local function monitor(sites, interval, iterations, timeout)
  print(("🔍 Monitoring %d sites (interval: %gs, timeout: %gs)"):format(#sites, interval, timeout))
  local session <close> = aio.http.Session()
  for it = 1, iterations do
    print(("\n📊 Check #%d"):format(it))
    local jobs = {}
    for i, site in ipairs(sites) do jobs[i] = function() return check_site(session, site, timeout) end end
    for _, r in ipairs(aio.gather(jobs)) do
      if r.up then print(("  ✅ %s: %d (%.2fs)"):format(r.url, r.status, r.time))
      elseif r.status then print(("  ❌ %s: %d (%.2fs)"):format(r.url, r.status, r.time))
      else print(("  ❌ %s: %s"):format(r.url, r.error)) end
    end
    if it < iterations then
      print(("⏳ Waiting %gs..."):format(interval))
      aio.sleep(interval)
    end
  end
  print("✅ Monitoring finished")
end

local sites = { ... }
local server
if #sites == 0 then
  local base
  server, base = require("httpbin").start()
  sites = { base .. "/status/200", base .. "/delay/1", base .. "/status/500", base .. "/delay/5" }
end
monitor(sites, 1, 2, 2)
if server then server:close() end
