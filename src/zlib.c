/* zlib.c — gzip/deflate streams for HTTP bodies and WebSocket (placeholder
** while the binding is written). */
#include "luaio_int.h"

void luaio_open_zlib(lua_State *L, luaio_host *h) {
  (void)L; (void)h;
}
