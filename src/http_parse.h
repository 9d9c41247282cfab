/* http_parse.h — the HTTP/1.1 head parser, for streams that read heads natively. */
#ifndef LUAIO_HTTP_PARSE_H
#define LUAIO_HTTP_PARSE_H

#include "luaio_int.h"

/* Parse head[0 .. len), which ends with the blank line. Pushes the head
** table and returns 1, or pushes nil, status, reason and returns 3. */
int luaio_http_push_head(lua_State *L, const char *head, size_t len, int is_request);

/* The server's request head[0 .. len): checked as luaio_http_push_head
** checks it, but only what every request needs goes into its table: method,
** path and _query (origin-form targets only: request.lua splits the others),
** _raw (the head's bytes: the headers, target and version are parsed from
** it on first use), content_length, chunked and expect_continue as
** present; its metatable the table at mt_idx, if any. Pushes the table,
** whether the connection may stay open and whether a body follows, and
** returns 3; or pushes nil, status, reason and returns 3. The fields'
** names are upvalues key_upvalue .. key_upvalue + HTTP_REQUEST_KEYS - 1 of
** the running C function (pushed once by luaio_http_push_request_keys):
** set by rawset, no name is looked up per request. */
enum { HTTP_REQUEST_KEYS = 4 };
void luaio_http_push_request_keys(lua_State *L);
int luaio_http_push_request(lua_State *L, const char *head, size_t len, int mt_idx, int key_upvalue);

/* The value of a hex digit, or -1. */
static inline int luaio_http_hexval(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

#endif
