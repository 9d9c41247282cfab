-- Queue, PriorityQueue, LifoQueue (asyncio's queues.py semantics).
-- A put wakes one getter, which takes the item itself when it runs: an item
-- is never handed to a task that may be cancelled before it looks at it.
--
-- The counts, the waiter lists and (Queue, LifoQueue) the items are native:
-- src/queue.c, whose put and get closures do the common case in one call
-- and come back here to wait. Here: the API around them, waiting, and the
-- PriorityQueue's heap.
local core = require "luaio.core"
local check = require "luaio.check"
local new_event = require("luaio.sync").Event

-- the real metatable: a __metatable field cannot make a table pass for ours
local getmetatable = debug.getmetatable
local suspend, is_error = core.suspend, core.is_error
local queue_new, queue_methods, queue_state = core.queue_new, core.queue_methods, core.queue_state
local queue_put_now, queue_get_now = core.queue_put_now, core.queue_get_now
local queue_admit, queue_added = core.queue_admit, core.queue_added
local queue_admit_take, queue_taken = core.queue_admit_take, core.queue_taken
local queue_wait, queue_abandon = core.queue_wait, core.queue_abandon
local queue_task_done, queue_shutdown, queue_wake_all = core.queue_task_done, core.queue_shutdown, core.queue_wake_all
local error, setmetatable, type, pcall = error, setmetatable, type, pcall
local tostring = tostring

local need_task, arg_error, type_name = core.need_task, core.arg_error, core.type_name
local check_self = check.check_self

local M = {}   -- the public names: aio.Queue, aio.LifoQueue, aio.PriorityQueue

local Queue = {}
Queue.__index = Queue
Queue.__name = "luaio.Queue"

-- The PriorityQueue's heap: q._items[1..q._len], entries { key, seq, item }.
local function prio_key(x)
  if type(x) == "table" then return x[1] end
  return x
end
local function before(a, b) -- entries are { key, seq, item }
  if a[1] == b[1] then return a[2] < b[2] end
  return a[1] < b[1]
end
-- Where e would settle, sifting up from i / down from the root: the
-- comparisons only, run (protected) before the heap is touched, so a key
-- that cannot be compared (1 against {} or "x", a failing __lt) raises
-- and leaves the queue exactly as it was.
local function up_slot(items, e, i)
  while i > 1 do
    local p = i // 2
    if not before(e, items[p]) then break end
    i = p
  end
  return i
end
local function down_path(items, n, last, path)
  local i = 1
  while true do
    local c = 2 * i
    if c > n then break end
    if c < n and before(items[c + 1], items[c]) then c = c + 1 end
    if not before(items[c], last) then break end
    path[#path + 1] = c
    i = c
  end
end
-- the comparison's error, without the position inside this file
local function order_error(why)
  return "cannot order the item among the queued ones (" .. tostring(why):gsub("^[^\n]-:%d+: ", "") .. ")"
end
-- store x; returns an error message (nothing stored) when x cannot be ordered
local function heap_put(q, x)
  local key = prio_key(x)
  if key == nil or key ~= key then
    return ("priority expected%s, got %s"):format(type(x) == "table" and " at [1]" or "",
      key == nil and "nil" or "NaN")
  end
  local items = q._items
  local e = { key, q._seq + 1, x }
  local n = q._len + 1
  local ok, i = pcall(up_slot, items, e, n)
  if not ok then return order_error(i) end
  q._seq = q._seq + 1
  q._len = n
  while n > i do
    local p = n // 2
    items[n] = items[p]
    n = p
  end
  items[i] = e
end
-- take the top; returns nil and an error message (nothing taken) when the
-- items cannot be ordered (keys whose __lt fails)
local function heap_get(q)
  local items, n = q._items, q._len
  local top, last = items[1], items[n]
  local path = {}
  if n > 1 then
    local ok, why = pcall(down_path, items, n - 1, last, path)
    if not ok then return nil, order_error(why) end
  end
  items[n] = nil
  q._len = n - 1
  if n > 1 then
    local i = 1
    for k = 1, #path do
      local c = path[k]
      items[i] = items[c]
      i = c
    end
    items[i] = last
  end
  return top[3]
end

-- maxsize: nil (0, unbounded) or a number (<= 0: unbounded); checked
-- for the constructor calling this
local function check_maxsize(maxsize)
  if maxsize == nil then return 0 end
  if type(maxsize) ~= "number" then arg_error(1, "number expected, got " .. type_name(maxsize), 2) end
  if maxsize ~= maxsize then arg_error(1, "number expected, got NaN", 2) end
  return maxsize
end

-- Waiting: me joins a waiter list and suspends on it until its turn. A
-- wait ended by a cancellation leaves the list; a wake-up it may have
-- consumed goes to the next waiter (queue_abandon).
local function wait_turn(self, qc, me, which, list, what)
  queue_wait(qc, which, me)
  local ok, err = suspend(list, what, self)
  if not ok then
    queue_abandon(qc, which, me)
    error(err, 0)
  end
end

-- until there is room, or the queue is shut down (the put raises then);
-- the native put comes here when it must wait, wait_item likewise for get
local function wait_room(self, qc, me)
  local max = self._maxsize
  while true do
    local n, _, shut = queue_state(qc)
    if shut or max <= 0 or n < max then return end
    wait_turn(self, qc, me, "put", self._putters, "queue put")
  end
end

-- (called with none queued) until there is an item, or the queue is shut
-- down (the get raises then)
local function wait_item(self, qc, me)
  repeat
    wait_turn(self, qc, me, "get", self._getters, "queue get")
    local n, _, shut = queue_state(qc)
  until n > 0 or shut
end

local function make(maxsize, kind)
  local q = setmetatable({ _maxsize = maxsize, _joined = nil }, Queue)
  q._core, q._getters, q._putters = queue_new(q, kind, maxsize)
  if kind == "heap" then
    q._heap, q._items, q._len, q._seq = true, {}, 0, 0
  else
    -- the queue's own put and get: Queue.put and Queue.get, reached
    -- through the metatable with another self, go to that queue's own
    q.put, q.get = queue_methods(q._core, Queue, wait_room, wait_item)
  end
  return q
end

function M.Queue(maxsize) return make(check_maxsize(maxsize), "fifo") end
function M.LifoQueue(maxsize) return make(check_maxsize(maxsize), "lifo") end
function M.PriorityQueue(maxsize) return make(check_maxsize(maxsize), "heap") end

function Queue:qsize()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  local n = queue_state(self._core)
  return n
end
function Queue:maxsize()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  return self._maxsize
end
function Queue:empty()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  return queue_state(self._core) == 0
end
function Queue:full()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  local max = self._maxsize
  return max > 0 and queue_state(self._core) >= max
end

-- a PriorityQueue's put: the checks, its heap, the count
local function heap_put_now(self, x)
  local qc = self._core
  queue_admit(qc)
  local why = heap_put(self, x)
  if why then return why end
  queue_added(qc)
end

-- a PriorityQueue's get; nil and a message (nothing taken) when the items
-- cannot be ordered
local function heap_get_now(self)
  local qc = self._core
  queue_admit_take(qc)
  local x, why = heap_get(self)
  if why then return nil, why end
  queue_taken(qc)
  return x
end

function Queue:put_nowait(x)
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  if not self._heap then
    queue_put_now(self._core, x)
    return
  end
  local why = heap_put_now(self, x)
  if why then arg_error(2, why) end
end

function Queue:get_nowait()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  if not self._heap then
    local x = queue_get_now(self._core)
    return x
  end
  local x, why = heap_get_now(self)
  if why then error(why, 2) end
  return x
end

-- the queue's own put/get (missing only if a program removed it)
local function own_method(self, name)
  local m = rawget(self, name)
  if type(m) ~= "function" then error(("this queue's %s method was removed"):format(name), 3) end
  return m
end

function Queue:put(x)
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  if not self._heap then return own_method(self, "put")(self, x) end
  local qc, max = self._core, self._maxsize
  local n, _, shut = queue_state(qc)
  if max > 0 and n >= max and not shut then wait_room(self, qc, need_task("queue:put")) end
  local why = heap_put_now(self, x)
  if why then arg_error(2, why) end
end

function Queue:get()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  if not self._heap then return own_method(self, "get")(self) end
  local qc = self._core
  local n, _, shut = queue_state(qc)
  if n == 0 and not shut then wait_item(self, qc, need_task("queue:get")) end
  local x, why = heap_get_now(self)
  if why then error(why, 2) end
  return x
end

function Queue:task_done()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  if queue_task_done(self._core) then self:_all_done() end
end

-- joiners share one Event, made only when someone joins: puts stay cheap
function Queue:_all_done()
  local ev = self._joined
  if ev then self._joined = nil ev:set() end
end

function Queue:join()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  need_task("queue:join")
  local qc = self._core
  while select(2, queue_state(qc)) > 0 do
    local ev = self._joined
    if not ev then ev = new_event() self._joined = ev end
    ev:wait()
  end
end

function Queue:shutdown(immediate)
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  if immediate ~= nil and type(immediate) ~= "boolean" then
    arg_error(2, "boolean expected, got " .. type_name(immediate))
  end
  -- immediate: the items go (no ordering needed), each counts as done
  if immediate and self._heap then self._items, self._len = {}, 0 end
  local qc = self._core
  if queue_shutdown(qc, immediate) and immediate then self:_all_done() end
  queue_wake_all(qc)
end

-- a queue is iterable with the generic for: items until shut down and empty
function Queue:items()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  return function()
    local ok, x = pcall(self.get, self)
    if ok then return x end
    if is_error(x, "QueueShutDown") then return nil end
    error(x, 0)
  end
end

return M
