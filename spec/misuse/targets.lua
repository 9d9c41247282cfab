-- What the misuse sweep calls: the public functions of `aio` with one set of
-- good arguments each, and every object type with a factory that makes a real
-- object (TCP on 127.0.0.1, child processes, files in the temp dir, ...).
-- Functions and methods are enumerated at run time (so new ones are swept
-- too); the tables here only supply good arguments and option field names.
local M = {}

-- ---------------------------------------------------------------- functions
-- good(E) -> array of good arguments; kinds[i] = "host" marks a host-name slot
-- (the hostile "x" becomes "localhost" there: no resolver traffic leaves the
-- machine); fields[i] = option names to try one hostile value at a time;
-- listwrap[i] = also pass { hostile } in that slot.
function M.functions(E)
  local aio = E.aio
  local url = "http://127.0.0.1:" .. E.http_port .. "/"
  local nop = function() end
  local F = {
    ["aio.run"] = { good = function() return { nop } end },
    ["aio.spawn"] = { good = function() return { nop } end },
    ["aio.sleep"] = { good = function() return { 0 } end },
    ["aio.set_debug"] = { good = function() return { false } end, fields = { [2] = { "slow_callback" } } },
    ["aio.is_error"] = { good = function() return { aio.new_error("X", "m"), "X" } end },
    ["aio.new_error"] = { good = function() return { "X", "m", {} } end },
    ["aio.raise"] = { good = function() return { "X", "m" } end },
    ["aio.gather"] = { good = function() return { { nop }, {} } end, listwrap = { [1] = true },
                       fields = { [2] = { "return_exceptions" } } },
    ["aio.wait_for"] = { good = function() return { nop, 1 } end },
    ["aio.timeout"] = { good = function() return { 1, nop } end },
    ["aio.wait"] = { good = function() return { { nop }, {} } end, listwrap = { [1] = true },
                     fields = { [2] = { "timeout", "return_when" } } },
    ["aio.as_completed"] = { good = function() return { { aio.spawn(nop) }, 1 } end, listwrap = { [1] = true } },
    ["aio.shield"] = { good = function() return { aio.spawn(nop) } end },
    ["aio.task_group"] = { good = function() return { nop } end },
    ["aio.generator"] = { good = function() return { function(y) y(1) end } end },
    ["aio.Semaphore"] = { good = function() return { 1 } end },
    ["aio.BoundedSemaphore"] = { good = function() return { 1 } end },
    ["aio.Condition"] = { good = function() return { aio.Lock() } end },
    ["aio.Queue"] = { good = function() return { 1 } end },
    ["aio.PriorityQueue"] = { good = function() return { 1 } end },
    ["aio.LifoQueue"] = { good = function() return { 1 } end },
    ["aio.getaddrinfo"] = { nul = { true }, good = function() return { "127.0.0.1", 80 } end, kinds = { "host" } },
    ["aio.open_connection"] = { nul = { true }, good = function() return { "127.0.0.1", E.echo.port, {} } end,
                                kinds = { "host" }, fields = { [3] = { "timeout", "tls" } } },
    ["aio.start_server"] = { nul = { nil, true }, good = function() return { nop, "127.0.0.1", 0, {} } end,
                             kinds = { nil, "host" },
                             fields = { [4] = { "backlog", "reuseport", "max_connections", "tls" } } },
    ["aio.udp_bind"] = { nul = { true }, good = function() return { "127.0.0.1", 0 } end, kinds = { "host" } },
    ["aio.to_thread"] = { good = function() return { function(a) return a end, 1 } end },
    ["aio.exec"] = { nul_list = true, nul_fields = { cwd = true }, good = function() return { { "true" }, {} } end, listwrap = { [1] = true },
                     fields = { [2] = { "stdin", "env", "cwd", "timeout" } } },
    ["aio.spawn_process"] = { nul_list = true, nul_fields = { cwd = true }, good = function() return { { "true" }, {} } end, listwrap = { [1] = true },
                              fields = { [2] = { "stdin", "stdout", "stderr", "env", "cwd" } } },
    ["aio.fs.read_file"] = { nul = { true }, good = function() return { E.tmp .. "/data.txt" } end },
    ["aio.fs.write_file"] = { nul = { true }, good = function() return { E.tmp .. "/w.txt", "data" } end },
    ["aio.fs.append_file"] = { nul = { true }, good = function() return { E.tmp .. "/a.txt", "data" } end },
    ["aio.fs.stat"] = { nul = { true }, good = function() return { E.tmp .. "/data.txt" } end },
    ["aio.fs.exists"] = { nul = { true }, good = function() return { E.tmp .. "/data.txt" } end },
    ["aio.fs.listdir"] = { nul = { true }, good = function() return { E.tmp } end },
    ["aio.fs.mkdir"] = { nul = { true }, good = function() E.n = E.n + 1 return { E.tmp .. "/d" .. E.n } end },
    ["aio.fs.remove"] = { nul = { true }, good = function() return { E.tmp .. "/nothere" } end },
    ["aio.fs.rename"] = { nul = { true, true }, good = function()
      E.n = E.n + 1
      local a = E.tmp .. "/r" .. E.n
      local f = io.open(a, "w") f:write("r") f:close()
      return { a, a .. ".moved" }
    end },
    ["aio.fs.open"] = { nul = { true }, good = function() return { E.tmp .. "/data.txt", "r" } end },
    ["aio.on_signal"] = { nul = { true }, good = function() return { "SIGUSR1", nop } end },
    ["aio.wait_signal"] = { nul = { true }, good = function() return { "SIGUSR1" } end },
    ["aio.json.encode"] = { good = function() return { { a = 1 } } end },
    ["aio.json.decode"] = { good = function() return { "[1]" } end },
    ["aio.json.array"] = { good = function() return { {} } end },
    ["aio.http.Session"] = { good = function() return { {} } end,
                             fields = { [1] = { "max_connections", "timeout", "headers", "cookies", "tls" } } },
    ["aio.http.app"] = { good = function() return { {} } end },
    ["aio.http.request"] = { good = function() return { "GET", url, {} } end,
                             fields = { [3] = { "headers", "body", "json", "timeout", "max_redirects",
                                                "params", "form", "stream", "tls" } } },
    ["aio.http.get"] = { good = function() return { url, {} } end },
    ["aio.http.post"] = { good = function() return { url, { body = "x" } } end },
    ["aio.http.put"] = { good = function() return { url, {} } end },
    ["aio.http.patch"] = { good = function() return { url, {} } end },
    ["aio.http.delete"] = { good = function() return { url, {} } end },
    ["aio.http.head"] = { good = function() return { url, {} } end },
    ["aio.http.headers"] = { good = function() return { {} } end },
    ["aio.http.decode_query"] = { good = function() return { "a=1&b=2" } end },
    ["aio.http.encode_query"] = { good = function() return { { a = 1 } } end },
    ["aio.http.escape"] = { good = function() return { "a b" } end },
    ["aio.http.parse_url"] = { good = function() return { url } end },
    ["aio.http.url_join"] = { good = function() return { url, "x" } end },
    ["aio.http.abort"] = { good = function() return { 404 } end },
    ["aio.http.file"] = { good = function() return { E.tmp .. "/data.txt" } end },
  }
  return F
end

-- ---------------------------------------------------------------- objects
-- make(E) -> object (real); close(o) -> close it for good (cleanup);
-- args[method] = function(E, o) -> good arguments after self;
-- closer = the method that closes it (for the after-close sweep).
function M.types(E)
  local aio = E.aio
  local nop = function() end
  local url = "http://127.0.0.1:" .. E.http_port .. "/"
  local function call(o, m, ...) if o and o[m] then return pcall(o[m], o, ...) end end
  local T = {}

  T.Task = { make = function() return aio.spawn(function() aio.sleep(0.05) return 1 end) end,
    close = function(t) pcall(t.cancel, t) end,
    args = { cancel = { "msg" }, add_done_callback = { nop } } }
  T.TaskDone = { make = function()
      local t = aio.spawn(function() return 1 end)
      pcall(t.wait, t)
      return t
    end, args = T.Task.args }
  T.TaskFailed = { make = function()
      local t = aio.spawn(function() error("planned failure") end)
      pcall(t.wait, t)
      return t
    end, args = T.Task.args }
  T.Lock = { make = function() return aio.Lock() end }
  T.LockGuard = { make = function() local l = aio.Lock() return l:acquire() end, closer = "release" }
  T.Semaphore = { make = function() return aio.Semaphore(1) end, args = { run = { nop } } }
  T.BoundedSemaphore = { make = function() return aio.BoundedSemaphore(1) end, args = { run = { nop } } }
  T.Event = { make = function() return aio.Event() end }
  T.Condition = { make = function() return aio.Condition() end,
    args = { wait_for = { function() return true end }, notify = { 1 } } }
  for _, q in ipairs { "Queue", "PriorityQueue", "LifoQueue" } do
    T[q] = { make = function() return aio[q](2) end, closer = "shutdown",
      close = function(o) call(o, "shutdown", true) end,
      args = { put = { 1 }, put_nowait = { 1 }, shutdown = { false } } }
  end
  T.TaskGroup = { make = function()
      local g
      aio.task_group(function(tg) g = tg end)
      return g
    end, args = { spawn = { nop } } }
  T.Server = { make = function() return aio.start_server(function(s) s:read_all() end, "127.0.0.1", 0) end,
    close = function(o) call(o, "close") end, closer = "close" }
  T.Listener = { make = function()
      local srv = aio.start_server(nop, "127.0.0.1", 0)
      E.track(srv, function(o) call(o, "close") end)
      return srv._listener
    end, close = function(o) call(o, "close") end, closer = "close" }
  T.Stream = { make = function() return aio.open_connection("127.0.0.1", E.echo.port) end,
    close = function(o) call(o, "close") end, closer = "close",
    args = { read = { 10 }, read_exactly = { 1 }, read_until = { "\n" }, write = { "x\n" },
             set_timeout = { 1 }, set_limits = { 65536 }, start_tls = { { verify = false, handshake_timeout = 0.1 } },
             _read_head = { 65536 } } }
  T.UDP = { make = function() return aio.udp_bind("127.0.0.1", 0) end, nul = { sendto = 3 },
    close = function(o) call(o, "close") end, closer = "close",
    args = { sendto = function() return { "x", "127.0.0.1", E.foreign_udp_port } end } }
  T.ProcessSleep = { make = function() return aio.spawn_process({ "sleep", "10" }) end,
    close = function(o) call(o, "kill") call(o, "close") end, closer = "close",
    args = { kill = { "SIGTERM" } } }
  T.ProcessCat = { make = function() return aio.spawn_process({ "cat" }) end,
    close = function(o) call(o, "kill") call(o, "close") end, closer = "close",
    args = { kill = { "SIGTERM" } } }
  T.ProcessStdin = { make = function()             -- a Stream that belongs to a process
      local p = aio.spawn_process({ "cat" })
      E.track(p, T.ProcessCat.close)
      return p.stdin
    end, close = function(o) call(o, "close") end, closer = "close", args = T.Stream.args }
  T.File = { make = function() E.n = E.n + 1 return aio.fs.open(E.tmp .. "/f" .. E.n, "w") end,
    close = function(o) call(o, "close") end, closer = "close",
    args = { read = { 1 }, write = { "x" }, seek = { "set", 0 } } }
  T.SignalHandler = { make = function() return aio.on_signal("SIGUSR1", nop) end,
    close = function(o) call(o, "close") end, closer = "close" }
  T.Session = { make = function() return aio.http.Session() end,
    close = function(o) call(o, "close") end, closer = "close",
    args = { request = { "GET", url }, get = { url }, post = { url }, put = { url }, patch = { url },
             delete = { url }, head = { url } } }
  T.App = { make = function() return aio.http.app() end,
    args = { route = { "/x", nop }, listen = { "127.0.0.1", 0 }, find = { "GET", "/" },
             use = { function(req, nxt) return nxt(req) end }, static = { "/s", E.tmp },
             websocket = { "/ws", nop } } }
  T.Response = { make = function() return aio.http.get(url) end }
  T.Request = { make = function() aio.http.get(url) return E.last_request end }
  -- live server-side objects, each held by its handler until closed: a
  -- client task (or WebSocket) opens the request, the handler hands it over
  local function live(kind, open)
    return function()
      E.live[kind] = nil
      local peer = open()
      for _ = 1, 2000 do
        if E.live[kind] then break end
        aio.sleep(0.005)
      end
      local slot = assert(E.live[kind], "the handler never ran for " .. kind)
      E.live[kind] = nil
      slot.peer = peer
      E.track(slot, function(s)
        s.release:set()
        if type(s.peer) == "userdata" or type(s.peer) == "table" then call(s.peer, "close") end
        if aio._is_task and aio._is_task(s.peer) then pcall(s.peer.cancel, s.peer) end
      end, "live " .. kind)
      return slot.obj
    end
  end
  local function get_in_background(path)
    return function()
      return aio.spawn(function() pcall(aio.http.get, url .. path, { timeout = 60 }) end)
    end
  end
  T.ServerRequest = { make = live("request", get_in_background("live")),
    args = { read = { 10 }, respond = { 200, {} }, sse = { {} } } }
  T.ResponseWriter = { make = live("writer", get_in_background("writer")), closer = "close",
    close = function(o) call(o, "close") end, args = { write = { "x" } } }
  T.SSE = { make = live("sse", get_in_background("sse")), closer = "close",
    close = function(o) call(o, "close") end,
    args = { send = { { data = "x", event = "e" } }, comment = { "c" } } }
  local ws_url = "ws://127.0.0.1:" .. E.http_port .. "/ws"
  T.WebSocketServer = { make = live("websocket", function()
      local ws = aio.websocket.connect(ws_url, { timeout = 10 })
      -- the client side reads, so it answers pings and the close handshake
      E.track(aio.spawn(function() pcall(function() for _ in ws:messages() do end end) end),
              function(t) pcall(t.cancel, t) end)
      return ws
    end), closer = "close", close = function(o) call(o, "close") end,
    args = { send = { "x" }, ping = { "p" }, close = { 1000, "bye" } } }
  T.WebSocketClient = { make = function()
      return aio.websocket.connect(ws_url:gsub("/ws$", "/echo"), { timeout = 10 })
    end,
    closer = "close", close = function(o) call(o, "close") end,
    args = { send = { "x" }, ping = { "p" }, close = { 1000, "bye" } } }
  -- database pools (they connect on first use: to a port nobody listens on,
  -- so every call that reaches the network gets a ConnectionError)
  T.RedisPool = { make = function() return aio.redis.pool { port = E.closed_port, timeout = 2 } end,
    close = function(o) call(o, "close") end, closer = "close",
    args = { call = { "GET", "k" }, get = { "k" }, set = { "k", "v" }, pipeline = { function(p) p:get("k") end },
             subscribe = { "ch" }, psubscribe = { "c*" } } }
  T.PgPool = { make = function() return aio.pg.pool { port = E.closed_port, user = "x", timeout = 2 } end,
    close = function(o) call(o, "close") end, closer = "close",
    args = { query = { "SELECT 1" }, execute = { "SELECT 1" }, transaction = { function() end } } }
  T.Headers = { make = function() return aio.http.headers { a = "b" } end }
  T.Generator = nil   -- a generator is a plain function: swept through aio.generator
  T.Error = { make = function() return aio.new_error("X", "m") end }
  return T
end

return M
