-- Course exercise 3 "Chat server": JSON lines, broadcast to every client,
-- a history (the last 100 kept, the last 10 sent to newcomers), join and
-- leave notices; a client whose connection fails is dropped. Plain `nc`
-- clients work too: they send text lines and receive JSON lines. The JSON
-- field names are the chapter's, so its Python client talks to this server.
--
-- With --serve, a second port serves a page (chat.html, next to this
-- script) that joins the same room over a WebSocket: a browser user and an
-- `nc` user talk to each other. One room, two kinds of members behind the
-- same send: a TCP stream gets each JSON message as a line, a WebSocket as
-- a text message; a browser sends its text as a text message, as `nc`
-- sends a line.
--   luaio scripts/chat_server.lua            a self-demo with two clients, then exits
--   luaio scripts/chat_server.lua --serve [tcp_port [http_port]] [--redis URL]
--                                            serves until Ctrl+C (default ports 8889 and 8890)
--
-- With --redis URL (redis://host:port), the room spans every server
-- process started with the same Redis: a message is published on the
-- channel "chat:room" and each server delivers what the channel carries to
-- its own members (its own messages too, so every member everywhere sees
-- one order). The history is what each server saw on the channel.
local aio = require "luaio"
local json = aio.json

local ChatServer = {}
ChatServer.__index = ChatServer

function ChatServer.new()
  return setmetatable({ clients = {}, history = {} }, ChatServer)
end

local function now_iso() return os.date("!%Y-%m-%dT%H:%M:%S") end

-- the two kinds of members: each sends one JSON message its way
local TcpMember = {}
TcpMember.__index = TcpMember
function TcpMember:send(line) self.stream:write(line, "\n") end

local WsMember = {}
WsMember.__index = WsMember
function WsMember:send(line) self.ws:send(line) end

function ChatServer:send(member, line)
  local ok = pcall(member.send, member, line)
  if not ok then self.clients[member] = nil end     -- a dead client is dropped
end

-- to this server's members: the message, now in the history
function ChatServer:deliver(entry)
  local message, sender = entry.message, entry.expediteur
  table.insert(self.history, entry)
  if #self.history > 100 then table.remove(self.history, 1) end   -- keep the last 100
  local line = json.encode({ type = "message", expediteur = sender, message = message, timestamp = entry.timestamp })
  local sends = {}
  for member in pairs(self.clients) do sends[#sends + 1] = function() self:send(member, line) end end
  aio.gather(sends, { return_exceptions = true })     -- to every client at once
end

function ChatServer:broadcast(message, sender)
  local entry = { timestamp = now_iso(), expediteur = sender, message = message }
  if self.redis then
    self.redis:publish(self.channel, json.encode(entry))   -- every server delivers it, this one too
  else
    self:deliver(entry)
  end
end

-- --redis: the room through a Redis channel; -> the subscription (close it to stop)
function ChatServer:relay(url)
  self.redis, self.channel = aio.redis.pool(url), "chat:room"
  local sub = self.redis:subscribe(self.channel)
  aio.spawn(function()
    local ok, err = pcall(function()
      for m in sub:messages() do
        local good, entry = pcall(json.decode, m.data)
        if good and type(entry) == "table" and type(entry.message) == "string" then self:deliver(entry) end
      end
    end)
    if not ok and not sub.client.closed then print("❌ Redis relay stopped: " .. tostring(err)) end
  end)
  print("🔗 The room is shared through Redis at " .. url)
  io.stdout:flush()
  return sub
end

-- a member's whole stay: the history, the join notice, each of its
-- messages (from `next_message`, nil at the end) broadcast, the leave notice
function ChatServer:session(member, who, next_message)
  print("👤 New client: " .. who)
  io.stdout:flush()
  self.clients[member] = true
  if #self.history > 0 then
    local last = {}
    for i = math.max(1, #self.history - 9), #self.history do last[#last + 1] = self.history[i] end
    self:send(member, json.encode({ type = "historique", messages = last }))
  end
  self:broadcast("A new user joined", "System")
  local ok, err = pcall(function()
    for text in next_message do
      if text ~= "" then
        print(("💬 %s: %s"):format(who, text))
        io.stdout:flush()
        self:broadcast(text, who)
      end
    end
  end)
  if not ok and not aio.is_error(err, "CancelledError") then print(("❌ Error with %s: %s"):format(who, tostring(err))) end
  self.clients[member] = nil
  self:broadcast("A user left", "System")
  print("👋 Client left: " .. who)
  io.stdout:flush()
  if not ok and aio.is_error(err, "CancelledError") then error(err, 0) end
end

function ChatServer:handle(stream)
  local host, port = stream:peername()
  self:session(setmetatable({ stream = stream }, TcpMember), ("%s:%s"):format(host, port), stream:lines())
end

-- a browser: its name from ?name= (not "System", at most 32 characters of
-- letters, digits, _ . -), else its address like a TCP client; each text
-- message is one chat message (binary ones are ignored)
function ChatServer:handle_ws(ws, req)
  local name = req.query.name
  if type(name) ~= "string" or not name:match("^[%w_.%-]+$") or #name > 32 or name == "System" then
    name = nil
  end
  local who = name or req.peer or "?"                  -- req.peer: "host:port"
  local messages = ws:messages()
  local function next_text()
    while true do
      local data, kind = messages()
      if data == nil or kind == "text" then return data end
    end
  end
  self:session(setmetatable({ ws = ws }, WsMember), who, next_text)
end

function ChatServer:start(host, port)
  local server = aio.start_server(function(s) self:handle(s) end, host, port)
  print(("💬 Chat server on %s:%d (connect with: nc %s %d)"):format(host, server.port, host, server.port))
  io.stdout:flush()
  return server
end

-- the page, read from this script's directory
local function script_dir()
  return (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
end

-- the HTTP side: the page at /, the room over a WebSocket at /ws
function ChatServer:start_http(host, port)
  local path = script_dir() .. "/chat.html"
  local f = assert(io.open(path, "rb"), "chat page not found: " .. path)
  local page = f:read("a")
  f:close()
  local app = aio.http.app()
  app:route("/", function()
    return page, 200, { ["Content-Type"] = "text/html; charset=utf-8", ["Cache-Control"] = "no-cache" }
  end)
  app:websocket("/ws", function(ws, req) self:handle_ws(ws, req) end, { max_message = 64 * 1024 })
  local server = app:listen(host, port)
  print(("🌐 Chat page on http://%s:%d/ (WebSocket at ws://%s:%d/ws)"):format(host, server.port, host, server.port))
  io.stdout:flush()
  return server
end

local chat = ChatServer.new()
local redis_url
for i = #arg - 1, 1, -1 do                -- --redis URL, anywhere: taken out of arg
  if arg[i] == "--redis" then
    redis_url = arg[i + 1]
    table.remove(arg, i + 1)
    table.remove(arg, i)
  end
end
local relay <close> = redis_url and chat:relay(redis_url) or nil
if arg[1] == "--serve" then
  local server <close> = chat:start("127.0.0.1", tonumber(arg[2]) or 8889)
  local http_port = tonumber(arg[3])
  local ok, web = pcall(chat.start_http, chat, "127.0.0.1", http_port or 8890)
  if not ok then
    -- the default port taken: the TCP room still serves; any other failure is fatal
    if http_port or type(web) ~= "table" or web.code ~= "EADDRINUSE" then error(web, 0) end
    print(("⚠️  No browser page: %s"):format(web.message))
    web = nil
  end
  local _ <close> = web
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
