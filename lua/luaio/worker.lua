-- Worker mode (API.md §13, `luaio --workers`): aio.worker(), and the
-- graceful stop. In a worker, SIGTERM/SIGINT do not cancel the main task at
-- once: worker.c calls hooks.worker_stop, which closes every server of this
-- process (no new connection; Server:close lets the connections finish, and
-- HTTP ends its idle keep-alive ones), waits for them up to the grace, then
-- has the main task cancelled (core.worker_done). streams.lua registers the
-- servers here.
local core = require "luaio.core"
local with_timeout = require("luaio.combinators").timeout

local spawn, pairs, ipairs, pcall = core.spawn, pairs, ipairs, pcall

local M = {}

local open = {}     -- the servers of this process not closed yet

function M.server_opened(server) open[server] = true end
function M.server_closed(server) open[server] = nil end

-- aio.worker() -> {id = 1..N, count = N, pid = ...} | nil outside worker mode
function M.info()
  local id, count, pid = core.worker_info()
  if not id then return nil end
  return { id = id, count = count, pid = pid }
end

local function in_flight(list)
  local n = 0
  for _, s in ipairs(list) do n = n + s._active end
  return n
end

-- worker_stop(signal, grace) (worker.c): the first SIGTERM or SIGINT
core.hooks.worker_stop = function(signame, grace)
  local stopper = spawn(function()
    local list = {}
    for s in pairs(open) do list[#list + 1] = s end
    for _, s in ipairs(list) do s:close() end
    local ok = pcall(with_timeout, grace, function()
      for _, s in ipairs(list) do s:wait_closed() end
    end)
    if not ok then
      local id = core.worker_info()
      io.stderr:write(("luaio: worker %d: %s, and after the grace period (%g s) %d connection(s) still in flight: cancelled\n")
        :format(id, signame, grace, in_flight(list)))
    end
    core.worker_done(ok)
  end)
  stopper.name = "worker-stop"
end

return M
