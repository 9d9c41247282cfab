/*
** track.c — debug mode's open resources, each with the position of the
** user's code that created it, for the report at loop close
** (hooks.main_done: "left open at loop close").
**
** One table in the registry, weak on its keys, maps a resource to
** {seq, label}. Native resources (streams, servers, processes, files, UDP
** sockets, signal handlers) are keyed by their userdata's address, a light
** userdata: their close may run where the userdata is not at hand (a close
** callback, a __gc), and drops the entry by address. Lua resources (HTTP
** sessions, WebSockets, database connections: aio._track/_untrack) are
** keyed by themselves. Outside debug mode, a creation tests one flag and a
** close another: nothing is recorded.
*/
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "task.h"

static char track_key;   /* registry: the table of open resources */

/* Whether `source` (a chunk name) is luaio's own Lua code: embedded
** ("@[luaio]/...") or loaded from $LUAIO_LUA_DIR. */
static int is_own_source(const char *source) {
  if (strncmp(source, "@[luaio]/", 9) == 0) return 1;
  const char *dir = getenv("LUAIO_LUA_DIR");
  size_t n = dir ? strlen(dir) : 0;
  return n > 0 && source[0] == '@' && strncmp(source + 1, dir, n) == 0;
}

void luaio_push_user_where(lua_State *L) {
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Sl", &ar)) break;
    if (ar.currentline > 0 && !is_own_source(ar.source)) {
      lua_pushfstring(L, "%s:%d", ar.short_src, ar.currentline);
      return;
    }
  }
  /* only luaio's frames (a connection of a server): where the task began */
  luaio_task *t = luaio_current(L);
  if (t && t->anchor && (t->flags & TF_HAS_EXTRAS)) {
    luaio_task_push(L, t);
    luaio_task_extras(L, -1, 0);
    if (lua_getfield(L, -1, "spawned_at") == LUA_TSTRING) {
      lua_replace(L, -3);
      lua_pop(L, 1);
      return;
    }
    lua_pop(L, 3);
  }
  lua_pushliteral(L, "?");
}

static void push_table(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &track_key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  luaio_new_weak_keys(L);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &track_key);
}

/* With the label on top: record the key on top of it, pop both. */
static void record(lua_State *L, luaio_host *h) {
  int top = lua_gettop(L);
  push_table(L);                                         /* top+1 */
  lua_pushvalue(L, top - 1);                             /* the key */
  lua_createtable(L, 2, 0);
  lua_pushinteger(L, ++h->debug.tracked);
  lua_rawseti(L, -2, 1);
  luaio_push_user_where(L);
  lua_pushfstring(L, "%s (created at %s)", lua_tostring(L, top), lua_tostring(L, -1));
  lua_rawseti(L, -3, 2);
  lua_pop(L, 1);
  lua_rawset(L, top + 1);
  lua_settop(L, top - 2);
}

void luaio_track(lua_State *L, luaio_host *h, int idx, const char *fmt, ...) {
  if (!h->debug.on) return;
  lua_pushlightuserdata(L, (void *)lua_topointer(L, idx));
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  record(L, h);
}

void luaio_untrack(luaio_host *h, const void *userdata) {
  if (!h->debug.tracked || h->closing) return;
  lua_State *L = h->L;
  if (!lua_checkstack(L, 3)) return;
  push_table(L);
  lua_pushlightuserdata(L, (void *)userdata);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* core.track(resource, label): a Lua resource (aio._track) */
static int l_track(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  luaio_checkany(L, 1);
  const char *label = luaio_checkstring(L, 2);
  if (!h->debug.on) return 0;
  lua_settop(L, 1);
  lua_pushstring(L, label);
  record(L, h);
  return 0;
}

/* core.untrack(resource): a Lua resource, or a native one by its userdata */
static int l_untrack(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  luaio_checkany(L, 1);
  if (!h->debug.tracked) return 0;
  push_table(L);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  lua_rawset(L, -3);
  if (lua_type(L, 1) == LUA_TUSERDATA) {
    lua_pushlightuserdata(L, (void *)lua_topointer(L, 1));
    lua_pushnil(L);
    lua_rawset(L, -3);
  }
  return 0;
}

/* core.open_resources() -> the labels of what is open, oldest first */
static int l_open_resources(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  lua_settop(L, 0);
  push_table(L);                                      /* 1 */
  lua_newtable(L);                                    /* 2: seq -> label */
  lua_Integer n = 0;
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_rawgeti(L, 4, 1);
    lua_rawgeti(L, 4, 2);
    lua_rawset(L, 2);
    lua_pop(L, 1);
    n++;
  }
  lua_createtable(L, (int)n, 0);                      /* 3 */
  lua_Integer k = 0;
  for (lua_Integer seq = 1; k < n && seq <= (lua_Integer)h->debug.tracked; seq++) {
    if (lua_rawgeti(L, 2, seq) == LUA_TNIL) lua_pop(L, 1);
    else lua_rawseti(L, 3, ++k);
  }
  return 1;
}

void luaio_open_track(lua_State *L, luaio_host *h) {
  static const luaL_Reg funcs[] = {
    {"track", l_track}, {"untrack", l_untrack}, {"open_resources", l_open_resources},
    {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
