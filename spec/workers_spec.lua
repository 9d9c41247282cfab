-- Worker processes (API.md §13): `luaio --workers N|auto [--grace SEC]`,
-- with real processes and real signals; and the graceful Server:close that
-- a worker's stop is made of. This file runs inside the host (busted is the
-- main task): the supervisors are children, their stderr read by a task.
local aio = require "luaio"
local S = require "spec.support"

-- every script of this file lives in one fresh directory: its path is what
-- pgrep looks for, to find any process left behind
local DIR = os.tmpname()
os.remove(DIR)
assert(os.execute("mkdir -p " .. DIR))

local function write_script(name, code)
  local path = DIR .. "/" .. name .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  return path
end

-- each response names its worker: "worker ID/COUNT pid PID"
local APP = write_script("app", [[
local aio = require "luaio"
local w = aio.worker()
local app = aio.http.app()
local me = ("worker %d/%d pid %d"):format(w.id, w.count, w.pid)
app:route("/", function() return me end)
app:route("/slow", function(req) aio.sleep(tonumber(req.query.s)) return "slow done, " .. me end)
app:listen("127.0.0.1", tonumber(arg[1])):serve_forever()
]])

local free_port = require("spec.lib.peers").free_port

-- pids of the processes whose command line has `pattern` (a script path)
local function pgrep(...)
  local r = aio.exec({ "pgrep", ... })
  local pids = {}
  for pid in r.stdout:gmatch("%d+") do pids[#pids + 1] = tonumber(pid) end
  return pids
end

local function until_true(what, timeout, fn)
  local deadline = aio.now() + timeout
  while not fn() do
    if aio.now() > deadline then error("timed out waiting for " .. what, 2) end
    aio.sleep(0.02)
  end
end

-- A supervisor: sup.pid, sup:log() (its stderr so far), sup:signal(name),
-- sup:wait_log(pattern [, count]), sup:finish() -> exit status
local function supervise(args)
  local cmd = { "exec", S.quote(S.luaio) }
  for _, a in ipairs(args) do cmd[#cmd + 1] = S.quote(a) end
  -- (exec: the shell's pid becomes the supervisor's; stdout nobody reads)
  local proc = aio.spawn_process({ "sh", "-c", table.concat(cmd, " ") .. " </dev/null >/dev/null" })
  local sup = { proc = proc, pid = proc.pid, lines = {} }
  sup.reader = aio.spawn(function()
    for line in proc.stderr:lines() do sup.lines[#sup.lines + 1] = line end
  end)
  function sup:log() return table.concat(self.lines, "\n") end
  function sup:count(pattern)
    local n = 0
    for _, l in ipairs(self.lines) do if l:find(pattern) then n = n + 1 end end
    return n
  end
  function sup:wait_log(pattern, count, timeout)
    until_true(("%d line(s) %q in:\n%s"):format(count or 1, pattern, self:log()), timeout or 10,
      function() return self:count(pattern) >= (count or 1) end)
  end
  function sup:signal(name) aio.exec({ "kill", "-" .. name, tostring(self.pid) }) end
  function sup:finish(timeout)
    local status, signal = aio.wait_for(function() return proc:wait() end, timeout or 20)
    pcall(self.reader.wait, self.reader)
    return status, signal
  end
  return sup
end

-- one request on a fresh connection: status, body, head
local function get(port, path)
  local c <close> = aio.open_connection("127.0.0.1", port)
  c:write("GET ", path or "/", " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
  local all = c:read_all()
  local head, body = all:match("^(.-\r\n)\r\n(.*)$")
  return tonumber(all:match("^HTTP/1%.1 (%d+)")), body, head
end

local function worker_of(body)
  local id, count, pid = body:match("worker (%d+)/(%d+) pid (%d+)")
  return tonumber(id), tonumber(count), tonumber(pid)
end

describe("luaio --workers", function()
  it("refuses bad options with a clear message and status 2", function()
    local cases = {
      { { "--workers", "0", APP }, "%-%-workers: a number from 1 to 1024 or 'auto' expected, got 0" },
      { { "--workers", "x", APP }, "%-%-workers: .* got x" },
      { { "--workers=2", "--grace", "-1", APP }, "%-%-grace: a number of seconds >= 0 expected, got %-1" },
      { { "--workers", "2" }, "%-%-workers needs a script file" },
      { { "--workers", "2", "--grace", "1" }, "%-%-workers needs a script file" },
      { { "--grace", "1", APP }, "%-%-grace needs %-%-workers" },
      { { "--workers", "2", DIR .. "/missing.lua" }, "cannot read .*missing%.lua" },
      { { "--workers", "2", "-e", "print(1)" }, "%-e cannot be used with %-%-workers" },
    }
    for _, case in ipairs(cases) do
      local argv = { S.luaio }
      for _, a in ipairs(case[1]) do argv[#argv + 1] = a end
      local r = aio.exec(argv)
      assert.equals(2, r.status, table.concat(case[1], " ") .. ": " .. r.stderr)
      assert.matches(case[2], r.stderr)
    end
  end)

  it("aio.worker() is nil outside worker mode", function()
    assert.is_nil(aio.worker())
  end)

  it("runs N workers that all answer on one port, each knowing its id", function()
    local port = free_port()
    local sup = supervise({ "--workers", "2", APP, port })
    sup:wait_log("is ready", 2)
    local children = {}
    for _, pid in ipairs(pgrep("-P", tostring(sup.pid))) do children[pid] = true end
    local seen, n = {}, 0
    while not (seen[1] and seen[2]) and n < 500 do
      local status, body = get(port)
      assert.equals(200, status)
      local id, count, pid = worker_of(body)
      assert.equals(2, count)
      assert.is_true(children[pid], "a response from pid " .. pid .. ", not a child of the supervisor")
      seen[id] = pid
      n = n + 1
    end
    assert.is_truthy(seen[1] and seen[2], "only one worker answered in " .. n .. " requests")
    assert.not_equals(seen[1], seen[2])
    sup:signal("TERM")
    assert.equals(0, sup:finish())
  end)

  it("restarts a worker killed with SIGKILL under the same id; requests keep succeeding", function()
    local port = free_port()
    local sup = supervise({ "--workers", "2", APP, port })
    sup:wait_log("is ready", 2)
    local old
    until_true("worker 1 to answer", 10, function()
      local _, body = get(port)
      local id, _, pid = worker_of(body)
      if id == 1 then old = pid end
      return old
    end)
    aio.exec({ "kill", "-KILL", tostring(old) })
    for _ = 1, 50 do assert.equals(200, (get(port))) end
    sup:wait_log("worker 1 %(pid " .. old .. "%) was killed by signal 9.*restarting in")
    local new
    until_true("the new worker 1 to answer", 10, function()
      local status, body = get(port)
      assert.equals(200, status)
      local id, _, pid = worker_of(body)
      if id == 1 and pid ~= old then new = pid end
      return new
    end)
    assert.equals(2, sup:count("worker 1 started"))
    sup:signal("TERM")
    assert.equals(0, sup:finish())
  end)

  it("SIGTERM: a request in flight completes, an idle keep-alive connection ends at once, status 0", function()
    local port = free_port()
    local sup = supervise({ "--workers", "2", "--grace", "5", APP, port })
    sup:wait_log("is ready", 2)
    -- a keep-alive connection, idle after one answer
    local idle <close> = aio.open_connection("127.0.0.1", port)
    idle:write("GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    local head = idle:read_until("\r\n\r\n")
    idle:read_exactly(tonumber(head:match("Content%-Length: (%d+)")))
    assert.is_nil(head:find("Connection: close", 1, true))
    local slow = aio.spawn(get, port, "/slow?s=1.5")
    aio.sleep(0.3)
    local t0 = aio.now()
    sup:signal("TERM")
    assert.is_nil(aio.wait_for(function() return idle:read(1) end, 1))              -- closed, well before the slow one ends
    assert.is_true(aio.now() - t0 < 1)
    local status, body, shead = slow:wait()
    assert.equals(200, status)
    assert.matches("^slow done", body)
    assert.truthy(shead:find("Connection: close", 1, true))
    assert.equals(0, sup:finish())
    assert.equals(2, sup:count("stopped$"))
    assert.same({}, pgrep("-f", APP .. " " .. port))
  end)

  it("a worker that ignores the stop past --grace is killed, and the supervisor exits non-zero", function()
    local port = free_port()
    local stubborn = write_script("stubborn", ([[
local aio = require "luaio"
aio.start_server(function(s) s:write("hi\n") end, "127.0.0.1", %d)
while true do pcall(aio.sleep, 60) end     -- swallows the cancellation: never ends
]]):format(port))
    local sup = supervise({ "--workers", "1", "--grace", "0.2", stubborn })
    sup:wait_log("is ready")
    sup:signal("TERM")
    local status = sup:finish()
    assert.equals(1, status)
    assert.matches("still runs .* after the grace period: killing it", sup:log())
    assert.matches("did not stop cleanly: it was killed by signal 9", sup:log())
    assert.same({}, pgrep("-f", stubborn))
  end)

  it("connections still in flight when the grace runs out are cut: status non-zero", function()
    local port = free_port()
    local sup = supervise({ "--workers", "1", "--grace", "0.3", APP, port })
    sup:wait_log("is ready")
    local slow = aio.spawn(get, port, "/slow?s=30")
    aio.sleep(0.2)
    sup:signal("TERM")
    assert.equals(1, sup:finish())
    assert.matches("1 connection%(s%) still in flight: cancelled", sup:log())
    assert.matches("the grace period ran out with connections in flight", sup:log())
    pcall(slow.wait, slow)
  end)

  it("SIGHUP under a request loop: no error, and new workers replace the old ones", function()
    local port = free_port()
    local sup = supervise({ "--workers", "2", APP, port })
    sup:wait_log("is ready", 2)
    local stop, errors, phase, pids = false, {}, "before", { before = {}, after = {} }
    local ok_count = 0
    local function record(status, body)
      if status ~= 200 then errors[#errors + 1] = "status " .. tostring(status) return end
      ok_count = ok_count + 1
      local _, _, pid = worker_of(body)
      pids[phase][pid] = true
    end
    -- fresh connections, one after the other
    local fresh = aio.spawn(function()
      while not stop do
        local ok, status, body = pcall(get, port)
        if ok then record(status, body) else errors[#errors + 1] = tostring(status) end
      end
    end)
    -- and a keep-alive client (it retries once a reused connection that was closed, as clients do)
    local kept = aio.spawn(function()
      local session <close> = aio.http.Session()
      while not stop do
        local ok, res = pcall(session.get, session, "http://127.0.0.1:" .. port .. "/")
        if ok then record(res.status, res.body) else errors[#errors + 1] = tostring(res) end
      end
    end)
    aio.sleep(0.4)
    phase = "during"
    pids.during = {}
    sup:signal("HUP")
    sup:wait_log("stopped$", 2)
    aio.sleep(0.3)
    phase = "after"
    aio.sleep(0.4)
    stop = true
    fresh:wait()
    kept:wait()
    assert.same({}, errors)
    assert.is_true(ok_count > 50, ok_count .. " requests")
    assert.is_truthy(next(pids.before))
    assert.is_truthy(next(pids.after))
    for pid in pairs(pids.after) do assert.is_nil(pids.before[pid], "an old worker answered after the reload") end
    assert.equals(2, sup:count("started %(pid %d+, generation 2%)"))
    sup:signal("TERM")
    assert.equals(0, sup:finish())
  end)

  it("a script that fails at start-up does not make the supervisor spin, and its error is shown", function()
    local broken = write_script("broken", 'error("broken at start-up")\n')
    local sup = supervise({ "--workers", "2", broken })
    aio.sleep(2)
    sup:signal("TERM")
    sup:finish()
    local starts = sup:count("started %(pid")
    -- 0.1, 0.2, 0.4, 0.8 s... between starts: about 5 per worker in 2 s
    assert.is_true(starts >= 4 and starts <= 14, starts .. " starts in 2 s:\n" .. sup:log())
    assert.matches("broken%.lua:1: broken at start%-up", sup:log())
    assert.matches("exited with status 1; restarting in 0%.8 s", sup:log())
    assert.same({}, pgrep("-f", broken))
  end)

  it("--workers auto starts one worker per CPU (nproc)", function()
    local nproc = tonumber(aio.exec({ "nproc" }).stdout)
    local port = free_port()
    local sup = supervise({ "--workers", "auto", APP, port })
    sup:wait_log("is ready", nproc)
    assert.equals(nproc, #pgrep("-P", tostring(sup.pid)))
    local _, body = get(port)
    assert.equals(nproc, select(2, worker_of(body)))
    sup:signal("TERM")
    assert.equals(0, sup:finish())
  end)

  it("leaves no worker behind when the supervisor is killed with SIGKILL", function()
    local port = free_port()
    local sup = supervise({ "--workers", "2", APP, port })
    sup:wait_log("is ready", 2)
    assert.equals(3, #pgrep("-f", APP .. " " .. port))     -- the supervisor and its two workers
    sup:signal("KILL")
    sup:finish()
    until_true("the workers to exit", 5, function() return #pgrep("-f", APP .. " " .. port) == 0 end)
  end)
end)

describe("Server:close is graceful", function()
  it("stops accepting, lets running handlers finish; wait_closed waits for them", function()
    local server = aio.start_server(function(s)
      aio.sleep(0.2)
      s:write("done\n")
    end, "127.0.0.1", 0)
    local c <close> = aio.open_connection("127.0.0.1", server.port)
    aio.sleep(0.05)
    server:close()
    local ok = pcall(aio.open_connection, "127.0.0.1", server.port)
    assert.is_false(ok)
    local t0 = aio.now()
    server:wait_closed()
    assert.is_true(aio.now() - t0 > 0.1)
    assert.equals("done", c:readline())
  end)

  it("HTTP: an idle keep-alive connection ends at once, a request in flight completes with Connection: close", function()
    local app = aio.http.app()
    app:route("/", function() return "hi" end)
    app:route("/slow", function() aio.sleep(0.3) return "slow" end)
    local server = app:listen("127.0.0.1", 0)
    local idle <close> = aio.open_connection("127.0.0.1", server.port)
    idle:write("GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    local head = idle:read_until("\r\n\r\n")
    assert.equals("hi", idle:read_exactly(tonumber(head:match("Content%-Length: (%d+)"))))
    local busy <close> = aio.open_connection("127.0.0.1", server.port)
    busy:write("GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
    aio.sleep(0.05)
    server:close()
    assert.is_nil(aio.wait_for(function() return idle:read(1) end, 0.2))
    local answer = busy:read_all()
    assert.matches("^HTTP/1%.1 200", answer)
    assert.truthy(answer:find("Connection: close\r\n", 1, true))
    assert.matches("slow$", answer)
    aio.wait_for(function() server:wait_closed() end, 1)
  end)
end)
