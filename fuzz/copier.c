/* libFuzzer target: the to_thread value copier (src/value_copy.c). Builds a Lua
** value (nested tables of nil/booleans/integers/floats/strings) from the
** input, encodes it, decodes it into another state, and checks the copy is
** deeply equal. */
#include <string.h>
#include <lauxlib.h>
#include "value_copy.h"
#include <stdlib.h>

static lua_State *A, *B;

typedef struct { const uint8_t *p, *end; } src;
static int byte(src *s) { return s->p < s->end ? *s->p++ : 0; }

static void build(lua_State *L, src *s, int depth, int is_key) {
  int kind = byte(s) % 7;
  if ((depth > 8 || is_key) && kind == 6) kind = 3;   /* table keys are refused by design */
  switch (kind) {
    case 0: lua_pushnil(L); break;
    case 1: lua_pushboolean(L, byte(s) & 1); break;
    case 2: lua_pushinteger(L, (lua_Integer)(int8_t)byte(s) * 1000003); break;
    case 3: lua_pushnumber(L, (lua_Number)byte(s) / 7.0); break;
    case 4: case 5: {
      size_t n = (size_t)byte(s) % 40;
      if (n > (size_t)(s->end - s->p)) n = (size_t)(s->end - s->p);
      lua_pushlstring(L, (const char *)s->p, n);
      s->p += n;
      break;
    }
    default: {
      int n = byte(s) % 6;
      lua_newtable(L);
      for (int i = 0; i < n && s->p < s->end; i++) {
        build(L, s, depth + 1, 1);                /* key */
        if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) != lua_tonumber(L, -1))) {
          lua_pop(L, 1);
          continue;
        }
        build(L, s, depth + 1, 0);                /* value */
        lua_rawset(L, -3);
      }
    }
  }
}

/* deep equality of A[ia] and B[ib] */
static int same(int ia, int ib) {
  ia = lua_absindex(A, ia);
  ib = lua_absindex(B, ib);
  int t = lua_type(A, ia);
  if (t != lua_type(B, ib)) return 0;
  switch (t) {
    case LUA_TNIL: return 1;
    case LUA_TBOOLEAN: return lua_toboolean(A, ia) == lua_toboolean(B, ib);
    case LUA_TNUMBER:
      if (lua_isinteger(A, ia) != lua_isinteger(B, ib)) return 0;
      return lua_isinteger(A, ia) ? lua_tointeger(A, ia) == lua_tointeger(B, ib)
                                  : lua_tonumber(A, ia) == lua_tonumber(B, ib);
    case LUA_TSTRING: {
      size_t la, lb;
      const char *a = lua_tolstring(A, ia, &la), *b = lua_tolstring(B, ib, &lb);
      return la == lb && memcmp(a, b, la) == 0;
    }
    case LUA_TTABLE: {
      int count = 0;
      lua_pushnil(A);
      while (lua_next(A, ia)) {
        count++;
        lua_pushvalue(A, -2);                     /* the key, copied over to B */
        luaio_wbuf w = {0};
        if (!luaio_value_encode(A, -1, &w, "key", 0)) abort();
        lua_pop(A, 1);
        luaio_rbuf r = { w.p, w.p + w.len };
        if (!luaio_value_decode(B, &r)) abort();
        free(w.p);
        lua_rawget(B, ib);
        int ok = same(-1, -1);
        lua_pop(B, 1);
        lua_pop(A, 1);
        if (!ok) { lua_pop(A, 1); return 0; }
      }
      lua_pushnil(B);
      while (lua_next(B, ib)) { count--; lua_pop(B, 1); }
      return count == 0;
    }
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!A) { A = luaL_newstate(); B = luaL_newstate(); }
  lua_settop(A, 0);
  lua_settop(B, 0);
  src s = { data, data + size };
  build(A, &s, 0, 0);
  luaio_wbuf w = {0};
  if (!luaio_value_encode(A, 1, &w, "arg #1", 0)) abort();  /* every value built here is copyable */
  luaio_rbuf r = { w.p, w.p + w.len };
  if (!luaio_value_decode(B, &r) || r.p != r.end) abort();
  free(w.p);
  if (!same(1, 1)) abort();
  return 0;
}
