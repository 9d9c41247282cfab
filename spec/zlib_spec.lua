-- The zlib binding (src/zlib.c): core.deflater / core.inflater, the streams
-- under HTTP's gzip/deflate bodies and WebSocket permessage-deflate
-- (RFC 7692). Real peers (gzip(1), Python's zlib) check the bytes both ways.
local aio = require "luaio"
local core = require "luaio.core"
local S = require "spec.support"

local THIS = debug.getinfo(1, "S").short_src
local PY = "/usr/bin/python3"

-- deterministic test data: text with repeats, then binary (NUL bytes included)
local function sample(n, seed)
  math.randomseed(seed or 7)
  local words = { "alpha ", "beta ", "gamma\n", "\0\1\2", "delta\r\n", "{\"k\":1} " }
  local t = {}
  local len = 0
  while len < n do
    local w
    if math.random() < 0.3 then
      local b = {}
      for i = 1, math.random(1, 40) do b[i] = math.random(0, 255) end
      w = string.char(table.unpack(b))
    else
      w = words[math.random(#words)]
    end
    t[#t + 1] = w
    len = len + #w
  end
  return table.concat(t):sub(1, n)
end

local function compress(format, data, ...)
  local d <close> = core.deflater(format, ...)
  return d:write(data) .. d:finish()
end

local function decompress(format, data, ...)
  local i <close> = core.inflater(format, ...)
  local out = i:write(data)
  assert.is_true(i:finished())
  return out
end

-- run python with `code`, data on stdin; returns its stdout
local function python(code, stdin)
  local r = aio.exec({ PY, "-c", code }, { stdin = stdin, timeout = 60 })
  assert.equals(0, r.status, r.stderr)
  return r.stdout
end

-- pcall(fn, ...) must fail with a luaio error `name`; returns it
local raises = require("spec.lib.expect").raises

-- fn (a one-line function of this file) raises exactly `msg` at its line
local function bad_arg(msg, fn)
  local line = debug.getinfo(fn, "S").linedefined
  local ok, err = pcall(fn)
  assert.is_false(ok, "no error for: " .. msg)
  assert.equals(THIS .. ":" .. line .. ": " .. msg, err)
end

describe("zlib: round trips", function()
  local text = sample(200000)

  it("every format and level, with the default and the smallest window", function()
    for _, format in ipairs { "gzip", "zlib", "raw" } do
      for _, level in ipairs { -1, 0, 1, 6, 9 } do
        for _, wbits in ipairs { 15, 9 } do
          local c = compress(format, text, level, wbits)
          if level ~= 0 then assert.is_true(#c < #text) end
          assert.equals(text, decompress(format, c, nil, wbits))
          if format ~= "raw" then assert.equals(text, decompress("auto", c)) end
        end
      end
    end
  end)

  it("the header says which format it is", function()
    assert.equals("\31\139", compress("gzip", "x"):sub(1, 2))
    local cmf, flg = compress("zlib", "x"):byte(1, 2)
    assert.equals(0x78, cmf)
    assert.equals(0, (cmf * 256 + flg) % 31)
    assert.equals(compress("raw", text), compress("zlib", text):sub(3, -5))
  end)

  it("every window size and memory level", function()
    for wbits = 8, 15 do
      for _, mem in ipairs { 1, 8, 9 } do
        for _, format in ipairs { "gzip", "zlib", "raw" } do
          assert.equals(text, decompress(format, compress(format, text, 6, wbits, mem), nil, wbits))
        end
      end
    end
  end)

  it("empty input, and binary data with NUL bytes", function()
    for _, format in ipairs { "gzip", "zlib", "raw" } do
      local c = compress(format, "")
      assert.is_true(#c > 0)
      assert.equals("", decompress(format, c))
      assert.equals("\0\0\0a\0", decompress(format, compress(format, "\0\0\0a\0")))
    end
  end)

  it("data written and read in many small pieces", function()
    local data = sample(20000, 3)
    for _, format in ipairs { "gzip", "zlib", "raw" } do
      local d <close> = core.deflater(format)
      local parts = {}
      local pos = 1
      while pos <= #data do
        local n = (pos % 13) + 1
        parts[#parts + 1] = d:write(data:sub(pos, pos + n - 1))
        pos = pos + n
      end
      parts[#parts + 1] = d:finish()
      local c = table.concat(parts)
      local i <close> = core.inflater(format)
      local out = {}
      for k = 1, #c do
        out[#out + 1] = i:write(c:sub(k, k))
        if k < #c then assert.is_false(i:finished()) end
      end
      assert.is_true(i:finished())
      assert.equals(data, table.concat(out))
      assert.equals(#data, i:total())
    end
  end)

  it("large output, far past one scratch buffer, in one call each way", function()
    local big = sample(3 * 1024 * 1024, 11)
    local stored = compress("gzip", big, 0)   -- level 0: output larger than input
    assert.is_true(#stored > #big)
    assert.equals(big, decompress("gzip", stored))
    assert.equals(big, decompress("raw", compress("raw", big, 9)))
    local zeros = ("\0"):rep(8 * 1024 * 1024)
    local c = compress("zlib", zeros)
    assert.is_true(#c < 20000)
    assert.equals(zeros, decompress("zlib", c))
  end)

  it("a number is taken as its string, as Lua's string functions do", function()
    assert.equals("12", decompress("zlib", compress("zlib", 12)))
  end)
end)

describe("zlib: flushing, finish and reset", function()
  it("a sync flush makes everything so far decodable, ending in 00 00 ff ff", function()
    local d <close> = core.deflater("gzip")
    local i <close> = core.inflater("gzip")
    for k = 1, 5 do
      local msg = ("message %d "):format(k):rep(k * 10)
      local c = d:write(msg, "sync")
      assert.equals("\0\0\255\255", c:sub(-4))
      assert.equals(msg, i:write(c))
      assert.is_false(i:finished())
    end
    assert.equals("", d:write("", "sync"))        -- nothing new since the last flush
    i:write(d:finish())
    assert.is_true(i:finished())
  end)

  it("without a flush, small writes produce little or nothing", function()
    local d <close> = core.deflater("zlib")
    local first = d:write("hello")
    assert.equals(2, #first)                      -- just the zlib header
    assert.equals("", d:write("world"))
    assert.equals("helloworld", decompress("zlib", first .. d:finish()))
  end)

  it("a full flush lets a fresh raw inflater start there", function()
    local d <close> = core.deflater("raw")
    local a = d:write(("abc"):rep(100), "full")
    local b = d:write(("abc"):rep(100), "sync")
    assert.equals(("abc"):rep(100), core.inflater("raw"):write(b))
    assert.equals(("abc"):rep(200), core.inflater("raw"):write(a .. b))
  end)

  it("WebSocket style: raw, sync flush, tail stripped and re-added, context taken over", function()
    local d <close> = core.deflater("raw", nil, 15)
    local i <close> = core.inflater("raw", nil, 15)
    local msg = ("the same message again "):rep(20)
    local sizes = {}
    for k = 1, 3 do
      local c = d:write(msg, "sync")
      assert.equals("\0\0\255\255", c:sub(-4))
      local payload = c:sub(1, -5)
      sizes[k] = #payload
      assert.equals(msg, i:write(payload .. "\0\0\255\255"))
    end
    assert.is_true(sizes[2] < sizes[1] / 4, "the second message refers to the first")
    -- no_context_takeover: reset both after each message
    d:reset()
    i:reset()
    local c = d:write(msg, "sync"):sub(1, -5)
    assert.equals(sizes[1], #c)
    assert.equals(msg, i:write(c .. "\0\0\255\255"))
  end)

  it("write after finish raises until reset, which starts a new stream", function()
    local d <close> = core.deflater("gzip")
    local c1 = d:write("one", "finish")
    local err = raises("InvalidStateError", d.write, d, "more")
    assert.matches("the deflater is finished", err.message)
    raises("InvalidStateError", d.finish, d)
    d:reset()
    local c2 = d:write("two") .. d:finish()
    assert.equals("one", decompress("gzip", c1))
    assert.equals("two", decompress("gzip", c2))
  end)

  it("an inflater reset reads a new stream, and total counts over its life", function()
    local i <close> = core.inflater("zlib")
    assert.equals("abc", i:write(compress("zlib", "abc")))
    assert.is_true(i:finished())
    i:reset()
    assert.is_false(i:finished())
    assert.equals("defg", i:write(compress("zlib", "defg")))
    assert.equals(7, i:total())
  end)

  it("a truncated stream is not an error, only not finished", function()
    local c = compress("gzip", sample(5000))
    local i <close> = core.inflater("gzip")
    local out = i:write(c:sub(1, -9))   -- without the CRC and length
    assert.equals(sample(5000), out)
    assert.is_false(i:finished())
  end)
end)

describe("zlib: what follows the end", function()
  it("gzip reads concatenated members, as gzip -d does", function()
    local c = compress("gzip", "first ") .. compress("gzip", "second ") .. compress("gzip", "third")
    local i <close> = core.inflater("gzip")
    assert.equals("first second third", i:write(c))
    assert.is_true(i:finished())
    assert.equals(0, i:trailing())
    -- a member arriving in a later write
    assert.equals("fourth", i:write(compress("gzip", "fourth")))
    assert.is_true(i:finished())
    -- also through "auto", once the stream was gzip
    assert.equals("first second third", decompress("auto", c))
  end)

  it("bytes that start no gzip member are counted as trailing and ignored", function()
    local i <close> = core.inflater("gzip")
    assert.equals("data", i:write(compress("gzip", "data") .. "\0\0\0garbage"))
    assert.is_true(i:finished())
    assert.equals(10, i:trailing())
    assert.equals("", i:write("more"))
    assert.equals(14, i:trailing())
  end)

  it("after a zlib or raw stream everything is trailing", function()
    for _, format in ipairs { "zlib", "raw", "auto" } do
      local i <close> = core.inflater(format)
      local c = compress(format == "auto" and "zlib" or format, "data")
      assert.equals("data", i:write(c .. c))
      assert.is_true(i:finished())
      assert.equals(#c, i:trailing())
    end
  end)
end)

describe("zlib: interop with real peers", function()
  local data = sample(100000, 5)

  it("gzip(1) output decodes; ours decodes with gzip -d", function()
    local path = S.tmpfile(data)
    local r = aio.exec({ "gzip", "-c", "-9", path })
    os.remove(path)
    assert.equals(0, r.status)
    assert.equals(data, decompress("gzip", r.stdout))
    assert.equals(data, decompress("auto", r.stdout))
    for _, level in ipairs { 1, 6, 9 } do
      local back = aio.exec({ "gzip", "-dc" }, { stdin = compress("gzip", data, level) })
      assert.equals(0, back.status, back.stderr)
      assert.equals(data, back.stdout)
    end
  end)

  it("gzip -d reads our sync-flushed, many-piece stream", function()
    local d <close> = core.deflater("gzip")
    local parts = {}
    for k = 1, #data, 7001 do parts[#parts + 1] = d:write(data:sub(k, k + 7000), k % 2 == 1 and "sync" or nil) end
    parts[#parts + 1] = d:finish()
    local back = aio.exec({ "gzip", "-dc" }, { stdin = table.concat(parts) })
    assert.equals(0, back.status, back.stderr)
    assert.equals(data, back.stdout)
  end)

  it("Python's zlib and gzip output decodes, every format and window", function()
    local out = python([[
import sys, zlib, gzip
data = sys.stdin.buffer.read()
for wbits in (15, 9):
    for fmt in (wbits + 16, wbits, -wbits):
        co = zlib.compressobj(6, zlib.DEFLATED, fmt)
        c = co.compress(data) + co.flush()
        sys.stdout.buffer.write(len(c).to_bytes(4, "big") + c)
c = gzip.compress(data)
sys.stdout.buffer.write(len(c).to_bytes(4, "big") + c)
]], data)
    local streams = {}
    local pos = 1
    while pos <= #out do
      local n = string.unpack(">I4", out, pos)
      streams[#streams + 1] = out:sub(pos + 4, pos + 3 + n)
      pos = pos + 4 + n
    end
    assert.equals(7, #streams)
    local formats = { "gzip", "zlib", "raw" }
    for k = 1, 6 do
      local wbits = k <= 3 and 15 or 9
      assert.equals(data, decompress(formats[(k - 1) % 3 + 1], streams[k], nil, wbits))
    end
    assert.equals(data, decompress("gzip", streams[7]))
    assert.equals(data, decompress("auto", streams[7]))
  end)

  it("Python decodes ours, every format, level and window (8 means 9)", function()
    local batch = {}
    for _, format in ipairs { "gzip", "zlib", "raw" } do
      for _, level in ipairs { 1, 9 } do
        for _, wbits in ipairs { 15, 9, 8 } do
          local c = compress(format, data, level, wbits)
          local zw = (wbits == 8 and 9 or wbits)
          zw = format == "gzip" and zw + 16 or format == "raw" and -zw or zw
          batch[#batch + 1] = string.pack(">i4s4", zw, c)
        end
      end
    end
    local out = python([[
import sys, zlib, hashlib
buf = sys.stdin.buffer.read()
pos = 0
while pos < len(buf):
    wbits = int.from_bytes(buf[pos:pos+4], "big", signed=True)
    n = int.from_bytes(buf[pos+4:pos+8], "big")
    d = zlib.decompressobj(wbits)
    out = d.decompress(buf[pos+8:pos+8+n])
    assert d.eof and not d.unused_data
    sys.stdout.write(hashlib.sha256(out).hexdigest() + "\n")
    pos += 8 + n
]], table.concat(batch))
    local want = python("import sys, hashlib; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())", data)
    assert.equals(want:rep(#batch), out)
  end)

  it("a WebSocket exchange with Python: raw deflate, sync flush, context takeover", function()
    local msgs = { ("hello websocket "):rep(30), ("hello websocket "):rep(31), "short", sample(3000, 9) }
    local payloads = {}
    local d <close> = core.deflater("raw", 6, 15)
    for k, m in ipairs(msgs) do payloads[k] = string.pack(">s4", d:write(m, "sync"):sub(1, -5)) end
    -- Python inflates them (appending the tail) and sends each back compressed the same way
    local out = python([[
import sys, zlib
buf = sys.stdin.buffer.read()
inf = zlib.decompressobj(-15)
dfl = zlib.compressobj(6, zlib.DEFLATED, -15)
pos = 0
while pos < len(buf):
    n = int.from_bytes(buf[pos:pos+4], "big")
    m = inf.decompress(buf[pos+4:pos+4+n] + b"\x00\x00\xff\xff")
    c = dfl.compress(m) + dfl.flush(zlib.Z_SYNC_FLUSH)
    assert c.endswith(b"\x00\x00\xff\xff")
    c = c[:-4]
    sys.stdout.buffer.write(len(c).to_bytes(4, "big") + c)
    pos += 4 + n
]], table.concat(payloads))
    local i <close> = core.inflater("raw", nil, 15)
    local pos, k = 1, 0
    while pos <= #out do
      local p
      p, pos = string.unpack(">s4", out, pos)
      k = k + 1
      assert.equals(msgs[k], i:write(p .. "\0\0\255\255"))
    end
    assert.equals(#msgs, k)
  end)
end)

describe("zlib: output limits", function()
  local data = sample(50000, 13)
  local c = compress("gzip", data)

  it("exactly max_output bytes pass; one more raises ProtocolError with limit = true", function()
    local i <close> = core.inflater("gzip", #data)
    assert.equals(data, i:write(c))
    assert.is_true(i:finished())
    local j <close> = core.inflater("gzip", #data - 1)
    local err = raises("ProtocolError", j.write, j, c)
    assert.is_true(err.limit)
    assert.equals("decompressed data exceeds " .. (#data - 1) .. " bytes", err.message)
    assert.is_true(j:total() <= #data)
  end)

  it("max_output counts over the object's life, across writes and resets", function()
    local i <close> = core.inflater("zlib", 10)
    assert.equals("abcdef", i:write(compress("zlib", "abcdef")))
    i:reset()
    assert.equals("ghij", i:write(compress("zlib", "ghij")))   -- 10 bytes: still fine
    i:reset()
    local err = raises("ProtocolError", i.write, i, compress("zlib", "k"))
    assert.is_true(err.limit)
    assert.equals("decompressed data exceeds 10 bytes", err.message)
  end)

  it("max_output 0 allows only empty output", function()
    assert.equals("", decompress("gzip", compress("gzip", ""), 0))
    assert.is_true(raises("ProtocolError", decompress, "gzip", compress("gzip", "x"), 0).limit)
  end)

  it("write's own max bounds that call (a message's share)", function()
    local i <close> = core.inflater("raw", 1000)
    local d <close> = core.deflater("raw")
    assert.equals(("a"):rep(100), i:write(d:write(("a"):rep(100), "sync"), 100))
    local err = raises("ProtocolError", i.write, i, d:write(("b"):rep(101), "sync"), 100)
    assert.is_true(err.limit)
    assert.equals("decompressed data exceeds 100 bytes", err.message)
  end)

  it("after an error the inflater refuses writes until reset", function()
    local i <close> = core.inflater("gzip", 100)
    raises("ProtocolError", i.write, i, c)
    local err = raises("InvalidStateError", i.write, i, c)
    assert.matches("reset", err.message)
    assert.is_number(i:total())
    i:reset()
    assert.equals("", i:write(""))   -- the input of the call that raised is gone
    assert.equals("", i:write(c:sub(1, 10)))
  end)

  it("a gzip bomb (1 GiB of zeros in ~1 MiB) is cut at a 1 MiB limit, quickly, in bounded memory", function()
    local path = os.tmpname()
    python(([[
import zlib
c = zlib.compressobj(9, zlib.DEFLATED, 31)
z = bytes(1 << 20)
with open(%q, "wb") as f:
    for _ in range(1024):
        f.write(c.compress(z))
    f.write(c.flush())
]]):format(path))
    local bomb = aio.fs.read_file(path)
    os.remove(path)
    assert.is_true(#bomb < 2 * 1024 * 1024 and #bomb > 512 * 1024, "bomb of " .. #bomb .. " bytes")
    collectgarbage()
    local rss0 = S.rss_kib()
    -- fed in 64 KiB pieces as a body arrives: the first piece already holds
    -- far more than 1 MiB of zeros, so the first write must raise
    local i <close> = core.inflater("gzip", 1024 * 1024)
    local ok, err = pcall(i.write, i, bomb:sub(1, 65536))
    assert.is_false(ok)
    assert.is_true(aio.is_error(err, "ProtocolError") and err.limit, tostring(err))
    assert.equals("decompressed data exceeds 1048576 bytes", err.message)
    assert.is_true(i:total() <= 1024 * 1024 + 1)
    -- the whole bomb in one write: the same
    local j <close> = core.inflater("auto", 1024 * 1024)
    assert.is_true(raises("ProtocolError", j.write, j, bomb).limit)
    if not os.getenv("LUAIO_SANITIZED") and not os.getenv("LUAIO_VALGRIND") then   -- their allocators skew RSS
      local grew = S.rss_kib() - rss0
      assert.is_true(grew < 16 * 1024, "RSS grew by " .. grew .. " KiB")
    end
  end)
end)

describe("zlib: corrupt input", function()
  local data = sample(20000, 17)

  it("a bad header, a flipped byte, a wrong checksum raise ProtocolError naming zlib's reason", function()
    local err = raises("ProtocolError", decompress, "gzip", "not gzip at all")
    assert.matches("incorrect header check", err.message)
    assert.is_nil(err.limit)
    raises("ProtocolError", decompress, "zlib", "\120\1garbage garbage")
    local c = compress("zlib", data)
    local mid = #c // 2
    local flipped = c:sub(1, mid - 1) .. string.char(c:byte(mid) ~ 0x55) .. c:sub(mid + 1)
    raises("ProtocolError", function()
      local i <close> = core.inflater("zlib")
      i:write(flipped)
    end)
    local g = compress("gzip", data)
    local badcrc = g:sub(1, -9) .. string.char(g:byte(-8) ~ 1) .. g:sub(-7)
    err = raises("ProtocolError", decompress, "gzip", badcrc)
    assert.matches("incorrect data check", err.message)
    local badlen = g:sub(1, -5) .. string.char(g:byte(-4) ~ 1) .. g:sub(-3)
    err = raises("ProtocolError", decompress, "gzip", badlen)
    assert.matches("incorrect length check", err.message)
  end)

  it("zlib data given to a gzip inflater, gzip to a raw one", function()
    raises("ProtocolError", decompress, "gzip", compress("zlib", data))
    raises("ProtocolError", decompress, "raw", compress("gzip", data))
  end)

  it("a raw stream with a window larger than the inflater's is refused", function()
    local wide = compress("raw", sample(100000, 2) .. sample(100000, 2), 9, 15)
    local err = raises("ProtocolError", decompress, "raw", wide, nil, 9)
    assert.matches("distance too far back", err.message)
  end)

  it("a zlib dictionary stream is refused", function()
    local out = python([[
import sys, zlib
c = zlib.compressobj(6, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, b"dictionary")
sys.stdout.buffer.write(c.compress(b"dictionary words") + c.flush())
]])
    local err = raises("ProtocolError", decompress, "zlib", out)
    assert.matches("preset dictionary", err.message)
  end)
end)

describe("zlib: bad arguments", function()
  it("constructors", function()
    bad_arg("bad argument #1 to 'deflater' (invalid option 'deflate')", function() core.deflater("deflate") end)
    bad_arg("bad argument #1 to 'deflater' (string expected, got no value)", function() core.deflater() end)
    bad_arg("bad argument #1 to 'deflater' (a deflater needs gzip, zlib or raw)", function() core.deflater("auto") end)
    bad_arg("bad argument #2 to 'deflater' (level must be within 0..9 (or -1: the default))", function() core.deflater("gzip", 10) end)
    bad_arg("bad argument #2 to 'deflater' (level must be within 0..9 (or -1: the default))", function() core.deflater("gzip", -2) end)
    bad_arg("bad argument #2 to 'deflater' (number has no integer representation)", function() core.deflater("gzip", 1.5) end)
    bad_arg("bad argument #2 to 'deflater' (number expected, got table)", function() core.deflater("gzip", {}) end)
    bad_arg("bad argument #3 to 'deflater' (window bits must be within 8..15)", function() core.deflater("raw", 6, 7) end)
    bad_arg("bad argument #3 to 'deflater' (window bits must be within 8..15)", function() core.deflater("raw", 6, 16) end)
    bad_arg("bad argument #4 to 'deflater' (memory level must be within 1..9)", function() core.deflater("raw", 6, 15, 0) end)
    bad_arg("bad argument #4 to 'deflater' (memory level must be within 1..9)", function() core.deflater("raw", 6, 15, 10) end)
    bad_arg("bad argument #1 to 'inflater' (invalid option 'br')", function() core.inflater("br") end)
    bad_arg("bad argument #1 to 'inflater' (string expected, got table)", function() core.inflater({}) end)
    bad_arg("bad argument #2 to 'inflater' (max_output must be >= 0 (or nil: no limit))", function() core.inflater("gzip", -1) end)
    bad_arg("bad argument #2 to 'inflater' (number expected, got string)", function() core.inflater("gzip", "x") end)
    bad_arg("bad argument #3 to 'inflater' (window bits must be within 8..15)", function() core.inflater("raw", nil, 16) end)
  end)

  it("methods", function()
    local d <close> = core.deflater("gzip")
    local i <close> = core.inflater("gzip")
    bad_arg("bad argument #1 to 'write' (string expected, got table)", function() d:write({}) end)
    bad_arg("bad argument #1 to 'write' (string expected, got nil)", function() d:write(nil) end)
    bad_arg("bad argument #2 to 'write' (invalid option 'partial')", function() d:write("x", "partial") end)
    bad_arg("bad argument #1 to 'write' (string expected, got boolean)", function() i:write(true) end)
    bad_arg("bad argument #2 to 'write' (max must be >= 0 (or nil: no limit))", function() i:write("", -5) end)
    bad_arg("bad argument #1 to 'write' (luaio.Deflater expected, got luaio.Inflater)", function() d.write(i, "x") end)
    bad_arg("calling 'reset' on bad self (luaio.Inflater expected, got table)", function() local t = { reset = i.reset }; t:reset() end)
    -- a bad argument changes nothing: the streams still work
    assert.equals("ok", decompress("gzip", d:write("ok") .. d:finish()))
  end)
end)

describe("zlib: lifetime", function()
  it("every method but close raises InvalidStateError once closed; close is idempotent", function()
    local d = core.deflater("raw")
    local i = core.inflater("raw")
    d:close()
    i:close()
    d:close()
    i:close()
    for _, call in ipairs {
      function() d:write("x") end, function() d:finish() end, function() d:reset() end,
    } do
      assert.equals("the deflater is closed", raises("InvalidStateError", call).message)
    end
    for _, call in ipairs {
      function() i:write("x") end, function() i:finished() end, function() i:trailing() end,
      function() i:total() end, function() i:reset() end,
    } do
      assert.equals("the inflater is closed", raises("InvalidStateError", call).message)
    end
    assert.equals("Deflater<raw, closed>", tostring(d))
    assert.equals("Inflater<raw, closed>", tostring(i))
  end)

  it("<close> closes them at the end of the scope", function()
    local d2, i2
    do
      local d <close> = core.deflater("gzip")
      local i <close> = core.inflater("auto")
      d2, i2 = d, i
      assert.equals("Deflater<gzip>", tostring(d))
      assert.equals("Inflater<auto>", tostring(i))
    end
    raises("InvalidStateError", d2.write, d2, "x")
    raises("InvalidStateError", i2.write, i2, "x")
    -- and when the scope is left by an error
    local ok = pcall(function()
      local d <close> = core.deflater("zlib")
      d2 = d
      error("boom")
    end)
    assert.is_false(ok)
    raises("InvalidStateError", d2.write, d2, "x")
  end)

  it("the metatables are named, and unclosed objects are freed by the collector", function()
    assert.equals("luaio.Deflater", getmetatable(core.deflater("raw")).__name)
    assert.equals("luaio.Inflater", getmetatable(core.inflater("raw")).__name)
    for _ = 1, 200 do
      local d = core.deflater("gzip", 9)
      local i = core.inflater("gzip")
      i:write(d:write(("z"):rep(1000), "sync"))   -- zlib state and the inflate window allocated
    end
    collectgarbage()
    collectgarbage()
  end)
end)
