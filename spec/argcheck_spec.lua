-- Argument errors of the Lua half (API.md §3b): one shape, Lua's own,
--   bad argument #N to 'aio.NAME' (X expected, got Y)
-- (a method names itself as its call site does, and a bad self called with
-- ':' is "calling 'm' on bad self"), positioned at the caller's line: here.
-- Covers sync.lua, queue.lua and http.lua.
local aio = require "luaio"

local THIS = debug.getinfo(1, "S").short_src      -- "spec/argcheck_spec.lua"

-- fn: a one-line function of this file making one bad call (not a tail
-- call). Its error must be exactly `msg`, positioned at fn's line.
local function fails(msg, fn)
  local line = debug.getinfo(fn, "S").linedefined
  local ok, err = pcall(fn)
  assert.is_false(ok, "no error for: " .. msg)
  assert.equals("string", type(err), "not a string error: " .. tostring(err))
  assert.equals(THIS .. ":" .. line .. ": " .. msg, err)
end

-- the error of fn is some bad-argument error positioned in this file
local function fails_here(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  assert.equals("string", type(err), "not a string error: " .. tostring(err))
  local at, shape = err:match("^(.-):%d+: (.*)$")
  assert.equals(THIS, at, err)
  assert.is_truthy(shape:match("^bad argument #%d+ to '[%w_.?]+' %(.+ expected, got .+%)$")
    or shape:match("^calling '[%w_]+' on bad self %(.+ expected, got .+%)$"), err)
  return err
end

it("the spec file is where errors point", function()
  assert.matches("argcheck_spec%.lua$", THIS)
  local ok, err = pcall(function() local _ = aio.Semaphore("3") end)
  assert.is_false(ok)
  assert.matches("^" .. THIS:gsub("%p", "%%%0") .. ":%d+: bad argument #%d to '", err)
end)

describe("sync", function()
  it("constructors", function()
    fails("bad argument #1 to 'aio.Semaphore' (number expected, got string)", function() local _ = aio.Semaphore("3") end)
    fails("bad argument #1 to 'aio.Semaphore' (non-negative integer expected, got -1)", function() local _ = aio.Semaphore(-1) end)
    fails("bad argument #1 to 'aio.Semaphore' (non-negative integer expected, got 1.5)", function() local _ = aio.Semaphore(1.5) end)
    fails("bad argument #1 to 'aio.BoundedSemaphore' (number expected, got table)", function() local _ = aio.BoundedSemaphore({}) end)
    fails("bad argument #1 to 'aio.Condition' (luaio.Lock expected, got number)", function() local _ = aio.Condition(5) end)
    fails("bad argument #1 to 'aio.Condition' (luaio.Lock expected, got luaio.Semaphore)", function() local _ = aio.Condition(aio.Semaphore()) end)
    assert.equals(0, aio.Semaphore(0):value())
    assert.equals(1, aio.BoundedSemaphore():value())
  end)

  it("Lock methods check self", function()
    local l, q = aio.Lock(), aio.Queue()
    fails("bad argument #1 to 'acquire' (luaio.Lock expected, got luaio.Queue)", function() local _ = l.acquire(q) end)
    fails("bad argument #1 to 'acquire' (luaio.Lock expected, got number)", function() local _ = l.acquire(5) end)
    fails("bad argument #1 to 'acquire' (luaio.Lock expected, got nil)", function() local _ = l.acquire() end)
    fails("bad argument #1 to 'release' (luaio.Lock expected, got luaio.Semaphore)", function() l.release(aio.Semaphore()) end)
    fails("bad argument #1 to 'locked' (luaio.Lock expected, got table)", function() local _ = l.locked({}) end)
    local fake = { acquire = l.acquire }
    fails("calling 'acquire' on bad self (luaio.Lock expected, got table)", function() local _ = fake:acquire() end)
    assert.is_false(l:locked())
    assert.equals(0, q:qsize())                 -- untouched by the bad calls
    local g = l:acquire()
    fails("bad argument #1 to 'release' (luaio.Guard expected, got number)", function() g.release(5) end)
    assert.is_true(l:locked())
    g:release()
    assert.is_false(l:locked())
  end)

  it("Semaphore methods check self and arguments", function()
    local s = aio.Semaphore(1)
    local b = aio.BoundedSemaphore(1)
    fails("bad argument #1 to 'acquire' (luaio.Semaphore expected, got luaio.Lock)", function() local _ = s.acquire(aio.Lock()) end)
    fails("bad argument #1 to 'release' (luaio.Semaphore expected, got string)", function() s.release("x") end)
    fails("bad argument #1 to 'value' (luaio.Semaphore expected, got nil)", function() local _ = b.value(nil) end)
    fails("bad argument #1 to 'locked' (luaio.Semaphore expected, got boolean)", function() local _ = s.locked(true) end)
    fails("bad argument #1 to 'run' (luaio.Semaphore expected, got number)", function() local _ = s.run(1, print) end)
    fails("bad argument #1 to 'run' (function expected, got number)", function() local _ = s:run(5) end)
    fails("bad argument #2 to 'run' (function expected, got nil)", function() local _ = s.run(s) end)
    assert.equals(1, s:value())
    assert.equals("ran", s:run(function() return "ran" end))
  end)

  it("Event methods check self", function()
    local e = aio.Event()
    fails("bad argument #1 to 'set' (luaio.Event expected, got luaio.Lock)", function() e.set(aio.Lock()) end)
    fails("bad argument #1 to 'clear' (luaio.Event expected, got number)", function() e.clear(1) end)
    fails("bad argument #1 to 'is_set' (luaio.Event expected, got table)", function() local _ = e.is_set({ _set = true }) end)
    fails("bad argument #1 to 'wait' (luaio.Event expected, got function)", function() local _ = e.wait(print) end)
    assert.is_false(e:is_set())
  end)

  it("Condition methods check self and arguments", function()
    local c = aio.Condition()
    fails("bad argument #1 to 'acquire' (luaio.Condition expected, got luaio.Lock)", function() local _ = c.acquire(aio.Lock()) end)
    fails("bad argument #1 to 'release' (luaio.Condition expected, got number)", function() c.release(1) end)
    fails("bad argument #1 to 'locked' (luaio.Condition expected, got string)", function() local _ = c.locked("c") end)
    fails("bad argument #1 to 'wait' (luaio.Condition expected, got luaio.Event)", function() local _ = c.wait(aio.Event()) end)
    fails("bad argument #1 to 'wait_for' (luaio.Condition expected, got number)", function() local _ = c.wait_for(1, print) end)
    fails("bad argument #1 to 'wait_for' (function expected, got boolean)", function() local _ = c:wait_for(true) end)
    fails("bad argument #1 to 'notify' (luaio.Condition expected, got table)", function() c.notify({}) end)
    fails("bad argument #1 to 'notify' (number expected, got string)", function() c:notify("all") end)
    fails("bad argument #1 to 'notify' (number >= 0 expected, got -1)", function() c:notify(-1) end)
    fails("bad argument #1 to 'notify_all' (luaio.Condition expected, got nil)", function() c.notify_all(nil) end)
    assert.is_false(c:locked())
    local _ <close> = c:acquire()
    c:notify(2)
    c:notify_all()
  end)

  it("self and arguments are checked before need_task: where a task cannot wait too", function()
    local l = aio.Lock()
    local err
    table.sort({ 2, 1 }, function(a, b)
      err = err or select(2, pcall(function() local _ = l.acquire(5) end))
      return a < b
    end)
    assert.matches("^" .. THIS:gsub("%p", "%%%0") .. ":%d+: bad argument #1 to 'acquire' %(luaio.Lock expected, got number%)$", err)
    err = nil
    table.sort({ 2, 1 }, function(a, b)
      err = err or select(2, pcall(function() local _ = l:acquire() end))
      return a < b
    end)
    assert.matches("^" .. THIS:gsub("%p", "%%%0") .. ":%d+: lock:acquire cannot wait here", err)
    assert.is_false(l:locked())
    err = nil
    local q = aio.Queue()
    table.sort({ 2, 1 }, function(a, b)
      err = err or select(2, pcall(function() local _ = q:get() end))
      return a < b
    end)
    assert.matches("^" .. THIS:gsub("%p", "%%%0") .. ":%d+: queue:get cannot wait here", err)
    assert.is_nil(next(q._getters))   -- it never joined the getters
  end)
end)

describe("queue", function()
  it("constructors", function()
    fails("bad argument #1 to 'aio.Queue' (number expected, got string)", function() local _ = aio.Queue("big") end)
    fails("bad argument #1 to 'aio.LifoQueue' (number expected, got table)", function() local _ = aio.LifoQueue({}) end)
    fails("bad argument #1 to 'aio.PriorityQueue' (number expected, got NaN)", function() local _ = aio.PriorityQueue(0 / 0) end)
    assert.equals(0, aio.Queue():maxsize())
    assert.equals(3, aio.PriorityQueue(3):maxsize())
  end)

  it("every method checks self", function()
    local q, l = aio.Queue(), aio.Lock()
    local E = "(luaio.Queue expected, got luaio.Lock)"
    fails("bad argument #1 to 'qsize' " .. E, function() local _ = q.qsize(l) end)
    fails("bad argument #1 to 'maxsize' " .. E, function() local _ = q.maxsize(l) end)
    fails("bad argument #1 to 'empty' " .. E, function() local _ = q.empty(l) end)
    fails("bad argument #1 to 'full' " .. E, function() local _ = q.full(l) end)
    fails("bad argument #1 to 'put_nowait' " .. E, function() q.put_nowait(l, 1) end)
    fails("bad argument #1 to 'get_nowait' " .. E, function() local _ = q.get_nowait(l) end)
    fails("bad argument #1 to 'put' " .. E, function() q.put(l, 1) end)
    fails("bad argument #1 to 'get' " .. E, function() local _ = q.get(l) end)
    fails("bad argument #1 to 'task_done' " .. E, function() q.task_done(l) end)
    fails("bad argument #1 to 'join' " .. E, function() q.join(l) end)
    fails("bad argument #1 to 'shutdown' " .. E, function() q.shutdown(l) end)
    fails("bad argument #1 to 'items' " .. E, function() local _ = q.items(l) end)
    fails("bad argument #1 to 'put' (luaio.Queue expected, got number)", function() q.put(5) end)
    local fake = { get = q.get }
    fails("calling 'get' on bad self (luaio.Queue expected, got table)", function() local _ = fake:get() end)
    assert.is_false(l:locked())
    assert.is_nil(rawget(l, "_n"))
  end)

  it("arguments", function()
    local q = aio.Queue()
    fails("bad argument #1 to 'shutdown' (boolean expected, got number)", function() q:shutdown(1) end)
    local p = aio.PriorityQueue()
    p:put(1)
    fails("bad argument #1 to 'put' (cannot order the item among the queued ones (attempt to compare string with number))", function() p:put("x") end)
    fails("bad argument #1 to 'put_nowait' (priority expected, got NaN)", function() p:put_nowait(0 / 0) end)
    fails("bad argument #1 to 'put_nowait' (priority expected at [1], got nil)", function() p:put_nowait({}) end)
    assert.equals(1, p:qsize())
    assert.equals(1, p:get())
  end)

  it("the wrong-self sweep: no internal error escapes any method", function()
    local objects = {
      { aio.Lock(), { "acquire", "release", "locked" } },
      { aio.Semaphore(), { "acquire", "release", "value", "locked", "run" } },
      { aio.Event(), { "set", "clear", "is_set", "wait" } },
      { aio.Condition(), { "acquire", "release", "locked", "wait", "wait_for", "notify", "notify_all" } },
      { aio.Queue(), { "qsize", "maxsize", "empty", "full", "put_nowait", "get_nowait", "put", "get",
                       "task_done", "join", "shutdown", "items" } },
      { aio.PriorityQueue(), { "put", "get", "put_nowait", "get_nowait" } },
    }
    local bads = { 1, "s", true, {}, print, coroutine.create(print), aio.Event(), aio.Queue(), aio.Lock() }
    local n = 0
    for _, o in ipairs(objects) do
      for _, name in ipairs(o[2]) do
        local m = o[1][name]
        for _, bad in ipairs(bads) do
          if getmetatable(bad) ~= getmetatable(o[1]) then
            local err = fails_here(function() m(bad) end)
            assert.matches("expected, got", err)
            n = n + 1
          end
        end
      end
    end
    assert.is_true(n > 200)
  end)
end)

describe("http", function()
  local http = aio.http

  it("helpers and constructors", function()
    fails("bad argument #1 to 'aio.http.headers' (table expected, got number)", function() local _ = http.headers(5) end)
    fails("bad argument #1 to 'aio.http.decode_query' (string expected, got table)", function() local _ = http.decode_query({}) end)
    fails("bad argument #1 to 'aio.http.escape' (string expected, got table)", function() local _ = http.escape({}) end)
    fails("bad argument #1 to 'aio.http.parse_url' (string expected, got nil)", function() local _ = http.parse_url(nil) end)
    fails("bad argument #1 to 'aio.http.app' (table expected, got string)", function() local _ = http.app("x") end)
    fails("bad argument #1 to 'aio.http.app' (opts.max_body: integer expected, got string)", function() local _ = http.app({ max_body = "1M" }) end)
    fails("bad argument #1 to 'aio.http.app' (opts.header_timeout: number >= 0 expected, got -1)", function() local _ = http.app({ header_timeout = -1 }) end)
    fails("bad argument #1 to 'aio.http.Session' (table expected, got number)", function() local _ = http.Session(5) end)
    fails("bad argument #1 to 'aio.http.Session' (opts.max_connections: integer >= 1 expected, got 0)", function() local _ = http.Session({ max_connections = 0 }) end)
    fails("bad argument #1 to 'aio.http.Session' (opts.timeout: number expected, got string)", function() local _ = http.Session({ timeout = "1s" }) end)
    fails("bad argument #1 to 'aio.http.Session' (opts.headers: table expected, got string)", function() local _ = http.Session({ headers = "x" }) end)
    fails("bad argument #1 to 'aio.http.Session' (opts.headers: bad header name Bad Name)", function() local _ = http.Session({ headers = { ["Bad Name"] = "x" } }) end)
    fails("bad argument #1 to 'aio.http.Session' (opts.tls: table or boolean expected, got string)", function() local _ = http.Session({ tls = "yes" }) end)
    assert.same({ a = "1" }, http.decode_query("a=1"))
    assert.equals("a%20b", http.escape("a b"))
    local u = http.parse_url("http://h:8/p/q?x=1")
    assert.equals("/p/q", u.path)
    assert.equals("x=1", u.query)
  end)

  it("client functions and Session methods", function()
    fails("bad argument #1 to 'aio.http.request' (string expected, got number)", function() local _ = http.request(1, "http://x/") end)
    fails("bad argument #1 to 'aio.http.request' (method token expected, got \"GET /x\")", function() local _ = http.request("GET /x", "http://x/") end)
    fails("bad argument #2 to 'aio.http.request' (string expected, got number)", function() local _ = http.request("GET", 5) end)
    fails("bad argument #3 to 'aio.http.request' (table expected, got string)", function() local _ = http.request("GET", "http://x/", "fast") end)
    fails("bad argument #1 to 'aio.http.get' (string expected, got table)", function() local _ = http.get({}) end)
    fails("bad argument #2 to 'aio.http.get' (opts.timeout: number expected, got string)", function() local _ = http.get("http://x/", { timeout = "soon" }) end)
    fails("bad argument #2 to 'aio.http.get' (opts.max_redirects: integer >= 0 expected, got 1.5)", function() local _ = http.get("http://x/", { max_redirects = 1.5 }) end)
    fails("bad argument #2 to 'aio.http.get' (opts.headers: header X holds a line break)", function() local _ = http.get("http://x/", { headers = { X = "a\nb" } }) end)
    fails("bad argument #1 to 'aio.http.post' (string expected, got nil)", function() local _ = http.post() end)
    fails("bad argument #2 to 'aio.http.post' (opts.body: string expected, got table)", function() local _ = http.post("http://x/", { body = {} }) end)

    local s <close> = http.Session()
    fails("bad argument #1 to 'request' (string expected, got nil)", function() local _ = s:request() end)
    fails("bad argument #2 to 'request' (string expected, got boolean)", function() local _ = s:request("GET", true) end)
    fails("bad argument #3 to 'request' (opts.tls: table or boolean expected, got number)", function() local _ = s:request("GET", "https://x/", { tls = 1 }) end)
    fails("bad argument #1 to 'get' (string expected, got number)", function() local _ = s:get(5) end)
    fails("bad argument #2 to 'post' (table expected, got number)", function() local _ = s:post("http://x/", 5) end)
    fails("bad argument #1 to 'request' (luaio.http.Session expected, got number)", function() local _ = s.request(1, "GET", "http://x/") end)
    fails("bad argument #1 to 'get' (luaio.http.Session expected, got luaio.Queue)", function() local _ = s.get(aio.Queue(), "http://x/") end)
    fails("bad argument #1 to 'post' (luaio.http.Session expected, got string)", function() local _ = s.post("http://x/") end)
    fails("bad argument #1 to 'close' (luaio.http.Session expected, got nil)", function() s.close() end)
    local fake = { get = s.get }
    fails("calling 'get' on bad self (luaio.http.Session expected, got table)", function() local _ = fake:get("http://x/") end)
    assert.equals(0, s.connections_made)
  end)

  it("app methods", function()
    local app = http.app()
    local h = function() return "ok" end
    fails("bad argument #1 to 'route' (string expected, got number)", function() app:route(5, h) end)
    fails("bad argument #1 to 'route' (path starting with '/' expected, got \"no-slash\")", function() app:route("no-slash", h) end)
    fails("bad argument #2 to 'route' (function expected, got string)", function() app:route("/", "not a function") end)
    fails("bad argument #3 to 'route' (string or array of strings expected, got number)", function() app:route("/", h, 5) end)
    fails("bad argument #3 to 'route' (methods[2]: string expected, got boolean)", function() app:route("/", h, { "GET", true }) end)
    fails("bad argument #1 to 'route' (luaio.http.App expected, got string)", function() app.route("/", h) end)
    fails("bad argument #1 to 'find' (string expected, got nil)", function() local _ = app:find(nil, "/") end)
    fails("bad argument #2 to 'find' (string expected, got number)", function() local _ = app:find("GET", 1) end)
    fails("bad argument #1 to 'find' (luaio.http.App expected, got table)", function() local _ = app.find({}, "GET", "/") end)
    fails("bad argument #1 to 'listen' (string expected, got number)", function() local _ = app:listen(5) end)
    fails("bad argument #2 to 'listen' (number expected, got table)", function() local _ = app:listen("127.0.0.1", {}) end)
    fails("bad argument #3 to 'listen' (table expected, got number)", function() local _ = app:listen("127.0.0.1", 0, 5) end)
    fails("bad argument #3 to 'listen' (opts.max_header: integer >= 1 expected, got 0)", function() local _ = app:listen("127.0.0.1", 0, { max_header = 0 }) end)
    fails("bad argument #1 to 'listen' (luaio.http.App expected, got luaio.Lock)", function() local _ = app.listen(aio.Lock(), "127.0.0.1", 0) end)
    fails("bad argument #1 to 'handle_connection' (luaio.Stream expected, got number)", function() app:handle_connection(5) end)
    fails("bad argument #1 to 'handle_connection' (luaio.http.App expected, got nil)", function() app.handle_connection(nil, {}) end)
    fails("bad argument #1 to 'handle_connection' (luaio.Stream expected, got table)", function() app:handle_connection({}, "opts") end)
    assert.equals(404, select(2, app:find("GET", "/")))
  end)

  it("Request and Response methods check self", function()
    local app = http.app()
    local seen
    app:route("/r", function(req) seen = req return { ok = true } end)
    local server <close> = app:listen("127.0.0.1", 0)
    local resp = http.get("http://127.0.0.1:" .. server.port .. "/r")
    assert.equals(200, resp.status)
    fails("bad argument #1 to 'json' (luaio.http.Request expected, got number)", function() local _ = seen.json(5) end)
    fails("bad argument #1 to 'json' (luaio.http.Response expected, got luaio.http.Request)", function() local _ = resp.json(seen) end)
    fails("bad argument #1 to 'raise_for_status' (luaio.http.Response expected, got table)", function() local _ = resp.raise_for_status({ status = 500 }) end)
    fails("bad argument #1 to 'ok' (luaio.http.Response expected, got nil)", function() local _ = resp.ok() end)
    assert.is_true(resp:json().ok)
    assert.is_true(resp:ok())
    assert.equals(resp, resp:raise_for_status())
  end)
end)
