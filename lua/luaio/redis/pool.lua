-- aio.redis.pool(url_or_opts) (API.md §14): the client's methods, each
-- call on a connection borrowed for it. At most max_connections are open
-- (or opening); tasks beyond wait, served in FIFO order: a connection given
-- back goes straight to the oldest waiter. A connection is lent only when
-- healthy: one the server closed meanwhile (its idle timeout) or that is
-- broken (a call cancelled with its reply owed) is dropped and replaced.
-- pool:subscribe opens a connection of its own (not counted): the
-- subscription owns it, sub:close() closes it.
local core = require "luaio.core"
local fifo_mod = require "luaio.fifo"
local client = require "luaio.redis.client"
local pubsub = require "luaio.redis.pubsub"

local need_task, suspend, new_error, arg_error, type_name = core.need_task, core.suspend, core.error,
  core.arg_error, core.type_name
local push, remove, wake_first = fifo_mod.push, fifo_mod.remove, fifo_mod.wake_first
local Client, encode, roundtrip, reshapes = client.Client, client.encode, client.roundtrip, client.reshape
local type, error, pcall, rawget, setmetatable = type, error, pcall, rawget, setmetatable

local M = {}

local Pool = { __name = "luaio.redis.Pool" }
-- the real metatable: a __metatable field cannot make a table pass for ours
local getmetatable, check_self = debug.getmetatable, require("luaio.check").check_self

local function closed_error(self)
  return new_error("ConnectionError", "Redis " .. self.cfg.where .. ": the pool is closed", { code = "EBADF" })
end

-- a slot freed (a connection dropped): the oldest waiter may open one
local function free_slot(self)
  self.count = self.count - 1
  local t = wake_first(self.waiters, self.waiters, false)
  if t then self.handed[t] = false end
end

-- give conn back: to the oldest waiter, else to the idle list; dropped when unhealthy
local function give_back(self, conn)
  if self.closed or not conn:_healthy() then
    conn:close()
    return free_slot(self)
  end
  local t = wake_first(self.waiters, self.waiters, conn)
  if t then self.handed[t] = conn
  else self.idle[#self.idle + 1] = conn end
end

-- a connection for task me ⏸
local function borrow(self, me)
  while true do
    if self.closed then error(closed_error(self), 0) end
    local idle = self.idle
    local conn = idle[#idle]
    if conn then
      idle[#idle] = nil
      if conn:_healthy() then return conn end
      conn:close()                   -- closed by the server meanwhile: replaced
      self.count = self.count - 1
    end
    if self.count < self.max then
      self.count = self.count + 1
      local ok, c = pcall(client.connect, self.cfg)
      if ok then return c end
      free_slot(self)
      error(c, 0)
    end
    push(self.waiters, me)
    local ok, got = suspend(self.waiters)
    local handed = self.handed[me]
    self.handed[me] = nil
    if not ok then
      if handed then give_back(self, handed)     -- handed over, then cancelled: pass it on
      elseif handed == false then free_slot(self)
      else remove(self.waiters, me) end
      error(got, 0)
    end
    if got then return got end       -- a connection; false: a free slot, try again
  end
end

-- run fn(conn, ...) on a borrowed connection
local function with_conn(self, fn, ...)
  local me = need_task("pool:call")
  local conn = borrow(self, me)
  local ok, a = pcall(fn, conn, ...)
  give_back(self, conn)
  if not ok then error(a, 0) end
  return a
end

local function call_on(conn, data, reshape)
  local v = roundtrip(conn, data, 1)
  if reshape then return reshape(v) end
  return v
end

function Pool:call(name, ...)
  if getmetatable(self) ~= Pool then check_self(self, Pool) end
  if type(name) ~= "string" then arg_error(2, "string expected, got " .. type_name(name)) end
  return with_conn(self, call_on, encode(2, 1, name, ...))
end

function Pool:pipeline(fn)
  if getmetatable(self) ~= Pool then check_self(self, Pool) end
  if type(fn) ~= "function" then arg_error(2, "function expected, got " .. type_name(fn)) end
  return with_conn(self, client.pipeline, fn, 1)
end

-- a subscription on a connection of its own
local function subscribe(self, method, ...)
  need_task("pool:" .. method)
  pubsub.check_channels(2, ...)
  if self.closed then error(closed_error(self), 2) end
  local conn = client.connect(self.cfg)
  local ok, sub = pcall(Client[method], conn, ...)
  if not ok then conn:close() error(sub, 0) end
  return sub
end
function Pool:subscribe(...)
  if getmetatable(self) ~= Pool then check_self(self, Pool) end
  local sub = subscribe(self, "subscribe", ...)
  return sub
end
function Pool:psubscribe(...)
  if getmetatable(self) ~= Pool then check_self(self, Pool) end
  local sub = subscribe(self, "psubscribe", ...)
  return sub
end

-- pool:close(): idle connections closed now, lent ones when given back;
-- waiting tasks and later calls raise ConnectionError
function Pool:close()
  if getmetatable(self) ~= Pool then check_self(self, Pool) end
  if self.closed then return end
  self.closed = true
  for i = #self.idle, 1, -1 do
    self.idle[i]:close()
    self.idle[i] = nil
    self.count = self.count - 1
  end
  while wake_first(self.waiters, self.waiters, false) do end
end
Pool.__close = Pool.close

-- pool:stats() -> {open=, idle=, waiting=}
function Pool:stats()
  if getmetatable(self) ~= Pool then check_self(self, Pool) end
  return { open = self.count, idle = #self.idle, waiting = self.waiters.last - self.waiters.first + 1 }
end

local command_methods = {}
Pool.__index = function(_, k)
  local m = rawget(Pool, k) or command_methods[k]
  if m or type(k) ~= "string" or k:sub(1, 1) == "_" then return m end
  local cmd = k:upper()
  local reshape = reshapes[cmd]
  m = function(self, ...)
    if getmetatable(self) ~= Pool then check_self(self, Pool) end
    return with_conn(self, call_on, encode(1, 1, cmd, ...), reshape)
  end
  command_methods[k] = m
  return m
end

function M.new(cfg)
  return setmetatable({ cfg = cfg, max = cfg.max_connections, max_connections = cfg.max_connections, count = 0,
    idle = {}, waiters = fifo_mod.new(), handed = {}, closed = false }, Pool)   -- (every field set: a missing one would read as a command method)
end

M.Pool = Pool
return M
