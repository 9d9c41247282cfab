-- Files from disk as HTTP responses (API.md §6b): aio.http.file(path [, opts])
-- and app:static(prefix, dir [, opts]). A file goes out in bounded pieces
-- (READ_PIECE bytes read, written, next) through the request's streamed
-- writer, never whole in memory; validators, conditional requests (304),
-- single byte ranges (206/416) and HEAD are answered here.
--
-- aio.http.file(path [, opts]) -> a file response object; a handler returns it
-- as its body (`return aio.http.file(p)`, `return aio.http.file(p), 404`).
--   opts.content_type  string: the Content-Type (default from the extension,
--                      text types with "; charset=utf-8"; else application/octet-stream)
--   opts.download      true or a string: Content-Disposition: attachment, named
--                      after the file (or that string)
--   opts.filename      string: the name offered in Content-Disposition
--                      (inline unless download)
--   opts.max_age       integer >= 0: Cache-Control: max-age=N
--   opts.headers       table: more headers (they win over ours, except the
--                      framing ones: Content-Length, Content-Range, Transfer-Encoding)
--
-- What the server sends for it (files.serve):
-- * missing path, a directory or anything but a regular file: 404; EACCES/EPERM: 403;
-- * ETag "<hex size>-<hex mtime in µs>" (strong), Last-Modified, Accept-Ranges: bytes;
-- * GET/HEAD with status nil or 200 only: If-None-Match (list, weak comparison,
--   "*") -> 304, else If-Modified-Since -> 304; Range "bytes=a-b", "a-", "-n"
--   (GET only, one range; If-Range by ETag or date) -> 206 with Content-Range,
--   unsatisfiable -> 416 "bytes */size"; several ranges, bad syntax or an empty
--   file: the Range is ignored (200, RFC 9110 §14.2);
-- * another status given by the handler (say a 404 page) sends the whole file
--   with it, no conditionals; a status without a body (204, 304) sends none;
-- * a file that shrinks while being sent ends the connection (the writer's
--   close does that for a body shorter than its Content-Length).
--
-- app:static(prefix, dir [, opts]) (router.lua calls static_handler):
--   opts.index     string or false: served for a directory (default "index.html")
--   opts.max_age, opts.headers   as for aio.http.file
--   opts.dotfiles  boolean: serve names starting with "." (default false: 404)
-- The rest of the path after prefix is split at "/", each segment percent-
-- decoded; "." segments are dropped and ".." removes the previous one
-- (lexically, before the system sees the path). A segment holding NUL, "\",
-- or an encoded "/", or a ".." above dir is answered 403; a missing file 404;
-- a directory without a trailing slash 301 to the slash form; a directory
-- without the index 404 (no listing). Symlinks inside dir are followed, as
-- nginx does by default: aio.fs has neither lstat nor realpath to refuse the
-- ones that lead outside; whoever writes into dir decides where they point.
-- stat and open are two steps: a file replaced between them is sent with the
-- validators of the first.
local core = require "luaio.core"
local common = require "luaio.http.common"

local fs = core.fs
local stat, open = fs.stat, fs.open
local unescape, new_error, is_error, type_name, arg_error =
  core.http_unescape, core.error, core.is_error, core.type_name, core.arg_error
local check_opts, header_block, REASONS = common.check_opts, common.header_block, common.REASONS
local type, tostring, error, pcall, setmetatable, pairs, ipairs, next =
  type, tostring, error, pcall, setmetatable, pairs, ipairs, next
local getmetatable = debug.getmetatable
local math_type, floor, tointeger = math.type, math.floor, math.tointeger
local concat, fmt = table.concat, string.format

local M = {}

-- bytes per read: big enough that the thread pool round trips are few,
-- small enough that a connection's memory stays a few of them
local READ_PIECE = 256 * 1024
M.READ_PIECE = READ_PIECE
-- (a piece is written whole: the connection's write timeout, body_timeout,
-- bounds each wait under backpressure, so a client must take about one
-- piece per body_timeout — 256 KiB in 60 s, some 4 KiB/s. Writing in 64 KiB
-- slices would lower that floor, for about a third less throughput: measured.)


local TYPES = {
  html = "text/html", htm = "text/html", css = "text/css", js = "text/javascript",
  mjs = "text/javascript", cjs = "text/javascript", txt = "text/plain", text = "text/plain",
  md = "text/markdown", csv = "text/csv", tsv = "text/tab-separated-values",
  ics = "text/calendar", vtt = "text/vtt",
  json = "application/json", map = "application/json", jsonld = "application/ld+json",
  webmanifest = "application/manifest+json", xml = "application/xml",
  pdf = "application/pdf", wasm = "application/wasm", zip = "application/zip",
  gz = "application/gzip", tgz = "application/gzip", tar = "application/x-tar",
  bz2 = "application/x-bzip2", xz = "application/x-xz", zst = "application/zstd",
  yaml = "application/yaml", yml = "application/yaml", toml = "application/toml",
  rss = "application/rss+xml", atom = "application/atom+xml",
  svg = "image/svg+xml", png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg",
  gif = "image/gif", webp = "image/webp", avif = "image/avif", ico = "image/x-icon",
  bmp = "image/bmp", tif = "image/tiff", tiff = "image/tiff",
  mp4 = "video/mp4", m4v = "video/mp4", webm = "video/webm", ogv = "video/ogg",
  mov = "video/quicktime", mp3 = "audio/mpeg", m4a = "audio/mp4", ogg = "audio/ogg",
  oga = "audio/ogg", opus = "audio/ogg", wav = "audio/wav", flac = "audio/flac",
  woff = "font/woff", woff2 = "font/woff2", ttf = "font/ttf", otf = "font/otf",
}
for ext, t in pairs(TYPES) do
  if t:sub(1, 5) == "text/" then TYPES[ext] = t .. "; charset=utf-8" end
end
M.TYPES = TYPES

local function content_type_of(path)
  local ext = path:match("%.([^./]+)$")
  return ext and TYPES[ext:lower()] or "application/octet-stream"
end

-- Dates ----------------------------------------------------------------
local function http_date(t) return os.date("!%a, %d %b %Y %H:%M:%S GMT", t) end

local MONTHS = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6, jul = 7, aug = 8,
  sep = 9, oct = 10, nov = 11, dec = 12 }

-- days since 1970-01-01 of a civil date (H. Hinnant's algorithm)
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * (m + (m > 2 and -3 or 9)) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- an HTTP-date (IMF-fixdate, RFC 850, asctime) -> seconds since the epoch, or nil
local function parse_http_date(s)
  if type(s) ~= "string" then return nil end
  local d, mon, y, hh, mm, ss = s:match("^%s*%a+,%s*(%d%d?)[%s%-](%a%a%a)[%s%-](%d+)%s+(%d%d):(%d%d):(%d%d)%s+GMT%s*$")
  if not d then
    mon, d, hh, mm, ss, y = s:match("^%s*%a+%s+(%a%a%a)%s+(%d%d?)%s+(%d%d):(%d%d):(%d%d)%s+(%d%d%d%d)%s*$")
  end
  if not d then return nil end
  local month = MONTHS[mon:lower()]
  d, y, hh, mm, ss = tointeger(tonumber(d)), tointeger(tonumber(y)), tonumber(hh), tonumber(mm), tonumber(ss)
  if not month or d < 1 or d > 31 or hh > 23 or mm > 59 or ss > 60 then return nil end
  if #tostring(y) == 2 then y = y + (y < 70 and 2000 or 1900) end   -- RFC 850's two digits
  return days_from_civil(y, month, d) * 86400 + hh * 3600 + mm * 60 + ss
end
M.parse_http_date, M.http_date = parse_http_date, http_date

-- Validators and ranges -----------------------------------------------
local function etag_of(st)
  return fmt('"%x-%x"', st.size, floor(st.mtime * 1e6))
end

-- If-None-Match: "*" or a list of entity tags, compared weakly (W/ ignored)
local function none_match(header, etag)
  if header:match("^%s*%*%s*$") then return true end
  for tag in header:gmatch('"[^"]*"') do
    if tag == etag then return true end
  end
  return false
end

-- If-Range: an entity tag (strong comparison) or the exact Last-Modified date
local function if_range_holds(header, etag, mtime_s)
  local v = header:match("^%s*(.-)%s*$")
  if v:sub(1, 1) == '"' then return v == etag end
  if v:sub(1, 2) == "W/" then return false end
  return parse_http_date(v) == mtime_s
end

-- digits -> integer; past 15 digits a number larger than any file
local function digits(s)
  s = s:gsub("^0+(%d)", "%1")
  if #s > 15 then return 1 << 53 end
  return tointeger(tonumber(s))
end

-- Range header -> first, last | false (unsatisfiable) | nil (ignored: not one
-- valid byte range)
local function parse_range(header, size)
  local spec = header:match("^%s*[Bb][Yy][Tt][Ee][Ss]%s*=%s*(.-)%s*$")
  if not spec then return nil end
  local a, b = spec:match("^(%d*)%s*%-%s*(%d*)$")
  if not a or (a == "" and b == "") then return nil end
  if a == "" then                                    -- the last n bytes
    local n = digits(b)
    if n == 0 then return false end
    if n > size then n = size end
    return size - n, size - 1
  end
  local first, last = digits(a), b ~= "" and digits(b) or nil
  if last and last < first then return nil end
  if first >= size then return false end
  if not last or last >= size then last = size - 1 end
  return first, last
end
M.parse_range = parse_range

-- Headers ---------------------------------------------------------------
-- the ones the file's framing decides: nobody else sets them
local FRAMING = { ["content-length"] = true, ["content-range"] = true, ["transfer-encoding"] = true }

-- h[name] = v, replacing a field of the same name in another case
local function set_header(h, name, v)
  local lname = name:lower()
  for k in pairs(h) do
    if k ~= name and type(k) == "string" and k:lower() == lname then h[k] = nil end
  end
  h[name] = v
end

local function merge(h, extra, skip)
  if not extra then return end
  for k, v in pairs(extra) do
    if type(k) == "string" and not FRAMING[k:lower()] and not (skip and skip[k:lower()]) then
      set_header(h, k, v)
    end
  end
end

local function quoted_filename(name)
  local ascii = name:gsub('[^\32-\126]', "_"):gsub('["\\]', "_")
  local v = fmt('filename="%s"', ascii)
  if ascii ~= name then
    v = v .. "; filename*=UTF-8''" .. name:gsub("[^%w!#$&+.^_`|~-]", function(c) return fmt("%%%02X", c:byte()) end)
  end
  return v
end

-- The file response object ---------------------------------------------
local File = { __name = "luaio.http.File" }
File.__index = File
M.File = File

local function arg_fail(n, msg, level)
  error(fmt("bad argument #%d to 'aio.http.file' (%s)", n, msg), level + 1)
end

-- the headers a file object adds, from its opts; nil, why when they cannot be sent
local function opts_headers(opts, path)
  local h = {}
  if opts.max_age then h["Cache-Control"] = "max-age=" .. opts.max_age end
  local download, filename = opts.download, opts.filename
  if type(download) == "string" then filename = filename or download end
  if download or filename then
    filename = filename or path:match("([^/]*)$")
    local disp = download and "attachment" or "inline"
    if filename ~= "" then disp = disp .. "; " .. quoted_filename(filename) end
    h["Content-Disposition"] = disp
  end
  if opts.headers then
    local ok, why = header_block(opts.headers)
    if not ok then return nil, why end
    merge(h, opts.headers)
  end
  return h
end

-- aio.http.file(path [, opts]) -> File
function M.file(path, opts)
  if type(path) ~= "string" then arg_fail(1, "string expected, got " .. type_name(path), 2) end
  if path == "" then arg_fail(1, "path expected, got an empty string", 2) end
  if path:find("\0", 1, true) then arg_fail(1, "path without NUL bytes expected", 2) end
  if opts ~= nil and type(opts) ~= "table" then arg_fail(2, "table expected, got " .. type_name(opts), 2) end
  opts = opts or {}
  for _, k in ipairs { "content_type", "filename" } do
    local v = opts[k]
    if v ~= nil and type(v) ~= "string" then arg_fail(2, fmt("opts.%s: string expected, got %s", k, type_name(v)), 2) end
    if v and v:find("[%c]") then arg_fail(2, fmt("opts.%s: a string without control characters expected", k), 2) end
  end
  local max_age = opts.max_age
  if max_age ~= nil and (math_type(max_age) ~= "integer" or max_age < 0) then
    arg_fail(2, "opts.max_age: integer >= 0 expected, got " .. (type(max_age) == "number" and tostring(max_age) or type_name(max_age)), 2)
  end
  if opts.headers ~= nil and type(opts.headers) ~= "table" then
    arg_fail(2, "opts.headers: table expected, got " .. type_name(opts.headers), 2)
  end
  local dl = opts.download
  if dl ~= nil and type(dl) ~= "boolean" and type(dl) ~= "string" then
    arg_fail(2, "opts.download: boolean or string expected, got " .. type_name(dl), 2)
  end
  if type(dl) == "string" and dl:find("[%c]") then
    arg_fail(2, "opts.download: a string without control characters expected", 2)
  end
  local h, why = opts_headers(opts, path)
  if not h then arg_fail(2, "opts.headers: " .. why, 2) end
  return setmetatable({ path = path, content_type = opts.content_type or content_type_of(path),
    _headers = h }, File)
end

function M.is_file(v) return getmetatable(v) == File end

-- Sending -----------------------------------------------------------------
local function log(req, what)
  io.stderr:write(fmt("luaio: file response for %s %s: %s\n", req.method, req.path, what))
end

-- a short text answer of ours (404, 403, 416, 500)
local function small(req, status, extra)
  local body = fmt("%d %s\n", status, REASONS[status] or "")
  local h = { ["Content-Type"] = "text/plain; charset=utf-8", ["Content-Length"] = #body }
  if extra then for k, v in pairs(extra) do h[k] = v end end
  local res = req:respond(status, h)
  res:write(body)
  res:close()
  return res.status, res.bytes
end

local function no_body(status) return status < 200 or status == 204 or status == 304 end

-- f:close(), whose failure does not matter, except a cancellation arriving there
local function close_file(f)
  local ok, err = pcall(f.close, f)
  if not ok and is_error(err, "CancelledError") then error(err, 0) end
end

-- the file's bytes first..last (inclusive) into res, READ_PIECE at a time;
-- the file is closed whatever happens (a client gone, a cancellation)
-- While a file is sent the connection's high-water mark is raised to a few
-- pieces, so that the next read from disk overlaps the kernel sending the
-- last one (with the default 64 KiB every 256 KiB write waited for the
-- socket to drain first: 310 MB/s against 1.5 GB/s, measured)
local SENDING_HWM, DEFAULT_HWM = 4 * READ_PIECE, 64 * 1024
local function send_range(res, f, first, last)
  local stream = res._stream
  local ok, err = pcall(function()
    if first > 0 then f:seek("set", first) end
    stream:set_limits(nil, SENDING_HWM)
    local left = last - first + 1
    while left > 0 do
      local piece = f:read(left < READ_PIECE and left or READ_PIECE)
      if not piece then break end                    -- the file shrank: short body
      left = left - #piece
      res:write(piece)
    end
  end)
  if not stream:closed() then stream:set_limits(nil, DEFAULT_HWM) end
  if not ok then
    pcall(f.close, f)
    error(err, 0)
  end
  close_file(f)
end

-- stat result, or nil, status to answer instead
local function regular_file(path)
  local ok, st = pcall(stat, path)
  if not ok then
    if is_error(st, "CancelledError") then error(st, 0) end
    local code = is_error(st, "OSError") and st.code
    if code == "EACCES" or code == "EPERM" then return nil, 403 end
    if code == "ENOENT" or code == "ENOTDIR" or code == "ENAMETOOLONG" or code == "ELOOP" then return nil, 404 end
    return nil, 500, st
  end
  if st.type ~= "file" then return nil, 404 end
  return st
end

-- files.serve(req, file, status, headers) -> status sent, body bytes sent:
-- the server's send for a handler that returned a File (status and headers:
-- what the handler returned with it)
function M.serve(req, file, status, headers)
  if status ~= nil then
    local s = tointeger(status)
    if not s or s < 100 or s > 999 then
      log(req, "an invalid status " .. tostring(status))
      return small(req, 500)
    end
    status = s
  end
  if headers ~= nil and type(headers) ~= "table" then
    log(req, "headers that are not a table")
    return small(req, 500)
  end
  if headers and next(headers) ~= nil then
    local ok, why = header_block(headers)
    if not ok then
      log(req, "a bad header: " .. why)
      return small(req, 500)
    end
  end
  local method = req.method
  if status and no_body(status) then        -- 204/304 given: the head only
    local h = {}
    merge(h, file._headers)
    merge(h, headers)
    local res = req:respond(status, h)
    res:close()
    return res.status, 0
  end

  local st, fail, err = file._stat, nil, nil
  file._stat = nil                         -- a static lookup's stat: used once
  if not st then st, fail, err = regular_file(file.path) end
  if not st then
    if fail == 500 then log(req, tostring(err)) end
    return small(req, fail)
  end
  local size, mtime_s = st.size, floor(st.mtime)
  local etag = etag_of(st)
  local h = { ["Content-Type"] = file.content_type }
  local plain = status == nil or status == 200
  local conditional = plain and (method == "GET" or method == "HEAD")
  if plain then
    h.ETag = etag
    h["Last-Modified"] = http_date(mtime_s)
    h["Accept-Ranges"] = "bytes"
  end
  merge(h, file._headers)
  merge(h, headers)

  local first, last = 0, size - 1
  status = status or 200
  if conditional then
    local rh = req.headers
    local inm, ims = rh["if-none-match"], rh["if-modified-since"]
    local not_modified
    if inm then not_modified = none_match(inm, etag)
    elseif ims then
      local t = parse_http_date(ims)
      not_modified = t ~= nil and mtime_s <= t
    end
    if not_modified then
      -- a 304 carries the validators and caching fields, no representation metadata
      for k in pairs(h) do
        local lk = k:lower()
        if lk == "content-type" or lk == "content-encoding" or lk == "content-disposition" then h[k] = nil end
      end
      local res = req:respond(304, h)
      res:close()
      return 304, 0
    end
    local range = method == "GET" and rh.range
    if range and size > 0 and (not rh["if-range"] or if_range_holds(rh["if-range"], etag, mtime_s)) then
      local a, b = parse_range(range, size)
      if a == false then
        return small(req, 416, { ["Content-Range"] = "bytes */" .. size, ["Accept-Ranges"] = "bytes" })
      elseif a then
        first, last, status = a, b, 206
        h["Content-Range"] = fmt("bytes %d-%d/%d", a, b, size)
      end
    end
  end
  h["Content-Length"] = last - first + 1
  -- opened for HEAD too: it answers what GET would (403 for an unreadable file)
  local f
  do
    local ok, opened = pcall(open, file.path, "r")
    if not ok then
      if is_error(opened, "CancelledError") then error(opened, 0) end
      local code = is_error(opened, "OSError") and opened.code
      if code == "EACCES" or code == "EPERM" then return small(req, 403) end
      if code == "ENOENT" or code == "ENOTDIR" then return small(req, 404) end
      log(req, tostring(opened))
      return small(req, 500)
    end
    f = opened
  end
  local ok, res = pcall(req.respond, req, status, h)
  if not ok then
    pcall(f.close, f)
    error(res, 0)
  end
  if method ~= "HEAD" and last >= first then send_range(res, f, first, last)
  else close_file(f) end
  res:close()
  return res.status, res.bytes
end

-- app:static -------------------------------------------------------------
local STATIC_OPTS = { max_age = "count", headers = "table", dotfiles = "boolean" }

-- files.check_static_opts(opts, n) -> opts, checked for app:static (its argument n)
function M.check_static_opts(opts, n)
  opts = check_opts(opts, n, STATIC_OPTS, 2)
  local index = opts.index
  if index ~= nil and index ~= false then
    if type(index) ~= "string" then
      arg_error(n, "opts.index: string or false expected, got " .. type_name(index), 2)
    end
    if index == "" or index:find("[/%z\\]") or index == "." or index == ".." then
      arg_error(n, fmt("opts.index: a file name expected, got %q", index), 2)
    end
  end
  if opts.headers then
    local ok, why = header_block(opts.headers)
    if not ok then arg_error(n, "opts.headers: " .. why, 2) end
  end
  return opts
end

local function abort(status, headers)
  error(new_error("HTTPError", fmt("%d %s", status, REASONS[status] or ""),
    { status = status, abort = true, headers = headers }), 0)
end

local function escape_segment(s)
  return (s:gsub("[^%w%-._~!$&'()*+,;=:@]", function(c) return fmt("%%%02X", c:byte()) end))
end

-- files.static_handler(dir, opts, prefix) -> handler(req) for requests whose
-- path is prefix or under prefix .. "/"
function M.static_handler(dir, opts, prefix)
  if dir == "" then arg_error(3, "directory path expected, got an empty string", 2) end
  local root = dir:gsub("/+$", "")               -- dir "/": root "", paths "/" .. rel
  local index = opts.index
  if index == nil then index = "index.html" end
  local dotfiles = opts.dotfiles
  -- the headers every file of dir gets, made once (opts were checked)
  local dir_headers = opts_headers({ max_age = opts.max_age, headers = opts.headers }, "")
  prefix = prefix or ""
  local function file_of(path, st)
    return setmetatable({ path = path, content_type = content_type_of(path), _headers = dir_headers,
      _stat = st }, File)
  end

  return function(req)
    local path = req.path
    local rest = path:sub(#prefix + 1)
    local segs = {}
    for raw in rest:gmatch("[^/]+") do
      local seg = unescape(raw)
      if seg:find("[%z/\\]") then abort(403) end
      if seg == ".." then
        if #segs == 0 then abort(403) end
        segs[#segs] = nil
      elseif seg ~= "." then
        if not dotfiles and seg:sub(1, 1) == "." then abort(404) end
        segs[#segs + 1] = seg
      end
    end
    local rel = concat(segs, "/")
    local fspath = rel == "" and (root == "" and "/" or root) or (root .. "/" .. rel)
    local ok, st = pcall(stat, fspath)
    if not ok then
      if is_error(st, "CancelledError") then error(st, 0) end
      local code = is_error(st, "OSError") and st.code
      if code == "EACCES" or code == "EPERM" then abort(403) end
      if code == "ENOENT" or code == "ENOTDIR" or code == "ENAMETOOLONG" or code == "ELOOP" then abort(404) end
      error(st, 0)
    end
    local slash = rest:sub(-1) == "/"
    if st.type == "directory" then
      if not slash then
        local esc = {}
        for i, s in ipairs(segs) do esc[i] = escape_segment(s) end
        local loc = prefix .. "/" .. concat(esc, "/") .. (#esc > 0 and "/" or "")
        local q = req.target:match("%?[^#]*")
        abort(301, { Location = loc .. (q or "") })
      end
      if not index then abort(404) end
      local ipath = (fspath == "/" and "" or fspath) .. "/" .. index
      local iok, ist = pcall(stat, ipath)
      if not iok then
        if is_error(ist, "CancelledError") then error(ist, 0) end
        local code = is_error(ist, "OSError") and ist.code
        if code == "EACCES" or code == "EPERM" then abort(403) end
        abort(404)
      end
      if ist.type ~= "file" then abort(404) end
      return file_of(ipath, ist)
    end
    if st.type ~= "file" or slash then abort(404) end
    return file_of(fspath, st)
  end
end

return M
