-- The prompt (API.md §15, §10): `luaio` on a terminal, driven through a real
-- pseudo-terminal (tmux, on a socket of its own in a temporary directory,
-- killed at the end of each test), and through pipes (`luaio -i`); its line
-- reader core.read_line; `luaio -e`, `--help`, the manual page; `luaio
-- --attach` against a small console that follows the monitor's protocol.
-- This file runs inside the host (busted is the main task).
local aio = require "luaio"
local P = require "spec.lib.peers"
local S = require "spec.support"

local LUAIO = P.luaio_bin()
local no_tmux = P.missing("tmux")

-- until fn() is true (a generous bound: it only guards against a hang)
local function until_true(what, fn, timeout)
  local deadline = aio.now() + (timeout or 30)
  while not fn() do
    if aio.now() > deadline then error("timed out waiting for " .. what, 2) end
    aio.sleep(0.03)
  end
end

local function count(s, needle)
  local n, at = 0, 1
  while true do
    local i = s:find(needle, at, true)
    if not i then return n end
    n, at = n + 1, i + #needle
  end
end

-- A terminal: luaio (or argv) in a tmux pane of 120x40 --------------------
local Term = {}
Term.__index = Term

local terms = 0

local function term_start(dir, opts)
  opts = opts or {}
  terms = terms + 1                                  -- a server (socket) of its own each time
  local self = setmetatable({ dir = dir, sock = ("%s/tmux-%d.sock"):format(dir, terms),
                              status = ("%s/status-%d"):format(dir, terms) }, Term)
  local env = { "INPUTRC=/dev/null", "HOME=" .. dir, "LUAIO_HISTORY=" .. (opts.history or dir .. "/history") }
  local cmd = { "env" }
  for _, e in ipairs(env) do cmd[#cmd + 1] = S.quote(e) end
  cmd[#cmd + 1] = S.quote(LUAIO)
  for _, a in ipairs(opts.args or {}) do cmd[#cmd + 1] = S.quote(a) end
  -- the exit status goes to a file; the pane stays for capture-pane
  local line = table.concat(cmd, " ") .. "; echo $? > " .. S.quote(self.status) .. "; sleep 600"
  local r = aio.exec({ "tmux", "-S", self.sock, "new-session", "-d", "-x", "120", "-y", "40", line })
  assert(r.status == 0, r.stderr)
  local pid = aio.exec({ "tmux", "-S", self.sock, "display-message", "-p", "#{pid}" })
  self.server_pid = tonumber(pid.stdout:match("%d+"))
  return self
end

function Term:tmux(...)
  local r = aio.exec({ "tmux", "-S", self.sock, ... })
  assert(r.status == 0, r.stderr)
  return r.stdout
end

function Term:type(text) self:tmux("send-keys", "-l", text) end
function Term:key(...) self:tmux("send-keys", ...) end
function Term:line(text) self:type(text) self:key("Enter") end
function Term:screen() return self:tmux("capture-pane", "-p", "-S", "-1000") end

-- wait until the screen shows `text` (n times, default 1) -> the screen
-- (tmux drops the spaces that end a line: so does `text`)
function Term:wait(text, n)
  text = text:gsub(" +$", "")
  local screen
  local ok = pcall(until_true, text, function()
    screen = self:screen()
    return count(screen, text) >= (n or 1)
  end)
  if not ok then error(("%q not on the terminal:\n%s"):format(text, screen), 2) end
  return screen
end

-- how many "> " prompts the screen shows (empty or with a line typed)
function Term:prompt_count()
  local n = 0
  for line in self:screen():gmatch("[^\n]*") do
    if line == ">" or line:sub(1, 2) == "> " then n = n + 1 end
  end
  return n
end

function Term:exit_status()
  local s = P.read(self.status)
  return s and tonumber(s:match("%d+"))
end

-- wait for the command in the pane to end -> its exit status
function Term:wait_exit()
  until_true("the exit status", function() return self:exit_status() ~= nil end)
  return self:exit_status()
end

function Term:stop()
  if self.stopped then return end
  self.stopped = true
  aio.exec({ "tmux", "-S", self.sock, "kill-server" })
  if self.server_pid then
    aio.exec({ "kill", "-KILL", tostring(self.server_pid) })
    pcall(until_true, "the tmux server's end", function()   -- gone, or a zombie
      local st = P.read("/proc/" .. self.server_pid .. "/stat") or ""
      return st == "" or st:match("^%d+ %b() (%a)") == "Z"
    end, 10)
  end
end

describe("the prompt on a terminal", function()
  local dir, term
  before_each(function() dir = P.tmpdir("prompt") end)
  after_each(function()
    if term then term:stop() term = nil end
    P.rmtree(dir)
  end)

  local function start(opts)
    term = term_start(dir, opts)
    term:wait("> ")
    return term
  end

  it("prints an expression's value and a table readably (nested, cycle marked, strings quoted)", function()
    if no_tmux then pending(no_tmux) return end
    start()
    term:wait("aio is predefined")
    term:line("12300 + 45")
    term:wait("12345")
    term:line('t = {1, "two", {x = 3, [10] = true}, name = "a\\tb"}; t.self = t')
    term:line("t")
    term:wait('{ 1, "two", { [10] = true, x = 3 }, name = "a\\tb", self = <cycle> }')
    term:line("=type(aio.sleep), #arg")
    local screen = term:wait('"function"')
    assert.truthy(screen:find('\n"function"%s+0\n'), screen)     -- (the tab, as the terminal shows it)
  end)

  it("recalls the previous line with the Up arrow, and writes the history file", function()
    if no_tmux then pending(no_tmux) return end
    start()
    term:line('"hist" .. 41 + 1')
    term:wait('"hist42"')
    term:key("Up")
    term:wait('> "hist" .. 41 + 1', 2)                 -- recalled onto the new prompt
    term:key("Enter")
    term:wait('"hist42"', 2)
    until_true("the history file", function()
      return (P.read(dir .. "/history") or ""):find('"hist" .. 41 + 1', 1, true) ~= nil
    end)
    term:key("C-d")
    term:wait_exit()
    term:stop()
    -- a new prompt starts with that history
    term = term_start(dir)
    term:wait("> ")
    term:key("Up")
    term:wait('> "hist" .. 41 + 1')
  end)

  it("keeps the history file to its last 1000 lines", function()
    if no_tmux then pending(no_tmux) return end
    local old = {}
    for i = 1, 1200 do old[i] = "old_" .. i end
    P.write(dir .. "/history", table.concat(old, "\n") .. "\n")
    start()
    term:key("Up")
    term:wait("> old_1200")                       -- loaded
    term:key("C-u")
    term:line("newest_line = 1")
    local lines
    until_true("the history file, appended to, then cut to 1000 lines", function()
      lines = {}
      for l in (P.read(dir .. "/history") or ""):gmatch("[^\n]+") do lines[#lines + 1] = l end
      return lines[#lines] == "newest_line = 1" and #lines <= 1000
    end)
    assert.equal(1000, #lines)
    assert.equal("old_202", lines[1])
    assert.equal("newest_line = 1", lines[1000])
  end)

  it("continues an incomplete statement on the next line (a multi-line function)", function()
    if no_tmux then pending(no_tmux) return end
    start()
    term:line("function sq(x)")
    term:wait(">> ")
    term:line("  return x * x")
    term:line("end")
    term:line("sq(111)")
    term:wait("12321")
  end)

  it("prints an error with its traceback, and the prompt stays", function()
    if no_tmux then pending(no_tmux) return end
    start()
    term:line('error("boom-" .. 1)')
    term:wait("stdin:1: boom-1")
    term:wait("stack traceback:")
    term:line("for")                                 -- incomplete: continues
    term:wait(">> ")
    term:line("x x")                                 -- now a syntax error
    term:wait("'=' or 'in' expected")
    term:line("5000 + 55")
    term:wait("5055")
  end)

  it("keeps the loop running while it waits: a server started at the prompt answers", function()
    if no_tmux then pending(no_tmux) return end
    start()
    local port = P.free_port()
    term:line(("srv = aio.start_server(function(s) s:write('hi from the prompt\\n') end, '127.0.0.1', %d)"):format(port))
    P.wait_port(port, 30)
    for _ = 1, 3 do                                  -- and again: nothing runs a line meanwhile
      local s = aio.open_connection("127.0.0.1", port)
      assert.equal("hi from the prompt", aio.timeout(30, s.readline, s))
      s:close()
    end
    term:line("srv:close() 'closed'")
  end)

  it("keeps spawned tasks running between lines", function()
    if no_tmux then pending(no_tmux) return end
    start()
    local file = dir .. "/ticks"
    term:line(("aio.spawn(function() for i = 1, 100000 do local f = io.open(%q, 'w') f:write(i) f:close() aio.sleep(0.02) end end)"):format(file))
    local first
    until_true("the first tick", function() first = tonumber(P.read(file) or "") return first ~= nil end)
    until_true("more ticks", function() return (tonumber(P.read(file) or "") or 0) > first + 5 end)
  end)

  it("cancels the running line on Ctrl-C; the prompt comes back", function()
    if no_tmux then pending(no_tmux) return end
    start()
    term:line('print("sl" .. "eeping") aio.sleep(100) print("not" .. "reached")')
    term:wait("sleeping")
    local prompts = term:prompt_count()
    term:key("C-c")
    term:wait("CancelledError: SIGINT")
    until_true("the prompt", function() return term:prompt_count() > prompts end)
    term:line("7000 + 7")
    term:wait("7007")
    assert.equal(0, count(term:screen(), "notreached"))
  end)

  it("interrupts a line that never yields on Ctrl-C (and one that catches it goes on)", function()
    if no_tmux then pending(no_tmux) return end
    start()
    term:line('print("sp" .. "inning") while true do end')
    term:wait("spinning")
    term:key("C-c")
    term:wait("CancelledError: SIGINT")
    term:line('print("ca" .. "tching") print(pcall(function() while true do end end)) print("went" .. " on")')
    term:wait("catching")
    term:key("C-c")
    local screen = term:wait("went on")
    assert.truthy(screen:find("false%s+CancelledError: SIGINT\n"), screen)
    term:line("6000 + 6")
    term:wait("6006")
  end)

  it("clears the line being typed on Ctrl-C at the prompt", function()
    if no_tmux then pending(no_tmux) return end
    start()
    term:type('"left')
    term:wait('> "left')
    term:key("C-c")
    term:wait("^C")
    term:line('"ri" .. "ght"')
    term:wait('"right"')
    assert.equal(0, count(term:screen(), "unfinished string"))
  end)

  it("exits with status 0 on Ctrl-D", function()
    if no_tmux then pending(no_tmux) return end
    start()
    term:line("x = 1")
    term:key("C-d")
    assert.equal(0, term:wait_exit())
  end)

  it("gives the terminal back clean after a read_line timed out", function()
    if no_tmux then pending(no_tmux) return end
    term = term_start(dir, { args = { "-e", [[
      local core = require "luaio.core"
      local ok, e = pcall(aio.wait_for, function() return core.read_line("first> ") end, 1)
      print("timed out:", aio.is_error(e, "TimeoutError"), core.line_editing())
      print("got", aio.pretty(core.read_line("second> ")))
    ]] } })
    term:wait("first> ")
    term:type("typed then dropped")
    term:wait("timed out:")
    term:wait("second> ")
    term:line("hello")
    local screen = term:wait("got")
    assert.truthy(screen:find('timed out:%s+true%s+true'), screen)
    assert.truthy(screen:find('got%s+"hello"'), screen)
    assert.equal(0, term:wait_exit())
  end)

  it("talks to a monitor console with --attach (prompt 'monitor> ')", function()
    if no_tmux then pending(no_tmux) return end
    local path = dir .. "/mon.sock"
    local srv = aio.start_server(function(s)
      s:write("fake console\n\n")
      for line in s:lines() do s:write("echo: " .. line .. "\n\n") end
    end, path)
    term = term_start(dir, { args = { "--attach", path } })
    term:wait("fake console")
    term:wait("monitor> ")
    term:line("ps")
    term:wait("echo: ps")
    term:key("Up")
    term:wait("monitor> ps", 2)
    term:key("Enter")
    term:wait("echo: ps", 2)
    term:key("C-d")
    assert.equal(0, term:wait_exit())
    srv:close()
  end)
end)

-- Without a terminal ---------------------------------------------------------
-- run luaio with argv, `input` on its stdin -> stdout, stderr, exit status
local function run_piped(argv, input, env)
  local cmd = { LUAIO }
  for _, a in ipairs(argv) do cmd[#cmd + 1] = a end
  local r = aio.timeout(60, aio.exec, cmd, { stdin = input, env = env })
  return r.stdout, r.stderr, r.status
end

describe("the prompt without a terminal (luaio -i)", function()
  it("reads plain lines and prints results", function()
    local out, err, status = run_piped({ "-i" }, 'x = 20\nx + 22\n{a = {b = {1, 2}}}\nfunction f()\nreturn "multi"\nend\nf()\nerror("oops")\n"after"\n')
    assert.equal(0, status)
    assert.equal('42\n{ a = { b = { 1, 2 } } }\n"multi"\n"after"\n', out)
    assert.truthy(err:find("stdin:1: oops", 1, true))
  end)

  it("runs a script first, then the prompt, with -i", function()
    local script = S.tmpfile("greeting = 'from the script'\n", ".lua")
    local out, _, status = run_piped({ "-i", script }, "greeting\n")
    os.remove(script)
    assert.equal(0, status)
    assert.equal('"from the script"\n', out)
  end)

  it("leaves `luaio` with piped stdin and `luaio -` running stdin as a script, and scripts reading stdin", function()
    for _, argv in ipairs({ {}, { "-" } }) do
      local out, err, status = run_piped(argv, "print(1 + 1)\nprint(aio)\n")
      assert.equal(0, status, err)
      assert.equal("2\nnil\n", out)
    end
    local script = S.tmpfile("print('read', io.read('l'), io.read('l'))", ".lua")
    local out, _, status = run_piped({ script }, "first\nsecond\n")
    os.remove(script)
    assert.equal(0, status)
    assert.equal("read\tfirst\tsecond\n", out)
  end)

  it("works as aio.repl from stock lua5.4 too (lines read by a pool thread, the loop running)", function()
    if P.missing("lua5.4") then pending(P.missing("lua5.4")) return end
    -- stock lua5.4 cannot load a sanitizer-built luaio.so (no ASan runtime in it)
    if os.getenv("LUAIO_SANITIZED") then pending("a sanitized build: stock lua5.4 cannot load luaio.so") return end
    local dir = os.getenv("LUAIO_MODULE_DIR") or (P.cwd() .. "/build")
    local r = aio.timeout(60, aio.exec, { "lua5.4", "-e", "package.cpath = " .. ("%q"):format(dir .. "/?.so;") .. " .. package.cpath",
      "-e", "local aio = require 'luaio' aio.run(function() n = 0 aio.spawn(function() while true do n = n + 1 aio.sleep(0.01) end end) aio.repl() end)" },
      { stdin = "aio.sleep(0.2)\nn > 5, {1}\n" })
    assert.equal(0, r.status, r.stderr)
    assert.equal("> > true\t{ 1 }\n> ", r.stdout)
  end)

  it("ends at end of input inside an unfinished statement with its syntax error", function()
    local out, err, status = run_piped({ "-i" }, "function g()\n")
    assert.equal(0, status)
    assert.equal("", out)
    assert.truthy(err:find("'end' expected", 1, true))
  end)
end)

describe("core.read_line (the command's line reader)", function()
  local function reader_script(code)
    return S.tmpfile("local aio, core = require 'luaio', require 'luaio.core'\n" .. code, ".lua")
  end

  it("reads lines through the loop: other tasks run while it waits", function()
    local script = reader_script([[
      local ticks = 0
      local t = aio.spawn(function() while true do ticks = ticks + 1 aio.sleep(0.01) end end)
      local a = core.read_line()
      local b = core.read_line("ignored prompt> ")
      local c = core.read_line()
      local d = core.read_line()
      t:cancel()
      print(a, b, c, d, ticks > 0)
    ]])
    local p = aio.spawn_process({ LUAIO, script })
    p.stdin:write("one\r\n")
    aio.sleep(0.2)
    p.stdin:write("two\nthree")
    p.stdin:close()
    local out = aio.timeout(60, p.stdout.read_all, p.stdout)
    assert.equal(0, aio.timeout(60, p.wait, p))
    p:close()
    os.remove(script)
    assert.equal("one\ttwo\tthree\tnil\ttrue\n", out)
  end)

  it("stays usable after a timeout and a cancellation (no line lost)", function()
    local script = reader_script([[
      local ok, e = pcall(aio.wait_for, function() return core.read_line() end, 0.1)
      print("timeout", aio.is_error(e, "TimeoutError"))
      local t = aio.spawn(core.read_line)
      aio.sleep(0.05)
      t:cancel()
      print("cancelled", pcall(t.wait, t) == false and t:cancelled())
      io.stdout:flush()
      print("line", core.read_line())
      print("line", core.read_line())
    ]])
    local p = aio.spawn_process({ LUAIO, script })
    local first = aio.timeout(60, p.stdout.readline, p.stdout)
    assert.equal("timeout\ttrue", first)
    assert.equal("cancelled\ttrue", aio.timeout(60, p.stdout.readline, p.stdout))
    p.stdin:write("alpha\nbeta\n")
    p.stdin:close()
    local rest = aio.timeout(60, p.stdout.read_all, p.stdout)
    assert.equal(0, aio.timeout(60, p.wait, p))
    p:close()
    os.remove(script)
    assert.equal("line\talpha\nline\tbeta\n", rest)
  end)

  it("refuses bad input and a second reader clearly", function()
    local script = reader_script([[
      print(select(2, pcall(function() local l = core.read_line({}) return l end)))
      print(select(2, pcall(function() local l = core.read_line("a\0b") return l end)))
      local t = aio.spawn(core.read_line)
      aio.sleep(0.05)
      local ok, e = pcall(core.read_line)
      print(e.name, e.message)
      print(select(2, pcall(function() core.history_file("/tmp/x", 0) end)))
      print("first reader", t:wait())
    ]])
    local p = aio.spawn_process({ LUAIO, script })
    local lines = {}
    for _ = 1, 4 do lines[#lines + 1] = aio.timeout(60, p.stdout.readline, p.stdout) end
    p.stdin:write("for the first\n")
    p.stdin:close()
    lines[5] = aio.timeout(60, p.stdout.readline, p.stdout)
    assert.equal(0, aio.timeout(60, p.wait, p))
    p:close()
    os.remove(script)
    assert.truthy(lines[1]:find("bad argument #1 to 'read_line' (string expected, got table)", 1, true), lines[1])
    assert.truthy(lines[2]:find("bad argument #1 to 'read_line'", 1, true), lines[2])
    assert.equal("InvalidStateError\tanother task is reading a line already", lines[3])
    assert.truthy(lines[4]:find("bad argument #2 to 'history_file'", 1, true), lines[4])
    assert.equal("first reader\tfor the first", lines[5])          -- the first reader was not disturbed
  end)

  it("reads a regular file on stdin too (it cannot be polled)", function()
    local input = S.tmpfile("from a file\nlast")
    local script = reader_script("print(core.read_line(), core.read_line(), core.read_line())")
    local out, _, status = S.sh(S.quote(LUAIO) .. " " .. script .. " < " .. input)
    os.remove(input)
    os.remove(script)
    assert.equal(0, status)
    assert.equal("from a file\tlast\tnil\n", out)
  end)
end)

describe("the luaio command's options", function()
  it("predefines aio in -e", function()
    local out, err, status = run_piped({ "-e", "print(aio.version())" }, "")
    assert.equal(0, status, err)
    assert.truthy(out:match("^luaio %d+%.%d+%.%d+ %(Lua 5%.4"), out)
  end)

  it("prints its usage with --help, every option and environment variable", function()
    for _, opt in ipairs({ "--help", "-h" }) do
      local out, _, status = run_piped({ opt }, "")
      assert.equal(0, status)
      for _, word in ipairs({ "-e code", "-i", "-v", "--workers", "--grace", "--attach PATH", "  -  ",
                              "LUAIO_DEBUG", "LUAIO_MONITOR", "LUAIO_HISTORY", "LUAIO_LUA_DIR", "LUAIO_ALLOC", "exit status" }) do
        assert.truthy(out:find(word, 1, true), word .. " missing from --help")
      end
    end
    local out, err, status = run_piped({ "--nonsense" }, "")
    assert.equal(1, status)
    assert.equal("", out)
    assert.truthy(err:find("unknown option '--nonsense'", 1, true))
  end)
end)

describe("luaio --attach", function()
  local dir
  before_each(function() dir = P.tmpdir("attach") end)
  after_each(function() P.rmtree(dir) end)

  -- a console following the monitor's protocol: a greeting answer, then one
  -- answer a command, each ended by an empty line; "bye" closes
  local function fake_console(path, seen)
    return aio.start_server(function(s)
      s:write("fake monitor 1.0\nhelp for commands\n\n")
      for line in s:lines() do
        seen[#seen + 1] = line
        if line == "bye" then return end
        s:write("answer to " .. line .. "\nsecond line\n\n")
      end
    end, path)
  end

  it("prints the greeting and each answer up to its empty line; Ctrl-D (end of input) exits 0", function()
    local seen = {}
    local srv = fake_console(dir .. "/m.sock", seen)
    local out, err, status = run_piped({ "--attach", dir .. "/m.sock" }, "ps\n\n   \nwhere 3\n")
    srv:close()
    assert.equal(0, status, err)
    assert.equal("fake monitor 1.0\nhelp for commands\nanswer to ps\nsecond line\nanswer to where 3\nsecond line\n", out)
    assert.same({ "ps", "where 3" }, seen)                  -- blank lines are not sent
  end)

  it("says so and exits when the console closes the socket", function()
    local seen = {}
    local srv = fake_console(dir .. "/m.sock", seen)
    local out, err, status = run_piped({ "--attach", dir .. "/m.sock" }, "stats\nbye\nps\n")
    srv:close()
    assert.equal(0, status)
    assert.equal("fake monitor 1.0\nhelp for commands\nanswer to stats\nsecond line\n", out)
    assert.truthy(err:find("closed the connection", 1, true), err)
    assert.same({ "stats", "bye" }, seen)
  end)

  it("fails clearly (status 1) when nothing listens at the path", function()
    local out, err, status = run_piped({ "--attach", dir .. "/none.sock" }, "")
    assert.equal(1, status)
    assert.equal("", out)
    assert.truthy(err:find("cannot connect to " .. dir .. "/none.sock", 1, true), err)
    out, err, status = run_piped({ "--attach" }, "")
    assert.equal(1, status)
    assert.truthy(err:find("usage", 1, true))
  end)
end)

describe("aio.pretty", function()
  it("quotes strings and escapes what is not printable", function()
    assert.equal('"a\\"b\\\\c\\n\\x00"', aio.pretty('a"b\\c\n\0'))
    assert.equal('"héllo"', aio.pretty("héllo"))
    assert.equal('"\\xff"', aio.pretty("\255"))
    assert.equal("12\t1.5\t1.0\ttrue\tnil", table.concat({ aio.pretty(12), aio.pretty(1.5), aio.pretty(1.0),
                                                          aio.pretty(true), aio.pretty(nil) }, "\t"))
  end)

  it("prints the sequence first, then keys sorted (numbers, strings, others), bracketing odd keys", function()
    assert.equal('{ 1, 2, [-1.5] = 0, [5] = "x" }', aio.pretty({ 1, 2, [5] = "x", [-1.5] = 0 }))
    assert.equal('{ [-1.5] = 0, [5] = "x", a = 1, b = 2, ["c d"] = 3, ["end"] = 4, [true] = 5 }',
      aio.pretty({ b = 2, a = 1, ["c d"] = 3, ["end"] = 4, [true] = 5, [5] = "x", [-1.5] = 0 }))
    assert.equal("{}", aio.pretty({}))
  end)

  it("marks cycles and bounds depth and length", function()
    local t = { name = "root" }
    t.me = t
    t.kids = { { up = t } }
    assert.equal('{ kids = { { up = <cycle> } }, me = <cycle>, name = "root" }', aio.pretty(t))
    local shared = { 1 }
    assert.equal("{ { 1 }, { 1 } }", aio.pretty({ shared, shared }))   -- met twice, no cycle
    assert.equal("{ { {...} } }", aio.pretty({ { { { 1 } } } }, { depth = 2 }))
    local long = {}
    for i = 1, 10 do long[i] = i end
    assert.equal("{ 1, 2, 3, ... (7 more) }", aio.pretty(long, { items = 3 }))
  end)

  it("breaks what does not fit the width into one entry a line", function()
    local s = aio.pretty({ alpha = string.rep("a", 30), beta = { string.rep("b", 30), 2 } }, { width = 40 })
    assert.equal('{\n  alpha = "' .. string.rep("a", 30) .. '",\n  beta = {\n    "' .. string.rep("b", 30) .. '",\n    2\n  }\n}', s)
  end)

  it("shows __tostring (errors, tasks), survives one that fails, and checks its options", function()
    assert.equal("TimeoutError: late", aio.pretty(aio.new_error("TimeoutError", "late")))
    local bad = setmetatable({}, { __tostring = function() error("nope") end })
    assert.truthy(aio.pretty(bad):find("^<__tostring failed: "))
    local hostile = setmetatable({}, { __index = error, __len = error, __lt = error, __pairs = error,
                                       __tostring = function() error("no") end })
    local s = aio.pretty({ [hostile] = hostile, [{}] = 1, [print] = 2 })   -- keys of odd types sort too
    assert.truthy(s:find("[{}] = 1", 1, true), s)
    assert.truthy(aio.pretty(aio.pretty):find("^function"))
    assert.has_error(function() aio.pretty(1, 5) end, "bad argument #2 to 'aio.pretty' (table expected, got number)")
    local ok, e = pcall(aio.pretty, 1, { depth = 0 })
    assert.is_false(ok)
    assert.truthy(tostring(e):find("bad argument #2 to 'aio.pretty' (opts.depth must be a positive integer)", 1, true), e)
  end)
end)
