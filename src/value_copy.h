/* value_copy.h — copying Lua values between Lua states (to_thread): encode
** into a byte buffer in one state, decode from it in another. */
#ifndef LUAIO_VALUE_COPY_H
#define LUAIO_VALUE_COPY_H

#include <stddef.h>
#include <lua.h>

typedef struct {
  char *p;
  size_t len, cap;
  char err[256];          /* where encoding failed, e.g. "arg #2.items[3]: function" */
} luaio_wbuf;

typedef struct { const char *p, *end; } luaio_rbuf;

/* Append n bytes; 0 when out of memory. */
int luaio_wbuf_put(luaio_wbuf *b, const void *data, size_t n);

/* Encode the value at idx; `path` names it for error messages (in b->err
** when it cannot be copied: 0 then). */
int luaio_value_encode(lua_State *L, int idx, luaio_wbuf *b, const char *path, int depth);

/* Push the next value of r; 0 when the encoding is cut short. */
int luaio_value_decode(lua_State *L, luaio_rbuf *r);

#endif
