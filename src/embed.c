/* embed.c — conveniences for embedders: spawning files and strings as tasks. */
#include <string.h>
#include "luaio_int.h"

luaio_task *luaio_spawn_file(luaio_host *h, const char *path) {
  if (luaL_loadfile(h->L, path) != LUA_OK) return NULL;   /* message left on the stack */
  return luaio_spawn(h, 0);
}

luaio_task *luaio_spawn_string(luaio_host *h, const char *code, const char *chunkname) {
  if (luaL_loadbuffer(h->L, code, strlen(code), chunkname ? chunkname : "=(embedded)") != LUA_OK) return NULL;
  return luaio_spawn(h, 0);
}

int luaio_task_done(luaio_task *t) { return t->state >= TASK_DONE; }
