/* readbuf.c — the read buffer's separator search and the errors of its
** reads (readbuf.h, where the reads are, inline). */
#include <lauxlib.h>
#include "readbuf.h"
#include "luaio_int.h"

const char *luaio_rb_find(const char *p, size_t len, const char *sep, size_t seplen) {
  if (len == 0) return NULL;
  if (seplen == 1) return memchr(p, sep[0], len);
  if (len < seplen) return NULL;
  const char *end = p + len - seplen;
  for (const char *q = p; q <= end; q++) {
    q = memchr(q, sep[0], (size_t)(end - q) + 1);
    if (!q) return NULL;
    if (memcmp(q, sep, seplen) == 0) return q;
  }
  return NULL;
}

int luaio_rb_incomplete(lua_State *L, luaio_readbuf *b, size_t n) {
  luaio_push_error(L, "IncompleteReadError", NULL, "%d bytes read on a total of %d expected bytes",
                   (int)b->len, (int)n);
  lua_pushlstring(L, luaio_rb_data(b), b->len);
  lua_setfield(L, -2, "partial");
  lua_pushinteger(L, (lua_Integer)n);
  lua_setfield(L, -2, "expected");
  luaio_rb_consume(b, b->len);
  return lua_error(L);
}

int luaio_rb_overrun(lua_State *L, const luaio_readbuf *b) {
  return luaio_error(L, "LimitOverrunError", NULL,
                     "separator not found within the limit of %d bytes (the data stays buffered)",
                     (int)b->limit);
}
