/* ws_frame.h — the WebSocket frame codec (RFC 6455 §5) of ws_frame.c: a
** frame header parser and a frame reader that works on a stream's read
** buffer in place (as http_head.h does for HTTP heads), the masking, the
** header builder and the incremental UTF-8 check of text messages. No
** libuv here: stream_read.c drives the reader, fuzz/ws_frame.c fuzzes it. */
#ifndef LUAIO_WS_FRAME_H
#define LUAIO_WS_FRAME_H

#include <stdint.h>
#include "readbuf.h"

#define LUAIO_WS_MAX_HEADER 14     /* 2 + 8 (64-bit length) + 4 (mask key) */

/* What the reading side accepts. */
typedef struct {
  int expect_masked;       /* a server reads masked frames, a client unmasked ones */
  int allow_rsv1;          /* an extension (permessage-deflate) gave RSV1 a meaning */
  uint64_t max_payload;    /* larger payloads: 1009, decided from the header */
} luaio_ws_limits;

typedef struct {
  unsigned fin, rsv1, opcode, masked;
  unsigned hlen;           /* header bytes: 2 .. 14 */
  uint64_t len;            /* payload bytes */
  unsigned char key[4];    /* the mask key, when masked */
} luaio_ws_header;

enum { LUAIO_WS_MORE = -1 };

/* Parse the frame header at p[0 .. n): 0 with *h filled when it is whole,
** LUAIO_WS_MORE when more bytes are needed and those there break no rule,
** or the close code of the first rule broken (1002, 1009) with *why set.
** A violation is reported as soon as the bytes that show it are there. */
int luaio_ws_parse_header(const unsigned char *p, size_t n, const luaio_ws_limits *lim,
                          luaio_ws_header *h, const char **why);

/* One frame from the front of b, as stream:_read_ws_frame: pushes fin,
** opcode, payload (unmasked), rsv1 and consumes the frame (4), or pushes
** nil at a clean EOF (1); raises WebSocketError {code = 1002 | 1009} for a
** header that breaks a rule, ConnectionError for an EOF inside a frame;
** else RB_WAIT (nothing consumed; *need = the whole frame's size once its
** header is in, else 0) or RB_FAIL (b->err is to be raised). */
int luaio_ws_read_frame(lua_State *L, luaio_readbuf *b, const luaio_ws_limits *lim, size_t *need);

/* dst[i] = src[i] ^ key[i % 4] for i < n; dst == src masks in place. */
void luaio_ws_mask(unsigned char *dst, const unsigned char *src, size_t n, const unsigned char key[4]);

/* Write a frame header to out (LUAIO_WS_MAX_HEADER bytes of room) and return
** its size; key: the 4-byte mask key, or NULL for an unmasked frame. */
size_t luaio_ws_build_header(unsigned char *out, unsigned opcode, uint64_t len, int fin, int rsv1,
                             const unsigned char *key);

/* UTF-8 (RFC 3629) checked incrementally: the state after p[0 .. n) when it
** started in `state` (0: at a character boundary; 1 .. 7: inside one), or
** LUAIO_UTF8_BAD as soon as a byte cannot continue a valid text. */
enum { LUAIO_UTF8_BAD = -1, LUAIO_UTF8_STATES = 8 };
int luaio_ws_utf8(int state, const unsigned char *p, size_t n);

#endif
