/* listener.c — listening TCP and Unix sockets: tcp_listen, pipe_listen,
** and accept(), which hands out Streams. In worker mode (`luaio --workers`)
** the sockets are the supervisor's, shared by every worker (worker.c). */
#define _GNU_SOURCE   /* accept4 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>
#include "stream_int.h"
#include "netaddr.h"

#define LISTENER_MT "luaio.Listener"

typedef struct listener listener;
struct listener {
  union { uv_handle_t handle; uv_stream_t s; uv_tcp_t tcp; uv_pipe_t pipe; } u;
  luaio_host *h;
  luaio_task *accepter;
  int pending, err, is_pipe, closing;
  int daemon;          /* the monitor's: unref'd, as are its connections; not tracked */
};

typedef struct { listener *l; } listener_box;

static void on_listener_closed(uv_handle_t *handle) { free(handle->data); }

static void on_connection(uv_stream_t *server, int status) {
  listener *l = server->data;
  if (status < 0) l->err = status;
  else l->pending++;
  luaio_task *t = l->accepter;
  if (t) { l->accepter = NULL; luaio_wake(t, 0); }
}

static listener *check_listener(lua_State *L) {
  listener_box *box = luaio_checkudata(L, 1, LISTENER_MT);
  if (!box->l) luaio_error(L, "OSError", "EBADF", "the server is closed");
  return box->l;
}

static void accept_cancel(void *data) { ((listener *)data)->accepter = NULL; }

static int l_accept(lua_State *L);
static int accept_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return l_accept(L);
}

/* A Stream for the connection libuv accepted (fd < 0) or for fd, pushed. */
static int push_accepted(lua_State *L, listener *l, int fd) {
  stream *s = stream_alloc(l->h);
  if (!s) {
    if (fd >= 0) close(fd);
    return luaL_error(L, "out of memory");
  }
  if (l->is_pipe) { uv_pipe_init(l->h->loop, &s->u.pipe, 0); s->is_pipe = 1; }
  else uv_tcp_init(l->h->loop, &s->u.tcp);
  stream_push(L, s);
  int r = fd < 0 ? uv_accept(&l->u.s, &s->u.s)
        : l->is_pipe ? uv_pipe_open(&s->u.pipe, fd) : uv_tcp_open(&s->u.tcp, fd);
  if (r < 0) {
    if (fd >= 0) close(fd);
    stream_close(s);
    return stream_raise_uv(L, r, "accept");
  }
  if (!l->is_pipe) { uv_tcp_nodelay(&s->u.tcp, 1); stream_remember_peer(s); }
  if (l->daemon) uv_unref(&s->u.handle);
  else stream_track(L, s, "accepted");
  return 1;
}

/* listener:accept() ⏸ -> Stream */
static int l_accept(lua_State *L) {
  listener *l = check_listener(L);
  lua_settop(L, 1);
  if (l->pending > 0) {
    l->pending--;
    return push_accepted(L, l, -1);
  }
  if (l->err) {
    int err = l->err;
    l->err = 0;
    return stream_raise_uv(L, err, "accept");
  }
  if (l->accepter) return luaL_error(L, "another task is already accepting on this server");
  luaio_task *t = luaio_need_task(L, "accept");
  l->accepter = t;
  return luaio_await(L, accept_cancel, l, 0, accept_k);
}

/* listener:accept_nowait() -> Stream | nil: a connection already waiting
** (libuv's, or one in the socket's backlog), without suspending. A graceful
** close serves them: closing the socket resets those in its backlog. */
static int l_accept_nowait(lua_State *L) {
  listener *l = check_listener(L);
  lua_settop(L, 1);
  if (l->pending > 0) {
    l->pending--;
    return push_accepted(L, l, -1);
  }
  uv_os_fd_t lfd;
  if (uv_fileno(&l->u.handle, &lfd) != 0) return 0;
  int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) return 0;                 /* EAGAIN: none waits (or nothing to take) */
  return push_accepted(L, l, fd);
}

static int l_listener_close(lua_State *L) {
  listener_box *box = luaio_checkudata(L, 1, LISTENER_MT);
  listener *l = box->l;
  if (!l) return 0;
  luaio_untrack(l->h, box);
  box->l = NULL;
  l->h->handles--;
  if (l->accepter) {
    luaio_task *t = l->accepter;
    l->accepter = NULL;
    stream_wake_error(t, "OSError", UV_ECANCELED, "the server was closed");
  }
  uv_close(&l->u.handle, on_listener_closed);
  return 0;
}

static int l_listener_gc(lua_State *L) {
  listener_box *box = luaL_testudata(L, 1, LISTENER_MT);
  listener *l = box ? box->l : NULL;
  if (!l) return 0;
  if (!l->h->closing) return l_listener_close(L);
  box->l = NULL;
  if (luaio_close_orphan(&l->u.handle, on_listener_closed)) on_listener_closed(&l->u.handle);
  return 0;
}

static int l_listener_address(lua_State *L) {
  listener *l = check_listener(L);
  if (l->is_pipe) {
    int r = luaio_addr_push_pipe(L, &l->u.pipe, 0);
    return r < 0 ? 0 : r;
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int r = uv_tcp_getsockname(&l->u.tcp, (struct sockaddr *)&ss, &len);
  if (r < 0) return stream_raise_uv(L, r, "getsockname");
  return luaio_addr_push(L, &ss);
}

static int l_listener_tostring(lua_State *L) {
  listener_box *box = luaio_checkudata(L, 1, LISTENER_MT);
  lua_pushfstring(L, "Listener<%s>", box->l ? "open" : "closed");
  return 1;
}

static listener *push_listener(lua_State *L, luaio_host *h) {
  listener *l = calloc(1, sizeof *l);
  if (!l) { luaL_error(L, "out of memory"); return NULL; }
  l->h = h;
  l->u.handle.data = l;
  listener_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->l = l;
  luaL_setmetatable(L, LISTENER_MT);
  h->handles++;
  return l;
}

static int listen_fail(lua_State *L, int r, const char *what, const char *where) {
  l_listener_close(L);
  lua_pushfstring(L, "%s %s", what, where);
  return luaio_uverror(L, "OSError", r, lua_tostring(L, -1));
}

/* Worker mode: listen on the supervisor's socket for this address (fd, or
** a negative errno from the supervisor's bind or listen). The listener is
** at index 1 of L. */
static int listen_shared(lua_State *L, listener *l, int fd, int backlog, const char *step, const char *where) {
  if (fd < 0) return listen_fail(L, fd, step, where);
  int r = l->is_pipe ? uv_pipe_open(&l->u.pipe, fd) : uv_tcp_open(&l->u.tcp, fd);
  if (r < 0) {
    close(fd);
    return listen_fail(L, r, "open", where);
  }
  r = uv_listen(&l->u.s, backlog, on_connection);   /* (listen again: the same backlog) */
  if (r < 0) return listen_fail(L, r, "listen on", where);
  luaio_worker_listening(l->h);
  lua_settop(L, 1);
  return 1;
}

static int tcp_listen_shared(lua_State *L, luaio_host *h, const char *ip, int port, int backlog,
                             const char *where) {
  const char *step;
  int fd = luaio_worker_listen_fd(h, 0, ip, port, backlog, &step);
  lua_settop(L, 0);
  listener *l = push_listener(L, h);
  uv_tcp_init(h->loop, &l->u.tcp);
  return listen_shared(L, l, fd, backlog, step, where);
}

/* tcp_listen(ip, port, backlog, reuseport) -> Listener */
static int l_tcp_listen(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  const char *ip = luaio_checkcstring(L, 1);
  lua_Integer port = luaio_checkinteger(L, 2);
  int backlog = (int)luaio_optinteger(L, 3, 511);
  int reuseport = lua_toboolean(L, 4);
  if (port < 0 || port > 65535) return luaio_argerror(L, 2, "port must be within 0..65535");
  struct sockaddr_storage addr;
  int family = luaio_addr_parse(ip, (int)port, &addr);
  if (!family) return luaio_error(L, "OSError", "EINVAL", "not a numeric address: %s", ip);
  char where[96];
  snprintf(where, sizeof where, "%s:%d", ip, (int)port);
  if (port != 0 && luaio_worker_shares(h)) return tcp_listen_shared(L, h, ip, (int)port, backlog, where);
  lua_settop(L, 0);
  listener *l = push_listener(L, h);
  int r = uv_tcp_init_ex(h->loop, &l->u.tcp, (unsigned)family);
  if (r < 0) { free(l); ((listener_box *)lua_touserdata(L, 1))->l = NULL; h->handles--; return luaio_uverror(L, "OSError", r, "socket"); }
  if (reuseport) {
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno(&l->u.handle, &fd) == 0) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  }
  r = uv_tcp_bind(&l->u.tcp, (struct sockaddr *)&addr, 0);
  if (r < 0) return listen_fail(L, r, "bind", where);
  r = uv_listen(&l->u.s, backlog, on_connection);
  if (r < 0) return listen_fail(L, r, "listen on", where);
  luaio_worker_listening(h);
  luaio_track(L, h, -1, "server %s", where);
  return 1;
}

/* pipe_listen(path, backlog) -> Listener */
static int l_pipe_listen(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  const char *path = luaio_checkcstring(L, 1);
  int backlog = (int)luaio_optinteger(L, 2, 511);
  if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
    return luaio_argerror(L, 1, "path too long for a Unix socket");
  listener *l = push_listener(L, h);
  lua_insert(L, 1);                      /* the listener at 1, path still alive */
  l->is_pipe = 1;
  uv_pipe_init(h->loop, &l->u.pipe, 0);
  if (luaio_worker_shares(h)) {
    const char *step;
    int fd = luaio_worker_listen_fd(h, 1, path, 0, backlog, &step);
    return listen_shared(L, l, fd, backlog, step, path);
  }
  int r = uv_pipe_bind(&l->u.pipe, path);
  if (r < 0) return listen_fail(L, r, "bind", path);
  r = uv_listen(&l->u.s, backlog, on_connection);
  if (r < 0) return listen_fail(L, r, "listen on", path);
  luaio_worker_listening(h);
  lua_settop(L, 1);
  luaio_track(L, h, 1, "server %s", path);
  return 1;
}

/* monitor.c: a Listener on fd, a Unix socket already listening, for the
** monitor: neither it nor its connections keep the loop alive or count as
** the program's resources. */
int stream_listen_daemon(lua_State *L, luaio_host *h, int fd) {
  listener *l = push_listener(L, h);
  lua_replace(L, 1);
  lua_settop(L, 1);
  l->is_pipe = 1;
  l->daemon = 1;
  uv_pipe_init(h->loop, &l->u.pipe, 0);
  int r = uv_pipe_open(&l->u.pipe, fd);
  if (r < 0) {
    close(fd);
    return listen_fail(L, r, "open", "the monitor's socket");
  }
  r = uv_listen(&l->u.s, 16, on_connection);
  if (r < 0) return listen_fail(L, r, "listen on", "the monitor's socket");
  uv_unref(&l->u.handle);
  return 1;
}

static void describe_accept(lua_State *L, void *data) {
  listener *l = data;
  char ip[64], path[256];
  size_t len = sizeof path;
  struct sockaddr_storage ss;
  int n = sizeof ss, port = 0;
  if (l->is_pipe && uv_pipe_getsockname(&l->u.pipe, path, &len) == 0)
    lua_pushfstring(L, "accept on %s", path);
  else if (!l->is_pipe && uv_tcp_getsockname(&l->u.tcp, (struct sockaddr *)&ss, &n) == 0 &&
           luaio_addr_name((struct sockaddr *)&ss, ip, sizeof ip, &port))
    lua_pushfstring(L, "accept on %s:%d", ip, port);
  else
    lua_pushliteral(L, "accept");
}

void stream_open_listener(lua_State *L, luaio_host *h) {
  luaio_wait_kind(h, LUAIO_WAIT_KEY(accept_cancel), describe_accept);
  static const luaL_Reg lmethods[] = {
    {"accept", l_accept}, {"accept_nowait", l_accept_nowait}, {"close", l_listener_close},
    {"address", l_listener_address},
    {NULL, NULL}};
  luaL_newmetatable(L, LISTENER_MT);
  luaL_newlib(L, lmethods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_listener_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_listener_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, l_listener_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  static const luaL_Reg funcs[] = {
    {"tcp_listen", l_tcp_listen}, {"pipe_listen", l_pipe_listen}, {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
