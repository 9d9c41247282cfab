/*
** stream_tls.c — TLS on streams: the session (tls.c) between the socket and
** the read buffer. Ciphertext is read into the host's scratch buffer and
** decrypted from there into the read buffer a plain stream uses, so every
** read works unchanged; writes encrypt into the host's TLS output buffer,
** then go out as a plain stream's do. The handshake is waited for as a read.
*/
#include <stdlib.h>
#include <string.h>
#include "stream_int.h"

/* Ciphertext in: advance the handshake, then decrypt all that is complete
** into the read buffer (the read-ahead limit stops the socket, not this). */
void stream_tls_input(stream *s, const char *p, size_t n) {
  luaio_tls *t = s->tls;
  if (s->tls_failed) return;
  luaio_tls_input(t, p, n);
  int r = TLS_DONE;
  if (s->handshaking) {
    r = luaio_tls_handshake(t);
    if (r == TLS_DONE) s->handshaking = 0;
  }
  while (r == TLS_DONE && !s->handshaking) {
    size_t got = 0, room;
    char *dst = luaio_rb_space(&s->rb, &room);
    if (!dst) { s->rb.err = UV_ENOMEM; break; }
    r = luaio_tls_read(t, dst, room, &got);
    s->rb.len += got;
  }
  if (r == TLS_CLOSED) s->rb.eof = 1;
  if (r == TLS_FAILED) { s->tls_failed = 1; s->rb.err = UV_EPROTO; }
  luaio_tls_input(t, NULL, 0);   /* after a close or a failure, the rest is moot */
  stream_tls_flush(s);          /* handshake replies, alerts, key updates */
  if (s->rb.eof || s->rb.err) stream_stop_reading(s);
}

/* Send the ciphertext the TLS session produced (after a write error there
** is nowhere to send it). */
void stream_tls_flush(stream *s) {
  luaio_tls_out *o = &s->h->tls_out;
  if (o->len > 0 && !s->write_err) {
    uv_buf_t b = uv_buf_init(o->data, (unsigned)o->len);
    stream_send(s, &b, 1, o->len);
  }
  o->len = 0;
}

static int raise_tls_failure(lua_State *L, stream *s) {
  s->tls_failed = 1;
  stream_tls_flush(s);          /* the alert, if any */
  luaio_tls_push_error(L, s->tls);
  return lua_error(L);
}

int stream_tls_write(lua_State *L, stream *s, const uv_buf_t *bufs, int n, size_t total) {
  if (s->tls_failed) return raise_tls_failure(L, s);
  if (s->handshaking) return luaio_error(L, "TLSError", "HANDSHAKE_NOT_DONE", "write before the TLS handshake finished");
  /* small pieces (an HTTP head and its body) go out as one record: one
  ** encryption and one record header instead of one per piece */
  char *joined = n > 1 && total <= 16384 ? stream_scratch(s->h) : NULL;
  if (joined) {
    size_t pos = 0;
    for (int i = 0; i < n; i++) {
      memcpy(joined + pos, bufs[i].base, bufs[i].len);
      pos += bufs[i].len;
    }
    if (luaio_tls_write(s->tls, joined, pos) != TLS_DONE) return raise_tls_failure(L, s);
    stream_tls_flush(s);
  } else {
    /* 64 KiB at a time, sent as it is encrypted: the output buffer stays small */
    for (int i = 0; i < n && !s->write_err; i++) {
      const char *p = bufs[i].base;
      size_t len = bufs[i].len;
      for (size_t off = 0; off < len && !s->write_err; off += SCRATCH_SIZE) {
        size_t k = len - off < SCRATCH_SIZE ? len - off : SCRATCH_SIZE;
        if (luaio_tls_write(s->tls, p + off, k) != TLS_DONE) return raise_tls_failure(L, s);
        stream_tls_flush(s);
      }
    }
  }
  return s->write_err;
}

int stream_raise_read_error(lua_State *L, stream *s) {
  if (s->tls_failed) {
    luaio_tls_push_error(L, s->tls);
    return lua_error(L);
  }
  return stream_raise_uv(L, s->rb.err, "read");
}

/* the handshake as a read: 0 once done, RB_WAIT before */
int stream_handshake_state(lua_State *L, stream *s) {
  if (s->rb.err) return RB_FAIL;
  if (!s->handshaking) return 0;
  if (s->rb.eof)
    return luaio_error(L, "TLSError", "UNEXPECTED_EOF_WHILE_READING",
                       "the peer closed the connection during the TLS handshake");
  return RB_WAIT;
}

/* _start_tls(context, server_name) ⏸ : the handshake, waited for as a read */
int stream_l_start_tls(lua_State *L) {
  stream *s = stream_check(L, 1);
  const char *name = lua_isnoneornil(L, 3) ? NULL : luaio_checkcstring(L, 3);
  if (s->tls) return luaL_error(L, "the stream already speaks TLS");
  if (s->reader) return luaL_error(L, "another task is already reading from this stream");
  luaio_need_task(L, "start_tls");
  luaio_tls *t = luaio_tls_new(L, 2, name, &s->h->tls_out);
  if (!t) return lua_error(L);
  s->tls = t;
  s->handshaking = 1;
  /* bytes read ahead already are the peer's first handshake bytes (STARTTLS):
  ** out of the read buffer first, since the plaintext will land there */
  size_t ahead = s->rb.len;
  char *early = ahead ? malloc(ahead) : NULL;
  if (ahead && !early) s->rb.err = UV_ENOMEM;
  if (early) memcpy(early, s->rb.buf + s->rb.off, ahead);
  luaio_rb_consume(&s->rb, ahead);
  stream_tls_input(s, early, early ? ahead : 0);   /* with nothing: a client speaks first */
  free(early);
  lua_settop(L, 1);
  return stream_do_read(L, OP_HANDSHAKE);
}

/* _start_tls_blocker() -> why start_tls cannot start now, or nil (the Lua
** half asks first: a misuse must not close the stream as a failed
** handshake does) */
int stream_l_start_tls_blocker(lua_State *L) {
  stream *s = stream_check(L, 1);
  if (s->tls) lua_pushliteral(L, "the stream already speaks TLS");
  else if (s->reader) lua_pushliteral(L, "another task is already reading from this stream");
  else lua_pushnil(L);
  return 1;
}

int stream_l_tls_info(lua_State *L) {
  stream *s = stream_check(L, 1);
  if (!s->tls || s->handshaking || s->tls_failed) lua_pushnil(L);
  else luaio_tls_push_info(L, s->tls);
  return 1;
}
