/*
** stream.c — TCP and Unix-socket streams: the handle's lifetime, the
** reader's and the writer's waits, writes, shutdown and close.
**
** Reads land in a native buffer (readbuf.h) and complete from it
** (stream_read.c). Writes try uv_try_write first and queue only the rest;
** a writer waits only while the queued bytes exceed the high-water mark.
**
** The stream struct is malloc'd, apart from its userdata: libuv may still
** hold the handle after the userdata is collected, until the close callback.
** The reader (stream_read.c), TLS (stream_tls.c), the lingering close
** (stream_linger.c), connects (connect.c) and listeners (listener.c) share
** it through stream_int.h.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "stream_int.h"
#include "netaddr.h"
#include "http_head.h"
#include "http_parse.h"

#define DEFAULT_LIMIT 65536
#define DEFAULT_HWM 65536

/* ---- errors ----------------------------------------------------------- */

static const char *error_name(int err) {
  switch (err) {
    case UV_ECONNRESET: case UV_ECONNREFUSED: case UV_ECONNABORTED: case UV_EPIPE:
    case UV_ETIMEDOUT: case UV_ENOTCONN: case UV_EHOSTUNREACH: case UV_ENETUNREACH:
    case UV_EOF:
      return "ConnectionError";
    default:
      return "OSError";
  }
}

int stream_raise_uv(lua_State *L, int err, const char *what) {
  return luaio_uverror(L, error_name(err), err, what);
}

/* ---- lifetime ----------------------------------------------------------- */

void stream_free(stream *s) {
  luaio_tls_free(s->tls);
  luaio_rb_free(&s->rb);
  free(s);
}

void stream_on_closed(uv_handle_t *handle) {
  stream *s = handle->data;
  if (s->lingering && --s->linger_closes > 0) return;   /* its timer closes too */
  stream_free(s);
}

stream *stream_alloc(luaio_host *h) {
  stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->h = h;
  s->rb.limit = DEFAULT_LIMIT;
  s->hwm = DEFAULT_HWM;
  s->timeout = -1;
  s->u.handle.data = s;
  return s;
}

/* Push a Stream userdata for s (already initialised handle). */
void stream_push(lua_State *L, stream *s) {
  stream_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->s = s;
  s->box = box;
  luaL_setmetatable(L, STREAM_MT);
  s->u.handle.data = s;
  s->counted = 1;
  s->h->handles++;
}

/* ---- naming (debug mode's report, the monitor) ---------------------------- */

/* Push "<what> <the peer>": its address, or for a Unix socket its path. */
void stream_push_named(lua_State *L, stream *s, const char *what) {
  char ip[64], path[256];
  int port = 0;
  size_t len = sizeof path;
  if (s->has_peer && luaio_addr_name((struct sockaddr *)&s->peer, ip, sizeof ip, &port))
    lua_pushfstring(L, strchr(ip, ':') ? "%s [%s]:%d" : "%s %s:%d", what, ip, port);
  else if (s->is_pipe && !s->closing && uv_pipe_getpeername(&s->u.pipe, path, &len) == 0 && len > 0)
    lua_pushfstring(L, "%s %s", what, path);
  else
    lua_pushfstring(L, "%s %s", what, s->is_pipe ? "a pipe" : "a socket");
}

void stream_track(lua_State *L, stream *s, const char *how) {
  if (!s->h->debug.on) return;
  stream_push_named(L, s, "stream from");
  luaio_track(L, s->h, -2, "%s (%s)", lua_tostring(L, -1), how);
  lua_pop(L, 1);
}

static void describe_write(lua_State *L, void *data) { stream_push_named(L, data, "stream write to"); }

void stream_wake_error(luaio_task *t, const char *name, int err, const char *what) {
  lua_State *co = luaio_task_stack(t);
  luaio_push_uverror(co, name, err, what);
  luaio_wake_error(t);
}

void stream_close(stream *s) {
  if (s->closing) return;
  s->closing = 1;
  if (s->box) { luaio_untrack(s->h, s->box); s->box->s = NULL; s->box = NULL; }
  if (s->counted) s->h->handles--;
  stream_stop_reading(s);
  luaio_timer_disarm(s->h, &s->rtimer);
  luaio_timer_disarm(s->h, &s->wtimer);
  if (s->reader) {
    luaio_task *t = s->reader;
    s->reader = NULL;
    stream_wake_error(t, "OSError", UV_ECANCELED, "the stream was closed while reading");
  }
  if (s->writer) {
    luaio_task *t = s->writer;
    s->writer = NULL;
    stream_wake_error(t, "OSError", UV_ECANCELED, "the stream was closed while writing");
  }
  if (s->tls && !s->handshaking && !s->tls_failed && !s->shut && !s->write_err && !s->h->closing) {
    luaio_tls_close_notify(s->tls);     /* tells the peer the end is not a truncation */
    stream_tls_flush(s);
  }
  if (stream_linger_start(s)) return;
  uv_close(&s->u.handle, stream_on_closed);
}

int stream_closed_error(lua_State *L) {
  return luaio_error(L, "OSError", "EBADF", "the stream is closed");
}

/* ---- writing ------------------------------------------------------------ */

static void wake_writer_if(stream *s) {
  luaio_task *t = s->writer;
  if (!t) return;
  int ready = s->write_err ||
              (s->write_wait == WAIT_HWM && s->queued <= s->hwm) ||
              (s->write_wait == WAIT_DRAIN && s->queued == 0);
  if (!ready) return;
  s->writer = NULL;
  luaio_timer_disarm(s->h, &s->wtimer);
  if (s->write_err) stream_wake_error(t, error_name(s->write_err), s->write_err, "write");
  else luaio_wake(t, 0);
}

static void on_written(uv_write_t *req, int status) {
  write_req *w = (write_req *)req;
  stream *s = w->s;
  for (write_req **pp = &s->wq_head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next)
    if (*pp == w) { *pp = w->next; if (s->wq_tail == w) s->wq_tail = prev; break; }
  s->queued -= w->n;
  free(w);
  if (status < 0 && status != UV_ECANCELED && !s->write_err) s->write_err = status;
  if (s->lingering) stream_linger_progress(s);
  if (!s->closing) wake_writer_if(s);
}

static void writer_cancel(void *data) {
  stream *s = data;
  s->writer = NULL;
  luaio_timer_disarm(s->h, &s->wtimer);
}

/* a deadline passed: the task in *slot (the reader or the writer) gets a
** TimeoutError */
void stream_wake_timeout(stream *s, luaio_task **slot, const char *what, double seconds) {
  (void)s;
  luaio_task *t = *slot;
  if (!t) return;
  *slot = NULL;
  lua_State *co = luaio_task_stack(t);
  char after[32];                 /* lua_pushfstring has no %g */
  snprintf(after, sizeof after, "%g", seconds);
  luaio_push_error(co, "TimeoutError", NULL, "%s timed out after %s s", what, after);
  luaio_wake_error(t);
}

static void on_write_timeout(luaio_timer *tm) {
  stream *s = luaio_container_of(tm, stream, wtimer);
  stream_wake_timeout(s, &s->writer, "write", s->timeout);
}

static int write_k(lua_State *L, int status, lua_KContext ctx) {
  (void)L; (void)status; (void)ctx;
  return 0;
}

/* (the caller checked with luaio_need_task that the task can wait here) */
static int wait_writer(lua_State *L, stream *s, int what) {
  if (s->writer) return luaL_error(L, "another task is already writing to this stream");
  luaio_task *t = luaio_current(L);
  if (s->timeout == 0)            /* set_timeout(0): whatever has to wait times out at once */
    return luaio_error(L, "TimeoutError", NULL, "%s timed out after 0 s", what == WAIT_DRAIN ? "drain" : "write");
  s->writer = t;
  s->write_wait = what;
  if (s->timeout > 0) {
    s->wtimer.fire = on_write_timeout;
    luaio_timer_arm(s->h, &s->wtimer, s->timeout);
  }
  return luaio_await(L, writer_cancel, s, 0, write_k);
}

/* Send bufs in order: straight to the socket while nothing is queued, the
** rest copied into one queued write. Returns 0 or the (kept) uv error. */
int stream_send(stream *s, const uv_buf_t *bufs, unsigned n, size_t total) {
  size_t done = 0;
  if (s->queued == 0) {
    int r = uv_try_write(&s->u.s, bufs, n);
    if (r > 0) done = (size_t)r;
    else if (r < 0 && r != UV_EAGAIN && r != UV_ENOSYS) return s->write_err = r;
  }
  if (done == total) return 0;
  write_req *w = malloc(sizeof *w + (total - done));
  if (!w) return s->write_err = UV_ENOMEM;
  size_t pos = 0, skip = done;
  for (unsigned i = 0; i < n; i++) {
    size_t len = bufs[i].len;
    if (skip >= len) { skip -= len; continue; }
    memcpy(w->data + pos, bufs[i].base + skip, len - skip);
    pos += len - skip;
    skip = 0;
  }
  w->s = s;
  w->n = pos;
  uv_buf_t b = uv_buf_init(w->data, (unsigned)pos);
  int r = uv_write(&w->req, &s->u.s, &b, 1, on_written);
  if (r < 0) {
    free(w);
    return s->write_err = r;
  }
  s->queued += pos;
  w->next = NULL;
  if (s->wq_tail) s->wq_tail->next = w;
  else s->wq_head = w;
  s->wq_tail = w;
  return 0;
}

int stream_write_bufs(lua_State *L, stream *s, const uv_buf_t *bufs, int n, size_t total) {
  luaio_need_task(L, "stream:write");    /* it may wait: nothing is queued outside a task */
  if (s->write_err) return stream_raise_uv(L, s->write_err, "write");
  if (s->shut) return luaio_error(L, "OSError", "EPIPE", "cannot write after shutdown()");
  if (total == 0) return 0;
  int r = s->tls ? stream_tls_write(L, s, bufs, n, total) : stream_send(s, bufs, (unsigned)n, total);
  if (r < 0) return stream_raise_uv(L, r, "write");
  if (s->queued > s->hwm) {
    lua_settop(L, 1);
    return wait_writer(L, s, WAIT_HWM);
  }
  return 0;
}

static int l_write(lua_State *L) {
  stream *s = stream_check_hot(L, 1);
  int n = lua_gettop(L) - 1;
  uv_buf_t local[16], *bufs = local;
  size_t total = 0;
  for (int i = 2; i <= n + 1; i++) {
    size_t len;
    luaio_checklstring(L, i, &len);
    total += len;
  }
  if (n > 16) bufs = lua_newuserdatauv(L, sizeof *bufs * (size_t)n, 0);
  for (int i = 0; i < n; i++) {
    size_t len;
    const char *p = lua_tolstring(L, i + 2, &len);
    bufs[i] = uv_buf_init((char *)p, (unsigned)len);
  }
  return stream_write_bufs(L, s, bufs, n, total);
}

static int l_drain(lua_State *L) {
  stream *s = stream_check(L, 1);
  luaio_need_task(L, "stream:drain");
  if (s->write_err) return stream_raise_uv(L, s->write_err, "write");
  if (s->queued == 0) return 0;
  lua_settop(L, 1);
  return wait_writer(L, s, WAIT_DRAIN);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  stream *s = req->data;
  free(req);
  s->shut_pending = 0;
  if (s->lingering) { stream_linger_shut_done(s, status); return; }   /* closed meanwhile */
  luaio_task *t = s->writer;
  if (!t || s->write_wait != WAIT_SHUTDOWN) return;
  s->writer = NULL;
  if (status < 0 && status != UV_ENOTCONN) stream_wake_error(t, error_name(status), status, "shutdown");
  else luaio_wake(t, 0);
}

static int l_shutdown(lua_State *L) {
  stream *s = stream_check(L, 1);
  if (s->shut) return 0;
  if (s->writer) return luaL_error(L, "another task is already writing to this stream");
  luaio_task *t = luaio_need_task(L, "stream:shutdown");
  if (s->tls && !s->handshaking && !s->tls_failed) {
    luaio_tls_close_notify(s->tls);
    stream_tls_flush(s);
  }
  uv_shutdown_t *req = malloc(sizeof *req);
  if (!req) return luaL_error(L, "out of memory");
  req->data = s;
  int r = uv_shutdown(req, &s->u.s, on_shutdown);
  if (r < 0) { free(req); return stream_raise_uv(L, r, "shutdown"); }
  s->shut = 1;
  s->shut_pending = 1;
  s->writer = t;
  s->write_wait = WAIT_SHUTDOWN;
  lua_settop(L, 1);
  return luaio_await(L, writer_cancel, s, 0, write_k);
}

/* ---- other methods ------------------------------------------------------- */

static int l_close(lua_State *L) {
  stream_box *box = luaio_checkudata(L, 1, STREAM_MT);
  if (box->s) {
    stream *s = box->s;
    box->s = NULL;
    stream_close(s);
  }
  return 0;
}

static int l_gc(lua_State *L) {
  stream_box *box = luaL_testudata(L, 1, STREAM_MT);
  stream *s = box ? box->s : NULL;
  if (!s) return 0;
  s->box = NULL;
  box->s = NULL;
  if (!s->h->closing) stream_close(s);
  else if (luaio_close_orphan(&s->u.handle, stream_on_closed)) stream_on_closed(&s->u.handle);
  return 0;
}

static int l_closed(lua_State *L) {
  stream_box *box = luaio_checkudata(L, 1, STREAM_MT);
  lua_pushboolean(L, box->s == NULL);
  return 1;
}

static int names(lua_State *L, int peer) {
  stream *s = stream_check(L, 1);
  const char *what = peer ? "peername" : "sockname";
  if (s->is_pipe) {
    int r = luaio_addr_push_pipe(L, &s->u.pipe, peer);
    return r < 0 ? stream_raise_uv(L, r, what) : r;
  }
  if (peer && s->has_peer) return luaio_addr_push(L, &s->peer);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int r = peer ? uv_tcp_getpeername(&s->u.tcp, (struct sockaddr *)&ss, &len)
               : uv_tcp_getsockname(&s->u.tcp, (struct sockaddr *)&ss, &len);
  if (r < 0) return stream_raise_uv(L, r, what);
  return luaio_addr_push(L, &ss);
}

static int l_peername(lua_State *L) { return names(L, 1); }
static int l_sockname(lua_State *L) { return names(L, 0); }

/* set_timeout(sec): the deadline of each read or write that has to wait;
** nil: none; 0: such a read or write raises TimeoutError at once */
static int l_set_timeout(lua_State *L) {
  stream *s = stream_check(L, 1);
  if (lua_isnoneornil(L, 2)) { s->timeout = -1; return 0; }
  double sec = luaio_checknumber(L, 2);
  if (!(sec >= 0)) return luaio_argerror(L, 2, "non-negative number of seconds expected");
  s->timeout = sec;
  return 0;
}

/* set_limits(limit, high_water): the line limit and the write high-water mark */
static int l_set_limits(lua_State *L) {
  stream *s = stream_check(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    lua_Integer v = luaio_checkinteger(L, 2);
    if (v < 1) return luaio_argerror(L, 2, "limit must be positive");
    s->rb.limit = (size_t)v;
  }
  if (!lua_isnoneornil(L, 3)) {
    lua_Integer v = luaio_checkinteger(L, 3);
    if (v < 0) return luaio_argerror(L, 3, "high-water mark must not be negative");
    s->hwm = (size_t)v;
  }
  return 0;
}

static int l_buffered(lua_State *L) {
  stream *s = stream_check(L, 1);
  lua_pushinteger(L, (lua_Integer)s->rb.len);
  lua_pushinteger(L, (lua_Integer)s->queued);
  return 2;
}

/* _ended() -> the peer has gone (an EOF or a read error seen by read-ahead):
** a pool's check before lending an idle connection */
static int l_ended(lua_State *L) {
  stream *s = stream_check(L, 1);
  lua_pushboolean(L, s->rb.eof || s->rb.err);
  return 1;
}


static int l_tostring(lua_State *L) {
  stream_box *box = luaio_checkudata(L, 1, STREAM_MT);
  lua_pushfstring(L, "Stream<%s>", box->s ? "open" : "closed");
  return 1;
}


void luaio_open_stream(lua_State *L, luaio_host *h) {
  static const luaL_Reg methods[] = {
    {"write", l_write},
    {"drain", l_drain}, {"close", l_close}, {"shutdown", l_shutdown},
    {"peername", l_peername}, {"sockname", l_sockname}, {"set_timeout", l_set_timeout},
    {"set_limits", l_set_limits}, {"buffered", l_buffered}, {"closed", l_closed}, {"_ended", l_ended},
    {"_start_tls", stream_l_start_tls}, {"_start_tls_blocker", stream_l_start_tls_blocker}, {"tls_info", stream_l_tls_info}, {NULL, NULL}};
  luaL_newmetatable(L, STREAM_MT);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "stream_mt");        /* into core: the Lua half checks self with it */
  /* every method has the metatable as upvalue 1: the hot ones (read, write
  ** and the HTTP server's) check self against it (stream_check_hot) */
  luaL_newlibtable(L, methods);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, methods, 1);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, stream_read_methods, 1);
  static const luaL_Reg hot[] = {{"_read_head", stream_l_read_head}, {"_http_response", stream_l_http_response},
    {NULL, NULL}};
  /* their upvalues: the metatable (stream_check_hot), then the server
  ** request's field names (http_head.h) */
  lua_pushvalue(L, -2);
  luaio_http_push_request_keys(L);
  luaL_setfuncs(L, hot, 1 + HTTP_REQUEST_KEYS);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__index");
  lua_setfield(L, -3, "stream_methods");   /* into core */
  lua_pushcfunction(L, l_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  stream_open_linger(L);
  stream_open_listener(L, h);
  stream_open_connect(L, h);
  luaio_wait_kind(h, LUAIO_WAIT_KEY(writer_cancel), describe_write);
  stream_read_kinds(h);
}
