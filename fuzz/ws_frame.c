/* libFuzzer target: the WebSocket frame codec (src/ws_frame.c), three
** properties picked by the first byte:
**
** 0. Arbitrary bytes, delivered to a read buffer in arbitrary slices (as a
**    stream's on_alloc/on_read do), read with luaio_ws_read_frame after each
**    slice and to the end after EOF. Checked against a reference decoder
**    written here, independently: a frame is returned once the whole of it
**    is there and consumed exactly (consumed bytes = the sum of the frames'
**    sizes, nothing consumed by a wait), its fields and unmasked payload are
**    those of its bytes, it breaks no rule; a refusal is a WebSocketError
**    with the close code the reference finds (1002, 1009), from the header
**    bytes there, consuming nothing; an EOF gives nil or ConnectionError.
** 1. Frames built by the builder (luaio_ws_build_header + luaio_ws_mask),
**    concatenated, sliced arbitrarily: read back exactly as built.
** 2. UTF-8: the validator over data split at a point equals its one-shot
**    result and a reference decoder's verdict; a prefix is refused exactly
**    when no completion of it is valid (it fails as early as possible).
*/
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <lualib.h>
#include "readbuf.h"
#include "ws_frame.h"
#include "slicing.h"

static lua_State *L;

/* ---- one read, as try_read makes it -------------------------------------- */

static luaio_readbuf *rb_now;
static luaio_ws_limits lim_now;
static size_t need_now;

static int call_read(lua_State *L) {
  int n = luaio_ws_read_frame(L, rb_now, &lim_now, &need_now);
  check(n != RB_FAIL);                 /* no read error here */
  return n < 0 ? 0 : n;
}

enum { R_WAIT, R_FRAME, R_NIL, R_WSERR, R_CONNERR };

/* one read: its kind; a frame's values stay at 1 .. 4 of L */
static int read_one(luaio_readbuf *b, const luaio_ws_limits *lim, int *code) {
  rb_now = b;
  lim_now = *lim;
  lua_settop(L, 0);
  lua_pushcfunction(L, call_read);
  if (lua_pcall(L, 0, LUA_MULTRET, 0) != LUA_OK) {
    check(lua_istable(L, -1));
    lua_getfield(L, -1, "name");
    const char *name = lua_tostring(L, -1);
    check(name != NULL);
    if (strcmp(name, "ConnectionError") == 0) return R_CONNERR;
    check(strcmp(name, "WebSocketError") == 0);
    lua_getfield(L, -2, "code");
    check(lua_isinteger(L, -1));
    *code = (int)lua_tointeger(L, -1);
    return R_WSERR;
  }
  if (lua_gettop(L) == 0) return R_WAIT;
  if (lua_gettop(L) == 1) { check(lua_isnil(L, 1)); return R_NIL; }
  check(lua_gettop(L) == 4);
  return R_FRAME;
}

/* ---- the reference decoder -------------------------------------------------- */

typedef struct {
  int complete;                  /* the whole header is in p[0 .. n) */
  int code;                      /* the close code of a rule broken, or 0 */
  unsigned fin, rsv1, opcode, masked;
  size_t hlen;
  uint64_t len;
  const unsigned char *key;
} ref_header;

/* Decode what of the header is there, then judge: each rule is applied once
** the bytes it looks at are in (the codec must refuse as soon as it can). */
static ref_header ref_decode(const unsigned char *p, size_t n, const luaio_ws_limits *lim) {
  ref_header r = {0};
  if (n == 0) return r;
  r.fin = p[0] >> 7;
  r.rsv1 = p[0] >> 6 & 1;
  unsigned rsv23 = p[0] >> 4 & 3;
  r.opcode = p[0] & 15;
  int control = r.opcode >= 8;
  int known_op = r.opcode <= 2 || (r.opcode >= 8 && r.opcode <= 10);
  if (rsv23 || !known_op || (r.rsv1 && (control || !lim->allow_rsv1)) || (control && !r.fin)) {
    r.code = 1002;
    return r;
  }
  if (n < 2) return r;
  r.masked = p[1] >> 7;
  unsigned len7 = p[1] & 127;
  if (r.masked != (unsigned)(lim->expect_masked != 0) || (control && len7 > 125)) {
    r.code = 1002;
    return r;
  }
  size_t lenbytes = len7 == 127 ? 8 : len7 == 126 ? 2 : 0;
  if (lenbytes == 8 && n >= 3 && p[2] >= 0x80) { r.code = 1002; return r; }
  if (n < 2 + lenbytes) return r;
  r.len = len7;
  if (lenbytes) {
    r.len = 0;
    for (size_t i = 0; i < lenbytes; i++) r.len = r.len * 256 + p[2 + i];
  }
  if (r.len > lim->max_payload) { r.code = 1009; return r; }
  r.hlen = 2 + lenbytes + (r.masked ? 4 : 0);
  if (n < r.hlen) return r;
  r.complete = 1;
  r.key = r.masked ? p + 2 + lenbytes : NULL;
  return r;
}

/* the frame on L (1 .. 4) is the one at p, whose header is h */
static void check_frame(const unsigned char *p, const ref_header *h) {
  check(lua_toboolean(L, 1) == (int)h->fin);
  check(lua_tointeger(L, 2) == (lua_Integer)h->opcode);
  check(lua_toboolean(L, 4) == (int)h->rsv1);
  size_t len;
  const unsigned char *got = (const unsigned char *)lua_tolstring(L, 3, &len);
  check(got && len == h->len);
  for (size_t i = 0; i < len; i++)
    check(got[i] == (h->key ? p[h->hlen + i] ^ h->key[i % 4] : p[h->hlen + i]));
}

/* ---- 0: arbitrary bytes ----------------------------------------------------- */

static const uint64_t max_choices[] = {0, 1, 125, 126, 127, 200, 65535, 65536, 1u << 20, UINT64_MAX >> 1};

/* read frames until a wait, a refusal or the end; 0 when the stream is done */
static int drain(luaio_readbuf *b, const luaio_ws_limits *lim, const unsigned char *fed, size_t nfed,
                 size_t *nread) {
  for (;;) {
    size_t before = b->len;
    ref_header h = ref_decode(fed + *nread, nfed - *nread, lim);
    int code = 0;
    int kind = read_one(b, lim, &code);
    size_t taken = before - b->len;
    check(*nread + before == nfed);
    switch (kind) {
      case R_WAIT:
        check(taken == 0 && !b->eof && h.code == 0);
        check(!h.complete || nfed - *nread < h.hlen + h.len);
        check(need_now == (h.complete ? h.hlen + h.len : 0));
        return 1;
      case R_FRAME:
        check(h.code == 0 && h.complete && taken == h.hlen + h.len);
        check_frame(fed + *nread, &h);
        *nread += taken;
        break;
      case R_WSERR:
        check(taken == 0 && h.code == code);
        return 0;
      case R_NIL:
        check(b->eof && before == 0 && taken == 0);
        return 0;
      default:                                          /* EOF inside a frame: all of it goes */
        check(b->eof && before > 0 && taken == before && h.code == 0);
        check(!h.complete || before < h.hlen + h.len);
        *nread += taken;
        return 0;
    }
  }
}

static void fuzz_bytes(const uint8_t *data, size_t size) {
  if (size < 4) return;
  luaio_ws_limits lim = {data[1] & 1, data[1] >> 1 & 1, max_choices[data[2] % 10]};
  rng = data[3] * 2654435761u | 1;
  unsigned style = data[1] >> 2;
  const unsigned char *s = data + 4;
  size_t n = size - 4, nfed = 0, nread = 0;
  luaio_readbuf b;
  memset(&b, 0, sizeof b);
  b.limit = 65536;
  int open = 1;
  while (open && nfed < n) {
    size_t k = slice_len(nfed, n - nfed, style);
    deliver(&b, s + nfed, k);
    nfed += k;
    open = drain(&b, &lim, s, nfed, &nread);
  }
  if (open) {
    b.eof = 1;
    open = drain(&b, &lim, s, nfed, &nread);
    check(!open);
  }
  luaio_rb_free(&b);
}

/* ---- 1: built frames come back ---------------------------------------------- */

typedef struct {
  unsigned opcode, fin, rsv1, masked;
  size_t len, off;               /* payload: len bytes of the pool at off */
} built;

#define BUDGET (1 << 17)                     /* payload bytes of one input's frames, in all */
static unsigned char pool[BUDGET];          /* payload bytes, filled once */
static unsigned char stream_buf[64 * LUAIO_WS_MAX_HEADER + BUDGET];

static void fuzz_built(const uint8_t *data, size_t size) {
  if (size < 3) return;
  static const unsigned ops[] = {0, 1, 2, 8, 9, 10};
  if (!pool[0] && !pool[1]) {
    rng = 6455;
    for (size_t i = 0; i < sizeof pool; i++) pool[i] = (unsigned char)next_rand();
  }
  rng = (uint32_t)data[1] * 2654435761u | 1;
  unsigned style = data[2];
  built frames[64];
  size_t nf = 0, total = 0, budget = BUDGET;
  unsigned char *stream = stream_buf;
  for (size_t i = 3; i + 3 <= size && nf < 64; i += 3) {
    built *f = &frames[nf++];
    unsigned a = data[i], len_sel = data[i + 1], len_lo = data[i + 2];
    f->opcode = ops[a % 6];
    f->fin = f->opcode >= 8 || (a >> 3 & 1);
    f->rsv1 = f->opcode < 8 && (a >> 4 & 1);
    f->masked = a >> 5 & 1;
    if (f->opcode >= 8) f->len = len_lo % 126;
    else if (len_sel < 128) f->len = len_lo % 126;
    else if (len_sel < 240) f->len = 126 + (len_sel * 256 + len_lo) % 70000;
    else f->len = 65530 + (len_sel - 240) * 4096 + len_lo;    /* around and past 16 bits */
    if (f->len > sizeof pool) f->len = sizeof pool;
    if (f->len > budget) f->len = f->opcode >= 8 ? 0 : budget;
    budget -= f->len;
    f->off = next_rand() % (sizeof pool - f->len + 1);
    unsigned char key[4];
    for (int k = 0; k < 4; k++) key[k] = (unsigned char)next_rand();
    size_t hl = luaio_ws_build_header(stream + total, f->opcode, f->len, (int)f->fin, (int)f->rsv1,
                                      f->masked ? key : NULL);
    check(hl >= 2 && hl <= LUAIO_WS_MAX_HEADER);
    luaio_ws_mask(stream + total + hl, pool + f->off, f->len, f->masked ? key : (const unsigned char *)"\0\0\0\0");
    total += hl + f->len;
  }
  luaio_readbuf b;
  memset(&b, 0, sizeof b);
  b.limit = 65536;
  size_t fed = 0, got = 0;
  while (got < nf) {
    luaio_ws_limits lim = {(int)frames[got].masked, 1, 1u << 20};
    int code = 0;
    int kind = read_one(&b, &lim, &code);
    if (kind == R_WAIT) {
      check(fed < total);
      size_t k = slice_len(fed, total - fed, style);
      deliver(&b, stream + fed, k);
      fed += k;
      continue;
    }
    check(kind == R_FRAME);
    const built *f = &frames[got++];
    check(lua_toboolean(L, 1) == (int)f->fin && lua_tointeger(L, 2) == (lua_Integer)f->opcode);
    check(lua_toboolean(L, 4) == (int)f->rsv1);
    size_t len;
    const char *p = lua_tolstring(L, 3, &len);
    check(len == f->len && memcmp(p, pool + f->off, len) == 0);
  }
  check(fed == total && b.len == 0);
  luaio_rb_free(&b);
}

/* ---- 2: UTF-8 -------------------------------------------------------------- */

/* The reference: decode each sequence by its lead's high bits, then refuse
** overlongs, surrogates and code points past 10FFFF. 1 when valid. */
static int ref_utf8(const unsigned char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = p[i];
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || i + len > n) return 0;
    uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (size_t k = 1; k < len; k++) {
      if ((p[i + k] & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (p[i + k] & 0x3F);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    i += len;
  }
  return 1;
}

/* some completion of p[0 .. n) (up to 3 more bytes) is valid: the
** continuation bytes tried are the edges of every range RFC 3629 uses */
static int ref_prefix(unsigned char *buf, size_t n, int depth) {
  static const unsigned char edges[] = {0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF};
  if (ref_utf8(buf, n)) return 1;
  if (depth == 3) return 0;
  for (size_t k = 0; k < sizeof edges; k++) {
    buf[n] = edges[k];
    if (ref_prefix(buf, n + 1, depth + 1)) return 1;
  }
  return 0;
}

static void fuzz_utf8(const uint8_t *data, size_t size) {
  if (size < 2) return;
  const unsigned char *s = data + 2;
  size_t n = size - 2, cut = n ? data[1] % (n + 1) : 0;
  int whole = luaio_ws_utf8(0, s, n);
  check(whole == LUAIO_UTF8_BAD || (whole >= 0 && whole < LUAIO_UTF8_STATES));
  check((whole == 0) == ref_utf8(s, n));
  int st = luaio_ws_utf8(0, s, cut);
  int split = st == LUAIO_UTF8_BAD ? st : luaio_ws_utf8(st, s + cut, n - cut);
  check(split == whole);
  if (cut <= 256) {                  /* the prefix is refused exactly when nothing completes it */
    unsigned char buf[256 + 3];
    memcpy(buf, s, cut);
    check((st == LUAIO_UTF8_BAD) == !ref_prefix(buf, cut, 0));
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) L = luaL_newstate();
  if (size < 1) return 0;
  switch (data[0] % 3) {
    case 0: fuzz_bytes(data, size); break;
    case 1: fuzz_built(data, size); break;
    default: fuzz_utf8(data, size); break;
  }
  /* this input's strings go now: libFuzzer scans for leaks after any run
  ** that leaves memory allocated, and a scan costs more than a collection */
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
