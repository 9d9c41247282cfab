-- aio.redis's connection (API.md §14): the handshake (HELLO, AUTH,
-- SELECT), commands, pipelines, and the sharing of one connection by
-- many tasks. Replies are read and decoded natively (stream:_read_resp,
-- resp.c); commands are encoded natively (core.resp_command).
--
-- Sharing: each command is written at once (a command's bytes go out
-- whole: a write that has to wait for the kernel holds the others back),
-- and its task joins the queue of replies owed, in the order of the
-- writes. The task at the head of that queue reads; the others wait for
-- their turn, which the head hands on when it has its reply. So many tasks
-- on one client are pipelined for free, and every reply goes to its caller.
--
-- A task cancelled (or timed out) after its command went out leaves a reply
-- owed that nobody will take: the connection is broken (closed, the tasks
-- queued behind get a ConnectionError, later calls too). A pool drops it.
local core = require "luaio.core"
local fifo_mod = require "luaio.fifo"
local streams = require "luaio.streams"
local resources = require "luaio.resources"

local resp_command, need_task, suspend, wake = core.resp_command, core.need_task, core.suspend, core.wake
local new_error, is_error, arg_error, type_name = core.error, core.is_error, core.arg_error, core.type_name
local push, wake_first = fifo_mod.push, fifo_mod.wake_first
local type, error, pcall, pairs, setmetatable, rawget = type, error, pcall, pairs, setmetatable, rawget
local concat = table.concat
local fmt = string.format

local M = {}

local Client = { __name = "luaio.redis.Client" }
M.Client = Client

-- the real metatable: a __metatable field cannot make a table pass for ours
local getmetatable, check_self = debug.getmetatable, require("luaio.check").check_self

-- Replies the convenience methods reshape (call() returns them as they
-- come): HGETALL's flat RESP2 array becomes the field -> value table that
-- RESP3 sends.
local function pairs_to_map(v)
  if type(v) ~= "table" or v[1] == nil then return v end   -- a RESP3 map, or empty
  local m = {}
  for i = 1, #v, 2 do m[v[i]] = v[i + 1] end
  return m
end
M.reshape = { HGETALL = pairs_to_map }

-- Failures ---------------------------------------------------------------------
local function conn_error(self, msg, code)
  return new_error("ConnectionError", fmt("Redis %s: %s", self.where, msg), { code = code })
end

-- an error of the stream, named after the server (a luaio error keeps its
-- name and code: TimeoutError, TLSError, ConnectionError ...)
local function stream_error(self, err)
  if is_error(err) and not is_error(err, "CancelledError") and not is_error(err, "ProtocolError") then
    local fields = { code = err.code }
    return new_error(err.name, fmt("Redis %s: %s", self.where, err.message), fields)
  end
  return err
end

local function owed_error(self)
  return conn_error(self, "a command was cancelled while its reply was owed: connection closed", "ECANCELED")
end

-- The connection is done for: closed, every task queued on it woken with
-- the reason (they raise it), later calls raise it too.
local function break_conn(self, reason)
  if self.dead then return end
  if not is_error(reason, "ConnectionError") then
    reason = conn_error(self, "connection closed after " .. tostring(reason), reason.code)
  end
  self.dead = reason
  resources.untrack(self)
  self.stream:close()
  while wake_first(self.rq, self.rq, false) do end
  while wake_first(self.wq, self.wq, false) do end
end
M.break_conn = break_conn

-- a command failed in flight (cancelled, timed out, the server gone): its
-- reply is owed, so the connection breaks; -> the error for the caller
local function failed(self, err)
  local cancelled = is_error(err, "CancelledError")
  if not cancelled then err = stream_error(self, err) end
  break_conn(self, cancelled and owed_error(self) or err)
  return err
end

local function check_usable(self, level)
  if self.dead then error(self.dead, level + 1) end
  if self.subscribed then
    error(new_error("InvalidStateError", "this Redis connection is subscribed: it only receives "
      .. "messages (sub:receive()); use another connection for commands"), level + 1)
  end
end

-- Writing and reading ------------------------------------------------------------
-- pass the right to write to the next writer waiting
local function pass_write(self)
  local t = wake_first(self.wq, self.wq, true)
  if t then self.whanded = t else self.wbusy = false end
end

-- write data (n replies owed for it) for task me, and join the reply queue
local function send(self, me, data)
  if self.wbusy then
    push(self.wq, me)
    local ok, go = suspend(self.wq)
    if not ok or not go then
      if self.whanded == me then self.whanded = false pass_write(self)
      else fifo_mod.remove(self.wq, me) end
      if not ok then error(go, 0) end
      error(self.dead, 0)
    end
    self.whanded = false
  end
  self.wbusy = true
  push(self.rq, me)
  local ok, err = pcall(self.stream.write, self.stream, data)
  pass_write(self)
  if not ok then error(failed(self, err), 0) end
end
M.send = send

-- one reply (pushes of RESP3 skipped unless keep_push) -> value, is_error
local function read_reply(self, keep_push)
  local s, max = self.stream, self.max_bulk
  while true do
    local v, kind = s:_read_resp(max)
    if kind == nil then return v end
    if kind == "error" then return v, true end
    if kind == "eof" then
      error(conn_error(self, "the server closed the connection", "ECONNRESET"), 0)
    end
    if keep_push then return v end
    -- "push": out of band (client tracking ...): not a reply
  end
end
M.read_reply = read_reply

local function read_n(self, n)
  if not n then return read_reply(self) end
  local out = {}
  for i = 1, n do out[i] = read_reply(self) end
  return out
end

-- wait until task me (queued by send) is at the head of the reply queue
local function wait_turn(self, me)
  local rq = self.rq
  if rq[rq.first] == me then return end
  local ok, go = suspend(rq)
  if not ok then
    break_conn(self, owed_error(self))
    error(go, 0)
  end
  if not go then error(self.dead, 0) end
end
M.wait_turn = wait_turn

-- the head has its replies: the next task's turn
local function done_turn(self)
  local rq = self.rq
  rq[rq.first] = nil
  rq.first = rq.first + 1
  if rq.first > rq.last then rq.first, rq.last = 1, 0
  else wake(rq[rq.first], rq, true) end
end
M.done_turn = done_turn

-- the reply owed to task me: n replies (n == nil: one, returned as value,
-- is_error; else an array with n)
local function receive(self, me, n)
  wait_turn(self, me)
  local ok, v, is_err = pcall(read_n, self, n)
  if not ok then error(failed(self, v), 0) end
  done_turn(self)
  return v, is_err
end

-- Commands -----------------------------------------------------------------------
-- encode name, ... (arguments reported from `first`: the position of name
-- in the caller's arguments) for the caller `level` up
local function encode(first, level, ...)
  local data, bad, what = resp_command(...)
  if not data then
    arg_error(first + bad - 1, "string or number expected, got " .. what, level + 1)
  end
  return data
end
M.encode = encode

-- the round trip of one encoded command -> its reply; an error reply raises
local function roundtrip(self, data, level)
  local me = need_task("redis:call")
  check_usable(self, level + 1)
  send(self, me, data)
  local v, is_err = receive(self, me)
  if is_err then error(v, level + 1) end
  return v
end
M.roundtrip = roundtrip

-- client:call(name, ...) ⏸ -> the reply, as it comes
function Client:call(name, ...)
  if getmetatable(self) ~= Client then check_self(self, Client) end
  if type(name) ~= "string" then arg_error(2, "string expected, got " .. type_name(name)) end
  return roundtrip(self, encode(2, 1, name, ...), 1)
end

-- client:pipeline(fn) ⏸ -> the replies of the commands fn(p) recorded, as
-- an array with n (error replies stay in their slot as RedisError objects)
local Recorder = { __name = "luaio.redis.Pipeline" }
function Recorder:call(name, ...)
  if getmetatable(self) ~= Recorder then check_self(self, Recorder) end
  if type(name) ~= "string" then arg_error(2, "string expected, got " .. type_name(name)) end
  local n = self.n + 1
  self.n, self.cmds[n] = n, encode(2, 1, name, ...)
  return self
end
local recorder_methods = {}
Recorder.__index = function(_, k)
  local m = Recorder[k] or recorder_methods[k]
  if m or type(k) ~= "string" then return m end
  local cmd = k:upper()
  m = function(p, ...)
    if getmetatable(p) ~= Recorder then check_self(p, Recorder) end
    local n = p.n + 1
    p.n, p.cmds[n] = n, encode(1, 1, cmd, ...)
    p.reshape[n] = M.reshape[cmd]
    return p
  end
  recorder_methods[k] = m
  return m
end

function M.pipeline(self, fn, level)
  local me = need_task("redis:pipeline")
  if type(fn) ~= "function" then arg_error(2, "function expected, got " .. type_name(fn), level + 1) end
  local p = setmetatable({ n = 0, cmds = {}, reshape = {} }, Recorder)
  fn(p)
  if p.n == 0 then return {} end
  check_usable(self, level + 1)
  send(self, me, concat(p.cmds))
  local out = receive(self, me, p.n)
  for i, f in pairs(p.reshape) do out[i] = f(out[i]) end
  return out
end
function Client:pipeline(fn)
  if getmetatable(self) ~= Client then check_self(self, Client) end
  local out = M.pipeline(self, fn, 1)    -- (not a tail call: an argument error names 'pipeline')
  return out
end

-- every other method: the command of its name (client:set(k, v) is SET)
local command_methods = {}
Client.__index = function(_, k)
  local m = rawget(Client, k) or command_methods[k]
  if m or type(k) ~= "string" or k:sub(1, 1) == "_" then return m end
  local cmd, reshape = k:upper(), nil
  reshape = M.reshape[cmd]
  if reshape then
    m = function(self, ...)
      if getmetatable(self) ~= Client then check_self(self, Client) end
      return reshape(roundtrip(self, encode(1, 1, cmd, ...), 1))
    end
  else
    m = function(self, ...)
      if getmetatable(self) ~= Client then check_self(self, Client) end
      return roundtrip(self, encode(1, 1, cmd, ...), 1)
    end
  end
  command_methods[k] = m
  return m
end
M.command_methods = command_methods

-- client:close(): idempotent; calls waiting on it raise ConnectionError
function Client:close()
  if getmetatable(self) ~= Client then check_self(self, Client) end
  if not self.closed then
    self.closed = true
    break_conn(self, conn_error(self, "the client is closed", "EBADF"))
  end
end
Client.__close = Client.close

-- the connection is usable for a new command (a pool's check before lending it)
function Client:_healthy()
  if self.dead or self.subscribed or self.rq.last >= self.rq.first then return false end
  local s = self.stream
  return not s:closed() and s:buffered() == 0 and not s:_ended()
end

-- Connecting ---------------------------------------------------------------------
local function handshake(self, cfg)
  local me = need_task("aio.redis.connect")
  local function step(...)
    send(self, me, resp_command(...))
    local v, is_err = receive(self, me)
    if is_err then error(v, 0) end
    return v
  end
  if cfg.protocol == 3 then
    if cfg.password then step("HELLO", 3, "AUTH", cfg.user or "default", cfg.password)
    else step("HELLO", 3) end
  elseif cfg.password then
    if cfg.user then step("AUTH", cfg.user, cfg.password) else step("AUTH", cfg.password) end
  end
  if cfg.db ~= 0 then step("SELECT", cfg.db) end
end

local function open_stream(cfg)
  local copts = { timeout = cfg.timeout }
  if cfg.tls then copts.tls = cfg.tls end
  if cfg.path then return streams.open_connection(cfg.path, nil, copts) end
  return streams.open_connection(cfg.host, cfg.port, copts)
end

-- a new connection for settings cfg (config.lua) ⏸; errors name the server
function M.connect(cfg)
  local ok, s = pcall(open_stream, cfg)
  if not ok then
    if is_error(s) and not is_error(s, "CancelledError") and not s.message:find(cfg.where, 1, true) then
      error(new_error(s.name, fmt("Redis %s: %s", cfg.where, s.message), { code = s.code }), 0)
    end
    error(s, 0)
  end
  if cfg.timeout then s:set_timeout(cfg.timeout) end
  local self = setmetatable({ stream = s, where = cfg.where, max_bulk = cfg.max_bulk, protocol = cfg.protocol,
    rq = fifo_mod.new(), wq = fifo_mod.new(), wbusy = false, whanded = false, dead = false, subscribed = false,
    closed = false }, Client)   -- (every field set: a missing one would read as a command method)
  local hok, err = pcall(handshake, self, cfg)
  if not hok then
    self:close()
    error(err, 0)
  end
  -- debug mode's report names the connection (with the line that opened
  -- it), not the stream inside it
  resources.untrack(s)
  resources.track(self, "Redis connection to " .. cfg.where)
  return self
end

return M
