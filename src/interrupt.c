/*
** interrupt.c — stopping (or reporting) a task that never yields.
**
** The loop sees a signal only when it gets control back, which a task
** running `while true do end` never gives. As lua.c does for its prompt, the
** signal handler sets a count hook on the Lua thread that is executing; the
** hook raises the interrupt inside it (a CancelledError "SIGINT" or
** "SIGTERM"), and the loop's own handling (host.c: cancel the main task, let
** cleanup run, exit 130/143) follows once the task lets go. A second SIGINT
** within 2 s exits at once with status 130.
**
** In debug mode a watchdog thread uses the same hook to report a task that
** has run longer than slow_callback, while it still runs, with its traceback.
**
** Only async-signal-safe work happens in the handler: lua_sethook is meant to
** be called that way (lua.c does), and the rest are stores and _exit.
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "host.h"

static luaio_host *volatile signal_host;     /* the host whose aio.run owns SIGINT/SIGTERM */
static struct sigaction chained[2];          /* the handlers found (libuv's) */
static int64_t last_sigint_ms;

static int64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void report_slow(lua_State *L, luaio_host *h) {
  double ran = uv_hrtime() / 1e9 - h->debug.run_since;
  if (!lua_checkstack(L, 4)) return;
  const char *name = "?";
  if (h->current) {
    luaio_push_task(L, h->current);
    lua_getfield(L, -1, "name");
    if (lua_isstring(L, -1)) name = lua_tostring(L, -1);
  }
  luaL_traceback(L, L, NULL, 0);
  fprintf(stderr, "luaio: slow task %s has been running for %.3f s without yielding (still running):\n%s\n",
          name, ran, lua_tostring(L, -1));
  fflush(stderr);
  lua_pop(L, h->current ? 3 : 1);
}

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaio_host *h = luaio_host_get(L);
  if (!h || h->intr.executing != L) return;     /* a stale hook: this thread is not the one meant */
  if (h->intr.report) {
    h->intr.report = 0;
    report_slow(L, h);
  }
  int sig = h->intr.signal;
  if (sig) {
    h->intr.signal = 0;
    if (sig == SIGINT && h->intr.prompt) {
      /* the prompt's line (or what runs with it): interrupted where it is;
      ** the prompt itself hears of it through its own handler */
      if (h->current && h->current == h->main) return;
      h->intr.prompt_hits++;
      luaio_push_error(L, "CancelledError", NULL, "SIGINT");
      lua_error(L);
    }
    if (h->current && h->current == h->main && !h->sigint_seen) {
      /* what host.c's handler would do, done here: it will skip this one */
      h->sigint_seen = h->intr.delivered = sig;
      h->current->cancels++;
    }
    luaio_push_error(L, "CancelledError", NULL, "%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    lua_error(L);
  }
}

static void arm_hook(luaio_host *h, lua_State *L) {
  h->intr.hook_armed = 1;
  lua_sethook(L, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void on_os_signal(int signum) {
  int saved_errno = errno;
  struct sigaction *next = &chained[signum == SIGINT ? 0 : 1];
  if (next->sa_flags & SA_SIGINFO) {
    if (next->sa_sigaction) next->sa_sigaction(signum, NULL, NULL);
  } else if (next->sa_handler != SIG_DFL && next->sa_handler != SIG_IGN) {
    next->sa_handler(signum);             /* libuv's: the loop hears of it later */
  }
  luaio_host *h = signal_host;
  /* (a worker's stop is graceful: its loop drains, nothing is interrupted) */
  /* (the prompt keeps a SIGINT handler, and code that never yields can still
  ** be interrupted there: core.interrupt_lines) */
  int prompt = h && h->intr.prompt && signum == SIGINT;
  if (h && (h->user_signal_handlers == 0 || prompt) && !h->worker.on) {
    if (signum == SIGINT && !prompt) {
      int64_t now = monotonic_ms();
      if (last_sigint_ms && now - last_sigint_ms < 2000) _exit(130);
      last_sigint_ms = now;
    }
    lua_State *L = h->intr.executing;
    if (L) {
      h->intr.signal = signum;
      arm_hook(h, L);
    }
  }
  errno = saved_errno;
}

/* Called by run_until after libuv's handlers for SIGINT/SIGTERM are set. */
void luaio_interrupt_start(luaio_host *h) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_os_signal;
  sigfillset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  last_sigint_ms = 0;
  signal_host = h;
  sigaction(SIGINT, &sa, &chained[0]);
  sigaction(SIGTERM, &sa, &chained[1]);
  if (h->debug.on) luaio_watchdog_start(h);
}

/* Before libuv's handlers are removed: give them back their place. */
void luaio_interrupt_stop(luaio_host *h) {
  if (signal_host == h) {
    sigaction(SIGINT, &chained[0], NULL);
    sigaction(SIGTERM, &chained[1], NULL);
    signal_host = NULL;
  }
  luaio_watchdog_stop(h);
}

/* After a resume returns to the loop (or to an outer coroutine), when a
** hook was armed (luaio_interrupt_handoff, inline, checks that): drop a hook
** meant for `co`; an interrupt still pending goes to `next`, which goes on
** running, or to the loop's own handling when next is NULL. */
void luaio_interrupt_handoff_armed(luaio_host *h, lua_State *co, lua_State *next) {
  h->intr.hook_armed = 0;
  if (lua_gethook(co)) lua_sethook(co, NULL, 0, 0);
  if (h->intr.signal || h->intr.report) {
    if (next) arm_hook(h, next);
    else h->intr.signal = h->intr.report = 0;
  }
}

/* ---- the debug watchdog ------------------------------------------------- */

static void watchdog_main(void *arg) {
  luaio_host *h = arg;
  uint32_t reported = 0;
  uv_mutex_lock(&h->watchdog.lock);
  while (!h->watchdog.stop) {
    double period = h->debug.slow_callback / 4;
    if (period < 0.002) period = 0.002;
    if (period > 0.25) period = 0.25;
    uv_cond_timedwait(&h->watchdog.cond, &h->watchdog.lock, (uint64_t)(period * 1e9));
    if (h->watchdog.stop) break;
    lua_State *L = h->intr.executing;
    uint32_t seq = h->debug.run_seq;
    if (L && h->debug.on && seq != reported && h->debug.run_since_seq == seq &&
        uv_hrtime() / 1e9 - h->debug.run_since > h->debug.slow_callback) {
      reported = seq;
      h->intr.report = 1;
      arm_hook(h, L);
    }
  }
  uv_mutex_unlock(&h->watchdog.lock);
}

void luaio_watchdog_start(luaio_host *h) {
  if (h->watchdog.running) return;
  uv_mutex_init(&h->watchdog.lock);
  uv_cond_init(&h->watchdog.cond);
  h->watchdog.stop = 0;
  if (uv_thread_create(&h->watchdog.thread, watchdog_main, h) == 0) h->watchdog.running = 1;
  else { uv_cond_destroy(&h->watchdog.cond); uv_mutex_destroy(&h->watchdog.lock); }
}

void luaio_watchdog_stop(luaio_host *h) {
  if (!h->watchdog.running) return;
  uv_mutex_lock(&h->watchdog.lock);
  h->watchdog.stop = 1;
  uv_cond_signal(&h->watchdog.cond);
  uv_mutex_unlock(&h->watchdog.lock);
  uv_thread_join(&h->watchdog.thread);
  uv_cond_destroy(&h->watchdog.cond);
  uv_mutex_destroy(&h->watchdog.lock);
  h->watchdog.running = 0;
}

/* ---- debug mode: a slow task, reported after its resume ------------------ */

/* Where a task is about to resume, "file:line" (or, before its first
** run, where its function is defined). */
static void describe_position(lua_State *co, char *out, size_t size) {
  lua_Debug ar;
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

void luaio_task_debug_begin(luaio_host *h, luaio_task *t, char *where, size_t size) {
  describe_position(t->co, where, size);
  h->debug.run_since = uv_hrtime() / 1e9;
  h->debug.run_since_seq = h->debug.run_seq;
}

/* A task that ran longer than slow_callback goes to hooks.slow_task. */
void luaio_task_debug_end(luaio_host *h, luaio_task *t, const char *where) {
  double took = uv_hrtime() / 1e9 - h->debug.run_since;
  if (took <= h->debug.slow_callback) return;
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
