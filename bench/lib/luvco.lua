-- A plain coroutine scheduler on luv, the way a luvit user writes one: a
-- ready list drained from an idle handle, one uv timer per sleeping coroutine.
-- The peer for luaio in bench/: same workloads, no native scheduler.
local uv = require "luv"
local M = {}

local ready, head, tail = {}, 1, 0
local idle = uv.new_idle()
local idling = false

local function drain()
  while head <= tail do
    local co = ready[head]
    ready[head] = nil
    head = head + 1
    local ok, err = coroutine.resume(co)
    if not ok then error(err) end
  end
  head, tail = 1, 0
  idle:stop()
  idling = false
end

function M.schedule(co)
  tail = tail + 1
  ready[tail] = co
  if not idling then idling = true idle:start(drain) end
end

function M.spawn(fn, ...)
  local args = table.pack(...)
  local co = coroutine.create(function() fn(table.unpack(args, 1, args.n)) end)
  M.schedule(co)
  return co
end

function M.sleep(sec)
  local co = coroutine.running()
  if sec <= 0 then
    M.schedule(co)
  else
    local t = uv.new_timer()
    t:start(math.floor(sec * 1000), 0, function() t:close() M.schedule(co) end)
  end
  coroutine.yield()
end

-- wait until every function in fns has returned
function M.gather(fns)
  local me, left = coroutine.running(), #fns
  for i = 1, #fns do
    M.spawn(function()
      fns[i]()
      left = left - 1
      if left == 0 then M.schedule(me) end
    end)
  end
  if left > 0 then coroutine.yield() end
end

-- a bounded FIFO queue with waiting put/get
function M.Queue(maxsize)
  local q = { items = {}, h = 1, t = 0, getters = {}, putters = {} }
  local function wake(list)
    local co = table.remove(list, 1)
    if co then M.schedule(co) end
  end
  function q:put(x)
    while self.t - self.h + 1 >= maxsize do
      self.putters[#self.putters + 1] = coroutine.running()
      coroutine.yield()
    end
    self.t = self.t + 1
    self.items[self.t] = x
    wake(self.getters)
  end
  function q:get()
    while self.t < self.h do
      self.getters[#self.getters + 1] = coroutine.running()
      coroutine.yield()
    end
    local x = self.items[self.h]
    self.items[self.h] = nil
    self.h = self.h + 1
    wake(self.putters)
    return x
  end
  return q
end

function M.now() return uv.hrtime() / 1e9 end

function M.run(main)
  M.spawn(main)
  uv.run()
end

function M.status_kib(field)
  for l in io.lines("/proc/self/status") do
    local v = l:match("^" .. field .. ":%s+(%d+)")
    if v then return tonumber(v) end
  end
end
function M.rss_kib() return M.status_kib("VmRSS") end
function M.hwm_kib() return M.status_kib("VmHWM") end

return M
