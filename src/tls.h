/* tls.h — TLS sessions over in-memory I/O (OpenSSL).
**
** A session never touches a socket: the stream lends it the ciphertext it
** just read, and collects the ciphertext it produces from an output buffer
** it owns, so libuv keeps every socket and TLS never blocks the loop.
** Contexts (certificates, trust, ALPN) are Lua userdata shared by many
** sessions.
*/
#ifndef LUAIO_TLS_H
#define LUAIO_TLS_H

#include "luaio_int.h"

typedef struct luaio_tls luaio_tls;

enum { TLS_DONE = 0, TLS_WANT = 1, TLS_CLOSED = 2, TLS_FAILED = -1 };

/* A session on the context at stack index ctx_idx, writing to out.
** server_name (may be NULL) is sent as SNI and checked against the peer's
** certificate when the context verifies; an IP address is checked as one.
** On failure, pushes the error and returns NULL. */
luaio_tls *luaio_tls_new(lua_State *L, int ctx_idx, const char *server_name, luaio_tls_out *out);
void luaio_tls_free(luaio_tls *t);

/* Lend the ciphertext just read: the calls below consume it, without a
** copy, until they answer WANT (then all of it is consumed). */
void luaio_tls_input(luaio_tls *t, const char *p, size_t n);
size_t luaio_tls_input_left(const luaio_tls *t);          /* lent, not consumed yet */
int luaio_tls_handshake(luaio_tls *t);                          /* DONE / WANT / FAILED */
int luaio_tls_read(luaio_tls *t, char *buf, size_t cap, size_t *got);  /* DONE / WANT / CLOSED / FAILED */
int luaio_tls_write(luaio_tls *t, const char *p, size_t n);     /* DONE / FAILED */
void luaio_tls_close_notify(luaio_tls *t);

/* The TLSError of the last failure (code names the reason), and the
** session's details as a table. */
void luaio_tls_push_error(lua_State *L, luaio_tls *t);
void luaio_tls_push_info(lua_State *L, luaio_tls *t);

#endif
