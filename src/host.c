/*
** host.c — a luaio host: one lua_State and one scheduler on one uv loop;
** aio.run and luaio_run_main drive the loop until a main task ends.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lualib.h>
#include "host.h"
#include "alloc.h"

typedef struct { luaio_host *h; } host_ref;

luaio_host *luaio_host_get(lua_State *L) {
  luaio_host *h = NULL;
  if (lua_getfield(L, LUA_REGISTRYINDEX, LUAIO_HOST_KEY) == LUA_TUSERDATA)
    h = ((host_ref *)lua_touserdata(L, -1))->h;
  lua_pop(L, 1);
  return h;
}

luaio_host *luaio_host_of(lua_State *L) { return luaio_host_get(L); }
lua_State *luaio_host_state(luaio_host *h) { return h->L; }
uv_loop_t *luaio_host_loop(luaio_host *h) { return h->loop; }
int luaio_host_signal(luaio_host *h) { return h->sigint_seen; }

static void close_walk(uv_handle_t *handle, void *arg) {
  (void)arg;
  if (!uv_is_closing(handle)) uv_close(handle, NULL);
}

/* Close the scheduler's handles and, for an owned loop, everything else. */
static void host_teardown(luaio_host *h) {
  if (h->closing == 2) return;
  h->closing = 2;
  luaio_sched_close(h);
  if (h->owns_loop) {
    uv_walk(h->loop, close_walk, NULL);
    uv_run(h->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(h->loop) != 0) fprintf(stderr, "luaio: loop still busy at close\n");
  } else {
    /* only our own handles are closing: a few non-blocking turns finish them */
    for (int i = 0; i < 4; i++) uv_run(h->loop, UV_RUN_NOWAIT);
  }
  luaio_watchdog_stop(h);
  luaio_sched_free(h);
  free(h->scratch);
  h->scratch = NULL;
  free(h->tls_out.data);
  h->tls_out.data = NULL;
  luaio_thread_host_gone();
}

/* For a __gc that runs while the host shuts down: the teardown walk may
** already have closed `handle` without its owner's callback. Returns 1 when
** so (the caller frees the memory now), else closes it with `on_close`. */
int luaio_close_orphan(uv_handle_t *handle, uv_close_cb on_close) {
  if (uv_is_closing(handle)) return 1;
  uv_close(handle, on_close);
  return 0;
}

static int hostref_gc(lua_State *L) {
  host_ref *ref = lua_touserdata(L, 1);
  luaio_host *h = ref->h;
  if (!h) return 0;
  ref->h = NULL;
  h->closing = h->closing ? h->closing : 1;
  host_teardown(h);
  if (!h->owns_state) free(h);
  return 0;
}

/* Attach a new host to L (called once per state, by luaopen_luaio). */
luaio_host *luaio_host_attach(lua_State *L, uv_loop_t *loop) {
  luaio_host *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  if (loop) h->loop = loop;
  else {
    h->loop = &h->own_loop;
    if (uv_loop_init(h->loop) != 0) { free(h); return NULL; }
    h->owns_loop = 1;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  h->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  h->debug.slow_callback = 0.1;
  /* a write to a reset peer must be an error, not a process kill (libuv
  ** leaves SIGPIPE to the application); an embedder's own handler stays */
  struct sigaction old;
  if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
  host_ref *ref = lua_newuserdatauv(L, sizeof *ref, 0);
  ref->h = h;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, hostref_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, LUAIO_HOST_KEY);
  lua_newtable(L);
  h->anchors.ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  h->hooks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaio_new_weak_keys(L);
  h->failed_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaio_sched_init(h);
  const char *dbg = getenv("LUAIO_DEBUG");
  if (dbg && *dbg && strcmp(dbg, "0") != 0) h->debug.on = 1;
  return h;
}

luaio_host *luaio_host_new(uv_loop_t *loop) {
  extern _Thread_local uv_loop_t *luaio_borrow_loop;
  lua_State *L = luaio_newstate();   /* on an arena (alloc.c) */
  if (!L) return NULL;
  luaL_openlibs(L);
  luaio_borrow_loop = loop;
  luaL_requiref(L, "luaio", luaopen_luaio, 0);
  luaio_borrow_loop = NULL;
  lua_pop(L, 1);
  luaio_host *h = luaio_host_get(L);
  if (!h) { luaio_closestate(L); return NULL; }
  h->owns_state = 1;
  return h;
}

/* ---- running until a task ends ---------------------------------------- */

/* Cancel the main task as SIGINT/SIGTERM does by default (once). */
void luaio_cancel_main_by(luaio_host *h, int signum) {
  if (!h->main || h->main->state >= TASK_DONE || h->sigint_seen) return;
  h->sigint_seen = signum;
  lua_pushstring(h->L, signum == SIGINT ? "SIGINT" : "SIGTERM");
  luaio_cancel(h->L, h->main, lua_gettop(h->L));
  lua_pop(h->L, 1);
}

static void on_signal(uv_signal_t *sig, int signum) {
  luaio_host *h = sig->data;
  /* a worker stops gracefully, whatever the program listens to: the
  ** supervisor's stop and reload depend on it (worker.c) */
  if (h->worker.on) { luaio_worker_signal(h, signum); return; }
  if (h->user_signal_handlers > 0) return;   /* the program handles it */
  if (h->intr.delivered == signum) {    /* interrupt.c raised it in the main task already */
    h->intr.delivered = 0;
    return;
  }
  if (h->main && h->main->state < TASK_DONE && !h->sigint_seen) {
    luaio_cancel_main_by(h, signum);
    return;
  }
  /* a second signal while cleaning up: stop at once, with the shell's status */
  fflush(stdout);
  fflush(stderr);
  _exit(128 + signum);
}

static void push_deadlock(lua_State *co) {
  luaio_push_error(co, "DeadlockError", NULL,
                   "the main task waits, but no timer, I/O or ready task is left to wake it");
}

/* Cancel every pending task and let them unwind. */
static void cancel_rest(luaio_host *h) {
  lua_State *L = h->L;
  for (int round = 0; round < 5 && h->pending > 0; round++) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->anchors.ref);
    for (uint32_t i = 1; i <= h->anchors.top; i++) {
      if (lua_rawgeti(L, -1, i) == LUA_TUSERDATA) luaio_cancel(L, lua_touserdata(L, -1), 0);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    while (h->pending > 0) {
      uv_run(h->loop, UV_RUN_ONCE);
      if (h->ready.len == 0 && h->native_waits == 0 && !uv_loop_alive(h->loop)) break;
    }
  }
}

static void call_hook(luaio_host *h, const char *name) {
  lua_rawgeti(h->L, LUA_REGISTRYINDEX, h->hooks_ref);
  if (lua_getfield(h->L, -1, name) == LUA_TFUNCTION) {
    if (lua_pcall(h->L, 0, 0, 0) != LUA_OK) lua_pop(h->L, 1);
  } else lua_pop(h->L, 1);
  lua_pop(h->L, 1);
}

static void run_until(luaio_host *h, luaio_task *t) {
  uv_signal_t sigint, sigterm;
  h->running = 1;
  h->main = t;
  h->sigint_seen = 0;
  h->main_is_chunk = 0;
  if (!(t->flags & TF_STARTED) && lua_gettop(t->co) >= 2) {   /* [task_body, fn, args...] */
    lua_Debug ar;
    lua_pushvalue(t->co, 2);
    if (lua_getinfo(t->co, ">S", &ar)) h->main_is_chunk = strcmp(ar.what, "main") == 0;
  }
  t->flags |= TF_MAIN;
  uv_signal_init(h->loop, &sigint);
  uv_signal_init(h->loop, &sigterm);
  sigint.data = sigterm.data = h;
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_unref((uv_handle_t *)&sigint);
  uv_unref((uv_handle_t *)&sigterm);
  luaio_interrupt_start(h);
  while (t->state < TASK_DONE) {
    uv_run(h->loop, UV_RUN_ONCE);
    if (t->state < TASK_DONE && h->ready.len == 0 && h->native_waits == 0 && !uv_loop_alive(h->loop)) {
      if (t->state == TASK_WAITING) {
        if (t->on_cancel) { luaio_cancel_fn fn = t->on_cancel; t->on_cancel = NULL; fn(t->cancel_data); }
        push_deadlock(t->co);
        luaio_wake_error(t);
      } else break;
    }
  }
  if (h->worker.stopping) luaio_worker_linger(h);   /* in-flight connections finish first */
  call_hook(h, "main_done");      /* debug mode lists what is left, before it is cancelled */
  cancel_rest(h);
  luaio_interrupt_stop(h);
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
  uv_run(h->loop, UV_RUN_NOWAIT);
  h->main = NULL;
  h->running = 0;
  call_hook(h, "loop_closed");
  luaio_report_unretrieved(h);
}

int luaio_run_main(luaio_host *h, luaio_task *t, int *nresults) {
  lua_State *L = h->L;
  int top = lua_gettop(L);
  luaio_push_task(L, t);     /* keep it alive past its end */
  int ti = lua_gettop(L);
  run_until(h, t);
  int n = luaio_task_results(t, L);
  int status = t->state == TASK_DONE ? LUA_OK : LUA_ERRRUN;
  lua_remove(L, ti);
  if (nresults) *nresults = lua_gettop(L) - top;
  (void)n;
  return status;
}

/* Is aio.run called right from the top level of the chunk that the main task
** runs (a script under the `luaio` command)? Level 1 is then that chunk and
** level 2 the task's C body, with nothing below; or, for `return aio.run(f)`,
** a tail call has replaced the chunk and level 1 is already the C body. */
static int called_from_main_chunk(lua_State *L, luaio_host *h) {
  lua_Debug ar;
  if (!h->main || !h->main_is_chunk || luaio_current(L) != h->main) return 0;
  if (!lua_getstack(L, 1, &ar) || !lua_getinfo(L, "S", &ar)) return 0;
  int level = 2;
  if (strcmp(ar.what, "main") == 0) {
    if (!lua_getstack(L, 2, &ar) || !lua_getinfo(L, "S", &ar) || strcmp(ar.what, "C") != 0) return 0;
    level = 3;
  } else {
    lua_Debug self;
    if (strcmp(ar.what, "C") != 0 || !lua_getstack(L, 0, &self) || !lua_getinfo(L, "t", &self) ||
        !self.istailcall)
      return 0;
  }
  return !lua_getstack(L, level, &ar);
}

static int run_nested_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return lua_gettop(L) - (int)ctx;
}

/* aio.run(fn, ...), and testing.run on the virtual clock (vclock.c) */
static int run(lua_State *L, int virtual) {
  luaio_host *h = luaio_upvalue_host(L);
  const char *fname = virtual ? "testing.run" : "aio.run";
  if (called_from_main_chunk(L, h)) {
    /* a script written for stock lua5.4 ends with aio.run(main); under the
    ** luaio command its top level already is the main task, so main runs as a
    ** task of this loop, with run's end semantics (hooks.lua, run_nested) */
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->hooks_ref);
    lua_getfield(L, -1, virtual ? "run_virtual" : "run_nested");
    lua_remove(L, -2);
    lua_insert(L, 1);
    lua_callk(L, lua_gettop(L) - 1, LUA_MULTRET, 0, run_nested_k);
    return run_nested_k(L, LUA_OK, 0);
  }
  if (h->running || luaio_current(L))
    return luaL_error(L, "%s cannot be called while a loop is running (it is not re-entrant)", fname);
  luaio_checkany(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->hooks_ref);
  lua_getfield(L, -1, "spawn");
  lua_remove(L, -2);
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  luaio_task *t = luaio_check_task(L, 1);
  if (virtual) luaio_vclock_switch(h, 1);
  run_until(h, t);
  if (virtual) luaio_vclock_switch(h, 0);
  int n = luaio_task_results(t, L);
  if (t->state == TASK_DONE) return n;
  return lua_error(L);
}

static int l_run(lua_State *L) { return run(L, 0); }
static int l_run_virtual(lua_State *L) { return run(L, 1); }

static int l_set_debug(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  h->debug.on = lua_toboolean(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    luaio_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "slow_callback");
    if (!lua_isnil(L, -1)) {
      double sec = lua_tonumber(L, -1);
      if (!lua_isnumber(L, -1) || !(sec > 0))
        return luaio_argerror(L, 2, "slow_callback: a positive number of seconds expected");
      h->debug.slow_callback = sec;
    }
    lua_pop(L, 1);
  }
  if (h->debug.on && h->running) {
    h->debug.run_since = uv_hrtime() / 1e9;    /* the task running now counts from here */
    h->debug.run_since_seq = h->debug.run_seq;
    luaio_watchdog_start(h);
  }
  return 0;
}

/* core.interrupted() -> "SIGINT" | "SIGTERM" | nil: the signal that cancelled the main task */
static int l_interrupted(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  if (h->sigint_seen) lua_pushstring(L, h->sigint_seen == SIGINT ? "SIGINT" : "SIGTERM");
  else lua_pushnil(L);
  return 1;
}

/* core.interrupt_lines(on) -> the SIGINTs that interrupted running code since
** the last call. On: the prompt's mode (interrupt.c): a SIGINT interrupts the
** Lua code running (a line that never yields), not the main task, even under
** an on_signal handler, and never exits the process. */
static int l_interrupt_lines(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  h->intr.prompt = lua_toboolean(L, 1);
  lua_pushinteger(L, h->intr.prompt_hits);
  h->intr.prompt_hits = 0;
  return 1;
}

static int l_get_debug(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  lua_pushboolean(L, h->debug.on);
  lua_pushnumber(L, h->debug.slow_callback);
  return 2;
}

void luaio_open_host(lua_State *L, luaio_host *h) {
  static const luaL_Reg funcs[] = {
    {"run", l_run}, {"run_virtual", l_run_virtual}, {"set_debug", l_set_debug}, {"get_debug", l_get_debug},
    {"interrupted", l_interrupted},
    {"interrupt_lines", l_interrupt_lines}, {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}

void luaio_host_free(luaio_host *h) {
  if (!h) return;
  lua_State *L = h->L;
  if (h->pending > 0 && !h->running) cancel_rest(h);
  h->closing = 1;
  luaio_closestate(L);       /* its host ref's __gc tears the loop side down */
  free(h);
}
