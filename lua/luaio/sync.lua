-- Lock, Semaphore, BoundedSemaphore, Event, Condition (asyncio's locks.py
-- semantics). A release hands the lock straight to the first waiter still
-- waiting, so ownership is FIFO and nobody can barge in between.
return function(aio, core)
  local suspend, wake, new_error = core.suspend, core.wake, core.error
  local error, setmetatable, type = error, setmetatable, type

  local need_task = core.need_task

  -- FIFO of waiting tasks: { first, last, [i] = task }
  local function fifo() return { first = 1, last = 0 } end
  local function push(q, t) local last = q.last + 1; q.last = last; q[last] = t end
  local function remove(q, t)
    for i = q.first, q.last do
      if q[i] == t then
        for j = i, q.last - 1 do q[j] = q[j + 1] end
        q[q.last] = nil
        q.last = q.last - 1
        return
      end
    end
  end
  -- wake the first task still waiting on `owner`; returns it or nil
  local function wake_first(q, owner, ...)
    while q.first <= q.last do
      local t = q[q.first]
      q[q.first] = nil
      q.first = q.first + 1
      if wake(t, owner, ...) then return t end
    end
    q.first, q.last = 1, 0
    return nil
  end
  aio._fifo = { new = fifo, push = push, remove = remove, wake_first = wake_first }

  local Guard = { __close = function(g) g.owner:release() end }
  Guard.__index = { release = function(g) g.owner:release() end }

  -- Lock -------------------------------------------------------------------
  local Lock = {}
  Lock.__index = Lock
  Lock.__name = "luaio.Lock"

  function aio.Lock()
    local l = setmetatable({ _locked = false, _waiters = fifo() }, Lock)
    l._guard = setmetatable({ owner = l }, Guard)
    return l
  end

  function Lock:acquire()
    local me = need_task("lock:acquire")   -- a waiting function, even when it need not wait
    if not self._locked then
      self._locked = true
      return self._guard
    end
    push(self._waiters, me)
    local ok, err = suspend(self)
    if ok then
      self._handed = nil
      return self._guard
    end
    if self._handed == me then          -- handed over, then cancelled: pass it on
      self._handed = nil
      self:release()
    else
      remove(self._waiters, me)
    end
    error(err, 0)
  end

  function Lock:release()
    if not self._locked then error(new_error("RuntimeError", "Lock is not acquired"), 2) end
    local t = wake_first(self._waiters, self)
    if t then self._handed = t else self._locked = false end
  end

  function Lock:locked() return self._locked end
  Lock.__close = function(l) if l._locked then l:release() end end

  -- Semaphore --------------------------------------------------------------
  local Semaphore = {}
  Semaphore.__index = Semaphore
  Semaphore.__name = "luaio.Semaphore"

  local function make_semaphore(n, bounded, fname)
    n = n == nil and 1 or n
    if math.type(n) ~= "integer" or n < 0 then
      error(fname .. ": initial value must be a non-negative integer, got " .. tostring(n), 3)
    end
    local s = setmetatable({ _value = n, _bound = bounded and n or nil, _waiters = fifo(),
                             _handed = {} }, Semaphore)
    s._guard = setmetatable({ owner = s }, Guard)
    return s
  end
  function aio.Semaphore(n) return make_semaphore(n, false, "aio.Semaphore") end
  function aio.BoundedSemaphore(n) return make_semaphore(n, true, "aio.BoundedSemaphore") end

  function Semaphore:acquire()
    local me = need_task("semaphore:acquire")
    if self._value > 0 and self._waiters.first > self._waiters.last then
      self._value = self._value - 1
      return self._guard
    end
    push(self._waiters, me)
    local ok, err = suspend(self)
    if ok then
      self._handed[me] = nil
      return self._guard
    end
    if self._handed[me] then
      self._handed[me] = nil
      self:release()
    else
      remove(self._waiters, me)
    end
    error(err, 0)
  end

  function Semaphore:release()
    local t = wake_first(self._waiters, self)
    if t then self._handed[t] = true return end
    if self._bound and self._value >= self._bound then
      error(new_error("ValueError", "BoundedSemaphore released too many times"), 2)
    end
    self._value = self._value + 1
  end

  function Semaphore:value() return self._value end
  function Semaphore:locked() return self._value == 0 end

  function Semaphore:run(fn, ...)
    local _ <close> = self:acquire()
    return fn(...)
  end

  -- Event ------------------------------------------------------------------
  local Event = {}
  Event.__index = Event
  Event.__name = "luaio.Event"

  function aio.Event() return setmetatable({ _set = false, _waiters = fifo() }, Event) end

  function Event:set()
    if self._set then return end
    self._set = true
    local q = self._waiters
    for i = q.first, q.last do wake(q[i], self) q[i] = nil end
    q.first, q.last = 1, 0
  end
  function Event:clear() self._set = false end
  function Event:is_set() return self._set end

  function Event:wait()
    local me = need_task("event:wait")
    if self._set then return true end
    push(self._waiters, me)
    local ok, err = suspend(self)
    if ok then return true end
    remove(self._waiters, me)
    error(err, 0)
  end

  -- Condition --------------------------------------------------------------
  local Condition = {}
  Condition.__index = Condition
  Condition.__name = "luaio.Condition"

  function aio.Condition(lock)
    lock = lock or aio.Lock()
    local c = setmetatable({ _lock = lock, _waiters = fifo(), _notified = {} }, Condition)
    c._guard = setmetatable({ owner = c }, Guard)
    return c
  end
  function Condition:acquire() self._lock:acquire() return self._guard end
  function Condition:release() self._lock:release() end
  function Condition:locked() return self._lock:locked() end

  function Condition:wait()
    if not self._lock:locked() then error(new_error("RuntimeError", "cannot wait on an un-acquired condition"), 2) end
    local me = need_task("condition:wait")
    self._lock:release()
    push(self._waiters, me)
    local ok, err = suspend(self)
    local notified = self._notified[me]
    self._notified[me] = nil
    if not ok then
      if notified then self:notify(1) else remove(self._waiters, me) end
    end
    -- the lock is always re-acquired before returning or raising
    local cancelled
    while true do
      local got, e = pcall(self._lock.acquire, self._lock)
      if got then break end
      cancelled = cancelled or e
    end
    if not ok then error(err, 0) end
    if cancelled then error(cancelled, 0) end
    return true
  end

  function Condition:wait_for(predicate)
    local r = predicate()
    while not r do
      self:wait()
      r = predicate()
    end
    return r
  end

  function Condition:notify(n)
    if not self._lock:locked() then error(new_error("RuntimeError", "cannot notify on an un-acquired condition"), 2) end
    n = n or 1
    local woken = 0
    while woken < n do
      local t = wake_first(self._waiters, self)
      if not t then break end
      self._notified[t] = true
      woken = woken + 1
    end
  end

  function Condition:notify_all() self:notify(math.huge) end
end
