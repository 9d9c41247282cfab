-- aio.pg.pool: up to max_connections connections, opened on demand, handed
-- out to one task at a time (FIFO: a semaphore's permits), healthy ones
-- only. A connection given back inside a transaction (or a failed one) is
-- rolled back by a task of its own before it is reused; one that broke, or
-- whose rollback fails, is dropped, and a new one is opened on demand, so
-- the pool recovers once the server is back.
local core = require "luaio.core"
local sync = require "luaio.sync"
local check = require "luaio.check"
local conn_mod = require "luaio.pg.conn"

local need_task, arg_error, type_name, new_error = core.need_task, core.arg_error, core.type_name, core.error
local pcall, error, select, table_pack, table_unpack = pcall, error, select, table.pack, table.unpack
local Conn = conn_mod.Conn
local getmetatable = debug.getmetatable   -- the real metatable: __metatable cannot pass for ours

local Pool = { __name = "aio.pg.Pool" }
Pool.__index = Pool

local M = {}

function M.new(opts, open)
  return setmetatable({ max_connections = opts.max_connections, _opts = opts, _open = open,
                        _sem = sync.Semaphore(opts.max_connections), _idle = {}, _closed = false }, Pool)
end

local function check_pool(self, fname)
  if getmetatable(self) ~= Pool then arg_error(1, "aio.pg.Pool expected, got " .. type_name(self), 2) end
  need_task(fname)
  if self._closed then error(new_error("InvalidStateError", "the pool is closed"), 2) end
end

-- a healthy idle connection, or a new one; the permit is held
local function take(self)
  local idle = self._idle
  while #idle > 0 do
    local c = table.remove(idle)
    if c:_healthy() then return c end
    c:close()
  end
  return self._open(self._opts)
end

-- pool:acquire() ⏸ -> a connection; its release() (or <close>) gives it back
function Pool:acquire()
  check_pool(self, "pool:acquire")
  self._sem:acquire()
  local ok, c = pcall(take, self)
  if not ok then
    self._sem:release()
    error(c, 0)
  end
  c._pool = self
  return c
end

local function put(self, c)
  if self._closed or c._broken or c.status ~= "I" then c:close()
  else self._idle[#self._idle + 1] = c end
  self._sem:release()
end

-- (conn:release) a connection comes back: reused when idle, rolled back
-- first when in a transaction, dropped when broken
function Pool:_give_back(c)
  c._tx_depth = 0
  if c._broken or c.status == "I" or self._closed then return put(self, c) end
  core.spawn(function()
    pcall(c.execute, c, "ROLLBACK")
    put(self, c)
  end)
end

local function with_conn(self, method, ...)
  local c = self:acquire()
  local r = table_pack(pcall(method, c, ...))
  c:release()
  if not r[1] then error(r[2], 0) end
  return table_unpack(r, 2, r.n)
end

function Pool:query(sql, ...)
  check_pool(self, "pool:query")
  check.check_type(sql, 2, "string")
  return with_conn(self, Conn.query, sql, ...)
end

function Pool:execute(sql)
  check_pool(self, "pool:execute")
  check.check_type(sql, 2, "string")
  return with_conn(self, Conn.execute, sql)
end

-- pool:transaction(fn) ⏸ -> fn(conn)'s results after COMMIT
function Pool:transaction(fn)
  check_pool(self, "pool:transaction")
  check.check_callable(fn, 2)
  return with_conn(self, Conn.transaction, fn)
end

-- connections open now (idle ones and those handed out)
function Pool:size()
  if getmetatable(self) ~= Pool then arg_error(1, "aio.pg.Pool expected, got " .. type_name(self)) end
  return #self._idle + (self.max_connections - self._sem:value())
end

function Pool:close()
  if getmetatable(self) ~= Pool then arg_error(1, "aio.pg.Pool expected, got " .. type_name(self)) end
  self._closed = true
  for i = #self._idle, 1, -1 do
    self._idle[i]:close()
    self._idle[i] = nil
  end
end

Pool.__close = Pool.close

return M
