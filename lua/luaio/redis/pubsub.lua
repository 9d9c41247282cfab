-- aio.redis pub/sub (API.md §14): client:subscribe(channel, ...) and
-- client:psubscribe(pattern, ...) ⏸ turn the connection into a
-- subscription, which only receives: sub:receive() ⏸ -> {channel=, data=}
-- ({pattern=, channel=, data=} for a pattern's message), sub:messages(),
-- sub:subscribe / psubscribe / unsubscribe / punsubscribe(...) (sent; their
-- confirmations are read by receive), sub:close() (and <close>).
-- RESP2 sends messages as arrays, RESP3 as pushes: both read the same.
local core = require "luaio.core"
local client = require "luaio.redis.client"
local check_self = require("luaio.check").check_self

local resp_command, need_task, new_error = core.resp_command, core.need_task, core.error
local arg_error, type_name = core.arg_error, core.type_name
local Client, encode = client.Client, client.encode
local type, error, pcall, setmetatable, select, getmetatable = type, error, pcall, setmetatable, select, getmetatable

local M = {}

local Sub = { __name = "luaio.redis.Subscription" }
Sub.__index = Sub

local CONFIRM = { subscribe = true, psubscribe = true, unsubscribe = true, punsubscribe = true }

-- one message, a confirmation (-> false) or a pong (-> false)
local function message(self, v)
  if type(v) ~= "table" then return false end
  local kind = v[1]
  if kind == "message" then return { channel = v[2], data = v[3] } end
  if kind == "pmessage" then return { pattern = v[2], channel = v[3], data = v[4] } end
  if CONFIRM[kind] and type(v[3]) == "number" then self.count = v[3] end
  return false
end

-- the next reply of the subscription's connection (errors: as a command's)
local function next_reply(self)
  local c = self.client
  if c.dead then error(c.dead, 0) end
  local ok, v, is_err = pcall(client.read_reply, c, true)
  if not ok then
    if not core.is_error(v, "CancelledError") and not core.is_error(v, "TimeoutError") then
      client.break_conn(c, v)
    end
    error(v, 0)    -- a cancelled receive loses nothing: the reply stays buffered
  end
  if is_err then error(v, 0) end
  return v
end

-- sub:receive() ⏸ -> the next message; nil once nothing is subscribed any more
function Sub:receive()
  need_task("sub:receive")
  if getmetatable(self) ~= Sub then arg_error(1, "luaio.redis.Subscription expected, got " .. type_name(self)) end
  if self.client.dead then error(self.client.dead, 0) end
  local q = self.pending
  if q.first <= q.last then
    local m = q[q.first]
    q[q.first] = nil
    q.first = q.first + 1
    return m
  end
  while true do
    if self.count == 0 and self.asked_out then return nil end
    local m = message(self, next_reply(self))
    if m then return m end
  end
end

function Sub:messages()
  return function() return self:receive() end
end

-- send a (un)subscription command on the subscribed connection
local function send(self, cmd, first, ...)
  need_task("sub:" .. cmd:lower())
  local c = self.client
  if c.dead then error(c.dead, 2) end
  local data = encode(first, 2, cmd, ...)
  local ok, err = pcall(c.stream.write, c.stream, data)
  if not ok then
    client.break_conn(c, err)
    error(c.dead, 0)
  end
end

function Sub:subscribe(...) send(self, "SUBSCRIBE", 1, ...) end
function Sub:psubscribe(...) send(self, "PSUBSCRIBE", 1, ...) end
function Sub:unsubscribe(...)
  send(self, "UNSUBSCRIBE", 1, ...)
  self.asked_out = true
end
function Sub:punsubscribe(...)
  send(self, "PUNSUBSCRIBE", 1, ...)
  self.asked_out = true
end

function Sub:close() self.client:close() end
Sub.__close = Sub.close

-- the channels (or patterns) of a subscribe, for the caller `level` up
-- (1: the public method calling the function that calls this one)
function M.check_channels(level, ...)
  local n = select("#", ...)
  if n == 0 then arg_error(2, "string expected, got no value", level + 1) end
  for i = 1, n do
    local v = select(i, ...)
    if type(v) ~= "string" then arg_error(i + 1, "string expected, got " .. type_name(v), level + 1) end
  end
end

-- client:subscribe / psubscribe: the command, then its confirmations (one
-- per channel) read before returning, so a message published after the
-- call returns is received
local function subscribe(self, cmd, ...)
  local me = need_task(cmd == "SUBSCRIBE" and "client:subscribe" or "client:psubscribe")
  M.check_channels(2, ...)
  if self.subscribed then
    error(new_error("InvalidStateError", "this Redis connection is subscribed already: use sub:subscribe"), 2)
  end
  if self.dead then error(self.dead, 2) end
  client.send(self, me, resp_command(cmd, ...))
  self.subscribed = true      -- no command is queued behind this one from now on
  local sub = setmetatable({ client = self, count = 0, pending = { first = 1, last = 0 } }, Sub)
  local wanted, seen = select("#", ...), 0
  local ok, err = pcall(function()
    client.wait_turn(self, me)
    while seen < wanted do
      local v = next_reply(sub)
      if type(v) == "table" and CONFIRM[v[1]] then
        message(sub, v)
        seen = seen + 1
      else
        local m = message(sub, v)
        if m then sub.pending.last = sub.pending.last + 1; sub.pending[sub.pending.last] = m end
      end
    end
  end)
  client.done_turn(self)
  if not ok then
    client.break_conn(self, core.is_error(err, "CancelledError") and new_error("ConnectionError",
      "Redis " .. self.where .. ": subscribe cancelled before its confirmation", { code = "ECANCELED" }) or err)
    error(err, 0)
  end
  self.stream:set_timeout(nil)   -- a subscription waits for messages as long as it takes
  return sub
end

function Client:subscribe(...)
  if debug.getmetatable(self) ~= Client then check_self(self, Client) end
  local sub = subscribe(self, "SUBSCRIBE", ...)
  return sub
end
function Client:psubscribe(...)
  if debug.getmetatable(self) ~= Client then check_self(self, Client) end
  local sub = subscribe(self, "PSUBSCRIBE", ...)
  return sub
end

M.Subscription = Sub
return M
