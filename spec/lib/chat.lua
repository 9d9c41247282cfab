-- Helpers for spec/chat_browser_spec.lua: the course's chat server
-- (scripts/chat_server.lua --serve) as a child process, headless Chromium
-- pages read through the DevTools protocol, and a TCP member of the room.
--
-- A page's DOM is read by the test itself: each Chromium runs with
-- --remote-debugging-port=0 (the port it picked is in DevToolsActivePort
-- in its profile), the test finds the page's target in /json/list and
-- evaluates JavaScript in it over that WebSocket (aio.websocket.connect:
-- luaio's client against Chromium's server). The page carries no test
-- hook beyond its documented ?name= and ?say= parameters.
local aio = require "luaio"
local P = require "spec.lib.peers"

local C = {}

-- the chat server on free ports (extra: more arguments, e.g. --redis URL)
-- -> proc, tcp_port, http_port
function C.chat_server(dir, extra)
  local script = P.cwd() .. "/scripts/chat_server.lua"
  local last
  for _ = 1, 3 do                                  -- a free port taken meanwhile: try others
    local tcp, http = P.free_port(), P.free_port()
    local argv = { P.luaio_bin(), script, "--serve", tostring(tcp), tostring(http) }
    for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
    local proc = P.start(argv, { dir = dir, name = "chat_server", cwd = P.cwd() })
    local ok, t, h = pcall(proc.wait_for, proc,
      "Chat server on 127%.0%.0%.1:(%d+).-Chat page on http://127%.0%.0%.1:(%d+)/", 15)
    if ok then return proc, tonumber(t), tonumber(h) end
    last = t
    proc:stop()
    if not proc:output():find("EADDRINUSE", 1, true) then break end
  end
  error("the chat server did not start: " .. tostring(last), 2)
end

-- TCP member -------------------------------------------------------------------
-- a plain client (like nc): lines out, every JSON message in kept in order
local Tcp = {}
Tcp.__index = Tcp

function C.tcp_client(port)
  local s = aio.open_connection("127.0.0.1", port)
  local self = setmetatable({ s = s, got = {}, changed = aio.Event() }, Tcp)
  local host, p = s:sockname()
  self.name = host .. ":" .. p                     -- what the room calls it
  self.reader = aio.spawn(function()
    for line in s:lines() do
      self.got[#self.got + 1] = aio.json.decode(line)
      self.changed:set()
    end
    self.eof = true
    self.changed:set()
  end)
  return self
end

function Tcp:say(text) self.s:write(text, "\n") end

-- the "message" entries seen so far, as "from: text" strings
function Tcp:messages()
  local out = {}
  for _, m in ipairs(self.got) do
    if m.type == "message" then out[#out + 1] = m.expediteur .. ": " .. m.message end
  end
  return out
end

function Tcp:count(entry)
  local n = 0
  for _, e in ipairs(self:messages()) do if e == entry then n = n + 1 end end
  return n
end

-- wait until `pred(self)` holds (re-checked at each message) -> true, or raises
function Tcp:wait_until(pred, what, timeout)
  local deadline = aio.now() + (timeout or 15)
  while not pred(self) do
    local left = deadline - aio.now()
    if left <= 0 or self.eof then
      error(("TCP client: %s never came; it saw:\n  %s"):format(what, table.concat(self:messages(), "\n  ")), 2)
    end
    self.changed:clear()
    pcall(aio.timeout, left, self.changed.wait, self.changed)
  end
  return true
end

function Tcp:close()
  self.reader:cancel()
  self.s:close()
end

-- a browser page -------------------------------------------------------------------
local Page = {}
Page.__index = Page

local function devtools_port(dir, proc)
  local deadline = aio.now() + 30
  while true do
    local d = P.read(dir .. "/profile/DevToolsActivePort")
    local port = d and tonumber(d:match("^(%d+)\n"))
    if port then return port end
    if proc.proc.returncode ~= nil or aio.now() > deadline then
      error("chromium gave no DevTools port:\n" .. proc:output():sub(-3000), 3)
    end
    aio.sleep(0.05)
  end
end

-- open url in a Chromium of its own -> page (connected to its DevTools target)
function C.open_page(url)
  local dir = P.tmpdir("chromium")
  local self = setmetatable({ dir = dir, url = url, seq = 0 }, Page)
  self.proc = P.chromium(dir, url, { "--remote-debugging-port=0" })
  local ok, err = pcall(function()
    local port = devtools_port(dir, self.proc)
    local deadline = aio.now() + 30
    while not self.target do
      local okl, list = pcall(function() return aio.http.get("http://127.0.0.1:" .. port .. "/json/list"):json() end)
      for _, t in ipairs(okl and list or {}) do
        if t.type == "page" and t.url:sub(1, #url) == url then self.target = t.webSocketDebuggerUrl end
      end
      if not self.target then
        if aio.now() > deadline then error("no DevTools target for " .. url) end
        aio.sleep(0.05)
      end
    end
    self.cdp = aio.websocket.connect(self.target, { timeout = 10 })
  end)
  if not ok then
    local log = self.proc:output():sub(-3000)
    self:close()
    error(("opening %s: %s\nchromium's log:\n%s"):format(url, tostring(err), log), 2)
  end
  return self
end

-- evaluate a JavaScript expression in the page -> its value (JSON-able)
function Page:eval(expr)
  self.seq = self.seq + 1
  local id = self.seq
  self.cdp:send(aio.json.encode { id = id, method = "Runtime.evaluate",
    params = { expression = expr, returnByValue = true } })
  while true do
    local data = aio.timeout(10, self.cdp.receive, self.cdp)
    if not data then error("the DevTools connection closed", 2) end
    local m = aio.json.decode(data)
    if m.id == id then
      if m.error then error("DevTools: " .. aio.json.encode(m.error), 2) end
      local r = m.result
      if r.exceptionDetails then
        error("the page raised: " .. aio.json.encode(r.exceptionDetails), 2)
      end
      return r.result.value
    end
  end
end

-- what the page shows: its state and its log, each line {kind=, from=, text=}
-- (a page still loading shows state "loading" and no lines)
local READ_DOM = [[(() => {
  const status = document.getElementById('status');
  if (!status) return JSON.stringify({ state: 'loading', lines: [] });
  return JSON.stringify({ state: status.dataset.state,
    lines: Array.from(document.querySelectorAll('#log li'), li => ({
      kind: li.className, from: li.dataset.from, text: li.querySelector('.text').textContent,
      html: li.querySelector('.text').innerHTML })) });
})()]]

function Page:dom()
  return aio.json.decode(self:eval(READ_DOM))
end

-- "from: text" strings of the log lines whose class contains `kind` (all by default)
function Page:lines(kind)
  local out = {}
  for _, l in ipairs(self:dom().lines) do
    if not kind or (" " .. l.kind .. " "):find(" " .. kind .. " ", 1, true) then
      out[#out + 1] = l.from .. ": " .. l.text
    end
  end
  return out
end

-- poll the DOM until pred(dom) holds -> dom, or raises with what the page shows
function Page:wait_until(pred, what, timeout)
  local deadline = aio.now() + (timeout or 15)
  while true do
    local dom = self:dom()
    if pred(dom) then return dom end
    if aio.now() > deadline then
      local shown = {}
      for _, l in ipairs(dom.lines) do shown[#shown + 1] = ("[%s] %s: %s"):format(l.kind, l.from, l.text) end
      error(("page %s: %s never showed (state %s); it shows:\n  %s"):format(self.url, what, tostring(dom.state),
        table.concat(shown, "\n  ")), 2)
    end
    aio.sleep(0.05)
  end
end

-- the browser dies at once (SIGKILL to its process group): no close frame
function Page:kill()
  aio.exec({ "sh", "-c", 'kill -KILL -"$1" 2>/dev/null', "sh", tostring(math.tointeger(self.proc.pid)) })
end

function Page:close()
  if self.cdp then pcall(self.cdp.close, self.cdp) self.cdp = nil end
  if self.proc then self.proc:stop() end
  P.rmtree(self.dir)
end

-- how many entries of list equal value
function C.count(list, value)
  local n = 0
  for _, v in ipairs(list) do if v == value then n = n + 1 end end
  return n
end

function C.has(list, value) return C.count(list, value) > 0 end

return C
