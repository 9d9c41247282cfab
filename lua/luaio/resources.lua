-- Open resources that debug mode names at loop close (hooks.main_done),
-- each with the position of the user's code that created it (track.c).
-- Native resources (streams, servers, processes, files, UDP sockets, signal
-- handlers) are recorded by C when they are made; Lua resources (servers
-- here, HTTP sessions, WebSockets, database connections) call track when
-- they open and untrack when they close. Outside debug mode both are no-ops.
local core = require "luaio.core"

local M = {}

-- track(resource, label): label says what it is ("WebSocket ws://host/path")
M.track = core.track
M.untrack = core.untrack

-- opened(resource, label) -> resource, tracked
function M.opened(resource, label)
  core.track(resource, label)
  return resource
end

-- the labels of what is still open, oldest first, appended to `lines`
function M.labels(lines)
  for _, label in ipairs(core.open_resources()) do lines[#lines + 1] = "  " .. label end
  return lines
end

return M
