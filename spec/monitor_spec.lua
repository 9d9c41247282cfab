-- The task monitor (API.md §15, lua/luaio/monitor.lua): a child `luaio`
-- runs a script with LUAIO_MONITOR=PATH whose tasks wait on each kind of
-- thing; Python (another process) talks to the socket and checks ps, where,
-- cancel, stats, errors, several clients and clients that leave mid-answer;
-- the socket's mode, the stale-socket rule, the program's normal end while
-- the monitor listens, and that a deadlock is still a deadlock. Then
-- aio.monitor in this process (bad input, close) and t:traceback().
local aio = require "luaio"
local P = require "spec.lib.peers"

-- a client: connects to argv[1], reads the greeting, then for each command
-- in argv[2:] sends it and reads the answer; prints the answers as JSON.
-- A command "!leave" sends ps and closes without reading the answer.
local CLIENT = [[
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
f = s.makefile("rw")
def answer():
    lines = []
    while True:
        line = f.readline()
        if line == "":
            raise SystemExit("the monitor closed the connection")
        if line == "\n":
            return lines
        lines.append(line[:-1])
out = [answer()]
for cmd in sys.argv[2:]:
    if cmd == "!leave":
        f.write("ps\n"); f.flush(); s.close(); break
    f.write(cmd + "\n"); f.flush()
    out.append(answer())
print(json.dumps(out))
]]

-- -> greeting, answer1, answer2, ... (arrays of lines)
local function ask(sock, ...)
  local out = P.python(CLIENT, { sock, ... }, 60)
  return table.unpack(aio.json.decode(out))
end

local CHILD = [[
local aio = require "luaio"
local dir = arg[1]
local lock, q, ev = aio.Lock(), aio.Queue(3), aio.Event()
local held = lock:acquire()
local function exists(p) local f = io.open(p) if f then f:close() return true end end
local server = aio.start_server(function(s) s:readline() end, "127.0.0.1", 0)
local conn = aio.open_connection("127.0.0.1", server.port)
local proc = aio.spawn_process({ "sleep", "60" })
local killer <close> = setmetatable({}, { __close = function() proc:kill("SIGKILL") end })
aio.spawn(function() aio.sleep(600) end).name = "sleeper"                   -- @sleep
aio.spawn(function() lock:acquire() end).name = "locker"                     -- @lock
aio.spawn(function() q:get() end).name = "getter"                            -- @queue
aio.spawn(function() conn:readline() end).name = "reader"                    -- @read
aio.spawn(function() proc:wait() end).name = "waiter"                        -- @process
aio.spawn(function()                                                         -- @thread
  aio.to_thread(function(flag)
    while not io.open(flag) do local t = os.clock() while os.clock() < t + 0.01 do end end
  end, dir .. "/stop")
end).name = "threader"
aio.spawn(function()                                                         -- @victim
  local ok, err = pcall(ev.wait, ev)
  io.stdout:write("VICTIM ", tostring(err), "\n") io.stdout:flush()
end).name = "victim"
io.stdout:write("READY\n") io.stdout:flush()
while not exists(dir .. "/stop") do aio.sleep(0.05) end
io.stdout:write("BYE\n") io.stdout:flush()
]]

local line_of = P.line_of

local function split(line)
  local f = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do f[#f + 1] = field end
  return f
end

-- ps lines -> name -> {id, name, state, wait, age, where}
local function by_name(lines)
  local t = {}
  for _, line in ipairs(lines) do
    local f = split(line)
    t[f[2]] = { id = f[1], name = f[2], state = f[3], wait = f[4], age = f[5], where = f[6] }
  end
  return t
end

local function start_child(dir, sock, code, name)
  local path = P.write(dir .. "/" .. name .. ".lua", code or CHILD)
  return P.start({ "env", "LUAIO_MONITOR=" .. sock, P.luaio_bin(), path, dir },
                 { dir = dir, name = name, cwd = dir }), path
end

describe("the monitor of a running program", function()
  local dir, sock, child, script

  lazy_setup(function()
    dir = P.tmpdir("monitor")
    sock = dir .. "/mon.sock"
    child, script = start_child(dir, sock, nil, "child")
    child:wait_for("READY\n", 30)
  end)

  lazy_teardown(function()
    if child then
      P.write(dir .. "/stop", "")
      local status = child:wait(30)           -- it ends by itself, the monitor listening
      child:stop(10)
      assert.equals(0, status)
      assert.matches("BYE\n", child:output())
    end
    P.rmtree(dir)
  end)

  it("makes its socket private to the user (mode 0600)", function()
    local st = aio.fs.stat(sock)
    assert.equals("socket", st.type)
    assert.equals(tonumber("600", 8), st.mode)
  end)

  it("greets, then lists each task with what it waits on and where it was spawned", function()
    local hello, ps = ask(sock, "ps")
    assert.matches("^luaio monitor, pid %d+, luaio .*; type help$", hello[1])
    local tasks = by_name(ps)
    for _, line in ipairs(ps) do
      assert.matches("^%d+\t", line)
      assert.equals(6, #split(line), line)
    end
    local function check(name, wait_pattern, marker)
      local t = tasks[name]
      assert.is_truthy(t, "no task " .. name .. " in:\n" .. table.concat(ps, "\n"))
      assert.equals("waiting", t.state)
      assert.matches(wait_pattern, t.wait)
      assert.matches("^%d+%.%ds$", t.age)
      assert.equals(script .. ":" .. line_of(CHILD, marker), t.where)
    end
    check("sleeper", "^sleep until %d+%.%d+ %(in %d+%.%d s%)$", "@sleep")
    check("locker", "^lock acquire %(luaio%.Lock%)$", "@lock")
    check("getter", "^queue get %(luaio%.Queue, 0 items/3%)$", "@queue")
    check("reader", "^stream read from 127%.0%.0%.1:%d+$", "@read")
    check("waiter", "^process wait pid %d+$", "@process")
    check("threader", "^thread job", "@thread")
    check("victim", "^event wait %(luaio%.Event%)$", "@victim")
    -- ids are distinct integers; the monitor's own tasks are not listed
    local seen = {}
    for _, t in pairs(tasks) do
      assert.is_nil(seen[t.id])
      seen[t.id] = true
      assert.not_equals("luaio-monitor", t.name)
    end
  end)

  it("shows where a task waits (where ID)", function()
    local _, ps = ask(sock, "ps")
    local id = by_name(ps).sleeper.id
    local _, tb = ask(sock, "where " .. id)
    assert.matches("^task " .. id .. " sleeper %(waiting%)$", tb[1])
    local text = table.concat(tb, "\n")
    assert.matches("stack traceback:", text, 1, true)
    assert.is_truthy(text:find(script .. ":" .. line_of(CHILD, "@sleep"), 1, true), text)
  end)

  it("cancels a task (cancel ID): the task gets a CancelledError", function()
    local _, ps = ask(sock, "ps")
    local id = by_name(ps).victim.id
    local _, ans, after = ask(sock, "cancel " .. id, "ps")
    assert.same({ "cancelled " .. id .. " victim" }, ans)
    assert.is_nil(by_name(after).victim)
    assert.matches("CancelledError: cancelled from the monitor", child:wait_for("VICTIM ([^\n]*)\n", 30), 1, true)
  end)

  it("gives stats: the loop's, memory and open resources", function()
    local _, st = ask(sock, "stats")
    local kv = {}
    for _, line in ipairs(st) do
      local k, v = line:match("^(%S+) (%S+)$")
      assert.is_truthy(k, line)
      kv[k] = v
    end
    for _, k in ipairs { "tasks", "ready", "timers", "handles", "switches", "iterations" } do
      assert.is_truthy(math.tointeger(tonumber(kv[k])), k)
    end
    assert.is_true(tonumber(kv.lua_memory_kb) > 0)
    assert.is_true(tonumber(kv.rss_kb) > 0)
    assert.is_true(tonumber(kv.open_resources) >= 3)
  end)

  it("talks to `luaio --attach PATH` (lines through a pipe: ps, where, a bad command)", function()
    local _, ps = ask(sock, "ps")
    local id = by_name(ps).sleeper.id
    local r = aio.exec({ P.luaio_bin(), "--attach", sock }, { stdin = "ps\nwhere " .. id .. "\nbogus\n", timeout = 30 })
    assert.equals(0, r.status, r.stderr)
    assert.matches("^luaio monitor, pid %d+", r.stdout)
    assert.matches("\n%d+\tsleeper\twaiting\tsleep until ", r.stdout)
    assert.matches("task " .. id .. " sleeper %(waiting%)", r.stdout)
    assert.is_truthy(r.stdout:find(script .. ":" .. line_of(CHILD, "@sleep"), 1, true), r.stdout)
    assert.matches('error: unknown command "bogus"', r.stdout)
  end)

  it("answers a bad command or id with an error line and keeps the connection", function()
    local _, a, b, c, d, e, help = ask(sock, "bogus", "where 99999", "where x", "cancel", "  ", "help")
    assert.same({ 'error: unknown command "bogus" (try help)' }, a)
    assert.same({ "error: no pending task with id 99999" }, b)
    assert.matches("^error: bad task id", c[1])
    assert.matches("^error: bad task id", d[1])
    assert.same({ "error: empty command (try help)" }, e)
    assert.matches("^ps ", help[1])
  end)

  it("serves several clients at once, and survives one leaving mid-answer", function()
    local clients = {}
    for i = 1, 4 do
      clients[i] = aio.spawn(ask, sock, i % 2 == 0 and "!leave" or "ps", "stats")
    end
    local results = aio.gather(clients)
    assert.equals(4, results.n)
    local _, ps = ask(sock, "ps")
    assert.is_truthy(by_name(ps).sleeper)
  end)
end)

describe("the monitor's socket and the program's end", function()
  local dir
  lazy_setup(function() dir = P.tmpdir("monitor_end") end)
  lazy_teardown(function() P.rmtree(dir) end)

  it("does not keep the program alive, and removes its socket", function()
    local sock = dir .. "/end.sock"
    local code = 'local aio = require "luaio" aio.sleep(0.2) print("END")'
    local path = P.write(dir .. "/end.lua", code)
    local r = aio.exec({ "env", "LUAIO_MONITOR=" .. sock, P.luaio_bin(), path }, { timeout = 60 })
    assert.equals(0, r.status, r.stderr)
    assert.equals("END\n", r.stdout)
    assert.is_false(aio.fs.exists(sock))
  end)

  it("hides no deadlock: the main task still gets DeadlockError", function()
    local path = P.write(dir .. "/dead.lua", 'local aio = require "luaio" aio.Event():wait()')
    local r = aio.exec({ "env", "LUAIO_MONITOR=" .. dir .. "/dead.sock", P.luaio_bin(), path }, { timeout = 60 })
    assert.equals(1, r.status)
    assert.matches("DeadlockError", r.stderr)
  end)

  it("replaces a stale socket, and refuses a path in use or not a socket", function()
    local sock = dir .. "/stale.sock"
    -- a socket file nobody listens on (a crashed program's)
    P.python("import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()", { sock })
    assert.equals("socket", aio.fs.stat(sock).type)
    local child = start_child(dir, sock, nil, "stale")
    local ok, err = pcall(function()
      child:wait_for("READY\n", 30)
      local hello = ask(sock, "help")
      assert.matches("^luaio monitor", hello[1])
      -- while it listens, a second program may not take the path
      local path = P.write(dir .. "/second.lua", 'print("RAN")')
      local r = aio.exec({ "env", "LUAIO_MONITOR=" .. sock, P.luaio_bin(), path }, { timeout = 60 })
      assert.equals(1, r.status)
      assert.equals("", r.stdout)
      assert.matches("LUAIO_MONITOR: .*another program listens on this socket", r.stderr)
    end)
    P.write(dir .. "/stop", "")
    child:wait(30)
    child:stop(10)
    os.remove(dir .. "/stop")
    assert(ok, err)
    local file = P.write(dir .. "/plain", "data")
    local path = P.write(dir .. "/third.lua", 'print("RAN")')
    local r = aio.exec({ "env", "LUAIO_MONITOR=" .. file, P.luaio_bin(), path }, { timeout = 60 })
    assert.equals(1, r.status)
    assert.matches("exists and is not a socket", r.stderr)
    assert.equals("data", P.read(file))
  end)
end)

describe("aio.monitor in this process", function()
  local dir
  lazy_setup(function() dir = P.tmpdir("monitor_here") end)
  lazy_teardown(function() P.rmtree(dir) end)

  it("refuses bad paths with clear errors", function()
    local function bad(pattern, ...)
      local ok, err = pcall(aio.monitor, ...)
      assert.is_false(ok)
      assert.matches(pattern, tostring(err))
    end
    bad("bad argument #1 to 'aio.monitor' %(string expected, got number%)", 42)
    bad("bad argument #1 to 'aio.monitor' %(string expected, got no value%)")
    bad("bad argument #1 to 'aio.monitor' %(string contains a NUL byte%)", dir .. "/a\0b")
    bad("bad argument #1 to 'aio.monitor' %(empty path%)", "")
    bad("path too long for a Unix socket", dir .. "/" .. ("x"):rep(200))
    bad("OSError: monitor: " .. dir:gsub("%p", "%%%0") .. ": exists and is not a socket", dir)
    bad("OSError: monitor: .*No such file or directory", dir .. "/missing/sock")
  end)

  it("opens a console whose handle closes it and removes the socket", function()
    local sock = dir .. "/here.sock"
    local m = aio.monitor(sock)
    local t = aio.spawn(aio.sleep, 600)
    t.name = "here-sleeper"
    local _, ps = ask(sock, "ps")
    local mine = by_name(ps)["here-sleeper"]
    assert.is_truthy(mine, table.concat(ps, "\n"))
    assert.matches("^sleep until", mine.wait)
    assert.matches("monitor_spec.lua:%d+$", mine.where)
    t:cancel()
    m.close()
    m.close()                                 -- idempotent
    assert.is_false(aio.fs.exists(sock))
    assert.has_error(function() ask(sock, "ps") end)
  end)
end)

describe("t:traceback()", function()
  it("is where a pending task waits", function()
    local t = aio.spawn(function()
      aio.sleep(600)                          -- @here
    end)
    aio.sleep(0)
    local tb = t:traceback()
    assert.matches("^task %d+ Task%-%d+ %(waiting%)\nstack traceback:", tb)
    assert.matches("monitor_spec.lua:" .. debug.getinfo(1, "l").currentline - 5 .. ":", tb)
    t:cancel()
    aio.sleep(0)
  end)

  it("follows a wait inside a user coroutine", function()
    local q = aio.Queue()
    local t = aio.spawn(function()
      local gen = coroutine.wrap(function()
        q:get()                               -- waits inside the coroutine
      end)
      gen()
    end)
    aio.sleep(0)
    local tb = t:traceback()
    assert.matches("monitor_spec.lua:" .. debug.getinfo(1, "l").currentline - 6 .. ":", tb)
    assert.matches("in a coroutine resumed by:", tb, 1, true)
    q:put(1)
    t:wait()
  end)

  it("is the running task's own stack, a new task's note, a failed task's error traceback", function()
    local me = aio.current_task()
    assert.matches("%(running%)\nstack traceback:\n.*monitor_spec.lua:" .. debug.getinfo(1, "l").currentline, me:traceback())
    local new = aio.spawn(function() error("boom") end)
    assert.matches("not started yet", new:traceback())
    pcall(new.wait, new)
    assert.matches("boom", new:traceback())
    local fine = aio.spawn(function() return 1 end)
    fine:wait()
    assert.is_nil(fine:traceback())
  end)
end)
