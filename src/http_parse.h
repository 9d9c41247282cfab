/* http_parse.h — the HTTP/1.1 head parser, for streams that read heads natively. */
#ifndef LUAIO_HTTP_PARSE_H
#define LUAIO_HTTP_PARSE_H

#include "luaio_int.h"

/* Parse head[0 .. len), which ends with the blank line. Pushes the head
** table and returns 1, or pushes nil, status, reason and returns 3. */
int luaio_http_push_head(lua_State *L, const char *head, size_t len, int is_request);

/* The value of a hex digit, or -1. */
static inline int luaio_http_hexval(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

#endif
