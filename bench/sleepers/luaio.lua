-- sleepers: 100,000 tasks sleeping 1 s at once: memory per task at the peak
-- (VmHWM over the baseline: what a user provisions for) and after two full
-- collections (settled), time over 1 s.
local aio = require "luaio"
local function status_kib(field)
  for l in io.lines("/proc/self/status") do
    local v = l:match("^" .. field .. ":%s+(%d+)")
    if v then return tonumber(v) end
  end
end
local function rss_kib() return status_kib("VmRSS") end
local N = 100000
collectgarbage() collectgarbage()
local r0 = rss_kib()
local t0 = aio.now()
local tasks = {}
for i = 1, N do tasks[i] = aio.spawn(aio.sleep, 1) end
aio.sleep(0.5)                      -- all are asleep now
collectgarbage() collectgarbage()
local r1 = rss_kib()
aio.gather(tasks)
print(("metric bytes_per_task %.0f"):format((status_kib("VmHWM") - r0) * 1024 / N))
print(("metric settled_bytes_per_task %.0f"):format((r1 - r0) * 1024 / N))
print(("metric over_seconds %.4f"):format(aio.now() - t0 - 1))
