-- HTTP cookies (API.md §6b `req.cookies`, `Session{cookies = true}`):
-- the Cookie request header for the server, Set-Cookie parsing and a cookie
-- jar for the client, after RFC 6265 §5 with RFC 6265bis's tightenings
-- (control characters refused, a non-secure origin cannot set or shadow a
-- Secure cookie, __Secure-/__Host- prefixes, expiry capped at 400 days,
-- name + value at most 4096 bytes, attribute values at most 1024).
--
-- The jar is for a client, not a browser: HttpOnly cookies are recorded and
-- sent; SameSite is recorded only. Its size is bounded (MAX_PER_DOMAIN,
-- MAX_TOTAL), so a server cannot grow it without bound. Public suffixes:
-- single labels ("com", "localhost") and a short list of common registry
-- suffixes below, not the whole Public Suffix List.
local core = require "luaio.core"
local check = require "luaio.check"
local common = require "luaio.http.common"

local arg_error, type_name = core.arg_error, core.type_name
local check_self = check.check_self
local type, pairs, ipairs, next, tonumber, setmetatable = type, pairs, ipairs, next, tonumber, setmetatable
local concat, sort = table.concat, table.sort
local byte, sub, find, lower, gmatch = string.byte, string.sub, string.find, string.lower, string.gmatch
local os_time, math_min = os.time, math.min

local M = {}

local MAX_NAME_VALUE = 4096          -- bytes of name + value
local MAX_ATTRIBUTE = 1024           -- bytes of an attribute value
local MAX_AGE_CAP = 400 * 86400      -- RFC 6265bis: expiry at most 400 days ahead
local MAX_PER_DOMAIN = 50
local MAX_TOTAL = 3000
M.MAX_PER_DOMAIN, M.MAX_TOTAL, M.MAX_NAME_VALUE = MAX_PER_DOMAIN, MAX_TOTAL, MAX_NAME_VALUE

local trim = common.trim

local function check_now(now, n)
  if now == nil then return os_time() end
  if type(now) ~= "number" or now ~= now then
    arg_error(n, "number expected, got " .. type_name(now), 2)
  end
  return now
end

-- Cookie request header ------------------------------------------------------

function M.parse_cookie_header(s)
  if s ~= nil and type(s) ~= "string" then arg_error(1, "string expected, got " .. type_name(s)) end
  local t = {}
  if not s then return t end
  for piece in gmatch(s, "[^;]+") do
    local eq = find(piece, "=", 1, true)
    if eq then
      local k = trim(sub(piece, 1, eq - 1))
      if k ~= "" and t[k] == nil then
        local v = trim(sub(piece, eq + 1))
        if #v >= 2 and byte(v, 1) == 34 and byte(v, -1) == 34 then v = sub(v, 2, -2) end
        t[k] = v
      end
    end
  end
  return t
end

-- Dates: RFC 6265 §5.1.1 ----------------------------------------------------------

local MONTHS = { jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6,
                 jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12 }
local MONTH_DAYS = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

-- days from 1970-01-01 to y-m-d (proleptic Gregorian)
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- "" or a non-digit first: the "( non-digit *OCTET )" tail of the grammar
local function tail_ok(rest) return rest == "" or not find(rest, "^%d") end

-- a cookie-date -> epoch seconds, or nil. Tokens are runs of non-delimiters;
-- each fills the first of time, day, month, year it fits, as the RFC says.
local function parse_date(s)
  local hour, minute, second, day, month, year
  for tok in gmatch(s, "[\0-\8\10-\31%d:A-Za-z\127-\255]+") do
    local h, mi, se, rest
    if not hour then h, mi, se, rest = tok:match("^(%d%d?):(%d%d?):(%d%d?)(.*)$") end
    if h and tail_ok(rest) then
      hour, minute, second = tonumber(h), tonumber(mi), tonumber(se)
    else
      local d, drest
      if not day then d, drest = tok:match("^(%d%d?)(.*)$") end
      if d and tail_ok(drest) then
        day = tonumber(d)
      else
        local m = not month and #tok >= 3 and MONTHS[lower(sub(tok, 1, 3))]
        if m then
          month = m
        elseif not year then
          local y, yrest = tok:match("^(%d%d%d?%d?)(.*)$")
          if y and tail_ok(yrest) then year = tonumber(y) end
        end
      end
    end
  end
  if not (hour and day and month and year) then return nil end
  if year >= 70 and year <= 99 then year = year + 1900
  elseif year >= 0 and year <= 69 then year = year + 2000 end
  if day < 1 or day > 31 or year < 1601 or hour > 23 or minute > 59 or second > 59 then return nil end
  if day > MONTH_DAYS[month] then return nil end
  if month == 2 and day == 29 and not (year % 4 == 0 and (year % 100 ~= 0 or year % 400 == 0)) then
    return nil
  end
  return days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
end
M.parse_date = parse_date

-- Set-Cookie: RFC 6265 §5.2 -----------------------------------------------------------

local SAME_SITE = { strict = "Strict", lax = "Lax", none = "None" }

local function parse_set_cookie(line, now)
  -- control characters other than HTAB: the whole line is ignored (6265bis)
  if find(line, "[\0-\8\10-\31\127]") then return nil end
  local semi = find(line, ";", 1, true)
  local pair = semi and sub(line, 1, semi - 1) or line
  local eq = find(pair, "=", 1, true)
  if not eq then return nil end
  local name, value = trim(sub(pair, 1, eq - 1)), trim(sub(pair, eq + 1))
  if name == "" or #name + #value > MAX_NAME_VALUE then return nil end
  local rec = { name = name, value = value, secure = false, http_only = false }
  local max_age, expires
  if semi then
    for attr in gmatch(sub(line, semi + 1), "[^;]+") do
      local an, av
      local e = find(attr, "=", 1, true)
      if e then an, av = lower(trim(sub(attr, 1, e - 1))), trim(sub(attr, e + 1))
      else an, av = lower(trim(attr)), "" end
      if #av <= MAX_ATTRIBUTE then
        if an == "expires" then
          local t = parse_date(av)
          if t then expires = t end
        elseif an == "max-age" then
          if find(av, "^%-?%d+$") then max_age = tonumber(av) end
        elseif an == "domain" then
          if av ~= "" then
            if byte(av) == 46 then av = sub(av, 2) end       -- a leading '.' is ignored
            rec.domain = av ~= "" and lower(av) or nil
          end
        elseif an == "path" then
          rec.path = byte(av) == 47 and av or nil              -- not "/...": the default path
        elseif an == "secure" then rec.secure = true
        elseif an == "httponly" then rec.http_only = true
        elseif an == "samesite" then rec.same_site = SAME_SITE[lower(av)]
        end
      end
    end
  end
  local limit = now + MAX_AGE_CAP
  if max_age then                                             -- Max-Age wins
    rec.expires = max_age <= 0 and 0 or math_min(now + max_age, limit)
  elseif expires then
    rec.expires = math_min(expires, limit)
  end
  return rec
end

function M.parse_set_cookie(line, now)
  if type(line) ~= "string" then arg_error(1, "string expected, got " .. type_name(line)) end
  return parse_set_cookie(line, check_now(now, 2))
end

-- Domains and paths: RFC 6265 §5.1.3, §5.1.4 -----------------------------------------

local function is_ip(host)
  return find(host, ":", 1, true) ~= nil or find(host, "^%d+%.%d+%.%d+%.%d+$") ~= nil
end

local function domain_match(s, d)
  if s == d then return true end
  local n = #d
  return #s > n + 1 and byte(s, -n - 1) == 46 and sub(s, -n) == d and not is_ip(s)
end

local PUBLIC_SUFFIXES = {}
for s in ([[co.uk org.uk ac.uk gov.uk me.uk net.uk ltd.uk plc.uk com.au net.au org.au
  edu.au gov.au co.nz net.nz org.nz co.jp ne.jp or.jp ac.jp go.jp co.kr or.kr com.cn net.cn
  org.cn gov.cn com.tw com.hk com.sg com.br com.ar com.mx com.tr co.in co.za co.il com.ru
  github.io gitlab.io herokuapp.com appspot.com blogspot.com cloudfront.net
  azurewebsites.net netlify.app vercel.app pages.dev workers.dev]]):gmatch("%S+") do
  PUBLIC_SUFFIXES[s] = true
end
local function is_public_suffix(d)
  return not find(d, ".", 1, true) or PUBLIC_SUFFIXES[d] == true
end

local function default_path(path)
  if type(path) ~= "string" or byte(path) ~= 47 then return "/" end
  local last = 1
  local i = find(path, "/", 2, true)
  while i do last = i; i = find(path, "/", i + 1, true) end
  if last == 1 then return "/" end
  return sub(path, 1, last - 1)
end
M.default_path = default_path

local function path_match(req, cp)
  if req == cp then return true end
  local n = #cp
  if #req > n and sub(req, 1, n) == cp then
    return byte(cp, n) == 47 or byte(req, n + 1) == 47
  end
  return false
end
M.domain_match, M.path_match = domain_match, path_match

-- The jar ------------------------------------------------------------------------

local Jar = { __name = "luaio.http.CookieJar" }
Jar.__index = Jar

function M.jar()
  local jar = setmetatable({ _seq = 0 }, Jar)
  jar:clear()
  return jar
end

-- url: a parse_url table or a URL string -> host, path, secure
local function url_parts(url, n)
  if type(url) == "string" then url = common.parse_url(url) end
  if type(url) ~= "table" then arg_error(n, "URL table or string expected, got " .. type_name(url), 2) end
  local host = url.host
  if type(host) ~= "string" or host == "" then arg_error(n, "URL table without a host", 2) end
  host = lower(host)
  if byte(host) == 91 then host = host:match("^%[(.*)%]$") or host end   -- [v6]
  local path = url.path
  if type(path) ~= "string" or byte(path) ~= 47 then path = "/" end
  local scheme = type(url.scheme) == "string" and lower(url.scheme) or "http"
  return host, path, scheme == "https" or scheme == "wss"
end

local function key_of(c) return c.name .. "\0" .. c.domain .. "\0" .. c.path end

-- Storage: _map (key -> cookie), and two indexes so that no step of a store
-- scans the whole jar: _domains (domain -> { key -> cookie }, with _dcount),
-- _secure (name -> { key -> cookie } of the Secure ones).
local function add(self, key, c)
  local old = self._map[key]
  self._map[key] = c
  local d = self._domains[c.domain]
  if not d then d = {}; self._domains[c.domain] = d end
  d[key] = c
  if old then
    if old.secure then self._secure[old.name][key] = nil end
  else
    self._count = self._count + 1
    self._dcount[c.domain] = (self._dcount[c.domain] or 0) + 1
  end
  if c.secure then
    local s = self._secure[c.name]
    if not s then s = {}; self._secure[c.name] = s end
    s[key] = c
  end
end

local function remove(self, key)
  local c = self._map[key]
  if not c then return end
  self._map[key] = nil
  self._count = self._count - 1
  local n = self._dcount[c.domain] - 1
  if n > 0 then
    self._dcount[c.domain] = n
    self._domains[c.domain][key] = nil
  else
    self._dcount[c.domain], self._domains[c.domain] = nil, nil
  end
  if c.secure then
    local s = self._secure[c.name]
    s[key] = nil
    if next(s) == nil then self._secure[c.name] = nil end
  end
end

local function expired(c, now) return c.expires ~= nil and c.expires <= now end

local function purge(self, now, set)
  for key, c in pairs(set or self._map) do
    if expired(c, now) then remove(self, key) end
  end
end

local function lru_first(a, b)
  if a.last_access ~= b.last_access then return a.last_access < b.last_access end
  return a.seq < b.seq
end

-- Past MAX_PER_DOMAIN, the domain's expired cookies go, then its least
-- recently used (a scan of at most MAX_PER_DOMAIN + 1). Past MAX_TOTAL, all
-- expired cookies go, then the least recently used down to EVICT_TO, in
-- one sort: a jar at its limit costs O(log n) per new cookie, not O(n).
local EVICT_TO = MAX_TOTAL - MAX_TOTAL // 10
local function enforce_limits(self, domain, now)
  if (self._dcount[domain] or 0) > MAX_PER_DOMAIN then
    purge(self, now, self._domains[domain])
    while (self._dcount[domain] or 0) > MAX_PER_DOMAIN do
      local worst_key, worst
      for key, c in pairs(self._domains[domain]) do
        if not worst or lru_first(c, worst) then worst_key, worst = key, c end
      end
      remove(self, worst_key)
    end
  end
  if self._count > MAX_TOTAL then
    purge(self, now)
    if self._count > MAX_TOTAL then
      local list = {}
      for key, c in pairs(self._map) do list[#list + 1] = { key, c } end
      sort(list, function(a, b) return lru_first(a[2], b[2]) end)
      for i = 1, self._count - EVICT_TO do remove(self, list[i][1]) end
    end
  end
end

-- RFC 6265 §5.3 (6265bis §5.7) for one parsed cookie
local function store_one(self, rec, host, req_path, secure_origin, now)
  local domain, host_only = rec.domain, true
  if domain then
    if is_public_suffix(domain) then
      if domain ~= host then return end
      domain = nil                                            -- the host itself: host-only
    end
  end
  if domain then
    if not domain_match(host, domain) then return end
    host_only = is_ip(host)          -- an IP address: only itself, ever (Domain equal to it)
  else
    domain = host
  end
  local path = rec.path or default_path(req_path)
  if rec.secure and not secure_origin then return end
  local lname = lower(rec.name)
  if sub(lname, 1, 9) == "__secure-" and not rec.secure then return end
  if sub(lname, 1, 7) == "__host-" and not (rec.secure and host_only and rec.path == "/") then return end
  if not rec.secure and not secure_origin and self._secure[rec.name] then
    -- a non-secure origin cannot overwrite or shadow a Secure cookie (6265bis)
    for _, c in pairs(self._secure[rec.name]) do
      if (domain_match(c.domain, domain) or domain_match(domain, c.domain)) and path_match(path, c.path) then
        return
      end
    end
  end
  local c = { name = rec.name, value = rec.value, domain = domain, path = path, expires = rec.expires,
              secure = rec.secure, http_only = rec.http_only, host_only = host_only,
              same_site = rec.same_site, creation = now, last_access = now }
  local key = key_of(c)
  if expired(c, now) then                                     -- Max-Age <= 0, a past date: deletes
    remove(self, key)
    return
  end
  local old = self._map[key]
  if old then                                                 -- replaced: keeps its creation
    c.creation, c.seq = old.creation, old.seq
  else
    self._seq = self._seq + 1
    c.seq = self._seq
  end
  add(self, key, c)
  if not old then enforce_limits(self, domain, now) end
end

function Jar:store(url, lines, now)
  check_self(self, Jar)
  local host, path, secure = url_parts(url, 2)
  if type(lines) == "string" then lines = { lines }
  elseif type(lines) ~= "table" then arg_error(3, "table expected, got " .. type_name(lines)) end
  now = check_now(now, 4)
  for i, line in ipairs(lines) do
    if type(line) ~= "string" then
      arg_error(3, ("lines[%d]: string expected, got %s"):format(i, type_name(line)))
    end
    local rec = parse_set_cookie(line, now)
    if rec then store_one(self, rec, host, path, secure, now) end
  end
end

function Jar:header(url, now)
  check_self(self, Jar)
  local host, path, secure = url_parts(url, 2)
  now = check_now(now, 3)
  -- the candidates: cookies of the host and of its parent domains
  local list = {}
  local d, ip = host, is_ip(host)
  while d do
    local set = self._domains[d]
    if set then
      for key, c in pairs(set) do
        if expired(c, now) then remove(self, key)
        elseif (d == host or not c.host_only) and path_match(path, c.path) and (secure or not c.secure) then
          list[#list + 1] = c
        end
      end
    end
    local dot = not ip and find(d, ".", 1, true)
    d = dot and sub(d, dot + 1) or nil
  end
  if #list == 0 then return nil end
  sort(list, function(a, b)   -- longer paths first, then earlier creation (RFC 6265 §5.4)
    if #a.path ~= #b.path then return #a.path > #b.path end
    if a.creation ~= b.creation then return a.creation < b.creation end
    return a.seq < b.seq
  end)
  local out = {}
  for i, c in ipairs(list) do
    c.last_access = now
    out[i] = c.name .. "=" .. c.value
  end
  return concat(out, "; ")
end

-- copies of the records, oldest first; with `now`, expired ones are purged first
function Jar:cookies(now)
  check_self(self, Jar)
  if now ~= nil then purge(self, check_now(now, 2)) end
  local list = {}
  for _, c in pairs(self._map) do list[#list + 1] = c end
  sort(list, function(a, b) return a.seq < b.seq end)
  for i, c in ipairs(list) do
    local copy = {}
    for k, v in pairs(c) do if k ~= "seq" then copy[k] = v end end
    list[i] = copy
  end
  return list
end

function Jar:clear()
  check_self(self, Jar)
  self._map, self._count, self._domains, self._dcount, self._secure = {}, 0, {}, {}, {}
end

return M
