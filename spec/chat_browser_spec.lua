-- The course's chat in a browser: scripts/chat_server.lua --serve, run as a
-- child process on free ports, serves chat.html at / and the room over a
-- WebSocket at /ws besides its JSON-lines TCP port. Two headless Chromium
-- pages (each in a Chromium of its own, told what to say by ?name=&say=)
-- and one TCP client (as nc) share the room: each sees the others'
-- messages, the join and leave notices; the late joiner gets the history;
-- a browser killed outright leaves a leave notice behind. The pages' DOM is
-- read through the DevTools protocol (spec/lib/chat.lua).
local aio = require "luaio"
local P = require "spec.lib.peers"
local C = require "spec.lib.chat"

local JOIN, LEFT = "System: A new user joined", "System: A user left"

local missing = P.chromium_bin() == nil and "chromium is not installed" or nil

describe("the course's chat: browsers and a TCP client in one room", function()
  if missing then
    it("is skipped", function() pending(missing) end)
    return
  end

  local dir, server, tcp_port, http_port, base
  local tcp, alice, bob
  setup(function()
    dir = P.tmpdir("chat")
    server, tcp_port, http_port = C.chat_server(dir)
    base = ("http://127.0.0.1:%d/"):format(http_port)
  end)
  teardown(function()
    for _, page in ipairs { alice, bob } do if page then page:close() end end
    if tcp then tcp:close() end
    if server then server:stop() end
    P.rmtree(dir)
  end)

  it("serves the page at / and refuses a plain GET at /ws", function()
    local r = aio.http.get(base)
    assert.equals(200, r.status)
    assert.matches("^text/html", r.headers["content-type"])
    assert.matches("new WebSocket", r.body)
    assert.equals(426, aio.http.get(base .. "ws").status)
  end)

  it("a browser and a TCP client talk to each other", function()
    tcp = C.tcp_client(tcp_port)
    tcp:wait_until(function(t) return t:count(JOIN) == 1 end, "its own join notice")
    alice = C.open_page(base .. "?name=alice&say=hello%20from%20alice&say=%3Ci%3Enot%20html%3C%2Fi%3E")
    -- the browser's text, sent once connected, reaches the TCP client
    tcp:wait_until(function(t) return t:count("alice: <i>not html</i>") == 1 end, "alice's messages")
    assert.same({ JOIN, JOIN, "alice: hello from alice", "alice: <i>not html</i>" }, tcp:messages())
    tcp:say("hello from tcp")
    local dom = alice:wait_until(function(d)
      for _, l in ipairs(d.lines) do if l.text == "hello from tcp" then return true end end
    end, "the TCP client's line")
    assert.equals("open", dom.state)
    -- alice joined after the TCP client: its join came to her in the history
    assert.same({ JOIN }, alice:lines("history"))
    assert.same({ JOIN, "alice: hello from alice", "alice: <i>not html</i>", tcp.name .. ": hello from tcp" },
      alice:lines("message"))
    -- what others typed is text in the page, never markup
    assert.equals("&lt;i&gt;not html&lt;/i&gt;", dom.lines[4].html)
  end)

  it("a late browser gets the history, and everyone sees everyone", function()
    bob = C.open_page(base .. "?name=bob&say=hi%20from%20bob")
    local history = { JOIN, JOIN, "alice: hello from alice", "alice: <i>not html</i>",
      tcp.name .. ": hello from tcp" }
    bob:wait_until(function(d) return d.lines[#d.lines] and d.lines[#d.lines].text == "hi from bob" end,
      "his own message")
    assert.same(history, bob:lines("history"))
    assert.same({ JOIN, "bob: hi from bob" }, bob:lines("message"))
    alice:wait_until(function(d) return d.lines[#d.lines].text == "hi from bob" end, "bob's message")
    assert.same({ JOIN, "alice: hello from alice", "alice: <i>not html</i>", tcp.name .. ": hello from tcp",
      JOIN, "bob: hi from bob" }, alice:lines("message"))
    tcp:wait_until(function(t) return t:count("bob: hi from bob") == 1 end, "bob's message")
    assert.equals(3, tcp:count(JOIN))
    -- and the TCP client's next line reaches both pages
    tcp:say("bye browsers")
    for _, page in ipairs { alice, bob } do
      page:wait_until(function(d) return d.lines[#d.lines].text == "bye browsers" end, "the TCP client's last line")
    end
    -- typed in the form and sent with the button, as a user does
    alice:eval([[document.getElementById('text').value = 'typed by alice';
                 document.getElementById('send').click()]])
    tcp:wait_until(function(t) return t:count("alice: typed by alice") == 1 end, "what alice typed")
    bob:wait_until(function(d) return d.lines[#d.lines].text == "typed by alice" end, "what alice typed")
    assert.equals("", alice:eval("document.getElementById('text').value"))
  end)

  it("a browser killed outright leaves a leave notice for the others", function()
    bob:kill()
    tcp:wait_until(function(t) return t:count(LEFT) == 1 end, "the leave notice")
    local dom = alice:wait_until(function(d) return d.lines[#d.lines].from == "System" end, "the leave notice")
    assert.equals("A user left", dom.lines[#dom.lines].text)
    server:wait_for("👋 Client left: bob\n")
    bob:close()
    bob = nil
    -- the room goes on without him
    tcp:say("still here")
    alice:wait_until(function(d) return d.lines[#d.lines].text == "still here" end, "a line after the leave")
    -- the TCP client leaves too: alice sees its notice, then the server sees her go
    tcp:close()
    tcp = nil
    alice:wait_until(function(d)
      local n = 0
      for _, l in ipairs(d.lines) do if l.from .. ": " .. l.text == LEFT then n = n + 1 end end
      return n == 2
    end, "the TCP client's leave")
    alice:close()
    alice = nil
    server:wait_for("👋 Client left: alice\n")
  end)
end)
