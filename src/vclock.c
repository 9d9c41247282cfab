/*
** vclock.c — the virtual clock of luaio.testing: a host's clock that
** starts at 0 and jumps to the next deadline when the loop is idle, so that
** sleeps and timeouts take no real time and a test runs the same way each
** time.
**
** While it is on, the deadlines stay on the host's timer heap (timers.c),
** on the heap's millisecond scale, but the uv timer is not armed: an idle
** handle ticks once per loop turn (and so keeps libuv's poll from
** blocking) for as long as deadlines are pending and no native operation is
** waited on. A tick fires the deadlines that are due; when none is, it
** *jumps* to the earliest deadline and fires it, but only when
**   - no task is ready, and no task has run since the previous tick (one
**     whole turn, with a poll of I/O that did not block, found nothing to
**     do: data a peer in this loop sent has been seen by then), and
**   - no task waits on a native operation that finishes by itself: a DNS
**     lookup, a file or to_thread job, a connect, exec or a child's exit
**     (luaio_vclock_busy_begin; while one is, the idle handle is stopped
**     and the loop blocks on that work, as usual).
** Reads and writes on streams, accepts, UDP receives and signals do not hold
** the clock: their peer is either another task of the test (which the poll
** above has seen) or outside the loop, and a test that waits on an outside
** peer with a timeout wants the timeout to be virtual too. A silent peer
** with a stream timeout is thus a deterministic TimeoutError.
**
** Switching the clock on keeps the pending deadlines (from now on they are
** virtual); switching it off shifts those left so that each keeps what it
** had left to wait, in real time.
*/
#include <math.h>
#include "host.h"

static void tick(uv_idle_t *idle);

void luaio_vclock_init(luaio_host *h) {
  uv_idle_init(h->loop, &h->vclock.idle);
  h->vclock.idle.data = h;
}

void luaio_vclock_close(luaio_host *h) {
  uv_close((uv_handle_t *)&h->vclock.idle, NULL);
}

double luaio_now(luaio_host *h) {
  if (h->vclock.on) return (double)(h->vclock.ms - h->vclock.origin) / 1000.0;
  return (double)uv_hrtime() / 1e9;
}

/* Tick while there is something to jump to and nothing busy. */
void luaio_vclock_kick(luaio_host *h) {
  if (!h->vclock.on || h->closing == 2 || h->vclock.busy || !luaio_timerheap_top(&h->timers)) return;
  if (uv_is_active((uv_handle_t *)&h->vclock.idle)) return;
  h->vclock.seen = h->switches - 1;    /* the first tick only looks */
  uv_idle_start(&h->vclock.idle, tick);
}

static void tick(uv_idle_t *idle) {
  luaio_host *h = idle->data;
  luaio_timer *top = luaio_timerheap_top(&h->timers);
  if (!h->vclock.on || !top || h->vclock.busy) {
    uv_idle_stop(idle);
    return;
  }
  if (top->due > h->vclock.ms) {
    int quiet = h->ready.len == 0 && h->switches == h->vclock.seen;
    h->vclock.seen = h->switches;
    if (!quiet) return;
    h->vclock.ms = top->due;
  }
  luaio_timers_fire(h, h->vclock.ms);
  h->vclock.seen = h->switches;
}

luaio_host *luaio_vclock_busy_begin(luaio_host *h) {
  if (!h->vclock.on) return NULL;
  h->vclock.busy++;
  return h;
}

void luaio_vclock_busy_end(luaio_host *h) {
  if (--h->vclock.busy == 0) luaio_vclock_kick(h);
}

static void clock_on(luaio_host *h) {
  uv_update_time(h->loop);
  h->vclock.ms = h->vclock.origin = uv_now(h->loop);
  h->vclock.on = 1;
  uv_timer_stop(&h->timer);
  h->armed_due = 0;
  luaio_vclock_kick(h);
}

static void clock_off(luaio_host *h) {
  uv_update_time(h->loop);
  uint64_t shift = uv_now(h->loop) - h->vclock.ms;    /* modulo 2^64: may go back */
  for (uint32_t i = 0; i < h->timers.len; i++) h->timers.items[i]->due += shift;
  h->vclock.on = 0;
  uv_idle_stop(&h->vclock.idle);
  luaio_timers_rearm(h);
}

void luaio_vclock_switch(luaio_host *h, int on) {
  if (on && !h->vclock.on) clock_on(h);
  else if (!on && h->vclock.on) clock_off(h);
}

/* core.set_clock(virtual): switch the host's clock; -> whether it was virtual */
static int l_set_clock(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  int was = h->vclock.on;
  luaio_vclock_switch(h, lua_toboolean(L, 1));
  lua_pushboolean(L, was);
  return 1;
}

static int l_clock_virtual(lua_State *L) {
  lua_pushboolean(L, luaio_upvalue_host(L)->vclock.on);
  return 1;
}

/* A time of aio.now() on the virtual clock, on the heap's scale. */
static uint64_t to_ms(luaio_host *h, double sec) {
  double ms = ceil(sec * 1000.0 - 1e-6);
  return h->vclock.origin + (uint64_t)(ms > 0 ? ms : 0);
}

/* core.clock_fire(until): the earliest deadlines, if due by `until` (a time
** of aio.now()): the clock moves to them and they fire. -> whether any did */
static int l_clock_fire(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  uint64_t until = to_ms(h, luaio_checknumber(L, 1));
  luaio_timer *top = luaio_timerheap_top(&h->timers);
  int fire = h->vclock.on && top && top->due <= until;
  if (fire) {
    if (top->due > h->vclock.ms) h->vclock.ms = top->due;
    luaio_timers_fire(h, h->vclock.ms);
  }
  lua_pushboolean(L, fire);
  return 1;
}

/* core.clock_set(t): move the virtual clock forward to t (never back) */
static int l_clock_set(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  uint64_t ms = to_ms(h, luaio_checknumber(L, 1));
  if (h->vclock.on && ms > h->vclock.ms) h->vclock.ms = ms;
  return 0;
}

void luaio_open_vclock(lua_State *L, luaio_host *h) {
  static const luaL_Reg funcs[] = {
    {"set_clock", l_set_clock}, {"clock_virtual", l_clock_virtual},
    {"clock_fire", l_clock_fire}, {"clock_set", l_clock_set}, {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
