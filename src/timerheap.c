/* timerheap.c — the binary min-heap of deadlines (see timerheap.h). */
#include <assert.h>
#include <stdlib.h>
#include "timerheap.h"

static int before(const luaio_timer *a, const luaio_timer *b) {
  return a->due < b->due || (a->due == b->due && (int32_t)(a->seq - b->seq) < 0);
}

static void place(luaio_timerheap *hp, uint32_t i, luaio_timer *tm) {
  hp->items[i] = tm;
  tm->slot = i + 1;
}

static void sift_up(luaio_timerheap *hp, uint32_t i) {
  luaio_timer *tm = hp->items[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (!before(tm, hp->items[parent])) break;
    place(hp, i, hp->items[parent]);
    i = parent;
  }
  place(hp, i, tm);
}

static void sift_down(luaio_timerheap *hp, uint32_t i) {
  luaio_timer *tm = hp->items[i];
  for (;;) {
    uint32_t child = 2 * i + 1;
    if (child >= hp->len) break;
    if (child + 1 < hp->len && before(hp->items[child + 1], hp->items[child])) child++;
    if (!before(hp->items[child], tm)) break;
    place(hp, i, hp->items[child]);
    i = child;
  }
  place(hp, i, tm);
}

int luaio_timerheap_push(luaio_timerheap *hp, luaio_timer *tm) {
  assert(tm->slot == 0);
  if (hp->len == hp->cap) {
    uint32_t cap = hp->cap ? hp->cap * 2 : 256;
    luaio_timer **items = realloc(hp->items, cap * sizeof *items);
    if (!items) return -1;
    hp->items = items;
    hp->cap = cap;
  }
  tm->seq = hp->seq++;
  hp->items[hp->len++] = tm;
  sift_up(hp, hp->len - 1);
  return tm->slot == 1;
}

int luaio_timerheap_remove(luaio_timerheap *hp, luaio_timer *tm) {
  assert(tm->slot >= 1 && tm->slot <= hp->len && hp->items[tm->slot - 1] == tm);
  uint32_t i = tm->slot - 1;
  luaio_timer *last = hp->items[--hp->len];
  tm->slot = 0;
  if (last != tm) {
    place(hp, i, last);
    sift_up(hp, i);
    sift_down(hp, last->slot - 1);
  }
  return i == 0;
}

void luaio_timerheap_free(luaio_timerheap *hp) {
  free(hp->items);
  hp->items = NULL;
  hp->len = hp->cap = 0;
}
