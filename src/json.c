/*
** json.c — whole JSON numbers become Lua integers.
**
** lua-cjson (2.1.0, Debian's) pushes every number as a float, so `{"id": 7}`
** decodes to 7.0 and prints, concatenates and formats as "7.0". Python's
** json gives an int for 7; so do we: after decoding, every float that is a
** whole number within +-2^53 (where floats are still exact) is replaced by
** the integer. The walk is native because decoded documents can be large.
*/
#include <math.h>
#include "luaio_int.h"

#define EXACT_LIMIT 9007199254740992.0   /* 2^53 */

static int as_integer(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TNUMBER || lua_isinteger(L, idx)) return 0;
  lua_Number f = lua_tonumber(L, idx);
  if (!(f == floor(f) && fabs(f) < EXACT_LIMIT)) return 0;
  lua_pushinteger(L, (lua_Integer)f);
  return 1;
}

/* cjson caps nesting at 1000 levels, so the recursion is bounded. */
static void integers_in(lua_State *L, int t) {
  luaL_checkstack(L, 4, "JSON nesting too deep");
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (lua_type(L, -1) == LUA_TNUMBER) {
      if (as_integer(L, -1)) {
        lua_pushvalue(L, -3);            /* key */
        lua_insert(L, -2);
        lua_rawset(L, t);                /* an existing key: safe inside lua_next */
      }
    } else if (lua_type(L, -1) == LUA_TTABLE) {
      integers_in(L, lua_gettop(L));
    }
    lua_pop(L, 1);
  }
}

/* json_integers(v) -> v, with whole floats made integers (in place for tables) */
static int l_json_integers(lua_State *L) {
  lua_settop(L, 1);
  if (lua_type(L, 1) == LUA_TTABLE) integers_in(L, 1);
  else as_integer(L, 1);                 /* pushes the integer when it converts */
  return 1;
}

void luaio_open_json(lua_State *L, luaio_host *h) {
  (void)h;
  lua_pushcfunction(L, l_json_integers);
  lua_setfield(L, -2, "json_integers");
}
