-- Real peers for the integration specs (nginx, Chromium, Python servers,
-- luaio child processes): each one started by the test in a temp directory,
-- its output to a log file there, and stopped by its PID (kill, then wait;
-- SIGKILL when it does not go). Nothing here touches a system service.
local aio = require "luaio"

local P = {}

-- the process's real working directory ($PWD is the shell's: under ctest it
-- names build/, while the specs run in the source tree)
function P.cwd()
  local p = io.popen("pwd -P")
  local dir = p:read("l")
  p:close()
  return dir
end

-- the luaio binary running these specs (a child server is started with
-- it); under another interpreter, the one spec/support.lua names
function P.luaio_bin()
  local r = aio.exec({ "readlink", "-f", "/proc/" .. P.self_pid() .. "/exe" })
  local exe = r.stdout:gsub("%s+$", "")
  if exe:match("luaio[^/]*$") then return exe end
  local bin = require("spec.support").luaio       -- (under valgrind: /proc/self/exe is valgrind's)
  if bin:sub(1, 1) ~= "/" then bin = P.cwd() .. "/" .. bin end   -- children may run elsewhere
  return bin
end

local self_pid
function P.self_pid()
  if not self_pid then
    local f = assert(io.open("/proc/self/stat"))
    self_pid = tonumber(f:read("a"):match("^(%d+)"))
    f:close()
  end
  return self_pid
end

-- the full path of an executable on PATH (or an absolute path that is one), nil when missing
function P.which(name)
  local r = aio.exec({ "sh", "-c", 'command -v "$1"', "sh", name })
  local path = r.status == 0 and r.stdout:gsub("%s+$", "") or ""
  if path == "" then return nil end
  return path
end

-- a binary's absence as a pending reason (nil when all are there)
function P.missing(...)
  for _, name in ipairs({ ... }) do
    if not P.which(name) then return name .. " is not installed" end
  end
end

function P.tmpdir(tag)
  local r = aio.exec({ "mktemp", "-d", "/tmp/luaio-" .. (tag or "peer") .. ".XXXXXX" })
  assert(r.status == 0, r.stderr)
  return (r.stdout:gsub("%s+$", ""))
end

function P.rmtree(dir)
  if dir and dir:match("^/tmp/luaio%-") then aio.exec({ "rm", "-rf", "--", dir }) end
end

function P.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  return path
end

function P.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local d = f:read("a")
  f:close()
  return d
end

-- a port nobody listens on now (bound on 127.0.0.1 with port 0, then closed)
function P.free_port()
  local s = aio.start_server(function() end, "127.0.0.1", 0)
  local port = s.port
  s:close()
  s:wait_closed()
  return port
end

-- VmHWM / VmRSS of a process in KiB
function P.mem_kib(pid, field)
  local data = P.read("/proc/" .. (pid or "self") .. "/status") or ""
  return tonumber(data:match((field or "VmHWM") .. ":%s+(%d+)"))
end

-- A started peer -------------------------------------------------------------
local Proc = {}
Proc.__index = Proc

-- start(argv, {dir=, name=, group=, cwd=, split=}): argv runs with stdin
-- from /dev/null and stdout + stderr appended to <dir>/<name>.log (with
-- split = true, stdout to <dir>/<name>.out: proc:stdout()). group = true
-- gives it a session of its own (setsid execs in place, so the PID stays the
-- same and is the group's id): stop() then ends its children too (Chromium).
function P.start(argv, opts)
  opts = opts or {}
  local dir = assert(opts.dir, "opts.dir")
  local name = opts.name or argv[1]:match("[^/]+$")
  local log = dir .. "/" .. name .. ".log"
  local out = opts.split and (dir .. "/" .. name .. ".out") or log
  local cmd = { "sh", "-c", 'log=$1; out=$2; shift 2; exec "$@" >>"$out" 2>>"$log" </dev/null', "sh", log, out }
  if opts.group then cmd[#cmd + 1] = "setsid" end
  for _, a in ipairs(argv) do cmd[#cmd + 1] = a end
  local proc = aio.spawn_process(cmd, { cwd = opts.cwd })
  return setmetatable({ proc = proc, pid = proc.pid, log = log, out = out, name = name, group = opts.group }, Proc)
end

function Proc:output() return P.read(self.log) or "" end
function Proc:stdout() return P.read(self.out) or "" end

-- wait up to `timeout` seconds for the process to end by itself -> status,
-- or nil (still running)
function Proc:wait(timeout)
  local ok, st = pcall(aio.timeout, timeout or 10, self.proc.wait, self.proc)
  if ok then return st end
  if not aio.is_error(st, "TimeoutError") then error(st, 0) end
  return nil
end

function Proc:running()
  return not self.stopped and self.proc.returncode == nil
end

-- wait until the log matches pattern -> its captures (raises if the process ends first)
function Proc:wait_for(pattern, timeout)
  local deadline = aio.now() + (timeout or 10)
  while true do
    local caps = { self:output():match(pattern) }
    if caps[1] ~= nil then return table.unpack(caps) end
    if self.proc.returncode ~= nil then
      error(("%s exited (%s) before %q showed in its log:\n%s"):format(self.name, tostring(self.proc.returncode),
        pattern, self:output():sub(-3000)), 2)
    end
    if aio.now() > deadline then
      error(("%s: %q not in its log after %gs:\n%s"):format(self.name, pattern, timeout or 10,
        self:output():sub(-3000)), 2)
    end
    aio.sleep(0.02)
  end
end

-- the shell's own kill (no procps needed); a group that is gone is fine
local function signal_group(pid, sig)
  aio.exec({ "sh", "-c", 'kill -' .. sig .. ' -"$1" 2>/dev/null', "sh", tostring(math.tointeger(pid)) })
end

-- SIGTERM, wait up to `timeout` seconds, then SIGKILL; idempotent. -> status, signal
function Proc:stop(timeout)
  if self.stopped then return self.status, self.signal end
  self.stopped = true
  local proc = self.proc
  if proc.returncode == nil then
    if self.group then signal_group(self.pid, "TERM") else pcall(proc.kill, proc, "SIGTERM") end
  end
  local ok, st, sig = pcall(aio.timeout, timeout or 5, proc.wait, proc)
  if not ok then
    if self.group then signal_group(self.pid, "KILL") else pcall(proc.kill, proc, "SIGKILL") end
    st, sig = proc:wait()
  end
  -- stragglers of a group (a browser's helpers) go too
  if self.group then signal_group(self.pid, "KILL") end
  proc:close()
  self.status, self.signal = st, sig
  return st, sig
end

-- connect until the port answers (the peer is listening)
function P.wait_port(port, timeout, proc)
  local deadline = aio.now() + (timeout or 10)
  while true do
    local ok, s = pcall(aio.open_connection, "127.0.0.1", port)
    if ok then s:close() return true end
    if proc and proc.proc.returncode ~= nil then
      error(proc.name .. " exited before listening:\n" .. proc:output():sub(-3000), 2)
    end
    if aio.now() > deadline then error("nothing listens on port " .. port .. ": " .. tostring(s), 2) end
    aio.sleep(0.02)
  end
end

-- nginx ------------------------------------------------------------------------
-- nginx(dir, http_block) runs nginx in the foreground (no master process:
-- one process, its PID is all there is) with every path inside dir; the
-- http block's text may use $PORT for the port it listens on, which is
-- chosen free. -> proc, port
function P.nginx(dir, server_text, http_extra)
  local last
  for _ = 1, 3 do                                        -- a free port taken meanwhile: try another
    local port = P.free_port()
    local conf = ([[
worker_processes 1;
master_process off;
pid %s/nginx.pid;
error_log %s/error.log info;
events { worker_connections 1024; }
http {
  access_log %s/access.log;
  client_body_temp_path %s/client_body;
  proxy_temp_path %s/proxy_temp;
  fastcgi_temp_path %s/fastcgi_temp;
  uwsgi_temp_path %s/uwsgi_temp;
  scgi_temp_path %s/scgi_temp;
  %s
  server {
    listen 127.0.0.1:%d;
    %s
  }
}
]]):format(dir, dir, dir, dir, dir, dir, dir, dir, http_extra or "", port, server_text)
    P.write(dir .. "/nginx.conf", conf)
    local proc = P.start({ "nginx", "-p", dir .. "/", "-e", dir .. "/error.log", "-c", dir .. "/nginx.conf",
      "-g", "daemon off;" }, { dir = dir, name = "nginx" })
    local ok, err = pcall(P.wait_port, port, 10, proc)
    if ok then return proc, port end
    proc:stop()
    last = err
    if not (P.read(dir .. "/error.log") or ""):find("Address already in use", 1, true) then break end
  end
  error("nginx did not start: " .. tostring(last) .. "\n" .. (P.read(dir .. "/error.log") or ""))
end

-- Chromium ---------------------------------------------------------------------
P.CHROMIUM_FLAGS = { "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
  "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
  "--disable-background-networking", "--disable-component-update", "--metrics-recording-only",
  "--mute-audio", "--password-store=basic", "--use-mock-keychain", "--disable-breakpad",
  "--disable-crash-reporter" }

function P.chromium_bin()
  return P.which("chromium") or P.which("chromium-browser") or P.which("google-chrome")
end

-- chromium(dir, url [, extra flags [, opts for start]]) -> proc, in a
-- process group of its own; HOME is dir too (its crash handler's database
-- goes under $HOME whatever the profile directory)
function P.chromium(dir, url, extra, opts)
  local argv = { "env", "HOME=" .. dir, "XDG_CONFIG_HOME=" .. dir .. "/config", "XDG_CACHE_HOME=" .. dir .. "/cache",
    P.chromium_bin() }
  for _, f in ipairs(P.CHROMIUM_FLAGS) do argv[#argv + 1] = f end
  argv[#argv + 1] = "--user-data-dir=" .. dir .. "/profile"
  for _, f in ipairs(extra or {}) do argv[#argv + 1] = f end
  argv[#argv + 1] = url
  return P.start(argv, { dir = dir, name = "chromium", group = true, split = opts and opts.split })
end

-- Python -------------------------------------------------------------------------
P.PYTHON = "/usr/bin/python3"       -- not the pyenv shim on PATH: aiohttp is a Debian package

-- a Python script (written into dir) that prints "PORT <n>" (one or more
-- lines) once it listens; -> proc, the ports printed in order
function P.python_server(dir, name, code, args, nports)
  local path = P.write(dir .. "/" .. name .. ".py", code)
  local argv = { P.PYTHON, "-u", path }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local proc = P.start(argv, { dir = dir, name = name })
  local ports = {}
  local ok, err = pcall(function()
    local deadline = aio.now() + 15
    while #ports < (nports or 1) do
      ports = {}
      for p in proc:output():gmatch("PORT (%d+)\n") do ports[#ports + 1] = tonumber(p) end
      if #ports >= (nports or 1) then break end
      if proc.proc.returncode ~= nil or aio.now() > deadline then
        error(name .. " did not start:\n" .. proc:output():sub(-3000))
      end
      aio.sleep(0.02)
    end
  end)
  if not ok then proc:stop() error(err, 0) end
  return proc, table.unpack(ports)
end

-- run a Python snippet to its end; -> stdout (raises with stderr on a failure)
function P.python(code, args, timeout)
  local argv = { P.PYTHON, "-c", code }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local r = aio.exec(argv, { timeout = timeout or 30 })
  if r.status ~= 0 then
    error(("python failed (status %s, signal %s):\n%s\n%s"):format(tostring(r.status), tostring(r.signal),
      r.stdout, r.stderr), 2)
  end
  return r.stdout, r.stderr
end

-- the number of the first line of `code` (a script's text) holding `marker`
function P.line_of(code, marker)
  local n = 0
  for line in (code .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if line:find(marker, 1, true) then return n end
  end
  error("no line with " .. marker, 2)
end

-- luaio child scripts ------------------------------------------------------------
-- a luaio script (written into dir) run by the same binary as the specs,
-- printing "PORT <n>" once it listens; -> proc, port
function P.luaio_server(dir, name, code, args)
  local path = P.write(dir .. "/" .. name .. ".lua", code)
  local argv = { P.luaio_bin(), path }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  local proc = P.start(argv, { dir = dir, name = name, cwd = P.cwd() })
  local ok, port = pcall(proc.wait_for, proc, "PORT (%d+)\n", 15)
  if not ok then proc:stop() error(port, 0) end
  return proc, tonumber(port)
end

-- curl -------------------------------------------------------------------------
-- curl(args...) runs curl to its end -> stdout, stderr, exit status
function P.curl(args, opts)
  local argv = { "curl", "-sS" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = aio.exec(argv, { timeout = (opts and opts.timeout) or 30, stdin = opts and opts.stdin })
  return r.stdout, r.stderr, r.status
end

return P
