-- sleepers floor: what 100,000 bare suspended Lua 5.4 coroutines cost.
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
local cos = {}
for i = 1, N do
  local c = coroutine.create(function(s) coroutine.yield(s) end)
  coroutine.resume(c, 1)
  cos[i] = c
end
print(("metric bytes_per_task %.0f"):format((status_kib("VmHWM") - r0) * 1024 / N))
collectgarbage() collectgarbage()
print(("metric settled_bytes_per_task %.0f"):format((rss_kib() - r0) * 1024 / N))
