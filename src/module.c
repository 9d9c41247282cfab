/*
** module.c — luaopen_luaio: builds the native core table, then runs the
** embedded Lua half (the files under lua/luaio, compiled in) which returns `aio`.
*/
#include <stdlib.h>
#include <string.h>
#include "luaio_int.h"

typedef struct { const char *name; const char *src; size_t len; } luaio_source;
extern const luaio_source luaio_sources[];

luaio_host *luaio_host_attach(lua_State *L, uv_loop_t *loop);
void luaio_open_host(lua_State *L, luaio_host *h);

/* the loop that luaio_host_new asks the next luaopen_luaio to borrow */
_Thread_local uv_loop_t *luaio_borrow_loop;

/* Load module `modname` ("luaio.sync"): from $LUAIO_LUA_DIR when set (for
** working on the Lua half without rebuilding), else from the binary. */
int luaio_load_embedded(lua_State *L, const char *modname) {
  const char *dir = getenv("LUAIO_LUA_DIR");
  if (dir && *dir) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, dir);
    luaL_addchar(&b, '/');
    for (const char *p = modname; *p; p++) luaL_addchar(&b, *p == '.' ? '/' : *p);
    luaL_addstring(&b, ".lua");
    luaL_pushresult(&b);
    int st = luaL_loadfile(L, lua_tostring(L, -1));
    lua_remove(L, -2);
    return st;
  }
  for (const luaio_source *s = luaio_sources; s->name; s++) {
    if (strcmp(s->name, modname) == 0) {
      lua_pushfstring(L, "@[luaio]/%s.lua", modname);
      int st = luaL_loadbuffer(L, s->src, s->len, lua_tostring(L, -1));
      lua_remove(L, -2);
      return st;
    }
  }
  lua_pushfstring(L, "no embedded module '%s'", modname);
  return LUA_ERRFILE;
}

/* package.preload loader for the embedded modules */
static int preload_embedded(lua_State *L) {
  const char *name = luaio_checkstring(L, 1);
  if (luaio_load_embedded(L, name) != LUA_OK) return lua_error(L);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

static int l_version(lua_State *L) {
  lua_pushfstring(L, "luaio %s (%s, libuv %s)", LUAIO_VERSION, LUA_RELEASE, uv_version_string());
  return 1;
}

static void (*const subsystems[])(lua_State *L, luaio_host *h) = {
  luaio_open_stream, luaio_open_udp, luaio_open_dns, luaio_open_fs,
  luaio_open_process, luaio_open_signal, luaio_open_thread, luaio_open_http_parse,
  luaio_open_tls, luaio_open_json,
};

int luaopen_luaio(lua_State *L) {
  luaio_host *h = luaio_host_get(L);
  if (!h) {
    h = luaio_host_attach(L, luaio_borrow_loop);
    if (!h) return luaL_error(L, "luaio: cannot create the host (out of memory or no loop)");
  }
  lua_createtable(L, 0, 32);     /* core */
  luaio_open_errors(L);
  luaio_open_sched(L, h);
  luaio_open_host(L, h);
  lua_pushcfunction(L, l_version);
  lua_setfield(L, -2, "version");
  luaio_open_coro(L);
  for (size_t i = 0; i < sizeof subsystems / sizeof subsystems[0]; i++) subsystems[i](L, h);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->hooks_ref);
  lua_setfield(L, -2, "hooks");
  /* embedded submodules are found by require */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const luaio_source *s = luaio_sources; s->name; s++) {
    if (strcmp(s->name, "luaio.init") == 0) continue;
    lua_pushcfunction(L, preload_embedded);
    lua_setfield(L, -2, s->name);
  }
  lua_pop(L, 1);
  if (luaio_load_embedded(L, "luaio.init") != LUA_OK) return lua_error(L);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  return 1;
}
