/* fs.c — placeholder until the subsystem lands: registers nothing yet. */
#include "luaio_int.h"

void luaio_open_fs(lua_State *L, luaio_host *h) {
  (void)L;
  (void)h;
}
