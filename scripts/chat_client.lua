-- Course exercise 3, the client: connects, prints what the server sends
-- (history and messages), sends four test messages and leaves.
--   luaio scripts/chat_client.lua [host] [port]
local aio = require "luaio"
local SCALE = tonumber(os.getenv("LUAIO_DEMO_SCALE")) or 1

local host, port = arg[1] or "127.0.0.1", tonumber(arg[2]) or 8889
local ok, s = pcall(aio.open_connection, host, port)
if not ok then
  print("Client error: " .. tostring(s))
  os.exit(1)
end
print("🔌 Connected to the chat server")

-- receiving runs as its own task while this one sends
local receiver = aio.spawn(function()
  for line in s:lines() do
    local okj, m = pcall(aio.json.decode, line)
    if not okj then print("Receive error: " .. tostring(m)) break end
    if m.type == "message" then
      print(("[%s] %s: %s"):format(m.timestamp:sub(1, 19), m.expediteur, m.message))
    elseif m.type == "historique" then
      print("📜 Message history:")
      for _, h in ipairs(m.messages) do print(("[%s] %s: %s"):format(h.timestamp:sub(1, 19), h.expediteur, h.message)) end
      print()
    end
  end
end)

for _, message in ipairs { "Hello everyone!", "How is it going?", "Testing the async server", "Goodbye!" } do
  aio.sleep(2 * SCALE)
  s:write(message, "\n")
end
aio.sleep(2 * SCALE)
s:close()
receiver:cancel()
