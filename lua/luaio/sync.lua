-- Lock, Semaphore, BoundedSemaphore, Event, Condition (asyncio's locks.py
-- semantics). A release hands the lock straight to the first waiter still
-- waiting, so ownership is FIFO and nobody can barge in between.
--
-- Every public function and method checks its self and its arguments first
-- (Lua's "bad argument" shape, at the caller's line), then, if it may wait,
-- asks core.need_task before touching any state.
local core = require "luaio.core"
local check = require "luaio.check"
local fifo_mod = require "luaio.fifo"

-- the real metatable: a __metatable field cannot make a table pass for ours
local getmetatable = debug.getmetatable
local suspend, wake, new_error = core.suspend, core.wake, core.error
local error, setmetatable, type = error, setmetatable, type
local math_type, tostring = math.type, tostring

local need_task, arg_error, type_name = core.need_task, core.arg_error, core.type_name
local check_self, check_callable, check_number = check.check_self, check.check_callable, check.check_number
local fifo, push, remove, wake_first = fifo_mod.new, fifo_mod.push, fifo_mod.remove, fifo_mod.wake_first

local M = {}   -- the public names: aio.Lock, aio.Semaphore, ...

-- Guard: what acquire returns; closing it (or g:release()) releases.
local Guard = { __name = "luaio.Guard" }
local function guard_release(g)
  if getmetatable(g) ~= Guard then check_self(g, Guard) end
  return g.owner:release()
end
Guard.__close = guard_release
Guard.__index = { release = guard_release }

-- Lock -------------------------------------------------------------------
local Lock = {}
Lock.__index = Lock
Lock.__name = "luaio.Lock"

local function new_lock()
  local l = setmetatable({ _locked = false, _waiters = fifo() }, Lock)
  l._guard = setmetatable({ owner = l }, Guard)
  return l
end
function M.Lock() return new_lock() end

local function lock_release(self)
  local t = wake_first(self._waiters, self)
  if t then self._handed = t else self._locked = false end
end

local function lock_abandon(self, me)
  if self._handed == me then          -- handed over, then abandoned: pass it on
    self._handed = nil
    lock_release(self)
  else
    remove(self._waiters, me)
  end
end

-- the lock for task `me` (checked by the caller)
local function lock_acquire(self, me)
  if not self._locked then
    self._locked = true
    return self._guard
  end
  push(self._waiters, me)
  local ok, err = suspend(self, "lock acquire")
  if ok then
    self._handed = nil
    return self._guard
  end
  lock_abandon(self, me)
  error(err, 0)
end

function Lock:acquire()
  if getmetatable(self) ~= Lock then check_self(self, Lock) end
  local me = need_task("lock:acquire")   -- a waiting function, even when it need not wait
  return lock_acquire(self, me)
end

function Lock:release()
  if getmetatable(self) ~= Lock then check_self(self, Lock) end
  if not self._locked then error(new_error("RuntimeError", "Lock is not acquired"), 2) end
  lock_release(self)
end

function Lock:locked()
  if getmetatable(self) ~= Lock then check_self(self, Lock) end
  return self._locked
end
Lock.__close = function(l)
  if getmetatable(l) ~= Lock then check_self(l, Lock) end
  if l._locked then lock_release(l) end
end

-- Semaphore --------------------------------------------------------------
-- _value counts the free permits. A release with tasks waiting hands its
-- permit to the oldest (_handed[t], _nhanded); until every handed task
-- has resumed, acquire does not take a free permit on the fast path: the
-- waiters resumed since then get them first (asyncio's locked() counts a
-- woken waiter as a waiter until it runs).
local Semaphore = {}
Semaphore.__index = Semaphore
Semaphore.__name = "luaio.Semaphore"

local function make_semaphore(n, bounded)
  local s = setmetatable({ _value = n, _bound = bounded and n or nil, _waiters = fifo(),
                           _handed = {}, _nhanded = 0 }, Semaphore)
  s._guard = setmetatable({ owner = s }, Guard)
  return s
end
-- n: nil (1) or an integer >= 0; raises at the constructor's caller
local function check_initial(n)
  if n == nil then return 1 end
  if math_type(n) == "integer" and n >= 0 then return n end
  if type(n) == "number" then
    arg_error(1, "non-negative integer expected, got " .. tostring(n), 2)
  end
  arg_error(1, "number expected, got " .. type_name(n), 2)
end
function M.Semaphore(n)
  local s = make_semaphore(check_initial(n), false)
  return s
end
function M.BoundedSemaphore(n)
  local s = make_semaphore(check_initial(n), true)
  return s
end

-- free permits go to the oldest waiters still waiting
local function sem_wake_next(self)
  while self._value > 0 do
    local t = wake_first(self._waiters, self)
    if not t then return end
    self._value = self._value - 1
    self._handed[t] = true
    self._nhanded = self._nhanded + 1
  end
end

local function sem_abandon(self, me)
  if self._handed[me] then            -- handed a permit, then abandoned: give it back
    self._handed[me] = nil
    self._nhanded = self._nhanded - 1
    self._value = self._value + 1
  else
    remove(self._waiters, me)
  end
  sem_wake_next(self)
end

local function sem_acquire(self, me)
  local q = self._waiters
  if self._value > 0 and self._nhanded == 0 and q.first > q.last then
    self._value = self._value - 1
    return self._guard
  end
  push(q, me)
  local ok, err = suspend(self, "semaphore acquire")
  if ok then
    self._handed[me] = nil
    self._nhanded = self._nhanded - 1
    sem_wake_next(self)                  -- permits freed meanwhile go to the next in line
    return self._guard
  end
  sem_abandon(self, me)
  error(err, 0)
end

function Semaphore:acquire()
  if getmetatable(self) ~= Semaphore then check_self(self, Semaphore) end
  local me = need_task("semaphore:acquire")
  return sem_acquire(self, me)
end

function Semaphore:release()
  if getmetatable(self) ~= Semaphore then check_self(self, Semaphore) end
  if self._bound and self._value >= self._bound then
    error(new_error("ValueError", "BoundedSemaphore released too many times"), 2)
  end
  self._value = self._value + 1
  sem_wake_next(self)
end

function Semaphore:value()
  if getmetatable(self) ~= Semaphore then check_self(self, Semaphore) end
  return self._value
end
-- whether acquire would wait
function Semaphore:locked()
  if getmetatable(self) ~= Semaphore then check_self(self, Semaphore) end
  local q = self._waiters
  return self._value == 0 or self._nhanded > 0 or q.first <= q.last
end

function Semaphore:run(fn, ...)
  if getmetatable(self) ~= Semaphore then check_self(self, Semaphore) end
  check_callable(fn, 2)
  local me = need_task("semaphore:run")
  local _ <close> = sem_acquire(self, me)
  return fn(...)
end

-- Event ------------------------------------------------------------------
local Event = {}
Event.__index = Event
Event.__name = "luaio.Event"

function M.Event() return setmetatable({ _set = false, _waiters = fifo() }, Event) end

function Event:set()
  if getmetatable(self) ~= Event then check_self(self, Event) end
  if self._set then return end
  self._set = true
  local q = self._waiters
  for i = q.first, q.last do wake(q[i], self) q[i] = nil end
  q.first, q.last = 1, 0
end
function Event:clear()
  if getmetatable(self) ~= Event then check_self(self, Event) end
  self._set = false
end
function Event:is_set()
  if getmetatable(self) ~= Event then check_self(self, Event) end
  return self._set
end


function Event:wait()
  if getmetatable(self) ~= Event then check_self(self, Event) end
  local me = need_task("event:wait")
  if self._set then return true end
  push(self._waiters, me)
  local ok, err = suspend(self, "event wait")
  if ok then return true end
  remove(self._waiters, me)
  error(err, 0)
end

-- Condition --------------------------------------------------------------
local Condition = {}
Condition.__index = Condition
Condition.__name = "luaio.Condition"

function M.Condition(lock)
  if lock == nil then
    lock = new_lock()
  elseif getmetatable(lock) ~= Lock then
    arg_error(1, "luaio.Lock expected, got " .. type_name(lock))
  end
  local c = setmetatable({ _lock = lock, _waiters = fifo(), _notified = {} }, Condition)
  c._guard = setmetatable({ owner = c }, Guard)
  return c
end

function Condition:acquire()
  if getmetatable(self) ~= Condition then check_self(self, Condition) end
  local me = need_task("condition:acquire")
  lock_acquire(self._lock, me)
  return self._guard
end
function Condition:release()
  if getmetatable(self) ~= Condition then check_self(self, Condition) end
  if not self._lock._locked then error(new_error("RuntimeError", "Lock is not acquired"), 2) end
  lock_release(self._lock)
end
function Condition:locked()
  if getmetatable(self) ~= Condition then check_self(self, Condition) end
  return self._lock._locked
end

-- wake up to n waiters, oldest first (the lock is the caller's business)
local function cond_notify(self, n)
  local woken = 0
  while woken < n do
    local t = wake_first(self._waiters, self)
    if not t then break end
    self._notified[t] = true
    woken = woken + 1
  end
end

-- a waiter notified, then abandoned, passes the notification on
local function cond_abandon(self, me)
  if self._notified[me] then
    self._notified[me] = nil
    cond_notify(self, 1)
  else
    remove(self._waiters, me)
  end
end

local function cond_wait(self, me)
  if not self._lock._locked then
    error(new_error("RuntimeError", "cannot wait on an un-acquired condition"), 2)
  end
  lock_release(self._lock)
  push(self._waiters, me)
  local ok, err = suspend(self, "condition wait")
  if ok then self._notified[me] = nil
  else cond_abandon(self, me) end     -- passes a notification on, or leaves the queue
  -- the lock is always re-acquired before returning or raising
  local cancelled
  while true do
    local got, e = pcall(lock_acquire, self._lock, me)
    if got then break end
    cancelled = cancelled or e
  end
  if not ok then error(err, 0) end
  if cancelled then error(cancelled, 0) end
  return true
end

function Condition:wait()
  if getmetatable(self) ~= Condition then check_self(self, Condition) end
  local me = need_task("condition:wait")
  return cond_wait(self, me)
end

function Condition:wait_for(predicate)
  if getmetatable(self) ~= Condition then check_self(self, Condition) end
  check_callable(predicate, 2)
  local me = need_task("condition:wait_for")
  local r = predicate()
  while not r do
    cond_wait(self, me)
    r = predicate()
  end
  return r
end

function Condition:notify(n)
  if getmetatable(self) ~= Condition then check_self(self, Condition) end
  if n == nil then n = 1 else check_number(n, 2, 0) end
  if not self._lock._locked then error(new_error("RuntimeError", "cannot notify on an un-acquired condition"), 2) end
  cond_notify(self, n)
end

function Condition:notify_all()
  if getmetatable(self) ~= Condition then check_self(self, Condition) end
  if not self._lock._locked then error(new_error("RuntimeError", "cannot notify on an un-acquired condition"), 2) end
  cond_notify(self, math.huge)
end

return M
