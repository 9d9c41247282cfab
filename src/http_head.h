/* http_head.h — reading an HTTP/1.1 head from a read buffer, in place. */
#ifndef LUAIO_HTTP_HEAD_H
#define LUAIO_HTTP_HEAD_H

#include "readbuf.h"

/* An HTTP head up to its blank line, parsed where it lies in b (no string
** for the head itself): pushes the results of luaio_http_push_head (the
** head table, or nil, status, reason: 431 past b->limit, 400 cut short by
** EOF) or false at a clean EOF, and returns their count; or RB_WAIT /
** RB_FAIL as the reads of readbuf.h. Stray CRLFs before a request go.
** kind HTTP_SERVER_REQUEST pushes luaio_http_push_request's results instead
** (the metatable at stack index 4; the fields' names from upvalue
** HTTP_SERVER_KEYS_UPVALUE on of the running function: the stream's hot
** methods, stream.c). */
enum { HTTP_RESPONSE, HTTP_REQUEST, HTTP_SERVER_REQUEST };
enum { HTTP_SERVER_KEYS_UPVALUE = 2 };
int luaio_http_read_head(lua_State *L, luaio_readbuf *b, int kind);

#endif
