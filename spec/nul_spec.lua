-- API.md §7b: strings handed to the system that hold a NUL byte raise an
-- error instead of being cut at the NUL (which would silently act on another
-- host, file, program or certificate name). Where there is a peer, the spec
-- checks that nothing reached it.
local aio = require "luaio"
local S = require "spec.support"

-- fn(...) raises a bad argument #n naming `what` (plain text) and NUL
local function refuses(n, what, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "accepted a NUL byte")
  err = tostring(err)
  assert.is_truthy(err:find("bad argument #" .. n, 1, true), err)
  assert.is_truthy(err:find(what, 1, true), err)
  assert.is_truthy(err:find("NUL byte", 1, true) or err:find("invalid path", 1, true), err)
end

describe("NUL bytes: network", function()
  local server, connections
  before_each(function()
    connections = 0
    server = aio.start_server(function(s) connections = connections + 1 s:read() end, "127.0.0.1", 0)
  end)
  after_each(function() server:close() end)

  it("open_connection: a host with a NUL raises and connects nowhere", function()
    refuses(1, "aio.open_connection", aio.open_connection, "127.0.0.1\0.attacker.example", server.port)
    refuses(1, "aio.open_connection", aio.open_connection, "127.0.0.1\0", server.port)
    aio.sleep(0.05)
    assert.equals(0, connections)
    local c <close> = aio.open_connection("127.0.0.1", server.port)   -- the same without the NUL works
    aio.sleep(0.05)
    assert.equals(1, connections)
  end)

  it("open_connection to a Unix socket path with a NUL raises", function()
    local path = os.tmpname()
    os.remove(path)
    local unix <close> = aio.start_server(function(s) connections = connections + 1 end, path)
    refuses(1, "aio.open_connection", aio.open_connection, path .. "\0/x")
    aio.sleep(0.05)
    assert.equals(0, connections)
    unix:close()
    os.remove(path)
  end)

  it("start_server: a host or a socket path with a NUL raises, nothing is bound", function()
    refuses(2, "aio.start_server", aio.start_server, function() end, "127.0.0.1\0x", 0)
    local path = os.tmpname()
    os.remove(path)
    refuses(2, "aio.start_server", aio.start_server, function() end, path .. "\0/x")
    assert.is_false(aio.fs.exists(path))
  end)

  it("getaddrinfo: host and port", function()
    refuses(1, "aio.getaddrinfo", aio.getaddrinfo, "localhost\0.attacker.example")
    refuses(2, "aio.getaddrinfo", aio.getaddrinfo, "localhost", "80\0")
    assert.is_true(#aio.getaddrinfo("localhost", 80) > 0)
  end)

  it("udp: bind and sendto hosts; nothing is sent", function()
    refuses(1, "aio.udp_bind", aio.udp_bind, "127.0.0.1\0x", 0)
    local rx <close> = aio.udp_bind("127.0.0.1", 0)
    local tx <close> = aio.udp_bind("127.0.0.1", 0)
    local _, port = rx:sockname()
    refuses(3, "", tx.sendto, tx, "lost", "127.0.0.1\0.x", port)
    refuses(3, "", tx.sendto, tx, "lost", "localhost\0.x", port)
    tx:sendto("kept", "127.0.0.1", port)
    assert.equals("kept", (aio.timeout(2, rx.recvfrom, rx)))
  end)
end)

describe("NUL bytes: TLS", function()
  local CERTS = os.tmpname()
  os.remove(CERTS)
  local function cert(name) return CERTS .. "/" .. name end
  setup(function()
    local _, err, code = S.sh("tools/make_test_certs.sh " .. CERTS)
    assert(code == 0, "making the test certificates failed: " .. err)
  end)
  teardown(function() os.execute("rm -rf " .. CERTS) end)

  local function tls_server()
    return aio.start_server(function(s) s:write(s:readline() or "", "\n") end, "127.0.0.1", 0,
      { tls = { cert_file = cert("server.pem"), key_file = cert("server.key") } })
  end

  it("server_name \"localhost\\0.attacker.example\" does not verify against a localhost certificate", function()
    local server <close> = tls_server()
    refuses(3, "server_name", aio.open_connection, "127.0.0.1", server.port,
      { tls = { ca_file = cert("ca.pem"), server_name = "localhost\0.attacker.example" } })
    -- the honest name works
    local c <close> = aio.open_connection("127.0.0.1", server.port,
      { tls = { ca_file = cert("ca.pem"), server_name = "localhost" } })
    c:write("hi\n")
    assert.equals("hi", c:readline())
  end)

  it("an empty server_name is refused (it would skip the host name check)", function()
    local server <close> = tls_server()
    local ok, err = pcall(aio.open_connection, "127.0.0.1", server.port,
      { tls = { ca_file = cert("ca.pem"), server_name = "" } })
    assert.is_false(ok)
    assert.matches("server_name must not be empty", tostring(err))
  end)

  it("start_tls: server_name with a NUL", function()
    local plain <close> = aio.start_server(function(s) s:read() end, "127.0.0.1", 0)
    local c <close> = aio.open_connection("127.0.0.1", plain.port)
    refuses(2, "server_name", c.start_tls, c, { ca_file = cert("ca.pem"), server_name = "localhost\0.x" })
    refuses(3, "", c._start_tls, c, nil, "localhost\0.x")   -- the native half checks too
  end)

  it("ca_file, cert_file, key_file with a NUL", function()
    local ca = cert("ca.pem")
    refuses(3, "ca_file", aio.open_connection, "127.0.0.1", 1, { tls = { ca_file = ca .. "\0.x" } })
    refuses(4, "cert_file", aio.start_server, function() end, "127.0.0.1", 0,
      { tls = { cert_file = cert("server.pem") .. "\0x", key_file = cert("server.key") } })
    refuses(4, "key_file", aio.start_server, function() end, "127.0.0.1", 0,
      { tls = { cert_file = cert("server.pem"), key_file = cert("server.key") .. "\0x" } })
  end)
end)

describe("NUL bytes: processes", function()
  it("argv items", function()
    refuses(1, "argv[1]", aio.exec, { "/bin/echo\0-evil" })
    refuses(1, "argv[2]", aio.exec, { "echo", "a\0b" })
    refuses(1, "argv[2]", aio.spawn_process, { "echo", "a\0b" })
    assert.equals("a b\n", aio.exec({ "echo", "a", "b" }).stdout)
  end)

  it("env names and values, cwd", function()
    refuses(2, "opts.env", aio.exec, { "true" }, { env = { ["A\0B"] = "x" } })
    refuses(2, "opts.env.A", aio.exec, { "true" }, { env = { A = "x\0y" } })
    refuses(2, "opts.cwd", aio.exec, { "pwd" }, { cwd = "/\0tmp" })
    refuses(2, "opts.cwd", aio.spawn_process, { "pwd" }, { cwd = "/\0tmp" })
    assert.equals("x\n", aio.exec({ "sh", "-c", "echo $A" }, { env = { A = "x" } }).stdout)
  end)

  it("other bad env and argv items name the field", function()
    local ok, err = pcall(aio.exec, { "true" }, { env = { [1] = "x" } })
    assert.matches("bad argument #2 to 'aio.exec' %(opts.env: string keys expected, got number%)", err)
    ok, err = pcall(aio.exec, { "true" }, { env = { ["A=B"] = "x" } })
    assert.matches("opts.env: bad variable name 'A=B'", err)
    ok, err = pcall(aio.exec, { "true" }, { env = { A = {} } })
    assert.matches("opts.env.A: string expected, got table", err)
    ok, err = pcall(aio.exec, { "echo", true })
    assert.matches("bad argument #1 to 'aio.exec' %(argv%[2%]: string expected, got boolean%)", err)
    ok, err = pcall(aio.exec, { "true" }, { timeout = "soon" })
    assert.matches("bad argument #2 to 'aio.exec' %(opts.timeout: number expected, got string%)", err)
    ok, err = pcall(aio.exec, { "true" }, { stdin = 42 })
    assert.matches("opts.stdin: string expected, got number", err)
    ok, err = pcall(aio.exec, { "true" }, "opts")
    assert.matches("bad argument #2 to 'aio.exec' %(table expected, got string%)", err)
  end)

  it("signal names: kill, on_signal, wait_signal", function()
    local p <close> = aio.spawn_process({ "sleep", "5" })
    refuses(2, "", p.kill, p, "SIGKILL\0x")
    refuses(1, "aio.on_signal", aio.on_signal, "SIGUSR1\0x", function() end)
    refuses(1, "aio.wait_signal", aio.wait_signal, "SIGUSR1\0x")
    assert.is_true(p:kill("SIGKILL"))
    p:wait()
  end)

  it("to_thread's \"module.function\"", function()
    refuses(1, "aio.to_thread", aio.to_thread, "string.rep\0.x", "a", 2)
    refuses(1, "aio.to_thread", aio.to_thread, "os\0.exit")
    assert.equals("aa", aio.to_thread("string.rep", "a", 2))
  end)
end)

describe("NUL bytes: files", function()
  local dir
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    aio.fs.mkdir(dir)
  end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  it("every path of aio.fs", function()
    local p = dir .. "/f"
    local bad = p .. "\0.evil"
    refuses(1, "aio.fs.write_file", aio.fs.write_file, bad, "x")
    refuses(1, "aio.fs.append_file", aio.fs.append_file, bad, "x")
    refuses(1, "aio.fs.mkdir", aio.fs.mkdir, bad)
    refuses(1, "aio.fs.open", aio.fs.open, bad, "w")
    assert.same({}, aio.fs.listdir(dir))   -- nothing was created under the cut name
    aio.fs.write_file(p, "data")
    refuses(1, "aio.fs.read_file", aio.fs.read_file, bad)
    refuses(1, "aio.fs.stat", aio.fs.stat, bad)
    refuses(1, "aio.fs.listdir", aio.fs.listdir, dir .. "\0x")
    refuses(1, "aio.fs.remove", aio.fs.remove, bad)
    refuses(1, "aio.fs.rename", aio.fs.rename, bad, dir .. "/g")
    refuses(2, "aio.fs.rename", aio.fs.rename, p, dir .. "/g\0x")
    refuses(1, "aio.fs.exists", aio.fs.exists, bad)
    assert.same({ "f" }, aio.fs.listdir(dir))
    assert.equals("data", aio.fs.read_file(p))
  end)

  it("fs.exists: bad input, cancellation and a deadline", function()
    local ok, err = pcall(aio.fs.exists, 42)
    assert.matches("bad argument #1 to 'aio.fs.exists' %(string expected, got number%)", err)
    local t = aio.spawn(aio.fs.exists, dir)
    t:cancel()
    assert.is_true(aio.is_error(select(2, pcall(t.wait, t)), "CancelledError"))
    assert.is_true(aio.fs.exists(dir))
    assert.is_true(aio.timeout(5, aio.fs.exists, dir))
  end)
end)

describe("argument errors of the stream functions", function()
  it("open_connection, start_server, udp_bind: Lua's shape, fields named", function()
    local function err_of(fn, ...) return select(2, pcall(fn, ...)) end
    assert.matches("bad argument #1 to 'aio.open_connection' %(string expected, got number%)",
      err_of(aio.open_connection, 42, 80))
    assert.matches("bad argument #2 to 'aio.open_connection' %(port must be an integer within 1..65535, got 0%)",
      err_of(aio.open_connection, "127.0.0.1", 0))
    assert.matches("bad argument #3 to 'aio.open_connection' %(table expected, got string%)",
      err_of(aio.open_connection, "127.0.0.1", 1, "fast"))
    assert.matches("bad argument #3 to 'aio.open_connection' %(opts.timeout: number expected, got string%)",
      err_of(aio.open_connection, "127.0.0.1", 1, { timeout = "soon" }))
    assert.matches("bad argument #1 to 'aio.start_server' %(function expected, got string%)",
      err_of(aio.start_server, "nope", "127.0.0.1", 0))
    assert.matches("bad argument #2 to 'aio.start_server' %(string expected, got number%)",
      err_of(aio.start_server, function() end, 127, 0))
    assert.matches("bad argument #3 to 'aio.start_server' %(port must be an integer within 0..65535",
      err_of(aio.start_server, function() end, "127.0.0.1", -1))
    assert.matches("bad argument #4 to 'aio.start_server' %(opts.backlog: number expected, got string%)",
      err_of(aio.start_server, function() end, "127.0.0.1", 0, { backlog = "big" }))
    assert.matches("bad argument #4 to 'aio.start_server' %(opts.max_connections: positive integer expected",
      err_of(aio.start_server, function() end, "127.0.0.1", 0, { max_connections = 0 }))
    assert.matches("bad argument #1 to 'aio.udp_bind' %(string expected, got nil%)", err_of(aio.udp_bind))
    assert.matches("bad argument #2 to 'aio.udp_bind' %(port must be an integer", err_of(aio.udp_bind, "127.0.0.1", 70000))
    assert.matches("bad argument #1 to 'aio.getaddrinfo' %(string expected, got no value%)", err_of(aio.getaddrinfo))
  end)

  it("is positioned at the caller's line", function()
    local ok, err = pcall(function() aio.open_connection("127.0.0.1", 1, { timeout = {} }) end)
    assert.matches("^spec/nul_spec.lua:%d+: bad argument #3 to 'aio.open_connection'", err)
    ok, err = pcall(function() aio.start_server(function() end, "127.0.0.1\0", 0) end)
    assert.matches("^spec/nul_spec.lua:%d+: bad argument #2 to 'aio.start_server'", err)
    ok, err = pcall(function() aio.exec({ "a\0" }) end)
    assert.matches("^spec/nul_spec.lua:%d+: bad argument #1 to 'aio.exec'", err)
    ok, err = pcall(function() aio.fs.exists("") end)
    assert.matches("^spec/nul_spec.lua:%d+: bad argument #1 to 'aio.fs.exists'", err)
  end)
end)
