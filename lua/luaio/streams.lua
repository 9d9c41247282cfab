-- Streams: open_connection, start_server, udp_bind, getaddrinfo (API.md §5).
-- The byte work is native (stream.c); connection policy and servers are here.
return function(aio, core)
  local spawn, is_error, new_error, need_task = core.spawn, core.is_error, core.error, core.need_task
  local Stream = core.stream_methods
  local type, error, tostring, pcall = type, error, tostring, pcall

  local function is_ip(host)
    return host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil or host:find(":", 1, true) ~= nil
  end

  local function check_port(port, fname, allow_zero)
    local p = math.tointeger(tonumber(port))
    if not p or p < (allow_zero and 0 or 1) or p > 65535 then
      error(("%s: port must be an integer within %d..65535, got %s"):format(fname, allow_zero and 0 or 1, tostring(port)), 3)
    end
    return p
  end

  aio.getaddrinfo = function(host, port)
    if type(host) ~= "string" then error("aio.getaddrinfo: host must be a string", 2) end
    return core.getaddrinfo(host, port ~= nil and tostring(port) or nil)
  end

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

  local function tls_options(tls, fname)
    if tls == true then return {} end
    if type(tls) ~= "table" then error(("%s: opts.tls must be true or a table, got %s"):format(fname, type(tls)), 3) end
    for k, v in pairs(tls) do
      local want = TLS_OPTIONS[k]
      if not want then error(("%s: unknown TLS option %s"):format(fname, tostring(k)), 3) end
      if type(v) ~= want and not (k == "alpn" and type(v) == "string") then
        error(("%s: tls.%s must be a %s, got %s"):format(fname, k, want, type(v)), 3)
      end
    end
    local t = tls.handshake_timeout
    if t ~= nil and not (t > 0) then error(fname .. ": tls.handshake_timeout must be a positive number of seconds", 3) end
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
    local ok, err = pcall(aio.timeout, timeout or 60, s._start_tls, s, ctx, server_name)
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
    tls = tls_options(tls == nil and true or tls, "stream:start_tls")
    local server = tls.server or false
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
    error(last or new_error("ConnectionError", "no address for " .. host), 0)
  end

  function aio.open_connection(host, port, opts)
    if type(host) ~= "string" then error("aio.open_connection: host must be a string, got " .. type(host), 2) end
    if opts ~= nil and type(opts) ~= "table" then error("aio.open_connection: opts must be a table", 2) end
    if port ~= nil then port = check_port(port, "aio.open_connection") end   -- here, to point at the caller
    opts = opts or {}
    if opts.tls then
      local tls = tls_options(opts.tls, "aio.open_connection")
      opts = setmetatable({ tls = tls, tls_context = context_for(tls, false) }, { __index = opts })
    end
    local s
    if opts and opts.timeout then s = aio.timeout(opts.timeout, connect, host, port, opts)
    else s = connect(host, port, opts) end
    return apply_opts(s, opts)
  end

  -- the Lua side of Stream
  function Stream:lines()
    return function() return self:readline() end
  end

  -- Server ------------------------------------------------------------------
  local Server = {}
  Server.__index = Server
  Server.__name = "luaio.Server"

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

  local function accept_loop(server, handler, max)
    while true do
      while max and server._active >= max do server._slot:wait() server._slot:clear() end
      local ok, s = pcall(server._listener.accept, server._listener)
      if not ok then
        if server._closed then return end
        if is_error(s, "CancelledError") then error(s, 0) end
        io.stderr:write("luaio: accept failed: ", tostring(s), "\n")
        aio.sleep(0.05)          -- e.g. EMFILE: back off, keep serving
      else
        server._active = server._active + 1
        local t = spawn(serve_one, server, handler, s)
        server._conns[t] = true
        t:add_done_callback(function(done)
          server._conns[done] = nil
          server._active = server._active - 1
          server._slot:set()
          if server._closed and server._active == 0 then server._idle:set() end
        end)
      end
    end
  end

  function aio.start_server(handler, host, port, opts)
    need_task("aio.start_server")
    if type(handler) ~= "function" then error("aio.start_server: handler must be a function", 2) end
    if opts ~= nil and type(opts) ~= "table" then error("aio.start_server: opts must be a table", 2) end
    opts = opts or {}
    local tls_ctx, tls_timeout
    if opts.tls then
      local tls = tls_options(opts.tls, "aio.start_server")
      tls_ctx, tls_timeout = context_for(tls, true), tls.handshake_timeout
    end
    local listener, bound_host, bound_port
    if port == nil and type(host) == "string" and not is_ip(host) and host:find("/", 1, true) then
      listener = core.pipe_listen(host, opts.backlog)
      bound_host = host
    else
      port = check_port(port or 0, "aio.start_server", true)
      host = host or "0.0.0.0"
      if type(host) ~= "string" then error("aio.start_server: host must be a string", 2) end
      local ip = host
      if not is_ip(host) then ip = core.getaddrinfo(host, tostring(port))[1].addr end
      listener = core.tcp_listen(ip, port, opts.backlog, opts.reuseport)
      bound_host, bound_port = listener:address()
    end
    local server = setmetatable({ host = bound_host, port = bound_port, _listener = listener,
      _conns = {}, _active = 0, _closed = false, _slot = aio.Event(), _idle = aio.Event(),
      _closed_ev = aio.Event(), _tls = tls_ctx, _tls_timeout = tls_timeout, handshake_failures = 0 }, Server)
    local max = opts.max_connections
    if max ~= nil and (math.type(max) ~= "integer" or max < 1) then
      listener:close()
      error("aio.start_server: max_connections must be a positive integer", 2)
    end
    aio._track(server, ("Server %s%s"):format(bound_host, bound_port and (":" .. bound_port) or ""))
    server._accepter = spawn(accept_loop, server, handler, max)
    server._accepter.name = "server-accept"
    return server
  end

  function Server:close()
    if self._closed then return end
    self._closed = true
    aio._untrack(self)
    self._listener:close()
    self._accepter:cancel()
    if self._active == 0 then self._idle:set() end
    self._closed_ev:set()
  end

  -- waits until closed and every connection handler has finished
  function Server:wait_closed()
    self._closed_ev:wait()
    self._idle:wait()
  end

  -- serves until closed, or until the calling task is cancelled (then closes)
  function Server:serve_forever()
    local ok, err = pcall(self._closed_ev.wait, self._closed_ev)
    if not ok then self:close() error(err, 0) end
  end

  function Server:close_connections()
    for t in pairs(self._conns) do t:cancel() end
  end

  Server.__close = function(s) s:close() end

  -- udp.c's sendto asks here for an address of its socket's family
  core.hooks.resolve_udp = function(host, family)
    for _, a in ipairs(core.getaddrinfo(host)) do
      if a.family == family then return a.addr end
    end
    error(new_error("OSError", ("sendto: %s has no %s address"):format(host, family), { code = "EAI_ADDRFAMILY" }), 0)
  end

  aio.udp_bind = function(host, port)
    need_task("aio.udp_bind")
    if type(host) ~= "string" then error("aio.udp_bind: host must be a string", 2) end
    local ip = host
    if not is_ip(host) then ip = core.getaddrinfo(host)[1].addr end
    return core.udp_bind(ip, port and check_port(port, "aio.udp_bind", true) or 0)
  end
end
