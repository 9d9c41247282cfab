-- Helpers shared by the specs: the luaio binary, running child processes.
local M = {}

M.luaio = os.getenv("LUAIO_BIN") or "build/luaio"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = shell_quote

-- Run a shell command; returns stdout, stderr, exit code (blocking: keep short).
function M.sh(cmd)
  local errf = os.tmpname()
  local p = io.popen(cmd .. " 2>" .. errf, "r")
  local out = p:read("a")
  local _, _, code = p:close()
  local f = io.open(errf, "r")
  local err = f:read("a")
  f:close()
  os.remove(errf)
  return out, err, code
end

-- Run a snippet under `luaio [extra] -e` that prints "ready" once it is set
-- up; once it has (or after 20 s, or when it exited), run the shell
-- commands `signal` ($pid is the process), then wait for it. Waiting for
-- the line, not for a fixed time, keeps a loaded machine from signalling a
-- process still starting. -> stdout, stderr, exit code
function M.signal_when_ready(code, signal, extra)
  return M.sh("sh -c " .. shell_quote("out=$(mktemp); " .. M.luaio .. " " .. (extra or "") .. " -e " ..
    shell_quote(code) .. " >$out & pid=$!; i=0; " ..
    "until grep -q ready $out || ! kill -0 $pid 2>/dev/null || [ $i -ge 1000 ]; do sleep 0.02; i=$((i+1)); done; " ..
    signal .. "; wait $pid; c=$?; cat $out; rm -f $out; exit $c"))
end

-- Run a Lua snippet under a fresh `luaio -e`.
function M.run_code(code, extra)
  return M.sh(M.luaio .. " " .. (extra or "") .. " -e " .. shell_quote(code))
end

-- Write a temporary script and run it with luaio.
function M.run_script(code, args)
  local path = os.tmpname() .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local out, err, status = M.sh(M.luaio .. " " .. path .. " " .. (args or ""))
  os.remove(path)
  return out, err, status, path
end

-- Start a shell command in the background; returns a handle whose
-- wait([timeout]) polls (with aio.sleep, so the loop keeps running) until the
-- command ends, then returns its stdout, stderr and exit code.
function M.bg(cmd)
  local aio = require "luaio"
  local base = os.tmpname()
  local script = assert(io.open(base .. ".sh", "w"))
  script:write(("(%s) >%s.out 2>%s.err\necho $? >%s.tmp\nmv %s.tmp %s.rc\n"):format(cmd, base, base, base, base, base))
  script:close()
  os.execute("sh " .. base .. ".sh >/dev/null 2>&1 &")
  local h = {}
  function h.wait(_, timeout)
    local deadline = aio.now() + (timeout or 30)
    while true do
      local f = io.open(base .. ".rc")
      if f then
        local code = tonumber(f:read("a"))
        f:close()
        local function slurp(p) local g = io.open(p) local d = g and g:read("a") or "" if g then g:close() end os.remove(p) return d end
        local out, err = slurp(base .. ".out"), slurp(base .. ".err")
        os.remove(base .. ".rc") os.remove(base .. ".sh") os.remove(base)
        return out, err, code
      end
      if aio.now() > deadline then error("background command timed out: " .. cmd) end
      aio.sleep(0.02)
    end
  end
  return h
end

-- Write a temporary file with the given content; returns its path.
function M.tmpfile(content, suffix)
  local path = os.tmpname() .. (suffix or "")
  local f = assert(io.open(path, "w"))
  f:write(content)
  f:close()
  return path
end

-- Resident memory of this process in KiB.
function M.rss_kib()
  for l in io.lines("/proc/self/status") do
    local v = l:match("^VmRSS:%s+(%d+)")
    if v then return tonumber(v) end
  end
end

return M
