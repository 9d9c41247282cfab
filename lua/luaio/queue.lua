-- Queue, PriorityQueue, LifoQueue (asyncio's queues.py semantics).
-- A put wakes one getter, which takes the item itself when it runs: an item
-- is never handed to a task that may be cancelled before it looks at it.
local core = require "luaio.core"
local check = require "luaio.check"
local fifo_mod = require "luaio.fifo"
local new_event = require("luaio.sync").Event

-- the real metatable: a __metatable field cannot make a table pass for ours
local getmetatable = debug.getmetatable
local suspend, new_error, is_error = core.suspend, core.error, core.is_error
local fifo, push, remove, wake_first = fifo_mod.new, fifo_mod.push, fifo_mod.remove, fifo_mod.wake_first
local error, setmetatable, type, pcall = error, setmetatable, type, pcall
local tostring = tostring

local need_task, arg_error, type_name = core.need_task, core.arg_error, core.type_name
local check_self = check.check_self

local M = {}   -- the public names: aio.Queue, aio.LifoQueue, aio.PriorityQueue

local function raise(name, msg) error(new_error(name, msg), 3) end

local Queue = {}
Queue.__index = Queue
Queue.__name = "luaio.Queue"

-- storage strategies: FIFO ring, LIFO stack, binary heap. Each keeps
-- q._n (the count) and uses only indices 1..capacity, so the items stay in
-- the table's array part (ever-growing indices would rehash endlessly).
-- put's inlined path applies while _n < _fast: a FIFO ring with room,
-- under maxsize, not shut down (0 otherwise). Kept up to date by the
-- few places that change any of these.
local fifo_store
local function fast_limit(q)
  if q._store ~= fifo_store or q._shutdown then return 0 end
  local max = q._maxsize
  return (max > 0 and max < q._cap) and max or q._cap
end

fifo_store = {
  init = function(q) q._head, q._cap = 0, 16 end,     -- _head: only FIFO queues have it
  put = function(q, x)
    local n, cap = q._n, q._cap
    if n == cap then                    -- grow: unroll the ring in order
      local old, items, head = q._items, {}, q._head
      for i = 1, n do items[i] = old[(head + i - 1) % cap + 1] end
      q._items, q._head, cap = items, 0, cap * 2
      q._cap = cap
      q._fast = fast_limit(q)
    end
    q._items[(q._head + n) % cap + 1] = x
    q._n = n + 1
  end,
  get = function(q)
    local h = q._head
    local items = q._items
    local x = items[h + 1]
    items[h + 1] = nil
    q._head = (h + 1) % q._cap
    q._n = q._n - 1
    return x
  end,
}
local lifo_store = {
  init = function() end,
  put = function(q, x) local n = q._n + 1; q._n = n; q._items[n] = x end,
  get = function(q)
    local n = q._n
    local x = q._items[n]
    q._items[n] = nil
    q._n = n - 1
    return x
  end,
}

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
local heap_store = {
  init = function(q) q._seq = 0 end,
  -- returns an error message (nothing stored) when x cannot be ordered
  put = function(q, x)
    local key = prio_key(x)
    if key == nil or key ~= key then
      return ("priority expected%s, got %s"):format(type(x) == "table" and " at [1]" or "",
        key == nil and "nil" or "NaN")
    end
    local items = q._items
    local e = { key, q._seq + 1, x }
    local n = q._n + 1
    local ok, i = pcall(up_slot, items, e, n)
    if not ok then return order_error(i) end
    q._seq = q._seq + 1
    q._n = n
    while n > i do
      local p = n // 2
      items[n] = items[p]
      n = p
    end
    items[i] = e
  end,
  -- returns nil and an error message (nothing taken) when the items
  -- cannot be ordered (keys whose __lt fails)
  get = function(q)
    local items, n = q._items, q._n
    local top, last = items[1], items[n]
    local path = {}
    if n > 1 then
      local ok, why = pcall(down_path, items, n - 1, last, path)
      if not ok then return nil, order_error(why) end
    end
    items[n] = nil
    q._n = n - 1
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
  end,
}

-- maxsize: nil (0, unbounded) or a number (<= 0: unbounded); checked
-- for the constructor calling this
local function check_maxsize(maxsize)
  if maxsize == nil then return 0 end
  if type(maxsize) ~= "number" then arg_error(1, "number expected, got " .. type_name(maxsize), 2) end
  if maxsize ~= maxsize then arg_error(1, "number expected, got NaN", 2) end
  return maxsize
end

local bind_hot_methods    -- below, with put and get

local function make(maxsize, store)
  local q = setmetatable({ _maxsize = maxsize, _items = {}, _store = store, _n = 0,
    _getters = fifo(), _putters = fifo(), _unfinished = 0,
    _joined = nil, _shutdown = false }, Queue)
  store.init(q)
  q._fast = fast_limit(q)
  bind_hot_methods(q)
  return q
end

function M.Queue(maxsize) return make(check_maxsize(maxsize), fifo_store) end
function M.LifoQueue(maxsize) return make(check_maxsize(maxsize), lifo_store) end
function M.PriorityQueue(maxsize) return make(check_maxsize(maxsize), heap_store) end

function Queue:qsize()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  return self._n
end
function Queue:maxsize()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  return self._maxsize
end
function Queue:empty()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  return self._n == 0
end
function Queue:full()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  return self._maxsize > 0 and self._n >= self._maxsize
end

-- Store x, or raise QueueShutDown / QueueFull; returns a message (nothing
-- stored) when a PriorityQueue cannot order x. The FIFO ring is inlined
-- (the common case), other stores go through their put.
local function put_now(self, x)
  if self._shutdown then raise("QueueShutDown", "the queue is shut down") end
  local n, max = self._n, self._maxsize
  if max > 0 and n >= max then raise("QueueFull", "the queue is full") end
  local store = self._store
  if store == fifo_store and n < self._cap then
    self._items[(self._head + n) % self._cap + 1] = x
    self._n = n + 1
  else
    local why = store.put(self, x)
    if why then return why end
  end
  self._unfinished = self._unfinished + 1
  local g = self._getters
  if g.first <= g.last then wake_first(g, g) end
end

function Queue:put_nowait(x)
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  local why = put_now(self, x)
  if why then arg_error(2, why) end
end

-- Take the next item, or raise QueueShutDown / QueueEmpty; returns nil and
-- a message (nothing taken) when a PriorityQueue cannot order its items.
local function get_now(self)
  local n = self._n
  if n == 0 then
    if self._shutdown then raise("QueueShutDown", "the queue is shut down and empty") end
    raise("QueueEmpty", "the queue is empty")
  end
  local x, why
  if self._store == fifo_store then
    local h, items = self._head, self._items
    x = items[h + 1]
    items[h + 1] = nil
    self._head = (h + 1) % self._cap
    self._n = n - 1
  else
    x, why = self._store.get(self)
    if why then return nil, why end
  end
  local p = self._putters
  if p.first <= p.last then wake_first(p, p) end
  return x
end

function Queue:get_nowait()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  local x, why = get_now(self)
  if why then error(why, 2) end
  return x
end

-- Waits abandoned (cancelled): a wake-up this waiter may have consumed
-- goes to the next one.
local function put_abandon(self, me)
  local p = self._putters
  remove(p, me)
  local max = self._maxsize
  if max <= 0 or self._n < max or self._shutdown then wake_first(p, p) end
end
local function get_abandon(self, me)
  local g = self._getters
  remove(g, me)
  if self._n > 0 or self._shutdown then wake_first(g, g) end
end

-- put/get: the FIFO ring's common case is inlined (one Lua call per item);
-- everything else (waiting, other stores, shutdown) takes the general path.
-- me: the task, asked for by put when it may have to wait
local function put_waiting(self, x, me)
  local max = self._maxsize
  while max > 0 and self._n >= max and not self._shutdown do
    local p = self._putters
    push(p, me)
    local ok, err = suspend(p, "queue put", self)
    if not ok then
      put_abandon(self, me)
      error(err, 0)
    end
  end
  return put_now(self, x)
end

-- put and get, the hot path of every item, are made for each queue (the
-- constructor calls bind_hot_methods): their self check is one comparison
-- with the queue they belong to, no call and no hash. Queue.put and
-- Queue.get, reached through the metatable with another self, check it
-- and go to that queue's own.
-- the queue's own put/get (missing only if a program removed it)
local function own_method(self, name)
  local m = rawget(self, name)
  if type(m) ~= "function" then error(("this queue's %s method was removed"):format(name), 3) end
  return m
end

function Queue:put(x)
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  return own_method(self, "put")(self, x)
end

-- reached by a tail call from get: need_task and error level 2 see get's caller
local function get_waiting(self)
  if self._n == 0 and not self._shutdown then
    local me = need_task("queue:get")
    local g = self._getters
    repeat
      push(g, me)
      local ok, err = suspend(g, "queue get", self)
      if not ok then
        get_abandon(self, me)
        error(err, 0)
      end
    until self._n > 0 or self._shutdown
  end
  local x, why = get_now(self)
  if why then error(why, 2) end
  return x
end

function Queue:get()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  return own_method(self, "get")(self)
end

function bind_hot_methods(q)
  function q.put(self, x)
    if self ~= q then
      if getmetatable(self) ~= Queue then check_self(self, Queue) end
      return own_method(self, "put")(self, x)
    end
    local n = self._n
    if n < self._fast then
      self._items[(self._head + n) % self._cap + 1] = x
      self._n = n + 1
      self._unfinished = self._unfinished + 1
      local g = self._getters
      if g.first <= g.last then wake_first(g, g) end
      return
    end
    local max, me = self._maxsize, nil
    if max > 0 and n >= max and not self._shutdown then me = need_task("queue:put") end
    local why = put_waiting(self, x, me)
    if why then arg_error(2, why) end
  end

  function q.get(self)
    if self ~= q then
      if getmetatable(self) ~= Queue then check_self(self, Queue) end
      return own_method(self, "get")(self)
    end
    local n, h = self._n, self._head
    if n > 0 and h then
      local items = self._items
      local x = items[h + 1]
      items[h + 1] = nil
      self._head = (h + 1) % self._cap
      self._n = n - 1
      local p = self._putters
      if p.first <= p.last then wake_first(p, p) end
      return x
    end
    return get_waiting(self)
  end
end

function Queue:task_done()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  if self._unfinished <= 0 then
    error(new_error("ValueError", "task_done() called more times than there were items"), 2)
  end
  self._unfinished = self._unfinished - 1
  if self._unfinished == 0 then self:_all_done() end
end

-- joiners share one Event, made only when someone joins: puts stay cheap
function Queue:_all_done()
  local ev = self._joined
  if ev then self._joined = nil ev:set() end
end

function Queue:join()
  if getmetatable(self) ~= Queue then check_self(self, Queue) end
  need_task("queue:join")
  while self._unfinished > 0 do
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
  self._shutdown = true
  self._fast = 0
  if immediate then
    -- drop the items (no ordering needed): each counts as done
    local n = self._n
    self._items, self._n = {}, 0
    if self._head then self._head = 0 end
    self._unfinished = self._unfinished > n and self._unfinished - n or 0
    if self._unfinished == 0 then self:_all_done() end
  end
  for _, q in ipairs { self._getters, self._putters } do
    while wake_first(q, q) do end
  end
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
