-- Hostile values for the misuse sweep (spec/misuse/sweep.lua).
-- values(E, quick) -> array of { name = "...", v = value | none = true }
-- A raising metamethod raises a string positioned in this file, so an error
-- that comes back unchanged is classified "clear" (user error passed through).
local M = {}

local BIG = string.rep("x", 10 * 1024 * 1024)
local MEDIUM = string.rep("x", 64 * 1024)     -- --quick: past every size limit, cheap to copy
M.BIG = BIG
M.NUL = "127.0.0.1\0.attacker.example"

local function raiser(what)
  return function() error("hostile " .. what .. " raised") end
end

-- a table whose every metamethod raises
function M.raising_table()
  local mt = {}
  for _, mm in ipairs { "__index", "__newindex", "__len", "__tostring", "__eq", "__lt", "__le",
                        "__call", "__concat", "__close", "__pairs", "__add", "__sub", "__mul",
                        "__div", "__unm", "__mod", "__idiv", "__band", "__shl", "__bnot" } do
    mt[mm] = raiser(mm)
  end
  mt.__name = "HostileTable"
  return setmetatable({}, mt)
end

-- a table that claims (through __metatable) to be an object of another type:
-- getmetatable() answers mt, but it has none of the object's fields
function M.impostor(mt)
  return setmetatable({}, { __metatable = mt, __index = function() return nil end })
end

function M.list(E, quick)
  local vs = {
    { name = "none", none = true },
    { name = "nil", v = nil },
    { name = "true", v = true },
    { name = "false", v = false },
    { name = "0", v = 0 },
    { name = "-1", v = -1 },
    { name = "NaN", v = 0 / 0 },
    { name = "inf", v = math.huge },
    { name = "-inf", v = -math.huge },
    { name = "maxinteger", v = math.maxinteger },
    { name = "mininteger", v = math.mininteger },
    { name = "0.5", v = 0.5 },
    { name = "''", v = "" },
    { name = "'x'", v = "x" },
    { name = "NUL-string", v = M.NUL },
    { name = "10MB-string", v = BIG },
    { name = "{}", v = {} },
    { name = "raising-mt-table", v = M.raising_table() },
    { name = "weird-__name-table", v = setmetatable({}, { __name = {} }) },
    { name = "function", v = function() end },
    { name = "raising-function", v = raiser("function") },
    { name = "coroutine", v = coroutine.create(function() end) },
    { name = "lightuserdata(json.null)", v = E.aio.json and E.aio.json.null or io.stdout },
    { name = "file-userdata(io.stdout)", v = io.stdout },
    { name = "foreign:Event", v = E.foreign_event },
    { name = "foreign:UDP", v = E.foreign_udp },
  }
  if quick then
    for _, x in ipairs(vs) do if x.name == "10MB-string" then x.name, x.v = "64KB-string", MEDIUM end end
    local keep = { none = 1, ["nil"] = 1, ["true"] = 1, ["-1"] = 1, NaN = 1, inf = 1, maxinteger = 1,
                   ["''"] = 1, ["NUL-string"] = 1, ["64KB-string"] = 1, ["{}"] = 1,
                   ["raising-mt-table"] = 1, ["raising-function"] = 1, ["foreign:UDP"] = 1,
                   ["foreign:Event"] = 1 }
    local q = {}
    for _, x in ipairs(vs) do if keep[x.name] then q[#q + 1] = x end end
    vs = q
  end
  return vs
end

return M
