/* slicing.h — what the fuzz harnesses that feed a read buffer in arbitrary
** slices share: the abort-on-failure check, a seeded xorshift32 for slice
** sizes, the slice length for a style, and delivering bytes into the buffer
** as the socket would (in as many pieces as its free space takes). */
#ifndef LUAIO_FUZZ_SLICING_H
#define LUAIO_FUZZ_SLICING_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "readbuf.h"

static inline void check(int ok) { if (!ok) abort(); }

static uint32_t rng;                    /* seeded from the input by each harness */
static inline uint32_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

/* the next slice at offset pos with `left` bytes to go: styles 0 (byte by
** byte) and 1 (up to 16) only over the first 4 KiB, so that large inputs do
** not cost a read per byte; 2 up to 4 KiB; 3 mixed tiny and huge */
static inline size_t slice_len(size_t pos, size_t left, unsigned style) {
  size_t n;
  if (pos >= 4096 && (style & 3) < 2) style = 2;
  switch (style & 3) {
    case 0: n = 1; break;
    case 1: n = 1 + next_rand() % 16; break;
    case 2: n = 1 + next_rand() % 4096; break;
    default: n = next_rand() % 2 ? 1 + next_rand() % 8 : 1 + next_rand() % 70000; break;
  }
  return n < left ? n : left;
}

static inline void deliver(luaio_readbuf *b, const unsigned char *p, size_t n) {
  while (n > 0) {
    size_t room;
    char *dst = luaio_rb_space(b, &room);
    check(dst != NULL);
    size_t k = n < room ? n : room;
    memcpy(dst, p, k);
    b->len += k;
    p += k;
    n -= k;
  }
}

#endif
