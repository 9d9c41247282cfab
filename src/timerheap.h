/*
** timerheap.h — the deadlines of a host: a binary min-heap of luaio_timer,
** ordered by due time, then by arming order (FIFO among equal deadlines).
** Plain data structure: no Lua, no libuv. sched.c keeps one per host and a
** single uv timer armed for its top (luaio_timer_arm/_disarm).
*/
#ifndef LUAIO_TIMERHEAP_H
#define LUAIO_TIMERHEAP_H

#include <stdint.h>

/* A deadline (sleep, call_later, stream timeouts), embedded in its owner. */
typedef struct luaio_timer luaio_timer;
struct luaio_timer {
  uint64_t due;          /* uv_now() milliseconds */
  uint32_t seq;          /* FIFO order among equal deadlines */
  uint32_t slot;         /* heap index + 1; 0 when not armed */
  void (*fire)(luaio_timer *tm);
};

typedef struct {
  luaio_timer **items;
  uint32_t len, cap;
  uint32_t seq;          /* the next armed timer's seq */
} luaio_timerheap;

/* Insert tm (not armed, `due` set) and stamp its seq. Returns 1 when it is
** now the earliest, 0 when not, -1 when out of memory (tm is not armed). */
int luaio_timerheap_push(luaio_timerheap *hp, luaio_timer *tm);

/* Remove tm, which must be armed. Returns 1 when it was the earliest. */
int luaio_timerheap_remove(luaio_timerheap *hp, luaio_timer *tm);

/* The earliest timer, or NULL. */
static inline luaio_timer *luaio_timerheap_top(const luaio_timerheap *hp) {
  return hp->len ? hp->items[0] : (luaio_timer *)0;
}

void luaio_timerheap_free(luaio_timerheap *hp);

#endif
