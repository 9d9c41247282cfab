/* http_parse.h — the HTTP/1.1 head parser, for streams that read heads natively. */
#ifndef LUAIO_HTTP_PARSE_H
#define LUAIO_HTTP_PARSE_H

#include "luaio_int.h"

/* Parse head[0 .. len), which ends with the blank line. Pushes the head
** table and returns 1, or pushes nil, status, reason and returns 3. */
int luaio_http_push_head(lua_State *L, const char *head, size_t len, int is_request);

#endif
