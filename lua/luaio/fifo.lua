-- FIFO of waiting tasks, shared by sync.lua and the Redis client (queue.c keeps its own):
-- { first, last, [i] = task }.
--
-- An abandoned wait: a waiting method whose suspend ended by an error (a
-- cancellation) calls its kind's `abandon(obj, task)`, so that what was
-- handed to the waiter meanwhile (a permit, a notification, a wake-up) goes
-- to the next waiter. No record is kept per wait: closing a coroutine parked
-- in a wait is refused (coro.c), so an error is the only other way out.
local wake = require("luaio.core").wake

local M = {}

function M.new() return { first = 1, last = 0 } end

function M.push(q, t) local last = q.last + 1; q.last = last; q[last] = t end

function M.remove(q, t)
  for i = q.first, q.last do
    if q[i] == t then
      for j = i, q.last - 1 do q[j] = q[j + 1] end
      q[q.last] = nil
      q.last = q.last - 1
      return
    end
  end
end

-- wake the first task still waiting on `owner`; returns it or nil
function M.wake_first(q, owner, ...)
  while q.first <= q.last do
    local t = q[q.first]
    q[q.first] = nil
    q.first = q.first + 1
    if wake(t, owner, ...) then return t end
  end
  q.first, q.last = 1, 0
  return nil
end

return M
