/*
** sched.c — tasks, the ready queue, the timer heap, suspend and resume.
**
** A task is a coroutine plus a small struct (inside the Task userdata). A
** waiting call records how to abort itself and yields a private marker; a
** completion pushes values on the task's stack and puts it on the ready
** queue. The queue is drained by a check handle, after libuv's poll phase,
** so callbacks never resume coroutines themselves.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "luaio_int.h"

char luaio_yield_marker;

/* The task running on this OS thread, if any. */
static _Thread_local luaio_task *running;

#define TASK_OF_TIMER(tm) ((luaio_task *)((char *)(tm) - offsetof(luaio_task, timer)))

/* ---- ready queue ----------------------------------------------------- */

static void on_idle(uv_idle_t *handle) { (void)handle; }

static void ring_grow(luaio_host *h) {
  uint32_t cap = h->ring_cap ? h->ring_cap * 2 : 1024;
  luaio_task **ring = malloc(cap * sizeof *ring);
  if (!ring) abort();
  for (uint32_t i = 0; i < h->ring_len; i++)
    ring[i] = h->ring[(h->ring_head + i) & (h->ring_cap - 1)];
  free(h->ring);
  h->ring = ring;
  h->ring_cap = cap;
  h->ring_head = 0;
}

void luaio_ready(luaio_task *t) {
  luaio_host *h = t->host;
  t->state = TASK_READY;
  if (h->ring_len == h->ring_cap) ring_grow(h);
  h->ring[(h->ring_head + h->ring_len) & (h->ring_cap - 1)] = t;
  if (h->ring_len++ == 0) uv_idle_start(&h->idle, on_idle);
}

static luaio_task *ring_pop(luaio_host *h) {
  luaio_task *t = h->ring[h->ring_head];
  h->ring_head = (h->ring_head + 1) & (h->ring_cap - 1);
  h->ring_len--;
  return t;
}

/* ---- timer heap (binary min-heap on due, then seq) ---------------------- */

static int timer_before(const luaio_timer *a, const luaio_timer *b) {
  return a->due < b->due || (a->due == b->due && (int32_t)(a->seq - b->seq) < 0);
}

static void heap_place(luaio_host *h, uint32_t i, luaio_timer *tm) {
  h->heap[i] = tm;
  tm->slot = i + 1;
}

static void heap_up(luaio_host *h, uint32_t i) {
  luaio_timer *tm = h->heap[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (!timer_before(tm, h->heap[parent])) break;
    heap_place(h, i, h->heap[parent]);
    i = parent;
  }
  heap_place(h, i, tm);
}

static void heap_down(luaio_host *h, uint32_t i) {
  luaio_timer *tm = h->heap[i];
  for (;;) {
    uint32_t child = 2 * i + 1;
    if (child >= h->heap_len) break;
    if (child + 1 < h->heap_len && timer_before(h->heap[child + 1], h->heap[child])) child++;
    if (!timer_before(h->heap[child], tm)) break;
    heap_place(h, i, h->heap[child]);
    i = child;
  }
  heap_place(h, i, tm);
}

static void on_timer(uv_timer_t *handle);

/* Keep the uv timer armed for the earliest deadline, touching it only
** when that deadline changes. */
static void rearm(luaio_host *h) {
  if (h->heap_len == 0) {
    if (h->armed_due) { uv_timer_stop(&h->timer); h->armed_due = 0; }
    return;
  }
  uint64_t due = h->heap[0]->due;
  if (due == h->armed_due) return;
  uint64_t now = uv_now(h->loop);
  uv_timer_start(&h->timer, on_timer, due > now ? due - now : 0, 0);
  h->armed_due = due;
}

void luaio_timer_arm(luaio_host *h, luaio_timer *tm, double seconds) {
  if (tm->slot) luaio_timer_disarm(h, tm);
  double ms = ceil(seconds * 1000.0);
  if (ms > 9e15) ms = 9e15;
  uv_update_time(h->loop);
  tm->due = uv_now(h->loop) + (uint64_t)(ms > 0 ? ms : 0);
  tm->seq = h->timer_seq++;
  if (h->heap_len == h->heap_cap) {
    uint32_t cap = h->heap_cap ? h->heap_cap * 2 : 256;
    luaio_timer **heap = realloc(h->heap, cap * sizeof *heap);
    if (!heap) abort();
    h->heap = heap;
    h->heap_cap = cap;
  }
  h->heap[h->heap_len++] = tm;
  heap_up(h, h->heap_len - 1);
  if (tm->slot == 1) rearm(h);
}

void luaio_timer_disarm(luaio_host *h, luaio_timer *tm) {
  if (!tm->slot) return;
  uint32_t i = tm->slot - 1;
  luaio_timer *last = h->heap[--h->heap_len];
  tm->slot = 0;
  if (last != tm) {
    heap_place(h, i, last);
    heap_up(h, i);
    heap_down(h, last->slot - 1);
  }
  if (i == 0) rearm(h);
}

static void on_timer(uv_timer_t *handle) {
  luaio_host *h = handle->data;
  uint64_t now = uv_now(h->loop);
  h->armed_due = 0;
  while (h->heap_len && h->heap[0]->due <= now) {
    luaio_timer *tm = h->heap[0];
    luaio_timer_disarm(h, tm);
    tm->fire(tm);
  }
  rearm(h);
}

/* ---- anchoring pending tasks ------------------------------------------ */

static void push_anchors(lua_State *L, luaio_host *h) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->anchors_ref);
}

static uint32_t anchor(lua_State *L, luaio_host *h, int idx) {
  uint32_t slot = h->free_len ? h->free_slots[--h->free_len] : ++h->slot_top;
  idx = lua_absindex(L, idx);
  push_anchors(L, h);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
  return slot;
}

static void unanchor(lua_State *L, luaio_host *h, uint32_t slot) {
  push_anchors(L, h);
  lua_pushnil(L);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
  if (h->free_len == h->free_cap) {
    uint32_t cap = h->free_cap ? h->free_cap * 2 : 256;
    uint32_t *slots = realloc(h->free_slots, cap * sizeof *slots);
    if (!slots) abort();
    h->free_slots = slots;
    h->free_cap = cap;
  }
  h->free_slots[h->free_len++] = slot;
}

void luaio_push_task(lua_State *L, luaio_task *t) {
  push_anchors(L, t->host);
  lua_rawgeti(L, -1, t->anchor);
  lua_remove(L, -2);
}

/* ---- task extras: a lazily made table for rare fields ------------------ */

/* Push the extras table of the task at idx, creating it when `create`.
** A lone done callback sits in uservalue 2 by itself (gather and wait add
** one per task: no table for them); it moves into the table when one is made. */
static int push_extras(lua_State *L, int idx, int create) {
  luaio_task *t = lua_touserdata(L, idx);
  if (t->flags & TF_HAS_EXTRAS) { lua_getiuservalue(L, idx, 2); return 1; }
  if (!create) return 0;
  idx = lua_absindex(L, idx);
  lua_createtable(L, 0, 2);
  if (t->flags & TF_ONE_CALLBACK) {
    lua_createtable(L, 2, 0);
    lua_getiuservalue(L, idx, 2);
    lua_rawseti(L, -2, 1);
    lua_setfield(L, -2, "callbacks");
    t->flags &= ~TF_ONE_CALLBACK;
  }
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, idx, 2);
  t->flags |= TF_HAS_EXTRAS;
  return 1;
}

/* ---- errors delivered by the scheduler -------------------------------- */

static void push_cancelled(lua_State *L, lua_State *msgL, int msg_idx) {
  const char *msg = msg_idx ? lua_tostring(msgL, msg_idx) : NULL;
  luaio_push_error(L, "CancelledError", NULL, "%s", msg ? msg : "cancelled");
}

/* ---- running tasks ---------------------------------------------------- */

static void finish(luaio_host *h, luaio_task *t, int nres);

/* Records the traceback where a task's error was raised. */
static int task_msgh(lua_State *L) {
  luaio_task *t = running;
  const char *msg = NULL;
  if (lua_type(L, 1) == LUA_TSTRING) msg = lua_tostring(L, 1);
  else if (luaL_callmeta(L, 1, "__tostring")) msg = lua_tostring(L, -1);
  luaL_traceback(L, L, msg ? msg : "(error object)", 1);
  if (t == NULL) return lua_settop(L, 1), 1;
  int tb = lua_gettop(L);
  luaio_push_task(L, t);
  push_extras(L, -1, 1);                         /* tb+2 */
  /* every traceback names its task, and in debug mode where it was spawned */
  lua_getfield(L, tb + 1, "name");               /* tb+3 */
  /* re-raising another task's error (aio.run at a script's top level): its
  ** traceback, where the error really happened, is the one to keep */
  lua_getfield(L, tb + 2, "_reraised_error");
  int reraised = lua_rawequal(L, -1, 1);
  lua_pop(L, 1);
  if (reraised && lua_getfield(L, tb + 2, "_reraised_traceback") == LUA_TSTRING) {
    lua_pushfstring(L, "%s\n\tre-raised in task %s", lua_tostring(L, -1), lua_tostring(L, tb + 3));
    lua_replace(L, tb);
    lua_settop(L, tb + 2);
    lua_pushnil(L);
    lua_setfield(L, tb + 2, "_reraised_error");
    lua_pushvalue(L, tb);
    lua_setfield(L, tb + 2, "traceback");
    lua_settop(L, 1);
    return 1;
  }
  lua_settop(L, tb + 3);
  if (lua_getfield(L, tb + 2, "spawned_at") == LUA_TSTRING)
    lua_pushfstring(L, "%s\n\tin task %s, spawned at %s", lua_tostring(L, tb), lua_tostring(L, tb + 3), lua_tostring(L, tb + 4));
  else
    lua_pushfstring(L, "%s\n\tin task %s", lua_tostring(L, tb), lua_tostring(L, tb + 3));
  lua_replace(L, tb);
  lua_settop(L, tb + 2);
  lua_pushvalue(L, tb);
  lua_setfield(L, -2, "traceback");
  /* luaio error tables carry their traceback too */
  if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, LUAIO_ERROR_MT);
    int ours = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (ours) {
      lua_getfield(L, 1, "traceback");
      int has = !lua_isnil(L, -1);
      lua_pop(L, 1);
      if (!has) { lua_pushvalue(L, tb); lua_setfield(L, 1, "traceback"); }
    }
  }
  lua_settop(L, 1);
  return 1;
}

static int is_cancelled_error(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  lua_getfield(L, idx, "name");
  int yes = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "CancelledError") == 0;
  lua_pop(L, 1);
  return yes;
}

static int task_body_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  luaio_task *t = running;
  if (status == LUA_OK || status == LUA_YIELD) {
    t->state = TASK_DONE;
    return lua_gettop(L) - 1;          /* all but the message handler */
  }
  t->state = is_cancelled_error(L, -1) ? TASK_CANCELLED : TASK_FAILED;
  return 1;
}

static int task_body(lua_State *L);

/* Whether co is the coroutine of a task that has not ended: its outermost
** frame (or, before it started, the function waiting at its bottom) is
** task_body. Walks co's frames: for rare checks only. */
int luaio_is_task_thread(lua_State *co) {
  lua_Debug ar;
  int level = 0;
  while (lua_getstack(co, level, &ar)) level++;
  if (level == 0)                       /* no frame: not started, or dead */
    return lua_status(co) == LUA_OK && lua_gettop(co) >= 1 && lua_tocfunction(co, 1) == task_body;
  if (!lua_checkstack(co, 1) || !lua_getstack(co, level - 1, &ar) || !lua_getinfo(co, "f", &ar)) return 0;
  int yes = lua_tocfunction(co, -1) == task_body;
  lua_pop(co, 1);
  return yes;
}

/* The coroutine's main function: fn(...) under a pcall, so that errors
** unwind inside the coroutine and `<close>` handlers may still wait. */
static int task_body(lua_State *L) {
  lua_pushcfunction(L, task_msgh);
  lua_insert(L, 1);
  return task_body_k(L, lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 1, 0, task_body_k), 0);
}

/* Debug mode: where a task is about to resume, "file:line" (or, before
** its first run, where its function is defined). */
static void describe_position(lua_State *co, luaio_task *t, char *out, size_t size) {
  lua_Debug ar;
  (void)t;
  snprintf(out, size, "?");
  if (lua_status(co) == LUA_OK && !lua_getstack(co, 0, &ar)) {   /* not started yet */
    if (lua_gettop(co) >= 2) {
      lua_pushvalue(co, 2);
      if (lua_getinfo(co, ">S", &ar)) snprintf(out, size, "%s:%d (start)", ar.short_src, ar.linedefined);
    }
    return;
  }
  for (int level = 0; lua_getstack(co, level, &ar); level++) {
    if (lua_getinfo(co, "Sl", &ar) && ar.currentline > 0) {
      snprintf(out, size, "%s:%d", ar.short_src, ar.currentline);
      return;
    }
  }
}

static void run_task(luaio_host *h, luaio_task *t) {
  lua_State *co = t->co;
  int nargs = t->nargs, nres = 0;
  if (t->flags & TF_CANCEL) {
    t->flags &= ~TF_CANCEL;
    lua_pop(co, nargs);
    if (!(t->flags & TF_STARTED)) lua_settop(co, 0);
    luaio_push_task(h->L, t);
    push_extras(h->L, -1, 1);
    lua_getfield(h->L, -1, "cancel_error");
    lua_xmove(h->L, co, 1);
    lua_pop(h->L, 2);
    if (!(t->flags & TF_STARTED)) {    /* cancelled before it began: never runs */
      t->state = TASK_CANCELLED;
      finish(h, t, 1);
      return;
    }
    nargs = 1;
    t->flags |= TF_RAISE;
  }
  t->nargs = 0;
  t->state = TASK_RUNNING;
  t->flags |= TF_STARTED;
  luaio_task *outer = running;
  running = t;
  char where[256];
  int timed = h->debug;
  h->run_seq++;
  if (timed) {
    describe_position(co, t, where, sizeof where);
    h->run_since = uv_hrtime() / 1e9;
    h->run_since_seq = h->run_seq;
  }
  h->current = t;
  h->executing = co;
  int status = lua_resume(co, h->L, nargs, &nres);
  luaio_interrupt_handoff(h, co, NULL);
  h->current = NULL;
  running = outer;
  h->switches++;
  if (timed) {
    double took = uv_hrtime() / 1e9 - h->run_since;
    if (took > h->slow_callback) {
      lua_State *L = h->L;
      lua_rawgeti(L, LUA_REGISTRYINDEX, h->hooks_ref);
      if (lua_getfield(L, -1, "slow_task") == LUA_TFUNCTION) {
        luaio_push_task(L, t);
        lua_pushnumber(L, took);
        lua_pushstring(L, where);
        if (lua_pcall(L, 3, 0, 0) != LUA_OK) lua_pop(L, 1);
      } else lua_pop(L, 1);
      lua_pop(L, 1);
    }
  }
  if (status == LUA_YIELD) {
    if (nres == 1 && lua_touserdata(co, -1) == &luaio_yield_marker) {
      lua_pop(co, 1);
      if (t->state == TASK_RUNNING) luaio_ready(t);
      return;
    }
    /* a bare coroutine.yield() at the task's own level: a pass of the loop */
    lua_pop(co, nres);
    luaio_ready(t);
    return;
  }
  if (status != LUA_OK) {             /* the body itself failed (out of memory) */
    t->state = TASK_FAILED;
    nres = 1;
  }
  finish(h, t, nres);
}

static int tostring_protected(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* Log the error on top (and pop it): a callback's error is reported, never
** raised into the loop. Its __tostring may raise too. */
static void report_callback_error(lua_State *L, const char *what) {
  lua_pushcfunction(L, tostring_protected);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    lua_pushliteral(L, "(error object whose __tostring fails)");
  }
  fprintf(stderr, "luaio: error in %s: %s\n", what, lua_tostring(L, -1));
  fflush(stderr);
  lua_pop(L, 1);
}

/* Call the function at -2 with the task at -1, protected; an error is logged. */
static void call_done_callback(lua_State *L) {
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) report_callback_error(L, "a done callback");
}

/* Pop a done callback of t (the task at ti) and run it: wake a waiting
** Task, or call a function with the task. */
static void run_callback(lua_State *L, luaio_task *t, int ti) {
  if (lua_type(L, -1) == LUA_TUSERDATA) {
    luaio_task *w = lua_touserdata(L, -1);
    if (w->state == TASK_WAITING && !(w->flags & TF_NATIVE_WAIT) && w->owner == t) { w->owner = NULL; luaio_ready(w); }
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, ti);
  call_done_callback(L);
}

static void finish(luaio_host *h, luaio_task *t, int nres) {
  lua_State *L = h->L;
  if ((t->flags & TF_CANCEL) && t->state == TASK_DONE) {
    /* cancelled while running its last step: asyncio counts it cancelled */
    luaio_push_task(L, t);
    push_extras(L, -1, 1);
    lua_getfield(L, -1, "cancel_error");
    lua_settop(t->co, 0);
    lua_xmove(L, t->co, 1);
    lua_pop(L, 2);
    t->state = TASK_CANCELLED;
    nres = 1;
  }
  t->flags &= ~(TF_CANCEL | TF_RAISE);
  t->nargs = nres;                     /* from now on: how many results */
  luaio_push_task(L, t);
  int ti = lua_gettop(L);
  if (t->state == TASK_FAILED && !(t->flags & TF_MAIN)) {
    luaL_setmetatable(L, LUAIO_FAILED_TASK_MT);   /* the task is on top: report if never retrieved */
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->failed_ref);
    lua_pushvalue(L, ti);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  unanchor(L, h, t->anchor);
  t->anchor = 0;
  h->pending--;
  if (t->flags & TF_ONE_CALLBACK) {
    t->flags &= ~TF_ONE_CALLBACK;
    lua_getiuservalue(L, ti, 2);
    lua_pushnil(L);
    lua_setiuservalue(L, ti, 2);
    run_callback(L, t, ti);
  } else if (t->flags & TF_HAS_EXTRAS) {
    lua_getiuservalue(L, ti, 2);
    if (lua_getfield(L, -1, "callbacks") == LUA_TTABLE) {
      lua_pushnil(L);
      lua_setfield(L, -3, "callbacks");
      lua_Integer n = luaL_len(L, -1);
      for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        run_callback(L, t, ti);
      }
    }
    lua_pop(L, 2);
  }
  lua_settop(L, ti - 1);
}

void luaio_drain(luaio_host *h) {
  uint32_t n = h->ring_len;   /* only those ready now: new ones wait a turn */
  while (n-- > 0 && h->ring_len) {
    luaio_task *t = ring_pop(h);
    if (t->state == TASK_READY) run_task(h, t);
  }
  if (h->ring_len == 0) uv_idle_stop(&h->idle);
}

static void on_check(uv_check_t *handle) {
  luaio_host *h = handle->data;
  h->iterations++;
  luaio_drain(h);
}


static void on_async(uv_async_t *handle) {
  luaio_host *h = handle->data;
  uv_mutex_lock(&h->post_lock);
  luaio_post_item *list = h->posted;
  h->posted = NULL;
  uv_mutex_unlock(&h->post_lock);
  /* reverse to run in posting order */
  luaio_post_item *ordered = NULL;
  while (list) { luaio_post_item *next = list->next; list->next = ordered; ordered = list; list = next; }
  while (ordered) {
    luaio_post_item *next = ordered->next;
    ordered->fn(h, ordered->arg);
    free(ordered);
    ordered = next;
  }
}

int luaio_post(luaio_host *h, void (*fn)(luaio_host *h, void *arg), void *arg) {
  luaio_post_item *item = malloc(sizeof *item);
  if (!item) return UV_ENOMEM;
  item->fn = fn;
  item->arg = arg;
  uv_mutex_lock(&h->post_lock);
  item->next = h->posted;
  h->posted = item;
  uv_mutex_unlock(&h->post_lock);
  return uv_async_send(&h->async);
}

void luaio_sched_init(luaio_host *h) {
  uv_idle_init(h->loop, &h->idle);
  uv_check_init(h->loop, &h->check);
  uv_timer_init(h->loop, &h->timer);
  uv_async_init(h->loop, &h->async, on_async);
  uv_mutex_init(&h->post_lock);
  h->idle.data = h->check.data = h->timer.data = h->async.data = h;
  uv_check_start(&h->check, on_check);
  uv_unref((uv_handle_t *)&h->check);
  uv_unref((uv_handle_t *)&h->async);
  h->ring_cap = 0;
  ring_grow(h);
}

void luaio_sched_close(luaio_host *h) {
  uv_close((uv_handle_t *)&h->idle, NULL);
  uv_close((uv_handle_t *)&h->check, NULL);
  uv_close((uv_handle_t *)&h->timer, NULL);
  uv_close((uv_handle_t *)&h->async, NULL);
}

void luaio_sched_free(luaio_host *h) {
  on_async(&h->async);         /* run (and free) anything still posted */
  uv_mutex_destroy(&h->post_lock);
  free(h->ring);
  free(h->heap);
  free(h->free_slots);
}

/* ---- suspend / resume: the native protocol ----------------------------- */

luaio_task *luaio_current(lua_State *L) { (void)L; return running; }
lua_State *luaio_task_stack(luaio_task *t) { return t->co; }

static int await_k(lua_State *L, int status, lua_KContext base) {
  (void)status;
  luaio_task *t = running;
  lua_KFunction k = t->k;
  t->k = NULL;
  if (t->flags & TF_RAISE) {
    t->flags &= ~TF_RAISE;
    return lua_error(L);
  }
  if (k) return k(L, LUA_YIELD, t->kctx);
  return lua_gettop(L) - (int)base;
}

/* Whether the running task may suspend from L: not inside a C call that
** cannot yield (a table.sort comparator, a gsub callback, __tostring through
** tostring, __gc, an xpcall message handler), nor in a coroutine resumed
** from one (coro.c counts those resumes in h->noyield). */
static int can_wait(lua_State *L, luaio_task *t) {
  return lua_isyieldable(L) && t->host->noyield == 0;
}

/* The error of a waiting call made where it cannot wait, raised before
** anything is armed. `level` is where the waiting function runs. */
static int raise_wait_error(lua_State *L, luaio_task *t, const char *fname, int level) {
  if (!fname) fname = luaio_function_name(L, level);
  luaL_where(L, level + 1);
  if (t == NULL)
    lua_pushfstring(L, "%s must be called inside a task (wrap your code in aio.run)", fname);
  else
    lua_pushfstring(L, "%s cannot wait here: attempt to yield across a C-call boundary "
                       "(the task is inside table.sort, string.gsub, tostring, __gc, an xpcall "
                       "message handler or another call that cannot yield)", fname);
  lua_concat(L, 2);
  return lua_error(L);
}

int luaio_can_wait(lua_State *L) { return running && can_wait(L, running); }

luaio_task *luaio_need_task(lua_State *L, const char *fname) {
  luaio_task *t = running;
  if (t == NULL || !can_wait(L, t)) raise_wait_error(L, t, fname, 0);
  return t;
}

/* The hot paths' form: the common case inline, the errors out of line. */
static inline luaio_task *need_task(lua_State *L) {
  luaio_task *t = running;
  if (t && t->host->noyield == 0 && lua_isyieldable(L)) return t;
  return luaio_need_task(L, NULL);
}

/* core.need_task(fname) -> the running task, for the Lua half's waiting
** functions: the errors above, positioned at their caller. */
static int l_need_task(lua_State *L) {
  luaio_task *t = running;
  if (t == NULL || !can_wait(L, t)) raise_wait_error(L, t, luaL_optstring(L, 1, NULL), 1);
  luaio_push_task(L, t);
  return 1;
}

/* A cancellation requested while the task was running is delivered at its
** next waiting call, before it waits. */
static void raise_pending_cancel(lua_State *L, luaio_task *t) {
  t->flags &= ~TF_CANCEL;
  luaio_push_task(L, t);
  push_extras(L, -1, 1);
  lua_getfield(L, -1, "cancel_error");
  lua_error(L);
}

int luaio_await(lua_State *L, luaio_cancel_fn on_cancel, void *data,
                lua_KContext ctx, lua_KFunction k) {
  luaio_task *t = running;
  if (t == NULL || !can_wait(L, t)) {
    /* the caller armed its work before asking: abort it, then raise */
    if (on_cancel) on_cancel(data);
    raise_wait_error(L, t, NULL, 0);
  }
  if (t->flags & TF_CANCEL) {
    if (on_cancel) on_cancel(data);
    raise_pending_cancel(L, t);
  }
  t->state = TASK_WAITING;
  t->flags |= TF_NATIVE_WAIT;
  /* a native wait may be ended by luaio_post from another thread: while one
  ** is pending, the async handle keeps the loop alive (and uv_run blocking) */
  if (t->host->native_waits++ == 0) uv_ref((uv_handle_t *)&t->host->async);
  t->on_cancel = on_cancel;
  t->cancel_data = data;
  t->k = k;
  t->kctx = ctx;
  int base = lua_gettop(L);
  lua_pushlightuserdata(L, &luaio_yield_marker);
  return lua_yieldk(L, 1, base, await_k);
}

void luaio_wake(luaio_task *t, int n) {
  if (t->flags & TF_NATIVE_WAIT) {
    t->flags &= ~TF_NATIVE_WAIT;
    if (--t->host->native_waits == 0) uv_unref((uv_handle_t *)&t->host->async);
  }
  t->nargs = n;
  t->on_cancel = NULL;
  t->owner = NULL;
  luaio_ready(t);
}

void luaio_wake_error(luaio_task *t) {
  t->flags |= TF_RAISE;
  luaio_wake(t, 1);
}

int luaio_cancel(lua_State *L, luaio_task *t, int msg_idx) {
  if (t->state >= TASK_DONE) return 0;
  t->cancels++;
  if (t->state == TASK_WAITING) {
    luaio_cancel_fn fn = t->on_cancel;
    t->on_cancel = NULL;
    if (fn) fn(t->cancel_data);
    luaio_timer_disarm(t->host, &t->timer);
    lua_checkstack(t->co, 2);
    push_cancelled(t->co, L, msg_idx);
    luaio_wake_error(t);
  } else {
    /* ready or running: delivered at the next resume or waiting call */
    int top = lua_gettop(L);
    if (msg_idx) msg_idx = lua_absindex(L, msg_idx);
    luaio_push_task(L, t);
    push_extras(L, -1, 1);
    push_cancelled(L, L, msg_idx);
    lua_setfield(L, -2, "cancel_error");
    lua_settop(L, top);
    t->flags |= TF_CANCEL;
  }
  return 1;
}

/* ---- Lua verbs -------------------------------------------------------- */

/* Hot: every Task method goes through here, so no metatable lookup by name. */
static luaio_task *to_task(lua_State *L, int idx) {
  luaio_task *t = lua_type(L, idx) == LUA_TUSERDATA ? lua_touserdata(L, idx) : NULL;
  return t && lua_rawlen(L, idx) == sizeof *t && t->magic == LUAIO_TASK_MAGIC ? t : NULL;
}

luaio_task *luaio_check_task(lua_State *L, int idx) {
  luaio_task *t = to_task(L, idx);
  if (!t) luaio_typeerror(L, idx, "Task");
  return t;
}

static int l_is_task(lua_State *L) {
  lua_pushboolean(L, to_task(L, 1) != NULL);
  return 1;
}

static int l_spawn(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  int n = lua_gettop(L);
  if (lua_type(L, 1) != LUA_TFUNCTION) {
    if (!luaL_getmetafield(L, 1, "__call"))
      return luaio_typeerror(L, 1, "function");
    lua_pop(L, 1);
  }
  if (h->closing) return luaL_error(L, "aio.spawn: the loop is closing");
  luaio_task *t = lua_newuserdatauv(L, sizeof *t, 2);
  memset(t, 0, sizeof *t);
  t->magic = LUAIO_TASK_MAGIC;
  luaL_setmetatable(L, LUAIO_TASK_MT);
  t->host = h;
  t->co = lua_newthread(L);
  lua_setiuservalue(L, -2, 1);
  t->id = ++h->task_seq;
  t->anchor = anchor(L, h, -1);
  h->pending++;
  lua_checkstack(t->co, n + 1);
  lua_pushcfunction(t->co, task_body);
  lua_rotate(L, 1, 1);                  /* task to the bottom, fn+args on top */
  lua_xmove(L, t->co, n);
  t->nargs = n;
  if (h->debug) {
    lua_Debug ar;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar)) {
      push_extras(L, 1, 1);
      lua_pushfstring(L, "%s:%d", ar.short_src, ar.currentline);
      lua_setfield(L, -2, "spawned_at");
      lua_pop(L, 1);
    }
  }
  luaio_ready(t);
  return 1;
}

luaio_task *luaio_spawn(luaio_host *h, int nargs) {
  lua_State *L = h->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->hooks_ref);
  lua_getfield(L, -1, "spawn");
  lua_remove(L, -2);
  lua_insert(L, -(nargs + 2));
  lua_call(L, nargs + 1, 1);
  return lua_touserdata(L, -1);
}

static void sleep_fire(luaio_timer *tm) {
  luaio_wake(TASK_OF_TIMER(tm), 0);
}

static void sleep_cancel(void *data) {
  luaio_task *t = data;
  luaio_timer_disarm(t->host, &t->timer);
}

static int l_sleep(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  double sec = luaio_checknumber(L, 1);
  if (!(sec >= 0)) return luaio_argerror(L, 1, "sleep length must be a non-negative number");
  luaio_task *t = need_task(L);
  lua_settop(L, 0);
  if (sec == 0) {
    if (t->flags & TF_CANCEL) raise_pending_cancel(L, t);
    /* still RUNNING when it yields: run_task puts it at the back of the queue */
    t->k = NULL;
    lua_pushlightuserdata(L, &luaio_yield_marker);
    return lua_yieldk(L, 1, 0, await_k);
  }
  t->timer.fire = sleep_fire;
  if (t->flags & TF_CANCEL) raise_pending_cancel(L, t);
  luaio_timer_arm(h, &t->timer, sec);
  return luaio_await(L, sleep_cancel, t, 0, NULL);
}

/* suspend(owner) -> true, ... (woken) | false, err (cancelled).
** The Lua half's primitives wait with it; wake(task, owner, ...) ends it. */
static int suspend_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  luaio_task *t = running;
  if (t->flags & TF_RAISE) {
    t->flags &= ~TF_RAISE;
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, 1);
  return lua_gettop(L);
}

static int l_suspend(lua_State *L) {
  luaio_task *t = need_task(L);
  const void *owner = lua_topointer(L, 1);
  if (owner == NULL) return luaio_argerror(L, 1, "a table, function or userdata expected as owner");
  if (t->flags & TF_CANCEL) {
    t->flags &= ~TF_CANCEL;
    lua_pushboolean(L, 0);
    luaio_push_task(L, t);
    push_extras(L, -1, 1);
    lua_getfield(L, -1, "cancel_error");
    lua_remove(L, -2);
    lua_remove(L, -2);
    return 2;
  }
  lua_settop(L, 0);
  t->state = TASK_WAITING;
  t->on_cancel = NULL;
  t->owner = owner;
  lua_pushlightuserdata(L, &luaio_yield_marker);
  return lua_yieldk(L, 1, 0, suspend_k);
}

static int l_wake(lua_State *L) {
  luaio_task *t = luaio_check_task(L, 1);
  const void *owner = lua_topointer(L, 2);
  if (t->state != TASK_WAITING || (t->flags & TF_NATIVE_WAIT) || t->owner != owner || owner == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int n = lua_gettop(L) - 2;
  if (!lua_checkstack(t->co, n + 1)) return luaL_error(L, "too many values to wake a task with");
  lua_xmove(L, t->co, n);
  luaio_wake(t, n);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime() / 1e9);
  return 1;
}

static int l_current_task(lua_State *L) {
  if (running) luaio_push_task(L, running); else lua_pushnil(L);
  return 1;
}

static int l_all_tasks(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  lua_createtable(L, (int)h->pending, 0);
  push_anchors(L, h);
  lua_Integer n = 0;
  for (uint32_t i = 1; i <= h->slot_top; i++) {
    if (lua_rawgeti(L, -1, i) == LUA_TUSERDATA) lua_rawseti(L, -3, ++n);
    else lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 1;
}

static int l_stats(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, h->pending); lua_setfield(L, -2, "tasks");
  lua_pushinteger(L, h->ring_len); lua_setfield(L, -2, "ready");
  lua_pushinteger(L, h->heap_len); lua_setfield(L, -2, "timers");
  lua_pushinteger(L, h->handles); lua_setfield(L, -2, "handles");
  lua_pushinteger(L, (lua_Integer)h->switches); lua_setfield(L, -2, "switches");
  lua_pushinteger(L, (lua_Integer)h->iterations); lua_setfield(L, -2, "iterations");
  lua_pushinteger(L, h->task_seq); lua_setfield(L, -2, "spawned");
  return 1;
}

/* ---- call_later: a one-shot callback for Lua policy code ----------------- */

typedef struct {
  luaio_timer tm;
  luaio_host *host;
  int self_ref;        /* anchors the handle while armed */
} later_timer;

static void later_fire(luaio_timer *tm) {
  later_timer *lt = (later_timer *)tm;
  lua_State *L = lt->host->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, lt->self_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, lt->self_ref);
  lt->self_ref = LUA_NOREF;
  lua_getiuservalue(L, -1, 1);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) report_callback_error(L, "a call_later callback");
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

/* ---- Task methods ----------------------------------------------------- */

static const char *status_names[] = {"pending", "pending", "pending", "done", "failed", "cancelled"};

const char *luaio_task_status(luaio_task *t) { return status_names[t->state]; }

int luaio_task_results(luaio_task *t, lua_State *L) {
  if (t->state < TASK_DONE) return -1;
  int n = t->nargs, top = lua_gettop(t->co);
  if (!lua_checkstack(t->co, n) || !lua_checkstack(L, n)) luaL_error(L, "too many results");
  for (int i = top - n + 1; i <= top; i++) lua_pushvalue(t->co, i);
  lua_xmove(t->co, L, n);
  t->flags |= TF_RETRIEVED;
  return n;
}

const char *luaio_task_traceback(luaio_task *t, lua_State *L) {
  const char *tb = NULL;
  if (!(t->flags & TF_HAS_EXTRAS)) return NULL;
  /* the task is reachable from the caller's stack or the anchors */
  lua_getiuservalue(L, -1, 2);
  (void)t;
  if (lua_getfield(L, -1, "traceback") == LUA_TSTRING) tb = lua_tostring(L, -1);
  lua_pop(L, 2);   /* the string stays alive in the extras table */
  return tb;
}

/* Push results, or raise the task's error. */
static int task_outcome(lua_State *L, luaio_task *t) {
  int n = luaio_task_results(t, L);
  if (t->state == TASK_DONE) return n;
  return lua_error(L);
}

static int wait_k(lua_State *L, int status, lua_KContext ctx);

/* Suspend the running task until t ends (its done callback wakes it). */
static int wait_for_task(lua_State *L, luaio_task *self, luaio_task *t) {
  lua_settop(L, 0);
  self->state = TASK_WAITING;
  self->on_cancel = NULL;
  self->owner = t;
  lua_pushlightuserdata(L, &luaio_yield_marker);
  return lua_yieldk(L, 1, (lua_KContext)t, wait_k);
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  luaio_task *self = running;
  luaio_task *t = (luaio_task *)ctx;
  if (self->flags & TF_RAISE) {
    /* the waiter was cancelled: as `await task` in asyncio, the cancellation
    ** goes to t (same message) and the waiter keeps waiting for t's outcome,
    ** which it then gets (aio.shield is the way around). */
    self->flags &= ~TF_RAISE;
    if (!is_cancelled_error(L, -1) || t->state >= TASK_DONE) return lua_error(L);
    lua_getfield(L, -1, "message");
    luaio_cancel(L, t, lua_gettop(L));
    return wait_for_task(L, self, t);    /* still in t's callbacks */
  }
  return task_outcome(L, t);
}

/* Register the running task as waiting for t (via t's callbacks list). */
static void add_callback(lua_State *L, int task_idx, int value_idx) {
  luaio_task *t = lua_touserdata(L, task_idx);
  task_idx = lua_absindex(L, task_idx);
  value_idx = lua_absindex(L, value_idx);
  if (!(t->flags & (TF_HAS_EXTRAS | TF_ONE_CALLBACK))) {
    lua_pushvalue(L, value_idx);
    lua_setiuservalue(L, task_idx, 2);
    t->flags |= TF_ONE_CALLBACK;
    return;
  }
  push_extras(L, task_idx, 1);
  if (lua_getfield(L, -1, "callbacks") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "callbacks");
  }
  lua_pushvalue(L, value_idx);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_pop(L, 2);
}

static int t_wait(lua_State *L) {
  luaio_task *t = luaio_check_task(L, 1);
  luaio_task *self = need_task(L);      /* even for a finished task: t:result() is the way outside */
  if (t->state >= TASK_DONE) return task_outcome(L, t);
  if (self == t) return luaio_error(L, "InvalidStateError", NULL, "a task cannot wait for itself");
  if (self->flags & TF_CANCEL) {       /* a cancel asked while running: it goes to t */
    self->flags &= ~TF_CANCEL;
    luaio_push_task(L, self);
    push_extras(L, -1, 1);
    lua_getfield(L, -1, "cancel_error");
    lua_getfield(L, -1, "message");
    luaio_cancel(L, t, lua_gettop(L));
  }
  luaio_push_task(L, self);
  add_callback(L, 1, -1);
  return wait_for_task(L, self, t);
}

static int t_cancel(lua_State *L) {
  luaio_task *t = luaio_check_task(L, 1);
  lua_pushboolean(L, luaio_cancel(L, t, lua_isnoneornil(L, 2) ? 0 : 2));
  return 1;
}

static int t_uncancel(lua_State *L) {
  luaio_task *t = luaio_check_task(L, 1);
  if (t->cancels > 0 && --t->cancels == 0) t->flags &= ~TF_CANCEL;   /* as asyncio 3.13 */
  lua_pushinteger(L, t->cancels);
  return 1;
}

static int t_cancelling(lua_State *L) {
  lua_pushinteger(L, luaio_check_task(L, 1)->cancels);
  return 1;
}

static int t_done(lua_State *L) {
  lua_pushboolean(L, luaio_check_task(L, 1)->state >= TASK_DONE);
  return 1;
}

static int t_cancelled(lua_State *L) {
  lua_pushboolean(L, luaio_check_task(L, 1)->state == TASK_CANCELLED);
  return 1;
}

static int t_status(lua_State *L) {
  lua_pushstring(L, luaio_task_status(luaio_check_task(L, 1)));
  return 1;
}

static int t_result(lua_State *L) {
  luaio_task *t = luaio_check_task(L, 1);
  if (t->state < TASK_DONE) return luaio_error(L, "InvalidStateError", NULL, "result is not ready: the task is pending");
  return task_outcome(L, t);
}

static int t_error(lua_State *L) {
  luaio_task *t = luaio_check_task(L, 1);
  if (t->state < TASK_DONE) return luaio_error(L, "InvalidStateError", NULL, "the task is pending");
  t->flags |= TF_RETRIEVED;
  if (t->state == TASK_DONE) { lua_pushnil(L); return 1; }
  lua_pushvalue(t->co, -1);
  lua_xmove(t->co, L, 1);
  return 1;
}

static int t_add_done_callback(lua_State *L) {
  luaio_task *t = luaio_check_task(L, 1);
  luaio_checktype(L, 2, LUA_TFUNCTION);
  if (t->state >= TASK_DONE) {        /* already done: call it right away */
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 1);
    call_done_callback(L);
    return 0;
  }
  add_callback(L, 1, 2);
  return 0;
}

static int t_traceback(lua_State *L) {
  luaio_task *t = luaio_check_task(L, 1);
  if (push_extras(L, 1, 0)) {
    lua_getfield(L, -1, "traceback");
    return 1;
  }
  (void)t;
  lua_pushnil(L);
  return 1;
}

/* Methods first; other fields (name, user fields) live in the extras. */
static int t_index(lua_State *L) {
  luaio_task *t = luaio_check_task(L, 1);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;   /* a method */
  lua_pop(L, 1);
  if (push_extras(L, 1, 0)) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, -2) != LUA_TNIL && lua_type(L, 2) == LUA_TSTRING &&
        strcmp(lua_tostring(L, 2), "traceback") != 0 && strcmp(lua_tostring(L, 2), "cancel_error") != 0)
      return 1;
    lua_pop(L, 2);
  }
  if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "name") == 0) {
    lua_pushfstring(L, "Task-%d", (int)t->id);
    return 1;
  }
  if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "id") == 0) {
    lua_pushinteger(L, t->id);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

/* User fields (name, and anything a program attaches) live in the extras. */
static int t_newindex(lua_State *L) {
  luaio_check_task(L, 1);
  if (lua_type(L, 2) != LUA_TSTRING)
    return luaL_error(L, "task fields are named by strings, got %s", luaL_typename(L, 2));
  const char *k = lua_tostring(L, 2);
  if (strcmp(k, "callbacks") == 0 || strcmp(k, "cancel_error") == 0 || strcmp(k, "traceback") == 0)
    return luaL_error(L, "task field '%s' is reserved", k);
  if (strcmp(k, "name") == 0 && !lua_isstring(L, 3))
    return luaL_error(L, "task name must be a string, got %s", luaL_typename(L, 3));
  push_extras(L, 1, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, -3);
  return 0;
}

static int t_tostring(lua_State *L) {
  luaio_task *t = luaio_check_task(L, 1);
  lua_getfield(L, 1, "name");
  lua_pushfstring(L, "Task<%s %s>", lua_tostring(L, -1), luaio_task_status(t));
  return 1;
}

/* Report the task at idx if it failed and nobody retrieved its error. */
int luaio_uncaught_report(lua_State *L, int idx) {
  luaio_task *t = lua_touserdata(L, idx);
  if (t->state != TASK_FAILED || (t->flags & (TF_RETRIEVED | TF_MAIN))) return 0;
  t->flags |= TF_RETRIEVED;
  int top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  lua_getfield(L, idx, "name");
  const char *name = lua_tostring(L, -1);
  const char *tb = NULL;
  if (t->flags & TF_HAS_EXTRAS) {
    lua_getiuservalue(L, idx, 2);
    if (lua_getfield(L, -1, "traceback") == LUA_TSTRING) tb = lua_tostring(L, -1);
  }
  if (!tb) {
    lua_getiuservalue(L, idx, 1);
    lua_State *co = lua_tothread(L, -1);
    if (co && lua_gettop(co) > 0) {
      lua_pushvalue(co, -1);
      lua_xmove(co, L, 1);
      tb = luaL_tolstring(L, -1, NULL);
    }
  }
  fprintf(stderr, "Task exception was never retrieved: %s: %s\n", name, tb ? tb : "?");
  fflush(stderr);
  lua_settop(L, top);
  return 1;
}

/* At loop close: report the failed tasks whose error nobody looked at,
** including those still referenced (the collector would report the rest). */
void luaio_report_unretrieved(luaio_host *h) {
  lua_State *L = h->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->failed_ref);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    luaio_uncaught_report(L, -1);
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawseti(L, LUA_REGISTRYINDEX, h->failed_ref);
}

static int t_gc(lua_State *L) {
  luaio_task *t = to_task(L, 1);      /* a finalizer can be called by hand, with anything */
  if (t && t->host && !t->host->closing) luaio_uncaught_report(L, 1);
  return 0;
}

void luaio_open_sched(lua_State *L, luaio_host *h) {
  static const luaL_Reg methods[] = {
    {"wait", t_wait}, {"cancel", t_cancel}, {"uncancel", t_uncancel},
    {"cancelling", t_cancelling}, {"done", t_done}, {"cancelled", t_cancelled},
    {"status", t_status}, {"result", t_result}, {"error", t_error},
    {"add_done_callback", t_add_done_callback}, {"traceback", t_traceback},
    {NULL, NULL}};
  /* Two metatables alike but for __gc: a finalizer keeps an object and all it
  ** reaches (the coroutine, its stack) alive one more GC cycle, so only a
  ** task that failed, whose error may go unretrieved, is given one. */
  luaL_newlib(L, methods);
  for (int failed = 0; failed <= 1; failed++) {
    luaL_newmetatable(L, failed ? LUAIO_FAILED_TASK_MT : LUAIO_TASK_MT);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "methods");
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, t_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, t_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, t_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "luaio.Task");
    lua_setfield(L, -2, "__name");
    if (failed) {
      lua_pushcfunction(L, t_gc);
      lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);

  luaL_newmetatable(L, "luaio.Timer");
  lua_newtable(L);
  lua_pushcfunction(L, l_timer_cancel);
  lua_setfield(L, -2, "cancel");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  static const luaL_Reg funcs[] = {
    {"spawn", l_spawn}, {"sleep", l_sleep}, {"suspend", l_suspend}, {"wake", l_wake},
    {"now", l_now}, {"current_task", l_current_task}, {"all_tasks", l_all_tasks},
    {"stats", l_stats}, {"call_later", l_call_later}, {"is_task", l_is_task},
    {"need_task", l_need_task}, {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
  luaL_getmetatable(L, LUAIO_TASK_MT);
  lua_getfield(L, -1, "methods");
  lua_setfield(L, -3, "task_methods");
  lua_pop(L, 1);
}
