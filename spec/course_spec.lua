-- The course's demos (shared/course/README.md), each run as a child process
-- and checked on its behaviour. They run concurrently to keep the suite short.
local aio = require "luaio"
local S = require "spec.support"

local function run(name, args, env)
  return S.bg(("LUAIO_SEED=7 %s %s scripts/%s.lua %s"):format(env or "", S.luaio, name, args or ""))
end

local function count(s, pat) local n = 0 for _ in s:gmatch(pat) do n = n + 1 end return n end

local function free_port()
  local s = aio.start_server(function() end, "127.0.0.1", 0)
  local p = s.port
  s:close()
  return p
end

describe("course demos", function()
  local jobs = {}
  setup(function()
    for _, name in ipairs { "async_vs_sync", "downloads", "task_manager", "async_context", "async_iterator",
                            "producer_consumer", "measure", "resource_manager", "debug_monitor", "best_practices",
                            "http_client", "http_server", "site_monitor", "chat_server" } do
      jobs[name] = run(name)
    end
    jobs.retry_backoff = run("retry_backoff", "", "LUAIO_DEMO_SCALE=0.1")
  end)

  local function result(name)
    local out, err, code = jobs[name]:wait(60)
    assert.equals(0, code, name .. " failed: " .. err)
    return out, err
  end

  it("async_vs_sync: ~3 s blocking, ~1 s concurrent, speed-up printed", function()
    local out = result("async_vs_sync")
    local sync = tonumber(out:match("Synchronous total: ([%d.]+) s"))
    local async = tonumber(out:match("Asynchronous total: ([%d.]+) s"))
    assert.is_true(sync >= 2.9 and sync < 4.5, "sync " .. sync)
    assert.is_true(async >= 0.99 and async < 1.5, "async " .. async)
    assert.matches("Speed%-up: [%d.]+x", out)
  end)

  it("downloads: progress interleaves and every result is listed", function()
    local out = result("downloads")
    assert.equals(4, count(out, "📥 Start download"))
    assert.equals(24, count(out, "📊 "))
    -- interleaving: the first progress lines come from different files
    local first = {}
    for name in out:gmatch("📊 ([%w.]+): 0%%") do first[#first + 1] = name end
    assert.equals(4, #first)
    assert.matches("All downloads finished", out)
    assert.equals(4, count(out, "  ✅ [%w.]+: success"))
  end)

  it("retry_backoff: retries with backoff and a summary per API", function()
    local out = result("retry_backoff")
    assert.matches("API_1 %- attempt 1/3", out)
    assert.equals(4, count(out, "\n  [✅❌][^\n]*API_%d"))
    for i = 1, 4 do assert.matches("API_" .. i .. ": ", out) end
  end)

  it("task_manager: 6 tasks, never more than 3 at once, success rate", function()
    local out = result("task_manager")
    assert.equals(6, count(out, "🔄 Start: Job_%d"))
    for n in out:gmatch("%((%d) running%)") do assert.is_true(tonumber(n) <= 3) end
    assert.matches("Most tasks running at once: 3", out)
    local ok, failed = tonumber(out:match("Successes: (%d)")), tonumber(out:match("Failures: (%d)"))
    assert.equals(6, ok + failed)
    assert.matches("Success rate: [%d.]+%%", out)
  end)

  it("async_context: connect, query, close in that order", function()
    local out = result("async_context")
    local a, b, c = out:find("Connecting"), out:find("Result of: SELECT"), out:find("Closing")
    assert.is_true(a < b and b < c)
  end)

  it("async_iterator: items arrive with waits between them", function()
    local out = result("async_iterator")
    local times = {}
    for t in out:gmatch("at ([%d.]+)s") do times[#times + 1] = tonumber(t) end
    assert.equals(3, #times)
    assert.is_true(times[2] - times[1] >= 0.5 and times[3] - times[2] >= 0.5)
  end)

  it("producer_consumer: every item consumed exactly once, clean stop", function()
    local out = result("producer_consumer")
    local list = out:match("📋 %d+ items consumed: ([^\n]*)")
    local seen = {}
    for item in list:gmatch("%S+") do
      assert.is_nil(seen[item], "consumed twice: " .. item)
      seen[item] = true
    end
    for i = 1, 5 do assert.is_true(seen["Prod1_item_" .. i]) end
    for i = 1, 4 do assert.is_true(seen["Prod2_item_" .. i]) end
    assert.matches("System stopped", out)
  end)

  it("measure: sequential ~3 s, concurrent ~1 s", function()
    local out = result("measure")
    local seq = tonumber(out:match("sequential: ([%d.]+)s"))
    local conc = tonumber(out:match("concurrent_operations: ([%d.]+)s"))
    assert.is_true(seq >= 2.9 and seq < 4)
    assert.is_true(conc >= 0.99 and conc < 1.5)
  end)

  it("resource_manager: done callbacks untrack, cleanup cancels", function()
    local out = result("resource_manager")
    assert.matches("tracking 3 tasks", out)
    assert.matches("after 1 s: 2 tasks still tracked", out)
    assert.matches("0 tracked tasks", out)
  end)

  it("debug_monitor: slow-task warning and a per-operation report", function()
    local out, err = result("debug_monitor")
    assert.matches("slow task blocking%-step", err)
    assert.matches("db_query:\n  Runs: 2", out)
    assert.matches("Min/Max: [%d.]+s / [%d.]+s", out)
  end)

  it("best_practices: the five practices run", function()
    local out = result("best_practices")
    assert.matches("task cancelled: true", out)
    assert.matches("50 jobs, at most 10 at once", out)
    assert.matches("Error: something broke", out)
    assert.matches("computed %d+ on the pool; the loop ticked [1-9]%d* times", out)
    assert.matches("Operation too slow, cancelled", out)
    assert.matches("Task cancelled cleanly", out)
  end)

  it("http_client: status and size per URL, the failure reported", function()
    local out = result("http_client")
    assert.matches("Successes: 5", out)
    assert.matches("Failures: 1", out)
    assert.matches("/json: 200 %(%d+ chars%)", out)
    assert.matches("unreachable: ConnectionError", out)
    local secs = tonumber(out:match("Results in ([%d.]+)s"))
    assert.is_true(secs < 1.8, "fetched concurrently, not one after the other")
  end)

  it("http_server self-demo: / and /stats answered while /test sleeps", function()
    local out = result("http_server")
    assert.matches("/ %-> 200 after 0%.%d+s %(while /test still runs: true%)", out)
    assert.matches("/missing %-> 404", out)
    assert.matches("/test %-> 200 after 2%.%d+s", out)
  end)

  it("site_monitor: up/down with response times, timeouts per site", function()
    local out = result("site_monitor")
    assert.equals(2, count(out, "📊 Check #%d"))
    assert.equals(2, count(out, "status/200: 200"))
    assert.equals(2, count(out, "status/500: 500"))
    assert.equals(2, count(out, "delay/5: Timeout"))
  end)

  it("chat_server self-demo: broadcast and history", function()
    local out = result("chat_server")
    assert.matches("%[bob%] history: %d+ messages", out)
    assert.matches("%[alice%] [%d.:]+: Hi alice", out)
  end)
end)

describe("course demos with real peers", function()
  it("http_server --serve answers / with curl while /test is sleeping", function()
    local port = free_port()
    local server = run("http_server", "--serve " .. port)
    local base = "http://127.0.0.1:" .. port
    for _ = 1, 100 do
      if pcall(aio.open_connection, "127.0.0.1", port) then break end
      aio.sleep(0.05)
    end
    local slow = S.bg("curl -s " .. base .. "/test")
    aio.sleep(0.2)
    local t0 = aio.now()
    local home = S.bg("curl -s " .. base .. "/"):wait()
    assert.is_true(aio.now() - t0 < 1.5)
    assert.matches("Requests served", home)
    local missing = S.bg("curl -s -o /dev/null -w '%{http_code}' " .. base .. "/nope"):wait()
    assert.equals("404", missing)
    assert.matches("Test page", (slow:wait()))
    os.execute("pkill -INT -f 'http_server.lua --serve " .. port .. "'")
    local _, _, code = server:wait()
    assert.equals(130, code)
  end)

  it("chat_server: a Python asyncio client and a luaio client, broadcast and history", function()
    local port = free_port()
    local server = run("chat_server", "--serve " .. port)
    for _ = 1, 100 do
      if pcall(aio.open_connection, "127.0.0.1", port) then break end
      aio.sleep(0.05)
    end
    -- a plain client (like nc) that stays to see everything
    local watcher <close> = aio.open_connection("127.0.0.1", port)
    local py = S.tmpfile(([[
import asyncio, json
async def main():
    r, w = await asyncio.open_connection("127.0.0.1", %d)
    w.write(b"hello from python\n")
    await w.drain()
    for _ in range(3):
        print(json.loads(await r.readline())["type"])
    w.close()
asyncio.run(main())
]]):format(port), ".py")
    local pyjob = S.bg("python3 " .. py)
    local lua_client = run("chat_client", "127.0.0.1 " .. port, "LUAIO_DEMO_SCALE=0.05")
    local _, err, code = pyjob:wait()
    assert.equals(0, code, err)
    local out = lua_client:wait()
    os.remove(py)
    assert.matches("Connected to the chat server", out)
    local seen = {}
    watcher:set_timeout(1)
    while true do
      local ok, line = pcall(watcher.readline, watcher)
      if not ok or not line then break end
      local m = aio.json.decode(line)
      if m.type == "message" then seen[#seen + 1] = m.message end
    end
    local all = table.concat(seen, "|")
    assert.matches("hello from python", all)
    assert.matches("Hello everyone!", all)
    assert.matches("Goodbye!", all)
    assert.matches("A user left", all)
    -- a newcomer gets the history
    local late <close> = aio.open_connection("127.0.0.1", port)
    local first = aio.json.decode(late:readline())
    assert.equals("historique", first.type)
    assert.is_true(#first.messages == 10)
    os.execute("pkill -INT -f 'chat_server.lua --serve " .. port .. "'")
    server:wait()
  end)
end)
