/*
** sched.c — the scheduler: the one suspend/resume mechanism.
**
** A task is a coroutine plus a luaio_task struct (inside the Task userdata,
** task.c). Everything that waits — sleep, a stream read, a lock, a queue,
** a thread-pool job, an embedder's native call — goes through this file:
**
**  1. Suspend. A waiting C function records how to abort its wait (native
**     work: luaio_await(on_cancel, data, k); Lua primitives: core.suspend
**     with the object waited on as `owner`), sets the task WAITING and
**     yields the private marker &luaio_yield_marker with lua_yieldk.
**  2. Complete. Whatever ends the wait (a libuv callback, a timer, a
**     thread-pool job through luaio_post, core.wake from Lua) pushes the
**     result values on the task's own stack and calls luaio_wake: the task
**     goes on the ready queue, a ring of task pointers. Nothing resumes a
**     coroutine from inside a callback.
**  3. Resume. A check handle (after libuv's poll phase, with an idle handle
**     keeping poll from blocking while tasks are ready) drains the ring:
**     run_task resumes each coroutine with the values pushed, and the
**     continuation (await_k, suspend_k) returns them from the waiting call.
**  4. Cancel. luaio_cancel on a WAITING task calls the recorded abort,
**     pushes a CancelledError and wakes it with TF_RAISE: the waiting call
**     raises. On a READY or RUNNING task the error waits in the task's
**     extras (TF_CANCEL) and is raised at its next waiting call.
**
** A task that returns or raises is finished (finish): its results stay on
** its coroutine's stack, its done callbacks run and its anchor (task.c) is
** released. User coroutines inside a task pass marked yields through
** (coro.c). Deadlines (sleep, stream timeouts) are timers.c; posting from
** other threads is post.c; the Task object and its methods are task.c.
*/
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "host.h"
#include "task.h"

char luaio_yield_marker;

/* The task running on this OS thread, if any. */
static _Thread_local luaio_task *running;

luaio_task *luaio_current(lua_State *L) { (void)L; return running; }
lua_State *luaio_task_stack(luaio_task *t) { return t->co; }

/* ---- the ready queue -------------------------------------------------- */

static void on_idle(uv_idle_t *handle) { (void)handle; }

static void ring_grow(luaio_host *h) {
  uint32_t cap = h->ready.cap ? h->ready.cap * 2 : 1024;
  luaio_task **items = malloc(cap * sizeof *items);
  if (!items) luaio_oom("the ready queue");
  assert((cap & (cap - 1)) == 0);   /* indices wrap with a mask */
  for (uint32_t i = 0; i < h->ready.len; i++)
    items[i] = h->ready.items[(h->ready.head + i) & (h->ready.cap - 1)];
  free(h->ready.items);
  h->ready.items = items;
  h->ready.cap = cap;
  h->ready.head = 0;
}

void luaio_ready(luaio_task *t) {
  luaio_host *h = t->host;
  t->state = TASK_READY;
  if (h->ready.len == h->ready.cap) ring_grow(h);
  h->ready.items[(h->ready.head + h->ready.len) & (h->ready.cap - 1)] = t;
  if (h->ready.len++ == 0) uv_idle_start(&h->idle, on_idle);
}

static luaio_task *ring_pop(luaio_host *h) {
  luaio_task *t = h->ready.items[h->ready.head];
  h->ready.head = (h->ready.head + 1) & (h->ready.cap - 1);
  h->ready.len--;
  return t;
}

/* ---- running a task --------------------------------------------------- */

static void finish(luaio_host *h, luaio_task *t, int nres);

/* A cancellation asked for while t was ready: replace the wake values by
** the CancelledError. Returns the count to resume with, or -1 when t had
** not started yet (it never runs: it is finished cancelled). */
static int take_cancel(luaio_host *h, luaio_task *t) {
  lua_State *co = t->co;
  t->flags &= ~TF_CANCEL;
  lua_pop(co, t->nargs);
  if (!(t->flags & TF_STARTED)) lua_settop(co, 0);
  luaio_push_cancel_error(h->L, t);
  lua_xmove(h->L, co, 1);
  if (!(t->flags & TF_STARTED)) {
    t->state = TASK_CANCELLED;
    finish(h, t, 1);
    return -1;
  }
  t->flags |= TF_RAISE;
  return 1;
}

/* After a yield: a scheduler yield leaves the task waiting (or, from
** sleep(0), still running: back of the queue); a bare coroutine.yield() at
** the task's own level is a pass of the loop. */
static inline void after_yield(luaio_task *t, int nres) {
  int marked = nres == 1 && lua_touserdata(t->co, -1) == &luaio_yield_marker;
  lua_pop(t->co, nres);
  if (!marked || t->state == TASK_RUNNING) luaio_ready(t);
}

static void run_task(luaio_host *h, luaio_task *t) {
  int nargs = t->nargs, nres = 0;
  if ((t->flags & TF_CANCEL) && (nargs = take_cancel(h, t)) < 0) return;
  t->nargs = 0;
  t->state = TASK_RUNNING;
  t->flags |= TF_STARTED;
  luaio_task *outer = running;
  running = t;
  char where[256];
  int timed = h->debug.on;
  h->debug.run_seq++;
  if (timed) luaio_task_debug_begin(h, t, where, sizeof where);
  h->current = t;
  h->intr.executing = t->co;
  int status = lua_resume(t->co, h->L, nargs, &nres);
  luaio_interrupt_handoff(h, t->co, NULL);
  h->current = NULL;
  running = outer;
  h->switches++;
  if (timed) luaio_task_debug_end(h, t, where);
  if (status == LUA_YIELD) {
    after_yield(t, nres);
    return;
  }
  if (status != LUA_OK) {             /* the body itself failed (out of memory) */
    t->state = TASK_FAILED;
    nres = 1;
  }
  finish(h, t, nres);
}

static void finish(luaio_host *h, luaio_task *t, int nres) {
  lua_State *L = h->L;
  if ((t->flags & TF_CANCEL) && t->state == TASK_DONE) {
    /* cancelled while running its last step: asyncio counts it cancelled */
    luaio_push_cancel_error(L, t);
    lua_settop(t->co, 0);
    lua_xmove(L, t->co, 1);
    t->state = TASK_CANCELLED;
    nres = 1;
  }
  t->flags &= ~(TF_CANCEL | TF_RAISE);
  t->nargs = nres;                     /* from now on: how many results */
  luaio_task_ended(L, t);
}

void luaio_drain(luaio_host *h) {
  uint32_t n = h->ready.len;   /* only those ready now: new ones wait a turn */
  while (n-- > 0 && h->ready.len) {
    luaio_task *t = ring_pop(h);
    if (t->state == TASK_READY) run_task(h, t);
  }
  if (h->ready.len == 0) uv_idle_stop(&h->idle);
}

static void on_check(uv_check_t *handle) {
  luaio_host *h = handle->data;
  h->iterations++;
  luaio_drain(h);
}

void luaio_sched_init(luaio_host *h) {
  uv_idle_init(h->loop, &h->idle);
  uv_check_init(h->loop, &h->check);
  h->idle.data = h->check.data = h;
  uv_check_start(&h->check, on_check);
  uv_unref((uv_handle_t *)&h->check);
  luaio_timers_init(h);
  luaio_post_init(h);
  h->ready.cap = 0;
  ring_grow(h);
}

void luaio_sched_close(luaio_host *h) {
  uv_close((uv_handle_t *)&h->idle, NULL);
  uv_close((uv_handle_t *)&h->check, NULL);
  luaio_timers_close(h);
  luaio_post_close(h);
}

void luaio_sched_free(luaio_host *h) {
  luaio_post_free(h);
  free(h->ready.items);
  luaio_timers_free(h);
  luaio_task_free_anchors(h);
}

/* ---- suspend / resume: the native protocol ----------------------------- */

/* ctx: the waiting call's own context when it gave a continuation k (the
** Task keeps k only), else its stack base for counting the wake values. */
static int await_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  luaio_task *t = running;
  lua_KFunction k = t->k;
  t->k = NULL;
  if (t->flags & TF_RAISE) {
    t->flags &= ~TF_RAISE;
    return lua_error(L);
  }
  if (k) return k(L, LUA_YIELD, ctx);
  return lua_gettop(L) - (int)ctx;
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
  luaio_task_push(L, t);
  return 1;
}

/* A cancellation requested while the task was running is delivered at its
** next waiting call, before it waits. */
static int raise_pending_cancel(lua_State *L, luaio_task *t) {
  t->flags &= ~TF_CANCEL;
  luaio_push_cancel_error(L, t);
  return lua_error(L);
}

/* Yield the marker; the task stays as the caller set it (WAITING, or
** RUNNING for a pass of the loop). k runs at the resume. */
static inline int yield_marked(lua_State *L, lua_KContext ctx, lua_KFunction k) {
  lua_pushlightuserdata(L, &luaio_yield_marker);
  return lua_yieldk(L, 1, ctx, k);
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
  ** is pending, the async handle keeps the loop alive (and uv_run blocking).
  ** The monitor's tasks (TF_DAEMON) wait only on unref'd handles of the loop */
  if (!(t->flags & TF_DAEMON) && t->host->native_waits++ == 0)
    uv_ref((uv_handle_t *)&t->host->post.async);
  t->on_cancel = on_cancel;
  t->cancel_data = data;
  t->k = k;
  return yield_marked(L, k ? ctx : lua_gettop(L), await_k);
}

void luaio_wake(luaio_task *t, int n) {
  assert(t->state == TASK_WAITING);   /* woken once per wait */
  if (t->flags & TF_NATIVE_WAIT) {
    t->flags &= ~TF_NATIVE_WAIT;
    if (!(t->flags & TF_DAEMON) && --t->host->native_waits == 0)
      uv_unref((uv_handle_t *)&t->host->post.async);
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
    luaio_push_cancelled(t->co, L, msg_idx);
    luaio_wake_error(t);
  } else {
    /* ready or running: delivered at the next resume or waiting call */
    int top = lua_gettop(L);
    if (msg_idx) msg_idx = lua_absindex(L, msg_idx);
    luaio_task_push(L, t);
    luaio_task_extras(L, -1, 1);
    luaio_push_cancelled(L, L, msg_idx);
    lua_setfield(L, -2, "cancel_error");
    lua_settop(L, top);
    t->flags |= TF_CANCEL;
  }
  return 1;
}

/* Suspend the running task until t ends: t's done callbacks wake it
** (task.c: Task:wait). t stays at 1 of the stack while it waits, for
** waitinfo.c to name. */
int luaio_wait_task(lua_State *L, luaio_task *self, luaio_task *t, lua_KFunction k) {
  lua_settop(L, 0);
  luaio_task_push(L, t);
  self->state = TASK_WAITING;
  self->on_cancel = NULL;
  self->owner = t;
  return yield_marked(L, (lua_KContext)t, k);
}

/* ---- the Lua verbs: spawn, sleep, suspend, wake ------------------------- */

static int l_spawn(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  int n = lua_gettop(L);
  if (lua_type(L, 1) != LUA_TFUNCTION) {
    if (!luaL_getmetafield(L, 1, "__call"))
      return luaio_typeerror(L, 1, "function");
    lua_pop(L, 1);
  }
  if (h->closing) return luaL_error(L, "aio.spawn: the loop is closing");
  luaio_task *t = luaio_task_new(L, h);  /* below fn+args, with its body on its stack */
  lua_rotate(L, 1, 1);                    /* task to the bottom, fn+args on top */
  lua_xmove(L, t->co, n);
  t->nargs = n;
  if (h->debug.on || h->debug.monitor) luaio_task_note_spawn(L, 1);
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
  luaio_wake(luaio_container_of(tm, luaio_task, timer), 0);
}

static void sleep_cancel(void *data) {
  luaio_task *t = data;
  luaio_timer_disarm(t->host, &t->timer);
}

/* waitinfo.c: "sleep until T (in S s)", T in aio.now() terms */
static void describe_sleep(lua_State *L, void *data) {
  luaio_task *t = data;
  luaio_host *h = t->host;
  uint64_t now_ms = h->vclock.on ? h->vclock.ms : uv_now(h->loop);
  double left = ((double)t->timer.due - (double)now_ms) / 1e3;
  char buf[96];
  snprintf(buf, sizeof buf, "sleep until %.3f (in %.1f s)", luaio_now(h) + left, left);
  lua_pushstring(L, buf);
}

/* (the arguments stay on the stack while it waits: the resume's count of
** values starts above them, so sleep returns nothing) */
static int l_sleep(lua_State *L) {
  double sec = luaio_checknumber(L, 1);
  if (!(sec >= 0)) return luaio_argerror(L, 1, "sleep length must be a non-negative number");
  luaio_task *t = need_task(L);
  if (t->flags & TF_CANCEL) raise_pending_cancel(L, t);
  if (sec == 0) {
    /* still RUNNING when it yields: run_task puts it at the back of the queue */
    t->k = NULL;
    return yield_marked(L, lua_gettop(L), await_k);
  }
  t->timer.fire = sleep_fire;
  luaio_timer_arm(luaio_upvalue_host(L), &t->timer, sec);
  return luaio_await(L, sleep_cancel, t, 0, NULL);
}

/* suspend(owner [, what [, about]]) -> true, ... (woken) | false, err
** (cancelled). The Lua half's primitives wait with it; wake(task, owner,
** ...) ends it. While the task waits, its three arguments stay at 1..3 of
** its stack: what it waits for ("queue get", a constant string) and on what
** (the queue), for waitinfo.c to name when asked. */
static int suspend_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  luaio_task *t = running;
  int raise = (t->flags & TF_RAISE) != 0;
  t->flags &= ~TF_RAISE;
  lua_pushboolean(L, !raise);
  lua_replace(L, 1);                 /* [ok, what, about, values...] */
  lua_rotate(L, 2, -2);
  lua_pop(L, 2);
  return raise ? 2 : lua_gettop(L);  /* (a cancel pushed one error) */
}

static int l_suspend(lua_State *L) {
  luaio_task *t = need_task(L);
  const void *owner = lua_topointer(L, 1);
  if (owner == NULL) return luaio_argerror(L, 1, "a table, function or userdata expected as owner");
  if (t->flags & TF_CANCEL) {
    t->flags &= ~TF_CANCEL;
    lua_pushboolean(L, 0);
    luaio_push_cancel_error(L, t);
    return 2;
  }
  lua_settop(L, 3);
  t->state = TASK_WAITING;
  t->on_cancel = NULL;
  t->owner = owner;
  return yield_marked(L, 0, suspend_k);
}

int luaio_parked_on(const luaio_task *t, const void *owner) {
  return t->state == TASK_WAITING && !(t->flags & TF_NATIVE_WAIT) && t->owner == owner && owner != NULL;
}

static int l_wake(lua_State *L) {
  luaio_task *t = luaio_task_check(L, 1);
  if (!luaio_parked_on(t, lua_topointer(L, 2))) {
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
  lua_pushnumber(L, luaio_now(luaio_upvalue_host(L)));
  return 1;
}

static int l_stats(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, h->pending); lua_setfield(L, -2, "tasks");
  lua_pushinteger(L, h->ready.len); lua_setfield(L, -2, "ready");
  lua_pushinteger(L, h->timers.len); lua_setfield(L, -2, "timers");
  lua_pushinteger(L, h->handles); lua_setfield(L, -2, "handles");
  lua_pushinteger(L, (lua_Integer)h->switches); lua_setfield(L, -2, "switches");
  lua_pushinteger(L, (lua_Integer)h->iterations); lua_setfield(L, -2, "iterations");
  lua_pushinteger(L, h->task_seq); lua_setfield(L, -2, "spawned");
  return 1;
}

/* Adds the scheduler's verbs, call_later (timers.c) and the Task functions
** (task.c) to `core`. */
void luaio_open_sched(lua_State *L, luaio_host *h) {
  static const luaL_Reg funcs[] = {
    {"spawn", l_spawn}, {"sleep", l_sleep}, {"suspend", l_suspend}, {"wake", l_wake},
    {"now", l_now}, {"stats", l_stats},
    {"need_task", l_need_task}, {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
  luaio_open_timers(L, h);
  luaio_open_vclock(L, h);
  luaio_open_task(L, h);
  luaio_open_gather(L);
  luaio_wait_kind(h, LUAIO_WAIT_KEY(sleep_cancel), describe_sleep);
}
