-- Debug mode's report at loop close (API.md §9, §15): every kind of
-- resource left open is named with the line of the user's code that made it
-- (track.c, resources.lua); the same kinds closed before the end are not.
-- Each case runs a child `luaio` with LUAIO_DEBUG=1 and reads its stderr.
local aio = require "luaio"
local P = require "spec.lib.peers"

local dir

-- run `code` (a script) in a child luaio with debug mode on -> stderr, status
local function run_debug(code, name)
  local path = P.write(dir .. "/" .. name .. ".lua", code)
  local r = aio.exec({ "env", "LUAIO_DEBUG=1", P.luaio_bin(), path }, { timeout = 60, cwd = dir })
  return r.stderr, r.status
end

local line_of = P.line_of

local LEFT_OPEN = [[
local aio = require "luaio"
local server = aio.start_server(function(s) s:readline() end, "127.0.0.1", 0)  -- @server
local stream = aio.open_connection("127.0.0.1", server.port)                   -- @stream
local proc = aio.spawn_process({ "sleep", "30" })                               -- @process
local file = aio.fs.open("left.txt", "w")                                      -- @file
local udp = aio.udp_bind("127.0.0.1", 0)                                       -- @udp
local sig = aio.on_signal("SIGUSR1", function() end)                           -- @signal
local session = aio.http.Session()                                             -- @session
local app = aio.http.app()
app:websocket("/ws", function(ws) ws:receive() end)
local web = app:listen("127.0.0.1", 0)                                         -- @web
local ws = aio.websocket.connect("ws://127.0.0.1:" .. web.port .. "/ws")       -- @websocket
local res = {}
aio._track(res, "database connection db://x")                                 -- @tracked
aio.sleep(0.05)
proc:kill("SIGKILL")
]]

local CLOSED = [[
local aio = require "luaio"
local server = aio.start_server(function(s) s:readline() s:close() end, "127.0.0.1", 0)
local stream = aio.open_connection("127.0.0.1", server.port)
stream:close()
local proc = aio.spawn_process({ "true" })
proc:wait()
proc:close()
local file = aio.fs.open("closed.txt", "w")
file:close()
local udp = aio.udp_bind("127.0.0.1", 0)
udp:close()
local sig = aio.on_signal("SIGUSR1", function() end)
sig:close()
local session = aio.http.Session()
session:close()
local app = aio.http.app()
app:websocket("/ws", function(ws) ws:receive() end)
local web = app:listen("127.0.0.1", 0)
local ws = aio.websocket.connect("ws://127.0.0.1:" .. web.port .. "/ws")
ws:close()
local res = {}
aio._track(res, "database connection db://x")
aio._untrack(res)
aio.sleep(0.05)
web:close()
server:close()
aio.sleep(0.05)
]]

describe("debug mode's report of what is left open", function()
  lazy_setup(function() dir = P.tmpdir("debug_report") end)
  lazy_teardown(function() P.rmtree(dir) end)

  it("names every kind of resource left open, with the line that created it", function()
    local err, status = run_debug(LEFT_OPEN, "left")
    assert.equals(0, status, err)
    assert.matches("luaio: left open at loop close:", err, 1, true)
    local function expect(pattern, marker)
      local where = ("(created at %s/left.lua:%d)"):format(dir, line_of(LEFT_OPEN, marker))
      local line = err:match("\n  (" .. pattern .. "[^\n]*)")
      assert.is_truthy(line, "no line for " .. pattern .. " in:\n" .. err)
      assert.is_truthy(line:find(where, 1, true), line .. " should say " .. where)
    end
    expect("server 127%.0%.0%.1:%d+", "@server")
    expect("stream to 127%.0%.0%.1:%d+", "@stream")
    expect("process sleep %(pid %d+%)", "@process")
    expect("file left%.txt", "@file")
    expect("UDP socket 127%.0%.0%.1:0", "@udp")
    expect("signal handler SIGUSR1", "@signal")
    expect("HTTP session", "@session")
    expect("server 127%.0%.0%.1:%d+ %(created at [^\n]*:" .. line_of(LEFT_OPEN, "@web") .. "%)", "@web")
    expect("WebSocket %(client%)", "@websocket")
    expect("database connection db://x", "@tracked")
    -- the server side's objects were made by luaio for a connection: named
    -- after the line that started the server
    assert.matches("WebSocket %(server%) %(created at [^\n]*left.lua:" .. line_of(LEFT_OPEN, "@web") .. "%)", err)
    assert.matches("stream from 127%.0%.0%.1:%d+ %(accepted%)", err)
  end)

  it("does not name what was closed", function()
    local err, status = run_debug(CLOSED, "closed")
    assert.equals(0, status, err)
    assert.is_nil(err:find("left open", 1, true), err)
  end)

  it("records nothing outside debug mode", function()
    local path = P.write(dir .. "/quiet.lua", LEFT_OPEN)
    local r = aio.exec({ P.luaio_bin(), path }, { timeout = 60, cwd = dir })
    assert.equals(0, r.status, r.stderr)
    assert.is_nil(r.stderr:find("left open", 1, true), r.stderr)
    assert.same({}, require("luaio.core").open_resources())
  end)
end)
