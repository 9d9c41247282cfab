/*
** luaio_int.h — the protocol every native subsystem includes: the task
** struct, the suspend/resume (await) protocol, timers, errors, argument
** checks and the conventions below. The host's insides are in host.h, for
** the few files that need them; the mechanism itself is explained at the
** top of sched.c.
*/
#ifndef LUAIO_INT_H
#define LUAIO_INT_H

#include <stdint.h>
#include <stddef.h>
#include <lua.h>
#include <lauxlib.h>
#include <uv.h>
#include "luaio.h"
#include "timerheap.h"

/* The struct of type `type` whose member `member` is at ptr. */
#define luaio_container_of(ptr, type, member) \
  ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Out of memory, one policy:
** - what a Lua caller asks for (userdata, tables, strings, Lua stacks)
**   comes from Lua's allocator, which raises the Lua error itself; C code
**   that mallocs on behalf of a Lua call raises too (luaL_error "out of
**   memory"), before it has changed anything;
** - the core's own structures that grow where no Lua caller can take an
**   error and that cannot fail half-way (the ready queue, the timer heap,
**   the anchor free list: a task woken but not queued would be lost) end
**   the process through luaio_oom(what), which names them on stderr;
** - public C calls that can report failure return it (luaio_host_new:
**   NULL, luaio_post: UV_ENOMEM). */
#if defined(__GNUC__)
__attribute__((noreturn, cold))
#endif
void luaio_oom(const char *what);

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
  TF_DAEMON = 256,       /* the monitor's: its waits keep neither the loop nor a deadlock alive */
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
  lua_KFunction k;             /* continuation of the native wait (its context rides the yield) */
  uint32_t id;
  int nargs;                   /* values pushed on co for the next resume */
  uint16_t cancels;            /* cancellation requests not yet uncancelled */
  uint16_t flags;
  uint8_t state;
};

/* Where a TLS session (tls.c) appends the ciphertext it produces; the
** stream sends and empties it after each call. The host's one is shared by
** all its sessions, since every call is followed by that flush. */
typedef struct { char *data; size_t len, cap; } luaio_tls_out;

/* ---- the scheduler (sched.c; the protocol is explained at its top) ---- */
extern char luaio_yield_marker;      /* what every scheduler yield carries */
void luaio_sched_init(luaio_host *h);
void luaio_sched_close(luaio_host *h);
void luaio_sched_free(luaio_host *h);
void luaio_ready(luaio_task *t);     /* queue t to run (state READY) */
void luaio_drain(luaio_host *h);
int luaio_can_wait(lua_State *L);    /* in a task, where it may suspend */
int luaio_is_task_thread(lua_State *co);   /* co is a pending task's own coroutine */
/* Cancel t with the message at msg_idx of L (0: "cancelled"); 0 if t ended. */
int luaio_cancel(lua_State *L, luaio_task *t, int msg_idx);
void luaio_open_sched(lua_State *L, luaio_host *h);
/* t is parked by core.suspend on owner: core.wake(t, owner) would wake it */
int luaio_parked_on(const luaio_task *t, const void *owner);
/* Public: luaio_current, luaio_need_task, luaio_await, luaio_wake,
** luaio_wake_error, luaio_spawn (include/luaio.h). */

/* Timers on the host's loop: arm tm to fire `seconds` from now (re-arming
** an armed one), or disarm it (no-op when not armed). tm->fire runs on the
** loop, with tm already disarmed. */
void luaio_timer_arm(luaio_host *h, luaio_timer *tm, double seconds);
void luaio_timer_disarm(luaio_host *h, luaio_timer *tm);
/* The same by due time: luaio_timer_due_in(seconds) is the due time of a
** deadline `seconds` from now, on the scale of tm->due (milliseconds). */
uint64_t luaio_timer_due_in(luaio_host *h, double seconds);
void luaio_timer_arm_due(luaio_host *h, luaio_timer *tm, uint64_t due);
/* The host's clock in seconds (aio.now): the virtual clock of luaio.testing
** when it is on (vclock.c), else the monotonic clock. Deadlines given as a
** time of this clock are measured against it. */
double luaio_now(luaio_host *h);
/* A native operation that finishes by itself (DNS, a file or thread job, a
** connect, a child's exit) is waited on: the virtual clock does not jump
** while one is. Returns h when it was counted (the virtual clock is on): the
** waiter then calls luaio_vclock_busy_end(h) once, when the wait ends. */
luaio_host *luaio_vclock_busy_begin(luaio_host *h);
void luaio_vclock_busy_end(luaio_host *h);

/* ---- what tasks wait on, and where (waitinfo.c) ----
** A native wait is told apart by its cancel function (luaio_await's
** on_cancel; for a luaio_op, its abort): each subsystem registers, once per
** host, a describer that pushes one line about the wait's data ("stream
** read from 127.0.0.1:5000"). Nothing is recorded while tasks wait: the
** text is made only when the monitor or t:traceback() asks. */
typedef void (*luaio_wait_key)(void);
typedef void (*luaio_describe_fn)(lua_State *L, void *data);
void luaio_wait_kind(luaio_host *h, luaio_wait_key key, luaio_describe_fn fn);
#define LUAIO_WAIT_KEY(fn) ((luaio_wait_key)(void (*)(void))(fn))
void luaio_open_waitinfo(lua_State *L, luaio_host *h);

/* ---- debug mode's open resources (track.c) ----
** In debug mode, a native resource's creation records its label and the
** position of the user's code that created it; its close drops it. Both are
** one test of a flag otherwise. The resource's userdata is at idx. */
void luaio_track(lua_State *L, luaio_host *h, int idx, const char *fmt, ...);
void luaio_untrack(luaio_host *h, const void *userdata);
/* push "file:line" of the first frame of L outside luaio's own Lua code
** (else the running task's spawn position, else "?") */
void luaio_push_user_where(lua_State *L);
void luaio_open_track(lua_State *L, luaio_host *h);

/* ---- tasks (task.c) ---- */
luaio_task *luaio_check_task(lua_State *L, int idx);
void luaio_push_task(lua_State *L, luaio_task *t);    /* a pending task */
int luaio_uncaught_report(lua_State *L, int idx);
void luaio_report_unretrieved(luaio_host *h);
/* Log the error on top of L (and pop it): a callback's error is reported,
** never raised into the loop. */
void luaio_report_callback_error(lua_State *L, const char *what);

/* ---- interrupt.c ---- */
void luaio_interrupt_start(luaio_host *h);
void luaio_interrupt_stop(luaio_host *h);
void luaio_watchdog_start(luaio_host *h);
void luaio_watchdog_stop(luaio_host *h);
/* luaio_interrupt_handoff: host.h (inline, it reads the host) */

/* ---- host.c ---- */
luaio_host *luaio_host_get(lua_State *L);  /* from the registry */
int luaio_host_signal(luaio_host *h);      /* the signal that cancelled the main task, or 0 */
#define LUAIO_HOST_KEY "luaio.host"
#define LUAIO_ERROR_MT "luaio.Error"
#define LUAIO_TASK_MT "luaio.Task"
#define LUAIO_FAILED_TASK_MT "luaio.FailedTask"   /* the same, with a __gc that reports */

/* ---- worker.c: a worker process of `luaio --workers` (supervisor.c is
** the other side of the protocol; both files explain it at their top) ---- */
int luaio_worker_attach(luaio_host *h);   /* main.c: from $LUAIO_WORKER; -1: malformed */
int luaio_worker_exit_status(luaio_host *h, int code);   /* main.c: the status after a stop */
/* listener.c: in worker mode TCP ports (not 0) and Unix paths are shared:
** the supervisor's socket for them, as an fd, or a negative errno with
** *step naming the call that failed ("bind", "listen", ...) */
int luaio_worker_shares(luaio_host *h);
int luaio_worker_listen_fd(luaio_host *h, int is_unix, const char *addr, int port, int backlog,
                           const char **step);
void luaio_worker_listening(luaio_host *h);   /* a listener is open: readiness may be told */

/* ---- errors.c ---- */
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

/* ---- coro.c ---- */
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
void luaio_open_zlib(lua_State *L, luaio_host *h);
void luaio_open_ws(lua_State *L, luaio_host *h);      /* ws_frame.c */
void luaio_open_monitor(lua_State *L, luaio_host *h); /* monitor.c */
void luaio_open_resp(lua_State *L, luaio_host *h);    /* resp.c */
void luaio_open_digest(lua_State *L, luaio_host *h);  /* digest.c */
void luaio_open_queue(lua_State *L, luaio_host *h);   /* queue.c */
void luaio_thread_host_gone(void);

/* module.c: embedded Lua sources */
int luaio_load_embedded(lua_State *L, const char *modname);

/* Push a new table whose keys are weak (a set that does not keep its members alive). */
static inline void luaio_new_weak_keys(lua_State *L) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
}

static inline luaio_host *luaio_upvalue_host(lua_State *L) {
  return (luaio_host *)lua_touserdata(L, lua_upvalueindex(1));
}

int luaio_close_orphan(uv_handle_t *handle, uv_close_cb on_close);   /* host.c */


#endif
