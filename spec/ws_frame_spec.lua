-- The native WebSocket frame codec (src/ws_frame.c, API.md §12): frames read
-- from a real socket with stream:_read_ws_frame, built with core.ws_frame;
-- the UTF-8 check and the handshake digests.
local aio = require "luaio"
local core = require "luaio.core"
local S = require "spec.support"

local MiB = 1024 * 1024
local PY = "/usr/bin/python3"

-- bytes 0..255 over and over: every byte value meets every key byte
local ALL = {}
for i = 0, 255 do ALL[#ALL + 1] = string.char(i) end
ALL = table.concat(ALL)
local function payload_of(n, shift)
  shift = shift or 0
  local s = ALL:sub(shift + 1) .. ALL:sub(1, shift)
  return s:rep(n // 256 + 1):sub(1, n)
end

-- s XOR key (4 bytes), in plain Lua: the reference the C masking must match
local function xor(s, key)
  local k = { key:byte(1, 4) }
  local out = {}
  for i = 1, #s, 4096 do
    local chunk = { s:byte(i, math.min(i + 4095, #s)) }
    for j = 1, #chunk do chunk[j] = chunk[j] ~ k[(i + j - 2) % 4 + 1] end
    out[#out + 1] = string.char(table.unpack(chunk))
  end
  return table.concat(out)
end

-- A frame built by hand (not by core.ws_frame): o.fin (default true), o.rsv1,
-- o.rsv2, o.rsv3, o.key (masks), o.len (the length to claim), o.enc (7, 16 or
-- 64: the length encoding, minimal by default).
local function raw_frame(opcode, payload, o)
  o = o or {}
  local b0 = (o.fin == false and 0 or 0x80) | (o.rsv1 and 0x40 or 0) | (o.rsv2 and 0x20 or 0)
    | (o.rsv3 and 0x10 or 0) | opcode
  local n = o.len or #payload
  local m = o.key and 0x80 or 0
  local enc = o.enc or (n <= 125 and 7 or n <= 0xFFFF and 16 or 64)
  local h
  if enc == 7 then h = string.pack("BB", b0, m | n)
  elseif enc == 16 then h = string.pack(">BBI2", b0, m | 126, n)
  else h = string.pack(">BBi8", b0, m | 127, n) end
  if o.key then return h .. o.key .. xor(payload, o.key) end
  return h .. payload
end

-- A connected pair: `c` (client side, the reader in these specs) and `peer`
-- (the server's stream, which writes raw bytes). close() ends both.
local function pair()
  local got, done = aio.Event(), aio.Event()
  local peer
  local server = aio.start_server(function(s)
    peer = s
    got:set()
    done:wait()
  end, "127.0.0.1", 0)
  local c = aio.open_connection("127.0.0.1", server.port)
  got:wait()
  local p = { c = c, peer = peer }
  function p.close()
    done:set()
    c:close()
    server:close()
  end
  p.__close = p.close
  return setmetatable(p, p)
end

local function read_frame(c, masked, max, rsv1)
  return c:_read_ws_frame(masked, max or 64 * MiB, rsv1)
end

local function ws_error(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  assert.is_true(aio.is_error(err, "WebSocketError"), tostring(err))
  return err
end

-- the limit as the stream applies it to readline: lines up to `ok` bytes
-- pass, one of `over` bytes is a LimitOverrunError
local function assert_line_limit(p, ok_len, over_len)
  p.peer:write(("x"):rep(ok_len) .. "\n")
  assert.equals(ok_len, #p.c:readline())
  p.peer:write(("y"):rep(over_len) .. "\n")
  local ok, err = pcall(p.c.readline, p.c)
  assert.is_false(ok)
  assert.is_true(aio.is_error(err, "LimitOverrunError"), tostring(err))
  p.c:read_exactly(over_len + 1)
end

describe("stream:_read_ws_frame", function()
  it("reads every payload length class, unmasked and masked", function()
    local p <close> = pair()
    for _, n in ipairs({ 0, 1, 125, 126, 127, 65535, 65536, MiB, 16 * MiB }) do
      for _, masked in ipairs({ false, true }) do
        local payload = payload_of(n, n % 251)
        local frame
        if masked and n <= MiB then
          frame = raw_frame(2, payload, { key = "\x12\x34\xAB\xCD" })
        else
          local h, b = core.ws_frame(2, payload, true, false, masked)
          frame = h .. b
        end
        local writer = aio.spawn(p.peer.write, p.peer, frame)
        local fin, opcode, got, rsv1 = read_frame(p.c, masked, 16 * MiB)
        writer:wait()
        assert.is_true(fin)
        assert.equals(2, opcode)
        assert.is_false(rsv1)
        assert.equals(n, #got)
        assert.is_true(got == payload, ("payload of %d bytes, masked %s"):format(n, masked))
      end
    end
    assert.same({ 0, 0 }, { p.c:buffered() })
  end)

  it("accepts non-minimal length encodings", function()
    local p <close> = pair()
    p.peer:write(raw_frame(1, "abc", { enc = 16 }), raw_frame(1, "de", { enc = 64, key = "kkkk" }),
      raw_frame(1, ("z"):rep(200), { enc = 64 }))
    assert.equals("abc", select(3, read_frame(p.c, false)))
    assert.equals("de", select(3, read_frame(p.c, true)))
    assert.equals(("z"):rep(200), select(3, read_frame(p.c, false)))
  end)

  it("returns fin, opcode and rsv1 as sent", function()
    local p <close> = pair()
    p.peer:write(raw_frame(1, "frag", { fin = false, rsv1 = true }), raw_frame(0, "ment"),
      raw_frame(9, "ping"), raw_frame(10, ""), raw_frame(8, "\x03\xE8bye"))
    assert.same({ false, 1, "frag", true }, { read_frame(p.c, false, 100, true) })
    assert.same({ true, 0, "ment", false }, { read_frame(p.c, false, 100, true) })
    assert.same({ true, 9, "ping", false }, { read_frame(p.c, false, 100) })
    assert.same({ true, 10, "", false }, { read_frame(p.c, false, 100) })
    assert.same({ true, 8, "\x03\xE8bye", false }, { read_frame(p.c, false, 100) })
  end)

  it("reads frames split into arbitrary slices, with pauses between them", function()
    local p <close> = pair()
    local frames, payloads = {}, {}
    local sizes = { 0, 5, 125, 126, 300, 65535, 65536, 70000, 3 }
    for i, n in ipairs(sizes) do
      payloads[i] = payload_of(n, i)
      frames[i] = raw_frame(2, payloads[i], { key = i % 2 == 0 and "\1\2\3\4" or nil })
    end
    local blob = table.concat(frames)
    math.randomseed(6455)
    local writer = aio.spawn(function()
      local pos = 1
      while pos <= #blob do
        -- single bytes through the first headers, then larger random slices
        local n = pos < 40 and 1 or math.random(1, 9000)
        p.peer:write(blob:sub(pos, pos + n - 1))
        pos = pos + n
        aio.sleep(math.random() < 0.3 and 0.002 or 0)
      end
    end)
    for i = 1, #sizes do
      local fin, opcode, got = read_frame(p.c, i % 2 == 0)
      assert.is_true(fin)
      assert.equals(2, opcode)
      assert.is_true(got == payloads[i], "frame " .. i)
    end
    writer:wait()
  end)

  it("reads many frames that came in one write", function()
    local p <close> = pair()
    local frames, payloads = {}, {}
    for i = 1, 500 do
      payloads[i] = payload_of(i * 7 % 400, i)
      frames[i] = raw_frame(i % 2 + 1, payloads[i], { key = string.pack("<I4", i * 2654435761 % 2^32) })
    end
    p.peer:write(table.concat(frames))
    for i = 1, 500 do
      local fin, opcode, got = read_frame(p.c, true)
      assert.equals(i % 2 + 1, opcode)
      assert.equals(payloads[i], got)
    end
  end)

  it("reads a frame larger than the stream's limit, and the limit is back after it", function()
    local p <close> = pair()
    p.c:set_limits(1000)
    local payload = payload_of(3 * MiB)
    local h, b = core.ws_frame(2, payload, true, false, false)
    local writer = aio.spawn(p.peer.write, p.peer, h .. b)
    assert.is_true(select(3, read_frame(p.c, false)) == payload)
    writer:wait()
    assert_line_limit(p, 1000, 1001)
  end)

  it("refuses each broken rule with WebSocketError and its close code", function()
    local cases = {
      { "reserved opcode 3", raw_frame(3, "") , false, 1002 },
      { "reserved opcode 7", raw_frame(7, ""), false, 1002 },
      { "reserved opcode 11", raw_frame(11, ""), false, 1002 },
      { "reserved opcode 15", raw_frame(15, ""), false, 1002 },
      { "RSV2", raw_frame(1, "a", { rsv2 = true }), false, 1002 },
      { "RSV3", raw_frame(1, "a", { rsv3 = true }), false, 1002 },
      { "RSV2 even with RSV1 allowed", raw_frame(1, "a", { rsv2 = true }), false, 1002, true },
      { "RSV1 not negotiated", raw_frame(1, "a", { rsv1 = true }), false, 1002 },
      { "RSV1 on a control frame", raw_frame(9, "a", { rsv1 = true }), false, 1002, true },
      { "control frame over 125", raw_frame(9, ("p"):rep(126)), false, 1002 },
      { "control frame over 125, 16-bit length", raw_frame(8, "", { len = 126, enc = 16 }), false, 1002 },
      { "fragmented control frame", raw_frame(10, "", { fin = false }), false, 1002 },
      { "masked frame, unmasked expected", raw_frame(1, "a", { key = "abcd" }), false, 1002 },
      { "unmasked frame, masked expected", raw_frame(1, "a"), true, 1002 },
      { "64-bit length with the top bit set", raw_frame(2, "", { len = math.mininteger, enc = 64 }), false, 1002 },
      { "payload over max_payload", raw_frame(2, ("q"):rep(101)), false, 1009 },
    }
    for _, case in ipairs(cases) do
      local p <close> = pair()
      p.peer:write(case[2])
      local err = ws_error(read_frame, p.c, case[3], 100, case[5])
      assert.equals(case[4], err.code, case[1])
      assert.is_string(err.message)
      assert.equals("integer", math.type(err.code))
    end
  end)

  it("refuses from the header alone: the bytes that show the violation are enough", function()
    local p <close> = pair()
    -- one byte: a reserved opcode; a 64-bit length's first byte; a 1009 header, no payload
    for _, bytes in ipairs({ "\x83", "\x82\x7F\x80", string.pack(">BBI8", 0x82, 127, 2^40) }) do
      local q <close> = pair()
      q.peer:write(bytes)
      local err = aio.timeout(5, ws_error, read_frame, q.c, false, 1000)
      assert.is_true(err.code == 1002 or err.code == 1009)
    end
  end)

  it("max_payload: at the limit reads, one past is 1009, in every length encoding", function()
    for _, max in ipairs({ 0, 125, 126, 65535, 65536, 100000 }) do
      local p <close> = pair()
      p.peer:write(raw_frame(2, payload_of(max)))
      assert.equals(max, #select(3, read_frame(p.c, false, max)))
      p.peer:write(raw_frame(2, payload_of(max + 1)))
      assert.equals(1009, ws_error(read_frame, p.c, false, max).code)
    end
  end)

  it("nil at a clean EOF; ConnectionError at an EOF inside a frame", function()
    local p <close> = pair()
    p.peer:write(raw_frame(1, "last"))
    p.peer:close()
    assert.equals("last", select(3, read_frame(p.c, false)))
    assert.is_nil(read_frame(p.c, false))
    assert.is_nil(read_frame(p.c, false))
    for _, cut in ipairs({ 1, 2, 5, 9, 50 }) do       -- inside the header or the payload
      local q <close> = pair()
      q.peer:write(raw_frame(2, payload_of(100), { key = "abcd", enc = 64 }):sub(1, cut))
      q.peer:close()
      local ok, err = pcall(read_frame, q.c, true)
      assert.is_false(ok)
      assert.is_true(aio.is_error(err, "ConnectionError"), tostring(err))
      assert.equals("ECONNRESET", err.code)
      assert.equals("connection closed inside a WebSocket frame", err.message)
    end
  end)

  it("a read cancelled inside a frame loses nothing", function()
    local p <close> = pair()
    local frame = raw_frame(2, payload_of(300), { key = "\xFF\x00\x80\x01" })
    p.peer:write(frame:sub(1, 100))
    local reader = aio.spawn(read_frame, p.c, true)
    aio.sleep(0.02)
    reader:cancel()
    assert.is_false(pcall(reader.wait, reader))
    assert.is_true(reader:cancelled())
    p.peer:write(frame:sub(101))
    assert.equals(payload_of(300), select(3, read_frame(p.c, true)))
  end)

  it("a big frame cancelled half-way: nothing lost, and the limit given back", function()
    local p <close> = pair()
    p.c:set_limits(1000)
    local payload = payload_of(200000)
    local frame = raw_frame(2, payload)
    p.peer:write(frame:sub(1, 100000))
    local reader = aio.spawn(read_frame, p.c, false)
    aio.sleep(0.05)
    reader:cancel()
    assert.is_false(pcall(reader.wait, reader))
    -- take the frame's bytes by hand: had the cancelled read kept its raised
    -- limit, the long line below would pass
    p.peer:write(frame:sub(100001))
    assert.is_true(p.c:read_exactly(#frame) == frame)
    assert_line_limit(p, 1000, 1001)
    -- and read as a frame after a cancellation, the same frame comes whole
    p.peer:write(frame:sub(1, 150000))
    reader = aio.spawn(read_frame, p.c, false)
    aio.sleep(0.05)
    reader:cancel()
    pcall(reader.wait, reader)
    p.peer:write(frame:sub(150001))
    assert.is_true(select(3, read_frame(p.c, false)) == payload)
    assert_line_limit(p, 1000, 1001)
  end)

  it("the stream's timeout applies; a timed-out read loses nothing", function()
    local p <close> = pair()
    p.c:set_limits(1000)
    local frame = raw_frame(2, payload_of(50000), { key = "wxyz" })
    p.peer:write(frame:sub(1, 20000))
    p.c:set_timeout(0.05)
    local ok, err = pcall(read_frame, p.c, true)
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "TimeoutError"), tostring(err))
    p.c:set_timeout(nil)
    p.peer:write(frame:sub(20001))
    assert.is_true(p.c:read_exactly(#frame) == frame)     -- all of it still there
    assert_line_limit(p, 1000, 1001)                         -- the limit given back
    p.peer:write(frame)
    assert.is_true(select(3, read_frame(p.c, true)) == payload_of(50000))
    p.c:set_timeout(0)
    ok, err = pcall(read_frame, p.c, true)
    assert.is_true(aio.is_error(err, "TimeoutError"), tostring(err))
  end)

  it("one reader at a time", function()
    local p <close> = pair()
    local reader = aio.spawn(read_frame, p.c, false)
    aio.sleep(0.01)
    local ok, err = pcall(read_frame, p.c, false)
    assert.is_false(ok)
    assert.matches("another task is already reading", tostring(err))
    p.peer:write(raw_frame(1, "x"))
    assert.equals("x", select(3, reader:wait()))
  end)

  it("checks its arguments", function()
    local p <close> = pair()
    local c = p.c
    assert.has_error(function() c:_read_ws_frame() end)
    assert.has_error(function() c:_read_ws_frame(1, 10) end)
    assert.has_error(function() c:_read_ws_frame("yes", 10) end)
    assert.has_error(function() c:_read_ws_frame(true) end)
    assert.has_error(function() c:_read_ws_frame(true, "ten") end)
    assert.has_error(function() c:_read_ws_frame(true, 1.5) end)
    assert.has_error(function() c:_read_ws_frame(true, -1) end)
    assert.has_error(function() c:_read_ws_frame(true, 10, 1) end)
    assert.has_error(function() core.stream_methods._read_ws_frame({}, true, 10) end)
    local ok, err = pcall(function() return c:_read_ws_frame(1, 10) end)
    assert.matches("bad argument #1 to '_read_ws_frame' %(boolean expected, got number%)", err)
    -- a stray fifth argument is not taken for the read's own state
    p.peer:write(raw_frame(1, "fine"))
    assert.equals("fine", select(3, c:_read_ws_frame(false, 10, false, io.stdout)))
    c:close()
    ok, err = pcall(c._read_ws_frame, c, false, 10)
    assert.is_true(aio.is_error(err, "OSError"))
  end)
end)

describe("core.ws_frame", function()
  it("builds the headers of RFC 6455 §5.7's examples", function()
    assert.same({ "\x81\x05", "Hello" }, { core.ws_frame(1, "Hello", true, false, false) })
    assert.same({ "\x01\x03", "Hel" }, { core.ws_frame(1, "Hel", false, false, false) })
    assert.same({ "\x80\x02", "lo" }, { core.ws_frame(0, "lo", true, false, false) })
    assert.same({ "\x89\x05", "Hello" }, { core.ws_frame(9, "Hello", true, false, false) })
    assert.equals("\x82\x7E\x01\x00", (core.ws_frame(2, ("a"):rep(256), true, false, false)))
    assert.equals("\x82\x7F\0\0\0\0\0\1\0\0", (core.ws_frame(2, ("a"):rep(65536), true, false, false)))
    assert.equals("\xC1\x00", (core.ws_frame(1, "", true, true, false)))
  end)

  it("masks with a fresh key: the body is the payload XOR the header's key", function()
    local keys = {}
    for _, n in ipairs({ 0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 125, 126, 1000, 65536 }) do
      local payload = payload_of(n, n)
      local h, b = core.ws_frame(2, payload, true, false, true)
      local hlen = n <= 125 and 6 or n <= 65535 and 8 or 14
      assert.equals(hlen, #h)
      assert.equals(0x80, h:byte(2) & 0x80)
      local key = h:sub(-4)
      keys[key] = true
      assert.equals(n, #b)
      assert.equals(payload, xor(b, key))
    end
    local distinct = 0
    for _ in pairs(keys) do distinct = distinct + 1 end
    assert.is_true(distinct >= 14)
  end)

  it("round trips through the reader: every opcode, flag and size", function()
    local p <close> = pair()
    local sent = {}
    for _, op in ipairs({ 0, 1, 2, 8, 9, 10 }) do
      for _, n in ipairs(op >= 8 and { 0, 1, 125 } or { 0, 1, 125, 126, 65535, 65536, 200001 }) do
        for _, masked in ipairs({ false, true }) do
          local fin = op >= 8 or n % 2 == 0
          local rsv1 = op < 8 and n % 3 == 0
          sent[#sent + 1] = { fin, op, payload_of(n, op), rsv1, masked }
        end
      end
    end
    local writer = aio.spawn(function()
      for _, f in ipairs(sent) do p.peer:write(core.ws_frame(f[2], f[3], f[1], f[4], f[5])) end
    end)
    for _, f in ipairs(sent) do
      local fin, op, payload, rsv1 = read_frame(p.c, f[5], MiB, true)
      assert.same({ f[1], f[2], f[4] }, { fin, op, rsv1 })
      assert.is_true(payload == f[3])
    end
    writer:wait()
  end)

  it("checks its arguments", function()
    assert.has_error(function() core.ws_frame(16, "", true, false, false) end)
    assert.has_error(function() core.ws_frame(-1, "", true, false, false) end)
    assert.has_error(function() core.ws_frame("text", "", true, false, false) end)
    assert.has_error(function() core.ws_frame(1.5, "", true, false, false) end)
    assert.has_error(function() core.ws_frame(1, {}, true, false, false) end)
    assert.has_error(function() core.ws_frame(1) end)
    local ok, err = pcall(core.ws_frame, 99, "")
    assert.matches("opcode must be 0 .. 15", err)
  end)
end)

describe("core.ws_utf8", function()
  local valid = {
    "", "plain ASCII", "\0", "\x7F", "h\xC3\xA9llo", "\xC2\x80", "\xDF\xBF", "\xE0\xA0\x80",
    "\xE2\x82\xAC", "\xED\x9F\xBF", "\xEE\x80\x80", "\xEF\xBF\xBF", "\xF0\x90\x80\x80",
    "\xF0\x9D\x84\x9E", "\xF3\xBF\xBF\xBF", "\xF4\x8F\xBF\xBF",
    ("a"):rep(1000) .. "\xE2\x82\xAC" .. ("b"):rep(13) .. "\xF0\x9F\x98\x80",
  }
  local invalid = {
    "\xC0\x80", "\xC1\xBF", "\xE0\x80\x80", "\xE0\x9F\xBF", "\xF0\x80\x80\x80", "\xF0\x8F\xBF\xBF",
    "\xED\xA0\x80", "\xED\xBF\xBF", "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xF7\xBF\xBF\xBF",
    "\xF8\x88\x80\x80\x80", "\xFC\x84\x80\x80\x80\x80", "\xFE", "\xFF", "\x80", "\xBF",
    "a\x80b", "\xC2\x41", "\xE2\x82\x41", "\xE2\x41\xAC", "\xF0\x9F\x98\x41",
    "\xC3\xA9\xA9", ("a"):rep(17) .. "\x80", ("a"):rep(64) .. "\xFF" .. ("a"):rep(64),
  }

  it("accepts valid UTF-8", function()
    for _, s in ipairs(valid) do assert.equals(0, core.ws_utf8(0, s, true), ("%q"):format(s)) end
  end)

  it("refuses overlongs, surrogates, code points past 10FFFF, stray bytes", function()
    for _, s in ipairs(invalid) do
      assert.is_false(core.ws_utf8(0, s), ("%q"):format(s))
      assert.is_false(core.ws_utf8(0, s, true), ("%q"):format(s))
      -- at any alignment after an ASCII run (the word-at-a-time path)
      for k = 1, 9 do assert.is_false(core.ws_utf8(0, ("x"):rep(k) .. s, true)) end
    end
  end)

  it("fails as soon as a prefix cannot be completed", function()
    for _, s in ipairs({ "\xED\xA0", "\xE0\x80", "\xF0\x80", "\xF4\x90", "\xC0", "\xC1", "\xF5" }) do
      assert.is_false(core.ws_utf8(0, s), ("%q"):format(s))
    end
    for _, s in ipairs({ "\xC2", "\xE2", "\xE2\x82", "\xF0\x9F", "\xF0\x9F\x98", "\xED\x9F", "\xF4\x8F\xBF" }) do
      local st = core.ws_utf8(0, s)
      assert.is_true(math.type(st) == "integer" and st > 0, ("%q"):format(s))
      assert.is_false(core.ws_utf8(0, s, true))       -- cut at the end of the message
    end
  end)

  it("continues across calls, split at every position", function()
    local text = "a\xF0\x9D\x84\x9Eb\xE2\x82\xAC\xC3\xA9z"
    for i = 0, #text do
      local st = core.ws_utf8(0, text:sub(1, i))
      assert.is_number(st)
      assert.equals(0, core.ws_utf8(st, text:sub(i + 1), true), "split at " .. i)
      for j = i, #text do
        local s1 = core.ws_utf8(0, text:sub(1, i))
        local s2 = core.ws_utf8(s1, text:sub(i + 1, j))
        assert.equals(0, core.ws_utf8(s2, text:sub(j + 1), true), ("split at %d, %d"):format(i, j))
      end
    end
    -- the 4-byte character split byte by byte
    local st = 0
    for k = 1, 4 do
      st = core.ws_utf8(st, ("\xF0\x9D\x84\x9E"):sub(k, k))
      assert.equals(k < 4, st ~= 0)
    end
    -- an invalid continuation found in the second call
    assert.is_false(core.ws_utf8(core.ws_utf8(0, "\xED"), "\xA0\x80"))
    assert.is_false(core.ws_utf8(core.ws_utf8(0, "\xF4"), "\x90"))
    assert.is_false(core.ws_utf8(core.ws_utf8(0, "\xE2\x82"), "a"))
  end)

  it("agrees with Lua's strict utf8.len on random byte strings", function()
    math.randomseed(3629)
    local pieces = { "a", "\x80", "\xBF", "\xC2", "\xC0", "\xDF", "\xE0", "\xED", "\xEF", "\xA0",
      "\x9F", "\x90", "\x8F", "\xF0", "\xF4", "\xF5", "\xFF", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", "zz" }
    for _ = 1, 5000 do
      local t = {}
      for k = 1, math.random(0, 12) do t[k] = pieces[math.random(#pieces)] end
      local s = table.concat(t)
      local ours = core.ws_utf8(0, s, true) == 0
      assert.equals(utf8.len(s) ~= nil, ours, ("%q"):format(s))
      local cut = math.random(0, #s)
      local st = core.ws_utf8(0, s:sub(1, cut))
      assert.equals(ours, st ~= false and core.ws_utf8(st, s:sub(cut + 1), true) == 0)
    end
  end)

  it("checks its arguments", function()
    assert.has_error(function() core.ws_utf8(8, "") end)
    assert.has_error(function() core.ws_utf8(-1, "") end)
    assert.has_error(function() core.ws_utf8(false, "") end)
    assert.has_error(function() core.ws_utf8(0, nil) end)
  end)
end)

describe("the handshake digests", function()
  it("ws_accept: RFC 6455's example", function()
    assert.equals("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", core.ws_accept("dGhlIHNhbXBsZSBub25jZQ=="))
    assert.has_error(function() core.ws_accept() end)
    assert.has_error(function() core.ws_accept({}) end)
  end)

  it("ws_key: base64 of 16 random bytes, a new one each time", function()
    local seen = {}
    for _ = 1, 200 do
      local k = core.ws_key()
      assert.equals(24, #k)
      assert.matches("^[A-Za-z0-9+/]+==$", k)
      assert.is_nil(seen[k])
      seen[k] = true
    end
  end)
end)

describe("interop with Python's websockets framing", function()
  local have = S.sh(PY .. " -c 'import websockets.frames' && echo yes") == "yes\n"
  local pit = have and it or pending
  local sizes = { 0, 1, 125, 126, 127, 65535, 65536, 100000 }
  local PAYLOAD = "def payload(n, i):\n    return bytes((k * 7 + i) % 256 for k in range(n))\n"

  local function lua_payload(n, i)
    local t = {}
    for k = 0, n - 1 do t[#t + 1] = string.char((k * 7 + i) % 256) end
    return table.concat(t)
  end

  pit("reads the frames websockets writes", function()
    local out = os.tmpname()
    local script = S.tmpfile(PAYLOAD .. ([[
import sys
from websockets.frames import Frame, Opcode
sizes = %s
data = b""
for i, n in enumerate(sizes):
    for mask in (False, True):
        data += Frame(Opcode.BINARY if i %% 2 else Opcode.TEXT, payload(n, i), fin=(n %% 2 == 0)).serialize(mask=mask)
open(sys.argv[1], "wb").write(data)
]]):format("[" .. table.concat(sizes, ",") .. "]"), ".py")
    local _, err, code = S.sh(PY .. " " .. script .. " " .. out)
    assert.equals(0, code, err)
    local f = assert(io.open(out, "rb"))
    local blob = f:read("a")
    f:close()
    os.remove(script) os.remove(out)
    local p <close> = pair()
    local writer = aio.spawn(p.peer.write, p.peer, blob)
    for i, n in ipairs(sizes) do
      for _, masked in ipairs({ false, true }) do
        local fin, op, payload = read_frame(p.c, masked, MiB)
        assert.equals(n % 2 == 0, fin)
        assert.equals((i - 1) % 2 == 1 and 2 or 1, op)
        assert.is_true(payload == lua_payload(n, i - 1), ("size %d masked %s"):format(n, masked))
      end
    end
    writer:wait()
  end)

  pit("writes frames websockets reads", function()
    local t = {}
    for i, n in ipairs(sizes) do
      for _, masked in ipairs({ false, true }) do
        local h, b = core.ws_frame(i % 2 + 1, lua_payload(n, i), n % 2 == 1, false, masked)
        t[#t + 1] = h .. b
      end
    end
    local input = S.tmpfile(table.concat(t))
    local script = S.tmpfile(PAYLOAD .. ([[
import sys
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader
r = StreamReader()
r.feed_data(open(sys.argv[1], "rb").read())
r.feed_eof()
def parse(mask):
    g = Frame.parse(r.read_exact, mask=mask, max_size=None)
    try:
        next(g)
    except StopIteration as e:
        return e.value
    raise RuntimeError("incomplete")
for i, n in enumerate(%s, 1):
    for mask in (False, True):
        f = parse(mask)
        assert f.data == payload(n, i), (n, mask)
        assert f.fin == (n %% 2 == 1) and f.opcode == (Opcode.TEXT if i %% 2 == 0 else Opcode.BINARY), f
print("ok")
]]):format("[" .. table.concat(sizes, ",") .. "]"), ".py")
    local out, err, code = S.sh(PY .. " " .. script .. " " .. input)
    os.remove(script) os.remove(input)
    assert.equals(0, code, err)
    assert.equals("ok\n", out)
  end)
end)
