-- Combinators: gather, wait_for, timeout, wait, as_completed, shield, task_group.
-- Written on the scheduler's two verbs: core.suspend(owner) waits until
-- core.wake(task, owner, ...) (or a cancellation: then it returns false, err).
return function(aio, core)
  local spawn, suspend, wake = core.spawn, core.suspend, core.wake
  local call_later, is_error, new_error = core.call_later, core.is_error, core.error
  local pack, unpack, type, error, math_huge = table.pack, table.unpack, type, error, math.huge
  -- Task methods as plain functions: no __index hop on hot paths
  local M = core.task_methods
  local T_done, T_status, T_result, T_error, T_cancel = M.done, M.status, M.result, M.error, M.cancel
  local T_add_done_callback, T_wait, T_uncancel, T_cancelling = M.add_done_callback, M.wait, M.uncancel, M.cancelling

  local need_task = core.need_task

  local is_task = core.is_task

  local function as_task(item, fname, i)
    local ty = type(item)
    if ty == "function" then return spawn(item) end
    if ty == "userdata" and item.cancel and item.wait then return item end
    error(("%s: item %s is a %s, expected a Task or a function"):format(fname, i or 1, ty), 3)
  end

  local function check_seconds(sec, fname)
    if type(sec) ~= "number" or sec ~= sec then
      error(("%s: timeout must be a number of seconds, got %s"):format(fname, tostring(sec)), 3)
    end
    if sec < 0 then sec = 0 end
    return sec
  end

  local function timeout_error(sec)
    return new_error("TimeoutError", ("timed out after %g s"):format(sec), { timeout = sec })
  end

  -- gather ---------------------------------------------------------------
  function aio.gather(list, opts)
    if type(list) ~= "table" then error("aio.gather: array of tasks or functions expected, got " .. type(list), 2) end
    local me = need_task("aio.gather")
    local n = list.n or #list
    local tasks = {}
    for i = 1, n do tasks[i] = as_task(list[i], "aio.gather", i) end
    local return_exceptions = opts and opts.return_exceptions
    local results = { n = n }
    local pending, first_bad = 0, nil
    local function on_done(t)
      pending = pending - 1
      if T_status(t) ~= "done" then
        T_error(t)                         -- retrieved: gather reports it
        if not return_exceptions and not first_bad then first_bad = t end
      end
      if pending == 0 or first_bad then wake(me, results) end
    end
    for i = 1, n do
      local t = tasks[i]
      if T_done(t) then
        if T_status(t) ~= "done" and not return_exceptions and not first_bad then first_bad = t end
      else
        pending = pending + 1
        T_add_done_callback(t, on_done)
      end
    end
    while pending > 0 and not first_bad do
      local ok, err = suspend(results)
      if not ok then
        for i = 1, n do T_cancel(tasks[i]) end
        error(err, 0)
      end
    end
    if first_bad then
      for i = 1, n do T_cancel(tasks[i]) end
      return T_result(first_bad)           -- raises its error
    end
    for i = 1, n do
      local t = tasks[i]
      if T_status(t) == "done" then results[i] = (T_result(t))
      else results[i] = T_error(t) end
    end
    return results
  end

  -- waiting for one task with a deadline ----------------------------------
  local function wait_done(me, t, sec)
    -- returns "done", "timeout", or false, err when the waiter is cancelled
    local token = {}
    local timer = sec and call_later(sec, function() wake(me, token, "timeout") end)
    T_add_done_callback(t, function() wake(me, token, "done") end)
    local ok, why = suspend(token)
    if timer then timer:cancel() end
    if not ok then return false, why end
    return why
  end

  function aio.wait_for(item, sec)
    local me = need_task("aio.wait_for")
    local t = as_task(item, "aio.wait_for")
    if sec == nil then return T_wait(t) end
    sec = check_seconds(sec, "aio.wait_for")
    if not T_done(t) then
      local why, err = wait_done(me, t, sec)
      if why == false then T_cancel(t); error(err, 0) end
      if why == "timeout" and not T_done(t) then
        T_cancel(t)
        -- wait for it to finish cancelling; a cancel of ours now still waits
        local cancelled_err
        while not T_done(t) do
          local w, e = wait_done(me, t, nil)
          if w == false then cancelled_err = e end
        end
        if cancelled_err then error(cancelled_err, 0) end
        T_error(t)
        error(timeout_error(sec), 2)
      end
    end
    return T_wait(t)
  end

  -- timeout scopes --------------------------------------------------------
  local expired_scopes = setmetatable({}, { __mode = "k" })

  local function finish_scope(ok, ...)
    if ok then return ... end
    error((...), 0)
  end

  function aio.timeout(sec, fn, ...)
    local me = need_task("aio.timeout")
    if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
      error("aio.timeout: function expected as argument #2, got " .. type(fn), 2)
    end
    if sec == nil or sec == math_huge then return fn(...) end
    sec = check_seconds(sec, "aio.timeout")
    local expired = false
    local timer = call_later(sec, function()
      expired = true
      expired_scopes[me] = (expired_scopes[me] or 0) + 1
      T_cancel(me, "timeout")
    end)
    local r = pack(pcall(fn, ...))
    timer:cancel()
    if expired then
      local still_expired = expired_scopes[me] - 1
      expired_scopes[me] = still_expired > 0 and still_expired or nil
      local left = T_uncancel(me)
      -- ours unless someone else asked for a cancellation too
      if not r[1] and is_error(r[2], "CancelledError") and left <= still_expired then
        error(timeout_error(sec), 2)
      end
    end
    return finish_scope(unpack(r, 1, r.n))
  end

  -- wait ------------------------------------------------------------------
  function aio.wait(list, opts)
    if type(list) ~= "table" then error("aio.wait: array of tasks or functions expected", 2) end
    local me = need_task("aio.wait")
    opts = opts or {}
    local when = opts.return_when or "ALL_COMPLETED"
    if when ~= "ALL_COMPLETED" and when ~= "FIRST_COMPLETED" and when ~= "FIRST_EXCEPTION" then
      error("aio.wait: return_when must be ALL_COMPLETED, FIRST_COMPLETED or FIRST_EXCEPTION, got " .. tostring(when), 2)
    end
    local n = list.n or #list
    local tasks = {}
    for i = 1, n do tasks[i] = as_task(list[i], "aio.wait", i) end
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
    if n > 0 and not satisfied() then
      local function poke() wake(me, token) end
      for i = 1, n do if not T_done(tasks[i]) then T_add_done_callback(tasks[i], poke) end end
      local timer = opts.timeout and call_later(check_seconds(opts.timeout, "aio.wait"), function() wake(me, token, "timeout") end)
      repeat
        local ok, why = suspend(token)
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
  function aio.as_completed(list, timeout)
    if type(list) ~= "table" then error("aio.as_completed: array of tasks or functions expected", 2) end
    local n = list.n or #list
    local finished, head, tail = {}, 1, 0
    local waiter, token = nil, {}
    local deadline = timeout and (core.now() + check_seconds(timeout, "aio.as_completed"))
    local function on_done(t)
      tail = tail + 1
      finished[tail] = t
      if waiter then wake(waiter, token) end
    end
    for i = 1, n do
      local t = as_task(list[i], "aio.as_completed", i)
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
        local ok, why = suspend(token)
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
  function aio.shield(item)
    local me = need_task("aio.shield")
    local t = as_task(item, "aio.shield")
    if not T_done(t) then
      local why, err = wait_done(me, t, nil)
      if why == false then error(err, 0) end   -- t goes on
    end
    return T_wait(t)
  end

  -- task groups -----------------------------------------------------------
  local Group = {}
  Group.__index = Group

  function Group:spawn(fn, ...)
    if self._closed then error("task group is finished: cannot spawn into it", 2) end
    local t = spawn(fn, ...)
    self._pending = self._pending + 1
    self._tasks[#self._tasks + 1] = t
    T_add_done_callback(t, self._on_done)
    return t
  end

  function aio.task_group(fn)
    local me = need_task("aio.task_group")
    if type(fn) ~= "function" then error("aio.task_group: function expected, got " .. type(fn), 2) end
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
      local okw, errw = suspend(g)
      if not okw then
        propagate = errw
        aborting = false
        abort()
      end
    end
    g._closed = true
    local errors = g._errors
    if #errors > 0 then
      local first = errors[1]
      if #errors > 1 then
        if type(first) == "table" then first.errors = errors
        else first = new_error("TaskGroupError", tostring(first), { errors = errors }) end
      end
      error(first, 0)
    end
    if propagate then error(propagate, 0) end
    return ok and err or nil
  end

  -- generators: `for v in aio.generator(function(yield, ...) ... end, ...)` --
  function aio.generator(fn, ...)
    if type(fn) ~= "function" then error("aio.generator: function expected, got " .. type(fn), 2) end
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

  aio._is_task = is_task
end
