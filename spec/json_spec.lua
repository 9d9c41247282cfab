-- aio.json (src/json.c): the native encoder and decoder, the array mark,
-- numbers, strings, errors with positions and paths, and random round trips
-- (cross-checked with lua-cjson when it is installed).
local aio = require "luaio"
local json = aio.json
local encode, decode = json.encode, json.decode

local function fails(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.matches(pattern, tostring(err))
  return err
end

local function is_marked(t) return getmetatable(t) == json.array_mt end

describe("aio.json", function()
  describe("arrays", function()
    it("[] and {} round-trip as themselves, nested too", function()
      assert.equals("[]", encode(decode("[]")))
      assert.equals("{}", encode(decode("{}")))
      assert.equals("[[],{},[[]],{\"a\":[]}]", encode(decode("[[],{},[[]],{\"a\":[]}]")))
      local v = decode('{"list":[],"obj":{},"deep":[[[{}]]]}')
      assert.equals("[]", encode(v.list))
      assert.equals("{}", encode(v.obj))
      assert.equals("[[[{}]]]", encode(v.deep))
    end)

    it("decode marks every array and no object", function()
      local v = decode('[{"a":[1,[2]],"b":{}}]')
      assert.is_true(is_marked(v))
      assert.is_nil(getmetatable(v[1]))
      assert.is_true(is_marked(v[1].a))
      assert.is_true(is_marked(v[1].a[2]))
      assert.is_nil(getmetatable(v[1].b))
      assert.same({ { a = { 1, { 2 } }, b = {} } }, v)   -- a marked array is still a plain sequence
    end)

    it("aio.json.array marks a table, or makes one", function()
      local t = {}
      assert.equals(t, json.array(t))
      assert.is_true(is_marked(t))
      assert.equals("[]", encode(t))
      assert.equals(t, json.array(t))                      -- marking twice is fine
      assert.equals("[]", encode(json.array()))
      assert.equals("[]", encode(json.array(nil)))
      assert.equals('{"a":[]}', encode({ a = json.array() }))
      assert.equals("[1,2,3]", encode(json.array { 1, 2, 3 }))
      assert.equals("array", json.array_mt.__jsontype)     -- dkjson's name for the same mark
    end)

    it("a marked table encodes t[1..#t] only, holes as null", function()
      assert.equals("[1,2]", encode(json.array { 1, 2, name = "ignored" }))
      assert.equals("[\"x\"]", encode(json.array { "x", [0] = "ignored", [-1] = "ignored" }))
      local t = json.array { 1, 2, 3 }
      t[2] = nil
      local s = encode(t)
      assert.truthy(s == "[1,null,3]" or s == "[1]", s)  -- #t of a table with a hole is either border
    end)

    it("aio.json.array refuses what is not a table, and a table owned by another metatable", function()
      fails("bad argument #1 to 'aio.json.array' %(table expected, got number%)", json.array, 5)
      fails("bad argument #1 to 'aio.json.array' %(table expected, got string%)", json.array, "x")
      fails("bad argument #1 to 'aio.json.array' %(table expected, got boolean%)", json.array, false)
      local owned = setmetatable({}, { __index = {} })
      fails("bad argument #1 to 'aio.json.array' %(the table has a metatable already%)", json.array, owned)
      assert.is_nil(rawget(getmetatable(owned), "__jsontype"))
    end)

    it("an unmarked table follows cjson's rules: sequence, sparse, excessively sparse", function()
      assert.equals("[1,2,3]", encode({ 1, 2, 3 }))
      assert.equals("{}", encode({}))
      assert.equals("[1,null,3]", encode({ [1] = 1, [3] = 3 }))
      assert.equals("[1,2,3,4,5,null,null,null,null,null,3]", encode({ 1, 2, 3, 4, 5, [11] = 3 }))
      assert.equals('{"20":1}', encode({ [20] = 1 }))                     -- > 10 and > 2 * count
      assert.equals("[null,null,null,null,null,null,null,null,null,1]", encode({ [10] = 1 }))
      local s = encode({ 1, 2, x = 3 })                                   -- mixed: an object
      assert.same({ ["1"] = 1, ["2"] = 2, x = 3 }, decode(s))
      assert.same({ ["0"] = "z", ["-1"] = "m" }, decode(encode({ [0] = "z", [-1] = "m" })))
      assert.equals('{"1.5":1}', encode({ [1.5] = 1 }))
    end)

    it("other metatables do not change how a table encodes", function()
      local t = setmetatable({ 1, 2 }, { __index = function() return "x" end, __len = function() return 99 end })
      assert.equals("[1,2]", encode(t))
      assert.equals('{"a":1}', encode(setmetatable({ a = 1 }, { __pairs = function() error("not called") end })))
    end)
  end)

  describe("scalars", function()
    it("null, booleans, nil", function()
      assert.equals("null", encode(json.null))
      assert.equals("null", encode(nil))
      assert.equals("true", encode(true))
      assert.equals("false", encode(false))
      assert.equals(json.null, decode("null"))
      assert.equals("userdata", type(json.null))
      assert.is_true(decode("true"))
      assert.is_false(decode("false"))
      local v = decode("[null, 1, null]")
      assert.equals(3, #v)
      assert.equals(json.null, v[3])
      assert.equals("[null,1,null]", encode(v))
      local ok, cjson = pcall(require, "cjson")
      if ok then assert.equals(cjson.null, json.null) end
    end)

    it("integers print exactly; floats as %.14g (cjson's text)", function()
      assert.equals("[0,-1,42,9223372036854775807,-9223372036854775808]",
        encode({ 0, -1, 42, math.maxinteger, math.mininteger }))
      assert.equals("123456789012345678", encode(123456789012345678))
      assert.equals("[0.1,0.33333333333333,1e+300,-0,3,2.5,1e-07]", encode({ 0.1, 1 / 3, 1e300, -0.0, 3.0, 2.5, 1e-7 }))
      assert.equals("9.007199254741e+15", encode(2.0 ^ 53))
    end)

    it("NaN and the infinities are errors", function()
      fails("aio.json.encode: cannot encode NaN or an infinity$", encode, 0 / 0)
      fails("aio.json.encode: cannot encode NaN or an infinity$", encode, math.huge)
      fails("cannot encode NaN or an infinity %(at %$%.a%[2%]%)", encode, { a = { 1, -math.huge } })
      fails("cannot encode NaN or an infinity", encode, { [math.huge] = 1 })
    end)

    it("decodes whole numbers within 2^53 as integers, others as floats", function()
      local cases = {
        { "0", "integer", 0 }, { "-0", "integer", 0 }, { "7", "integer", 7 }, { "-12", "integer", -12 },
        { "1.0", "integer", 1 }, { "1e3", "integer", 1000 }, { "1E+2", "integer", 100 }, { "2.5", "float", 2.5 },
        { "-1.5e-3", "float", -0.0015 }, { "999999999999999", "integer", 999999999999999 },
        { "9007199254740991", "integer", 9007199254740991 }, { "-9007199254740991", "integer", -9007199254740991 },
        { "9007199254740992", "float", 2.0 ^ 53 }, { "9007199254740993", "float", 2.0 ^ 53 },
        { "12345678901234567890", "float", 12345678901234567890.0 }, { "1e400", "float", math.huge },
        { "1" .. ("0"):rep(100), "float", 1e100 }, { "0.000001", "float", 1e-6 },
      }
      for _, c in ipairs(cases) do
        local v = decode(c[1])
        assert.equals(c[2], math.type(v), c[1])
        assert.equals(c[3], v, c[1])
      end
    end)

    it("decoding ignores the process's locale", function()
      local old = os.setlocale(nil, "numeric")
      if not (os.setlocale("de_DE.UTF-8", "numeric") or os.setlocale("fr_FR.UTF-8", "numeric")) then
        return                                   -- no comma locale installed here
      end
      local ok, v, s = pcall(function() return decode("[2.5, 1e-3]"), encode({ 2.5 }) end)
      os.setlocale(old, "numeric")
      assert.is_true(ok, tostring(v))
      assert.same({ 2.5, 0.001 }, v)
      assert.equals("[2.5]", s)
    end)
  end)

  describe("strings", function()
    it("escapes '\"', '\\' and every control character, and nothing else", function()
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      all = table.concat(all)
      local s = encode(all)
      local want = { '"' }
      local short = { [8] = "\\b", [9] = "\\t", [10] = "\\n", [12] = "\\f", [13] = "\\r" }
      for i = 0, 31 do want[#want + 1] = short[i] or ("\\u%04x"):format(i) end
      want[#want + 1] = all:sub(33, 255 + 1):gsub('\\', '\\\\'):gsub('"', '\\"')
      want[#want + 1] = '"'
      assert.equals(table.concat(want), s)
      assert.equals(all, decode(s))                  -- bytes that are not UTF-8 pass through
      assert.equals('"a/b"', encode("a/b"))
    end)

    it("decodes every escape, and \\u as UTF-8 (surrogate pairs too)", function()
      assert.equals('"\\/\b\f\n\r\t', decode([["\"\\\/\b\f\n\r\t"]]))
      assert.equals("A\0é€😀", decode([["\u0041\u0000\u00e9\u20AC\ud83d\ude00"]]))
      assert.equals("héllo wörld ✓ 😀", decode(encode("héllo wörld ✓ 😀")))
      assert.equals("x\0y", decode(encode("x\0y")))
    end)

    it("refuses bad escapes, lone surrogates, raw control characters", function()
      fails("invalid escape in string at character 3", decode, [["a\x"]])
      fails("invalid \\u escape at character 2", decode, [["\u12G4"]])
      fails("invalid \\u escape at character 2", decode, [["\u12]])
      fails("lone UTF%-16 surrogate in \\u escape at character 2", decode, [["\ud800"]])
      fails("lone UTF%-16 surrogate in \\u escape at character 2", decode, [["\ud800\u0041"]])
      fails("lone UTF%-16 surrogate in \\u escape at character 2", decode, [["\udc00"]])
      fails("control character in string at character 3", decode, '"a\nb"')
      fails("control character in string at character 3", decode, '"a\0b"')
      fails("unterminated string at character 1", decode, '"abc')
      fails("unterminated string at character 3", decode, '[ "ab\\n')
    end)
  end)

  describe("errors", function()
    it("decode names the position of bad input", function()
      local cases = {
        { "", "expected a value but found the end at character 1" },
        { "   ", "expected a value but found the end at character 4" },
        { "[", "expected a value but found the end at character 2" },
        { '{"a": [1, 2,, 3]}', "expected a value but found ',' at character 13" },
        { "[1,]", "expected a value but found ']' at character 4" },
        { "[1 2]", "expected ',' or ']' but found '2' at character 4" },
        { '{"a":1,}', "expected a string key but found '}' at character 8" },
        { "{a:1}", "expected a string key but found 'a' at character 2" },
        { '{"a" 1}', "expected ':' but found '1' at character 6" },
        { '{"a":1 "b":2}', "expected ',' or '}' but found '\"' at character 8" },
        { "[1] x", "expected the end but found 'x' at character 5" },
        { "[1]\0", "expected the end but found byte 0x00 at character 4" },
        { "\xef\xbb\xbf[]", "expected a value but found byte 0xEF at character 1" },
        { "tru", "expected a value but found 't' at character 1" },
        { "nul", "expected a value but found 'n' at character 1" },
        { "NaN", "expected a value but found 'N' at character 1" },
        { "01", "expected the end but found '1' at character 2" },
        { "-", "invalid number at character 1" },
        { "1.", "invalid number at character 1" },
        { ".5", "expected a value but found '.' at character 1" },
        { "+1", "expected a value but found '+' at character 1" },
        { "[1e]", "invalid number at character 2" },
        { "0x10", "expected the end but found 'x' at character 2" },
      }
      for _, c in ipairs(cases) do
        local err = fails("aio.json.decode: ", decode, c[1])
        assert.equals("aio.json.decode: " .. c[2], err, ("%q"):format(c[1]))
      end
    end)

    it("an error is raised at the caller's line", function()
      local ok, err = pcall(function() return decode("[") end)
      assert.is_false(ok)
      assert.matches("^spec/json_spec%.lua:%d+: aio%.json%.decode: ", err)
      ok, err = pcall(function() return encode(print) end)
      assert.is_false(ok)
      assert.matches("^spec/json_spec%.lua:%d+: aio%.json%.encode: cannot encode a function$", err)
    end)

    it("encode names the path of what it cannot encode", function()
      fails("aio.json.encode: cannot encode a function %(at %$%.f%)", encode, { f = print })
      fails("cannot encode a function %(at %$%[2%]%.x%)", encode, { 1, { x = print } })
      fails("cannot encode a thread %(at %$%[\"a b\"%]%)", encode, { ["a b"] = coroutine.create(print) })
      fails("cannot encode a FILE%* %(at %$%.list%[1%]%)", encode, { list = { io.stdout } })
      fails("cannot encode a light userdata", encode, { debug.upvalueid(fails, 1) })
      fails("a key must be a string or a number, got boolean %(at %$%.a%.b%)", encode, { a = { b = { [true] = 1 } } })
      fails("a key must be a string or a number, got table$", encode, { [{}] = 1 })
      fails("cannot encode a function %(at %$%[\"" .. ("k"):rep(40) .. "%.%.%.\"%]%)", encode, { [("k"):rep(41) .. "-"] = print })
    end)

    it("nesting: 1000 levels work, deeper and cycles are errors", function()
      local deep = ("["):rep(1000) .. ("]"):rep(1000)
      assert.equals(deep, encode(decode(deep)))
      fails("aio.json.decode: nesting deeper than 1000 at character 1001", decode, ("["):rep(1001) .. ("]"):rep(1001))
      fails("nesting deeper than 1000", decode, ('{"a":'):rep(1001) .. "1" .. ("}"):rep(1001))
      local t = {}
      local c = t
      for _ = 1, 1000 do c[1] = {} c = c[1] end
      fails("cannot encode a cycle or nesting deeper than 1000 %(at %$%[1%]%[1%]", encode, t)
      local cyc = { name = "me" }
      cyc.self = cyc
      fails("cannot encode a cycle or nesting deeper than 1000 %(at %$%.self%.self.*%.%.%.%)$", encode, cyc)
      local a = json.array()
      a[1] = a
      fails("cannot encode a cycle", encode, a)
    end)

    it("argument checks", function()
      fails("bad argument #1 to 'aio.json.decode' %(string expected, got number%)", decode, 42)
      fails("bad argument #1 to 'aio.json.decode' %(string expected, got no value%)", decode)
      fails("bad argument #1 to 'aio.json.encode' %(value expected%)", encode)
    end)
  end)

  describe("random round trips", function()
    -- values whose floats survive %.14g exactly, with every kind of string
    local function random_string(rnd)
      local n = rnd(0, 12)
      local b = {}
      for i = 1, n do
        local r = rnd(1, 10)
        b[i] = r <= 6 and string.char(rnd(32, 126)) or r <= 8 and string.char(rnd(0, 31))
          or r == 9 and utf8.char(rnd(0x80, 0x10FFFF)) or string.char(rnd(128, 255))
      end
      return table.concat(b)
    end
    local function random_value(rnd, depth)
      local r = rnd(1, depth > 4 and 6 or 9)
      if r == 1 then return json.null
      elseif r == 2 then return rnd(0, 1) == 1
      elseif r == 3 then return rnd(-(1 << 52), 1 << 52)                             -- within 2^53
      elseif r == 4 then return rnd(-1000000, 1000000) / 64 + 0.5                   -- exact in 14 digits
      elseif r <= 6 then return random_string(rnd)
      elseif r <= 8 then
        local t = json.array()
        for i = 1, rnd(0, 5) do t[i] = random_value(rnd, depth + 1) end
        return t
      else
        local t = {}
        for _ = 1, rnd(0, 5) do t[random_string(rnd)] = random_value(rnd, depth + 1) end
        return t
      end
    end
    -- deep equality that also checks the marks and the number subtypes
    local function same(a, b)
      if type(a) ~= type(b) then return false end
      if type(a) == "number" then return a == b and math.type(a) == math.type(b) end
      if type(a) ~= "table" then return a == b end
      if is_marked(a) ~= is_marked(b) then return false end
      for k, v in pairs(a) do if not same(v, b[k]) then return false end end
      for k in pairs(b) do if a[k] == nil then return false end end
      return true
    end
    local function float_whole(v)   -- a float like 3.5 + 0.5 decodes as the integer 4
      if type(v) == "number" and math.type(v) == "float" and v == math.floor(v) then return math.tointeger(v) end
      if type(v) == "table" then
        for k, x in pairs(v) do v[k] = float_whole(x) end
      end
      return v
    end

    it("decode(encode(v)) is v, marks and integer subtypes included", function()
      math.randomseed(20240601)
      local rnd = math.random
      for _ = 1, 2000 do
        local v = float_whole(random_value(rnd, 0))
        local s = encode(v)
        local back = decode(s)
        assert.is_true(same(v, back), s)
        assert.equals(#s, #encode(back))          -- the same text, but for the order of keys
      end
    end)

    -- equal as values: cjson decodes 7 as 7.0 and cannot tell [] from {}
    local function loose(a, b)
      if type(a) ~= type(b) then return false end
      if type(a) ~= "table" then return a == b end
      for k, v in pairs(a) do if not loose(v, b[k]) then return false end end
      for k in pairs(b) do if a[k] == nil then return false end end
      return true
    end

    it("reads the same values as lua-cjson, from either encoder, when it is installed", function()
      local ok, cjson = pcall(require, "cjson")
      if not ok then return end
      math.randomseed(7)
      local rnd = math.random
      for _ = 1, 500 do
        local v = random_value(rnd, 0)
        local ours, theirs = encode(v), cjson.encode(v)
        assert.is_true(loose(cjson.decode(ours), decode(ours)), ours)
        assert.is_true(loose(cjson.decode(theirs), decode(theirs)), theirs)
      end
    end)

    it("random bytes and mangled documents never crash the decoder", function()
      math.randomseed(99)
      local rnd = math.random
      local alphabet = '{}[]",:0123456789-+.eEtrufalsn\\u \n\t\0\xff\xc3\xa9abc'
      for _ = 1, 5000 do
        local b = {}
        for i = 1, rnd(0, 40) do
          local k = rnd(1, #alphabet)
          b[i] = alphabet:sub(k, k)
        end
        local ok, err = pcall(decode, table.concat(b))
        assert.truthy(ok or err:find("aio.json.decode: ", 1, true), err)
      end
      for _ = 1, 2000 do
        local s = encode(random_value(rnd, 0))
        local cut = rnd(0, #s)
        local mangled = s:sub(1, cut) .. string.char(rnd(0, 255)) .. s:sub(cut + 2)
        local ok, err = pcall(decode, mangled)
        assert.truthy(ok or err:find("aio.json.decode: ", 1, true), err)
      end
    end)

    it("a big document: long strings, long arrays", function()
      local big = json.array()
      for i = 1, 20000 do big[i] = { id = i, name = ("item %d \"q\" \\ /"):format(i), tags = json.array() } end
      local s = encode(big)
      local back = decode(s)
      assert.equals(20000, #back)
      assert.equals('item 777 "q" \\ /', back[777].name)
      assert.is_true(is_marked(back[20000].tags))
      assert.is_true(same(big, back))
      assert.equals(#s, #encode(back))
      local long = ("x"):rep(1000000) .. "\n"
      assert.equals(long, decode(encode(long)))
    end)
  end)
end)
