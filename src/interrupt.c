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
#include "luaio_int.h"

static luaio_host *volatile signal_host;     /* the host whose aio.run owns SIGINT/SIGTERM */
static struct sigaction chained[2];          /* the handlers found (libuv's) */
static int64_t last_sigint_ms;

static int64_t monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void report_slow(lua_State *L, luaio_host *h) {
  double ran = uv_hrtime() / 1e9 - h->run_since;
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
  if (!h || h->executing != L) return;     /* a stale hook: this thread is not the one meant */
  if (h->watchdog_report) {
    h->watchdog_report = 0;
    report_slow(L, h);
  }
  int sig = h->interrupt_signal;
  if (sig) {
    h->interrupt_signal = 0;
    if (h->current && h->current == h->main && !h->sigint_seen) {
      /* what host.c's handler would do, done here: it will skip this one */
      h->sigint_seen = h->interrupt_delivered = sig;
      h->current->cancels++;
    }
    luaio_push_error(L, "CancelledError", NULL, "%s", sig == SIGINT ? "SIGINT" : "SIGTERM");
    lua_error(L);
  }
}

static void arm_hook(luaio_host *h, lua_State *L) {
  h->hook_armed = 1;
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
  if (h && h->user_signal_handlers == 0) {
    if (signum == SIGINT) {
      int64_t now = monotonic_ms();
      if (last_sigint_ms && now - last_sigint_ms < 2000) _exit(130);
      last_sigint_ms = now;
    }
    lua_State *L = h->executing;
    if (L) {
      h->interrupt_signal = signum;
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
  if (h->debug) luaio_watchdog_start(h);
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
  h->hook_armed = 0;
  if (lua_gethook(co)) lua_sethook(co, NULL, 0, 0);
  if (h->interrupt_signal || h->watchdog_report) {
    if (next) arm_hook(h, next);
    else h->interrupt_signal = h->watchdog_report = 0;
  }
}

/* ---- the debug watchdog ------------------------------------------------- */

static void watchdog_main(void *arg) {
  luaio_host *h = arg;
  uint32_t reported = 0;
  uv_mutex_lock(&h->watchdog_lock);
  while (!h->watchdog_stop) {
    double period = h->slow_callback / 4;
    if (period < 0.002) period = 0.002;
    if (period > 0.25) period = 0.25;
    uv_cond_timedwait(&h->watchdog_cond, &h->watchdog_lock, (uint64_t)(period * 1e9));
    if (h->watchdog_stop) break;
    lua_State *L = h->executing;
    uint32_t seq = h->run_seq;
    if (L && h->debug && seq != reported && h->run_since_seq == seq &&
        uv_hrtime() / 1e9 - h->run_since > h->slow_callback) {
      reported = seq;
      h->watchdog_report = 1;
      arm_hook(h, L);
    }
  }
  uv_mutex_unlock(&h->watchdog_lock);
}

void luaio_watchdog_start(luaio_host *h) {
  if (h->watchdog_running) return;
  uv_mutex_init(&h->watchdog_lock);
  uv_cond_init(&h->watchdog_cond);
  h->watchdog_stop = 0;
  if (uv_thread_create(&h->watchdog, watchdog_main, h) == 0) h->watchdog_running = 1;
  else { uv_cond_destroy(&h->watchdog_cond); uv_mutex_destroy(&h->watchdog_lock); }
}

void luaio_watchdog_stop(luaio_host *h) {
  if (!h->watchdog_running) return;
  uv_mutex_lock(&h->watchdog_lock);
  h->watchdog_stop = 1;
  uv_cond_signal(&h->watchdog_cond);
  uv_mutex_unlock(&h->watchdog_lock);
  uv_thread_join(&h->watchdog);
  uv_cond_destroy(&h->watchdog_cond);
  uv_mutex_destroy(&h->watchdog_lock);
  h->watchdog_running = 0;
}
