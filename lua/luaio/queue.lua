-- Queue, PriorityQueue, LifoQueue (asyncio's queues.py semantics).
-- A put wakes one getter, which takes the item itself when it runs: an item
-- is never handed to a task that may be cancelled before it looks at it.
return function(aio, core)
  local suspend, wake, new_error = core.suspend, core.wake, core.error
  local F = aio._fifo
  local fifo, push, remove, wake_first = F.new, F.push, F.remove, F.wake_first
  local error, setmetatable, type = error, setmetatable, type

  local need_task = core.need_task

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
  local heap_store = {
    init = function(q) q._seq = 0 end,
    put = function(q, x)
      local items = q._items
      q._seq = q._seq + 1
      local e = { prio_key(x), q._seq, x }
      local i = q._n + 1
      q._n = i
      while i > 1 do
        local p = i // 2
        if not before(e, items[p]) then break end
        items[i] = items[p]
        i = p
      end
      items[i] = e
    end,
    get = function(q)
      local items, n = q._items, q._n
      local top, last = items[1], items[n]
      items[n] = nil
      n = n - 1
      q._n = n
      if n > 0 then
        local i = 1
        while true do
          local c = 2 * i
          if c > n then break end
          if c < n and before(items[c + 1], items[c]) then c = c + 1 end
          if not before(items[c], last) then break end
          items[i] = items[c]
          i = c
        end
        items[i] = last
      end
      return top[3]
    end,
  }

  local function make(maxsize, store, fname)
    maxsize = maxsize or 0
    if type(maxsize) ~= "number" or maxsize ~= maxsize then
      error(fname .. ": maxsize must be a number, got " .. tostring(maxsize), 3)
    end
    local q = setmetatable({ _maxsize = maxsize, _items = {}, _store = store, _n = 0,
      _getters = fifo(), _putters = fifo(), _unfinished = 0,
      _joined = nil, _shutdown = false }, Queue)
    store.init(q)
    q._fast = fast_limit(q)
    return q
  end

  function aio.Queue(maxsize) return make(maxsize, fifo_store, "aio.Queue") end
  function aio.LifoQueue(maxsize) return make(maxsize, lifo_store, "aio.LifoQueue") end
  function aio.PriorityQueue(maxsize) return make(maxsize, heap_store, "aio.PriorityQueue") end

  function Queue:qsize() return self._n end
  function Queue:maxsize() return self._maxsize end
  function Queue:empty() return self._n == 0 end
  function Queue:full() return self._maxsize > 0 and self._n >= self._maxsize end

  -- put_nowait/get_nowait are the hot path: the FIFO ring is inlined here
  -- (the common case), other stores go through their put/get.
  function Queue:put_nowait(x)
    if self._shutdown then raise("QueueShutDown", "the queue is shut down") end
    local n, max = self._n, self._maxsize
    if max > 0 and n >= max then raise("QueueFull", "the queue is full") end
    local store = self._store
    if store == fifo_store and n < self._cap then
      self._items[(self._head + n) % self._cap + 1] = x
      self._n = n + 1
    else
      store.put(self, x)
    end
    self._unfinished = self._unfinished + 1
    local g = self._getters
    if g.first <= g.last then wake_first(g, g) end
  end

  function Queue:get_nowait()
    local n = self._n
    if n == 0 then
      if self._shutdown then raise("QueueShutDown", "the queue is shut down and empty") end
      raise("QueueEmpty", "the queue is empty")
    end
    local x
    if self._store == fifo_store then
      local h, items = self._head, self._items
      x = items[h + 1]
      items[h + 1] = nil
      self._head = (h + 1) % self._cap
      self._n = n - 1
    else
      x = self._store.get(self)
    end
    local p = self._putters
    if p.first <= p.last then wake_first(p, p) end
    return x
  end

  -- put/get: the FIFO ring's common case is inlined (one Lua call per item);
  -- everything else (waiting, other stores, shutdown) takes the general path.
  local function put_waiting(self, x)
    local max = self._maxsize
    while max > 0 and self._n >= max and not self._shutdown do
      local me = need_task("queue:put")
      local p = self._putters
      push(p, me)
      local ok, err = suspend(p)
      if not ok then
        remove(p, me)
        -- a wake-up we may have consumed goes to the next putter
        if self._n < max then wake_first(p, p) end
        error(err, 0)
      end
    end
    return self:put_nowait(x)
  end

  function Queue:put(x)
    local n = self._n
    if n < self._fast then
      self._items[(self._head + n) % self._cap + 1] = x
      self._n = n + 1
      self._unfinished = self._unfinished + 1
      local g = self._getters
      if g.first <= g.last then wake_first(g, g) end
      return
    end
    return put_waiting(self, x)
  end

  local function get_waiting(self)
    while self._n == 0 and not self._shutdown do
      local me = need_task("queue:get")
      local g = self._getters
      push(g, me)
      local ok, err = suspend(g)
      if not ok then
        remove(g, me)
        if self._n > 0 then wake_first(g, g) end
        error(err, 0)
      end
    end
    return self:get_nowait()
  end

  function Queue:get()
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

  function Queue:task_done()
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
    need_task("queue:join")
    while self._unfinished > 0 do
      local ev = self._joined
      if not ev then ev = aio.Event() self._joined = ev end
      ev:wait()
    end
  end

  function Queue:shutdown(immediate)
    self._shutdown = true
    self._fast = 0
    if immediate then
      while self._n > 0 do
        self._store.get(self)
        if self._unfinished > 0 then self._unfinished = self._unfinished - 1 end
      end
      if self._unfinished == 0 then self:_all_done() end
    end
    for _, q in ipairs { self._getters, self._putters } do
      while wake_first(q, q) do end
    end
  end

  -- a queue is iterable with the generic for: items until shut down and empty
  function Queue:items()
    return function()
      local ok, x = pcall(self.get, self)
      if ok then return x end
      if aio.is_error(x, "QueueShutDown") then return nil end
      error(x, 0)
    end
  end
end
