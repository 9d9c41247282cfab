-- Streams: open_connection, start_server, udp_bind, getaddrinfo (API.md §5).
-- The byte work is native (stream.c); connection policy and servers are here.
local core = require "luaio.core"
local check_callable = require("luaio.check").check_callable
local with_timeout = require("luaio.combinators").timeout   -- aio.timeout
local new_event = require("luaio.sync").Event
local resources = require "luaio.resources"
local worker = require "luaio.worker"

local spawn, sleep, is_error, new_error, need_task = core.spawn, core.sleep, core.is_error, core.error, core.need_task
local arg_error, type_name = core.arg_error, core.type_name
local Stream, stream_mt = core.stream_methods, core.stream_mt
local type, error, tostring, pcall = type, error, tostring, pcall

local M = {}   -- the public names: aio.open_connection, aio.start_server, ...

local function is_ip(host)
  return host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil or host:find(":", 1, true) ~= nil
end

-- Argument checks of the public functions below, reported (Lua's shape) as
-- argument n of the function `level` levels up from the one calling them
-- (1: that function itself).
local function check_host(host, n, level)
  if type(host) ~= "string" then arg_error(n, "string expected, got " .. type_name(host), level + 1) end
  if host:find("\0", 1, true) then arg_error(n, "string contains a NUL byte", level + 1) end
  return host
end

local function check_port(port, n, allow_zero, level)
  local p = math.tointeger(tonumber(port))
  if not p or p < (allow_zero and 0 or 1) or p > 65535 then
    arg_error(n, ("port must be an integer within %d..65535, got %s"):format(allow_zero and 0 or 1,
      type(port) == "string" and ("%q"):format(port) or tostring(port)), level + 1)
  end
  return p
end

-- opts (argument n): nil or a table whose listed fields have these types
local function check_opts(opts, n, fields, level)
  if opts == nil then return {} end
  if type(opts) ~= "table" then arg_error(n, "table expected, got " .. type_name(opts), level + 1) end
  for k, want in pairs(fields) do
    local v = opts[k]
    if v ~= nil and type(v) ~= want then
      arg_error(n, ("opts.%s: %s expected, got %s"):format(k, want, type_name(v)), level + 1)
    end
  end
  return opts
end

-- self of a Stream method written here: a Stream userdata (a table that
-- borrows the metatable is not one)
local function check_stream(self)
  if type(self) ~= "userdata" or getmetatable(self) ~= stream_mt then
    local got = type_name(self)
    arg_error(1, "luaio.Stream expected, got " .. (got == "luaio.Stream" and type(self) or got), 3)
  end
  return self
end

-- (C: checks its arguments itself, under this public name)
M.getaddrinfo = core.getaddrinfo

local function apply_opts(s, opts)
  if opts then
    if opts.limit or opts.high_water then s:set_limits(opts.limit, opts.high_water) end
    if opts.stream_timeout then s:set_timeout(opts.stream_timeout) end
  end
  return s
end

-- TLS ----------------------------------------------------------------------
-- The byte work is native (tls.c through stream.c); here are the options,
-- the shared contexts and the handshake deadline.
local TLS_OPTIONS = { verify = "boolean", ca_file = "string", cert_file = "string", key_file = "string",
  server_name = "string", alpn = "table", handshake_timeout = "number", server = "boolean" }
local contexts = {}    -- settings -> TLSContext: the CA store is loaded once, not per connection

-- the TLS table, argument n of the function that called tls_options
local function tls_options(tls, n, what, server)
  if tls == true then tls = {} end
  local function bad(msg) arg_error(n, msg, 3) end
  if type(tls) ~= "table" then bad(("%s must be true or a table, got %s"):format(what, type_name(tls))) end
  for k, v in pairs(tls) do
    local want = TLS_OPTIONS[k]
    if not want then bad(("unknown TLS option %s"):format(tostring(k))) end
    if type(v) ~= want and not (k == "alpn" and type(v) == "string") then
      bad(("%s.%s must be a %s, got %s"):format(what, k, want, type_name(v)))
    end
    if type(v) == "string" and v:find("\0", 1, true) then bad(("%s.%s contains a NUL byte"):format(what, k)) end
  end
  if tls.server_name == "" then bad(what .. ".server_name must not be empty") end
  if server then
    if not tls.cert_file or not tls.key_file then bad("a TLS server needs tls.cert_file and tls.key_file") end
  elseif tls.key_file and not tls.cert_file then
    bad("tls.key_file given without tls.cert_file")
  end
  local t = tls.handshake_timeout
  if t ~= nil and not (t > 0) then bad(what .. ".handshake_timeout must be a positive number of seconds") end
  return tls
end

local function context_for(tls, server)
  local alpn = tls.alpn
  if type(alpn) == "table" then alpn = table.concat(alpn, ",") end
  local key = table.concat({ server and "server" or "client", tostring(tls.verify), tls.ca_file or "",
    tls.cert_file or "", tls.key_file or "", alpn or "" }, "\0")
  local ctx = contexts[key]
  if not ctx then
    ctx = core.tls_context({ server = server, verify = tls.verify, ca_file = tls.ca_file,
      cert_file = tls.cert_file, key_file = tls.key_file, alpn = tls.alpn })
    contexts[key] = ctx
  end
  return ctx
end

-- the handshake, within its deadline; a failed one leaves the stream closed
local function handshake(s, ctx, server_name, timeout)
  local ok, err = pcall(with_timeout, timeout or 60, s._start_tls, s, ctx, server_name)
  if not ok then
    s:close()
    if is_error(err, "TimeoutError") then
      err = new_error("TimeoutError", ("TLS handshake timed out after %g s"):format(timeout or 60))
    end
    error(err, 0)
  end
  return s
end

-- s:start_tls(tls) ⏸ -> s: upgrade a connected stream (STARTTLS); tls.server
-- makes this end the server
function Stream:start_tls(tls)
  check_stream(self)
  need_task("stream:start_tls")
  tls = tls_options(tls == nil and true or tls, 2, "tls", type(tls) == "table" and tls.server)
  local server = tls.server or false
  -- misuse leaves the stream as it is (a failed handshake closes it)
  local why = self:_start_tls_blocker()
  if why then error(why, 2) end
  return handshake(self, context_for(tls, server), not server and tls.server_name or nil, tls.handshake_timeout)
end

local function connect(host, port, opts)
  if port == nil then                                        -- a Unix socket path
    local s = core.pipe_connect(host)
    if opts.tls then handshake(s, opts.tls_context, opts.tls.server_name, opts.tls.handshake_timeout) end
    return s
  end
  local addrs                                                -- (port checked by open_connection)
  if is_ip(host) then addrs = { { addr = host } }
  else
    -- API.md: open_connection's failures are ConnectionErrors, a name that
    -- does not resolve included (the code stays EAI_NONAME, EAI_AGAIN, ...)
    local ok, r = pcall(core.getaddrinfo, host, tostring(port))
    if not ok then
      if not is_error(r, "OSError") then error(r, 0) end
      error(new_error("ConnectionError", ("cannot resolve %s: %s"):format(host, (r.message:gsub("^getaddrinfo: ", ""))),
        { code = r.code }), 0)
    end
    addrs = r
  end
  local last
  for _, a in ipairs(addrs) do
    local ok, s = pcall(core.tcp_connect, a.addr, port)
    if ok then
      if opts.tls then
        local tls = opts.tls
        handshake(s, opts.tls_context, tls.server_name or host, tls.handshake_timeout)
      end
      return s
    end
    if is_error(s, "CancelledError") then error(s, 0) end
    last = s
  end
  if last and is_error(last, "ConnectionError") then
    -- name what failed: which host and port (API.md §6b)
    local where = (host:find(":", 1, true) and ("[" .. host .. "]") or host) .. ":" .. port
    last.message = where .. ": " .. tostring(last.message)
    last.host, last.port = host, port
  end
  error(last or new_error("ConnectionError", "no address for " .. host), 0)
end

local CONNECT_OPTIONS = { timeout = "number", limit = "number", high_water = "number", stream_timeout = "number" }

function M.open_connection(host, port, opts)
  need_task("aio.open_connection")
  check_host(host, 1, 1)
  if port ~= nil then port = check_port(port, 2, false, 1) end
  opts = check_opts(opts, 3, CONNECT_OPTIONS, 1)
  if opts.timeout ~= nil and not (opts.timeout >= 0) then arg_error(3, "opts.timeout: non-negative number expected") end
  if opts.tls then
    local tls = tls_options(opts.tls, 3, "opts.tls")
    opts = setmetatable({ tls = tls, tls_context = context_for(tls, false) }, { __index = opts })
  end
  local s
  if opts.timeout then s = with_timeout(opts.timeout, connect, host, port, opts)
  else s = connect(host, port, opts) end
  return apply_opts(s, opts)
end

-- the Lua side of Stream
function Stream:lines()
  check_stream(self)
  if self:closed() then error(new_error("OSError", "the stream is closed", { code = "EBADF" }), 2) end
  return function() return self:readline() end
end

-- Server ------------------------------------------------------------------
local Server = {}
Server.__index = Server
Server.__name = "luaio.Server"
local servers = setmetatable({}, { __mode = "k" })   -- the servers start_server made

local function serve_one(server, handler, stream)
  if server._tls then
    -- a client that fails its handshake (a scanner, a wrong CA) ends here, quietly
    local ok = pcall(handshake, stream, server._tls, nil, server._tls_timeout)
    if not ok then
      server.handshake_failures = server.handshake_failures + 1
      return
    end
  end
  local ok, err = xpcall(handler, debug.traceback, stream)
  stream:close()
  if not ok and not is_error(err, "CancelledError") then
    io.stderr:write("luaio: connection handler failed: ", tostring(err), "\n")
  end
end

local function start_connection(server, s)
  server._active = server._active + 1
  local t = spawn(serve_one, server, server._handler, s)
  server._conns[t] = true
  t:add_done_callback(function(done)
    server._conns[done] = nil
    server._active = server._active - 1
    server._slot:set()
    if server._closed and server._active == 0 then server._idle:set() end
  end)
end

local function accept_loop(server, max)
  while true do
    while max and server._active >= max do server._slot:wait() server._slot:clear() end
    local ok, s = pcall(server._listener.accept, server._listener)
    if not ok then
      if server._closed then return end
      if is_error(s, "CancelledError") then error(s, 0) end
      io.stderr:write("luaio: accept failed: ", tostring(s), "\n")
      sleep(0.05)          -- e.g. EMFILE: back off, keep serving
    else
      start_connection(server, s)
    end
  end
end

local SERVER_OPTIONS = { backlog = "number", reuseport = "boolean", max_connections = "number" }

function M.start_server(handler, host, port, opts)
  need_task("aio.start_server")
  check_callable(handler, 1)
  if host ~= nil then check_host(host, 2, 1) end
  opts = check_opts(opts, 4, SERVER_OPTIONS, 1)
  local max = opts.max_connections
  if max ~= nil and (math.type(max) ~= "integer" or max < 1) then
    arg_error(4, "opts.max_connections: positive integer expected, got " .. tostring(max))
  end
  if opts.backlog ~= nil and math.type(opts.backlog) ~= "integer" then
    arg_error(4, "opts.backlog: integer expected, got " .. tostring(opts.backlog))
  end
  local pipe = port == nil and host ~= nil and not is_ip(host) and host:find("/", 1, true)
  if not pipe then port = check_port(port or 0, 3, true, 1) end
  local tls_ctx, tls_timeout
  if opts.tls then
    local tls = tls_options(opts.tls, 4, "opts.tls", true)
    tls_ctx, tls_timeout = context_for(tls, true), tls.handshake_timeout
  end
  local listener, bound_host, bound_port
  if pipe then
    listener = core.pipe_listen(host, opts.backlog)
    bound_host = host
  else
    host = host or "0.0.0.0"
    local ip = host
    if not is_ip(host) then ip = core.getaddrinfo(host, tostring(port))[1].addr end
    listener = core.tcp_listen(ip, port, opts.backlog, opts.reuseport)
    bound_host, bound_port = listener:address()
  end
  -- _on_close: what a protocol on top (HTTP, from opts._on_close) does when
  -- the server closes
  local server = setmetatable({ host = bound_host, port = bound_port, _listener = listener,
    _handler = handler, _conns = {}, _active = 0, _closed = false, _slot = new_event(), _idle = new_event(),
    _closed_ev = new_event(), _on_close = { type(opts._on_close) == "function" and opts._on_close or nil }, _tls = tls_ctx, _tls_timeout = tls_timeout, handshake_failures = 0 }, Server)
  servers[server] = true
  worker.server_opened(server)
  core.untrack(listener)                 -- the Server below stands for it
  resources.track(server, ("server %s%s"):format(bound_host, bound_port and (":" .. bound_port) or ""))
  server._accepter = spawn(accept_loop, server, max)
  server._accepter.name = "server-accept"
  return server
end

-- self of a Server method: one made by start_server (not a table that
-- borrows the metatable)
local function check_server(self)
  if not servers[self] then
    local got = type_name(self)
    arg_error(1, "luaio.Server expected, got " .. (got == "luaio.Server" and type(self) or got), 3)
  end
  return self
end

-- Graceful: no new connection, and the handlers running go on (wait_closed
-- waits for them; close_connections cancels them). Connections that already
-- wait in the socket's backlog are served too: closing would reset them.
function Server:close()
  check_server(self)
  if self._closed then return end
  self._closed = true
  resources.untrack(self)
  worker.server_closed(self)
  local listener = self._listener
  while true do
    local ok, s = pcall(listener.accept_nowait, listener)
    if not ok or not s then break end
    start_connection(self, s)
  end
  listener:close()
  self._accepter:cancel()
  for _, fn in ipairs(self._on_close) do fn(self) end
  if self._active == 0 then self._idle:set() end
  self._closed_ev:set()
end

-- waits until closed and every connection handler has finished
function Server:wait_closed()
  check_server(self)
  self._closed_ev:wait()
  self._idle:wait()
end

-- serves until closed, or until the calling task is cancelled (then closes)
function Server:serve_forever()
  check_server(self)
  local ok, err = pcall(self._closed_ev.wait, self._closed_ev)
  if not ok then self:close() error(err, 0) end
end

function Server:close_connections()
  check_server(self)
  for t in pairs(self._conns) do t:cancel() end
end

Server.__close = function(s) Server.close(s) end

function M.udp_bind(host, port)
  need_task("aio.udp_bind")
  check_host(host, 1, 1)
  port = port ~= nil and check_port(port, 2, true, 1) or 0
  local ip = host
  if not is_ip(host) then ip = core.getaddrinfo(host)[1].addr end
  return core.udp_bind(ip, port)
end

return M
