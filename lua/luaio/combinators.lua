-- Combinators: gather, wait_for, timeout, wait, as_completed, shield, task_group.
-- Written on the scheduler's two verbs: core.suspend(owner) waits until
-- core.wake(task, owner, ...) (or a cancellation: then it returns false, err).
local core = require "luaio.core"
local callable = require("luaio.check").callable

-- the real metatable: a __metatable field cannot make a table pass for ours
local getmetatable = debug.getmetatable
local spawn, suspend, wake = core.spawn, core.suspend, core.wake
local call_later, is_error, new_error = core.call_later, core.is_error, core.error
local pack, unpack, type, error, math_huge = table.pack, table.unpack, type, error, math.huge
-- Task methods as plain functions: no __index hop on hot paths
local T = core.task_methods
local T_done, T_status, T_result, T_error, T_cancel = T.done, T.status, T.result, T.error, T.cancel
local T_add_done_callback, T_wait, T_uncancel, T_cancelling = T.add_done_callback, T.wait, T.uncancel, T.cancelling

local need_task, current_task = core.need_task, core.current_task
local arg_error, type_name = core.arg_error, core.type_name

local is_task = core.is_task
local gather_latch, gather_state, gather_results = core.gather_latch, core.gather_state, core.gather_results

local M = {}   -- the public names: aio.gather, aio.wait_for, ...

local function invalid_state(msg) error(new_error("InvalidStateError", msg), 3) end

-- Argument #1 of the public function calling as_task: a Task, or a
-- function to spawn (unless `start` is false: then nil).
local function as_task(item, start)
  if is_task(item) then
    if item == current_task() then invalid_state("a task cannot wait for itself") end
    return item
  end
  if callable(item) then
    if start == false then return nil end
    return spawn(item)
  end
  arg_error(1, "Task or function expected, got " .. type_name(item), 2)
end

local function check_list(list, n)
  if type(list) ~= "table" or is_task(list) then
    arg_error(n, "array of tasks or functions expected, got " .. type_name(list), 2)
  end
  local count = list.n or #list
  if math.type(count) ~= "integer" then arg_error(n, "list.n must be an integer", 2) end
  return count
end

local function check_opts(opts, n)
  if opts ~= nil and type(opts) ~= "table" then arg_error(n, "table expected, got " .. type_name(opts), 2) end
  return opts or {}
end

-- seconds (argument n, or option `field` of argument n): nil, or a number, not NaN
local function check_seconds(sec, n, field)
  if sec == nil then return nil end
  if type(sec) ~= "number" or sec ~= sec then
    local got = type(sec) == "number" and "NaN" or type_name(sec)
    arg_error(n, (field and field .. ": " or "") .. "number of seconds expected, got " .. got, 2)
  end
  if sec < 0 then sec = 0 end
  return sec
end

local function timeout_error(sec)
  return new_error("TimeoutError", ("timed out after %g s"):format(sec), { timeout = sec })
end

-- The n items of argument #1 of the public function calling this, as
-- tasks index for index (functions are spawned). A bad item, or the current
-- task, raises before any of them starts: the functions spawned before it
-- (not started yet) are cancelled, so they never run.
local function unspawn(list, tasks, upto)
  for j = 1, upto do
    if not is_task(list[j]) then T_cancel(tasks[j]) end
  end
end

local function start_items(list, n)
  local me, tasks = current_task(), {}
  for i = 1, n do
    local item = list[i]
    if is_task(item) then
      if item == me then unspawn(list, tasks, i - 1) invalid_state("a task cannot wait for itself") end
      tasks[i] = item
    elseif callable(item) then
      tasks[i] = spawn(item)
    else
      unspawn(list, tasks, i - 1)
      arg_error(1, ("item %d: Task or function expected, got %s"):format(i, type_name(item)), 2)
    end
  end
  return tasks
end

-- gather ---------------------------------------------------------------
function M.gather(list, opts)
  local n = check_list(list, 1)
  opts = check_opts(opts, 2)
  local me = need_task("aio.gather")
  local tasks = start_items(list, n)
  -- one native done callback for all (gather.c): counts them, retrieves
  -- failures, keeps the first (unless return_exceptions) and wakes us
  local latch = gather_latch(me, tasks, n, not opts.return_exceptions)
  local settled, first_bad = gather_state(latch)
  while not settled do
    local ok, err = suspend(latch, "gather")
    if not ok then
      for i = 1, n do T_cancel(tasks[i]) end
      error(err, 0)
    end
    settled, first_bad = gather_state(latch)
  end
  if first_bad then
    for i = 1, n do T_cancel(tasks[i]) end
    return T_result(first_bad)           -- raises its error
  end
  return gather_results(tasks, n)        -- each one's first result, or its error
end

-- deadlines (asyncio's timeouts.py) --------------------------------------
-- A scope remembers the task's cancelling() count on entry; on expiry it
-- cancels the task; on exit, if it expired, it takes its cancellation back
-- (uncancel) and turns the CancelledError into a TimeoutError only when
-- no other cancellation is left above the count it started with. So a
-- task that once caught a CancelledError still gets TimeoutErrors, and an
-- inner scope never swallows an outer scope's expiry (nor a real cancel).
local function exit_scope(me, scope, sec, ok, ...)
  scope.timer:cancel()
  if scope.state == "expiring" then
    scope.state = "expired"
    -- wait_for (strict) raises on its expiry even when the item swallowed
    -- the cancellation and returned (the contract's §2)
    if T_uncancel(me) <= scope.cancelling and (ok and scope.strict or not ok and is_error((...), "CancelledError")) then
      error(timeout_error(sec), 3)
    end
  end
  scope.state = "exited"
  if ok then return ... end
  error((...), 0)
end

local function with_deadline(me, sec, strict, fn, ...)
  local scope = { state = "entered", cancelling = T_cancelling(me), strict = strict }
  scope.timer = call_later(sec, function()
    if scope.state == "entered" then
      scope.state = "expiring"
      T_cancel(me)
    end
  end)
  return exit_scope(me, scope, sec, pcall(fn, ...))
end

function M.timeout(sec, fn, ...)
  sec = check_seconds(sec, 1)
  if not callable(fn) then arg_error(2, "function expected, got " .. type_name(fn)) end
  local me = need_task("aio.timeout")
  if sec == nil or sec == math_huge then return fn(...) end
  return with_deadline(me, sec, false, fn, ...)
end

function M.wait_for(item, sec)
  sec = check_seconds(sec, 2)
  local me = need_task("aio.wait_for")
  local t = as_task(item, false)
  if t == nil then                        -- a function
    if sec == 0 then error(timeout_error(sec), 2) end   -- not started
    t = spawn(item)
  end
  if sec == nil or sec == math_huge or T_done(t) then return T_wait(t) end
  -- cancelling the waiter (or the deadline) cancels t and waits for it
  return with_deadline(me, sec, true, T_wait, t)
end

-- a list treated as a set: each task once, in first-seen order
local function distinct(tasks, n)
  local set, seen = {}, {}
  for i = 1, n do
    local t = tasks[i]
    if not seen[t] then seen[t] = true set[#set + 1] = t end
  end
  return set
end

-- wait ------------------------------------------------------------------
local return_whens = { ALL_COMPLETED = true, FIRST_COMPLETED = true, FIRST_EXCEPTION = true }

function M.wait(list, opts)
  local count = check_list(list, 1)
  opts = check_opts(opts, 2)
  local when = opts.return_when or "ALL_COMPLETED"
  if not return_whens[when] then
    arg_error(2, "return_when: ALL_COMPLETED, FIRST_COMPLETED or FIRST_EXCEPTION expected, got " .. tostring(when))
  end
  local timeout = check_seconds(opts.timeout, 2, "timeout")
  local me = need_task("aio.wait")
  local tasks = distinct(start_items(list, count), count)
  local n = #tasks
  if n == 0 then arg_error(1, "non-empty array of tasks expected, got an empty one") end
  local token = {}
  local function satisfied()
    local ndone, bad = 0, false
    for i = 1, n do
      local t = tasks[i]
      if T_done(t) then
        ndone = ndone + 1
        if T_status(t) ~= "done" then bad = true end
      end
    end
    if ndone == n then return true end
    if when == "FIRST_COMPLETED" then return ndone > 0 end
    if when == "FIRST_EXCEPTION" then return bad end
    return false
  end
  if not satisfied() then
    local function poke() wake(me, token) end
    for i = 1, n do if not T_done(tasks[i]) then T_add_done_callback(tasks[i], poke) end end
    local timer = timeout and call_later(timeout, function() wake(me, token, "timeout") end)
    repeat
      local ok, why = suspend(token, "wait", tasks)
      if not ok then
        if timer then timer:cancel() end
        error(why, 0)
      end
    until why == "timeout" or satisfied()
    if timer then timer:cancel() end
  end
  local done, pending = {}, {}
  for i = 1, n do
    local t = tasks[i]
    if T_done(t) then done[#done + 1] = t else pending[#pending + 1] = t end
  end
  return done, pending
end

-- as_completed ----------------------------------------------------------
function M.as_completed(list, timeout)
  local count = check_list(list, 1)
  timeout = check_seconds(timeout, 2)
  local tasks = distinct(start_items(list, count), count)
  local n = #tasks
  local finished, head, tail = {}, 1, 0
  local waiter, token = nil, {}
  local deadline = timeout and (core.now() + timeout)
  local function on_done(t)
    tail = tail + 1
    finished[tail] = t
    if waiter then wake(waiter, token) end
  end
  for i = 1, n do
    local t = tasks[i]
    if T_done(t) then on_done(t) else T_add_done_callback(t, on_done) end
  end
  return function()
    if head > n then return nil end
    while head > tail do
      local me = need_task("aio.as_completed")
      local left = deadline and deadline - core.now()
      if left and left <= 0 then error(timeout_error(timeout), 2) end
      waiter = me
      local timer = left and call_later(left, function() wake(me, token, "timeout") end)
      local ok, why = suspend(token, "as_completed")
      waiter = nil
      if timer then timer:cancel() end
      if not ok then error(why, 0) end
      if why == "timeout" and head > tail then error(timeout_error(timeout), 2) end
    end
    local t = finished[head]
    finished[head] = nil
    head = head + 1
    return t
  end
end

-- shield ----------------------------------------------------------------
local function wait_done(me, t)
  -- true when t is done, or false, err when the waiter is cancelled
  local token = {}
  T_add_done_callback(t, function() wake(me, token) end)
  return suspend(token, "shield", t)
end

function M.shield(item)
  local me = need_task("aio.shield")
  local t = as_task(item)
  if not T_done(t) then
    local ok, err = wait_done(me, t)
    if not ok then error(err, 0) end     -- t goes on
  end
  return T_wait(t)
end

-- task groups -----------------------------------------------------------
local Group = { __name = "luaio.TaskGroup" }
Group.__index = Group

function Group:spawn(fn, ...)
  if getmetatable(self) ~= Group then arg_error(1, "luaio.TaskGroup expected, got " .. type_name(self)) end
  if not callable(fn) then arg_error(2, "function expected, got " .. type_name(fn)) end
  if self._closed then error("task group is finished: cannot spawn into it", 2) end
  local t = spawn(fn, ...)
  self._pending = self._pending + 1
  self._tasks[#self._tasks + 1] = t
  T_add_done_callback(t, self._on_done)
  return t
end

-- several errors: one luaio error carrying them all (each passes unchanged)
local function group_error(errors)
  if #errors == 1 then return errors[1] end
  return new_error("TaskGroupError", ("%d errors in the task group; the first: %s"):format(
    #errors, tostring(errors[1])), { errors = errors, first = errors[1] })
end

function M.task_group(fn)
  if not callable(fn) then arg_error(1, "function expected, got " .. type_name(fn)) end
  local me = need_task("aio.task_group")
  local g = setmetatable({ _tasks = {}, _pending = 0, _errors = {}, _closed = false }, Group)
  local in_body, body_cancelled, aborting = true, false, false
  local function abort()
    if aborting then return end
    aborting = true
    for _, t in ipairs(g._tasks) do T_cancel(t) end
    if in_body then body_cancelled = T_cancel(me) end
  end
  g._on_done = function(t)
    g._pending = g._pending - 1
    local st = T_status(t)
    if st == "failed" then
      g._errors[#g._errors + 1] = T_error(t)
      abort()
    elseif st == "cancelled" then
      T_error(t)
    end
    if g._pending == 0 then wake(me, g) end
  end
  local ok, err = pcall(fn, g)
  in_body = false
  local propagate
  if not ok then
    if is_error(err, "CancelledError") then
      if body_cancelled then T_uncancel(me) else propagate = err end
    else
      table.insert(g._errors, 1, err)
    end
    abort()
  elseif body_cancelled then
    T_uncancel(me)
  end
  while g._pending > 0 do
    local okw, errw = suspend(g, "task_group")
    if not okw then
      propagate = errw
      aborting = false
      abort()
    end
  end
  g._closed = true
  if #g._errors > 0 then error(group_error(g._errors), 0) end
  if propagate then error(propagate, 0) end
  return ok and err or nil
end

-- generators: `for v in aio.generator(function(yield, ...) ... end, ...)` --
function M.generator(fn, ...)
  if not callable(fn) then arg_error(1, "function expected, got " .. type_name(fn)) end
  local args = pack(...)
  local co = coroutine.create(function()
    fn(coroutine.yield, unpack(args, 1, args.n))
  end)
  local resume = coroutine.resume
  return function()
    if coroutine.status(co) == "dead" then return nil end
    local r = pack(resume(co))
    if not r[1] then error(r[2], 0) end
    if coroutine.status(co) == "dead" then return nil end
    return unpack(r, 2, r.n)
  end, nil, nil, setmetatable({}, { __close = function()
    -- a loop left early closes the generator (its `<close>` variables run)
    if coroutine.status(co) == "suspended" then coroutine.close(co) end
  end })
end

M._is_task = is_task

return M
