-- aio.json: encode, decode, null and the array mark, all native (json.c).
-- The functions are core's own, so argument errors name them aio.json.*.
local core = require "luaio.core"

return {
  encode = core.json_encode,
  decode = core.json_decode,
  null = core.json_null,            -- the NULL light userdata: equal to cjson.null
  array = core.json_array,
  array_mt = core.json_array_mt,    -- the mark itself: getmetatable(t) == aio.json.array_mt
}
