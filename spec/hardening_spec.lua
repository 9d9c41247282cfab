-- Faults the server must survive: file descriptors exhausted, garbage, resets.
local aio = require "luaio"
local S = require "spec.support"

-- start a luaio HTTP server in a child shell with a low fd limit; returns its port and process
local function start_server(fd_limit)
  local script = S.tmpfile([[
    local aio = require "luaio"
    local app = aio.http.app()
    app:route("/", function() return "ok" end)
    local s = app:listen("127.0.0.1", 0)
    print(s.port) io.stdout:flush()
    s:serve_forever()
  ]], ".lua")
  local proc = aio.spawn_process({ "sh", "-c", ("ulimit -n %d; exec %s %s"):format(fd_limit, S.luaio, script) })
  local port = tonumber(aio.wait_for(function() return proc.stdout:readline() end, 10))
  return port, proc, script
end

describe("hardening", function()
  it("file descriptors exhausted (ulimit -n 64): refuses politely, then recovers", function()
    local port, proc, script = start_server(64)
    local conns = {}
    for i = 1, 120 do conns[i] = aio.open_connection("127.0.0.1", port) end
    local answered, refused = 0, 0
    local t0 = aio.now()
    local tasks = {}
    for i, c in ipairs(conns) do
      tasks[i] = aio.spawn(function()
        pcall(c.write, c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        local ok, line = pcall(aio.wait_for, function() return c:readline() end, 5)
        if ok and line == "HTTP/1.1 200 OK" then answered = answered + 1
        elseif ok and line == nil or (not ok and aio.is_error(line, "ConnectionError")) then refused = refused + 1
        else error("neither answered nor refused: " .. tostring(line)) end
      end)
    end
    aio.gather(tasks)
    assert.is_true(aio.now() - t0 < 3, "the refused connections were closed, not left hanging")
    assert.is_true(answered > 20 and answered < 64, "answered " .. answered)
    assert.equals(120, answered + refused)
    for _, c in ipairs(conns) do c:close() end
    aio.sleep(0.2)
    for _ = 1, 3 do                            -- descriptors are back: service as usual
      assert.equals(200, aio.http.get("http://127.0.0.1:" .. port .. "/", { timeout = 5 }).status)
    end
    proc:kill()
    proc:wait()
    os.remove(script)
  end)

  it("500 connections sending random garbage: each gets 400 or a close, service goes on", function()
    local port, proc, script = start_server(4096)
    math.randomseed(tonumber(os.getenv("LUAIO_SEED") or "") or 7)
    local statuses = {}
    local tasks = {}
    for i = 1, 500 do
      tasks[i] = aio.spawn(function()
        local bytes = {}
        for j = 1, math.random(1, 300) do bytes[j] = string.char(math.random(0, 255)) end
        local c <close> = aio.open_connection("127.0.0.1", port)
        pcall(c.write, c, table.concat(bytes) .. "\r\n\r\n")
        local ok, line = pcall(aio.wait_for, function() return c:readline() end, 5)
        assert(ok or aio.is_error(line, "ConnectionError"), tostring(line))
        local st = ok and line and line:match("^HTTP/1.1 (%d+)") or "closed"
        statuses[st] = (statuses[st] or 0) + 1
      end)
    end
    aio.gather(tasks)
    for st in pairs(statuses) do
      assert.is_true(st == "400" or st == "431" or st == "413" or st == "501" or st == "505" or st == "closed", st)
    end
    assert.equals(200, aio.http.get("http://127.0.0.1:" .. port .. "/", { timeout = 5 }).status)
    proc:kill()
    proc:wait()
    os.remove(script)
  end)
end)
