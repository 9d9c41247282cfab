/* libFuzzer target: the stream read buffer (src/readbuf.c) — readline,
** read_until, read(n), read_exactly over data arriving in arbitrary chunks.
** The input is a script: each step either delivers a chunk (through
** luaio_rb_space, as a stream's on_alloc does) or performs a read. Checks that every result is
** exactly the next bytes of the stream (nothing lost, reordered or invented)
** and that a found separator really follows a line. HTTP heads (OP_HEAD) are
** read in place (src/http_head.c): a parsed head took exactly the bytes up
** to a blank line. */
#include <stdlib.h>
#include <lauxlib.h>
#include <lualib.h>
#include "readbuf.h"
#include "http_head.h"

enum { OP_READ, OP_EXACT, OP_LINE, OP_UNTIL };

static lua_State *L;
static int op_now;

/* (nil, arg): the read op_now, as a stream's try_read makes it */
static int call_try(lua_State *L) {
  luaio_readbuf *b = lua_touserdata(L, lua_upvalueindex(1));
  size_t len;
  const char *sep;
  int n;
  switch (op_now) {
    case OP_READ: n = luaio_rb_read(L, b, (size_t)lua_tointeger(L, 2)); break;
    case OP_EXACT: n = luaio_rb_read_exactly(L, b, (size_t)lua_tointeger(L, 2)); break;
    case OP_LINE: n = luaio_rb_read_until(L, b, "\n", 1, 1); break;
    default:
      sep = lua_tolstring(L, 2, &len);
      n = luaio_rb_read_until(L, b, sep, len, 0);
  }
  if (n == RB_FAIL) abort();                  /* no read error here */
  return n < 0 ? 0 : 1;
}

static int call_head(lua_State *L) {
  luaio_readbuf *b = lua_touserdata(L, lua_upvalueindex(1));
  int n = luaio_http_read_head(L, b, lua_tostring(L, 2)[2] == 'q');
  if (n == RB_FAIL) abort();
  return n < 0 ? 0 : n;
}

/* OP_HEAD: the results agree with what was consumed */
static void check_head(lua_State *L, int base, luaio_readbuf *s, const char *consumed, size_t taken) {
  int n = lua_gettop(L) - base;
  int only_crlfs = 1;                                  /* stray CRLFs before a head may go */
  for (size_t i = 0; i < taken; i++) only_crlfs &= consumed[i] == (i % 2 ? '\n' : '\r');
  if (n == 0) { if (!only_crlfs) abort(); return; }
  if (lua_istable(L, base + 1)) {
    if (taken < 4 || memcmp(consumed + taken - 4, "\r\n\r\n", 4) != 0) abort();
    lua_getfield(L, base + 1, "head_length");
    if (lua_tointeger(L, -1) > (lua_Integer)taken) abort();
  } else if (lua_isboolean(L, base + 1)) {
    if (lua_toboolean(L, base + 1) || !s->eof || s->len != 0) abort();
  } else {
    lua_Integer status = lua_tointeger(L, base + 2);
    int whole_head = taken >= 4 && memcmp(consumed + taken - 4, "\r\n\r\n", 4) == 0;
    if (status < 400 || status > 599) abort();
    if (whole_head) return;                            /* parsed and refused */
    if (status == 431 && only_crlfs) return;           /* too large: the data stays */
    if (status == 400 && s->eof && s->len == 0) return;   /* cut short by EOF */
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) L = luaL_newstate();
  if (size < 2) return 0;
  luaio_readbuf s;
  memset(&s, 0, sizeof s);
  s.limit = 16 + data[0] * 4;
  /* the stream's bytes, in order, as delivered: what reads must give back */
  char *fed = malloc(size);
  size_t nfed = 0, nread = 0;
  size_t i = 1;
  while (i < size) {
    uint8_t cmd = data[i++];
    if (cmd < 128) {                          /* deliver up to cmd bytes */
      size_t n = cmd + 1 < size - i ? cmd + 1 : size - i;
      size_t room;
      char *dst = luaio_rb_space(&s, &room);
      if (!dst) abort();
      if (n > room) n = room;
      memcpy(dst, data + i, n);
      memcpy(fed + nfed, data + i, n);
      s.len += n;
      nfed += n;
      i += n;
      continue;
    }
    if (cmd == 255) { s.eof = 1; continue; }
    if ((cmd & 0x70) == 0x70) {               /* an HTTP head, request or response */
      lua_settop(L, 0);
      lua_pushlightuserdata(L, &s);
      lua_pushcclosure(L, call_head, 1);
      lua_pushnil(L);
      lua_pushstring(L, cmd & 1 ? "response" : "request");
      size_t before = s.len;
      if (lua_pcall(L, 2, LUA_MULTRET, 0) != LUA_OK) abort();   /* reports, never raises (no read error here) */
      size_t taken = before - s.len;
      check_head(L, 0, &s, fed + nread, taken);
      nread += taken;
      if (nread + s.len != nfed) abort();
      continue;
    }
    int op = (cmd >> 2) & 3;                  /* 0 read, 1 exact, 2 line, 3 until */
    size_t arg = cmd & 3;
    lua_settop(L, 0);
    lua_pushlightuserdata(L, &s);
    lua_pushcclosure(L, call_try, 1);
    lua_pushnil(L);
    const char *sep = "\n";
    size_t seplen = 1;
    static const char *seps[] = { "\r\n\r\n", "\n", "ab", "\0x" };
    switch (op) {
      case 0: op_now = OP_READ; lua_pushinteger(L, (lua_Integer)arg * 7 + 1); break;
      case 1: op_now = OP_EXACT; lua_pushinteger(L, (lua_Integer)arg * 5); break;
      case 2: op_now = OP_LINE; lua_pushnil(L); break;
      default:
        op_now = OP_UNTIL;
        sep = seps[arg];
        seplen = arg == 3 ? 2 : strlen(sep);
        lua_pushlstring(L, sep, seplen);
    }
    size_t before = s.len;
    int st = lua_pcall(L, 2, 1, 0);
    size_t taken = before - s.len;
    if (s.off + s.len > s.cap && s.cap) abort();
    if (st == LUA_OK && lua_isstring(L, -1)) {
      size_t rlen;
      const char *r = lua_tolstring(L, -1, &rlen);
      if (rlen > taken || memcmp(r, fed + nread, rlen) != 0) abort();     /* exactly the next bytes */
      if ((op_now == OP_LINE || op_now == OP_UNTIL) && taken > rlen && !s.eof) {
        /* consumed = line (+ '\r') + separator: the separator was there */
        if (memcmp(fed + nread + taken - seplen, sep, seplen) != 0) abort();
      }
    } else if (st != LUA_OK && op_now == OP_EXACT) {
      /* IncompleteReadError hands over what was buffered as .partial */
    } else if (st != LUA_OK && taken != 0) abort();   /* a LimitOverrunError keeps the data */
    nread += taken;
    if (nread + s.len != nfed) abort();                                   /* nothing lost */
  }
  free(fed);
  free(s.buf);
  return 0;
}
