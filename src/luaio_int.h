/* luaio_int.h — internals shared by the native core's files. */
#ifndef LUAIO_INT_H
#define LUAIO_INT_H

#include <signal.h>
#include <stdint.h>
#include <stddef.h>
#include <lua.h>
#include <lauxlib.h>
#include <uv.h>
#include "luaio.h"

/* A deadline in the host's timer heap (sleep, call_later, stream timeouts). */
typedef struct luaio_timer luaio_timer;
struct luaio_timer {
  uint64_t due;          /* uv_now() milliseconds */
  uint32_t seq;          /* FIFO order among equal deadlines */
  uint32_t slot;         /* heap index + 1; 0 when not armed */
  void (*fire)(luaio_timer *tm);
};

enum { TASK_READY, TASK_RUNNING, TASK_WAITING, TASK_DONE, TASK_FAILED, TASK_CANCELLED };

enum {
  TF_STARTED = 1,        /* the coroutine has been resumed once */
  TF_CANCEL = 2,         /* a cancellation waits for the next suspension point */
  TF_RAISE = 4,          /* the next resume makes the waiting call raise */
  TF_RETRIEVED = 8,      /* someone looked at the error */
  TF_MAIN = 16,
  TF_HAS_EXTRAS = 32,    /* uservalue 2 holds a table (callbacks, name, ...) */
  TF_ONE_CALLBACK = 64,  /* uservalue 2 holds the only done callback (a function or waiting Task) */
  TF_NATIVE_WAIT = 128,  /* in luaio_await: native work may finish from anywhere */
};

#define LUAIO_TASK_MAGIC 0x7461736bu  /* tells a Task userdata without a registry lookup */

struct luaio_task {
  uint32_t magic;
  uint32_t anchor;             /* slot in the pending table; 0 once ended */
  luaio_host *host;
  lua_State *co;
  luaio_timer timer;
  luaio_cancel_fn on_cancel;   /* how to abort the current native wait */
  union {
    void *cancel_data;         /* native wait (TF_NATIVE_WAIT): on_cancel's argument */
    const void *owner;         /* Lua-level wait: what it waits on */
  };
  lua_KFunction k;             /* continuation of the native wait */
  lua_KContext kctx;
  uint32_t id;
  int nargs;                   /* values pushed on co for the next resume */
  uint16_t cancels;            /* cancellation requests not yet uncancelled */
  uint8_t state, flags;
};

/* Where a TLS session (tls.c) appends the ciphertext it produces; the
** stream sends and empties it after each call. The host's one is shared by
** all its sessions, since every call is followed by that flush. */
typedef struct { char *data; size_t len, cap; } luaio_tls_out;

typedef struct luaio_post_item {
  struct luaio_post_item *next;
  void (*fn)(luaio_host *h, void *arg);
  void *arg;
} luaio_post_item;

struct luaio_host {
  uv_loop_t *loop, own_loop;
  int owns_loop;
  lua_State *L;
  int owns_state;
  uv_idle_t idle;      /* keeps poll from blocking while tasks are ready */
  uv_check_t check;    /* drains the ready queue after each poll */
  uv_timer_t timer;    /* armed for the earliest deadline of the heap */
  uv_async_t async;    /* luaio_post wake-ups from other threads */
  uv_mutex_t post_lock;
  luaio_post_item *posted;
  /* ready queue: ring of task pointers */
  luaio_task **ring;
  uint32_t ring_cap, ring_head, ring_len;
  /* timer heap */
  luaio_timer **heap;
  uint32_t heap_len, heap_cap, timer_seq;
  uint64_t armed_due;
  /* pending tasks: slots of the anchor table, free list in C */
  uint32_t *free_slots, free_len, free_cap, slot_top;
  int anchors_ref;     /* registry ref: table slot -> Task userdata */
  int hooks_ref;       /* registry ref: table of Lua hooks (on_done, ...) */
  int failed_ref;      /* registry ref: weak set of failed tasks, swept at loop close */
  luaio_task *current;
  luaio_task *main;
  uint32_t task_seq, pending;
  uint32_t native_waits;   /* tasks in luaio_await: no deadlock verdict while > 0 */
  uint64_t switches, iterations;
  int handles;         /* resources (streams, servers, ...) open */
  char *scratch;       /* stream.c: TLS ciphertext as read, allocated on first use */
  luaio_tls_out tls_out;
  int running;         /* inside luaio_run_main */
  int closing;
  int debug;
  double slow_callback;
  double run_since;    /* debug mode: when the running task was resumed */
  int sigint_seen;           /* the signal that cancelled the main task */
  int main_is_chunk;         /* the main task runs a loaded chunk (a script) */
  int noyield;               /* coroutines resumed inside calls that cannot yield */
  /* interrupt.c: reaching a task that never yields (signals, debug watchdog) */
  lua_State *volatile executing;            /* the Lua thread running now, if any */
  volatile sig_atomic_t interrupt_signal;   /* for the hook to raise */
  volatile sig_atomic_t watchdog_report;    /* for the hook to report */
  volatile sig_atomic_t hook_armed;         /* a hook was set on `executing` */
  int interrupt_delivered;                  /* the signal the hook raised in the main task */
  volatile uint32_t run_seq, run_since_seq; /* resumes so far; the one run_since is of */
  int watchdog_running, watchdog_stop;
  uv_thread_t watchdog;
  uv_mutex_t watchdog_lock;
  uv_cond_t watchdog_cond;
  int user_signal_handlers;  /* open on_signal/wait_signal for SIGINT/SIGTERM: no default */
};

/* sched.c */
extern char luaio_yield_marker;
void luaio_sched_init(luaio_host *h);
void luaio_sched_close(luaio_host *h);
void luaio_ready(luaio_task *t);
int luaio_can_wait(lua_State *L);   /* in a task, where it may suspend */
int luaio_is_task_thread(lua_State *co);   /* co is a pending task's own coroutine */
int luaio_cancel(lua_State *L, luaio_task *t, int msg_idx);
void luaio_timer_arm(luaio_host *h, luaio_timer *tm, double seconds);
void luaio_timer_disarm(luaio_host *h, luaio_timer *tm);
luaio_task *luaio_check_task(lua_State *L, int idx);
void luaio_open_sched(lua_State *L, luaio_host *h);
void luaio_drain(luaio_host *h);
void luaio_push_task(lua_State *L, luaio_task *t);
int luaio_uncaught_report(lua_State *L, int idx);
void luaio_report_unretrieved(luaio_host *h);

/* interrupt.c */
void luaio_interrupt_start(luaio_host *h);
void luaio_interrupt_stop(luaio_host *h);
void luaio_interrupt_handoff_armed(luaio_host *h, lua_State *co, lua_State *next);
/* After resuming co, control goes to `next` (NULL: the loop). */
static inline void luaio_interrupt_handoff(luaio_host *h, lua_State *co, lua_State *next) {
  h->executing = next;
  if (h->hook_armed) luaio_interrupt_handoff_armed(h, co, next);
}
void luaio_watchdog_start(luaio_host *h);
void luaio_watchdog_stop(luaio_host *h);

/* host.c */
luaio_host *luaio_host_get(lua_State *L);  /* from the registry */
#define LUAIO_HOST_KEY "luaio.host"
#define LUAIO_ERROR_MT "luaio.Error"
#define LUAIO_TASK_MT "luaio.Task"
#define LUAIO_FAILED_TASK_MT "luaio.FailedTask"   /* the same, with a __gc that reports */

/* errors.c */
void luaio_open_errors(lua_State *L);
void luaio_push_uverror(lua_State *L, const char *name, int uverr, const char *what);
int luaio_uverror(lua_State *L, const char *name, int uverr, const char *what);

/* errors.c: argument checks with Lua's message shape and the public name
** of the function ("bad argument #1 to 'aio.sleep' (number expected, got
** string)"), at the caller's line. Used instead of luaL_check* everywhere. */
int luaio_argerror(lua_State *L, int arg, const char *extramsg);
const char *luaio_function_name(lua_State *L, int level);   /* pushes it */
int luaio_typeerror(lua_State *L, int arg, const char *tname);
lua_Number luaio_checknumber(lua_State *L, int arg);
lua_Integer luaio_checkinteger(lua_State *L, int arg);
const char *luaio_checklstring(lua_State *L, int arg, size_t *len);
const char *luaio_checkcstring(lua_State *L, int arg);   /* refuses NUL bytes */
void luaio_checktype(lua_State *L, int arg, int t);
void luaio_checkany(lua_State *L, int arg);
void *luaio_checkudata(lua_State *L, int arg, const char *tname);
lua_Integer luaio_optinteger(lua_State *L, int arg, lua_Integer def);
lua_Number luaio_optnumber(lua_State *L, int arg, lua_Number def);
const char *luaio_optlstring(lua_State *L, int arg, const char *def, size_t *len);
int luaio_checkoption(lua_State *L, int arg, const char *def, const char *const lst[]);
#define luaio_checkstring(L, n) (luaio_checklstring(L, (n), NULL))
#define luaio_optstring(L, n, d) (luaio_optlstring(L, (n), (d), NULL))
#define luaio_argexpected(L, cond, arg, tname) ((void)((cond) || luaio_typeerror(L, (arg), (tname))))

/* coro.c */
void luaio_open_coro(lua_State *L);

/* Native subsystems, one file each. Each adds its functions to the `core`
** table on top of the stack (with the host as upvalue where needed); the
** Lua file lua/luaio/<name>.lua, when present, installs the public names. */
void luaio_open_stream(lua_State *L, luaio_host *h);
void luaio_open_udp(lua_State *L, luaio_host *h);
void luaio_open_dns(lua_State *L, luaio_host *h);
void luaio_open_fs(lua_State *L, luaio_host *h);
void luaio_open_process(lua_State *L, luaio_host *h);
void luaio_open_signal(lua_State *L, luaio_host *h);
void luaio_open_thread(lua_State *L, luaio_host *h);
void luaio_open_http_parse(lua_State *L, luaio_host *h);
void luaio_open_tls(lua_State *L, luaio_host *h);
void luaio_open_json(lua_State *L, luaio_host *h);
void luaio_thread_host_gone(void);

/* module.c: embedded Lua sources */
int luaio_load_embedded(lua_State *L, const char *modname);

static inline luaio_host *luaio_upvalue_host(lua_State *L) {
  return (luaio_host *)lua_touserdata(L, lua_upvalueindex(1));
}

int luaio_close_orphan(uv_handle_t *handle, uv_close_cb on_close);

#endif
