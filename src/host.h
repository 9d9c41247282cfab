/*
** host.h — the insides of a luaio host (struct luaio_host), by concern.
**
** Only the files that really need them include this: the scheduler
** (sched.c, task*.c, timers.c, post.c), the host's own life (host.c,
** module.c), interrupt.c and coro.c (the interrupt hand-off), and the
** subsystems that open handles on the loop or use the shared scratch
** buffers. Everything else (errors, json, the parsers, main.c, embed.c)
** talks to the host through luaio_int.h's functions.
*/
#ifndef LUAIO_HOST_H
#define LUAIO_HOST_H

#include <signal.h>
#include <time.h>
#include "luaio_int.h"

struct luaio_post_item;   /* post.c */

struct luaio_host {
  /* ---- the loop and the Lua state: read by every subsystem ---- */
  uv_loop_t *loop, own_loop;
  int owns_loop;
  lua_State *L;        /* the main thread */
  int owns_state;
  int hooks_ref;       /* registry ref: table of Lua hooks (spawn, main_done, ...) */
  int closing;         /* 1: closing; 2: the scheduler's handles are closed */
  int handles;         /* resources (streams, servers, ...) open */

  /* ---- the scheduler's loop handles (sched.c) ---- */
  uv_idle_t idle;      /* keeps poll from blocking while tasks are ready */
  uv_check_t check;    /* drains the ready queue after each poll */
  uv_timer_t timer;    /* armed for the earliest deadline of the heap */

  /* ---- the ready queue (sched.c): ring of task pointers ---- */
  struct {
    luaio_task **items;
    uint32_t cap;      /* a power of two */
    uint32_t head, len;
  } ready;

  /* ---- deadlines (sched.c over timerheap.c) ---- */
  luaio_timerheap timers;
  uint64_t armed_due;  /* what `timer` is armed for; 0: not armed */

  /* ---- the virtual clock of luaio.testing (vclock.c): off, the real one ---- */
  struct {
    int on;
    uint64_t ms, origin;   /* now and its zero, on the timer heap's scale (ms) */
    uint32_t busy;         /* native operations waited on: no jump while > 0 */
    uint64_t seen;         /* h->switches at the last tick */
    uv_idle_t idle;        /* ticks while deadlines are pending and nothing is busy */
  } vclock;

  /* ---- pending tasks (task.c): slots of the anchor table, free list in C ---- */
  struct {
    int ref;           /* registry ref: table slot -> Task userdata */
    uint32_t top;      /* highest slot ever used */
    uint32_t *free, free_len, free_cap;
  } anchors;
  int failed_ref;      /* registry ref: weak set of failed tasks, swept at loop close */
  int task_mt_ref;     /* registry ref: the Task metatable (spawn sets it without a lookup by name) */
  uint32_t task_seq;   /* tasks spawned so far (the last id) */
  uint32_t pending;    /* tasks not ended */
  uint32_t native_waits;   /* tasks in luaio_await: no deadlock verdict while > 0 */
  luaio_task *current; /* the task resumed by the loop right now (interrupt.c) */
  uint64_t switches, iterations;

  /* ---- cross-thread posts (post.c) ---- */
  struct {
    uv_async_t async;  /* wakes the loop; referenced while native waits are pending */
    uv_mutex_t lock;
    struct luaio_post_item *items;   /* newest first */
  } post;

  /* ---- the main task's run (host.c) ---- */
  luaio_task *main;
  int running;         /* inside luaio_run_main / aio.run */
  int main_is_chunk;   /* the main task runs a loaded chunk (a script) */
  int sigint_seen;     /* the signal that cancelled the main task */
  int user_signal_handlers;  /* signal.c: open on_signal/wait_signal for SIGINT/SIGTERM: no default */

  /* ---- reaching a task that never yields (interrupt.c, coro.c) ---- */
  struct {
    lua_State *volatile executing;       /* the Lua thread running now, if any */
    volatile sig_atomic_t signal;        /* for the hook to raise */
    volatile sig_atomic_t report;        /* for the hook to report (watchdog) */
    volatile sig_atomic_t hook_armed;    /* a hook was set on `executing` */
    int delivered;                       /* the signal the hook raised in the main task */
    int prompt;                          /* the prompt runs lines: SIGINT interrupts one (below) */
    int prompt_hits;                     /* SIGINTs the hook raised for it (core.interrupt_lines) */
  } intr;
  int noyield;         /* coroutines resumed inside calls that cannot yield (coro.c) */

  /* ---- debug mode: slow task reports (sched.c, interrupt.c) ---- */
  struct {
    int on;
    double slow_callback;  /* seconds */
    double run_since;      /* when the running task was resumed */
    volatile uint32_t run_seq, run_since_seq;  /* resumes so far (always counted); the one run_since is of */
    int monitor;           /* a monitor was opened: spawns record position and time too */
    int tracked;           /* track.c recorded a resource: closes look it up */
  } debug;
  /* ---- what a native wait is, by its cancel function (waitinfo.c) ---- */
  struct { luaio_wait_key key; luaio_describe_fn fn; } wait_kinds[24];
  int n_wait_kinds;
  struct {
    int running, stop;
    uv_thread_t thread;
    uv_mutex_t lock;
    uv_cond_t cond;
  } watchdog;

  /* ---- worker mode: `luaio --workers` ran this process (worker.c) ---- */
  struct {
    int on;              /* $LUAIO_WORKER was set: the supervisor's protocol applies */
    int id, count;       /* 1..count */
    unsigned generation; /* bumped by each rolling reload (SIGHUP to the supervisor) */
    int chan;            /* the channel to the supervisor (readiness, shared sockets) */
    double grace;        /* seconds in-flight connections get at a stop */
    int listened;        /* a listener was opened: readiness may be told */
    int ready_sent;
    int stopping;        /* the stop signal came: servers close, connections drain */
    int stop_signal;     /* SIGTERM or SIGINT */
    int drained;         /* the drain ended (all finished, or the grace ran out) */
    int cut;             /* the grace ran out with connections still in flight */
    uv_prepare_t ready_check;  /* before the loop waits: listening and idle? */
    uv_timer_t ready_fallback; /* a worker that opens no server is ready after a while */
  } worker;

  /* ---- the HTTP server's Date line, made once a second (http_respond.c) ---- */
  struct { time_t second; size_t len; char line[80]; } http_date;

  /* ---- shared scratch buffers (stream.c, tls.c) ---- */
  char *scratch;       /* TLS ciphertext as read, allocated on first use */
  luaio_tls_out tls_out;
};

/* The parts of the host's life, each in the file of its concern. */
void luaio_timers_init(luaio_host *h);     /* timers.c */
void luaio_timers_close(luaio_host *h);
void luaio_timers_free(luaio_host *h);
void luaio_open_timers(lua_State *L, luaio_host *h);
void luaio_timers_rearm(luaio_host *h);
void luaio_timers_fire(luaio_host *h, uint64_t now);   /* the deadlines up to now (ms) */
void luaio_vclock_init(luaio_host *h);     /* vclock.c */
void luaio_vclock_close(luaio_host *h);
void luaio_vclock_kick(luaio_host *h);
void luaio_vclock_switch(luaio_host *h, int on);
void luaio_open_vclock(lua_State *L, luaio_host *h);
void luaio_post_init(luaio_host *h);       /* post.c */
void luaio_post_close(luaio_host *h);
void luaio_post_free(luaio_host *h);

/* worker.c: the worker side of `luaio --workers` (see its top). */
void luaio_worker_signal(luaio_host *h, int signum);  /* host.c: SIGTERM/SIGINT in worker mode */
void luaio_worker_linger(luaio_host *h);              /* host.c: main ended during a drain */
void luaio_worker_open(lua_State *L, luaio_host *h);  /* module.c: core.worker_* */
void luaio_cancel_main_by(luaio_host *h, int signum); /* host.c: what SIGINT/SIGTERM do by default */

/* interrupt.c: after resuming co, control goes to `next` (NULL: the loop). */
void luaio_interrupt_handoff_armed(luaio_host *h, lua_State *co, lua_State *next);
static inline void luaio_interrupt_handoff(luaio_host *h, lua_State *co, lua_State *next) {
  h->intr.executing = next;
  if (h->intr.hook_armed) luaio_interrupt_handoff_armed(h, co, next);
}

#endif
