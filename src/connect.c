/* connect.c — opening streams: tcp_connect, pipe_connect (a luaio_op the
** task waits on), and the pipe streams of child processes (stream.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include "stream_int.h"
#include "netaddr.h"
#include "op.h"

typedef struct {
  luaio_op op;
  uv_connect_t req;
  stream *s;
} connect_op;

void stream_remember_peer(stream *s) {
  if (s->is_pipe) return;
  int len = sizeof s->peer;
  if (uv_tcp_getpeername(&s->u.tcp, (struct sockaddr *)&s->peer, &len) == 0) s->has_peer = 1;
}

static void on_connect(uv_connect_t *req, int status) {
  connect_op *op = req->data;
  luaio_task *t = luaio_op_take(&op->op);
  stream *s = op->s;
  free(op);
  if (!t) return;
  if (status < 0) {
    stream_close(s);             /* a failed connect leaves nothing open */
    stream_wake_error(t, "ConnectionError", status, "connect");
  } else {
    stream_remember_peer(s);
    luaio_wake(t, 0);
  }
}

/* on_connect then sees ECANCELED and frees op */
static void connect_abort(luaio_op *op) { stream_close(luaio_container_of(op, connect_op, op)->s); }

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  lua_settop(L, 1);         /* the Stream pushed before waiting */
  return 1;
}

static int connect_fail(lua_State *L, stream *s, int r, const char *what) {
  stream_close(s);
  return luaio_uverror(L, "ConnectionError", r, what);
}

/* tcp_connect(ip, port) ⏸ -> Stream */
static int l_tcp_connect(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  const char *ip = luaio_checkcstring(L, 1);
  lua_Integer port = luaio_checkinteger(L, 2);
  if (port < 1 || port > 65535) return luaio_argerror(L, 2, "port must be within 1..65535");
  luaio_need_task(L, "open_connection");
  struct sockaddr_storage addr;
  if (!luaio_addr_parse(ip, (int)port, &addr))
    return luaio_error(L, "ConnectionError", "EINVAL", "not a numeric address: %s", ip);
  stream *s = stream_alloc(h);
  if (!s) return luaL_error(L, "out of memory");
  uv_tcp_init(h->loop, &s->u.tcp);
  char to[96];
  snprintf(to, sizeof to, strchr(ip, ':') ? "[%s]:%d" : "%s:%d", ip, (int)port);
  lua_settop(L, 0);
  stream_push(L, s);
  luaio_track(L, h, 1, "stream to %s", to);
  connect_op *op = malloc(sizeof *op);
  if (!op) return connect_fail(L, s, UV_ENOMEM, "connect");
  op->s = s;
  op->req.data = op;
  int r = uv_tcp_connect(&op->req, &s->u.tcp, (struct sockaddr *)&addr, on_connect);
  if (r < 0) { free(op); return connect_fail(L, s, r, "connect"); }
  uv_tcp_nodelay(&s->u.tcp, 1);
  return luaio_op_await(L, &op->op, luaio_current(L), connect_abort, connect_k);
}

/* pipe_connect(path) ⏸ -> Stream */
static int l_pipe_connect(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  const char *path = luaio_checkcstring(L, 1);
  if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
    return luaio_argerror(L, 1, "path too long for a Unix socket");
  luaio_need_task(L, "open_connection");
  stream *s = stream_alloc(h);
  if (!s) return luaL_error(L, "out of memory");
  uv_pipe_init(h->loop, &s->u.pipe, 0);
  s->is_pipe = 1;
  lua_settop(L, 1);
  stream_push(L, s);
  luaio_track(L, h, -1, "stream to %s", path);
  lua_replace(L, 1);
  connect_op *op = malloc(sizeof *op);
  if (!op) return connect_fail(L, s, UV_ENOMEM, "connect");
  op->s = s;
  op->req.data = op;
  uv_pipe_connect(&op->req, &s->u.pipe, path, on_connect);
  return luaio_op_await(L, &op->op, luaio_current(L), connect_abort, connect_k);
}

uv_pipe_t *luaio_stream_new_pipe(lua_State *L, luaio_host *h) {
  stream *s = stream_alloc(h);
  if (!s) { luaL_error(L, "out of memory"); return NULL; }
  uv_pipe_init(h->loop, &s->u.pipe, 0);
  s->is_pipe = 1;
  stream_push(L, s);      /* (not tracked: its process is, and closes it) */
  return &s->u.pipe;
}

int luaio_stream_child_fd(lua_State *L, int idx, const char **why) {
  stream_box *box = luaL_testudata(L, idx, STREAM_MT);
  if (!box) return -1;
  stream *s = box->s;
  uv_os_fd_t fd;
  *why = NULL;
  if (!s || s->closing) *why = "the Stream is closed";
  else if (s->tls) *why = "a TLS Stream cannot be handed to a child";
  else if (s->reader || s->writer || s->queued) *why = "the Stream is in use (a read or write is pending)";
  else if (s->rb.len > 0) *why = "the Stream has read data buffered (hand it over before reading from it)";
  else if (uv_fileno(&s->u.handle, &fd) < 0) *why = "the Stream has no descriptor";
  return *why ? -2 : (int)fd;
}

static void describe_connect(lua_State *L, void *data) {
  connect_op *op = luaio_container_of((luaio_op *)data, connect_op, op);
  lua_pushstring(L, op->s->is_pipe ? "connect to a Unix socket" : "connect (TCP)");
}

void stream_open_connect(lua_State *L, luaio_host *h) {
  luaio_wait_kind(h, LUAIO_WAIT_KEY(connect_abort), describe_connect);
  static const luaL_Reg funcs[] = {
    {"tcp_connect", l_tcp_connect}, {"pipe_connect", l_pipe_connect}, {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
