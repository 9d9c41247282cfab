/* http_head.c — the HTTP head reader of streams (http_head.h): finds the
** head in the read buffer, hands it to the parser (http_parse.c) in place. */
#include "http_head.h"
#include "http_parse.h"

static int refuse(lua_State *L, int status, const char *reason) {
  lua_pushnil(L);
  lua_pushinteger(L, status);
  lua_pushstring(L, reason);
  return 3;
}

int luaio_http_read_head(lua_State *L, luaio_readbuf *b, int kind) {
  int is_request = kind != HTTP_RESPONSE;
  const char *p = luaio_rb_data(b);
  if (is_request)
    while (b->len >= 2 && p[0] == '\r' && p[1] == '\n') { luaio_rb_consume(b, 2); p = luaio_rb_data(b); }
  const char *hit = luaio_rb_find(p, b->len, "\r\n\r\n", 4);
  size_t n = hit ? (size_t)(hit - p) + 4 : 0;
  if (hit && n - 4 <= b->limit) {
    int r = kind == HTTP_SERVER_REQUEST ? luaio_http_push_request(L, p, n, 4, HTTP_SERVER_KEYS_UPVALUE)
                                        : luaio_http_push_head(L, p, n, is_request);
    luaio_rb_consume(b, n);
    return r;
  }
  /* no blank line yet: a head of exactly limit bytes may still be missing
  ** up to 3 bytes of its final CRLFCRLF */
  if (hit || b->len > b->limit + 3) return refuse(L, 431, "head too large");
  if (b->err) return RB_FAIL;
  if (!b->eof) return RB_WAIT;
  if (b->len == 0) { lua_pushboolean(L, 0); return 1; }
  luaio_rb_consume(b, b->len);
  return refuse(L, 400, "incomplete head");
}
