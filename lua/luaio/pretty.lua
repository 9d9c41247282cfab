-- aio.pretty(v [, opts]) -> string: a value as a person wants to read it (the
-- prompt prints its results with it). Strings are quoted and escaped; tables
-- show their contents, nested up to opts.depth levels (default 4; deeper:
-- {...}), at most opts.items entries each (default 50; then "... (N more)"),
-- the sequence part first, then the other keys sorted (numbers, then strings,
-- then the rest by type name); a table met again inside itself is <cycle>.
-- A table or userdata with __tostring shows that. What fits in opts.width
-- columns (default 80) stays on one line, otherwise one entry a line.
-- Never raises: a failing __tostring shows as <__tostring failed: ...>.
local check = require "luaio.check"

local type, tostring, next, rawget, pcall = type, tostring, next, rawget, pcall
local getmetatable = debug.getmetatable       -- a __metatable field hides nothing here
local concat, sort, fmt = table.concat, table.sort, string.format
local math_type = math.type

local M = {}

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
                  ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f", ["\v"] = "\\v" }

local function quote(s)
  local valid = utf8.len(s) ~= nil
  local body = s:gsub('[%c"\\\128-\255]', function(c)
    if escapes[c] then return escapes[c] end
    local b = c:byte()
    if b >= 128 and valid then return c end        -- UTF-8 text stays readable
    return fmt("\\x%02x", b)
  end)
  return '"' .. body .. '"'
end
M.quote = quote

local function is_identifier(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil and not M.keywords[k]
end
M.keywords = {}
for w in ("and break do else elseif end false for function goto if in local nil not or repeat return then true until while"):gmatch("%a+") do
  M.keywords[w] = true
end

local type_order = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    local oa, ob = type_order[ta] or 4, type_order[tb] or 4
    if oa ~= ob then return oa < ob end
    return ta < tb
  end
  if ta == "number" then
    if a ~= a then return false end              -- (NaN is no key, but be safe)
    return a < b
  end
  if ta == "string" then return a < b end
  if ta == "boolean" then return (not a) and b end
  return fmt("%p", a) < fmt("%p", b)             -- (no metamethod runs)
end

-- __tostring's text, or nil when v has none
local function custom_text(v)
  local mt = getmetatable(v)
  local f = type(mt) == "table" and rawget(mt, "__tostring")
  if not f then return nil end
  local ok, s = pcall(tostring, v)
  if ok and type(s) == "string" then return s end
  return "<__tostring failed: " .. (ok and "not a string" or tostring(s)) .. ">"
end

local function scalar(v)
  local t = type(v)
  if t == "string" then return quote(v) end
  if t == "number" then
    if math_type(v) == "float" and v ~= v then return "nan" end
    return tostring(v)
  end
  if t == "table" then return nil end
  return custom_text(v) or tostring(v)
end

local render

-- the entries of table v as strings ("value" or "key = value")
local function entries(v, opts, depth, seen, indent)
  local out, n, max = {}, 0, opts.items
  local len = 0
  while rawget(v, len + 1) ~= nil do len = len + 1 end
  local inner = indent .. "  "
  for i = 1, len do
    n = n + 1
    if n > max then break end
    out[n] = render(rawget(v, i), opts, depth + 1, seen, inner)
  end
  local keys = {}
  for k in next, v do
    if not (math_type(k) == "integer" and k >= 1 and k <= len) then keys[#keys + 1] = k end
  end
  sort(keys, key_less)
  for _, k in ipairs(keys) do
    n = n + 1
    if n > max then break end
    local ks = is_identifier(k) and k or "[" .. render(k, opts, depth + 1, seen, inner) .. "]"
    out[n] = ks .. " = " .. render(rawget(v, k), opts, depth + 1, seen, inner)
  end
  local total = len + #keys
  if total > max then out[max + 1] = fmt("... (%d more)", total - max) end
  return out
end

function render(v, opts, depth, seen, indent)
  local s = scalar(v)
  if s then return s end
  local custom = custom_text(v)
  if custom then return custom end
  if seen[v] then return "<cycle>" end
  if next(v) == nil then return "{}" end
  if depth >= opts.depth then return "{...}" end
  seen[v] = true
  local items = entries(v, opts, depth, seen, indent)
  seen[v] = nil
  local one = "{ " .. concat(items, ", ") .. " }"
  if #one + #indent <= opts.width and not one:find("\n", 1, true) then return one end
  local inner = indent .. "  "
  return "{\n" .. inner .. concat(items, ",\n" .. inner) .. "\n" .. indent .. "}"
end

local function positive(opts, name, default)
  local v = opts[name]
  if v == nil then return default end
  if math_type(v) ~= "integer" or v < 1 then
    require("luaio.core").arg_error(2, "opts." .. name .. " must be a positive integer", 2)
  end
  return v
end

function M.pretty(v, opts)
  check.check_opt_type(opts, 2, "table")
  opts = opts or {}
  local o = { depth = positive(opts, "depth", 4), items = positive(opts, "items", 50),
              width = positive(opts, "width", 80) }
  return render(v, o, 0, {}, "")
end

return M
