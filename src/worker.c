/*
** worker.c — a worker process of `luaio --workers` (supervisor.c is the
** other side; docs/deployment.md explains the model to users).
**
** The supervisor starts each worker as `luaio script [args]` with
** $LUAIO_WORKER = "id/count/generation/fd/grace"; fd is the worker's end of
** a SOCK_SEQPACKET channel to the supervisor (one message per packet):
**   - "L T ip port backlog" or "L U path backlog": the worker asks for a
**     listening socket; the answer is "OK" carrying the socket (SCM_RIGHTS),
**     or "E step errno". The supervisor holds the sockets, one per address
**     and worker id (SO_REUSEPORT), which the id's next worker gets again: no
**     listening socket closes during a rolling reload (closing one resets the
**     connections waiting in its backlog).
**   - "R": the worker is ready. That is: it has opened a listener and its
**     loop is about to wait with no task ready to run (the main task has
**     done what it does at start up to its first real wait), or, for a
**     worker that opens no server, READY_FALLBACK seconds after its start.
**     A reload stops an old worker only once its replacement is ready.
**
** SIGTERM/SIGINT start a graceful stop instead of cancelling the main task:
** hooks.worker_stop (worker.lua) closes every server (no new connection),
** lets the connections in flight finish for up to the grace, then calls
** core.worker_done, which cancels the main task (its cleanup runs). The main
** task ending by itself meanwhile does not cut the connections: run_until
** lingers until the drain has ended (luaio_worker_linger). alarm() backs the
** whole stop: a worker stuck in a loop that never yields still ends.
*/
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "host.h"

#define READY_FALLBACK 5.0   /* seconds: a worker with no server is ready then */
#define STOP_BACKSTOP 5.0    /* seconds past the grace: SIGALRM ends the worker */

/* ---- attaching: the supervisor's environment -------------------------- */

static void send_ready(luaio_host *h) {
  if (h->worker.ready_sent) return;
  h->worker.ready_sent = 1;
  uv_prepare_stop(&h->worker.ready_check);
  uv_timer_stop(&h->worker.ready_fallback);
  /* a supervisor gone is no error here: PR_SET_PDEATHSIG stops this worker */
  (void)send(h->worker.chan, "R", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* prepare runs right before the loop polls; an empty ready ring means that
** the poll may block: every task, the main one included, is waiting */
static void on_ready_check(uv_prepare_t *p) {
  luaio_host *h = p->data;
  if (h->worker.listened && h->ready.len == 0) send_ready(h);
}

static void on_ready_fallback(uv_timer_t *t) { send_ready(t->data); }

static void start_readiness(luaio_host *h) {
  uv_prepare_init(h->loop, &h->worker.ready_check);
  h->worker.ready_check.data = h;
  uv_prepare_start(&h->worker.ready_check, on_ready_check);
  uv_unref((uv_handle_t *)&h->worker.ready_check);
  uv_timer_init(h->loop, &h->worker.ready_fallback);
  h->worker.ready_fallback.data = h;
  uv_timer_start(&h->worker.ready_fallback, on_ready_fallback, (uint64_t)(READY_FALLBACK * 1000), 0);
  uv_unref((uv_handle_t *)&h->worker.ready_fallback);
}

/* 0: attached, or not a worker; -1: $LUAIO_WORKER is malformed. The
** variable is removed: processes the script starts are not workers. */
int luaio_worker_attach(luaio_host *h) {
  const char *env = getenv("LUAIO_WORKER");
  if (!env) return 0;
  int id, count, fd;
  unsigned gen;
  double grace;
  char extra;
  int n = sscanf(env, "%d/%d/%u/%d/%lf%c", &id, &count, &gen, &fd, &grace, &extra);
  unsetenv("LUAIO_WORKER");
  if (n != 5 || count < 1 || id < 1 || id > count || fd < 0 || !(grace >= 0)) return -1;
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) return -1;   /* (not a child's business) */
  h->worker.on = 1;
  h->worker.id = id;
  h->worker.count = count;
  h->worker.generation = gen;
  h->worker.chan = fd;
  h->worker.grace = grace;
  start_readiness(h);
  return 0;
}

/* ---- shared listening sockets ------------------------------------------ */

int luaio_worker_shares(luaio_host *h) { return h->worker.on && h->worker.chan >= 0; }

void luaio_worker_listening(luaio_host *h) { h->worker.listened = 1; }

/* The answer to a request: its text in buf, the socket passed with it in *fd. */
static ssize_t receive_answer(int chan, char *buf, size_t size, int *fd) {
  union { struct cmsghdr h; char space[CMSG_SPACE(sizeof(int))]; } ctl;
  struct iovec iov = { buf, size - 1 };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof ctl };
  ssize_t n;
  *fd = -1;
  do n = recvmsg(chan, &msg, MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
  if (n <= 0) return n;
  buf[n] = '\0';
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(fd, CMSG_DATA(c), sizeof(int));
  return n;
}

int luaio_worker_listen_fd(luaio_host *h, int is_unix, const char *addr, int port, int backlog,
                           const char **step) {
  static char failed_step[16];
  char req[256];
  int len = is_unix ? snprintf(req, sizeof req, "L U %s %d", addr, backlog)
                    : snprintf(req, sizeof req, "L T %s %d %d", addr, port, backlog);
  *step = "bind";
  if (len < 0 || (size_t)len >= sizeof req) return -ENAMETOOLONG;
  /* blocking, and short: the supervisor answers at once (it runs no user code) */
  if (send(h->worker.chan, req, (size_t)len, MSG_NOSIGNAL) < 0) return -errno;
  char ans[64];
  int fd;
  ssize_t n = receive_answer(h->worker.chan, ans, sizeof ans, &fd);
  if (n <= 0) return n < 0 ? -errno : -ECONNRESET;     /* the supervisor is gone */
  if (strcmp(ans, "OK") == 0 && fd >= 0) return fd;
  if (fd >= 0) close(fd);
  int err = EPROTO;
  if (sscanf(ans, "E %15s %d", failed_step, &err) == 2) *step = failed_step;
  return -err;
}

/* ---- the graceful stop -------------------------------------------------- */

static void arm_backstop(double grace) {
  double sec = grace + STOP_BACKSTOP;
  alarm(sec > 86400 ? 86400 : (unsigned)sec + 1);
}

/* SIGTERM or SIGINT (from the supervisor, a terminal or systemd): the first
** starts the stop, the rest change nothing. */
void luaio_worker_signal(luaio_host *h, int signum) {
  if (h->worker.stopping || !h->main || h->main->state >= TASK_DONE) return;
  h->worker.stopping = 1;
  h->worker.stop_signal = signum;
  arm_backstop(h->worker.grace);
  lua_State *L = h->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->hooks_ref);
  lua_getfield(L, -1, "worker_stop");
  lua_remove(L, -2);
  lua_pushstring(L, signum == SIGINT ? "SIGINT" : "SIGTERM");
  lua_pushnumber(L, h->worker.grace);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    luaio_report_callback_error(L, "the worker's stop");
    h->worker.drained = 1;
    luaio_cancel_main_by(h, signum);
  }
}

/* The main task ended while connections drain: run the loop until the
** drain is over (core.worker_done), then the rest is cancelled as usual. */
void luaio_worker_linger(luaio_host *h) {
  while (!h->worker.drained) {
    uv_run(h->loop, UV_RUN_ONCE);
    if (h->ready.len == 0 && !uv_loop_alive(h->loop)) break;
  }
}

int luaio_worker_exit_status(luaio_host *h, int code) {
  if (!h->worker.stopping) return code;
  if (h->worker.cut) return 143;         /* connections were cut: not stopped in time */
  return code == 130 || code == 143 ? 0 : code;
}

/* core.worker_info() -> id, count, pid | nothing outside worker mode */
static int l_worker_info(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  if (!h->worker.on) return 0;
  lua_pushinteger(L, h->worker.id);
  lua_pushinteger(L, h->worker.count);
  lua_pushinteger(L, (lua_Integer)getpid());
  return 3;
}

/* core.worker_done(in_time): the drain is over; the main task is cancelled
** (as the stop signal would have done) */
static int l_worker_done(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  h->worker.drained = 1;
  h->worker.cut = !lua_toboolean(L, 1);
  luaio_cancel_main_by(h, h->worker.stop_signal);
  return 0;
}

void luaio_worker_open(lua_State *L, luaio_host *h) {
  static const luaL_Reg funcs[] = {
    {"worker_info", l_worker_info}, {"worker_done", l_worker_done}, {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
