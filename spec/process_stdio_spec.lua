-- spawn_process stdio options and exec's two pipes (API.md §7b), with real
-- child processes.
local aio = require "luaio"
local P = require "spec.lib.peers"

local function lines_of(stream)
  local t = {}
  for l in stream:lines() do t[#t + 1] = l end
  return t
end

local function fd_count() return #aio.fs.listdir("/proc/self/fd") end

describe("spawn_process stdio", function()
  it("\"pipe\" is the default: three Streams", function()
    local p <close> = aio.spawn_process({ "sh", "-c", "cat; echo err >&2" }, { stdin = "pipe" })
    p.stdin:write("in\n")
    p.stdin:close()
    assert.equals("in\n", p.stdout:read_all())
    assert.equals("err\n", p.stderr:read_all())
    assert.equals(0, (p:wait()))
  end)

  it("a pipeline of three processes: printf | tr | sort; the handed Streams are the children's", function()
    local p1 <close> = aio.spawn_process({ "printf", "pear\\napple\\nfig\\n" })
    local p2 <close> = aio.spawn_process({ "tr", "a-z", "A-Z" }, { stdin = p1.stdout })
    local p3 <close> = aio.spawn_process({ "sort" }, { stdin = p2.stdout })
    assert.equals("Stream<closed>", tostring(p1.stdout))
    assert.equals("Stream<closed>", tostring(p2.stdout))
    assert.has_error(function() p1.stdout:read(1) end)
    assert.same({ "APPLE", "FIG", "PEAR" }, lines_of(p3.stdout))
    for _, p in ipairs { p1, p2, p3 } do assert.equals(0, (p:wait())) end
  end)

  it("a process's stdin Stream as another's stdout: the second writes into the first", function()
    local sink <close> = aio.spawn_process({ "wc", "-c" })
    local src <close> = aio.spawn_process({ "head", "-c", "100000", "/dev/zero" }, { stdout = sink.stdin })
    assert.equals(0, (src:wait()))
    assert.equals("100000", sink.stdout:read_all():match("%d+"))
  end)

  it("\"null\": reads see EOF, writes vanish; the process has no Stream there", function()
    local p <close> = aio.spawn_process({ "sh", "-c", "cat; echo done; echo lost >&2" }, { stdin = "null", stderr = "null" })
    assert.is_nil(p.stdin)
    assert.is_nil(p.stderr)
    assert.equals("done\n", p.stdout:read_all())
    assert.equals(0, (p:wait()))
    local q <close> = aio.spawn_process({ "sh", "-c", "echo x; echo y >&2" }, { stdout = "null", stderr = "stdout" })
    assert.is_nil(q.stdout)
    assert.equals(0, (q:wait()))
  end)

  it("stderr = \"stdout\" merges both into one Stream, in the order written", function()
    local p <close> = aio.spawn_process({ "sh", "-c", "echo 1; echo 2 >&2; echo 3; echo 4 >&2" }, { stderr = "stdout" })
    assert.is_nil(p.stderr)
    assert.equals("1\n2\n3\n4\n", p.stdout:read_all())
    assert.equals(0, (p:wait()))
  end)

  it("\"inherit\": the child writes to (and reads from) the host's own stdio", function()
    local dir = P.tmpdir("stdio")
    local script = P.write(dir .. "/inherit.lua", [[
local aio = require "luaio"
local p = aio.spawn_process({ "sh", "-c", "cat; echo to-out; echo to-err >&2" },
  { stdin = "inherit", stdout = "inherit", stderr = "inherit" })
print(p.stdin, p.stdout, p.stderr, (p:wait()))
local m = aio.spawn_process({ "sh", "-c", "echo merged >&2" }, { stdin = "null", stdout = "inherit", stderr = "stdout" })
m:wait()
]])
    local r = aio.exec({ P.luaio_bin(), script }, { stdin = "from-parent\n", timeout = 30 })
    P.rmtree(dir)
    assert.equals(0, r.status, r.stderr)
    assert.equals("from-parent\nto-out\nnil\tnil\tnil\t0\nmerged\n", r.stdout)
    assert.equals("to-err\n", r.stderr)
  end)

  it("bad options: a clear error naming the field; nothing is consumed or leaked", function()
    local fds = fd_count()
    local cases = {
      { { stdin = "bogus" }, "opts.stdin: \"pipe\", \"inherit\", \"null\" or a Stream expected, got \"bogus\"" },
      { { stdout = "stdout" }, "opts.stdout: \"pipe\", \"inherit\", \"null\" or a Stream expected, got \"stdout\"" },
      { { stderr = 42 }, "opts.stderr: \"pipe\", \"inherit\", \"null\", \"stdout\" or a Stream expected, got number" },
      { { stdin = {} }, "opts.stdin: \"pipe\", \"inherit\", \"null\" or a Stream expected, got table" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(aio.spawn_process, { "true" }, c[1])
      assert.is_false(ok)
      assert.equals("bad argument #2 to 'aio.spawn_process' (" .. c[2] .. ")", err)
    end
    local src <close> = aio.spawn_process({ "printf", "abc" })
    assert.equals("a", src.stdout:read(1))   -- the rest is buffered in the parent now
    local ok, err = pcall(aio.spawn_process, { "cat" }, { stdin = src.stdout })
    assert.is_false(ok)
    assert.matches("opts.stdin: the Stream has read data buffered", err)
    assert.equals("bc", src.stdout:read_all())   -- not consumed
    src.stdout:close()
    ok, err = pcall(aio.spawn_process, { "cat" }, { stdin = src.stdout })
    assert.matches("opts.stdin: the Stream is closed", err)
    -- a spawn that fails leaves the handed Stream to the parent, and no descriptor open
    local other <close> = aio.spawn_process({ "printf", "kept" })
    ok, err = pcall(aio.spawn_process, { "/no/such/binary" }, { stdin = other.stdout, stdout = "null", stderr = "stdout" })
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "OSError"))
    assert.equals("kept", other.stdout:read_all())
    src:wait() other:wait()
    src:close() other:close()
    assert.equals(fds, fd_count())
  end)

  it("wait and reads: timeout and cancellation leave the process usable", function()
    local p <close> = aio.spawn_process({ "sleep", "30" }, { stdin = "null", stderr = "null" })
    local ok, err = pcall(aio.timeout, 0.1, p.wait, p)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    ok, err = pcall(aio.wait_for, function() return p.stdout:read(10) end, 0.1)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    local waiter = aio.spawn(p.wait, p)
    aio.sleep(0.05)
    waiter:cancel()
    assert.is_false(pcall(waiter.wait, waiter))
    assert.is_true(waiter:cancelled())
    p:kill("SIGKILL")
    local status, sig = p:wait()
    assert.equals(9, sig)
    assert.is_nil(p.stdout:read(10))           -- EOF once the child is gone
    assert.is_not_nil(status)
  end)

  it("a closed process: its Streams and fields raise; close is idempotent", function()
    local p = aio.spawn_process({ "true" }, { stdout = "null" })
    p:wait()
    p:close()
    p:close()
    assert.has_error(function() return p.stderr end)
    assert.has_error(function() return p.stdout end)
    assert.equals("Process<closed>", tostring(p))
  end)
end)

describe("exec and its two pipes", function()
  it("never deadlocks: 10 MiB on stdout and on stderr, interleaved", function()
    local r = aio.exec({ P.PYTHON, "-c", [[
import sys
o, e = b"o" * 65536, b"e" * 65536
for i in range(160):
    sys.stdout.buffer.write(o); sys.stdout.buffer.flush()
    sys.stderr.buffer.write(e); sys.stderr.buffer.flush()
]] }, { timeout = 60 })
    assert.equals(0, r.status, r.stderr:sub(1, 200))
    assert.equals(10 * 1048576, #r.stdout)
    assert.equals(10 * 1048576, #r.stderr)
    assert.is_nil(r.stdout:find("e", 1, true))
  end)

  it("1 MiB on stderr only, then exit", function()
    local r = aio.exec({ "sh", "-c", "head -c 1048576 /dev/zero >&2" }, { timeout = 60 })
    assert.equals(0, r.status)
    assert.equals("", r.stdout)
    assert.equals(1048576, #r.stderr)
  end)

  it("a timeout kills the child and raises; a bad stdin is an argument error", function()
    local ok, err = pcall(aio.exec, { "sleep", "30" }, { timeout = 0.1 })
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "TimeoutError"))
    ok, err = pcall(aio.exec, { "cat" }, { stdin = 42 })
    assert.is_false(ok)
    assert.matches("opts.stdin: string expected, got number", err)
  end)
end)

