-- HTML form bodies (luaio.http.form; API.md §6b req:form()): urlencoded and
-- multipart/form-data both ways, against curl -F and Python's email parser.
local aio = require "luaio"
local form = require "luaio.http.form"
local S = require "spec.support"

local CRLF = "\r\n"

-- a multipart body from parts { headers_text, data } with boundary b
local function body_of(b, parts, opts)
  opts = opts or {}
  local out = { opts.preamble or "" }
  for _, p in ipairs(parts) do
    out[#out + 1] = "--" .. b .. CRLF .. p[1] .. CRLF .. CRLF .. p[2] .. CRLF
  end
  if not opts.unterminated then out[#out + 1] = "--" .. b .. "--" .. (opts.epilogue or CRLF) end
  return table.concat(out)
end

local function field(name, data) return { 'Content-Disposition: form-data; name="' .. name .. '"', data } end
local function file(name, filename, data, ctype)
  local h = 'Content-Disposition: form-data; name="' .. name .. '"; filename="' .. filename .. '"'
  if ctype then h = h .. CRLF .. "Content-Type: " .. ctype end
  return { h, data }
end

-- runs fn, expects an HTTPError with `status`; returns the error
local function http_error(status, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "no error raised")
  assert.is_true(aio.is_error(err, "HTTPError"), tostring(err))
  assert.equals(status, err.status)
  return err
end

local function arg_error(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  assert.is_string(err)
  assert.matches(pattern, err)
end

describe("form.boundary", function()
  it("finds plain and quoted boundaries, case-insensitively", function()
    assert.equals("abc", form.boundary("multipart/form-data; boundary=abc"))
    assert.equals("----WebKitFormBoundary7MA4YWxkTrZu0gW",
      form.boundary("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW"))
    assert.equals("a b:c", form.boundary('Multipart/Form-Data; BOUNDARY="a b:c"'))
    assert.equals('q"uote', form.boundary('multipart/form-data; boundary="q\\"uote"'))
    assert.equals("x", form.boundary('multipart/form-data;charset=utf-8;boundary=x ; foo=bar'))
    assert.equals("semi;colon", form.boundary('multipart/form-data; a="b;c"; boundary="semi;colon"'))
    assert.equals("mixed", form.boundary("multipart/mixed; boundary=mixed"))
  end)

  it("nil without a multipart type or a usable boundary", function()
    assert.is_nil(form.boundary("multipart/form-data"))
    assert.is_nil(form.boundary("multipart/form-data; boundary="))
    assert.is_nil(form.boundary('multipart/form-data; boundary=""'))
    assert.is_nil(form.boundary('multipart/form-data; boundary="unterminated'))
    assert.is_nil(form.boundary("text/plain; boundary=abc"))
    assert.is_nil(form.boundary(""))
    arg_error("bad argument #1 to 'boundary' %(string expected, got nil%)", function() form.boundary() end)
  end)
end)

describe("form.parse_multipart", function()
  local B = "XyZ123"

  it("fields and files; repeated names become arrays in order, as decode_query does", function()
    local t = form.parse_multipart(body_of(B, {
      field("title", "Hello"),
      field("tag", "a"), field("tag", "b"), field("tag", "c"),
      file("doc", "a.txt", "text A", "text/plain"),
      file("doc", "b.bin", "bin B"),
      field("empty", ""),
    }), B)
    assert.same({
      title = "Hello",
      tag = { "a", "b", "c" },
      doc = { { filename = "a.txt", content_type = "text/plain", data = "text A" },
              { filename = "b.bin", content_type = "application/octet-stream", data = "bin B" } },
      empty = "",
    }, t)
    -- a single file stays a file table, not an array
    t = form.parse_multipart(body_of(B, { file("f", "x.png", "PNG", "image/png") }), B)
    assert.same({ filename = "x.png", content_type = "image/png", data = "PNG" }, t.f)
    -- the convention is decode_query's
    local common = require "luaio.http.common"
    assert.same(common.decode_query("k=1&k=2&j=3"),
      form.parse_multipart(body_of(B, { field("k", "1"), field("k", "2"), field("j", "3") }), B))
  end)

  it("a file input left empty is a file field with an empty filename", function()
    local t = form.parse_multipart(body_of(B, { file("up", "", "", "application/octet-stream") }), B)
    assert.same({ filename = "", content_type = "application/octet-stream", data = "" }, t.up)
  end)

  it("binary data with NULs, CRLFs and boundary-like text is kept byte for byte", function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local data = table.concat(bytes) .. "\0\0\r\n\r\n--" .. B .. "X\r\n" .. "--" .. B .. "\n"
      .. "\r\n--" .. B .. "suffix" .. "\r\n--" .. B .. " trailing junk\r\n" .. "\r\n-" .. B
      .. "\r\n--" .. B:sub(1, 4) .. "\r\n\r\n--\r\n" .. "\r\n--" .. B .. "-x"
    local t = form.parse_multipart(body_of(B, {
      file("bin", "all.bin", data, "application/octet-stream"), field("after", "ok\r\n"),
    }), B)
    assert.equals(data, t.bin.data)
    assert.equals("ok\r\n", t.after)
  end)

  it("a delimiter line may carry transport padding; CRLFs around data are exact", function()
    local body = "--" .. B .. "  \t\r\n" .. 'Content-Disposition: form-data; name="a"\r\n\r\n'
      .. "\r\nline1\r\n\r\n" .. "\r\n--" .. B .. "\t\r\n" .. 'Content-Disposition: form-data; name="b"\r\n\r\n'
      .. "" .. "\r\n--" .. B .. "--"
    assert.same({ a = "\r\nline1\r\n\r\n", b = "" }, form.parse_multipart(body, B))
  end)

  it("a part without a body at all (RFC 2046's optional CRLF) is empty", function()
    local body = "--" .. B .. "\r\n" .. 'Content-Disposition: form-data; name="a"\r\n'
      .. "\r\n--" .. B .. "--\r\n"
    assert.same({ a = "" }, form.parse_multipart(body, B))
  end)

  it("quoted names with escapes and semicolons; unquoted and case-insensitive parameters", function()
    local t = form.parse_multipart(body_of(B, {
      { 'Content-Disposition: form-data; name="a\\"b"', "1" },
      { 'content-disposition: FORM-DATA; NAME="semi;colon"; FileName="f;1.txt"', "2" },
      { "CONTENT-DISPOSITION:form-data;name=plain", "3" },
      { 'Content-Disposition: form-data; name="back\\\\slash"; filename="C:\\dir\\x.txt"', "4" },
      { 'Content-Disposition: form-data ; filename="late.txt" ; name = "spaced"', "5" },
      { 'Content-Disposition: form-data; name="p"; name="second"', "6" },
    }), B)
    assert.equals("1", t['a"b'])
    assert.same({ filename = "f;1.txt", content_type = "application/octet-stream", data = "2" }, t["semi;colon"])
    assert.equals("3", t.plain)
    -- \\ is an escape; a backslash before anything else is kept (old browsers' Windows paths)
    assert.equals("C:\\dir\\x.txt", t["back\\slash"].filename)
    assert.equals("late.txt", t.spaced.filename)
    assert.equals("6", t.p)                        -- the first name parameter wins
  end)

  it("filename*= (RFC 5987) is a fallback when there is no filename", function()
    local t = form.parse_multipart(body_of(B, {
      { "Content-Disposition: form-data; name=\"a\"; filename*=UTF-8''na%C3%AFve%20file.txt", "A" },
      { "Content-Disposition: form-data; name=\"b\"; filename*=utf-8'en'%E2%82%AC.txt; filename=\"plain.txt\"", "B" },
      { "Content-Disposition: form-data; name=\"c\"; filename*=ISO-8859-1''caf%E9.txt", "C" },
      { "Content-Disposition: form-data; name*=UTF-8''%C3%A9t%C3%A9", "D" },
    }), B)
    assert.equals("naïve file.txt", t.a.filename)
    assert.equals("plain.txt", t.b.filename)
    assert.equals("café.txt", t.c.filename)
    assert.equals("D", t["été"])
  end)

  it("part headers: folding, other headers, Content-Type kept whole", function()
    local t = form.parse_multipart(body_of(B, {
      { 'Content-Disposition: form-data;\r\n name="folded"; filename="f.txt"\r\nContent-Type: text/plain; charset=utf-8\r\nX-Other: 1', "x" },
      { 'Content-Disposition: form-data; name="t"\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 8bit', "y" },
    }), B)
    assert.same({ filename = "f.txt", content_type = "text/plain; charset=utf-8", data = "x" }, t.folded)
    assert.equals("y", t.t)
  end)

  it("preamble and epilogue are ignored; an empty form is an empty table", function()
    local t = form.parse_multipart(body_of(B, { field("a", "1") },
      { preamble = "This is a preamble\r\n--" .. B .. "junk\r\n", epilogue = "\r\nepilogue --" .. B .. "\r\nmore" }), B)
    assert.same({ a = "1" }, t)
    assert.same({}, form.parse_multipart("--" .. B .. "--\r\n", B))
    assert.same({}, form.parse_multipart("preamble\r\n--" .. B .. "--", B))
  end)

  it("malformed bodies raise HTTPError 400", function()
    local good = body_of(B, { field("a", "1"), field("b", "2") })
    -- missing final boundary: cut anywhere after the first delimiter
    for _, cut in ipairs({ #good - 3, #good - 4, #good - 6, #good - 10, 20, #("--" .. B .. CRLF) }) do
      http_error(400, form.parse_multipart, good:sub(1, cut), B)
    end
    assert.same({ a = "1", b = "2" }, form.parse_multipart(good:sub(1, -3), B))   -- no CRLF after the close: fine
    local err = http_error(400, form.parse_multipart, body_of(B, { field("a", "1") }, { unterminated = true }), B)
    assert.matches("final boundary", err.message)
    http_error(400, form.parse_multipart, "", B)
    http_error(400, form.parse_multipart, "no boundary here", B)
    http_error(400, form.parse_multipart, body_of("other", { field("a", "1") }), B)
    -- bare LF framing is not multipart
    http_error(400, form.parse_multipart, (good:gsub("\r\n", "\n")), B)
    -- parts without a usable Content-Disposition
    http_error(400, form.parse_multipart, body_of(B, { { "Content-Type: text/plain", "x" } }), B)
    http_error(400, form.parse_multipart, "--" .. B .. "\r\n\r\nx\r\n--" .. B .. "--", B)
    http_error(400, form.parse_multipart, body_of(B, { { "Content-Disposition: attachment; name=\"a\"", "x" } }), B)
    http_error(400, form.parse_multipart, body_of(B, { { "Content-Disposition: form-data; filename=\"a\"", "x" } }), B)
    http_error(400, form.parse_multipart, body_of(B, { { 'Content-Disposition: form-data; name="open', "x" } }), B)
    http_error(400, form.parse_multipart, body_of(B, { { "Content-Disposition form-data; name=a", "x" } }), B)
    http_error(400, form.parse_multipart, body_of(B, { { " folded-first: x\r\nContent-Disposition: form-data; name=a", "x" } }), B)
    -- headers never terminated, or too long
    http_error(400, form.parse_multipart, "--" .. B .. "\r\nContent-Disposition: form-data; name=a\r\n--" .. B .. "--", B)
    http_error(400, form.parse_multipart, body_of(B, { { "Content-Disposition: form-data; name=a\r\nX-Long: "
      .. ("x"):rep(20000), "x" } }), B)
  end)

  it("argument errors", function()
    arg_error("bad argument #1 to 'parse_multipart' %(string expected, got nil%)", function() form.parse_multipart(nil, "b") end)
    arg_error("bad argument #2 to 'parse_multipart' %(string expected, got number%)", function() form.parse_multipart("", 1) end)
    arg_error("bad argument #2 to 'parse_multipart' %(boundary is empty%)", function() form.parse_multipart("", "") end)
  end)

  -- (how long these take is for benchmarks, not tests: no timed assertions)
  it("parses a 5 MB file part", function()
    local chunk = {}
    for i = 0, 4095 do chunk[#chunk + 1] = string.char((i * 7 + 13) % 256) end
    local data = table.concat(chunk):rep(5 * 256) .. "\r\n--" .. B .. "Z"    -- 5 MiB + a near-boundary
    local body = body_of(B, { field("before", "x"), file("big", "big.bin", data), field("after", "y") })
    local t = form.parse_multipart(body, B)
    assert.equals(#data, #t.big.data)
    assert.is_true(t.big.data == data)
    assert.same({ "x", "y" }, { t.before, t.after })
  end)

  it("parses adversarial bodies (many near-boundaries, many parts, long padding)", function()
    -- 2 MB of "\r\n--B" prefixes that are not delimiters
    local near = ("\r\n--" .. B .. "X"):rep(200000)
    local t = form.parse_multipart(body_of(B, { file("f", "n", near) }), B)
    assert.equals(near, t.f.data)
    -- 50 000 parts
    local parts = {}
    for i = 1, 50000 do parts[i] = field("k" .. (i % 100), tostring(i)) end
    t = form.parse_multipart(body_of(B, parts), B)
    assert.equals(500, #t.k1)
    -- long runs of spaces after near-delimiters and in part headers
    local pad = ("\r\n--" .. B .. (" "):rep(1000) .. "x"):rep(1000)
    t = form.parse_multipart(body_of(B, { field("p", pad) }), B)
    assert.equals(pad, t.p)
    local spaces = (" "):rep(3000)   -- 15 000 bytes: under the 16 KiB part-header limit
    t = form.parse_multipart(body_of(B, { { "Content-Disposition:" .. spaces .. "form-data;" .. spaces
      .. "name=" .. spaces .. "a" .. spaces .. "b" .. spaces, "v" } }), B)
    assert.equals("v", t["a" .. spaces .. "b"])
  end)
end)

describe("form.parse", function()
  it("urlencoded bodies through decode_query", function()
    assert.same({ a = "1 2", b = { "x", "y" }, ["c d"] = "é&" },
      form.parse("a=1+2&b=x&b=y&c%20d=%C3%A9%26", "application/x-www-form-urlencoded"))
    assert.same({ q = "v" }, form.parse("q=v", "Application/X-WWW-Form-URLEncoded; charset=UTF-8"))
    assert.same({}, form.parse("", "application/x-www-form-urlencoded"))
  end)

  it("multipart bodies through the Content-Type's boundary", function()
    local body, ctype = form.encode_multipart({ a = "1", f = { filename = "x", data = "d" } })
    assert.same({ a = "1", f = { filename = "x", content_type = "application/octet-stream", data = "d" } },
      form.parse(body, ctype))
    assert.same({ a = "1" }, form.parse(body_of("q b", { field("a", "1") }), 'multipart/form-data; boundary="q b"'))
  end)

  it("415 for other types (the message names the type), 400 when malformed", function()
    local err = http_error(415, form.parse, "{}", "application/json")
    assert.matches("application/json", err.message)
    err = http_error(415, form.parse, "x", "Text/Plain; charset=utf-8")
    assert.matches("text/plain", err.message)
    http_error(415, form.parse, "x", nil)
    http_error(415, form.parse, "x", "")
    http_error(400, form.parse, "x", "multipart/form-data")
    http_error(400, form.parse, "--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx", "multipart/form-data; boundary=b")
    arg_error("bad argument #1 to 'parse' %(string expected, got nil%)", function() form.parse(nil, "text/plain") end)
    arg_error("bad argument #2 to 'parse' %(string expected, got table%)", function() form.parse("", {}) end)
  end)
end)

describe("form.encode_urlencoded", function()
  it("sorted keys, repeated keys for arrays, '+' for spaces", function()
    assert.equals("a=1&b=x+y&c=true&c=false&d=1.5", form.encode_urlencoded({ d = 1.5, c = { true, false }, b = "x y", a = 1 }))
    assert.equals("", form.encode_urlencoded({}))
    assert.equals("e=", form.encode_urlencoded({ e = "", none = {} }))
  end)

  it("escapes as browsers do for forms and round-trips through decode_query", function()
    assert.equals("k=%7E*-._%21%27%28%29%26%3D%2B%25%2F%3F%23", form.encode_urlencoded({ k = "~*-._!'()&=+%/?#" }))
    assert.equals("%C3%A9t%C3%A9=%00%0D%0A", form.encode_urlencoded({ ["été"] = "\0\r\n" }))
    local t = { ["a b"] = "c&d=e", list = { "1", "2 3", "+" }, ["ü"] = "\0\255", plain = "x" }
    assert.same(t, form.parse(form.encode_urlencoded(t), "application/x-www-form-urlencoded"))
  end)

  it("bad values raise an error naming the key", function()
    arg_error("'nested'", function() form.encode_urlencoded({ nested = { a = 1 } }) end)
    arg_error("'fn'.*function", function() form.encode_urlencoded({ fn = print }) end)
    arg_error("'deep'", function() form.encode_urlencoded({ deep = { { 1 } } }) end)
    arg_error("'nan'", function() form.encode_urlencoded({ nan = 0 / 0 }) end)
    arg_error("bad argument #1 to 'encode_urlencoded' %(table expected, got string%)", function() form.encode_urlencoded("a=1") end)
    arg_error("keys must be strings", function() form.encode_urlencoded({ [true] = 1 }) end)
  end)
end)

describe("form.encode_multipart", function()
  it("round-trips fields, files and arrays through parse", function()
    local bin = "\0\1\2\r\n--\r\n\255"
    local fields = {
      title = "Hello, world", n = 42, yes = true,
      tags = { "a", "b" },
      one = { filename = "one.bin", data = bin },
      two = { { filename = "a.txt", content_type = "text/plain", data = "A" },
              { filename = "b.txt", content_type = "text/plain", data = "B" } },
      ['q"uote\\d'] = "v",
      ['file"name'] = { filename = 'we"ird\\name.txt', content_type = "image/png", data = "p" },
    }
    local body, ctype = form.encode_multipart(fields)
    assert.matches("^multipart/form%-data; boundary=", ctype)
    local t = form.parse(body, ctype)
    assert.same({
      title = "Hello, world", n = "42", yes = "true", tags = { "a", "b" },
      one = { filename = "one.bin", content_type = "application/octet-stream", data = bin },
      two = { { filename = "a.txt", content_type = "text/plain", data = "A" },
              { filename = "b.txt", content_type = "text/plain", data = "B" } },
      ['q"uote\\d'] = "v",
      ['file"name'] = { filename = 'we"ird\\name.txt', content_type = "image/png", data = "p" },
    }, t)
  end)

  it("uses a given boundary, quoted in the Content-Type when it must be; refuses one in the data", function()
    local body, ctype = form.encode_multipart({ a = "1" }, "simple-b")
    assert.equals("multipart/form-data; boundary=simple-b", ctype)
    assert.equals('--simple-b\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--simple-b--\r\n', body)
    body, ctype = form.encode_multipart({ a = "1" }, "with space:colon")
    assert.equals('multipart/form-data; boundary="with space:colon"', ctype)
    assert.equals("with space:colon", form.boundary(ctype))
    assert.same({ a = "1" }, form.parse(body, ctype))
    arg_error("boundary occurs in the data", function() form.encode_multipart({ a = "x\r\n--bb--" }, "bb") end)
    arg_error("bad argument #2 to 'encode_multipart'", function() form.encode_multipart({}, ("x"):rep(71)) end)
    arg_error("bad argument #2 to 'encode_multipart'", function() form.encode_multipart({}, "bad\r\n") end)
    arg_error("bad argument #2 to 'encode_multipart'", function() form.encode_multipart({}, "ends with space ") end)
  end)

  it("a generated boundary never occurs in the data", function()
    for _ = 1, 20 do
      local body, ctype = form.encode_multipart({ a = "--luaio-", b = { filename = "f", data = ("--luaio-0"):rep(100) } })
      local b = form.boundary(ctype)
      assert.matches("^luaio%-%x+$", b)
      assert.same("--luaio-", form.parse(body, ctype).a)
    end
  end)

  it("bad fields raise an error naming the field", function()
    arg_error("'f'.*data", function() form.encode_multipart({ f = { filename = "x" } }) end)
    arg_error("'f'.*filename", function() form.encode_multipart({ f = { filename = 1, data = "" } }) end)
    arg_error("'f'.*content_type", function() form.encode_multipart({ f = { data = "", content_type = "a\r\nb" } }) end)
    arg_error("'g'", function() form.encode_multipart({ g = print }) end)
    arg_error("'h'", function() form.encode_multipart({ h = { x = 1 } }) end)
    arg_error("bad argument #1 to 'encode_multipart' %(table expected, got nil%)", function() form.encode_multipart() end)
  end)
end)

-- Real peers --------------------------------------------------------------

-- a raw HTTP/1.1 server that captures one request's head and body
local function capture_server()
  local q = aio.Queue()
  local server = aio.start_server(function(s)
    local head, len, expect = {}, 0, false
    local first = s:readline()
    while true do
      local l = s:readline()
      if not l or l == "" then break end
      local k, v = l:match("^([^:]+):%s*(.-)%s*$")
      head[k:lower()] = v
    end
    len = tonumber(head["content-length"]) or 0
    if (head.expect or ""):lower() == "100-continue" then s:write("HTTP/1.1 100 Continue\r\n\r\n") end
    local body = s:read_exactly(len)
    s:write("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    s:close()
    q:put({ line = first, headers = head, body = body })
  end, "127.0.0.1", 0)
  return server, q
end

-- runs curl with extra args against a capture server; returns the request
local function curl_capture(args)
  local server <close>, q = capture_server()
  local argv = { "curl", "-sS", "-o", "/dev/null" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv[#argv + 1] = "http://127.0.0.1:" .. server.port .. "/upload"
  local r = aio.exec(argv, { timeout = 30 })
  assert.equals(0, r.status, r.stderr)
  return aio.timeout(5, q.get, q)
end

describe("form against real peers", function()
  local tmp = {}
  teardown(function() for _, p in ipairs(tmp) do os.remove(p) end end)
  local function tmpfile(data) local p = S.tmpfile(data) tmp[#tmp + 1] = p return p end

  it("parses curl -F fields and files", function()
    local nasty = "\0\0\r\n--------------------------x\r\n\r\n--\r\nContent-Disposition: form-data; name=\"evil\"\r\n\r\n\255\254\0"
    local bin = tmpfile(nasty)
    local txt = tmpfile("hello text\n")
    local req = curl_capture({
      "-F", "plain=hello world",
      "-F", "multi=1", "-F", "multi=2",
      "-F", "upload=@" .. bin .. ";type=application/x-thing;filename=nasty.bin",
      "-F", "upload=@" .. txt .. ";filename=notes.txt",
      "-F", "fromfile=<" .. txt,
      "-F", 'quoted=@' .. txt .. ';filename="semi;colon and \\"quote\\".txt"',
      "-F", "utf8=@" .. txt .. ";filename=naïve.txt",
      "-F", "empty=",
    })
    assert.matches("^POST /upload HTTP/1.1", req.line)
    local ctype = req.headers["content-type"]
    assert.matches("^multipart/form%-data; boundary=", ctype)
    local t = form.parse(req.body, ctype)
    assert.equals("hello world", t.plain)
    assert.same({ "1", "2" }, t.multi)
    assert.same({ { filename = "nasty.bin", content_type = "application/x-thing", data = nasty },
                  { filename = "notes.txt", content_type = "text/plain", data = "hello text\n" } }, t.upload)
    assert.equals("hello text\n", t.fromfile)
    -- curl, like browsers (HTML's multipart/form-data encoding), sends '"' as %22: kept as sent
    assert.equals("semi;colon and %22quote%22.txt", t.quoted.filename)
    assert.equals("naïve.txt", t.utf8.filename)
    assert.equals("", t.empty)
    assert.is_nil(t.evil)
  end)

  it("parses a 5 MB file sent by curl", function()
    local parts = {}
    for i = 1, 5 * 1024 do parts[i] = string.char(i % 256):rep(1000) .. "\r\n--\0" end
    local data = table.concat(parts)
    local big = tmpfile(data)
    local req = curl_capture({ "-F", "big=@" .. big .. ";type=application/octet-stream", "-F", "after=tail" })
    local t = form.parse(req.body, req.headers["content-type"])
    assert.equals(#data, #t.big.data)
    assert.is_true(t.big.data == data)
    assert.equals("tail", t.after)
  end)

  it("curl --data-urlencode bodies parse as urlencoded", function()
    local req = curl_capture({ "--data-urlencode", "a=x y&z", "--data-urlencode", "b=é+%", "-d", "c=1&c=2" })
    assert.same({ a = "x y&z", b = "é+%", c = { "1", "2" } }, form.parse(req.body, req.headers["content-type"]))
  end)

  it("Python's email parser reads encode_multipart's body; urllib reads encode_urlencoded's", function()
    local body, ctype = form.encode_multipart({
      name = "Ada Lovelace", tags = { "x", "y" },
      doc = { filename = "report.bin", content_type = "application/pdf", data = "\0%PDF\r\n--x\r\n\255" },
    })
    local script = [[
import sys, json, email, email.policy
ctype = sys.argv[1]
raw = sys.stdin.buffer.read()
msg = email.message_from_bytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw, policy=email.policy.HTTP)
out = []
for part in msg.iter_parts():
    out.append({"name": part.get_param("name", header="content-disposition"),
                "filename": part.get_filename(),
                "type": part.get_content_type(),
                "data": list(part.get_payload(decode=True))})
print(json.dumps({"defects": len(msg.defects), "parts": out}))
]]
    local r = aio.exec({ "/usr/bin/python3", "-c", script, ctype }, { stdin = body, timeout = 30 })
    assert.equals(0, r.status, r.stderr)
    local res = aio.json.decode(r.stdout)
    assert.equals(0, res.defects)
    local function bytes(s) local t = {} for i = 1, #s do t[i] = s:byte(i) end return t end
    assert.equals(4, #res.parts)
    assert.same({ "doc", "report.bin", "application/pdf" }, { res.parts[1].name, res.parts[1].filename, res.parts[1].type })
    assert.same(bytes("\0%PDF\r\n--x\r\n\255"), res.parts[1].data)
    assert.same({ "name", bytes("Ada Lovelace") }, { res.parts[2].name, res.parts[2].data })
    assert.same({ "tags", "tags" }, { res.parts[3].name, res.parts[4].name })
    assert.same(bytes("y"), res.parts[4].data)

    local q = form.encode_urlencoded({ ["a b"] = "1+2 & 3", list = { "é", "~*" } })
    r = aio.exec({ "/usr/bin/python3", "-c", [[
import sys, json, urllib.parse
print(json.dumps(urllib.parse.parse_qsl(sys.argv[1], keep_blank_values=True, strict_parsing=True)))
q = urllib.parse.urlencode([("x y", "a&b"), ("z", "é+~"), ("z", "")])
print(q)
]], q })
    assert.equals(0, r.status, r.stderr)
    local line1, line2 = r.stdout:match("^(.-)\n(.-)\n$")
    assert.same({ { "a b", "1+2 & 3" }, { "list", "é" }, { "list", "~*" } }, aio.json.decode(line1))
    assert.same({ ["x y"] = "a&b", z = { "é+~", "" } }, form.parse(line2, "application/x-www-form-urlencoded"))
  end)
end)
