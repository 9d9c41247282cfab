/* embed.c — conveniences for embedders: spawning files and strings as tasks. */
#include <string.h>
#include "luaio_int.h"

luaio_task *luaio_spawn_file(luaio_host *h, const char *path) {
  if (luaL_loadfile(luaio_host_state(h), path) != LUA_OK) return NULL;   /* message left on the stack */
  return luaio_spawn(h, 0);
}

luaio_task *luaio_spawn_string(luaio_host *h, const char *code, const char *chunkname) {
  if (luaL_loadbuffer(luaio_host_state(h), code, strlen(code), chunkname ? chunkname : "=(embedded)") != LUA_OK) return NULL;
  return luaio_spawn(h, 0);
}

