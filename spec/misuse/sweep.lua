-- The hostile-user sweep: "no script can crash the host" (API.md §3b).
--
--   build/luaio spec/misuse/sweep.lua [--quick] [--filter PATTERN] [--report-only] [--verbose]
--
-- Calls every public function of `aio` (subtables included) and every method
-- of every object type with hostile values (wrong types, NaN, huge strings,
-- raising metamethods, foreign objects as self, objects after close, ...),
-- directly and inside non-yieldable contexts (table.sort comparator,
-- string.gsub callback, __tostring, xpcall handler, __gc), each call in its
-- own task with a deadline. Classifies every outcome (ok / clear error /
-- unclear error / waited (cancelled at the deadline) / HANG), then checks the
-- host is healthy (a task sleeps, a TCP echo round trip works, no handle
-- leaked), prints a summary and exits 0 when there is no unclear error and no
-- hang (1 otherwise; always 0 with --report-only).
--
-- The script re-runs itself in a child process (cwd = a fresh temp dir,
-- stdin = /dev/null), so hostile paths like "x" land in the temp dir and a
-- crash of the host is reported (with the last call started) instead of
-- killing the report.

local aio = require "luaio"

local opts = { quick = false, filter = nil, report_only = false, verbose = false }
do
  local i = 1
  while arg and arg[i] do
    local a = arg[i]
    if a == "--quick" then opts.quick = true
    elseif a == "--report-only" then opts.report_only = true
    elseif a == "--verbose" then opts.verbose = true
    elseif a == "--filter" then i = i + 1 opts.filter = arg[i]
    elseif a:match("^%-%-filter=") then opts.filter = a:match("^%-%-filter=(.*)$")
    else io.stderr:write("sweep: unknown argument ", a, "\n") os.exit(2) end
    i = i + 1
  end
end

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- =================================================================== outer
if not os.getenv("LUAIO_MISUSE_INNER") then
  local p = io.popen("pwd") local cwd = p:read("l") p:close()
  local function abs(x) if x:sub(1, 1) == "/" then return x end return cwd .. "/" .. x end
  local script = abs(arg[0])
  local bin = os.getenv("LUAIO_BIN") or arg[-1] or "luaio"
  if bin:find("/") then bin = abs(bin) end
  local tmp = os.tmpname()
  os.remove(tmp)
  assert(os.execute("mkdir -p " .. shq(tmp)))
  local progress = tmp .. "/progress"
  local limit = tonumber(os.getenv("LUAIO_MISUSE_LIMIT")) or (opts.quick and 120 or 300)
  local has_timeout = os.execute("command -v timeout >/dev/null 2>&1")
  local args = {}
  for i = 1, #arg do args[#args + 1] = shq(arg[i]) end
  -- a crash is reported with the call that was running, then the sweep goes
  -- on without that batch (up to 20 crashes), so one crash hides nothing else
  local skip_file, records = tmp .. "/skip", tmp .. "/records"
  local crashes = {}
  local code
  local resume = ""
  while true do
    local cmd = ("cd %s && LUAIO_MISUSE_INNER=1 LUAIO_MISUSE_TMP=%s LUAIO_MISUSE_PROGRESS=%s LUAIO_MISUSE_SKIP=%s LUAIO_MISUSE_RECORDS=%s LUAIO_MISUSE_RESUME=%s %s%s %s %s </dev/null")
      :format(shq(tmp), shq(tmp), shq(progress), shq(skip_file), shq(records), shq(resume),
              has_timeout and ("timeout -s KILL " .. limit .. " ") or "",
              shq(bin), shq(script), table.concat(args, " "))
    io.stdout:flush()
    os.remove(progress)
    local _, how
    _, how, code = os.execute(cmd)
    local last = "?"
    local f = io.open(progress)
    if f then last = f:read("a") f:close() end
    local crashed
    if how == "signal" or (how == "exit" and code > 128) then
      crashed = (how == "signal" or code ~= 137 or not has_timeout) and ("signal " .. (how == "signal" and code or code - 128))
        or ("killed after " .. limit .. " s: whole-process HANG")
    elseif how == "exit" and code ~= 0 and code ~= 1 then
      crashed = "exit status " .. code
    elseif how == "exit" and not last:find("^done") then
      -- e.g. a sanitizer report without abort_on_error exits 1 at once
      crashed = "exit status " .. code .. " before the summary"
    end
    if not crashed then break end
    local batch, target, call = last:match("^(.-) | (.-) | (.*)$")
    print(("CRASH: the sweep process died (%s); last call started: %s"):format(crashed, last))
    crashes[#crashes + 1] = { how = crashed, last = last, target = target or "?" }
    if #crashes >= 60 or not batch or batch:find("^health") or batch:find("^closing") or batch:find("^setup") then break end
    -- a target that crashed twice is skipped whole from then on
    local n = 0
    for _, c in ipairs(crashes) do if c.target == target then n = n + 1 end end
    local sf = io.open(skip_file, "a")
    if n >= 2 and target ~= "" then sf:write("target:", target, "\n") else sf:write(call ~= "" and call or batch, "\n") end
    sf:close()
    resume = batch
    print(("  ... resuming the sweep at batch '%s' without %s"):format(batch, n >= 2 and ("any call of " .. target) or "that call"))
  end
  os.execute("rm -rf " .. shq(tmp))
  if #crashes > 0 then
    print(("CRASHES: %d"):format(#crashes))
    for _, c in ipairs(crashes) do print(("  %s -- %s"):format(c.how, c.last)) end
    print("(a crash is pinned on the last call started; a target that crashed twice was then skipped whole)")
    print("result: FAIL (crash)")
    os.exit(opts.report_only and 0 or 3)
  end
  os.exit(code)
end

-- =================================================================== inner
local here = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local values_mod = require "values"
local classify_mod = require "classify"
local targets_mod = require "targets"
local classify, pattern, show = classify_mod.classify, classify_mod.pattern, classify_mod.show

local started_at = aio.now()
local baseline_handles = aio.stats().handles
local TMP = os.getenv("LUAIO_MISUSE_TMP") or "."
local PROGRESS = os.getenv("LUAIO_MISUSE_PROGRESS")
local DEADLINE = opts.quick and 0.1 or 0.2
local GRACE = 1.0

local current_batch = "?"
local function progress(label, call)
  if not call then
    current_batch = label
    if opts.verbose then io.stderr:write(("[sweep] %.3f "):format(aio.now()), label, "\n") end
  end
  if PROGRESS then
    local f = io.open(PROGRESS, "w")
    if f then f:write(current_batch, " | ", call or " | ") f:close() end
  end
end
local SKIP = {}
do
  local sf = os.getenv("LUAIO_MISUSE_SKIP")
  local f = sf and io.open(sf)
  if f then for l in f:lines() do SKIP[l] = true end f:close() end
end

-- ------------------------------------------------------------ bookkeeping
local counts = { ok = 0, clear = 0, unclear = 0, unclear_private = 0, waited = 0, hang = 0 }
local total = 0
local unclear_list, unclear_keys = {}, {}
local hang_list = {}
local notes = {}

local function is_private(target) return target:find("[%.:]_") ~= nil or target:find("^_") ~= nil end

local function aggregate(r)
  total = total + 1
  counts[r.outcome] = (counts[r.outcome] or 0) + 1
  if r.outcome == "unclear" or r.outcome == "unclear_private" then
    local key = r.target .. "\0" .. r.pattern
    local u = unclear_keys[key]
    if not u then
      u = { target = r.target, why = r.why, pattern = r.pattern, example = r.desc, err = r.err, n = 0,
            private = r.outcome == "unclear_private" }
      unclear_keys[key] = u
      unclear_list[#unclear_list + 1] = u
    end
    u.n = u.n + 1
  elseif r.outcome == "hang" then
    hang_list[#hang_list + 1] = { target = r.target, desc = r.desc, why = r.why }
  end
end

-- records go to a file at the end of every batch, so a run resumed after a
-- crash (see the outer part) reports the calls of the earlier runs too
local RECORDS = os.getenv("LUAIO_MISUSE_RECORDS")
local FIELDS = { "outcome", "target", "desc", "why", "pattern", "err" }
local ESC = { ["\t"] = "\\t", ["\n"] = "\\n", ["\\"] = "\\\\", ["\r"] = "\\r" }
local UNESC = { t = "\t", n = "\n", ["\\"] = "\\", r = "\r" }
local pending_records = {}
if RECORDS then
  local f = io.open(RECORDS)
  if f then
    for l in f:lines() do
      local r, i = {}, 1
      for field in (l .. "\t"):gmatch("([^\t]*)\t") do
        r[FIELDS[i]] = field:gsub("\\(.)", UNESC)
        i = i + 1
      end
      if r.why == "" then r.why = nil end
      aggregate(r)
    end
    f:close()
  end
end
local function flush_records()
  if RECORDS and #pending_records > 0 then
    local f = io.open(RECORDS, "a")
    for _, r in ipairs(pending_records) do
      local parts = {}
      for i, k in ipairs(FIELDS) do parts[i] = (tostring(r[k] or "")):gsub("[\t\n\r\\]", ESC) end
      f:write(table.concat(parts, "\t"), "\n")
    end
    f:close()
  end
  pending_records = {}
end

local function record(target, desc, outcome, why, err)
  if outcome == "unclear" and is_private(target) then outcome = "unclear_private" end
  local r = { outcome = outcome, target = target, desc = desc, why = why,
              pattern = err ~= nil and pattern(err) or "", err = err ~= nil and show(err) or "" }
  aggregate(r)
  pending_records[#pending_records + 1] = r
  if opts.verbose then
    io.stderr:write(("  %-8s %s  %s\n"):format(outcome, desc, r.err))
  end
end

-- ------------------------------------------------------------ environment
local E = { aio = aio, tmp = TMP, n = 0, tracked = {} }
function E.track(o, close, label) E.tracked[#E.tracked + 1] = { o = o, close = close, label = label } return o end

local tasks_to_retrieve = {}
local mt_closer = {}       -- metatable -> function(o) closes it (for reaping results)

local function reap(v)
  local tv = type(v)
  if tv ~= "userdata" and tv ~= "table" then return end
  local mt = getmetatable(v)
  if mt == nil then return end
  local closer = mt_closer[mt]
  if closer then
    E.track(v, closer, "result of a call in " .. current_batch)
  elseif type(mt) == "table" and rawget(mt, "__name") == "luaio.Task" then
    tasks_to_retrieve[#tasks_to_retrieve + 1] = v
  end
end

progress("setup")
-- the parts of aio that load on first use: loaded now, so that they are swept
for _, k in ipairs { "http", "websocket", "redis", "pg", "repl", "pretty", "monitor" } do local _ = aio[k] end
-- setup: data file, echo server, HTTP app server, foreign values
do
  local f = assert(io.open(TMP .. "/data.txt", "w")) f:write("hello\n") f:close()
end
E.echo = aio.start_server(function(s)
  pcall(function()
    while true do
      local d = s:read(65536)
      if not d then break end
      s:write(d)
    end
  end)
end, "127.0.0.1", 0)
E.track(E.echo, function(o) o:close() end)
do
  local app = aio.http.app()
  app:route("/", function(req) E.last_request = req return { ok = true } end)
  -- live objects: a handler hands its request (or its writer, or its
  -- WebSocket) to the sweep and stays in it until the sweep releases it
  E.live = {}
  local function hold(kind, obj)
    local slot = { obj = obj, release = aio.Event() }
    E.live[kind] = slot
    slot.release:wait()
  end
  app:route("/live", function(req) hold("request", req) return { ok = true } end)
  app:route("/writer", function(req) hold("writer", req:respond(200, { ["content-type"] = "text/plain" })) end)
  app:route("/sse", function(req) hold("sse", req:sse()) end)
  app:websocket("/ws", function(ws) hold("websocket", ws) end)
  app:websocket("/echo", function(ws) for data, kind in ws:messages() do ws:send(data, kind) end end)
  E.http = app:listen("127.0.0.1", 0)
  E.http_port = E.http.port
  E.track(E.http, function(o) o:close() end)
end
E.closed_port = (function()                 -- a port nobody listens on
  local s = aio.start_server(function() end, "127.0.0.1", 0)
  local port = s.port
  s:close()
  return port
end)()
E.foreign_event = aio.Event()
E.foreign_udp = E.track(aio.udp_bind("127.0.0.1", 0), function(o) o:close() end)
E.foreign_udp_port = select(2, E.foreign_udp:sockname())

local HOSTILE = values_mod.list(E, opts.quick)

-- verbose: a watchdog names what held the loop (a call that blocks without yielding)
local last_call = "?"
local stall_watch
if opts.verbose then
  stall_watch = aio.spawn(function()
    while true do
      local t = aio.now()
      aio.sleep(0.01)
      local d = aio.now() - t
      if d > 0.25 then io.stderr:write(("[loop stall] %.3f s, last call started: %s\n"):format(d, last_call)) end
    end
  end)
end
local FUNCS = targets_mod.functions(E)
local TYPES = targets_mod.types(E)

-- register closers by metatable (so results of calls are closed after use)
local probes = {}
for tname, T in pairs(TYPES) do
  local ok, o = pcall(T.make, E)
  if ok and o ~= nil then
    probes[tname] = o
    local mt = getmetatable(o)
    if T.close and mt and not mt_closer[mt] then mt_closer[mt] = T.close end
    E.track(o, T.close or function() end)
  else
    notes[#notes + 1] = ("could not make a %s: %s"):format(tname, show(o))
  end
end

-- ------------------------------------------------------------ waiting names
local WAITING = {}
for _, n in ipairs { "aio.sleep", "aio.gather", "aio.wait_for", "aio.timeout", "aio.wait", "aio.shield",
  "aio.task_group", "aio.getaddrinfo", "aio.open_connection", "aio.start_server", "aio.udp_bind",
  "aio.to_thread", "aio.exec", "aio.wait_signal", "aio.repl", "aio.run" } do WAITING[n] = true end
local WAITING_PREFIX = { "^aio%.fs%.", "^aio%.http%.request", "^aio%.http%.get", "^aio%.http%.post",
  "^aio%.http%.put", "^aio%.http%.patch", "^aio%.http%.delete", "^aio%.http%.head$", "^aio%.websocket",
  "^aio%.redis", "^aio%.pg" }
local WAITING_METHOD = { wait = 1, acquire = 1, run = 1, wait_for = 1, put = 1, get = 1, join = 1,
  wait_closed = 1, serve_forever = 1, read = 1, read_exactly = 1, readline = 1, read_until = 1,
  read_all = 1, write = 1, drain = 1, shutdown = 1, start_tls = 1, _start_tls = 1, _read_head = 1, _read_resp = 1,
  accept = 1, sendto = 1, recvfrom = 1, close = 1, __close = 1, seek = 1, listen = 1, request = 1,
  post = 1, patch = 1, delete = 1, head = 1, handle_connection = 1, json = 1, receive = 1,
  send = 1, ping = 1, form = 1, comment = 1, respond = 1, sse = 1, _read_pg = 1,
  query = 1, execute = 1, transaction = 1, subscribe = 1, psubscribe = 1, pipeline = 1, call = 1 }
-- types whose every other name is a server command (a Redis pool: pool:chunks is CHUNKS)
local WAITING_TYPE = { RedisPool = true }
local function may_wait(target)
  if WAITING[target] then return true end
  for _, p in ipairs(WAITING_PREFIX) do if target:find(p) then return true end end
  local m = target:match(":([%w_]+)$")
  if m and WAITING_METHOD[m] then return true end
  local tname = target:match("^([%w_]+):")
  if tname and WAITING_TYPE[tname] then return true end
  if target:find(":get$") then return true end
  return false
end

-- ------------------------------------------------------------ running calls
local function invoke(f, args, n)
  local r = table.pack(f(table.unpack(args, 1, n)))     -- not a tail call: the caller is this line
  return r
end

-- contexts: each returns ok, value of pcall(invoke, f, args, n) run there
local CONTEXTS = {}
CONTEXTS.direct = function(f, args, n) return pcall(invoke, f, args, n) end
CONTEXTS.sort = function(f, args, n)
  local box = {}
  table.sort({ 3, 1, 2 }, function(a, b)
    if not box.done then box.done = true box.ok, box.v = pcall(invoke, f, args, n) end
    return a < b
  end)
  return box.ok, box.v
end
CONTEXTS.gsub = function(f, args, n)
  local box = {}
  string.gsub("a", "a", function()
    box.ok, box.v = pcall(invoke, f, args, n)
    return ""
  end)
  return box.ok, box.v
end
CONTEXTS.tostring = function(f, args, n)
  local box = {}
  tostring(setmetatable({}, { __tostring = function()
    box.ok, box.v = pcall(invoke, f, args, n)
    return "t"
  end }))
  return box.ok, box.v
end
CONTEXTS.xpcall_handler = function(f, args, n)
  local box = {}
  xpcall(error, function(m)
    box.ok, box.v = pcall(invoke, f, args, n)
    return m
  end, "trigger")
  return box.ok, box.v
end
CONTEXTS.gc = function(f, args, n)
  local box = {}
  do
    setmetatable({}, { __gc = function()
      box.done = true
      box.ok, box.v = pcall(invoke, f, args, n)
    end })
  end
  collectgarbage()
  collectgarbage()
  if not box.done then return true, "(finalizer did not run)" end
  return box.ok, box.v
end
CONTEXTS.coroutine = function(f, args, n)     -- yieldable: a user coroutine inside the task
  local box = {}
  local co = coroutine.wrap(function() box.ok, box.v = pcall(invoke, f, args, n) end)
  co()
  return box.ok, box.v
end
local NONYIELD = { "sort", "gsub", "tostring", "xpcall_handler", "gc" }

-- run a batch of calls concurrently, each in its own task, with one deadline.
-- call = { target=, desc=, f=, args=, n=, ctx=, waits= }
local skipped = {}
local batch_times = {}
local skipped_targets = {}
local RESUME = os.getenv("LUAIO_MISUSE_RESUME")
if RESUME == "" then RESUME = nil end
local function run_batch(label, calls)
  local t0 = aio.now()
  local kept = {}
  for _, c in ipairs(calls) do
    if SKIP[c.desc] then skipped[#skipped + 1] = c.desc
    elseif SKIP["target:" .. c.target] then skipped_targets[c.target] = true
    else kept[#kept + 1] = c end
  end
  calls = kept
  for _, c in ipairs(calls) do
    local ok, t = pcall(aio.spawn, function()
      progress(nil, c.target .. " | " .. c.desc)
      last_call = c.desc
      c.t0 = aio.now()
      local ok2, v = CONTEXTS[c.ctx or "direct"](c.f, c.args, c.n)
      c.finished, c.ok, c.v = true, ok2, v
      c.took = aio.now() - c.t0
    end)
    if ok then c.task = t else c.finished, c.ok, c.v, c.spawn_failed = true, false, t, true end
  end
  local deadline = aio.now() + DEADLINE
  local function all_done()
    for _, c in ipairs(calls) do if not c.finished then return false end end
    return true
  end
  aio.sleep(0)
  while not all_done() and aio.now() < deadline do aio.sleep(0.005) end
  local pending = {}
  for _, c in ipairs(calls) do
    if not c.finished then c.cancelled_by_us = true pcall(c.task.cancel, c.task) pending[#pending + 1] = c end
  end
  if #pending > 0 then
    local g = aio.now() + GRACE
    aio.sleep(0)
    while not all_done() and aio.now() < g do aio.sleep(0.01) end
  end
  for _, c in ipairs(calls) do
    local target, desc = c.target, c.desc
    if not c.finished then
      record(target, desc, "hang", "did not end by the deadline, nor after being cancelled")
    elseif c.cancelled_by_us then
      local waits = c.waits
      if waits == nil then waits = may_wait(target) and (c.ctx == "direct" or c.ctx == "coroutine" or c.ctx == nil) end
      if waits then record(target, desc, "waited")
      else record(target, desc, "hang", "a call that should not wait waited until cancelled") end
    elseif c.ok and c.nul_check then
      -- API.md §7b: a string handed to the system that holds a NUL raises
      record(target, desc, "unclear", "a NUL byte was accepted (API.md 7b: must raise, not cut at the NUL)", "accepted a string with a NUL byte")
      if type(c.v) == "table" and c.v.n then for i = 1, c.v.n do reap(c.v[i]) end end
    elseif c.ok then
      record(target, desc, "ok")
      if type(c.v) == "table" and c.v.n then for i = 1, c.v.n do reap(c.v[i]) end end
    else
      local outcome, why = classify(false, c.v)
      record(target, desc, outcome, why, c.v)
    end
  end
  flush_records()
  batch_times[#batch_times + 1] = { label = label, t = aio.now() - t0 }
  if opts.verbose then
    for _, c in ipairs(calls) do
      if c.took and c.took > 0.4 then io.stderr:write(("[slow call] %.3f s  %s%s\n"):format(c.took, c.desc, c.cancelled_by_us and " (cancelled)" or "")) end
    end
  end
end

local function filtered(name)
  return not opts.filter or name:find(opts.filter) ~= nil
end

-- args with hostile value hv at position pos (good elsewhere)
local function with_value(good, pos, hv, kind)
  local args = {}
  local n = math.max(#good, pos)
  for i = 1, #good do args[i] = good[i] end
  if hv.none then
    return args, pos - 1
  end
  local v = hv.v
  if kind == "host" and v == "x" then v = "localhost" end
  args[pos] = v
  return args, n
end

local function copy(t) local c = {} for k, v in pairs(t) do c[k] = v end return c end

-- ============================================================ functions
local function enumerate_functions()
  local names = {}
  local seen = {}
  local function walk(t, prefix, depth)
    if seen[t] or depth > 2 then return end
    seen[t] = true
    for k, v in pairs(t) do
      if type(k) == "string" then
        local name = prefix .. "." .. k
        if type(v) == "function" then names[#names + 1] = { name = name, f = v }
        elseif type(v) == "table" and getmetatable(v) == nil and not k:match("^_") and k ~= "reasons" then
          walk(v, name, depth + 1)
        end
      end
    end
  end
  walk(aio, "aio", 0)
  table.sort(names, function(a, b) return a.name < b.name end)
  return names
end

-- batch(label, build): build() -> calls, only when the batch is to run
-- (objects are made lazily, so a run resumed after a crash starts fast)
-- Batches of one function or method are gathered in a group and run
-- together under one deadline (the deadline is dead time: sharing it keeps
-- the sweep short). A crash resumes at its group, without the crashing call.
local group
local function will_run(label)
  if RESUME then
    if label ~= RESUME then return false end
    RESUME = nil
  end
  if SKIP[label] then skipped[#skipped + 1] = label return false end
  return true
end
local super = false
local function group_begin(name)
  if super and group then return end
  if will_run(name) then group = { name = name, calls = {} } else group = { name = name, skip = true } end
end
local function group_end(force)
  if super and not force then return end
  local g = group
  group = nil
  if g and not g.skip and #g.calls > 0 then
    progress(g.name)
    run_batch(g.name, g.calls)
  end
end
local function batch(label, build)
  local own = group == nil
  if own then group_begin(label) end
  if not group.skip then
    local ok, calls = pcall(build)
    if not ok then
      notes[#notes + 1] = ("could not build batch %s: %s"):format(label, show(calls))
    else
      for _, c in ipairs(calls) do group.calls[#group.calls + 1] = c end
    end
  end
  if own then group_end() end
end

-- a super group gathers the groups of several functions or methods
local function super_begin(name) group = nil super = false group_begin(name) super = true end
local function super_end() super = false group_end(true) end

local POSITIONS = opts.quick and 3 or 5
local CTX_ALL = { "sort", "gsub", "tostring", "xpcall_handler", "gc", "coroutine" }

local function sweep_function(fn)
  local name, f = fn.name, fn.f
  local spec = FUNCS[name] or {}
  local function good() return spec.good and spec.good() or {} end
  local is_debug = name == "aio.set_debug"
  local function after() if is_debug then pcall(aio.set_debug, false) end end
  group_begin(name)
  -- good call, and no arguments at all
  batch(name .. " good", function()
    local g = good()
    return {
      { target = name, desc = name .. "(good args)", f = f, args = g, n = #g },
      { target = name, desc = name .. "()", f = f, args = {}, n = 0 } }
  end)
  after()
  -- hostile value at each position
  local npos = math.min(#good() + 1, POSITIONS)
  for pos = 1, npos do
    batch(("%s arg#%d"):format(name, pos), function()
      local calls = {}
      for _, hv in ipairs(HOSTILE) do
        local args, n = with_value(good(), pos, hv, spec.kinds and spec.kinds[pos])
        calls[#calls + 1] = { target = name, desc = ("%s(arg#%d=%s)"):format(name, pos, hv.name), f = f, args = args, n = n,
                              nul_check = hv.name == "NUL-string" and spec.nul and spec.nul[pos] }
      end
      return calls
    end)
    after()
  end
  -- hostile value as the only item of a list argument
  for pos in pairs(spec.listwrap or {}) do
    batch(("%s arg#%d list"):format(name, pos), function()
      local calls = {}
      for _, hv in ipairs(HOSTILE) do
        if not hv.none then
          local args = good()
          args[pos] = { hv.v }
          calls[#calls + 1] = { target = name, desc = ("%s(arg#%d={%s})"):format(name, pos, hv.name), f = f, args = args, n = math.max(#args, pos),
                                nul_check = hv.name == "NUL-string" and spec.nul_list }
        end
      end
      return calls
    end)
  end
  -- hostile value in one option field at a time
  for pos, fields in pairs(spec.fields or {}) do
    for _, field in ipairs(fields) do
      batch(("%s arg#%d.%s"):format(name, pos, field), function()
        local calls = {}
        for _, hv in ipairs(HOSTILE) do
          if not hv.none and hv.v ~= nil then
            local args = good()
            local o = copy(type(args[pos]) == "table" and args[pos] or {})
            o[field] = hv.v
            args[pos] = o
            calls[#calls + 1] = { target = name, desc = ("%s(arg#%d.%s=%s)"):format(name, pos, field, hv.name), f = f, args = args, n = math.max(#args, pos),
                                  nul_check = hv.name == "NUL-string" and spec.nul_fields and spec.nul_fields[field] }
          end
        end
        return calls
      end)
      after()
    end
  end
  -- non-yieldable contexts (and a user coroutine), good args and no args
  batch(name .. " contexts", function()
    local calls = {}
    for _, ctx in ipairs(CTX_ALL) do
      local g = good()
      calls[#calls + 1] = { target = name, desc = ("%s(good args) in %s"):format(name, ctx), f = f, args = g, n = #g, ctx = ctx }
      calls[#calls + 1] = { target = name, desc = ("%s() in %s"):format(name, ctx), f = f, args = {}, n = 0, ctx = ctx }
    end
    return calls
  end)
  group_end()
  after()
end

-- ============================================================ object types
local function methods_of(o)
  local mt = getmetatable(o)
  local out, seen = {}, {}
  if type(mt) ~= "table" then return out end
  local function add(k, v) if type(k) == "string" and type(v) == "function" and not seen[k] then seen[k] = true out[#out + 1] = { name = k, f = v } end end
  local idx = type(rawget(mt, "methods")) == "table" and rawget(mt, "methods") or rawget(mt, "__index")
  local depth = 0
  while type(idx) == "table" and depth < 4 do
    for k, v in pairs(idx) do add(k, v) end
    local m2 = getmetatable(idx)
    idx = type(m2) == "table" and rawget(m2, "__index") or nil
    depth = depth + 1
  end
  if type(rawget(mt, "__index")) == "function" then
    -- methods behind an __index function (Request): look up the usual names
    for _, k in ipairs { "json", "read", "read_all", "chunks", "form", "respond", "sse" } do
      local okk, v = pcall(function() return o[k] end)
      if okk then add(k, v) end
    end
  end
  for _, mm in ipairs { "__close", "__gc", "__tostring", "__call", "__len", "__concat", "__eq", "__lt", "__le" } do
    add(mm, rawget(mt, mm))
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

local function make(tname)
  local T = TYPES[tname]
  local ok, o = pcall(T.make, E)
  if not ok or o == nil then
    error(("could not make a %s: %s"):format(tname, show(o)), 0)
  end
  E.track(o, T.close or function() end, tname .. " made for " .. (current_batch or "?"))
  return o
end

local function good_args(T, mname, o)
  local a = T.args and T.args[mname]
  if type(a) == "function" then return a(E, o) end
  return a and copy(a) or {}
end

local type_names = {}
for tname in pairs(TYPES) do type_names[#type_names + 1] = tname end
table.sort(type_names)

-- a set of one object of each type, used as a wrong `self`
local function foreign_set()
  local set = {}
  for _, tname in ipairs(type_names) do
    local ok, o = pcall(make, tname)
    if ok then set[#set + 1] = { name = tname, o = o } end
  end
  return set
end
local shared_foreign
local foreign_for = {}
do
  local set = {}
  for _, tname in ipairs(type_names) do
    if probes[tname] ~= nil then set[#set + 1] = { name = tname, o = probes[tname] } end
  end
  if opts.quick then shared_foreign = set end
end

local function sweep_type(tname)
  local T = TYPES[tname]
  local probe = probes[tname]
  if probe == nil then return end
  local methods = methods_of(probe)
  local any = filtered(tname)
  for _, m in ipairs(methods) do if filtered(tname .. ":" .. m.name) then any = true end end
  if not any then return end
  local function self_and_good(m, o)
    local g = good_args(T, m.name, o)
    table.insert(g, 1, o)
    return g
  end
  super_begin(tname .. " methods")
  for _, m in ipairs(methods) do
    local target = tname .. ":" .. m.name
    if filtered(target) or filtered(tname) then
      group_begin(target)
      -- good call
      batch(target .. " good", function()
        local g = self_and_good(m, make(tname))
        return { { target = target, desc = target .. "(good args)", f = m.f, args = g, n = #g } }
      end)
      -- hostile value at each position (1 = self)
      local npos = math.min(#good_args(T, m.name, probe) + 2, POSITIONS)
      for pos = 1, npos do
        batch(("%s arg#%d"):format(target, pos), function()
          local o = make(tname)
          local g = self_and_good(m, o)
          local calls = {}
          for _, hv in ipairs(HOSTILE) do
            local args, n = with_value(g, pos, hv)
            calls[#calls + 1] = { target = target, desc = ("%s(arg#%d=%s)"):format(target, pos, hv.name), f = m.f, args = args, n = n,
                                  nul_check = hv.name == "NUL-string" and T.nul and T.nul[m.name] == pos }
          end
          if pos == 1 then   -- an impostor claiming this type's metatable
            local args = copy(g)
            args[1] = values_mod.impostor(getmetatable(o))
            calls[#calls + 1] = { target = target, desc = ("%s(self=impostor table)"):format(target), f = m.f, args = args, n = #g }
          end
          return calls
        end)
      end
      -- non-yieldable contexts (and a user coroutine)
      batch(target .. " contexts", function()
        local o = make(tname)
        local calls = {}
        for _, ctx in ipairs(CTX_ALL) do
          local g = self_and_good(m, o)
          calls[#calls + 1] = { target = target, desc = ("%s(good args) in %s"):format(target, ctx), f = m.f, args = g, n = #g, ctx = ctx }
        end
        return calls
      end)
      -- every other object type as self
      batch(target .. " foreign self", function()
        local set = shared_foreign or foreign_for[tname] or foreign_set()
        foreign_for[tname] = set
        local calls = {}
        for _, fo in ipairs(set) do
          if fo.name ~= tname and getmetatable(fo.o) ~= getmetatable(probe) then
            local g = self_and_good(m, fo.o)
            calls[#calls + 1] = { target = target, desc = ("%s(self=%s)"):format(target, fo.name), f = m.f, args = g, n = #g }
          end
        end
        return calls
      end)
      group_end()
    end
  end
  -- field access with hostile keys, tostring, the name field
  batch(tname .. " fields", function()
    local o = make(tname)
    local calls = {}
    for _, hv in ipairs(HOSTILE) do
      if not hv.none and hv.v ~= nil then
        calls[#calls + 1] = { target = tname .. "[key]", desc = ("%s[%s]"):format(tname, hv.name),
          f = function(obj, k) return obj[k] end, args = { o, hv.v }, n = 2, waits = false }
        if tname:match("^Task") then
          calls[#calls + 1] = { target = tname .. ".name=", desc = ("%s.name = %s"):format(tname, hv.name),
            f = function(obj, v) obj.name = v end, args = { o, hv.v }, n = 2, waits = false }
        end
      end
    end
    calls[#calls + 1] = { target = tname .. ":tostring", desc = ("tostring(%s)"):format(tname), f = tostring, args = { o }, n = 1, waits = false }
    return calls
  end)
  super_end()
  -- after close (twice), and while calls wait on it
  local closer = T.closer
  if closer and type(probe[closer]) == "function" then
    local cf = probe[closer]
    local closed
    batch(tname .. " close#1", function()
      closed = make(tname)
      local g = self_and_good({ name = closer }, closed)
      return { { target = tname .. ":" .. closer, desc = tname .. ":" .. closer .. "() first", f = cf, args = g, n = #g } }
    end)
    batch(tname .. " close#2", function()
      closed = closed or make(tname)
      local g = self_and_good({ name = closer }, closed)
      return { { target = tname .. ":" .. closer, desc = tname .. ":" .. closer .. "() twice", f = cf, args = g, n = #g } }
    end)
    batch(tname .. " after close", function()
      if not closed then closed = make(tname) pcall(cf, closed) end
      local calls = {}
      for _, m in ipairs(methods) do
        local target = tname .. ":" .. m.name
        local args = self_and_good(m, closed)
        calls[#calls + 1] = { target = target, desc = ("%s(good args) after close"):format(target), f = m.f, args = args, n = #args,
          waits = (m.name == "wait_closed" or m.name == "serve_forever" or m.name:match("^__") ~= nil) and nil or false }
      end
      return calls
    end)
    local o, closer_task
    batch(tname .. " close while waiting", function()
      o = make(tname)
      local calls = {}
      for _, m in ipairs(methods) do
        local target = tname .. ":" .. m.name
        if may_wait(target) and m.name ~= closer and not m.name:match("^__") and m.name ~= "wait" and m.name ~= "wait_closed" then
          local args = self_and_good(m, o)
          calls[#calls + 1] = { target = target, desc = ("%s(good args) while closed by another task"):format(target), f = m.f, args = args, n = #args, waits = false }
        end
      end
      closer_task = aio.spawn(function() aio.sleep(0.02) pcall(cf, o) end)
      return calls
    end)
    if closer_task then pcall(closer_task.wait, closer_task) end
  end
  -- a direct __gc call, then every method
  local mt = getmetatable(probe)
  if type(mt) == "table" and type(rawget(mt, "__gc")) == "function" then
    local gcf, o = rawget(mt, "__gc")
    batch(tname .. " __gc direct", function()
      o = make(tname)
      return { { target = tname .. ":__gc", desc = tname .. " __gc called directly", f = gcf, args = { o }, n = 1 } }
    end)
    batch(tname .. " after __gc", function()
      if not o then o = make(tname) pcall(gcf, o) end
      local calls = {}
      for _, m in ipairs(methods) do
        local target = tname .. ":" .. m.name
        local args = self_and_good(m, o)
        calls[#calls + 1] = { target = target, desc = ("%s(good args) after a direct __gc"):format(target), f = m.f, args = args, n = #args }
      end
      return calls
    end)
  end
end

-- ============================================================ run it
local ok_main, err_main = pcall(function()
  local chunk, k = opts.quick and 12 or 6, 0
  for _, fn in ipairs(enumerate_functions()) do
    if filtered(fn.name) then
      if k % chunk == 0 then
        if k > 0 then super_end() end
        super_begin("functions from " .. fn.name)
      end
      k = k + 1
      sweep_function(fn)
    end
  end
  if k > 0 then super_end() end
  for _, tname in ipairs(type_names) do sweep_type(tname) end
end)
if not ok_main then
  notes[#notes + 1] = "the sweep itself failed: " .. show(err_main)
  io.stderr:write(debug.traceback(tostring(err_main)), "\n")
end

-- ============================================================ health
progress("health checks")
if stall_watch then stall_watch:cancel() end
local health = {}
local function check(label, fn)
  local done, okc, errc = false, nil, nil
  local t = aio.spawn(function() okc, errc = pcall(fn) done = true end)
  local limit = aio.now() + 5
  aio.sleep(0)
  while not done and aio.now() < limit do aio.sleep(0.01) end
  if not done then pcall(t.cancel, t) health[#health + 1] = label .. ": HANG" return false end
  if not okc then health[#health + 1] = label .. ": FAILED " .. show(errc) return false end
  health[#health + 1] = label .. ": ok"
  return true
end
local healthy = true
healthy = check("fresh task sleeps 0.01 s", function()
  local t = aio.spawn(function() aio.sleep(0.01) return "slept" end)
  assert(t:wait() == "slept")
end) and healthy
healthy = check("TCP echo round trip", function()
  local got
  local srv = aio.start_server(function(s) local l = s:readline() s:write(l, "\n") s:close() end, "127.0.0.1", 0)
  local s = aio.open_connection("127.0.0.1", srv.port)
  s:write("ping\n")
  got = s:readline()
  s:close()
  srv:close()
  assert(got == "ping", "echo answered " .. tostring(got))
end) and healthy

-- close everything this sweep made, retrieve task errors, then count handles
progress("closing everything")
for _, t in ipairs(tasks_to_retrieve) do pcall(t.cancel, t) end
for i = #E.tracked, 1, -1 do
  local r = E.tracked[i]
  progress("closing everything", "close | " .. tostring(r.label))
  pcall(r.close, r.o)
end
progress("closing everything")
local leak_ok = check("close everything", function()
  for _, t in ipairs(tasks_to_retrieve) do pcall(t.wait, t) end
end)
local handles
-- a closed stream whose queued writes its peer never reads lingers up to 5 s
-- (stream.c: linger_seconds) before its socket is closed: wait that long
for _ = 1, 400 do
  collectgarbage() collectgarbage()
  aio.sleep(0.02)
  handles = aio.stats().handles
  if handles <= baseline_handles then break end
end
if handles ~= baseline_handles then
  healthy = false
  health[#health + 1] = ("handles: %d after closing everything, baseline %d: LEAK"):format(handles, baseline_handles)
else
  health[#health + 1] = ("handles: back to baseline (%d)"):format(baseline_handles)
end
healthy = healthy and leak_ok

-- ============================================================ summary
local function line(...) io.stdout:write(string.format(...), "\n") end
line("")
line("== misuse sweep summary (%s%s) ==", opts.quick and "quick" or "full", opts.filter and (", filter " .. opts.filter) or "")
line("total calls: %d  (the last run took %.1f s; calls of runs before a crash are counted too)", total, aio.now() - started_at)
line("  ok: %d   clear error: %d   waited (cancelled at deadline): %d", counts.ok, counts.clear, counts.waited)
line("  UNCLEAR: %d   unclear in private (_name) API: %d   HANG: %d", counts.unclear, counts.unclear_private, counts.hang)
line("health:")
for _, h in ipairs(health) do line("  %s", h) end
for _, n in ipairs(notes) do line("note: %s", n) end
for _, b in ipairs(skipped) do line("skipped (crashed the host in an earlier run): %s", b) end
for b in pairs(skipped_targets) do line("skipped whole (crashed the host twice): %s", b) end
if #hang_list > 0 then
  line("HANGS (%d):", #hang_list)
  local seen = {}
  for _, h in ipairs(hang_list) do
    if not seen[h.desc] then seen[h.desc] = true line("  %s -- %s", h.desc, h.why) end
  end
end
local function dump_unclear(private)
  local list = {}
  for _, u in ipairs(unclear_list) do if u.private == private then list[#list + 1] = u end end
  if #list == 0 then return end
  table.sort(list, function(a, b) if a.target ~= b.target then return a.target < b.target end return a.pattern < b.pattern end)
  line("%s (%d distinct):", private and "UNCLEAR in private API" or "UNCLEAR errors", #list)
  for _, u in ipairs(list) do
    line("  [%s] x%d %s", u.target, u.n, u.why or "")
    line("      e.g. %s", u.example)
    line("      -> %s", u.err)
  end
end
dump_unclear(false)
dump_unclear(true)
if opts.verbose then
  table.sort(batch_times, function(a, b) return a.t > b.t end)
  line("slowest batches:")
  for i = 1, math.min(15, #batch_times) do line("  %.2f s  %s", batch_times[i].t, batch_times[i].label) end
end
local pass = counts.unclear == 0 and counts.hang == 0 and healthy and ok_main
line("result: %s", pass and "PASS" or "FAIL")
io.stdout:flush()
progress("done")
os.exit((pass or opts.report_only) and 0 or 1, false)
