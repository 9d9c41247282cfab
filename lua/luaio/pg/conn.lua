-- A PostgreSQL connection (protocol 3.0): startup and authentication, the
-- extended query protocol for query (statements prepared once per
-- connection, by SQL text, in a bounded cache), the simple protocol for
-- execute, transactions, LISTEN/NOTIFY, and the cancellation of a query
-- whose task is cancelled.
--
-- States: a request is "owed" from the moment it is sent until its
-- ReadyForQuery is read. One request at a time: the lock serializes the
-- tasks that share a connection. A task cancelled (or timed out) while a
-- reply is owed leaves the connection to a recovery task that holds the
-- lock, sends a CancelRequest on a connection of its own and drains the
-- reply to ReadyForQuery; a connection whose reply cannot be drained, or
-- that failed (EOF, a protocol error, a server FATAL), is broken: closed,
-- and every later call raises ConnectionError. Notifications that arrive
-- during a request are queued; while the connection is idle and a task
-- waits on notifications(), an idle reader task reads the socket (a request
-- stops it first).
local core = require "luaio.core"
local sync = require "luaio.sync"
local combinators = require "luaio.combinators"
local streams = require "luaio.streams"
local resources = require "luaio.resources"
local check = require "luaio.check"
local wire = require "luaio.pg.wire"
local types = require "luaio.pg.types"
local auth = require "luaio.pg.auth"

local is_error, new_error, need_task, arg_error, type_name =
  core.is_error, core.error, core.need_task, core.arg_error, core.type_name
local pcall, error, select, type, tostring = pcall, error, select, type, tostring
local table_move, table_unpack, table_pack = table.move, table.unpack, table.pack
local getmetatable = debug.getmetatable   -- the real metatable: __metatable cannot pass for ours

local Conn = { __name = "aio.pg.Connection" }
Conn.__index = Conn

local M = { Conn = Conn }

-- ---- failure --------------------------------------------------------------

local function pg_error(fields)
  return new_error("PgError", fields.message or "server error", fields)
end
M.pg_error = pg_error

local function closed_error(self)
  local why = self._broken
  local msg = "PostgreSQL connection is closed"
  if type(why) == "table" and why.message then msg = msg .. " (" .. tostring(why.message) .. ")" end
  return new_error("ConnectionError", msg, { code = "ECONNRESET", cause = why ~= true and why or nil })
end

-- the connection cannot be used any more: close it, wake the listeners
local function broken(self, why)
  if self._broken then return end
  self._broken = why or true
  self._owed = false
  resources.untrack(self)
  pcall(self.stream.close, self.stream)
  self._note_ev:set()
end

-- ---- messages -------------------------------------------------------------

function Conn:_send(data)
  self.stream:write(data)
end

local function notice(self, body)
  if not core.get_debug() then return end
  local f = wire.error_fields(body)
  io.stderr:write(("luaio: PostgreSQL %s: %s\n"):format(f.severity or "NOTICE", tostring(f.message)))
end

-- a message that may come at any time: -> true when it was one
local function async_message(self, t, body)
  if t == "A" then
    local q = self._notes
    q.last = q.last + 1
    q[q.last] = wire.notification(body)
    self._note_ev:set()
  elseif t == "N" then notice(self, body)
  elseif t == "S" then
    local name, value = string.unpack("zz", body)
    self.parameters[name] = value
  else return false end
  return true
end

-- the next message that is not an async one; EOF is a ConnectionError
local function read(self, rows, names, kinds)
  while true do
    local t, body = self.stream:_read_pg(rows, names, kinds)
    if t == nil then
      local err = new_error("ConnectionError", "PostgreSQL server closed the connection", { code = "ECONNRESET" })
      broken(self, err)
      error(err, 0)
    end
    if not async_message(self, t, body) then return t, body end
  end
end

-- ReadyForQuery: the reply is complete
local function ready(self, body)
  self.status = body
  self._owed = false
end

-- ---- startup ----------------------------------------------------------------

function Conn:_auth_step(want)
  local t, body = read(self)
  if t == "E" then error(pg_error(wire.error_fields(body)), 0) end
  if t ~= "R" or string.unpack(">i4", body) ~= want then
    error(new_error("ProtocolError", "PostgreSQL: unexpected message during authentication"), 0)
  end
  return body:sub(5)
end

local function negotiate_tls(s, opts)
  s:write(wire.SSL_REQUEST)
  local answer = s:read_exactly(1)
  if answer == "S" then
    local verify = opts.sslmode == "verify-full" or opts.sslmode == "verify-ca"
    s:start_tls({ verify = verify, ca_file = opts.sslrootcert,
                  server_name = opts.sslmode == "verify-full" and opts.host or nil })
  elseif answer == "N" then
    if opts.sslmode ~= "prefer" then
      error(new_error("ConnectionError", "PostgreSQL server does not support SSL (sslmode=" .. opts.sslmode .. ")",
        { code = "ECONNREFUSED" }), 0)
    end
  else
    error(new_error("ProtocolError", "PostgreSQL: unexpected answer to SSLRequest"), 0)
  end
end

local function open_stream(opts)
  if opts.host:sub(1, 1) == "/" then
    return streams.open_connection(opts.host .. "/.s.PGSQL." .. opts.port, nil)
  end
  local s = streams.open_connection(opts.host, opts.port)
  if opts.sslmode ~= "disable" then
    local ok, err = pcall(negotiate_tls, s, opts)
    if not ok then s:close() error(err, 0) end
  end
  return s
end

local function startup(self, opts)
  local params = { user = opts.user, database = opts.database, client_encoding = "UTF8",
                   application_name = opts.application_name or "luaio" }
  self:_send(wire.startup(params))
  while true do
    local t, body = read(self)
    if t == "R" then auth.step(self, opts, body)
    elseif t == "K" then self.pid, self._key = string.unpack(">i4i4", body)
    elseif t == "Z" then ready(self, body) return
    elseif t == "E" then error(pg_error(wire.error_fields(body)), 0)
    elseif t ~= "v" then error(new_error("ProtocolError", "PostgreSQL: unexpected message '" .. t .. "' at startup"), 0) end
  end
end

-- opts: checked and complete (pg.lua); -> an open connection
function M.connect(opts)
  local s = open_stream(opts)
  local self = setmetatable({
    stream = s, parameters = {}, status = "I", _opts = opts, _lock = sync.Lock(),
    _cache = {}, _cache_order = { first = 1, last = 0 }, _cache_n = 0, _stmt_seq = 0, _closing = {},
    _notes = { first = 1, last = 0 }, _note_ev = sync.Event(), _note_waiters = 0, _tx_depth = 0,
  }, Conn)
  local ok, err = pcall(startup, self, opts)
  if not ok then
    broken(self, err)
    error(err, 0)
  end
  resources.untrack(self.stream)     -- named as the connection, not as its stream
  resources.track(self, ("PostgreSQL connection to %s:%s"):format(opts.host, opts.port))
  return self
end

-- ---- the idle reader ------------------------------------------------------------

local function idle_reader(self, done)
  while self._idle_done == done do
    local ok, t, body = pcall(read, self)
    if not ok then
      if not is_error(t, "CancelledError") then broken(self, t) end
      break
    end
    if t == "E" then broken(self, pg_error(wire.error_fields(body))) break end
  end
  done:set()
end

local function start_idle_reader(self)
  if self._idle_done or self._broken or self._lock:locked() then return end
  local done = sync.Event()
  self._idle_done = done
  self._idle_task = core.spawn(idle_reader, self, done)
end

-- stop the idle reader and wait until it is gone (it may be about to read)
local function stop_idle_reader(self)
  local done = self._idle_done
  if not done then return end
  self._idle_done = nil
  self._idle_task:cancel()
  self._idle_task = nil
  done:wait()
end

-- ---- requests ---------------------------------------------------------------------

local function send_cancel(self)
  local opts = self._opts
  local s
  if opts.host:sub(1, 1) == "/" then s = streams.open_connection(opts.host .. "/.s.PGSQL." .. opts.port, nil)
  else s = streams.open_connection(opts.host, opts.port) end
  s:write(wire.cancel_request(self.pid, self._key))
  pcall(s.read_all, s)                     -- the server closes it when done
  s:close()
end

-- read to ReadyForQuery, dropping what comes
local function drain(self)
  while self._owed do
    local t, body = read(self)
    if t == "Z" then ready(self, body) end
  end
end

-- the task was cancelled with a reply owed: cancel the query on the server
-- and drain, in a task of its own that holds the lock until it is done
local function recover(self)
  core.spawn(function()
    local ok = pcall(combinators.timeout, 30, function()
      pcall(send_cancel, self)
      drain(self)
    end)
    if not ok then broken(self, new_error("ConnectionError", "the reply of a cancelled query could not be drained")) end
    self._lock:release()
    if self._note_waiters > 0 then start_idle_reader(self) end
  end)
end

local function run_locked(self, fn, a, b, c)
  if self._broken then error(closed_error(self), 0) end
  self._lock:acquire()
  if self._broken then
    self._lock:release()
    error(closed_error(self), 0)
  end
  local ok, err = pcall(stop_idle_reader, self)
  if ok then ok, err = pcall(fn, self, a, b, c) end
  if ok then
    self._lock:release()
    if self._note_waiters > 0 then start_idle_reader(self) end
    return err
  end
  if self._owed and not self._broken and (is_error(err, "CancelledError") or is_error(err, "TimeoutError")) then
    recover(self)
  else
    if self._owed or not (type(err) == "table" and err.name) then broken(self, err) end
    self._lock:release()
    if self._note_waiters > 0 then start_idle_reader(self) end
  end
  error(err, 0)
end

-- run fn(self, a, b, c) as the connection's one request, within the timeout
function Conn:_run(fn, a, b, c)
  local t = self._opts.timeout
  if t then return combinators.timeout(t, run_locked, self, fn, a, b, c) end
  return run_locked(self, fn, a, b, c)
end

local function send_request(self, data)
  self._owed = true
  self:_send(data)
end

-- the statements evicted from the cache, closed with the next request
local function pending_closes(self)
  local c = self._closing
  if #c == 0 then return "" end
  local parts = {}
  for i = 1, #c do parts[i] = wire.close("S", c[i]) c[i] = nil end
  return table.concat(parts)
end

-- room for one more statement: the oldest goes (closed with this request)
local function cache_evict(self)
  local order, max = self._cache_order, self._opts.statement_cache_size
  while self._cache_n > 0 and self._cache_n >= max do
    local old = order[order.first]
    order[order.first] = nil
    order.first = order.first + 1
    self._closing[#self._closing + 1] = self._cache[old].name
    self._cache[old] = nil
    self._cache_n = self._cache_n - 1
  end
end

local function cache_put(self, sql, st)
  if self._opts.statement_cache_size <= 0 then
    self._closing[#self._closing + 1] = st.name     -- used once, closed with the next request
    return
  end
  local order = self._cache_order
  self._cache[sql] = st
  order.last = order.last + 1
  order[order.last] = sql
  self._cache_n = self._cache_n + 1
end

-- Parse + Describe: -> the statement {name, oids, names, kinds, json}
local function prepare(self, sql)
  self._stmt_seq = self._stmt_seq + 1
  local st = { name = "luaio_" .. self._stmt_seq, oids = {} }
  cache_evict(self)
  send_request(self, pending_closes(self) .. wire.parse(st.name, sql) .. wire.describe("S", st.name) .. wire.SYNC)
  local err
  while true do
    local t, body = read(self)
    if t == "t" then st.oids = wire.parameter_description(body)
    elseif t == "T" then
      local oids
      st.names, oids = wire.row_description(body)
      st.kinds, st.json, st.formats = types.shape(st.names, oids)
    elseif t == "E" then err = err or wire.error_fields(body)
    elseif t == "Z" then ready(self, body) break end
  end
  if err then error(pg_error(err), 0) end
  cache_put(self, sql, st)
  return st
end

local function new_rows(names)
  local columns = {}
  if names then table_move(names, 1, #names, 1, columns) end
  return { columns = columns }
end

local function extended(self, sql, args, n)
  local st = self._cache[sql] or prepare(self, sql)
  local values, binary = types.encode(args, n, st.oids)
  send_request(self, wire.bind(st.name, n, values, binary, st.formats) .. wire.EXECUTE .. wire.SYNC)
  local rows, names, kinds = new_rows(st.names), st.names, st.kinds
  local err
  while true do
    local t, body = read(self, names and rows, names, kinds)
    if t == "C" then rows.affected = wire.affected(body)
    elseif t == "Z" then ready(self, body) break
    elseif t == "E" then err = err or wire.error_fields(body) end
  end
  if err then error(pg_error(err), 0) end
  if st.json then types.decode_json(rows, st.json) end
  return rows
end

local function check_conn(self, fname)
  if getmetatable(self) ~= Conn then arg_error(1, "aio.pg.Connection expected, got " .. type_name(self), 2) end
  need_task(fname)
end

-- conn:query(sql, ...) ⏸ -> rows
function Conn:query(sql, ...)
  check_conn(self, "conn:query")
  check.check_type(sql, 2, "string")
  local n = select("#", ...)
  local args = { ... }
  local bad = types.unbindable(args, n)
  if bad then arg_error(2 + bad, "string, number, boolean, table or nil expected, got " .. type_name(args[bad])) end
  return self:_run(extended, sql, args, n)
end

local function simple(self, sql)
  send_request(self, wire.query(sql))
  local result, rows, names, kinds, json_cols, err = new_rows(), nil, nil, nil, nil, nil
  while true do
    local t, body = read(self, rows, names, kinds)
    if t == "T" then
      local oids
      names, oids = wire.row_description(body)
      kinds, json_cols = types.shape(names, oids, true)
      rows = new_rows(names)
    elseif t == "C" then
      result = rows or new_rows()
      result.affected = wire.affected(body)
      if rows and json_cols then types.decode_json(rows, json_cols) end
      rows, names, kinds = nil, nil, nil
    elseif t == "Z" then ready(self, body) break
    elseif t == "E" then err = err or wire.error_fields(body)
    elseif t == "G" then self:_send(wire.msg("f", "COPY FROM STDIN is not supported\0"))
    end
  end
  if err then error(pg_error(err), 0) end
  return result
end

-- conn:execute(sql) ⏸ -> the rows of the script's last statement
function Conn:execute(sql)
  check_conn(self, "conn:execute")
  check.check_type(sql, 2, "string")
  return self:_run(simple, sql)
end

-- conn:transaction(fn) ⏸ -> fn(conn)'s results after COMMIT; ROLLBACK (to a
-- savepoint when nested) when it raises, then the error again
function Conn:transaction(fn)
  check_conn(self, "conn:transaction")
  check.check_callable(fn, 2)
  local depth = self._tx_depth
  local sp = "luaio_savepoint_" .. depth
  self:execute(depth == 0 and "BEGIN" or "SAVEPOINT " .. sp)
  self._tx_depth = depth + 1
  local r = table_pack(pcall(fn, self))
  self._tx_depth = depth
  if r[1] then
    self:execute(depth == 0 and "COMMIT" or "RELEASE SAVEPOINT " .. sp)
    return table_unpack(r, 2, r.n)
  end
  if not self._broken then
    pcall(self.execute, self, depth == 0 and "ROLLBACK" or ("ROLLBACK TO SAVEPOINT %s; RELEASE SAVEPOINT %s"):format(sp, sp))
  end
  error(r[2], 0)
end

-- conn:listen(channel) ⏸, conn:unlisten(channel) ⏸
function Conn:listen(channel)
  check_conn(self, "conn:listen")
  check.check_type(channel, 2, "string")
  if channel == "" or channel:find("\0", 1, true) then arg_error(2, "a channel name expected, got an empty string or NUL") end
  self:execute("LISTEN " .. types.quote_ident(channel))
end

function Conn:unlisten(channel)
  check_conn(self, "conn:unlisten")
  check.check_type(channel, 2, "string")
  self:execute("UNLISTEN " .. types.quote_ident(channel))
end

-- the next notification ⏸
function Conn:_next_notification()
  need_task("conn:notifications")
  local q = self._notes
  while q.first > q.last do
    if self._broken then error(closed_error(self), 0) end
    self._note_ev:clear()
    start_idle_reader(self)
    self._note_waiters = self._note_waiters + 1
    local ok, err = pcall(self._note_ev.wait, self._note_ev)
    self._note_waiters = self._note_waiters - 1
    if not ok then error(err, 0) end
  end
  local note = q[q.first]
  q[q.first] = nil
  q.first = q.first + 1
  return note
end

-- conn:notifications() -> iterator of {channel=, payload=, pid=} (each step ⏸)
function Conn:notifications()
  if getmetatable(self) ~= Conn then arg_error(1, "aio.pg.Connection expected, got " .. type_name(self)) end
  return function() return self:_next_notification() end
end

-- ---- health, close -------------------------------------------------------------------

-- for a pool: handle what came while idle (a FATAL before the server closed
-- it, notifications) without waiting; -> usable
function Conn:_healthy()
  if self._broken or self._owed then return false end
  if self._idle_done or self._lock:locked() then return true end
  local s = self.stream
  while not self._broken do
    if s:buffered() == 0 then
      if s:_ended() then broken(self, new_error("ConnectionError", "PostgreSQL server closed the connection")) end
      break
    end
    local ok, t, body = pcall(read, self)
    if not ok then broken(self, t)
    elseif t == "E" then broken(self, pg_error(wire.error_fields(body))) end
  end
  return not self._broken
end

function Conn:closed()
  if getmetatable(self) ~= Conn then arg_error(1, "aio.pg.Connection expected, got " .. type_name(self)) end
  return self._broken ~= nil
end

function Conn:close()
  if getmetatable(self) ~= Conn then arg_error(1, "aio.pg.Connection expected, got " .. type_name(self)) end
  if self._pool then return self:release() end
  if self._broken then return end
  if self._idle_task then self._idle_task:cancel() self._idle_done, self._idle_task = nil, nil end
  if not self._owed and not self._lock:locked() then pcall(self.stream.write, self.stream, wire.TERMINATE) end
  broken(self, new_error("ConnectionError", "closed by the program"))
end

function Conn:release()
  if getmetatable(self) ~= Conn then arg_error(1, "aio.pg.Connection expected, got " .. type_name(self)) end
  local pool = self._pool
  if pool then
    self._pool = nil
    pool:_give_back(self)
  end
end

Conn.__close = Conn.close

return M
