/* value_copy.c — Lua values as a flat byte encoding, to copy them between
** Lua states (value_copy.h): nil, booleans, numbers, strings and tables of
** them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "value_copy.h"

enum { V_NIL, V_FALSE, V_TRUE, V_INT, V_FLOAT, V_STR, V_TABLE, V_END };

int luaio_wbuf_put(luaio_wbuf *b, const void *data, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return 0;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
  return 1;
}

static int put_tag(luaio_wbuf *b, char tag) { return luaio_wbuf_put(b, &tag, 1); }

static void path_key(lua_State *L, int kidx, char *out, size_t size, const char *path) {
  if (lua_type(L, kidx) == LUA_TSTRING) snprintf(out, size, "%s.%s", path, lua_tostring(L, kidx));
  else if (lua_isinteger(L, kidx)) snprintf(out, size, "%s[%lld]", path, (long long)lua_tointeger(L, kidx));
  else snprintf(out, size, "%s[%s]", path, luaL_typename(L, kidx));
}

/* Encode the value at idx; `path` names it for error messages. */
int luaio_value_encode(lua_State *L, int idx, luaio_wbuf *b, const char *path, int depth) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNIL: return put_tag(b, V_NIL);
    case LUA_TBOOLEAN: return put_tag(b, lua_toboolean(L, idx) ? V_TRUE : V_FALSE);
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        return put_tag(b, V_INT) && luaio_wbuf_put(b, &i, sizeof i);
      } else {
        lua_Number n = lua_tonumber(L, idx);
        return put_tag(b, V_FLOAT) && luaio_wbuf_put(b, &n, sizeof n);
      }
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      return put_tag(b, V_STR) && luaio_wbuf_put(b, &len, sizeof len) && luaio_wbuf_put(b, s, len);
    }
    case LUA_TTABLE: {
      if (depth > 100) {
        size_t len = strlen(path);     /* the path is long by now: keep its two ends */
        snprintf(b->err, sizeof b->err, "%.40s...%s: table nested deeper than 100 levels (or a cycle)",
                 path, len > 80 ? path + len - 40 : "");
        return 0;
      }
      if (!lua_checkstack(L, 4)) {
        snprintf(b->err, sizeof b->err, "%s: table nested too deeply", path);
        return 0;
      }
      if (!put_tag(b, V_TABLE)) return 0;
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        char sub[256];
        int kt = lua_type(L, -2);
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN) {
          snprintf(b->err, sizeof b->err, "%s: a %s key cannot be copied", path, luaL_typename(L, -2));
          lua_pop(L, 2);
          return 0;
        }
        path_key(L, -2, sub, sizeof sub, path);
        if (!luaio_value_encode(L, -2, b, sub, depth + 1) || !luaio_value_encode(L, -1, b, sub, depth + 1)) {
          lua_pop(L, 2);
          return 0;
        }
        lua_pop(L, 1);
      }
      return put_tag(b, V_END);
    }
    default:
      snprintf(b->err, sizeof b->err, "%s: %s", path, luaL_typename(L, idx));
      return 0;
  }
}

int luaio_value_decode(lua_State *L, luaio_rbuf *r) {
  if (r->p >= r->end) return 0;
  char tag = *r->p++;
  luaL_checkstack(L, 3, "copying values");
  switch (tag) {
    case V_NIL: lua_pushnil(L); return 1;
    case V_FALSE: lua_pushboolean(L, 0); return 1;
    case V_TRUE: lua_pushboolean(L, 1); return 1;
    case V_INT: { lua_Integer i; memcpy(&i, r->p, sizeof i); r->p += sizeof i; lua_pushinteger(L, i); return 1; }
    case V_FLOAT: { lua_Number n; memcpy(&n, r->p, sizeof n); r->p += sizeof n; lua_pushnumber(L, n); return 1; }
    case V_STR: {
      size_t len;
      memcpy(&len, r->p, sizeof len);
      r->p += sizeof len;
      lua_pushlstring(L, r->p, len);
      r->p += len;
      return 1;
    }
    case V_TABLE:
      lua_newtable(L);
      while (r->p < r->end && *r->p != V_END) {
        if (!luaio_value_decode(L, r) || !luaio_value_decode(L, r)) return 0;
        lua_rawset(L, -3);
      }
      r->p++;
      return 1;
  }
  return 0;
}
