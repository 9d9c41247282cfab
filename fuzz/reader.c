/* libFuzzer target: the stream read buffer (src/stream.c) — readline,
** read_until, read(n), read_exactly over data arriving in arbitrary chunks.
** The input is a script: each step either delivers a chunk (through the real
** on_alloc buffer management) or performs a read. Checks that every result is
** exactly the next bytes of the stream (nothing lost, reordered or invented)
** and that a found separator really follows a line. HTTP heads (OP_HEAD) are
** read in place: a parsed head took exactly the bytes up to a blank line. */
#include "../src/stream.c"
#include <lualib.h>
#include <stdlib.h>

static lua_State *L;
static int op_now;

static int call_try(lua_State *L) {
  stream *s = lua_touserdata(L, lua_upvalueindex(1));
  return try_read(L, s, op_now) < 0 ? 0 : 1;
}

static int call_head(lua_State *L) {
  stream *s = lua_touserdata(L, lua_upvalueindex(1));
  int n = try_read(L, s, OP_HEAD);
  return n < 0 ? 0 : n;
}

/* OP_HEAD: the results agree with what was consumed */
static void check_head(lua_State *L, int base, stream *s, const char *consumed, size_t taken) {
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
  stream s;
  memset(&s, 0, sizeof s);
  s.limit = 16 + data[0] * 4;
  uv_handle_t fake;
  fake.data = &s;
  /* the stream's bytes, in order, as delivered: what reads must give back */
  char *fed = malloc(size);
  size_t nfed = 0, nread = 0;
  size_t i = 1;
  while (i < size) {
    uint8_t cmd = data[i++];
    if (cmd < 128) {                          /* deliver up to cmd bytes */
      size_t n = cmd + 1 < size - i ? cmd + 1 : size - i;
      uv_buf_t b;
      on_alloc(&fake, 65536, &b);
      if (n > b.len) n = b.len;
      memcpy(b.base, data + i, n);
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
