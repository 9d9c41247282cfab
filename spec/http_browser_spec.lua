-- A real browser (headless Chromium) against the luaio HTTP server (API.md
-- §6, §6b): EventSource on req:sse (named events, multi-line data, id and
-- retry, the reconnection with Last-Event-ID), FormData with a file posted
-- by fetch() to req:form(), a gzip-compressed page and JSON (compress =
-- true), a streamed response read through fetch()'s ReadableStream.
--
-- --dump-dom alone snapshots the page when it has loaded (one event in);
-- with --virtual-time-budget, this Chromium (156) holds virtual time while
-- the EventSource's fetch is pending, so the dump has every event: checked
-- once. The other tests use the robust way, which depends on no such
-- policy: each page POSTs what its DOM shows to /report, the test waits for
-- that, then stops Chromium (its whole process group, by PID). A page's
-- JavaScript errors are reported the same way.
local aio = require "luaio"
local P = require "spec.lib.peers"

local REPORT_JS = [[
<script>
function report(v) {
  return fetch('/report', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                            body: JSON.stringify(v) });
}
window.addEventListener('error', e => report({ error: String(e.message) + ' at ' + e.lineno }));
window.addEventListener('unhandledrejection', e => report({ error: 'rejection: ' + String(e.reason) }));
</script>
]]

local function page(title, body)
  return ([[<!doctype html>
<html><head><meta charset="utf-8"><title>%s</title>%s</head>
<body>%s</body></html>
]]):format(title, REPORT_JS, body), 200, { ["Content-Type"] = "text/html; charset=utf-8" }
end

local N_EVENTS = 6

local SSE_PAGE = [[
<ul id="events"></ul>
<script>
const ul = document.getElementById('events');
const es = new EventSource('/events');
let got = 0;
es.addEventListener('tick', e => {
  const li = document.createElement('li');
  li.textContent = e.lastEventId + ':' + e.data;
  ul.appendChild(li);
  if (++got === ]] .. N_EVENTS .. [[) {
    es.close();
    report({ html: ul.outerHTML, items: Array.from(ul.children, li => li.textContent) });
  }
});
</script>
]]

local FORM_PAGE = [[
<pre id="out">waiting</pre>
<script>
(async () => {
  const bytes = new Uint8Array(1024);
  for (let i = 0; i < bytes.length; i++) bytes[i] = i % 256;
  const fd = new FormData();
  fd.append('name', 'Zoë');
  fd.append('note', 'two\nlines');
  fd.append('upload', new Blob([bytes], { type: 'application/octet-stream' }), 'data.bin');
  fd.append('text', new Blob(['hello, form'], { type: 'text/plain' }), 'hello.txt');
  const r1 = await fetch('/form', { method: 'POST', body: fd });
  const multipart = await r1.json();
  const r2 = await fetch('/form', { method: 'POST', body: new URLSearchParams({ a: '1 2', b: 'x&y=z' }) });
  const urlencoded = await r2.json();
  document.getElementById('out').textContent = JSON.stringify({ multipart, urlencoded });
  report({ status: r1.status, dom: document.getElementById('out').textContent });
})();
</script>
]]

local GZIP_PAGE = [[
<p id="out">waiting</p>
<!-- ]] .. ("padding to make the page worth compressing "):rep(40) .. [[ -->
<script>
(async () => {
  const r = await fetch('/data.json');
  const data = await r.json();
  document.getElementById('out').textContent = data.items.length + ' items, last ' + data.items[data.items.length - 1];
  report({ dom: document.getElementById('out').textContent, encoding: r.headers.get('content-encoding') });
})();
</script>
]]

local STREAM_PAGE = [[
<p id="out">waiting</p>
<script>
(async () => {
  const r = await fetch('/chunks');
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let text = '', reads = 0, first = null;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    reads++;
    const piece = dec.decode(value, { stream: true });
    if (first === null) {
      first = piece;
      // the server sends the rest only once the browser said it has the first piece
      await fetch('/chunks/ack', { method: 'POST' });
    }
    text += piece;
  }
  document.getElementById('out').textContent = text;
  report({ dom: document.getElementById('out').textContent, reads, first });
})();
</script>
]]

local function make_app(state)
  local app = aio.http.app()
  app:use(function(req, nxt)
    state.accept_encoding[req.path] = req.headers["accept-encoding"]
    return nxt(req)
  end)
  app:route("/report", function(req)
    state.reports:put(req:json())
    return "ok"
  end, "POST")
  app:route("/sse", function() return page("sse", SSE_PAGE) end)
  -- the first connection sends 3 events and ends; the browser reconnects
  -- after `retry` ms with Last-Event-ID, and gets the rest
  app:route("/events", function(req)
    local last = tonumber(req.headers["last-event-id"]) or 0
    state.last_event_ids[#state.last_event_ids + 1] = req.headers["last-event-id"] or "none"
    local sse = req:sse()
    if last == 0 then sse:send { retry = 200 } end
    sse:comment("a comment the browser ignores")
    local upto = last == 0 and 3 or N_EVENTS
    for i = last + 1, upto do
      local data = "event " .. i
      if i == 2 then data = "line a\nline b" end
      if i == 5 then data = { n = 5 } end                -- a table goes out as JSON
      sse:send { id = i, event = "tick", data = data }
      sse:send { event = "other", data = "not a tick" }  -- another name: not seen by the listener
      aio.sleep(0.02)
    end
  end)
  app:route("/form-page", function() return page("form", FORM_PAGE) end)
  app:route("/form", function(req)
    local f = req:form()
    local out = {}
    for k, v in pairs(f) do
      if type(v) == "table" then
        local sum = 0
        for i = 1, #v.data do sum = sum + v.data:byte(i) end
        out[k] = { filename = v.filename, content_type = v.content_type, size = #v.data, sum = sum,
          text = v.content_type == "text/plain" and v.data or nil }
      else
        out[k] = v
      end
    end
    out.content_type = req.headers["content-type"]:match("^[^;]+")
    return out
  end, "POST")
  app:route("/gzip-page", function() return page("gzip", GZIP_PAGE) end)
  app:route("/data.json", function()
    local items = {}
    for i = 1, 500 do items[i] = "item-" .. i end
    return { items = items }
  end)
  app:route("/stream-page", function() return page("stream", STREAM_PAGE) end)
  app:route("/chunks", function(req)
    state.ack = aio.Event()
    local res = req:respond(200, { ["Content-Type"] = "text/plain; charset=utf-8" })
    res:write("first;")
    aio.timeout(10, state.ack.wait, state.ack)
    for i = 2, 4 do
      res:write("piece " .. i .. ";")
      aio.sleep(0.03)
    end
  end)
  app:route("/chunks/ack", function()
    state.ack:set()
    return "ok"
  end, "POST")
  return app
end

local missing = P.chromium_bin() == nil and "chromium is not installed" or nil

describe("headless Chromium against luaio", function()
  if missing then
    it("is skipped", function() pending(missing) end)
    return
  end

  local server, base
  local state = { accept_encoding = {}, reports = aio.Queue(), last_event_ids = {} }

  setup(function()
    server = make_app(state):listen("127.0.0.1", 0, { compress = true })
    base = "http://127.0.0.1:" .. server.port
  end)
  teardown(function()
    if server then server:close() end
  end)

  -- open path in a fresh Chromium and wait for the page's report
  local function visit(path)
    state.reports = aio.Queue()
    local dir = P.tmpdir("chromium")
    local browser
    finally(function()
      if browser then browser:stop() end
      P.rmtree(dir)
    end)
    browser = P.chromium(dir, base .. path)
    local ok, rep = pcall(aio.timeout, 30, state.reports.get, state.reports)
    if not ok then
      error(("no report from the page %s: %s\nchromium's log:\n%s"):format(path, tostring(rep),
        browser:output():sub(-3000)), 2)
    end
    assert.is_nil(rep.error, "the page failed: " .. tostring(rep.error))
    return rep
  end

  it("EventSource: every event in order, multi-line data, JSON data, reconnection with Last-Event-ID", function()
    state.last_event_ids = {}
    local rep = visit("/sse")
    assert.same({ "1:event 1", "2:line a\nline b", "3:event 3", "4:event 4", '5:{"n":5}', "6:event 6" }, rep.items)
    assert.equals('<ul id="events"><li>1:event 1</li><li>2:line a\nline b</li><li>3:event 3</li>' ..
      '<li>4:event 4</li><li>5:{"n":5}</li><li>6:event 6</li></ul>', rep.html)
    -- the first connection, then the reconnection after the stream ended
    assert.same({ "none", "3" }, { state.last_event_ids[1], state.last_event_ids[2] })
  end)

  it("--dump-dom with --virtual-time-budget shows every EventSource event in the DOM", function()
    state.last_event_ids = {}
    local dir = P.tmpdir("chromium")
    local browser
    finally(function()
      if browser then browser:stop() end
      P.rmtree(dir)
    end)
    browser = P.chromium(dir, base .. "/sse", { "--virtual-time-budget=10000", "--dump-dom" }, { split = true })
    local status = browser:wait(30)
    assert.equals(0, status, "chromium: " .. tostring(status) .. "\n" .. browser:output():sub(-3000))
    local dom = browser:stdout()
    assert.equals('<ul id="events"><li>1:event 1</li><li>2:line a\nline b</li><li>3:event 3</li>' ..
      '<li>4:event 4</li><li>5:{"n":5}</li><li>6:event 6</li></ul>', dom:match('<ul id="events">.-</ul>'))
  end)

  it("FormData with files posted by fetch() is parsed by req:form(); so is URLSearchParams", function()
    local rep = visit("/form-page")
    assert.equals(200, rep.status)
    local got = aio.json.decode(rep.dom)
    local m = got.multipart
    assert.equals("multipart/form-data", m.content_type)
    assert.equals("Zoë", m.name)
    -- a browser sends a text field's line break as CRLF (the HTML form rules)
    assert.equals("two\r\nlines", m.note)
    local sum = 0
    for i = 0, 1023 do sum = sum + i % 256 end
    assert.same({ filename = "data.bin", content_type = "application/octet-stream", size = 1024, sum = sum },
      m.upload)
    assert.equals("hello.txt", m.text.filename)
    assert.equals("text/plain", m.text.content_type)
    assert.equals("hello, form", m.text.text)
    assert.same({ a = "1 2", b = "x&y=z", content_type = "application/x-www-form-urlencoded" }, got.urlencoded)
  end)

  it("a gzip-compressed page and JSON (compress = true) are decoded by the browser", function()
    local rep = visit("/gzip-page")
    assert.equals("500 items, last item-500", rep.dom)
    assert.equals("gzip", rep.encoding)
    assert.matches("gzip", state.accept_encoding["/gzip-page"])
    -- the page itself went out compressed too (it ran, so the browser decoded it)
    local r = aio.http.get(base .. "/gzip-page", { decompress = false, headers = { ["Accept-Encoding"] = "gzip" } })
    assert.equals("gzip", r.headers["content-encoding"])
  end)

  it("a streamed response is read piece by piece through fetch()'s ReadableStream", function()
    local rep = visit("/stream-page")
    assert.equals("first;piece 2;piece 3;piece 4;", rep.dom)
    -- the first piece reached the page before the handler wrote the rest
    assert.equals("first;", rep.first)
    assert.is_true(rep.reads >= 2, "reads: " .. tostring(rep.reads))
  end)
end)
