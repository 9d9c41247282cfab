/* resp.h — Redis replies (RESP2 and RESP3) parsed where they lie in a
** stream's read buffer (resp.c), and the scan that finds where one ends.
**
** A reply is taken in two passes: luaio_resp_scan walks forward over the
** bytes until the whole reply is there (resuming where it stopped when more
** bytes arrive, so a large array coming in pieces is scanned once), then
** luaio_resp_read decodes it into Lua values and consumes it. No libuv
** here: the scan is fuzzed on its own (fuzz/resp.c). */
#ifndef LUAIO_RESP_H
#define LUAIO_RESP_H

#include <stddef.h>
#include <stdint.h>
#include "readbuf.h"

#define LUAIO_RESP_MAX_DEPTH 64        /* nested aggregates deeper than this: refused */
#define LUAIO_RESP_MAX_LINE 65536      /* a type line ("+OK", "*3", "-ERR ...") longer: refused */

enum { LUAIO_RESP_DONE = 0, LUAIO_RESP_MORE = 1, LUAIO_RESP_BAD = 2 };

typedef struct luaio_resp_state {
  size_t pos;                           /* the scan is complete up to here */
  size_t line_from;                     /* the CRLF search resumes here (0: at pos) */
  int depth;                            /* open aggregates */
  int64_t left[LUAIO_RESP_MAX_DEPTH];   /* elements each still waits for */
  unsigned char attr[LUAIO_RESP_MAX_DEPTH];   /* the level is an attribute (|) */
} luaio_resp_state;

static inline void luaio_resp_scan_init(luaio_resp_state *st) {
  st->pos = st->line_from = 0;
  st->depth = 0;
}

/* Scan p[0 .. n) on from st: DONE (the reply is p[0 .. st->pos)), MORE (wait;
** *need: the total size known to be needed, or 0), or BAD (*why says why). */
int luaio_resp_scan(const char *p, size_t n, luaio_resp_state *st, uint64_t max_bulk,
                    size_t *need, const char **why);

/* Decode a reply that luaio_resp_scan found complete in p[0 .. len): push it.
** Returns its kind: 0 a value, 1 a top-level error reply, 2 a push (>). */
int luaio_resp_push(lua_State *L, const char *p, size_t len);

/* The read of stream:_read_resp (stream_read.c): one whole reply from the
** buffer, pushed (-> value [, "error" | "push"]; nil, "eof" at a clean EOF),
** or RB_WAIT / RB_FAIL as readbuf.h's reads; ProtocolError on bad data. */
int luaio_resp_read(lua_State *L, luaio_readbuf *b, luaio_resp_state *st, uint64_t max_bulk,
                    size_t *need);

#endif
