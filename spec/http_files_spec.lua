-- File responses (API.md §6b): aio.http.file and app:static, checked with
-- curl and raw sockets (for the paths curl would normalise away).
local aio = require "luaio"
local S = require "spec.support"
-- (ASan and valgrind allocators keep freed memory: RSS says nothing there)
local MEASURE_RSS = not os.getenv("LUAIO_SANITIZED") and not os.getenv("LUAIO_VALGRIND")
local files = require "luaio.http.files"

local file = aio.http.file or files.file

local function curl(args)
  local out, err, code = S.bg("curl -sS " .. args):wait(60)
  return out, err, code
end

-- the head of a response as status, headers (lowercased names), and the rest
local function parse(resp)
  local head, body = resp:match("^(.-)\r\n\r\n(.*)$")
  assert(head, "no head in: " .. resp:sub(1, 200))
  local status = tonumber(head:match("^HTTP/1%.1 (%d%d%d)"))
  local h = {}
  for name, v in head:gmatch("\r\n([^:\r\n]+): ([^\r\n]*)") do h[name:lower()] = v end
  return status, h, body
end

-- one raw request (Connection: close added); -> status, headers, body
local function raw(port, request, opts)
  local c <close> = aio.open_connection("127.0.0.1", port)
  c:write(request)
  local all = aio.timeout(20, c.read_all, c)
  if opts and opts.whole then return all end
  return parse(all)
end

local function get(port, target, extra, method)
  return raw(port, (method or "GET") .. " " .. target .. " HTTP/1.1\r\nHost: x\r\n" .. (extra or "")
    .. "Connection: close\r\n\r\n")
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function fd_count()
  return #aio.fs.listdir("/proc/self/fd")
end

-- wait (with the loop running) until fn() is true
local function eventually(fn, timeout)
  local deadline = aio.now() + (timeout or 5)
  while not fn() do
    if aio.now() > deadline then return false end
    aio.sleep(0.02)
  end
  return true
end

local function own_binary()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("a"):match("^(%d+)")
  f:close()
  return aio.exec({ "readlink", "/proc/" .. pid .. "/exe" }).stdout:gsub("%s+$", "")
end

local DATA = {}
for i = 0, 999 do DATA[#DATA + 1] = string.char(i % 256) end
DATA = table.concat(DATA)                            -- 1000 bytes, every byte value

describe("HTTP file responses", function()
  local root, www, server, base, port
  setup(function()
    root = os.tmpname()
    os.remove(root)
    www = root .. "/www"
    assert(os.execute(("mkdir -p %s/sub %s/emptydir %s/.git"):format(www, www, www)))
    write(www .. "/index.html", "<h1>home</h1>\n")
    write(www .. "/sub/index.html", "<h1>sub</h1>\n")
    write(www .. "/data.bin", DATA)
    write(www .. "/empty.txt", "")
    write(www .. "/with space.txt", "spaced\n")
    write(www .. "/.env", "SECRET=1\n")
    write(www .. "/.git/config", "[core]\n")
    write(root .. "/secret.txt", "TOP SECRET\n")     -- beside www: never served
    for _, ext in ipairs { "html", "css", "js", "mjs", "json", "txt", "svg", "png", "jpg", "jpeg", "gif",
                           "webp", "ico", "wasm", "pdf", "xml", "mp4", "webm", "woff", "woff2", "map",
                           "csv", "md", "JPG", "unknownext" } do
      write(www .. "/t." .. ext, "x")
    end
    write(www .. "/noext", "x")

    local app = aio.http.app()
    app:route("/file/:name", function(req) return file(www .. "/" .. req.params.name) end, { "GET", "POST" })
    app:route("/missing", function() return file(www .. "/nope.txt") end)
    app:route("/dirfile", function() return file(www .. "/sub") end)
    app:route("/download", function() return file(www .. "/data.bin", { download = true }) end)
    app:route("/download-as", function() return file(www .. "/data.bin", { download = "résumé \"v2\".bin" }) end)
    app:route("/inline", function() return file(www .. "/data.bin", { filename = "d.bin" }) end)
    app:route("/opts", function()
      return file(www .. "/data.bin", { content_type = "application/x-thing", max_age = 60,
        headers = { ["X-From-Opts"] = "1", ["content-length"] = "5" } })
    end)
    app:route("/custom404", function() return file(www .. "/index.html"), 404 end)
    app:route("/given304", function() return file(www .. "/data.bin"), 304, { ETag = '"mine"' } end)
    app:route("/handler-headers", function()
      return file(www .. "/data.bin"), nil, { ["Content-Type"] = "text/x-mine", ["X-Extra"] = "y" }
    end)
    app:route("/bad-header", function() return file(www .. "/data.bin"), 200, { ["X-Bad"] = "a\r\nb" } end)
    app:static("/static", www)
    app:static("/noindex/", www, { index = false })
    app:static("/dots", www, { dotfiles = true, max_age = 5, headers = { ["X-Static"] = "yes" } })
    app:static("/gone", root .. "/does-not-exist")
    server = app:listen("127.0.0.1", 0)
    port = server.port
    base = "http://127.0.0.1:" .. port
  end)
  teardown(function()
    server:close()
    os.execute("rm -rf " .. S.quote(root))
  end)

  describe("aio.http.file", function()
    it("sends the file with its length, type, ETag, Last-Modified and Accept-Ranges", function()
      local st, h, body = get(port, "/file/data.bin")
      assert.equals(200, st)
      assert.equals(DATA, body)
      assert.equals("1000", h["content-length"])
      assert.equals("application/octet-stream", h["content-type"])
      assert.equals("bytes", h["accept-ranges"])
      assert.matches('^"3e8%-%x+"$', h["etag"])
      assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", h["last-modified"])
      local out, err, code = curl("-o - " .. base .. "/file/data.bin")
      assert.equals(0, code, err)
      assert.equals(DATA, out)
    end)

    it("Content-Type from the extension", function()
      local want = { html = "text/html; charset=utf-8", css = "text/css; charset=utf-8",
        js = "text/javascript; charset=utf-8", mjs = "text/javascript; charset=utf-8",
        json = "application/json", txt = "text/plain; charset=utf-8", svg = "image/svg+xml",
        png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", JPG = "image/jpeg", gif = "image/gif",
        webp = "image/webp", ico = "image/x-icon", wasm = "application/wasm", pdf = "application/pdf",
        xml = "application/xml", mp4 = "video/mp4", webm = "video/webm", woff = "font/woff",
        woff2 = "font/woff2", map = "application/json", csv = "text/csv; charset=utf-8",
        md = "text/markdown; charset=utf-8", unknownext = "application/octet-stream" }
      for ext, ctype in pairs(want) do
        local st, h = get(port, "/file/t." .. ext)
        assert.equals(200, st)
        assert.equals(ctype, h["content-type"], ext)
      end
      local _, h = get(port, "/file/noext")
      assert.equals("application/octet-stream", h["content-type"])
    end)

    it("HEAD: the whole length, no body; a Range is ignored", function()
      local out = raw(port, "HEAD /file/data.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n",
        { whole = true })
      local st, h, body = parse(out)
      assert.equals(200, st)
      assert.equals("1000", h["content-length"])
      assert.equals("", body)
      out = curl("-I " .. base .. "/file/data.bin")
      assert.matches("^HTTP/1.1 200", out)
      assert.matches("Content%-Length: 1000\r\n", out)
      assert.matches("ETag: ", out)
    end)

    it("an empty file", function()
      local st, h, body = get(port, "/file/empty.txt")
      assert.equals(200, st)
      assert.equals("0", h["content-length"])
      assert.equals("", body)
      st = get(port, "/file/empty.txt", "Range: bytes=0-\r\n")
      assert.equals(200, st)                          -- a Range on an empty file is ignored
    end)

    it("304 for a matching If-None-Match (list, weak, *), with the ETag and no body", function()
      local _, h = get(port, "/file/data.bin")
      local etag, lm = h["etag"], h["last-modified"]
      for _, inm in ipairs { etag, '"other", ' .. etag, "W/" .. etag, "*", '"x",W/' .. etag .. ' , "y"' } do
        local out = raw(port, "GET /file/data.bin HTTP/1.1\r\nHost: x\r\nIf-None-Match: " .. inm
          .. "\r\nConnection: close\r\n\r\n", { whole = true })
        local st, h2, body = parse(out)
        assert.equals(304, st, inm)
        assert.equals(etag, h2["etag"])
        assert.equals(lm, h2["last-modified"])
        assert.is_nil(h2["content-length"])
        assert.is_nil(h2["content-type"])
        assert.equals("", body)
      end
      assert.equals(200, (get(port, "/file/data.bin", 'If-None-Match: "nope"\r\n')))
      local out = curl("-s -D - -o /dev/null -H 'If-None-Match: " .. etag .. "' " .. base .. "/file/data.bin")
      assert.matches("^HTTP/1.1 304", out)
      -- HEAD too
      assert.equals(304, (get(port, "/file/data.bin", "If-None-Match: " .. etag .. "\r\n", "HEAD")))
    end)

    it("If-Modified-Since: 304 when not newer; If-None-Match wins over it", function()
      local _, h = get(port, "/file/data.bin")
      local lm = h["last-modified"]
      assert.equals(304, (get(port, "/file/data.bin", "If-Modified-Since: " .. lm .. "\r\n")))
      assert.equals(200, (get(port, "/file/data.bin", "If-Modified-Since: Thu, 01 Jan 1998 00:00:00 GMT\r\n")))
      assert.equals(200, (get(port, "/file/data.bin", "If-Modified-Since: garbage\r\n")))
      -- RFC 850 and asctime forms
      assert.equals(200, (get(port, "/file/data.bin", "If-Modified-Since: Friday, 31-Dec-99 23:59:59 GMT\r\n")))
      assert.equals(304, (get(port, "/file/data.bin", "If-Modified-Since: Sunday, 01-Jan-68 00:00:00 GMT\r\n")))
      assert.equals(304, (get(port, "/file/data.bin", "If-Modified-Since: Sun Jan  1 00:00:00 2090\r\n")))
      -- a non-matching If-None-Match: If-Modified-Since is not looked at
      assert.equals(200, (get(port, "/file/data.bin", 'If-None-Match: "x"\r\nIf-Modified-Since: ' .. lm .. "\r\n")))
      -- curl -z sends If-Modified-Since
      local out = curl("-D - -o /dev/null -z 'Tue, 01 Jan 2070 00:00:00 GMT' " .. base .. "/file/data.bin")
      assert.matches("^HTTP/1.1 304", out)
      out = curl("-D - -o /dev/null -z 'Thu, 01 Jan 1998 00:00:00 GMT' " .. base .. "/file/data.bin")
      assert.matches("^HTTP/1.1 200", out)
    end)

    it("parses HTTP dates", function()
      assert.equals(784111777, files.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"))
      assert.equals(784111777, files.parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"))
      assert.equals(784111777, files.parse_http_date("Sun Nov  6 08:49:37 1994"))
      assert.equals(951782400, files.parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT"))
      assert.is_nil(files.parse_http_date("06 Nov 1994"))
      assert.is_nil(files.parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"))
      assert.equals("Sun, 06 Nov 1994 08:49:37 GMT", files.http_date(784111777))
    end)

    it("single ranges: 206 with Content-Range, at the boundaries", function()
      local cases = {
        { "bytes=0-99", 0, 99 }, { "bytes=999-999", 999, 999 }, { "bytes=990-", 990, 999 },
        { "bytes=-1", 999, 999 }, { "bytes=-2000", 0, 999 }, { "bytes=500-5000", 500, 999 },
        { "bytes=0-0", 0, 0 }, { "Bytes = 10 - 19", 10, 19 }, { "bytes=0-999", 0, 999 },
        { "bytes=0000000000000000000000000000005-9", 5, 9 },
      }
      for _, c in ipairs(cases) do
        local st, h, body = get(port, "/file/data.bin", "Range: " .. c[1] .. "\r\n")
        assert.equals(206, st, c[1])
        assert.equals(("bytes %d-%d/1000"):format(c[2], c[3]), h["content-range"], c[1])
        assert.equals(tostring(c[3] - c[2] + 1), h["content-length"])
        assert.equals(DATA:sub(c[2] + 1, c[3] + 1), body, c[1])
      end
      local out, err, code = curl("-r 0-99 -D - " .. base .. "/file/data.bin")
      assert.equals(0, code, err)
      local st, h, body = parse(out)
      assert.equals(206, st)
      assert.equals("bytes 0-99/1000", h["content-range"])
      assert.equals(DATA:sub(1, 100), body)
    end)

    it("416 with bytes */size past the end; bad or multiple ranges are ignored", function()
      for _, r in ipairs { "bytes=1000-", "bytes=1000-1000", "bytes=-0", "bytes=99999999999999999999999-" } do
        local st, h = get(port, "/file/data.bin", "Range: " .. r .. "\r\n")
        assert.equals(416, st, r)
        assert.equals("bytes */1000", h["content-range"])
      end
      for _, r in ipairs { "bytes=0-1,5-6", "bytes=5-2", "items=0-1", "bytes=", "bytes=-", "bytes=a-b", "bytes=0-1, -1" } do
        local st, h, body = get(port, "/file/data.bin", "Range: " .. r .. "\r\n")
        assert.equals(200, st, r)
        assert.equals(DATA, body)
        assert.is_nil(h["content-range"])
      end
      local out = curl("-D - -o /dev/null -r 5000-6000 " .. base .. "/file/data.bin")
      assert.matches("^HTTP/1.1 416", out)
    end)

    it("If-Range: a matching ETag or date gives the range, a stale one the whole file", function()
      local _, h = get(port, "/file/data.bin")
      local etag, lm = h["etag"], h["last-modified"]
      assert.equals(206, (get(port, "/file/data.bin", "Range: bytes=0-9\r\nIf-Range: " .. etag .. "\r\n")))
      assert.equals(206, (get(port, "/file/data.bin", "Range: bytes=0-9\r\nIf-Range: " .. lm .. "\r\n")))
      assert.equals(200, (get(port, "/file/data.bin", 'Range: bytes=0-9\r\nIf-Range: "old"\r\n')))
      assert.equals(200, (get(port, "/file/data.bin", "Range: bytes=0-9\r\nIf-Range: W/" .. etag .. "\r\n")))
      assert.equals(200, (get(port, "/file/data.bin",
        "Range: bytes=0-9\r\nIf-Range: Thu, 01 Jan 1998 00:00:00 GMT\r\n")))
    end)

    it("other methods get the whole file with 200: no ranges, no 304", function()
      local _, h = get(port, "/file/data.bin")
      local st, _, body = raw(port, "POST /file/data.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nRange: bytes=0-9\r\n"
        .. "If-None-Match: " .. h["etag"] .. "\r\nConnection: close\r\n\r\n")
      assert.equals(200, st)
      assert.equals(DATA, body)
    end)

    it("keep-alive: file responses and others on one connection", function()
      local out = raw(port, "GET /file/data.bin HTTP/1.1\r\nHost: x\r\n\r\n"
        .. "GET /file/data.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=1-2\r\n\r\n"
        .. "HEAD /file/data.bin HTTP/1.1\r\nHost: x\r\n\r\n"
        .. "GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"
        .. "GET /file/t.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", { whole = true })
      local st, _, rest = parse(out)
      assert.equals(200, st)
      assert.equals(DATA, rest:sub(1, 1000))
      st, _, rest = parse(rest:sub(1001))
      assert.equals(206, st)
      assert.equals(DATA:sub(2, 3), rest:sub(1, 2))
      st, _, rest = parse(rest:sub(3))
      assert.equals(200, st)
      st, _, rest = parse(rest)
      assert.equals(404, st)
      assert.equals("404 Not Found\n", rest:sub(1, 14))
      st, _, rest = parse(rest:sub(15))
      assert.equals(200, st)
      assert.equals("x", rest)
    end)

    it("404 for a missing file or a directory", function()
      local st, h, body = get(port, "/missing")
      assert.equals(404, st)
      assert.equals("text/plain; charset=utf-8", h["content-type"])
      assert.equals("404 Not Found\n", body)
      assert.equals(404, (get(port, "/dirfile")))
      assert.equals(404, (get(port, "/missing", nil, "HEAD")))
    end)

    it("download, filename, content_type, max_age and extra headers", function()
      local _, h = get(port, "/download")
      assert.equals('attachment; filename="data.bin"', h["content-disposition"])
      _, h = get(port, "/download-as")
      assert.equals([[attachment; filename="r__sum__ _v2_.bin"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22.bin]],
        h["content-disposition"])
      _, h = get(port, "/inline")
      assert.equals('inline; filename="d.bin"', h["content-disposition"])
      local st, body
      st, h, body = get(port, "/opts")
      assert.equals(200, st)
      assert.equals("application/x-thing", h["content-type"])
      assert.equals("max-age=60", h["cache-control"])
      assert.equals("1", h["x-from-opts"])
      assert.equals("1000", h["content-length"])      -- the framing is the file's
      assert.equals(DATA, body)
      -- a 304 keeps Cache-Control
      st, h = get(port, "/opts", "If-None-Match: *\r\n")
      assert.equals(304, st)
      assert.equals("max-age=60", h["cache-control"])
    end)

    it("the handler's status and headers", function()
      local st, h, body = get(port, "/custom404")
      assert.equals(404, st)
      assert.equals("<h1>home</h1>\n", body)
      assert.equals("text/html; charset=utf-8", h["content-type"])
      assert.is_nil(h["etag"])
      assert.equals(404, (get(port, "/custom404", "If-None-Match: *\r\nRange: bytes=0-1\r\n")))
      local out = raw(port, "GET /given304 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", { whole = true })
      st, h, body = parse(out)
      assert.equals(304, st)
      assert.equals('"mine"', h["etag"])
      assert.equals("", body)
      st, h = get(port, "/handler-headers")
      assert.equals(200, st)
      assert.equals("text/x-mine", h["content-type"])
      assert.equals("y", h["x-extra"])
      assert.equals(500, (get(port, "/bad-header")))
      assert.equals(200, (get(port, "/file/data.bin")))
    end)

    it("checks its arguments", function()
      local function err_of(...)
        local ok, e = pcall(file, ...)
        assert.is_false(ok)
        return tostring(e)
      end
      assert.matches("bad argument #1 to 'aio.http.file' %(string expected, got nil%)", err_of())
      assert.matches("bad argument #1 to 'aio.http.file' %(string expected, got number%)", err_of(5))
      assert.matches("bad argument #1 to 'aio.http.file' %(path expected", err_of(""))
      assert.matches("bad argument #1 to 'aio.http.file' %(path without NUL", err_of("a\0b"))
      assert.matches("bad argument #2 to 'aio.http.file' %(table expected, got string%)", err_of("a", "b"))
      assert.matches("opts.max_age: integer >= 0 expected, got %-1", err_of("a", { max_age = -1 }))
      assert.matches("opts.max_age: integer >= 0 expected, got 1.5", err_of("a", { max_age = 1.5 }))
      assert.matches("opts.content_type: string expected, got number", err_of("a", { content_type = 5 }))
      assert.matches("opts.content_type: a string without control", err_of("a", { content_type = "a\r\nb" }))
      assert.matches("opts.download: boolean or string expected, got number", err_of("a", { download = 1 }))
      assert.matches("opts.filename: string expected", err_of("a", { filename = {} }))
      assert.matches("opts.headers: table expected, got string", err_of("a", { headers = "x" }))
      assert.matches("opts.headers: header X holds a line break", err_of("a", { headers = { X = "a\nb" } }))
      -- positioned at the caller's line
      local ok, e = pcall(function() local f = file(nil) return f end)
      assert.is_false(ok)
      assert.matches("http_files_spec.lua:%d+: bad argument", e)
      assert.is_true(files.is_file(file("a")))
      assert.is_false(files.is_file({}))
      assert.is_false(files.is_file("a"))
    end)
  end)

  describe("app:static", function()
    it("serves files, index.html, and redirects a directory to its slash form", function()
      local st, h, body = get(port, "/static/data.bin")
      assert.equals(200, st)
      assert.equals(DATA, body)
      st, h, body = get(port, "/static/")
      assert.equals(200, st)
      assert.equals("<h1>home</h1>\n", body)
      assert.equals("text/html; charset=utf-8", h["content-type"])
      st, h = get(port, "/static")
      assert.equals(301, st)
      assert.equals("/static/", h["location"])
      st, h = get(port, "/static/sub?a=1&b=2")
      assert.equals(301, st)
      assert.equals("/static/sub/?a=1&b=2", h["location"])
      assert.equals("<h1>sub</h1>\n", select(3, get(port, "/static/sub/")))
      assert.equals("spaced\n", select(3, get(port, "/static/with%20space.txt")))
      local out, err, code = curl("-L " .. base .. "/static/sub")
      assert.equals(0, code, err)
      assert.equals("<h1>sub</h1>\n", out)
      -- ranges, 304, HEAD work as for aio.http.file
      assert.equals(206, (get(port, "/static/data.bin", "Range: bytes=0-1\r\n")))
      assert.equals(304, (get(port, "/static/data.bin", "If-None-Match: *\r\n")))
      st, h, body = get(port, "/static/", nil, "HEAD")
      assert.equals(200, st)
      assert.equals("14", h["content-length"])
      assert.equals("", body)
    end)

    it("no listing: a directory without index is 404, a file with a slash too", function()
      assert.equals(404, (get(port, "/static/emptydir/")))
      assert.equals(404, (get(port, "/noindex/")))
      assert.equals(404, (get(port, "/noindex/sub/")))
      assert.equals(200, (get(port, "/noindex/sub/index.html")))
      assert.equals(404, (get(port, "/static/data.bin/")))
      assert.equals(404, (get(port, "/static/nope.html")))
      assert.equals(404, (get(port, "/static/data.bin/x")))
      assert.equals(404, (get(port, "/gone/")))
      assert.equals(404, (get(port, "/gone/x")))
    end)

    it("dotfiles are 404 unless opts.dotfiles; static opts headers and max_age", function()
      assert.equals(404, (get(port, "/static/.env")))
      assert.equals(404, (get(port, "/static/.git/config")))
      assert.equals(404, (get(port, "/static/%2eenv")))
      local st, h, body = get(port, "/dots/.env")
      assert.equals(200, st)
      assert.equals("SECRET=1\n", body)
      assert.equals("yes", h["x-static"])
      assert.equals("max-age=5", h["cache-control"])
    end)

    it("only GET and HEAD", function()
      local st, h = raw(port, "POST /static/data.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
      assert.equals(405, st)
      assert.equals("GET, HEAD", h["allow"])
    end)

    it("refuses paths that escape the directory, and never shows what is outside", function()
      local attempts = {
        "/static/../secret.txt", "/static/../../../../etc/passwd", "/static/sub/../../secret.txt",
        "/static/%2e%2e/secret.txt", "/static/%2E%2E/%2e%2E/etc/passwd", "/static/..%2fsecret.txt",
        "/static/sub%2f..%2f..%2fsecret.txt", "/static/%2e%2e%2fsecret.txt", "/static/..%5csecret.txt",
        "/static/..\\secret.txt", "/static/sub\\..\\..\\secret.txt", "/static/data.bin%00.html",
        "/static/%00", "/static/./../secret.txt", "/static//../secret.txt", "/static/%252e%252e/secret.txt",
      }
      for _, target in ipairs(attempts) do
        local st, _, body = get(port, target)
        assert.is_true(st == 403 or st == 404 or st == 400, target .. " -> " .. tostring(st))
        assert.not_matches("SECRET", body, nil, true)
        assert.not_matches("root:", body, nil, true)
      end
      assert.equals(403, (get(port, "/static/../secret.txt")))
      assert.equals(403, (get(port, "/static/%2e%2e/secret.txt")))
      assert.equals(403, (get(port, "/static/..%2fsecret.txt")))
      assert.equals(403, (get(port, "/static/..%5csecret.txt")))
      assert.equals(403, (get(port, "/static/data.bin%00.html")))
      -- a ".." that stays inside is resolved
      local st, _, body = get(port, "/static/sub/../data.bin")
      assert.equals(200, st)
      assert.equals(DATA, body)
      assert.equals(200, (get(port, "/static/./sub/./index.html")))
      -- curl normalises dot segments itself; --path-as-is sends them
      local out = curl("--path-as-is -o /dev/null -w '%{http_code}' " .. base .. "/static/../secret.txt")
      assert.equals("403", out)
    end)

    it("a redirect never leaves the site", function()
      local st, h = get(port, "/static//sub")
      assert.equals(301, st)
      assert.equals("/static/sub/", h["location"])
      st, h = get(port, "/static/sub/..//sub")
      assert.equals(301, st)
      assert.equals("/static/sub/", h["location"])
    end)

    it("at the root prefix", function()
      local app = aio.http.app()
      app:static("/", www)
      local s <close> = app:listen("127.0.0.1", 0)
      assert.equals("<h1>home</h1>\n", select(3, get(s.port, "/")))
      assert.equals(DATA, select(3, get(s.port, "/data.bin")))
      local st, h = get(s.port, "//sub")
      assert.equals(301, st)
      assert.equals("/sub/", h["location"])         -- not "//sub/", another host
      assert.equals(403, (get(s.port, "/../secret.txt")))
      assert.equals(403, (get(s.port, "/%2e%2e/secret.txt")))
    end)

    it("checks its arguments", function()
      local app = aio.http.app()
      local function err_of(...)
        local args = table.pack(...)
        local ok, e = pcall(function() app:static(table.unpack(args, 1, args.n)) end)
        assert.is_false(ok)
        return tostring(e)
      end
      assert.matches("bad argument #3 to '[%w.:]*static' %(table expected, got string%)", err_of("/s", www, "x"))
      assert.matches("opts.index: string or false expected, got boolean", err_of("/s", www, { index = true }))
      assert.matches("opts.index: string or false expected, got number", err_of("/s", www, { index = 5 }))
      assert.matches("opts.index: a file name expected", err_of("/s", www, { index = "a/b" }))
      assert.matches("opts.index: a file name expected", err_of("/s", www, { index = ".." }))
      assert.matches("opts.max_age: integer >= 0 expected", err_of("/s", www, { max_age = -1 }))
      assert.matches("opts.headers: table expected", err_of("/s", www, { headers = 5 }))
      assert.matches("opts.headers: header X holds a line break", err_of("/s", www, { headers = { X = "\r" } }))
      assert.matches("opts.dotfiles: boolean expected, got string", err_of("/s", www, { dotfiles = "yes" }))
      assert.matches("bad argument #2 to '[%w.:]*static' %(directory path expected", err_of("/s", ""))
      local ok, e = pcall(function() app:static("/s", www, { index = 5 }) end)
      assert.is_false(ok)
      assert.matches("http_files_spec.lua:%d+: bad argument #3", e)
      assert.equals(app, app:static("/fine", www, { index = "home.htm", max_age = 0, dotfiles = false }))
    end)
  end)

  describe("unreadable files", function()
    it("403 for a file the server may not read", function()
      write(www .. "/locked.txt", "locked\n")
      assert(os.execute("chmod 000 " .. S.quote(www .. "/locked.txt")))
      assert(os.execute("mkdir -p " .. S.quote(www .. "/closed") .. " && echo in > " .. S.quote(www .. "/closed/f.txt")
        .. " && chmod 700 " .. S.quote(www .. "/closed")))
      local uid = aio.exec({ "id", "-u" }).stdout:match("%d+")
      if uid ~= "0" then
        assert.equals(403, (get(port, "/static/locked.txt")))
        assert.equals(403, (get(port, "/file/locked.txt")))
        assert.equals(403, (get(port, "/file/locked.txt", nil, "HEAD")))
        assert.equals(403, (get(port, "/static/closed/f.txt")))
        return
      end
      -- root reads anything: run a server as nobody (setpriv) for this
      if not os.execute("command -v setpriv >/dev/null 2>&1") then
        pending("running as root without setpriv: cannot make a file unreadable")
        return
      end
      assert(os.execute("chmod 755 " .. S.quote(root) .. " " .. S.quote(www)))
      local script = S.tmpfile(([[
        local aio = require "luaio"
        local app = aio.http.app()
        app:static("/static", %q)
        app:route("/file", function() return aio.http.file(%q) end)
        local server = app:listen("127.0.0.1", 0)
        local function status(method, target)
          local c <close> = aio.open_connection("127.0.0.1", server.port)
          c:write(method .. " " .. target .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
          return c:read_all():match("^HTTP/1.1 (%%d+)")
        end
        print(status("GET", "/static/locked.txt"), status("GET", "/file"), status("HEAD", "/file"),
          status("GET", "/static/closed/f.txt"), status("GET", "/static/data.bin"))
        server:close()
      ]]):format(www, www .. "/locked.txt"), ".lua")
      assert(os.execute("chmod 644 " .. S.quote(script)))
      local r = aio.exec({ "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", own_binary(), script },
        { timeout = 20 })
      os.remove(script)
      assert.equals(0, r.status, r.stderr)
      assert.equals("403\t403\t403\t403\t200\n", r.stdout)
    end)
  end)

  describe("big files", function()
    local big
    setup(function()
      big = root .. "/big.bin"
      assert(os.execute("truncate -s 200M " .. S.quote(big)))
    end)

    it("a 200 MB file streams with a small RSS", function()
      local app = aio.http.app()
      app:route("/big", function() return file(big) end)
      local s <close> = app:listen("127.0.0.1", 0)
      collectgarbage()
      local before = S.rss_kib()
      local peak = before
      local sampler = aio.spawn(function()
        while true do
          local r = S.rss_kib()
          if r > peak then peak = r end
          aio.sleep(0.005)
        end
      end)
      local out, err, code = S.bg("curl -sS -o /dev/null -w '%{http_code} %{size_download}' http://127.0.0.1:"
        .. s.port .. "/big"):wait(120)
      sampler:cancel()
      assert.equals(0, code, err)
      assert.equals("200 209715200", out)
      -- (the growth: inside the whole suite this process already holds what earlier specs left)
      if MEASURE_RSS then
        assert.is_true(peak - before < 32 * 1024, ("RSS grew by %d KiB"):format(peak - before))
      end
      -- a range deep in the file
      local st, h, body = get(s.port, "/big", "Range: bytes=209715190-\r\n")
      assert.equals(206, st)
      assert.equals("bytes 209715190-209715199/209715200", h["content-range"])
      assert.equals(("\0"):rep(10), body)
    end)

    it("a client that goes away mid-download: the task ends, the file is closed", function()
      local app = aio.http.app()
      local done = 0
      app:route("/big", function() return file(big) end)
      local s <close> = app:listen("127.0.0.1", 0)
      local before = fd_count()
      for _ = 1, 3 do
        local c = aio.open_connection("127.0.0.1", s.port)
        c:write("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        c:read_until("\r\n\r\n")
        c:read_exactly(1024 * 1024)
        c:close()
        done = done + 1
      end
      assert.equals(3, done)
      assert.is_true(eventually(function() return fd_count() <= before end), "fds: " .. fd_count() .. " > " .. before)
      -- and with curl stopping early (max-filesize is not enough: --max-time)
      local _, _, code = S.bg("curl -sS -o /dev/null --limit-rate 1M --max-time 0.5 http://127.0.0.1:" .. s.port .. "/big"):wait(30)
      assert.equals(28, code)                            -- curl's timeout
      assert.is_true(eventually(function() return fd_count() <= before end), "fds: " .. fd_count() .. " > " .. before)
    end)

    it("a download cancelled by the server (close_connections) closes the file", function()
      local app = aio.http.app()
      app:route("/big", function() return file(big) end)
      local s = app:listen("127.0.0.1", 0)
      local before = fd_count()
      local c <close> = aio.open_connection("127.0.0.1", s.port)
      c:write("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
      c:read_until("\r\n\r\n")
      c:read_exactly(1024)
      aio.sleep(0.1)                                     -- the server waits under backpressure now
      assert.is_true(fd_count() > before)
      s:close()
      s:close_connections()
      assert.is_true(eventually(function() return fd_count() <= before end), "fds: " .. fd_count() .. " > " .. before)
    end)

    it("a file that shrinks while being sent ends the connection", function()
      local path = root .. "/shrinking.bin"
      assert(os.execute("truncate -s 64M " .. S.quote(path)))
      local app = aio.http.app()
      app:route("/f", function() return file(path) end)
      local s <close> = app:listen("127.0.0.1", 0)
      local c <close> = aio.open_connection("127.0.0.1", s.port)
      c:write("GET /f HTTP/1.1\r\nHost: x\r\n\r\n")
      local head = c:read_until("\r\n\r\n")
      assert.matches("Content%-Length: 67108864", head)
      c:read_exactly(1024)
      aio.sleep(0.1)
      assert(os.execute("truncate -s 1M " .. S.quote(path)))
      local rest = aio.timeout(20, c.read_all, c)        -- returns: the server closed the connection
      assert.is_true(#rest + 1024 < 64 * 1024 * 1024)
    end)
  end)

  it("leaves no file descriptors behind", function()
    local before = fd_count()
    for _ = 1, 5 do
      get(port, "/file/data.bin")
      get(port, "/file/data.bin", "Range: bytes=0-1\r\n")
      get(port, "/static/")
      get(port, "/missing")
      get(port, "/file/data.bin", nil, "HEAD")
    end
    assert.is_true(eventually(function() return fd_count() <= before end))
  end)
end)
