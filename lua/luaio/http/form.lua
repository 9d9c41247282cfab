-- HTML form bodies (API.md §6b `req:form()`, the client's `opts.form`):
-- application/x-www-form-urlencoded (through common's decode_query) and
-- multipart/form-data (RFC 7578 on RFC 2046's framing), both ways.
--
-- Multipart bodies may be binary and tens of MB: every search in the data is
-- string.find with plain = true, each byte is looked at a bounded number of
-- times, and patterns run only on part headers (bounded, MAX_PART_HEADER).
-- Malformed input raises HTTPError with status 400; a body of a type that
-- is not a form raises it with status 415.
local core = require "luaio.core"
local common = require "luaio.http.common"

local new_error, arg_error, type_name = core.error, core.arg_error, core.type_name
local unescape, decode_query = core.http_unescape, common.decode_query
local concat, sort, type, tostring, error, pairs = table.concat, table.sort, type, tostring, error, pairs
local math_type, random, utf8_char = math.type, math.random, utf8.char
local fmt, byte, sub, find, lower = string.format, string.byte, string.sub, string.find, string.lower

local M = {}

local MAX_PART_HEADER = 16 * 1024   -- bytes of one part's header block

local function bad_request(msg)
  error(new_error("HTTPError", msg, { status = 400 }), 0)
end

local trim = common.trim

local function check_string(v, n, level)
  if type(v) ~= "string" then arg_error(n, "string expected, got " .. type_name(v), (level or 1) + 1) end
  return v
end

-- Header parameters -----------------------------------------------------

-- A quoted-string starting at s[i] == '"': returns its value and the index
-- after the closing quote, or nil when unterminated. \" and \\ are escapes;
-- a backslash before anything else is kept (old browsers send Windows paths
-- unescaped: filename="C:\dir\a.txt").
local function quoted_string(s, i)
  local buf, n = {}, 0
  i = i + 1
  while true do
    local q = find(s, '["\\]', i)
    if not q then return nil end
    n = n + 1
    buf[n] = sub(s, i, q - 1)
    if byte(s, q) == 34 then return concat(buf), q + 1 end   -- '"'
    local nxt = sub(s, q + 1, q + 1)
    n = n + 1
    if nxt == '"' or nxt == "\\" then buf[n] = nxt
    else buf[n] = "\\" .. nxt end
    i = q + 2
  end
end

-- "type/subtype; a=b; c="d"" -> lowercased media type (or disposition),
-- params with lowercased names (the first of a name wins); nil when a quoted
-- string is unterminated.
local function parse_header_value(s)
  local semi = find(s, ";", 1, true)
  local main = lower(trim(semi and sub(s, 1, semi - 1) or s))
  local params = {}
  local i = semi
  while i do
    i = i + 1                                               -- past the ';'
    local _, e, name = find(s, "^[ \t]*([^=;%s]*)[ \t]*", i)
    i = e + 1
    if byte(s, i) == 61 then                                -- '='
      local _, e2 = find(s, "^[ \t]*", i + 1)
      i = e2 + 1
      local value
      if byte(s, i) == 34 then
        value, i = quoted_string(s, i)
        if not value then return nil end
      else
        local _, e3, tok = find(s, "^([^;]*)", i)
        value, i = trim(tok), e3 + 1
      end
      name = lower(name)
      if name ~= "" and params[name] == nil then params[name] = value end
    end
    i = find(s, ";", i, true)
  end
  return main, params
end

-- RFC 5987 ext-value: charset'language'percent-encoded -> string or nil.
-- ISO-8859-1 is converted to UTF-8; other charsets are returned as decoded.
local function ext_value(v)
  local charset, encoded = v:match("^([^']*)'[^']*'(.*)$")
  if not charset then return nil end
  local s = unescape(encoded)
  charset = charset:lower()
  if charset == "iso-8859-1" or charset == "latin1" then
    s = s:gsub("[\128-\255]", function(c) return utf8_char(byte(c)) end)
  end
  return s
end

function M.boundary(content_type)
  check_string(content_type, 1)
  local main, params = parse_header_value(content_type)
  if not main or not main:find("^multipart/") then return nil end
  local b = params.boundary
  if not b or b == "" or #b > 200 or b:find("[%c]") then return nil end
  return b
end

-- Multipart -------------------------------------------------------------

-- decode_query's convention: the first value of a name is plain, a repeat
-- turns it into an array of the values in order. A file value is a table
-- too, so the arrays made here are remembered rather than guessed.
local function add(t, lists, k, v)
  local old = t[k]
  if old == nil then t[k] = v
  elseif lists[k] then old[#old + 1] = v
  else t[k] = { old, v }; lists[k] = true end
end

-- One part's header block (without its final CRLF) -> name, filename|nil,
-- content_type|nil.
local function part_headers(block)
  if block == "" then bad_request("multipart part without Content-Disposition") end
  local headers = {}
  local last          -- the header a folded line continues (false: a repeat, dropped)
  for line in (block .. "\r\n"):gmatch("(.-)\r\n") do
    local c = byte(line)
    if c == 32 or c == 9 then                                -- obs-fold
      if last == nil then bad_request("malformed multipart part header") end
      if last then headers[last] = headers[last] .. " " .. trim(line) end
    else
      local _, e, k = find(line, "^([^:%s]+)[ \t]*:")
      if not k then bad_request("malformed multipart part header") end
      local v = trim(sub(line, e + 1))
      k = lower(k)
      if headers[k] == nil then headers[k] = v; last = k else last = false end
    end
  end
  local cd = headers["content-disposition"]
  if not cd then bad_request("multipart part without Content-Disposition") end
  local disposition, params = parse_header_value(cd)
  if not disposition then bad_request("malformed Content-Disposition in a multipart part") end
  if disposition ~= "form-data" then
    bad_request("multipart part with Content-Disposition " .. disposition .. ", not form-data")
  end
  local name = params.name
  if name == nil and params["name*"] then name = ext_value(params["name*"]) end
  if name == nil then bad_request("multipart part without a name") end
  local filename = params.filename
  if filename == nil and params["filename*"] then
    filename = ext_value(params["filename*"])
    if not filename then bad_request("malformed filename* in a multipart part") end
  end
  return name, filename, headers["content-type"]
end

function M.parse_multipart(body, boundary)
  check_string(body, 1)
  check_string(boundary, 2)
  if boundary == "" then arg_error(2, "boundary is empty") end
  local dash = "--" .. boundary
  local delim = "\r\n" .. dash
  -- after a delimiter ending before `q`: the next part's start, or false
  -- after the close delimiter, or nil when it was not a delimiter line
  local function after(q)
    if sub(body, q, q + 1) == "--" then return false end
    local _, e = find(body, "^[ \t]*\r\n", q)
    return e and e + 1
  end
  -- the first delimiter: at the start, or after the preamble's CRLF
  local start
  if sub(body, 1, #dash) == dash then start = after(#dash + 1) end
  local from = 1
  while start == nil do
    local p = find(body, delim, from, true)
    if not p then bad_request("multipart body without the boundary") end
    start = after(p + #delim)
    from = p + 1
  end
  local t, lists = {}, {}
  while start do
    local hdr_end, data_start
    if sub(body, start, start + 1) == "\r\n" then            -- no headers
      hdr_end, data_start = start - 1, start + 2
    else
      local p = find(body, "\r\n\r\n", start, true)
      if not p or p - start > MAX_PART_HEADER then bad_request("multipart part headers not terminated") end
      hdr_end, data_start = p - 1, p + 4
    end
    local name, filename, ctype = part_headers(sub(body, start, hdr_end))
    -- the data ends at the next delimiter line (its CRLF may be the last
    -- one of the header block, for a part without a body)
    local from2, nxt, stop = data_start - 2, nil, nil
    while true do
      local p = find(body, delim, from2, true)
      if not p then bad_request("multipart body without the final boundary") end
      nxt = after(p + #delim)
      if nxt ~= nil then stop = p; break end
      from2 = p + 1
    end
    local data = sub(body, data_start, stop - 1)
    if filename then
      add(t, lists, name, { filename = filename, content_type = ctype or "application/octet-stream", data = data })
    else
      add(t, lists, name, data)
    end
    start = nxt
  end
  return t
end

-- form.parse --------------------------------------------------------------

function M.parse(body, content_type)
  check_string(body, 1)
  if content_type ~= nil then check_string(content_type, 2) end
  if content_type == nil or content_type:find("^%s*$") then
    error(new_error("HTTPError", "form body without a Content-Type", { status = 415 }), 0)
  end
  local main = parse_header_value(content_type)
  if main == "application/x-www-form-urlencoded" then
    return decode_query(body)
  elseif main == "multipart/form-data" then
    local b = M.boundary(content_type)
    if not b then bad_request("multipart/form-data without a boundary") end
    return M.parse_multipart(body, b)
  end
  error(new_error("HTTPError", "unsupported form Content-Type: " .. (main or content_type),
    { status = 415 }), 0)
end

-- Encoding ----------------------------------------------------------------

-- keys of t as sorted strings, checked (level: the public function's caller)
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    local tk = type(k)
    if tk ~= "string" and tk ~= "number" then
      arg_error(1, "form keys must be strings, got " .. type_name(k), 2)
    end
    keys[#keys + 1] = k
  end
  sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- v as a list of values (a sequence table, or v alone), or nil
local function as_list(v)
  if type(v) ~= "table" then return { v } end
  local n = #v
  for k in pairs(v) do
    if math_type(k) ~= "integer" or k < 1 or k > n then return nil end
  end
  return v
end

local function scalar(v)
  local tv = type(v)
  if tv == "string" then return v end
  if tv == "boolean" then return tostring(v) end
  if tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return nil end
    return tostring(v)
  end
  return nil
end

-- WHATWG application/x-www-form-urlencoded byte serializer: alphanumerics
-- and *-._ stay, space is '+', everything else %XX.
local function form_escape(s)
  return (s:gsub("[^%w%*%-%._ ]", function(c) return fmt("%%%02X", byte(c)) end):gsub(" ", "+"))
end
M.form_escape = form_escape

function M.encode_urlencoded(t)
  if type(t) ~= "table" then arg_error(1, "table expected, got " .. type_name(t)) end
  local out = {}
  for _, k in ipairs(sorted_keys(t)) do
    local list = as_list(t[k])
    if not list then
      arg_error(1, fmt("form value for key '%s': string, number, boolean or array expected, got %s",
        tostring(k), type_name(t[k])))
    end
    local ek = form_escape(tostring(k))
    for _, v in ipairs(list) do
      local s = scalar(v)
      if not s then
        arg_error(1, fmt("form value for key '%s': string, number or boolean expected, got %s",
          tostring(k), type(v) == "number" and tostring(v) or type_name(v)))
      end
      out[#out + 1] = ek .. "=" .. form_escape(s)
    end
  end
  return concat(out, "&")
end

-- a quoted-string for a Content-Disposition parameter: " and \ escaped; CR,
-- LF (which cannot be in a header) percent-encoded as browsers do
local function quote_param(s)
  return '"' .. s:gsub('[\\"]', "\\%0"):gsub("[\r\n]", function(c) return fmt("%%%02X", byte(c)) end) .. '"'
end

local BOUNDARY_OK = "^[%w'()+_,%-./:=? ]*[%w'()+_,%-./:=?]$"

function M.encode_multipart(fields, boundary)
  if type(fields) ~= "table" then arg_error(1, "table expected, got " .. type_name(fields)) end
  if boundary ~= nil then
    check_string(boundary, 2)
    if #boundary < 1 or #boundary > 70 or not boundary:find(BOUNDARY_OK) then
      arg_error(2, "boundary must be 1 to 70 characters of RFC 2046's bchars")
    end
  end
  -- the parts, as { head, data } pairs, in sorted key order
  local parts = {}
  for _, k in ipairs(sorted_keys(fields)) do
    local v = fields[k]
    local list = { v }
    if type(v) == "table" and v.data == nil and v.filename == nil then list = as_list(v) end
    if not list then
      arg_error(1, fmt("form field '%s': string, file table or array expected, got %s", tostring(k), type_name(v)))
    end
    local name = quote_param(tostring(k))
    for _, item in ipairs(list) do
      local head, data
      if type(item) == "table" then
        local fname, ctype = item.filename, item.content_type or "application/octet-stream"
        data = item.data
        if type(data) ~= "string" then
          arg_error(1, fmt("form field '%s': data: string expected, got %s", tostring(k), type_name(data)))
        end
        if fname ~= nil and type(fname) ~= "string" then
          arg_error(1, fmt("form field '%s': filename: string expected, got %s", tostring(k), type_name(fname)))
        end
        if type(ctype) ~= "string" or ctype:find("[%c]") then
          arg_error(1, fmt("form field '%s': bad content_type", tostring(k)))
        end
        head = "Content-Disposition: form-data; name=" .. name
          .. (fname and ("; filename=" .. quote_param(fname)) or "")
          .. "\r\nContent-Type: " .. ctype .. "\r\n\r\n"
      else
        data = scalar(item)
        if not data then
          arg_error(1, fmt("form field '%s': string, number, boolean or file table expected, got %s",
            tostring(k), type_name(item)))
        end
        head = "Content-Disposition: form-data; name=" .. name .. "\r\n\r\n"
      end
      parts[#parts + 1] = head
      parts[#parts + 1] = data
    end
  end
  local function collides(b)
    local d = "--" .. b
    for i = 1, #parts do
      if find(parts[i], d, 1, true) then return true end
    end
    return false
  end
  if boundary then
    if collides(boundary) then arg_error(2, "boundary occurs in the data") end
  else
    repeat
      boundary = fmt("luaio-%08x%08x%08x", random(0, 0xffffffff), random(0, 0xffffffff), random(0, 0xffffffff))
    until not collides(boundary)
  end
  local out, dash = {}, "--" .. boundary
  for i = 1, #parts, 2 do
    out[#out + 1] = dash .. "\r\n" .. parts[i]
    out[#out + 1] = parts[i + 1]
    out[#out + 1] = "\r\n"
  end
  out[#out + 1] = dash .. "--\r\n"
  local ct = boundary:find("^[%w'+_%-.]+$") and boundary or ('"' .. boundary .. '"')
  return concat(out), "multipart/form-data; boundary=" .. ct
end

return M
