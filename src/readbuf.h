/* readbuf.h — a stream's read buffer and the reads that complete from it.
**
** Bytes arrive at the end (luaio_rb_space, then len += n) and leave from
** the front; readline/read_until find their separator with memchr and push
** only the result, an HTTP head is parsed where it lies (http_head.c). No
** libuv here: the buffer is read, tested and fuzzed on its own.
**
** Each luaio_rb_* read pushes its result and returns the number of values,
** or RB_WAIT (more bytes needed: nothing pushed, nothing consumed), or
** RB_FAIL (the read error b->err is to be raised: the owner knows how, e.g.
** as a TLS error). Errors of the data itself (LimitOverrunError,
** IncompleteReadError) are raised here.
*/
#ifndef LUAIO_READBUF_H
#define LUAIO_READBUF_H

#include <stdlib.h>
#include <string.h>
#include <lua.h>

typedef struct luaio_readbuf {
  char *buf;
  size_t cap, off, len;   /* unread bytes are buf[off .. off+len) */
  size_t limit;           /* line and head limit; the read-ahead size */
  int eof;                /* no more bytes will come */
  int err;                /* the read failed (a uv error): after the bytes buffered */
} luaio_readbuf;

enum { RB_WAIT = -1, RB_FAIL = -2 };

/* The unread bytes ("" before the first byte arrived). */
static inline const char *luaio_rb_data(const luaio_readbuf *b) {
  return b->buf ? b->buf + b->off : "";
}

static inline void luaio_rb_consume(luaio_readbuf *b, size_t n) {
  b->off += n;
  b->len -= n;
  if (b->len == 0) b->off = 0;
}

/* Room for at least 4 KiB more after the unread bytes; 0 when out of memory. */
static inline int luaio_rb_reserve(luaio_readbuf *b) {
  if (b->off > 0 && b->off + b->len + 4096 > b->cap) {
    memmove(b->buf, b->buf + b->off, b->len);
    b->off = 0;
  }
  if (b->cap - b->len < 4096) {
    size_t cap = b->cap ? b->cap * 2 : 16384;
    char *buf = realloc(b->buf, cap);
    if (!buf) return 0;
    b->buf = buf;
    b->cap = cap;
  }
  return 1;
}

/* Where the next bytes go, and how many fit (NULL, 0 when out of memory);
** the writer then adds what it wrote to b->len. */
static inline char *luaio_rb_space(luaio_readbuf *b, size_t *room) {
  if (!luaio_rb_reserve(b)) { *room = 0; return NULL; }
  *room = b->cap - b->off - b->len;
  return b->buf + b->off + b->len;
}

static inline void luaio_rb_free(luaio_readbuf *b) {
  free(b->buf);
  b->buf = NULL;
  b->cap = b->off = b->len = 0;
}

/* The first sep[0 .. seplen) in p[0 .. len), or NULL. */
const char *luaio_rb_find(const char *p, size_t len, const char *sep, size_t seplen);

/* The errors of the reads below, raised out of line. */
int luaio_rb_overrun(lua_State *L, const luaio_readbuf *b);           /* LimitOverrunError */
int luaio_rb_incomplete(lua_State *L, luaio_readbuf *b, size_t n);    /* IncompleteReadError */

/* The reads: inline, as they run once per read of a stream. */

/* push n bytes from the front and consume them */
static inline int luaio_rb_take(lua_State *L, luaio_readbuf *b, size_t n) {
  lua_pushlstring(L, luaio_rb_data(b), n);
  luaio_rb_consume(b, n);
  return 1;
}

/* read(max): what is there, up to max bytes; nil at EOF. */
static inline int luaio_rb_read(lua_State *L, luaio_readbuf *b, size_t max) {
  if (b->len > 0) return luaio_rb_take(L, b, max < b->len ? max : b->len);
  if (b->eof) { lua_pushnil(L); return 1; }
  return b->err ? RB_FAIL : RB_WAIT;
}

/* read_exactly(n); IncompleteReadError (with .partial) when the stream ends first. */
static inline int luaio_rb_read_exactly(lua_State *L, luaio_readbuf *b, size_t n) {
  if (b->len >= n) return luaio_rb_take(L, b, n);
  if (!b->eof && !b->err) return RB_WAIT;
  return luaio_rb_incomplete(L, b, n);
}

/* push p[0 .. n) (p: the unread bytes), less a '\r' at its end when
** strip_cr, and consume used */
static inline int luaio_rb_take_line(lua_State *L, luaio_readbuf *b, const char *p, size_t n,
                                     size_t used, int strip_cr) {
  if (strip_cr && n > 0 && p[n - 1] == '\r') n--;
  lua_pushlstring(L, p, n);
  luaio_rb_consume(b, used);
  return 1;
}

/* read_until(sep) (strip_cr: readline, "\n" without a "\r" before it);
** the rest at EOF, nil when nothing is left; LimitOverrunError past the limit. */
static inline int luaio_rb_read_until(lua_State *L, luaio_readbuf *b, const char *sep, size_t seplen,
                                      int strip_cr) {
  const char *p = luaio_rb_data(b);
  const char *hit = luaio_rb_find(p, b->len, sep, seplen);
  if (hit) {
    size_t n = (size_t)(hit - p);
    if (n > b->limit) return luaio_rb_overrun(L, b);
    return luaio_rb_take_line(L, b, p, n, n + seplen, strip_cr);
  }
  if (b->len > b->limit) return luaio_rb_overrun(L, b);
  if (!b->eof && !b->err) return RB_WAIT;
  if (b->len > 0) return luaio_rb_take_line(L, b, p, b->len, b->len, strip_cr);
  if (b->err) return RB_FAIL;
  lua_pushnil(L);
  return 1;
}

/* read_all(): everything until EOF. */
static inline int luaio_rb_read_all(lua_State *L, luaio_readbuf *b) {
  if (b->eof) return luaio_rb_take(L, b, b->len);
  return b->err ? RB_FAIL : RB_WAIT;
}

#endif
