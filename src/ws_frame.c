/*
** ws_frame.c — the native half of WebSocket (RFC 6455): frames in and out,
** the UTF-8 check of text messages and the handshake's two digests. The
** protocol itself (messages, control frames, closing) is Lua's
** (lua/luaio/ws/); this file only does what is per byte.
**
** Reading (stream:_read_ws_frame, driven by stream_read.c): the frame is
** parsed where it lies in the stream's read buffer, as an HTTP head is
** (http_head.c). The header is checked as soon as its bytes are there, so a
** broken rule or a payload over the limit is refused before any of the
** payload is waited for. A whole frame is unmasked in place, a word at a
** time, and becomes a Lua string with its one copy. A frame that is not
** whole yet leaves the buffer as it was: a cancelled read loses nothing.
**
**   core.ws_frame(opcode, payload, fin, rsv1, masked) -> header, body
**   core.ws_utf8(state, data [, final]) -> state | false
**   core.ws_accept(key) -> the Sec-WebSocket-Accept value for key
**   core.ws_key() -> a new random Sec-WebSocket-Key
**
** Mask keys and handshake keys come from OpenSSL's RAND_bytes, drawn in
** batches: RFC 6455 §5.3 wants mask keys the peer cannot predict, and one
** RAND_bytes call per small frame would cost more than the frame.
*/
#include <string.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include "luaio_int.h"
#include "ws_frame.h"

/* ---- the header ----------------------------------------------------------- */

static int refuse(const char **why, int code, const char *reason) {
  *why = reason;
  return code;
}

/* 3-7 (data) and 11-15 (control) have no meaning without an extension */
static int reserved_opcode(unsigned op) { return (op >= 3 && op <= 7) || op >= 11; }

/* the rules of the first byte: RSV bits, opcode, fragmented control frames */
static int check_first(unsigned b0, const luaio_ws_limits *lim, const char **why) {
  unsigned op = b0 & 0x0F;
  if (b0 & 0x30) return refuse(why, 1002, "RSV2 or RSV3 set (no extension defines them)");
  if (reserved_opcode(op)) return refuse(why, 1002, "reserved opcode");
  if (op >= 8 && (b0 & 0x40)) return refuse(why, 1002, "RSV1 set on a control frame");
  if ((b0 & 0x40) && !lim->allow_rsv1) return refuse(why, 1002, "RSV1 set without an extension that defines it");
  if (op >= 8 && !(b0 & 0x80)) return refuse(why, 1002, "fragmented control frame");
  return 0;
}

/* the rules of the second byte: masking, the length of control frames */
static int check_second(unsigned b0, unsigned b1, const luaio_ws_limits *lim, const char **why) {
  if (!(b1 & 0x80) != !lim->expect_masked)
    return refuse(why, 1002, lim->expect_masked ? "unmasked frame from a client"
                                                : "masked frame from a server");
  if ((b0 & 0x0F) >= 8 && (b1 & 0x7F) > 125)
    return refuse(why, 1002, "control frame with a payload over 125 bytes");
  return 0;
}

static uint64_t read_be(const unsigned char *p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) v = v << 8 | p[i];
  return v;
}

int luaio_ws_parse_header(const unsigned char *p, size_t n, const luaio_ws_limits *lim,
                          luaio_ws_header *h, const char **why) {
  if (n < 1) return LUAIO_WS_MORE;
  int r = check_first(p[0], lim, why);
  if (r || n < 2) return r ? r : LUAIO_WS_MORE;
  if ((r = check_second(p[0], p[1], lim, why))) return r;
  unsigned len7 = p[1] & 0x7F;
  int extra = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;    /* extended length bytes */
  if (extra == 8 && n >= 3 && (p[2] & 0x80))
    return refuse(why, 1002, "64-bit payload length with its most significant bit set");
  if (n < 2 + (size_t)extra) return LUAIO_WS_MORE;
  /* non-minimal encodings (126 with a length under 126...) are accepted:
  ** the RFC does not ask a receiver to refuse them */
  uint64_t len = extra ? read_be(p + 2, extra) : len7;
  /* the size_t bound matters where size_t has 32 bits: such a frame could
  ** not be buffered at all */
  if (len > lim->max_payload || len > SIZE_MAX - LUAIO_WS_MAX_HEADER)
    return refuse(why, 1009, "frame payload larger than the limit");
  h->fin = p[0] >> 7;
  h->rsv1 = (p[0] >> 6) & 1;
  h->opcode = p[0] & 0x0F;
  h->masked = p[1] >> 7;
  h->len = len;
  h->hlen = 2 + (unsigned)extra + (h->masked ? 4 : 0);
  if (n < h->hlen) return LUAIO_WS_MORE;
  if (h->masked) memcpy(h->key, p + 2 + extra, 4);
  return 0;
}

/* ---- masking -------------------------------------------------------------- */

/* Byte by byte up to dst's 8-byte alignment, then 8 bytes at a time with
** the key rotated to the position reached (8 is a multiple of 4, so one
** rotated word serves every word), then the tail where the index says. */
void luaio_ws_mask(unsigned char *dst, const unsigned char *src, size_t n, const unsigned char key[4]) {
  size_t i = 0, head = (size_t)(-(uintptr_t)dst & 7);
  if (head > n) head = n;
  for (; i < head; i++) dst[i] = src[i] ^ key[i & 3];
  if (n - i >= 8) {
    unsigned char k8[8];
    for (size_t j = 0; j < 8; j++) k8[j] = key[(i + j) & 3];
    uint64_t k, w;
    memcpy(&k, k8, 8);             /* byte order: the key's bytes lie as the data's do */
    for (; n - i >= 8; i += 8) {
      memcpy(&w, src + i, 8);      /* memcpy: no aliasing trouble, one load at -O2 */
      w ^= k;
      memcpy(dst + i, &w, 8);
    }
  }
  for (; i < n; i++) dst[i] = src[i] ^ key[i & 3];
}

/* ---- reading a frame from the buffer --------------------------------------- */

static int raise_violation(lua_State *L, int code, const char *why) {
  luaio_push_error(L, "WebSocketError", NULL, "%s", why);
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "code");
  return lua_error(L);
}

/* The whole frame: unmasked in place, consumed, pushed. Consumed before the
** push, which may raise (memory): the buffer's bytes stay where they are
** until the next read, and losing one frame to an out-of-memory error
** beats leaving it unmasked in the buffer for a retry to unmask again. */
static int push_frame(lua_State *L, luaio_readbuf *b, const luaio_ws_header *h) {
  unsigned char *payload = (unsigned char *)b->buf + b->off + h->hlen;
  size_t n = (size_t)h->len;
  if (h->masked) luaio_ws_mask(payload, payload, n, h->key);
  luaio_rb_consume(b, h->hlen + n);
  lua_pushboolean(L, h->fin);
  lua_pushinteger(L, h->opcode);
  lua_pushlstring(L, (const char *)payload, n);
  lua_pushboolean(L, h->rsv1);
  return 4;
}

/* Not a whole frame: wait, the read error, a clean EOF, or an EOF that cut
** a frame (what was there of it goes: nothing can complete it). */
static int incomplete(lua_State *L, luaio_readbuf *b) {
  if (!b->eof && !b->err) return RB_WAIT;
  if (b->err) return RB_FAIL;
  if (b->len == 0) { lua_pushnil(L); return 1; }
  luaio_rb_consume(b, b->len);
  return luaio_error(L, "ConnectionError", "ECONNRESET", "connection closed inside a WebSocket frame");
}

int luaio_ws_read_frame(lua_State *L, luaio_readbuf *b, const luaio_ws_limits *lim, size_t *need) {
  luaio_ws_header h;
  const char *why = NULL;
  const unsigned char *p = b->len ? (const unsigned char *)b->buf + b->off : NULL;
  int r = luaio_ws_parse_header(p, b->len, lim, &h, &why);
  *need = 0;
  if (r > 0) return raise_violation(L, r, why);
  if (r == 0) {
    if (b->len - h.hlen >= h.len) return push_frame(L, b, &h);
    *need = h.hlen + (size_t)h.len;
  }
  return incomplete(L, b);
}

/* ---- building a frame ------------------------------------------------------- */

size_t luaio_ws_build_header(unsigned char *out, unsigned opcode, uint64_t len, int fin, int rsv1,
                             const unsigned char *key) {
  size_t n = 2;
  out[0] = (unsigned char)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0F));
  unsigned char mask = key ? 0x80 : 0;
  if (len <= 125) {
    out[1] = (unsigned char)(mask | len);
  } else {
    int bytes = len <= 0xFFFF ? 2 : 8;       /* the minimal encoding, as §5.2 asks of a sender */
    out[1] = (unsigned char)(mask | (bytes == 2 ? 126 : 127));
    for (int i = bytes - 1; i >= 0; i--, len >>= 8) out[2 + i] = (unsigned char)(len & 0xFF);
    n += (size_t)bytes;
  }
  if (key) { memcpy(out + n, key, 4); n += 4; }
  return n;
}

/* n random bytes from a per-thread batch of RAND_bytes output (n <= 64) */
static int random_bytes(unsigned char *out, size_t n) {
  static _Thread_local unsigned char pool[256];
  static _Thread_local size_t used = sizeof pool;
  if (sizeof pool - used < n) {
    if (RAND_bytes(pool, (int)sizeof pool) != 1) return 0;
    used = 0;
  }
  memcpy(out, pool + used, n);
  memset(pool + used, 0, n);     /* a key handed out is not kept */
  used += n;
  return 1;
}

static int raise_no_random(lua_State *L) {
  return luaio_error(L, "OSError", "EIO", "no random bytes (OpenSSL RAND_bytes failed)");
}

/* ws_frame(opcode, payload, fin, rsv1, masked) -> header, body: body is the
** payload itself when unmasked, a masked copy when masked */
static int l_ws_frame(lua_State *L) {
  lua_Integer op = luaio_checkinteger(L, 1);
  if (op < 0 || op > 15) return luaio_argerror(L, 1, "opcode must be 0 .. 15");
  size_t len;
  const char *payload = luaio_checklstring(L, 2, &len);
  int fin = lua_toboolean(L, 3), rsv1 = lua_toboolean(L, 4), masked = lua_toboolean(L, 5);
  unsigned char header[LUAIO_WS_MAX_HEADER], key[4];
  if (masked && !random_bytes(key, 4)) return raise_no_random(L);
  size_t hlen = luaio_ws_build_header(header, (unsigned)op, len, fin, rsv1, masked ? key : NULL);
  lua_pushlstring(L, (const char *)header, hlen);
  if (!masked || len == 0) {
    lua_pushvalue(L, 2);
    return 2;
  }
  luaL_Buffer B;
  unsigned char *body = (unsigned char *)luaL_buffinitsize(L, &B, len);
  luaio_ws_mask(body, (const unsigned char *)payload, len, key);
  luaL_pushresultsize(&B, len);
  return 2;
}

/* ---- UTF-8 ------------------------------------------------------------------ */

/* States: 0 at a boundary; 1, 2, 3 continuation bytes (80..BF) still due;
** 4..7 the second byte of the leads whose second byte has a narrower range
** (RFC 3629 §4): E0 (A0..BF, no overlongs), ED (80..9F, no surrogates),
** F0 (90..BF, no overlongs), F4 (80..8F, nothing above 10FFFF). */
static const unsigned char cont_lo[LUAIO_UTF8_STATES] = {0, 0x80, 0x80, 0x80, 0xA0, 0x80, 0x90, 0x80};
static const unsigned char cont_hi[LUAIO_UTF8_STATES] = {0, 0xBF, 0xBF, 0xBF, 0xBF, 0x9F, 0xBF, 0x8F};
static const unsigned char cont_next[LUAIO_UTF8_STATES] = {0, 0, 1, 2, 1, 1, 2, 2};

/* the state after a lead byte >= 0x80 (C0, C1 and F5..FF never start a
** character; 80..BF only continue one) */
static int lead_state(unsigned c) {
  if (c >= 0xC2 && c <= 0xDF) return 1;
  if (c == 0xE0) return 4;
  if (c == 0xED) return 5;
  if (c >= 0xE1 && c <= 0xEF) return 2;
  if (c == 0xF0) return 6;
  if (c >= 0xF1 && c <= 0xF3) return 3;
  if (c == 0xF4) return 7;
  return LUAIO_UTF8_BAD;
}

/* at a boundary: past the ASCII run at p[i ..], 8 bytes at a time */
static size_t skip_ascii(const unsigned char *p, size_t i, size_t n) {
  uint64_t w;
  while (n - i >= 8) {
    memcpy(&w, p + i, 8);
    if (w & UINT64_C(0x8080808080808080)) break;
    i += 8;
  }
  while (i < n && p[i] < 0x80) i++;
  return i;
}

int luaio_ws_utf8(int state, const unsigned char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (state == 0) {
      i = skip_ascii(p, i, n);
      if (i == n) break;
      state = lead_state(p[i++]);
      if (state == LUAIO_UTF8_BAD) return state;
      continue;
    }
    unsigned c = p[i++];
    if (c < cont_lo[state] || c > cont_hi[state]) return LUAIO_UTF8_BAD;
    state = cont_next[state];
  }
  return state;
}

/* ws_utf8(state, data [, final]) -> state | false: data continues a text
** from state (0 at its start); final: it ends there, inside a character is
** an error */
static int l_ws_utf8(lua_State *L) {
  lua_Integer state = luaio_checkinteger(L, 1);
  if (state < 0 || state >= LUAIO_UTF8_STATES) return luaio_argerror(L, 1, "not a UTF-8 state");
  size_t len;
  const char *data = luaio_checklstring(L, 2, &len);
  int r = luaio_ws_utf8((int)state, (const unsigned char *)data, len);
  if (r == LUAIO_UTF8_BAD || (r != 0 && lua_toboolean(L, 3))) lua_pushboolean(L, 0);
  else lua_pushinteger(L, r);
  return 1;
}

/* ---- the handshake ------------------------------------------------------------ */

static void push_base64(lua_State *L, const unsigned char *p, int n) {
  unsigned char out[64];         /* 4 * ceil(n / 3) + 1: enough for the 20 and 16 bytes here */
  int len = EVP_EncodeBlock(out, p, n);
  lua_pushlstring(L, (const char *)out, (size_t)len);
}

/* ws_accept(key) -> base64(SHA-1(key .. the GUID of RFC 6455 §1.3)) */
static int l_ws_accept(lua_State *L) {
  luaio_checkstring(L, 1);
  lua_settop(L, 1);
  lua_pushliteral(L, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
  lua_concat(L, 2);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  if (EVP_Digest(s, len, md, &mdlen, EVP_sha1(), NULL) != 1)
    return luaio_error(L, "OSError", "EIO", "SHA-1 failed (OpenSSL EVP_Digest)");
  push_base64(L, md, (int)mdlen);
  return 1;
}

/* ws_key() -> base64 of 16 random bytes (RFC 6455 §4.1) */
static int l_ws_key(lua_State *L) {
  unsigned char nonce[16];
  if (!random_bytes(nonce, sizeof nonce)) return raise_no_random(L);
  push_base64(L, nonce, (int)sizeof nonce);
  return 1;
}

void luaio_open_ws(lua_State *L, luaio_host *h) {
  (void)h;
  static const luaL_Reg funcs[] = {
    {"ws_frame", l_ws_frame}, {"ws_utf8", l_ws_utf8}, {"ws_accept", l_ws_accept},
    {"ws_key", l_ws_key}, {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
}
