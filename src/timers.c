/*
** timers.c — the host's deadlines on its loop: the timer heap
** (timerheap.c) behind one uv timer, armed for the earliest deadline; and
** core.call_later, a one-shot callback for Lua policy code.
*/
#include <math.h>
#include <string.h>
#include "host.h"

static void on_timer(uv_timer_t *handle);

/* Keep the uv timer armed for the earliest deadline, touching it only
** when that deadline changes. */
static void rearm(luaio_host *h) {
  if (h->vclock.on) { luaio_vclock_kick(h); return; }   /* vclock.c fires them */
  luaio_timer *top = luaio_timerheap_top(&h->timers);
  if (!top) {
    if (h->armed_due) { uv_timer_stop(&h->timer); h->armed_due = 0; }
    return;
  }
  if (top->due == h->armed_due) return;
  uint64_t now = uv_now(h->loop);
  uv_timer_start(&h->timer, on_timer, top->due > now ? top->due - now : 0, 0);
  h->armed_due = top->due;
}

uint64_t luaio_timer_due_in(luaio_host *h, double seconds) {
  /* whole milliseconds, not one more for a product's rounding (0.7 s: 700) */
  double ms = ceil(seconds * 1000.0 - 1e-6);
  if (ms > 9e15) ms = 9e15;
  uint64_t now;
  if (h->vclock.on) now = h->vclock.ms;
  else {
    uv_update_time(h->loop);
    now = uv_now(h->loop);
  }
  return now + (uint64_t)(ms > 0 ? ms : 0);
}

void luaio_timer_arm_due(luaio_host *h, luaio_timer *tm, uint64_t due) {
  if (tm->slot) luaio_timer_disarm(h, tm);
  tm->due = due;
  int first = luaio_timerheap_push(&h->timers, tm);
  if (first < 0) luaio_oom("the timer heap");
  if (first) rearm(h);
}

void luaio_timer_arm(luaio_host *h, luaio_timer *tm, double seconds) {
  luaio_timer_arm_due(h, tm, luaio_timer_due_in(h, seconds));
}

void luaio_timer_disarm(luaio_host *h, luaio_timer *tm) {
  if (tm->slot && luaio_timerheap_remove(&h->timers, tm)) rearm(h);
}

void luaio_timers_rearm(luaio_host *h) {
  h->armed_due = 0;
  uv_timer_stop(&h->timer);
  rearm(h);
}

/* Fire the deadlines up to now in order (equal ones in arming order). */
void luaio_timers_fire(luaio_host *h, uint64_t now) {
  luaio_timer *tm;
  while ((tm = luaio_timerheap_top(&h->timers)) && tm->due <= now) {
    luaio_timerheap_remove(&h->timers, tm);
    tm->fire(tm);
  }
}

static void on_timer(uv_timer_t *handle) {
  luaio_host *h = handle->data;
  h->armed_due = 0;
  luaio_timers_fire(h, uv_now(h->loop));
  rearm(h);
}

void luaio_timers_init(luaio_host *h) {
  uv_timer_init(h->loop, &h->timer);
  h->timer.data = h;
  luaio_vclock_init(h);
}

void luaio_timers_close(luaio_host *h) {
  uv_close((uv_handle_t *)&h->timer, NULL);
  luaio_vclock_close(h);
}

void luaio_timers_free(luaio_host *h) {
  luaio_timerheap_free(&h->timers);
}

/* ---- call_later: a one-shot callback for Lua policy code ----------------- */

typedef struct {
  luaio_timer tm;
  luaio_host *host;
  int self_ref;        /* anchors the handle while armed */
} later_timer;

static void later_fire(luaio_timer *tm) {
  later_timer *lt = luaio_container_of(tm, later_timer, tm);
  lua_State *L = lt->host->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->self_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lt->self_ref);
  lt->self_ref = LUA_NOREF;
  lua_getiuservalue(L, -1, 1);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) luaio_report_callback_error(L, "a call_later callback");
  lua_pop(L, 1);
}

static int l_call_later(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  double sec = luaio_checknumber(L, 1);
  luaio_checktype(L, 2, LUA_TFUNCTION);
  if (!(sec >= 0)) return luaio_argerror(L, 1, "delay must be a non-negative number");
  later_timer *lt = lua_newuserdatauv(L, sizeof *lt, 1);
  memset(lt, 0, sizeof *lt);
  luaL_setmetatable(L, "luaio.Timer");
  lt->host = h;
  lt->tm.fire = later_fire;
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, -1);
  lt->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaio_timer_arm(h, &lt->tm, sec);
  return 1;
}

static int l_timer_cancel(lua_State *L) {
  later_timer *lt = luaio_checkudata(L, 1, "luaio.Timer");
  int armed = lt->tm.slot != 0;
  luaio_timer_disarm(lt->host, &lt->tm);
  luaL_unref(L, LUA_REGISTRYINDEX, lt->self_ref);
  lt->self_ref = LUA_NOREF;
  lua_pushboolean(L, armed);
  return 1;
}

void luaio_open_timers(lua_State *L, luaio_host *h) {
  luaL_newmetatable(L, "luaio.Timer");
  lua_newtable(L);
  lua_pushcfunction(L, l_timer_cancel);
  lua_setfield(L, -2, "cancel");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushlightuserdata(L, h);
  lua_pushcclosure(L, l_call_later, 1);
  lua_setfield(L, -2, "call_later");
}
