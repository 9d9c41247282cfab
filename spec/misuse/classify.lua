-- Classification of one call's outcome for the misuse sweep.
--   classify(ok, err) -> "ok" | "clear" | "unclear", why
-- clear:   a luaio error table (name + message); a string positioned
--          "file:line:" outside "[luaio]/" that is not an internal
--          "attempt to ... (local|field|upvalue ...)" message; Lua's own
--          "bad argument ..." or "attempt to yield across a C-call boundary".
-- unclear: anything else (a function/userdata/nil/boolean/plain table as
--          error value, an error positioned inside [luaio]/, an internal
--          "attempt to ..." message, a string without a position).
local M = {}

local INTERNAL_KIND = { ["local"] = true, field = true, upvalue = true, method = true,
                        global = true, constant = true }

function M.classify(ok, err)
  if ok then return "ok" end
  local te = type(err)
  if te == "table" then
    local name, msg = rawget(err, "name"), rawget(err, "message")
    if type(name) == "string" and name ~= "" and msg ~= nil then return "clear" end
    return "unclear", "error value is a table without name/message"
  end
  if te ~= "string" then return "unclear", "error value is a " .. te end
  if err:find("attempt to yield across a C%-call boundary") then return "clear" end
  local first = err:sub(1, 2000):match("^[^\n]*")
  local chunk, line, rest = first:match("^(.-):(%d+): (.*)$")
  if not chunk then
    if first:find("^bad argument") then return "clear" end
    return "unclear", "message without a position"
  end
  if chunk:find("^%[luaio%]/") or chunk:find("%[luaio%]/") then
    return "unclear", "raised inside " .. chunk
  end
  local kind = rest:match("^attempt to .-%((%a+) '[^']*'%)")
  if kind and INTERNAL_KIND[kind] then return "unclear", "internal 'attempt to' message" end
  return "clear"
end

-- a message pattern for deduplication: positions, addresses and numbers blurred
function M.pattern(err)
  local s
  if type(err) == "table" then
    s = ("{name=%s, message=%s}"):format(tostring(rawget(err, "name")):sub(1, 100), tostring(rawget(err, "message")):sub(1, 300))
  elseif type(err) == "string" then s = err:sub(1, 400):match("^[^\n]*")
  else s = "<" .. type(err) .. ">" end
  s = s:gsub("0x%x+", "ADDR"):gsub(":%d+:", ":N:"):gsub("%d+", "N")
  s = s:gsub("a [%w%.]+ value", "a <T> value"):gsub("got [%w%.]+", "got <T>")
  if #s > 200 then s = s:sub(1, 200) .. "..." end
  return s
end

-- a short printable form of an error value
function M.show(err)
  if type(err) == "table" then
    local ok, s = pcall(tostring, err)
    return ok and s or ("table " .. M.pattern(err))
  end
  local s = tostring(err):sub(1, 400)
  s = s:match("^[^\n]*") or s
  if #s > 300 then s = s:sub(1, 300) .. "..." end
  return s
end

return M
