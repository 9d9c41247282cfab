-- Open resources that debug mode names at loop close (hooks.main_done):
-- resource -> label, weak on the resource. Servers register here (streams.lua).
local M = {}

local open_resources = setmetatable({}, { __mode = "k" })

function M.track(resource, label) open_resources[resource] = label end
function M.untrack(resource) open_resources[resource] = nil end

-- the labels of what is still open, appended to `lines`
function M.labels(lines)
  for _, label in pairs(open_resources) do lines[#lines + 1] = "  " .. label end
  return lines
end

return M
