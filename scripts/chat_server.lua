-- Course exercise 3 "Chat server": JSON lines, broadcast to every client,
-- a history (the last 100 kept, the last 10 sent to newcomers), join and
-- leave notices; a client whose connection fails is dropped. Plain `nc`
-- clients work too: they send text lines and receive JSON lines. The JSON
-- field names are the chapter's, so its Python client talks to this server.
--   luaio scripts/chat_server.lua                 a self-demo with two clients, then exits
--   luaio scripts/chat_server.lua --serve [port]  serves until Ctrl+C (default port 8889)
local aio = require "luaio"
local json = aio.json

local ChatServer = {}
ChatServer.__index = ChatServer

function ChatServer.new()
  return setmetatable({ clients = {}, history = {} }, ChatServer)
end

local function now_iso() return os.date("!%Y-%m-%dT%H:%M:%S") end

function ChatServer:send(stream, line)
  local ok = pcall(stream.write, stream, line, "\n")
  if not ok then self.clients[stream] = nil end     -- a dead client is dropped
end

function ChatServer:broadcast(message, sender)
  local entry = { timestamp = now_iso(), expediteur = sender, message = message }
  table.insert(self.history, entry)
  if #self.history > 100 then table.remove(self.history, 1) end   -- keep the last 100
  local line = json.encode({ type = "message", expediteur = sender, message = message, timestamp = entry.timestamp })
  local sends = {}
  for stream in pairs(self.clients) do sends[#sends + 1] = function() self:send(stream, line) end end
  aio.gather(sends, { return_exceptions = true })     -- to every client at once
end

function ChatServer:handle(stream)
  local host, port = stream:peername()
  local who = ("%s:%s"):format(host, port)
  print("👤 New client: " .. who)
  self.clients[stream] = true
  if #self.history > 0 then
    local last = {}
    for i = math.max(1, #self.history - 9), #self.history do last[#last + 1] = self.history[i] end
    self:send(stream, json.encode({ type = "historique", messages = last }))
  end
  self:broadcast("A new user joined", "System")
  local ok, err = pcall(function()
    for line in stream:lines() do
      if line ~= "" then
        print(("💬 %s: %s"):format(who, line))
        self:broadcast(line, who)
      end
    end
  end)
  if not ok and not aio.is_error(err, "CancelledError") then print(("❌ Error with %s: %s"):format(who, tostring(err))) end
  self.clients[stream] = nil
  self:broadcast("A user left", "System")
  print("👋 Client left: " .. who)
  if not ok and aio.is_error(err, "CancelledError") then error(err, 0) end
end

function ChatServer:start(host, port)
  local server = aio.start_server(function(s) self:handle(s) end, host, port)
  print(("💬 Chat server on %s:%d (connect with: nc %s %d)"):format(host, server.port, host, server.port))
  io.stdout:flush()
  return server
end

local chat = ChatServer.new()
if arg[1] == "--serve" then
  local server <close> = chat:start("127.0.0.1", tonumber(arg[2]) or 8889)
  print("🛑 Ctrl+C to stop\n")
  io.stdout:flush()
  server:serve_forever()
else
  -- self-demo: alice talks, bob joins later and receives the history
  local server <close> = chat:start("127.0.0.1", 0)
  -- each demo client reads in a task of its own until it has seen `wait_for`
  local function client(name, lines, wait_for)
    local s <close> = aio.open_connection("127.0.0.1", server.port)
    local reader = aio.spawn(function()
      for line in s:lines() do
        local m = json.decode(line)
        if m.type == "historique" then print(("  [%s] history: %d messages"):format(name, #m.messages))
        else
          print(("  [%s] %s: %s"):format(name, m.expediteur, m.message))
          if m.message == wait_for then return end
        end
      end
    end)
    for _, text in ipairs(lines) do aio.sleep(0.1) s:write(text, "\n") end
    pcall(aio.wait_for, reader, 3)
  end
  aio.gather {
    function() client("alice", { "Hello everyone!", "How are you?" }, "Hi alice") end,
    function() aio.sleep(0.35) client("bob", { "Hi alice" }, "Hi alice") end,
  }
  aio.sleep(0.1)
  print(("✅ %d messages in the history"):format(#chat.history))
end
