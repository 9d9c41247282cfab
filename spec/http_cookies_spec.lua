-- HTTP cookies (luaio.http.cookies; API.md §6b req.cookies and the client's
-- jar): the Cookie header, Set-Cookie and its dates (RFC 6265 §5.1.1, §5.2),
-- the jar's storage and retrieval rules (§5.3, §5.4, RFC 6265bis), and
-- Set-Cookie lines from Python's http.cookies.
local aio = require "luaio"
local cookies = require "luaio.http.cookies"

local NOW = 1700000000          -- a fixed clock: 2023-11-14 22:13:20 UTC

local function arg_error(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  assert.is_string(err)
  assert.matches(pattern, err)
end

local function url(s) return require("luaio.http.common").parse_url(s) end

describe("cookies.parse_cookie_header", function()
  it("splits name=value pairs, trims, strips quotes", function()
    assert.same({ a = "1", b = "two", c = "", d = "x=y", e = "quoted value", f = '"' },
      cookies.parse_cookie_header('a=1; b=two;c=;  d=x=y ; e="quoted value"; f="'))
    assert.same({}, cookies.parse_cookie_header(""))
    assert.same({}, cookies.parse_cookie_header(nil))
  end)

  it("skips malformed pieces; the first occurrence of a name wins", function()
    assert.same({ a = "1", b = "2" }, cookies.parse_cookie_header("novalue; =x; ;; a=1; b=2; a=3"))
    assert.same({ sid = "specific" }, cookies.parse_cookie_header("sid=specific; sid=general"))
  end)

  it("argument errors", function()
    arg_error("bad argument #1 to 'parse_cookie_header' %(string expected, got table%)",
      function() cookies.parse_cookie_header({}) end)
  end)
end)

describe("cookie dates (RFC 6265 §5.1.1)", function()
  local T = 1445412480   -- 2015-10-21 07:28:00 UTC
  it("accepts the formats browsers do", function()
    for _, s in ipairs({
      "Wed, 21 Oct 2015 07:28:00 GMT",          -- RFC 1123
      "Wednesday, 21-Oct-15 07:28:00 GMT",      -- RFC 850
      "Wed Oct 21 07:28:00 2015",               -- asctime
      "Wed, 21-Oct-2015 07:28:00 GMT",          -- Netscape
      "21 Oct 2015 07:28:00",                   -- no weekday, no zone
      "Wed, 21 OCT 2015 7:28:0 GMT",            -- case, one-digit time fields
      "2015 October 21 07:28:00 UTC",           -- tokens in another order
      "Wed,21/Oct/2015 07:28:00+0000",         -- other delimiters
    }) do
      assert.equals(T, cookies.parse_date(s), s)
    end
    assert.equals(0, cookies.parse_date("Thu, 01 Jan 1970 00:00:00 GMT"))
    assert.equals(-1, cookies.parse_date("Wed, 31 Dec 1969 23:59:59 GMT"))
    assert.equals(253402300799, cookies.parse_date("Fri, 31 Dec 9999 23:59:59 GMT"))
  end)

  it("two-digit years: 70-99 are 19xx, 00-69 are 20xx", function()
    assert.equals(0, cookies.parse_date("01-Jan-70 00:00:00 GMT"))
    assert.equals(946684800, cookies.parse_date("Sat, 01-Jan-00 00:00:00 GMT"))
    assert.equals(3124224000, cookies.parse_date("01 Jan 69 00:00:00"))
    -- a time glued to the year with ':' (a non-delimiter) is one token, the year's
    assert.is_nil(cookies.parse_date("Wed,21/Oct/2015:07:28:00+0000"))
  end)

  it("leap days and month lengths", function()
    assert.equals(1456704000, cookies.parse_date("29 Feb 2016 00:00:00"))
    assert.equals(951782400, cookies.parse_date("29 Feb 2000 00:00:00"))
    assert.is_nil(cookies.parse_date("29 Feb 2015 00:00:00"))
    assert.is_nil(cookies.parse_date("29 Feb 1900 00:00:00"))
    assert.is_nil(cookies.parse_date("30 Feb 2016 00:00:00"))
    assert.is_nil(cookies.parse_date("31 Apr 2016 00:00:00"))
  end)

  it("refuses what is missing or out of range", function()
    for _, s in ipairs({
      "", "garbage", "Wed, 21 Oct 2015 GMT", "Wed, Oct 2015 07:28:00 GMT", "21 2015 07:28:00",
      "21 Oct 07:28:00", "Wed, 32 Oct 2015 07:28:00 GMT", "Wed, 00 Oct 2015 07:28:00 GMT",
      "Wed, 21 Oct 2015 24:00:00 GMT", "Wed, 21 Oct 2015 07:60:00 GMT", "Wed, 21 Oct 2015 07:28:60 GMT",
      "Wed, 21 Oct 1600 07:28:00 GMT", "Wed, 21 Oct 20155 07:28:00 GMT", "Wed, 21 Foo 2015 07:28:00 GMT",
      "Wed, 210 Oct 2015 07:28:00 GMT",
    }) do
      assert.is_nil(cookies.parse_date(s), s)
    end
  end)
end)

describe("cookies.parse_set_cookie", function()
  it("name, value and flags", function()
    assert.same({ name = "sid", value = "abc", secure = false, http_only = false },
      cookies.parse_set_cookie("sid=abc", NOW))
    assert.same({ name = "a", value = "b c", secure = true, http_only = true, same_site = "Lax",
                  domain = "example.com", path = "/p", expires = NOW + 60 },
      cookies.parse_set_cookie(" a = b c ; secure; HTTPONLY ;SameSite=lax; Domain=.Example.COM; path=/p; max-age=60", NOW))
    -- a quoted value is kept as sent (RFC 6265 §5.2): it goes back the same way
    assert.equals('"q v"', cookies.parse_set_cookie('q="q v"', NOW).value)
    assert.equals("", cookies.parse_set_cookie("empty=", NOW).value)
    assert.equals("x=y", cookies.parse_set_cookie("eq=x=y", NOW).value)
    assert.equals("Strict", cookies.parse_set_cookie("a=1; SameSite=STRICT", NOW).same_site)
    assert.equals("None", cookies.parse_set_cookie("a=1; SameSite=None", NOW).same_site)
    assert.is_nil(cookies.parse_set_cookie("a=1; SameSite=bogus", NOW).same_site)
  end)

  it("malformed lines are nil", function()
    assert.is_nil(cookies.parse_set_cookie("novalue", NOW))
    assert.is_nil(cookies.parse_set_cookie("novalue; Path=/", NOW))
    assert.is_nil(cookies.parse_set_cookie("=value", NOW))
    assert.is_nil(cookies.parse_set_cookie("  =value", NOW))
    assert.is_nil(cookies.parse_set_cookie("", NOW))
    assert.is_nil(cookies.parse_set_cookie("a=b\0c", NOW))
    assert.is_nil(cookies.parse_set_cookie("a=b\rc", NOW))
    assert.is_nil(cookies.parse_set_cookie("a=1; Path=/\n", NOW))
    assert.is_nil(cookies.parse_set_cookie("a=" .. ("x"):rep(4096), NOW))   -- name + value > 4096
    assert.is_not_nil(cookies.parse_set_cookie("a=" .. ("x"):rep(4095), NOW))
    assert.is_not_nil(cookies.parse_set_cookie("a=b\tc", NOW))              -- HTAB is allowed
  end)

  it("Max-Age wins over Expires, in either order; <= 0 means expired", function()
    local exp = "Expires=Wed, 21 Oct 2015 07:28:00 GMT"
    assert.equals(NOW + 100, cookies.parse_set_cookie("a=1; " .. exp .. "; Max-Age=100", NOW).expires)
    assert.equals(NOW + 100, cookies.parse_set_cookie("a=1; Max-Age=100; " .. exp, NOW).expires)
    assert.equals(1445412480, cookies.parse_set_cookie("a=1; " .. exp, NOW).expires)
    assert.equals(0, cookies.parse_set_cookie("a=1; Max-Age=0", NOW).expires)
    assert.equals(0, cookies.parse_set_cookie("a=1; Max-Age=-5", NOW).expires)
    -- invalid Max-Age and Expires values are ignored
    assert.is_nil(cookies.parse_set_cookie("a=1; Max-Age=1.5", NOW).expires)
    assert.is_nil(cookies.parse_set_cookie("a=1; Max-Age=+5", NOW).expires)
    assert.is_nil(cookies.parse_set_cookie("a=1; Max-Age=", NOW).expires)
    assert.is_nil(cookies.parse_set_cookie("a=1; Expires=soon", NOW).expires)
    assert.equals(NOW + 5, cookies.parse_set_cookie("a=1; Max-Age=5; Max-Age=oops", NOW).expires)
    assert.equals(NOW + 7, cookies.parse_set_cookie("a=1; Max-Age=5; Max-Age=7", NOW).expires)  -- last wins
  end)

  it("expiry is capped at 400 days (RFC 6265bis)", function()
    local cap = NOW + 400 * 86400
    assert.equals(cap, cookies.parse_set_cookie("a=1; Max-Age=999999999999999999999", NOW).expires)
    assert.equals(cap, cookies.parse_set_cookie("a=1; Expires=Fri, 31 Dec 9999 23:59:59 GMT", NOW).expires)
  end)

  it("Domain and Path attributes", function()
    assert.equals("example.com", cookies.parse_set_cookie("a=1; Domain=.EXAMPLE.com", NOW).domain)
    assert.is_nil(cookies.parse_set_cookie("a=1; Domain=", NOW).domain)
    assert.is_nil(cookies.parse_set_cookie("a=1; Domain=.", NOW).domain)
    assert.equals("b.com", cookies.parse_set_cookie("a=1; Domain=a.com; Domain=b.com", NOW).domain)
    assert.is_nil(cookies.parse_set_cookie("a=1; Path=relative", NOW).path)
    assert.is_nil(cookies.parse_set_cookie("a=1; Path=", NOW).path)
    assert.is_nil(cookies.parse_set_cookie("a=1; Path=/x; Path=y", NOW).path)   -- the last one: default
    assert.equals("/a b", cookies.parse_set_cookie("a=1; Path= /a b ", NOW).path)
    -- an attribute value over 1024 bytes is ignored
    assert.is_nil(cookies.parse_set_cookie("a=1; Path=/" .. ("x"):rep(1024), NOW).path)
    assert.equals("/" .. ("x"):rep(1023), cookies.parse_set_cookie("a=1; Path=/" .. ("x"):rep(1023), NOW).path)
  end)

  it("now defaults to os.time(); argument errors", function()
    local e = cookies.parse_set_cookie("a=1; Max-Age=1000").expires
    assert.is_true(math.abs(e - (os.time() + 1000)) <= 2)
    arg_error("bad argument #1 to 'parse_set_cookie' %(string expected, got nil%)", function() cookies.parse_set_cookie() end)
    arg_error("bad argument #2 to 'parse_set_cookie' %(number expected, got string%)",
      function() cookies.parse_set_cookie("a=1", "now") end)
  end)
end)

describe("paths and domains (RFC 6265 §5.1.3, §5.1.4)", function()
  it("default-path", function()
    assert.equals("/", cookies.default_path(""))
    assert.equals("/", cookies.default_path("x"))
    assert.equals("/", cookies.default_path("/"))
    assert.equals("/", cookies.default_path("/a"))
    assert.equals("/a", cookies.default_path("/a/"))
    assert.equals("/a", cookies.default_path("/a/b"))
    assert.equals("/a/b", cookies.default_path("/a/b/c"))
  end)

  it("path-match", function()
    local pm = cookies.path_match
    assert.is_true(pm("/a", "/a"))
    assert.is_true(pm("/a/", "/a"))
    assert.is_true(pm("/a/b", "/a"))
    assert.is_true(pm("/a/b", "/a/"))
    assert.is_true(pm("/anything", "/"))
    assert.is_false(pm("/ab", "/a"))
    assert.is_false(pm("/a", "/a/"))
    assert.is_false(pm("/", "/a"))
    assert.is_false(pm("/A", "/a"))
  end)

  it("domain-match", function()
    local dm = cookies.domain_match
    assert.is_true(dm("example.com", "example.com"))
    assert.is_true(dm("www.example.com", "example.com"))
    assert.is_true(dm("a.b.example.com", "example.com"))
    assert.is_false(dm("notexample.com", "example.com"))
    assert.is_false(dm("example.com", "www.example.com"))
    assert.is_false(dm(".example.com", "example.com") and false)
    assert.is_true(dm("1.2.3.4", "1.2.3.4"))
    assert.is_false(dm("1.2.3.4", "2.3.4"))
    assert.is_false(dm("::1", ":1"))
  end)
end)

describe("cookies.jar", function()
  local function header(jar, u, now) return jar:header(url(u), now or NOW) end
  local function store(jar, u, lines, now) return jar:store(url(u), lines, now or NOW) end

  it("host-only cookies go back only to their host", function()
    local jar = cookies.jar()
    store(jar, "http://www.example.com/", { "a=1" })
    assert.equals("a=1", header(jar, "http://www.example.com/"))
    assert.equals("a=1", header(jar, "http://WWW.Example.COM:8080/other"))   -- ports and case do not matter
    assert.is_nil(header(jar, "http://sub.www.example.com/"))
    assert.is_nil(header(jar, "http://example.com/"))
    local c = jar:cookies()[1]
    assert.is_true(c.host_only)
    assert.equals("www.example.com", c.domain)
  end)

  it("Domain cookies go to the domain and its subdomains", function()
    local jar = cookies.jar()
    store(jar, "http://www.example.com/", { "d=1; Domain=example.com", "e=2; Domain=.www.example.com" })
    assert.equals("d=1", header(jar, "http://example.com/"))
    assert.equals("d=1; e=2", header(jar, "http://www.example.com/"))
    assert.equals("d=1; e=2", header(jar, "http://x.y.www.example.com/"))
    assert.equals("d=1", header(jar, "http://other.example.com/"))
    assert.is_nil(header(jar, "http://notexample.com/"))
    assert.is_nil(header(jar, "http://example.org/"))
    assert.is_false(jar:cookies()[1].host_only)
  end)

  it("rejects a Domain the host does not domain-match, and public suffixes", function()
    local jar = cookies.jar()
    store(jar, "http://www.example.com/", {
      "a=1; Domain=other.com", "b=1; Domain=sub.www.example.com", "c=1; Domain=ample.com",
      "d=1; Domain=com", "e=1; Domain=.com", "f=1; Domain=www.example.com.evil",
    })
    store(jar, "http://shop.example.co.uk/", { "g=1; Domain=co.uk", "h=1; Domain=example.co.uk" })
    local names = {}
    for _, c in ipairs(jar:cookies()) do names[#names + 1] = c.name end
    assert.same({ "h" }, names)
    -- a Domain equal to a single-label host is a host-only cookie
    store(jar, "http://localhost:8080/", { "l=1; Domain=localhost", "m=1; Domain=.localhost" })
    assert.equals("l=1; m=1", header(jar, "http://localhost/"))
    assert.is_true(jar:cookies()[2].host_only)
    assert.is_nil(header(jar, "http://sub.localhost/"))
  end)

  it("IP address hosts: a Domain only when equal, never a suffix", function()
    local jar = cookies.jar()
    store(jar, "http://192.168.1.20/", { "a=1; Domain=192.168.1.20", "b=1; Domain=168.1.20", "c=1; Domain=1.20", "d=1" })
    assert.equals("a=1; d=1", header(jar, "http://192.168.1.20/"))
    assert.is_nil(header(jar, "http://10.192.168.1.20/"))
    store(jar, "http://[::1]:8080/", { "v6=1", "v6b=1; Domain=::1", "v6c=1; Domain=:1" })
    assert.equals("v6=1; v6b=1", header(jar, "http://[::1]/"))
    assert.equals(4, #jar:cookies())
  end)

  it("default path from the request path; path matching on send", function()
    local jar = cookies.jar()
    store(jar, "http://h.test/docs/guide/page.html?x=1", { "def=1" })
    store(jar, "http://h.test/", { "root=1; Path=/", "docs=1; Path=/docs", "slash=1; Path=/docs/", "bad=1; Path=docs" })
    local c = jar:cookies()
    assert.same({ "/docs/guide", "/", "/docs", "/docs/", "/" }, { c[1].path, c[2].path, c[3].path, c[4].path, c[5].path })
    assert.equals("def=1; slash=1; docs=1; root=1; bad=1", header(jar, "http://h.test/docs/guide/x"))
    assert.equals("docs=1; root=1; bad=1", header(jar, "http://h.test/docs"))
    assert.equals("slash=1; docs=1; root=1; bad=1", header(jar, "http://h.test/docs/"))
    assert.equals("root=1; bad=1", header(jar, "http://h.test/docsx"))
    assert.equals("root=1; bad=1", header(jar, "http://h.test/"))
    assert.equals("docs=1; root=1; bad=1", header(jar, "http://h.test/docs?q=/docs/guide"))
  end)

  it("Secure cookies: only over https, and only set from https", function()
    local jar = cookies.jar()
    store(jar, "https://s.test/", { "sec=1; Secure", "plain=1" })
    store(jar, "http://s.test/", { "fromhttp=1; Secure" })
    assert.equals("sec=1; plain=1", header(jar, "https://s.test/"))
    assert.equals("plain=1", header(jar, "http://s.test/"))
    assert.equals(2, #jar:cookies())
    -- a non-secure origin cannot overwrite or shadow a Secure cookie (RFC 6265bis)
    store(jar, "http://s.test/", { "sec=overwritten", "sec=shadow; Path=/deeper" })
    store(jar, "http://www.s.test/", { "sec=sibling; Domain=s.test" })
    assert.equals("sec=1; plain=1", header(jar, "https://s.test/deeper"))
    -- a secure origin can replace it
    store(jar, "https://s.test/", { "sec=2; Secure" })
    assert.equals("sec=2; plain=1", header(jar, "https://s.test/"))
    assert.equals("plain=1", header(jar, "http://s.test/"))
    -- a non-secure cookie whose path does not path-match the Secure one's is fine
    store(jar, "https://s.test/", { "sp=1; Secure; Path=/only" })
    store(jar, "http://s.test/", { "sp=plain" })
    assert.equals("sp=1; sec=2; plain=1; sp=plain", header(jar, "https://s.test/only"))
    assert.equals("plain=1; sp=plain", header(jar, "http://s.test/only"))
  end)

  it("__Secure- and __Host- prefixes", function()
    local jar = cookies.jar()
    store(jar, "https://p.test/a/b", {
      "__Secure-ok=1; Secure", "__Secure-no=1",
      "__Host-ok=1; Secure; Path=/", "__Host-nopath=1; Secure", "__Host-domain=1; Secure; Path=/; Domain=p.test",
      "__host-lower=1; Path=/",
    })
    assert.equals("__Secure-ok=1; __Host-ok=1", header(jar, "https://p.test/a/x"))
    assert.equals("__Host-ok=1", header(jar, "https://p.test/"))
  end)

  it("expiry: Max-Age and Expires; expired cookies are purged; Max-Age<=0 deletes", function()
    local jar = cookies.jar()
    store(jar, "http://e.test/", { "short=1; Max-Age=10", "long=1; Max-Age=1000",
      "dated=1; Expires=" .. os.date("!%a, %d %b %Y %H:%M:%S GMT", NOW + 100), "session=1" })
    assert.equals("short=1; long=1; dated=1; session=1", header(jar, "http://e.test/", NOW + 9))
    assert.equals("long=1; dated=1; session=1", header(jar, "http://e.test/", NOW + 10))
    assert.equals(3, #jar:cookies())                                   -- purged
    assert.equals("long=1; session=1", header(jar, "http://e.test/", NOW + 100))
    store(jar, "http://e.test/", { "long=gone; Max-Age=0" }, NOW + 101)
    store(jar, "http://e.test/", { "session=gone; Expires=Thu, 01 Jan 1970 00:00:00 GMT" }, NOW + 101)
    assert.is_nil(header(jar, "http://e.test/", NOW + 101))
    assert.same({}, jar:cookies())
    -- deleting needs the same name, domain and path
    store(jar, "http://e.test/x/y/z", { "k=1; Path=/x", "k=2" })
    store(jar, "http://e.test/", { "k=del; Max-Age=0" })
    assert.equals("k=2; k=1", header(jar, "http://e.test/x/y/z"))
    store(jar, "http://e.test/", { "k=del; Max-Age=0; Path=/x" })
    assert.equals("k=2", header(jar, "http://e.test/x/y/z"))
    -- cookies(now) purges too
    store(jar, "http://e.test/", { "t=1; Max-Age=5" })
    assert.equals(2, #jar:cookies())
    assert.equals(1, #jar:cookies(NOW + 5))
  end)

  it("replacing a cookie keeps its creation time and so its place in the order", function()
    local jar = cookies.jar()
    store(jar, "http://r.test/", { "first=1" }, NOW)
    store(jar, "http://r.test/", { "second=1" }, NOW + 1)
    store(jar, "http://r.test/", { "third=1" }, NOW + 2)
    store(jar, "http://r.test/", { "first=new; HttpOnly" }, NOW + 3)
    assert.equals("first=new; second=1; third=1", header(jar, "http://r.test/", NOW + 4))
    local c = jar:cookies()
    assert.same({ "first", NOW, true, "new" }, { c[1].name, c[1].creation, c[1].http_only, c[1].value })
    -- the key is name, domain and path: a Domain cookie for that host replaces the host-only one
    store(jar, "http://www.r.test/", { "first=dom; Domain=r.test" }, NOW + 5)
    c = jar:cookies()
    assert.equals(3, #c)
    assert.same({ "dom", NOW, false }, { c[1].value, c[1].creation, c[1].host_only })
    -- the same name on another path or host is a different cookie
    store(jar, "http://r.test/a/b", { "first=path" }, NOW + 6)
    store(jar, "http://www.r.test/", { "first=www" }, NOW + 7)
    assert.equals(5, #jar:cookies())
    -- longer paths first, then earlier creation, whatever the store order
    assert.equals("first=path; first=dom; second=1; third=1", header(jar, "http://r.test/a/x", NOW + 8))
    assert.equals("first=dom; first=www", header(jar, "http://www.r.test/a/x", NOW + 8))
  end)

  it("several cookies created in the same second keep their order", function()
    local jar = cookies.jar()
    local lines = {}
    for i = 1, 20 do lines[i] = ("c%02d=%d"):format(i, i) end
    store(jar, "http://o.test/", lines)
    local want = {}
    for i = 1, 20 do want[i] = ("c%02d=%d"):format(i, i) end
    assert.equals(table.concat(want, "; "), header(jar, "http://o.test/"))
  end)

  it("HttpOnly cookies are kept and sent (a client is not a browser)", function()
    local jar = cookies.jar()
    store(jar, "http://h.test/", { "h=1; HttpOnly; SameSite=Strict" })
    assert.equals("h=1", header(jar, "http://h.test/"))
    local c = jar:cookies()[1]
    assert.is_true(c.http_only)
    assert.equals("Strict", c.same_site)
  end)

  it("bounded: per domain, in total, per cookie", function()
    local jar = cookies.jar()
    local lines = {}
    for i = 1, 60 do lines[i] = "c" .. i .. "=" .. i end
    store(jar, "http://many.test/", lines)
    assert.equals(cookies.MAX_PER_DOMAIN, #jar:cookies())
    -- the least recently used go first: c1..c10 were evicted
    local h = header(jar, "http://many.test/")
    assert.is_nil(h:find("c1=1;", 1, true))
    assert.is_truthy(h:find("c11=11", 1, true))
    assert.is_truthy(h:find("c60=60", 1, true))
    -- reading refreshes: after a read, an old cookie survives new ones
    store(jar, "http://many.test/", { "fresh=1" }, NOW + 1)
    header(jar, "http://many.test/", NOW + 2)
    store(jar, "http://many.test/", { "newer=1" }, NOW + 3)
    assert.equals(cookies.MAX_PER_DOMAIN, #jar:cookies())
    assert.is_truthy(header(jar, "http://many.test/", NOW + 4):find("fresh=1", 1, true))
    -- in total, across many hosts
    jar:clear()
    for d = 1, 70 do
      local l = {}
      for i = 1, 50 do l[i] = "k" .. i .. "=" .. ("v"):rep(10) end
      store(jar, "http://h" .. d .. ".test/", l, NOW + d)
    end
    -- past the limit, the least recently used go, down to 90 % of it
    local n = #jar:cookies()
    assert.is_true(n <= cookies.MAX_TOTAL and n >= cookies.MAX_TOTAL * 0.9, n)
    assert.is_nil(header(jar, "http://h1.test/", NOW + 100))             -- the oldest went
    assert.is_not_nil(header(jar, "http://h70.test/", NOW + 100))
    -- and a cookie over 4096 bytes is refused
    jar:clear()
    store(jar, "http://big.test/", { "big=" .. ("x"):rep(5000), "ok=1" })
    assert.equals("ok=1", header(jar, "http://big.test/"))
  end)

  it("a jar at its limits keeps its caps", function()
    local jar = cookies.jar()
    for d = 1, 60 do
      local l = {}
      for i = 1, 50 do l[i] = "k" .. i .. "=v" end
      store(jar, "https://h" .. d .. ".test/", l, NOW + d)
      store(jar, "https://h" .. d .. ".test/", { "s=1; Secure; Path=/" }, NOW + d)
    end
    local l = {}
    for i = 1, 4000 do l[i] = "n" .. i .. "=v" end
    for i = 1, 1000 do l[#l + 1] = "s=shadow" .. i .. "; Path=/p" .. i end
    store(jar, "http://x.test/", l, NOW + 100)
    store(jar, "http://x.test/", l, NOW + 101)
    for _ = 1, 200 do header(jar, "https://h30.test/a/b", NOW + 102) end
    assert.is_true(#jar:cookies() <= cookies.MAX_TOTAL)
  end)

  it("cookies() returns copies; clear() empties", function()
    local jar = cookies.jar()
    store(jar, "http://c.test/", { "a=1" })
    local list = jar:cookies()
    list[1].value = "changed"
    assert.equals("a=1", header(jar, "http://c.test/"))
    jar:clear()
    assert.same({}, jar:cookies())
    assert.is_nil(header(jar, "http://c.test/"))
  end)

  it("accepts URL strings; now defaults to os.time()", function()
    local jar = cookies.jar()
    jar:store("https://u.test/a/b", { "x=1; Max-Age=100", "y=2; Secure" })
    jar:store("https://u.test/a/b", "z=3")
    assert.equals("x=1; y=2; z=3", jar:header("https://u.test/a/c"))
    assert.is_nil(jar:header("https://u.test/b"))
    assert.equals("x=1; y=2; z=3", jar:header({ scheme = "https", host = "u.test", path = "/a/" }))
  end)

  it("argument errors", function()
    local jar = cookies.jar()
    arg_error("bad argument #1 to 'store' %(luaio.http.CookieJar expected, got table%)",
      function() jar.store({}, url("http://a/"), {}) end)
    arg_error("bad argument #1 to 'store' %(URL table or string expected, got number%)", function() jar:store(5, {}) end)
    arg_error("bad argument #1 to 'store' %(URL table without a host%)", function() jar:store({ path = "/" }, {}) end)
    arg_error("bad argument #2 to 'store' %(table expected, got nil%)", function() jar:store(url("http://a/")) end)
    arg_error("bad argument #2 to 'store' %(lines%[2%]: string expected, got number%)",
      function() jar:store(url("http://a/"), { "a=1", 2 }) end)
    arg_error("bad argument #3 to 'store' %(number expected, got string%)",
      function() jar:store(url("http://a/"), {}, "x") end)
    arg_error("bad argument #1 to 'header' %(URL table or string expected, got nil%)", function() jar:header() end)
    arg_error("bad argument #2 to 'header' %(number expected, got table%)", function() jar:header(url("http://a/"), {}) end)
    arg_error("bad argument #1 to 'clear' %(luaio.http.CookieJar expected, got nil%)", function() jar.clear(nil) end)
    arg_error("calling 'cookies' on bad self %(luaio.http.CookieJar expected, got table%)",
      function() local t = { cookies = jar.cookies } t:cookies() end)
    assert.has_error(function() jar:store("ftp://a/", {}) end)
  end)
end)

describe("cookies from Python's http.cookies", function()
  local function python(code, ...)
    local r = aio.exec({ "/usr/bin/python3", "-c", code, ... }, { timeout = 30 })
    assert.equals(0, r.status, r.stderr)
    return r.stdout
  end

  it("parses SimpleCookie's Set-Cookie lines: Max-Age, Expires, Domain, Path, flags", function()
    local out = python([[
import time
from http.cookies import SimpleCookie
c = SimpleCookie()
c["sid"] = "abc123"
for k, v in (("max-age", 3600), ("path", "/app"), ("domain", ".example.com"), ("secure", True),
             ("httponly", True), ("samesite", "Lax")):
    c["sid"][k] = v
c["pref"] = 'a b;c"d'
c["pref"]["expires"] = 7200
c["pref"]["path"] = "/"
c["old"] = "x"
c["old"]["expires"] = "Thu, 01 Jan 1970 00:00:00 GMT"
print(int(time.time()))
for m in c.values():
    print(m.OutputString())
]])
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    local py_now = tonumber(table.remove(lines, 1))
    assert.equals(3, #lines)
    local sid = cookies.parse_set_cookie(lines[1], py_now)
    assert.same({ name = "sid", value = "abc123", domain = "example.com", path = "/app", expires = py_now + 3600,
                  secure = true, http_only = true, same_site = "Lax" }, sid)
    local pref = cookies.parse_set_cookie(lines[2], py_now)
    assert.equals("pref", pref.name)
    assert.equals('"a b\\073c\\"d"', pref.value)                      -- Python's quoting, kept as sent
    assert.is_true(math.abs(pref.expires - (py_now + 7200)) <= 2)
    assert.equals(0, cookies.parse_set_cookie(lines[3], py_now).expires)
    -- and through a jar
    local jar = cookies.jar()
    jar:store(url("https://www.example.com/app/x"), lines, py_now)
    assert.equals("sid=abc123", jar:header(url("https://api.example.com/app"), py_now))
    assert.equals("sid=abc123; pref=" .. pref.value, jar:header(url("https://www.example.com/app/y"), py_now))
    assert.equals("pref=" .. pref.value, jar:header(url("http://www.example.com/app"), py_now))
    -- the server side: the Cookie header the jar sends, read back by Python
    local h = jar:header(url("https://www.example.com/app"), py_now)
    assert.is_nil(jar:header(url("https://www.example.com/"), py_now + 7201))
    local parsed = python([[
import sys, json
from http.cookies import SimpleCookie
c = SimpleCookie(); c.load(sys.argv[1])
print(json.dumps({k: m.value for k, m in c.items()}))
]], h)
    assert.same({ sid = "abc123", pref = 'a b;c"d' }, aio.json.decode(parsed))
  end)

  it("parses the dates Python writes, in the three formats, for many instants", function()
    local out = python([[
import random, time, email.utils
random.seed(6265)
for _ in range(300):
    t = random.randint(0, 4102444800)      # 1970 .. 2100
    g = time.gmtime(t)
    print(t)
    print(email.utils.formatdate(t, usegmt=True))
    print(time.strftime("%A, %d-%b-%y %H:%M:%S GMT", g) if 1970 <= g.tm_year < 2070 else email.utils.formatdate(t, usegmt=True))
    print(time.asctime(g))
]])
    local l, n = {}, 0
    for line in out:gmatch("[^\n]+") do l[#l + 1] = line end
    assert.equals(1200, #l)
    for i = 1, #l, 4 do
      local t = tonumber(l[i])
      for j = 1, 3 do
        assert.equals(t, cookies.parse_date(l[i + j]), l[i + j])
        n = n + 1
      end
    end
    assert.equals(900, n)
  end)
end)
