/*
** stream.c — TCP and Unix-socket streams, listeners and connects.
**
** Reads land in a native buffer; readline/read_until scan it with memchr and
** push only the result. A waiting reader is woken with no values and takes
** its data from the buffer when it runs, so a cancelled reader loses nothing.
** Writes try uv_try_write first and queue only the rest; a writer waits only
** while the queued bytes exceed the high-water mark.
**
** The stream struct is malloc'd, apart from its userdata: libuv may still
** hold the handle after the userdata is collected, until the close callback.
**
** A TLS stream (tls.c) reads ciphertext into the host's scratch buffer and
** decrypts it from there into the same read buffer a plain stream uses, so
** every read operation works unchanged; writes encrypt into the host's TLS
** output buffer, then go out the same way.
*/
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#ifdef __linux__
#include <linux/sockios.h>   /* SIOCOUTQ */
#endif
#include "stream.h"
#include "tls.h"
#include "http_parse.h"

#define STREAM_MT "luaio.Stream"
#define LISTENER_MT "luaio.Listener"
#define DEFAULT_LIMIT 65536
#define DEFAULT_HWM 65536
#define SCRATCH_SIZE 65536   /* one socket read of ciphertext, or one chunk of it to send */

enum { OP_READ, OP_EXACT, OP_LINE, OP_UNTIL, OP_ALL, OP_HANDSHAKE, OP_HEAD };
enum { WAIT_HWM, WAIT_DRAIN, WAIT_SHUTDOWN };

typedef struct stream stream;
typedef struct { stream *s; } stream_box;

struct stream {
  union { uv_handle_t handle; uv_stream_t s; uv_tcp_t tcp; uv_pipe_t pipe; } u;
  luaio_host *h;
  stream_box *box;              /* the userdata, while it lives */
  char *buf;
  size_t cap, off, len;         /* unread bytes are buf[off .. off+len) */
  size_t limit;                 /* readline/read_until limit, read-ahead size */
  size_t hwm, queued;           /* write high-water mark, bytes not yet written */
  luaio_task *reader, *writer;
  int write_wait;               /* what the writer waits for */
  luaio_timer rtimer, wtimer;   /* per-operation deadlines */
  double timeout;               /* per-operation deadline; < 0: none, 0: at once */
  int read_err, write_err;
  struct sockaddr_storage peer; /* remembered when connected: valid after the peer left */
  unsigned has_peer : 1;
  unsigned eof : 1, reading : 1, closing : 1, shut : 1, is_pipe : 1, counted : 1;
  unsigned handshaking : 1, tls_failed : 1;
  luaio_tls *tls;               /* NULL for a plain stream */
  /* closing gracefully (see "lingering close" below) */
  unsigned shut_pending : 1;    /* shutdown() sent, its callback not yet run */
  unsigned lingering : 1, linger_drain : 1, linger_shut : 1, linger_eof : 1, linger_done : 1;
  unsigned char linger_closes;  /* close callbacks still to come (handle, timer) */
  uv_timer_t ltimer;            /* bounds the lingering close */
  struct write_req *wq_head, *wq_tail;   /* writes libuv has not finished */
  stream *lnext, *lprev;        /* in the host's list of lingering streams */
};

typedef struct write_req write_req;
struct write_req {
  uv_write_t req;
  stream *s;
  write_req *next;              /* in the stream's queue, oldest first */
  size_t n;
  char data[];
};

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

static int raise_uv(lua_State *L, int err, const char *what) {
  return luaio_uverror(L, error_name(err), err, what);
}

/* ---- lifetime ----------------------------------------------------------- */

static void stream_free(stream *s) {
  luaio_tls_free(s->tls);
  free(s->buf);
  free(s);
}

static void on_closed(uv_handle_t *handle) {
  stream *s = handle->data;
  if (s->lingering && --s->linger_closes > 0) return;   /* its timer closes too */
  stream_free(s);
}

static stream *stream_alloc(luaio_host *h) {
  stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->h = h;
  s->limit = DEFAULT_LIMIT;
  s->hwm = DEFAULT_HWM;
  s->timeout = -1;
  s->u.handle.data = s;
  return s;
}

/* Push a Stream userdata for s (already initialised handle). */
static void push_stream(lua_State *L, stream *s) {
  stream_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->s = s;
  s->box = box;
  luaL_setmetatable(L, STREAM_MT);
  s->u.handle.data = s;
  s->counted = 1;
  s->h->handles++;
}

static void wake_with_error(luaio_task *t, const char *name, int err, const char *what) {
  lua_State *co = luaio_task_stack(t);
  luaio_push_uverror(co, name, err, what);
  luaio_wake_error(t);
}

static void stop_reading(stream *s) {
  if (s->reading) { uv_read_stop(&s->u.s); s->reading = 0; }
}

static void tls_flush(stream *s);
static char *scratch(luaio_host *h);

/* ---- lingering close ------------------------------------------------------
** Closing a socket whose receive buffer holds unread bytes makes the kernel
** send RST instead of FIN and throw away what it has not sent yet; the peer
** then loses the tail of the stream. A TLS stream nearly always has such
** bytes: TLS 1.3 servers send NewSessionTicket messages after the handshake,
** that a client which only writes never reads. So a closing stream
** (TLS always, plain when writes are still queued) does not close its socket
** at once: it half-closes it (uv_shutdown, once every queued write went
** out: everything written, then close_notify, then FIN), reads and discards
** whatever comes in, and closes once the peer's EOF came (or a read error),
** or when its timer ends the wait: no progress writing for
** linger_seconds(), or no EOF that long after the shutdown. The handle no
** longer counts as open (unref'd, out of h->handles): neither the loop nor
** a deadlock verdict waits for it. The streams still lingering when the
** host closes are closed by the list's __gc (which runs before the loop's
** teardown walk): what libuv had not sent yet is sent there, blocking, then
** FIN, within LINGER_EXIT_MS for all of them (linger_flush_now). */

#define LINGER_SECONDS 5.0
#define LINGER_EXIT_MS 2000   /* the most the end of the host waits, for all of them */

typedef struct { stream *head; int gone; } linger_list;
static char linger_key;       /* registry: the host's linger_list */

static linger_list *linger_list_of(luaio_host *h) {
  lua_State *L = h->L;
  if (!lua_checkstack(L, 1)) return NULL;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &linger_key);
  linger_list *ll = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return ll && !ll->gone ? ll : NULL;
}

static double linger_seconds(stream *s) {
  return s->timeout > 0 && s->timeout < LINGER_SECONDS ? s->timeout : LINGER_SECONDS;
}

static void on_linger_timer_closed(uv_handle_t *handle) {
  stream *s = handle->data;
  if (--s->linger_closes > 0) return;
  stream_free(s);
}

/* Read and drop what the kernel holds, without waiting: closing with an
** empty receive buffer is a FIN, not a reset. */
static void discard_input(stream *s) {
  uv_os_fd_t fd;
  if (uv_fileno(&s->u.handle, &fd) != 0) return;
  char local[4096], *buf = scratch(s->h);
  size_t cap = buf ? SCRATCH_SIZE : sizeof local;
  if (!buf) buf = local;
  for (int i = 0; i < 256 && recv(fd, buf, cap, MSG_DONTWAIT) > 0; i++) {}
}

/* The end of a lingering close: exactly once, whichever comes first. */
static void linger_finish(stream *s) {
  if (s->linger_done) return;
  s->linger_done = 1;
  if (s->lprev) s->lprev->lnext = s->lnext;
  else {
    linger_list *ll = linger_list_of(s->h);   /* NULL once its __gc took every stream out */
    if (ll && ll->head == s) ll->head = s->lnext;
  }
  if (s->lnext) s->lnext->lprev = s->lprev;
  s->lnext = s->lprev = NULL;
  uv_read_stop(&s->u.s);
  if (s->linger_drain) discard_input(s);
  s->linger_closes = 2;
  uv_close((uv_handle_t *)&s->ltimer, on_linger_timer_closed);
  uv_close(&s->u.handle, on_closed);   /* pending writes and the shutdown end with ECANCELED */
}

static void on_linger_timeout(uv_timer_t *t) { linger_finish(t->data); }

static void linger_rearm(stream *s) {
  uv_update_time(s->h->loop);     /* from now, not from the loop's last wake-up */
  uv_timer_start(&s->ltimer, on_linger_timeout, (uint64_t)(linger_seconds(s) * 1000.0), 0);
}

/* everything written went out, then FIN: wait for the peer's EOF, bounded */
static void linger_shut_done(stream *s, int status) {
  if (s->linger_done) return;
  s->linger_shut = 1;
  if (status < 0 || s->linger_eof) linger_finish(s);
  else linger_rearm(s);
}

static void on_linger_shutdown(uv_shutdown_t *req, int status) {
  stream *s = req->data;
  free(req);
  linger_shut_done(s, status);
}

static void linger_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *out) {
  (void)suggested;
  stream *s = handle->data;
  out->base = scratch(s->h);
  out->len = out->base ? SCRATCH_SIZE : 0;
}

static void linger_read(uv_stream_t *handle, ssize_t nread, const uv_buf_t *b) {
  (void)b;
  stream *s = handle->data;
  if (nread >= 0) return;                   /* dropped: nobody reads any more */
  uv_read_stop(handle);
  s->linger_eof = 1;
  /* a peer that half-closed may still read what is queued: wait for that */
  if (nread != UV_EOF || s->linger_shut) linger_finish(s);
}

/* Start a lingering close; 0 when the handle can be closed at once. */
static int linger_start(stream *s) {
  luaio_host *h = s->h;
  if (h->closing || s->write_err) return 0;
  int drain = s->tls != NULL;
  int can_shut = !s->shut && uv_is_writable(&s->u.s);
  if (!drain && !(s->queued > 0 && can_shut)) return 0;
  linger_list *ll = linger_list_of(h);
  if (!ll || uv_timer_init(h->loop, &s->ltimer) != 0) return 0;
  s->ltimer.data = s;
  s->lingering = 1;
  s->linger_drain = (unsigned)drain;
  s->linger_shut = 1;
  if (can_shut) {
    uv_shutdown_t *req = malloc(sizeof *req);
    if (req) {
      req->data = s;
      if (uv_shutdown(req, &s->u.s, on_linger_shutdown) == 0) s->linger_shut = 0;
      else free(req);
    }
  } else if (s->shut_pending) {
    s->linger_shut = 0;                     /* shutdown()'s own callback tells */
  }
  s->linger_eof = 1;
  if (drain && uv_read_start(&s->u.s, linger_alloc, linger_read) == 0) s->linger_eof = 0;
  /* what the session and the reader kept is not needed any more */
  luaio_tls_free(s->tls);
  s->tls = NULL;
  free(s->buf);
  s->buf = NULL;
  s->cap = s->off = s->len = 0;
  s->lprev = NULL;
  s->lnext = ll->head;
  if (ll->head) ll->head->lprev = s;
  ll->head = s;
  uv_unref(&s->u.handle);
  uv_unref((uv_handle_t *)&s->ltimer);
  linger_rearm(s);
  if (s->linger_shut && s->linger_eof) linger_finish(s);
  return 1;
}

/* Wait (poll) until fd is ready for `events` or the deadline (ms of
** uv_hrtime) passes; 0 when the deadline passed. */
static int wait_fd(uv_os_fd_t fd, short events, uint64_t deadline) {
  uint64_t now = uv_hrtime() / 1000000;
  if (now >= deadline) return 0;
  struct pollfd pfd = { fd, events, 0 };
  poll(&pfd, 1, (int)(deadline - now));
  return 1;
}

/* The host closes while s lingers, and the loop will not run again: what
** libuv has not written yet is written here, blocking, then FIN; then, as
** long as the kernel still holds bytes the peer has not acknowledged, what
** comes in is read and dropped (a reset now would lose them). All before
** the deadline, at the end of a program. */
static void linger_flush_now(stream *s, uint64_t deadline) {
  uv_os_fd_t fd;
  if (uv_fileno(&s->u.handle, &fd) != 0) return;
  if (!s->linger_shut) {
    size_t unsent = uv_stream_get_write_queue_size(&s->u.s), total = 0;
    for (write_req *w = s->wq_head; w; w = w->next) total += w->n;
    if (unsent > total) return;               /* libuv's queue is not what we think */
    size_t skip = total - unsent;             /* written already: the oldest bytes */
    for (write_req *w = s->wq_head; w; w = w->next) {
      if (skip >= w->n) { skip -= w->n; continue; }
      const char *p = w->data + skip;
      size_t left = w->n - skip;
      skip = 0;
      while (left > 0) {
        ssize_t k = send(fd, p, left, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) { p += k; left -= (size_t)k; }
        else if (k < 0 && errno == EINTR) continue;
        else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { if (!wait_fd(fd, POLLOUT, deadline)) return; }
        else return;                           /* the peer is gone */
      }
    }
    shutdown(fd, SHUT_WR);                     /* uv_shutdown waited behind those writes */
  }
#ifdef SIOCOUTQ
  char buf[4096];
  int outq;
  while (ioctl(fd, SIOCOUTQ, &outq) == 0 && outq > 0) {
    uint64_t now = uv_hrtime() / 1000000;
    if (now >= deadline) return;
    struct pollfd pfd = { fd, POLLIN, 0 };
    poll(&pfd, 1, deadline - now < 5 ? (int)(deadline - now) : 5);   /* ACKs wake nothing: look again soon */
    ssize_t k = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return;
  }
#endif
}

/* The host closes: no more waiting on the loop; what is left to send goes
** out now (bounded), and a last read keeps it a FIN. */
static int linger_list_gc(lua_State *L) {
  linger_list *ll = lua_touserdata(L, 1);
  ll->gone = 1;
  uint64_t deadline = uv_hrtime() / 1000000 + LINGER_EXIT_MS;
  while (ll->head) {
    stream *s = ll->head;
    ll->head = s->lnext;
    if (ll->head) ll->head->lprev = NULL;
    s->lnext = s->lprev = NULL;
    if (s->linger_drain || !s->linger_shut) linger_flush_now(s, deadline);
    linger_finish(s);
  }
  return 0;
}

static void stream_close(stream *s) {
  if (s->closing) return;
  s->closing = 1;
  if (s->box) { s->box->s = NULL; s->box = NULL; }
  if (s->counted) s->h->handles--;
  stop_reading(s);
  luaio_timer_disarm(s->h, &s->rtimer);
  luaio_timer_disarm(s->h, &s->wtimer);
  if (s->reader) {
    luaio_task *t = s->reader;
    s->reader = NULL;
    wake_with_error(t, "OSError", UV_ECANCELED, "the stream was closed while reading");
  }
  if (s->writer) {
    luaio_task *t = s->writer;
    s->writer = NULL;
    wake_with_error(t, "OSError", UV_ECANCELED, "the stream was closed while writing");
  }
  if (s->tls && !s->handshaking && !s->tls_failed && !s->shut && !s->write_err && !s->h->closing) {
    luaio_tls_close_notify(s->tls);     /* tells the peer the end is not a truncation */
    tls_flush(s);
  }
  if (linger_start(s)) return;
  uv_close(&s->u.handle, on_closed);
}

static stream *check_stream(lua_State *L, int idx) {
  stream_box *box = luaio_checkudata(L, idx, STREAM_MT);
  if (!box->s) luaio_error(L, "OSError", "EBADF", "the stream is closed");
  return box->s;
}

/* ---- reading ------------------------------------------------------------ */

/* Room for at least 4 KiB more after the unread bytes; 0 when out of memory. */
static int reserve(stream *s) {
  if (s->off > 0 && s->off + s->len + 4096 > s->cap) {
    memmove(s->buf, s->buf + s->off, s->len);
    s->off = 0;
  }
  if (s->cap - s->len < 4096) {
    size_t cap = s->cap ? s->cap * 2 : 16384;
    char *buf = realloc(s->buf, cap);
    if (!buf) return 0;
    s->buf = buf;
    s->cap = cap;
  }
  return 1;
}

/* The host's scratch buffer: libuv calls alloc and read back to back, and
** the bytes are consumed before anything else runs, so one per host will do. */
static char *scratch(luaio_host *h) {
  if (!h->scratch) h->scratch = malloc(SCRATCH_SIZE);
  return h->scratch;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *out) {
  (void)suggested;
  stream *s = handle->data;
  if (s->tls) {
    out->base = scratch(s->h);
    out->len = out->base ? SCRATCH_SIZE : 0;
    return;
  }
  if (!reserve(s)) { out->base = NULL; out->len = 0; return; }
  out->base = s->buf + s->off + s->len;
  out->len = s->cap - s->off - s->len;
}

static void wake_reader(stream *s) {
  luaio_task *t = s->reader;
  if (!t) return;
  s->reader = NULL;
  luaio_timer_disarm(s->h, &s->rtimer);
  luaio_wake(t, 0);
}

static void stop_reading(stream *s);

/* Ciphertext in: advance the handshake, then decrypt all that is complete
** into the read buffer (the read-ahead limit stops the socket, not this). */
static void tls_input(stream *s, const char *p, size_t n) {
  luaio_tls *t = s->tls;
  if (s->tls_failed) return;
  luaio_tls_input(t, p, n);
  int r = TLS_DONE;
  if (s->handshaking) {
    r = luaio_tls_handshake(t);
    if (r == TLS_DONE) s->handshaking = 0;
  }
  while (r == TLS_DONE && !s->handshaking) {
    size_t got = 0;
    if (!reserve(s)) { s->read_err = UV_ENOMEM; break; }
    r = luaio_tls_read(t, s->buf + s->off + s->len, s->cap - s->off - s->len, &got);
    s->len += got;
  }
  if (r == TLS_CLOSED) s->eof = 1;
  if (r == TLS_FAILED) { s->tls_failed = 1; s->read_err = UV_EPROTO; }
  luaio_tls_input(t, NULL, 0);   /* after a close or a failure, the rest is moot */
  tls_flush(s);          /* handshake replies, alerts, key updates */
  if (s->eof || s->read_err) stop_reading(s);
}

static void on_read(uv_stream_t *handle, ssize_t nread, const uv_buf_t *b) {
  stream *s = handle->data;
  if (nread > 0 && s->tls) tls_input(s, b->base, (size_t)nread);
  else if (nread > 0) s->len += (size_t)nread;
  else if (nread == UV_EOF) { s->eof = 1; stop_reading(s); }
  else if (nread < 0) { s->read_err = (int)nread; stop_reading(s); }
  if (!s->reader && s->len >= s->limit) stop_reading(s);   /* read-ahead full */
  if (nread != 0) wake_reader(s);
}

static void start_reading(stream *s) {
  if (s->reading || s->eof || s->read_err || s->closing) return;
  int r = uv_read_start(&s->u.s, on_alloc, on_read);
  if (r == 0) s->reading = 1;
  else s->read_err = r;
}

static void consume(stream *s, size_t n) {
  s->off += n;
  s->len -= n;
  if (s->len == 0) s->off = 0;
}

static int raise_read_error(lua_State *L, stream *s) {
  if (s->tls_failed) {
    luaio_tls_push_error(L, s->tls);
    return lua_error(L);
  }
  return raise_uv(L, s->read_err, "read");
}

static const char *find_sep(const char *p, size_t len, const char *sep, size_t seplen) {
  if (len == 0) return NULL;
  if (seplen == 1) return memchr(p, sep[0], len);
  if (len < seplen) return NULL;
  const char *end = p + len - seplen;
  for (const char *q = p; q <= end; q++) {
    q = memchr(q, sep[0], (size_t)(end - q) + 1);
    if (!q) return NULL;
    if (memcmp(q, sep, seplen) == 0) return q;
  }
  return NULL;
}

/* Try to complete a read from the buffer: push its result and return 1, or
** return -1 when it has to wait for more data. */
static int try_read(lua_State *L, stream *s, int op) {
  const char *p = s->buf ? s->buf + s->off : "";   /* no buffer before the first byte */
  switch (op) {
    case OP_READ: {
      lua_Integer n = luaio_optinteger(L, 2, 65536);
      if (s->len > 0) {
        size_t take = (size_t)n < s->len ? (size_t)n : s->len;
        lua_pushlstring(L, p, take);
        consume(s, take);
        return 1;
      }
      if (s->eof) { lua_pushnil(L); return 1; }
      if (s->read_err) return raise_read_error(L, s);
      return -1;
    }
    case OP_EXACT: {
      size_t n = (size_t)lua_tointeger(L, 2);
      if (s->len >= n) {
        lua_pushlstring(L, p, n);
        consume(s, n);
        return 1;
      }
      if (s->eof || s->read_err) {
        luaio_push_error(L, "IncompleteReadError", NULL, "%d bytes read on a total of %d expected bytes",
                         (int)s->len, (int)n);
        lua_pushlstring(L, p, s->len);
        lua_setfield(L, -2, "partial");
        lua_pushinteger(L, (lua_Integer)n);
        lua_setfield(L, -2, "expected");
        consume(s, s->len);
        return lua_error(L);
      }
      return -1;
    }
    case OP_LINE:
    case OP_UNTIL: {
      size_t seplen = 1;
      const char *sep = "\n";
      if (op == OP_UNTIL) sep = lua_tolstring(L, 2, &seplen);
      const char *hit = find_sep(p, s->len, sep, seplen);
      if (hit) {
        size_t n = (size_t)(hit - p);
        if (n > s->limit) goto overrun;
        size_t keep = n;
        if (op == OP_LINE && keep > 0 && p[keep - 1] == '\r') keep--;
        lua_pushlstring(L, p, keep);
        consume(s, n + seplen);
        return 1;
      }
      if (s->len > s->limit) goto overrun;
      if (s->eof || s->read_err) {
        if (s->len == 0) {
          if (s->read_err) return raise_read_error(L, s);
          lua_pushnil(L);
          return 1;
        }
        size_t keep = s->len;
        if (op == OP_LINE && p[keep - 1] == '\r') keep--;
        lua_pushlstring(L, p, keep);
        consume(s, s->len);
        return 1;
      }
      return -1;
    overrun:
      return luaio_error(L, "LimitOverrunError", NULL,
                         "separator not found within the limit of %d bytes (the data stays buffered)",
                         (int)s->limit);
    }
    case OP_HEAD: {
      /* an HTTP head up to its blank line, parsed where it lies: no string
      ** for the head itself (results as luaio_http_push_head; false at a
      ** clean EOF) */
      int is_request = lua_tostring(L, 2)[2] == 'q';
      if (is_request)
        while (s->len >= 2 && p[0] == '\r' && p[1] == '\n') { consume(s, 2); p += 2; }   /* stray CRLFs */
      const char *hit = find_sep(p, s->len, "\r\n\r\n", 4);
      size_t n = hit ? (size_t)(hit - p) + 4 : 0;
      if (hit && n - 4 <= s->limit) {
        int r = luaio_http_push_head(L, p, n, is_request);
        consume(s, n);
        return r;
      }
      if (hit || s->len > s->limit) {
        lua_pushnil(L);
        lua_pushinteger(L, 431);
        lua_pushliteral(L, "head too large");
        return 3;
      }
      if (s->read_err) return raise_read_error(L, s);
      if (s->eof) {
        if (s->len == 0) { lua_pushboolean(L, 0); return 1; }
        consume(s, s->len);
        lua_pushnil(L);
        lua_pushinteger(L, 400);
        lua_pushliteral(L, "incomplete head");
        return 3;
      }
      return -1;
    }
    case OP_HANDSHAKE: {
      if (s->read_err) return raise_read_error(L, s);
      if (!s->handshaking) return 0;
      if (s->eof)
        return luaio_error(L, "TLSError", "UNEXPECTED_EOF_WHILE_READING",
                           "the peer closed the connection during the TLS handshake");
      return -1;
    }
    case OP_ALL: {
      if (s->eof) {
        lua_pushlstring(L, p, s->len);
        consume(s, s->len);
        return 1;
      }
      if (s->read_err) return raise_read_error(L, s);
      return -1;
    }
  }
  return 0;
}

static void reader_cancel(void *data) {
  stream *s = data;
  s->reader = NULL;
  luaio_timer_disarm(s->h, &s->rtimer);
  if (s->len >= s->limit) stop_reading(s);
}

static void on_read_timeout(luaio_timer *tm) {
  stream *s = (stream *)((char *)tm - offsetof(stream, rtimer));
  luaio_task *t = s->reader;
  if (!t) return;
  s->reader = NULL;
  lua_State *co = luaio_task_stack(t);
  luaio_push_error(co, "TimeoutError", NULL, "read timed out after %f s", s->timeout);
  luaio_wake_error(t);
}

static int do_read(lua_State *L, int op);

static int read_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return do_read(L, (int)ctx);
}

static const char *const read_names[] = {
  "stream:read", "stream:read_exactly", "stream:readline", "stream:read_until",
  "stream:read_all", "stream:start_tls", "stream:_read_head"};

static int do_read(lua_State *L, int op) {
  stream *s = check_stream(L, 1);
  /* a waiting function, even when the data is there already */
  luaio_task *t = luaio_need_task(L, read_names[op]);
  lua_settop(L, 2);
  int n = try_read(L, s, op);
  if (n >= 0) {
    if (!s->reading && s->len < s->limit) start_reading(s);   /* keep reading ahead */
    return n;
  }
  if (s->reader) return luaL_error(L, "another task is already reading from this stream");
  start_reading(s);
  if (s->timeout == 0)            /* set_timeout(0): whatever has to wait times out at once */
    return luaio_error(L, "TimeoutError", NULL, "read timed out after 0 s");
  s->reader = t;
  if (s->timeout > 0) {
    s->rtimer.fire = on_read_timeout;
    luaio_timer_arm(s->h, &s->rtimer, s->timeout);
  }
  return luaio_await(L, reader_cancel, s, op, read_k);
}

static int l_read(lua_State *L) {
  if (!lua_isnoneornil(L, 2)) {
    lua_Integer n = luaio_checkinteger(L, 2);
    if (n == -1) {                    /* asyncio's read(-1): everything until EOF */
      lua_settop(L, 1);
      return do_read(L, OP_ALL);
    }
    if (n <= 0) return luaio_argerror(L, 2, "byte count must be positive (or -1: until EOF)");
  }
  return do_read(L, OP_READ);
}

static int l_read_exactly(lua_State *L) {
  lua_Integer n = luaio_checkinteger(L, 2);
  if (n < 0) return luaio_argerror(L, 2, "byte count must not be negative");
  return do_read(L, OP_EXACT);
}

static int l_readline(lua_State *L) { return do_read(L, OP_LINE); }

static int l_read_until(lua_State *L) {
  size_t len;
  luaio_checklstring(L, 2, &len);
  if (len == 0) return luaio_argerror(L, 2, "separator must not be empty");
  return do_read(L, OP_UNTIL);
}

static int l_read_all(lua_State *L) { return do_read(L, OP_ALL); }

/* _read_head("request" | "response") ⏸ -> head | false | nil, status, reason */
static int l_read_head(lua_State *L) {
  const char *kind = luaio_checkstring(L, 2);
  if (strcmp(kind, "request") != 0 && strcmp(kind, "response") != 0)
    return luaio_argerror(L, 2, "'request' or 'response' expected");
  return do_read(L, OP_HEAD);
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
  if (s->write_err) wake_with_error(t, error_name(s->write_err), s->write_err, "write");
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
  if (s->lingering && !s->linger_done && !s->linger_shut) linger_rearm(s);   /* progress */
  if (!s->closing) wake_writer_if(s);
}

static void writer_cancel(void *data) {
  stream *s = data;
  s->writer = NULL;
  luaio_timer_disarm(s->h, &s->wtimer);
}

static void on_write_timeout(luaio_timer *tm) {
  stream *s = (stream *)((char *)tm - offsetof(stream, wtimer));
  luaio_task *t = s->writer;
  if (!t) return;
  s->writer = NULL;
  lua_State *co = luaio_task_stack(t);
  luaio_push_error(co, "TimeoutError", NULL, "write timed out after %f s", s->timeout);
  luaio_wake_error(t);
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
static int send_bufs(stream *s, const uv_buf_t *bufs, unsigned n, size_t total) {
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

/* Send the ciphertext the TLS session produced (after a write error there
** is nowhere to send it). */
static void tls_flush(stream *s) {
  luaio_tls_out *o = &s->h->tls_out;
  if (o->len > 0 && !s->write_err) {
    uv_buf_t b = uv_buf_init(o->data, (unsigned)o->len);
    send_bufs(s, &b, 1, o->len);
  }
  o->len = 0;
}

static int raise_tls_failure(lua_State *L, stream *s) {
  s->tls_failed = 1;
  tls_flush(s);          /* the alert, if any */
  luaio_tls_push_error(L, s->tls);
  return lua_error(L);
}

static int tls_write(lua_State *L, stream *s, int n, size_t total) {
  if (s->tls_failed) return raise_tls_failure(L, s);
  if (s->handshaking) return luaio_error(L, "TLSError", "HANDSHAKE_NOT_DONE", "write before the TLS handshake finished");
  /* small pieces (an HTTP head and its body) go out as one record: one
  ** encryption and one record header instead of one per piece */
  char *joined = n > 1 && total <= 16384 ? scratch(s->h) : NULL;
  if (joined) {
    size_t pos = 0;
    for (int i = 2; i <= n + 1; i++) {
      size_t len;
      const char *p = lua_tolstring(L, i, &len);
      memcpy(joined + pos, p, len);
      pos += len;
    }
    if (luaio_tls_write(s->tls, joined, pos) != TLS_DONE) return raise_tls_failure(L, s);
    tls_flush(s);
  } else {
    /* 64 KiB at a time, sent as it is encrypted: the output buffer stays small */
    for (int i = 2; i <= n + 1 && !s->write_err; i++) {
      size_t len;
      const char *p = lua_tolstring(L, i, &len);
      for (size_t off = 0; off < len && !s->write_err; off += SCRATCH_SIZE) {
        size_t k = len - off < SCRATCH_SIZE ? len - off : SCRATCH_SIZE;
        if (luaio_tls_write(s->tls, p + off, k) != TLS_DONE) return raise_tls_failure(L, s);
        tls_flush(s);
      }
    }
  }
  return s->write_err;
}

static int l_write(lua_State *L) {
  stream *s = check_stream(L, 1);
  int n = lua_gettop(L) - 1;
  uv_buf_t local[16], *bufs = local;
  size_t total = 0;
  for (int i = 2; i <= n + 1; i++) {
    size_t len;
    luaio_checklstring(L, i, &len);
    total += len;
  }
  luaio_need_task(L, "stream:write");    /* it may wait: nothing is queued outside a task */
  if (s->write_err) return raise_uv(L, s->write_err, "write");
  if (s->shut) return luaio_error(L, "OSError", "EPIPE", "cannot write after shutdown()");
  if (total == 0) return 0;
  int r;
  if (s->tls) {
    r = tls_write(L, s, n, total);
  } else {
    if (n > 16) bufs = lua_newuserdatauv(L, sizeof *bufs * (size_t)n, 0);
    for (int i = 0; i < n; i++) {
      size_t len;
      const char *p = lua_tolstring(L, i + 2, &len);
      bufs[i] = uv_buf_init((char *)p, (unsigned)len);
    }
    r = send_bufs(s, bufs, (unsigned)n, total);
  }
  if (r < 0) return raise_uv(L, r, "write");
  if (s->queued > s->hwm) {
    lua_settop(L, 1);
    return wait_writer(L, s, WAIT_HWM);
  }
  return 0;
}

static int l_drain(lua_State *L) {
  stream *s = check_stream(L, 1);
  luaio_need_task(L, "stream:drain");
  if (s->write_err) return raise_uv(L, s->write_err, "write");
  if (s->queued == 0) return 0;
  lua_settop(L, 1);
  return wait_writer(L, s, WAIT_DRAIN);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  stream *s = req->data;
  free(req);
  s->shut_pending = 0;
  if (s->lingering) { linger_shut_done(s, status); return; }   /* closed meanwhile */
  luaio_task *t = s->writer;
  if (!t || s->write_wait != WAIT_SHUTDOWN) return;
  s->writer = NULL;
  if (status < 0 && status != UV_ENOTCONN) wake_with_error(t, error_name(status), status, "shutdown");
  else luaio_wake(t, 0);
}

static int l_shutdown(lua_State *L) {
  stream *s = check_stream(L, 1);
  if (s->shut) return 0;
  if (s->writer) return luaL_error(L, "another task is already writing to this stream");
  luaio_task *t = luaio_need_task(L, "stream:shutdown");
  if (s->tls && !s->handshaking && !s->tls_failed) {
    luaio_tls_close_notify(s->tls);
    tls_flush(s);
  }
  uv_shutdown_t *req = malloc(sizeof *req);
  if (!req) return luaL_error(L, "out of memory");
  req->data = s;
  int r = uv_shutdown(req, &s->u.s, on_shutdown);
  if (r < 0) { free(req); return raise_uv(L, r, "shutdown"); }
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
  else if (luaio_close_orphan(&s->u.handle, on_closed)) on_closed(&s->u.handle);
  return 0;
}

static int l_closed(lua_State *L) {
  stream_box *box = luaio_checkudata(L, 1, STREAM_MT);
  lua_pushboolean(L, box->s == NULL);
  return 1;
}

static int push_addr(lua_State *L, const struct sockaddr_storage *ss) {
  char ip[64] = "";
  int port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
  } else {
    lua_pushnil(L);
    lua_pushnil(L);
    return 2;
  }
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  return 2;
}

static int names(lua_State *L, int peer) {
  stream *s = check_stream(L, 1);
  if (s->is_pipe) {
    char path[1024];
    size_t len = sizeof path;
    int r = peer ? uv_pipe_getpeername(&s->u.pipe, path, &len) : uv_pipe_getsockname(&s->u.pipe, path, &len);
    if (r < 0) return raise_uv(L, r, peer ? "peername" : "sockname");
    lua_pushlstring(L, path, len);
    lua_pushnil(L);
    return 2;
  }
  if (peer && s->has_peer) return push_addr(L, &s->peer);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int r = peer ? uv_tcp_getpeername(&s->u.tcp, (struct sockaddr *)&ss, &len)
               : uv_tcp_getsockname(&s->u.tcp, (struct sockaddr *)&ss, &len);
  if (r < 0) return raise_uv(L, r, peer ? "peername" : "sockname");
  return push_addr(L, &ss);
}

static int l_peername(lua_State *L) { return names(L, 1); }
static int l_sockname(lua_State *L) { return names(L, 0); }

/* set_timeout(sec): the deadline of each read or write that has to wait;
** nil: none; 0: such a read or write raises TimeoutError at once */
static int l_set_timeout(lua_State *L) {
  stream *s = check_stream(L, 1);
  if (lua_isnoneornil(L, 2)) { s->timeout = -1; return 0; }
  double sec = luaio_checknumber(L, 2);
  if (!(sec >= 0)) return luaio_argerror(L, 2, "non-negative number of seconds expected");
  s->timeout = sec;
  return 0;
}

/* set_limits(limit, high_water): the line limit and the write high-water mark */
static int l_set_limits(lua_State *L) {
  stream *s = check_stream(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    lua_Integer v = luaio_checkinteger(L, 2);
    if (v < 1) return luaio_argerror(L, 2, "limit must be positive");
    s->limit = (size_t)v;
  }
  if (!lua_isnoneornil(L, 3)) {
    lua_Integer v = luaio_checkinteger(L, 3);
    if (v < 0) return luaio_argerror(L, 3, "high-water mark must not be negative");
    s->hwm = (size_t)v;
  }
  return 0;
}

static int l_buffered(lua_State *L) {
  stream *s = check_stream(L, 1);
  lua_pushinteger(L, (lua_Integer)s->len);
  lua_pushinteger(L, (lua_Integer)s->queued);
  return 2;
}

/* _start_tls(context, server_name) ⏸ : the handshake, waited for as a read */
static int l_start_tls(lua_State *L) {
  stream *s = check_stream(L, 1);
  const char *name = lua_isnoneornil(L, 3) ? NULL : luaio_checkcstring(L, 3);
  if (s->tls) return luaL_error(L, "the stream already speaks TLS");
  if (s->reader) return luaL_error(L, "another task is already reading from this stream");
  luaio_need_task(L, "start_tls");
  luaio_tls *t = luaio_tls_new(L, 2, name, &s->h->tls_out);
  if (!t) return lua_error(L);
  s->tls = t;
  s->handshaking = 1;
  /* bytes read ahead already are the peer's first handshake bytes (STARTTLS):
  ** out of the read buffer first, since the plaintext will land there */
  size_t ahead = s->len;
  char *early = ahead ? malloc(ahead) : NULL;
  if (ahead && !early) s->read_err = UV_ENOMEM;
  if (early) memcpy(early, s->buf + s->off, ahead);
  consume(s, ahead);
  tls_input(s, early, early ? ahead : 0);   /* with nothing: a client speaks first */
  free(early);
  lua_settop(L, 1);
  return do_read(L, OP_HANDSHAKE);
}

/* _start_tls_blocker() -> why start_tls cannot start now, or nil (the Lua
** half asks first: a misuse must not close the stream as a failed
** handshake does) */
static int l_start_tls_blocker(lua_State *L) {
  stream *s = check_stream(L, 1);
  if (s->tls) lua_pushliteral(L, "the stream already speaks TLS");
  else if (s->reader) lua_pushliteral(L, "another task is already reading from this stream");
  else lua_pushnil(L);
  return 1;
}

static int l_tls_info(lua_State *L) {
  stream *s = check_stream(L, 1);
  if (!s->tls || s->handshaking || s->tls_failed) lua_pushnil(L);
  else luaio_tls_push_info(L, s->tls);
  return 1;
}

static int l_tostring(lua_State *L) {
  stream_box *box = luaio_checkudata(L, 1, STREAM_MT);
  lua_pushfstring(L, "Stream<%s>", box->s ? "open" : "closed");
  return 1;
}

/* ---- connecting ---------------------------------------------------------- */

typedef struct {
  uv_connect_t req;
  luaio_task *task;   /* NULL once the waiting task gave up */
  stream *s;
} connect_op;

static void remember_peer(stream *s) {
  if (s->is_pipe) return;
  int len = sizeof s->peer;
  if (uv_tcp_getpeername(&s->u.tcp, (struct sockaddr *)&s->peer, &len) == 0) s->has_peer = 1;
}

static void on_connect(uv_connect_t *req, int status) {
  connect_op *op = (connect_op *)req;
  luaio_task *t = op->task;
  stream *s = op->s;
  free(op);
  if (!t) return;
  if (status < 0) {
    stream_close(s);             /* a failed connect leaves nothing open */
    wake_with_error(t, "ConnectionError", status, "connect");
  } else {
    remember_peer(s);
    luaio_wake(t, 0);
  }
}

static void connect_cancel(void *data) {
  connect_op *op = data;
  op->task = NULL;
  stream_close(op->s);           /* on_connect then sees ECANCELED and frees op */
}

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  lua_settop(L, 1);         /* the Stream pushed before waiting */
  return 1;
}

static int connect_fail(lua_State *L, int r, const char *what) {
  l_close(L);
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
  if (uv_ip4_addr(ip, (int)port, (struct sockaddr_in *)&addr) != 0 &&
      uv_ip6_addr(ip, (int)port, (struct sockaddr_in6 *)&addr) != 0)
    return luaio_error(L, "ConnectionError", "EINVAL", "not a numeric address: %s", ip);
  stream *s = stream_alloc(h);
  if (!s) return luaL_error(L, "out of memory");
  uv_tcp_init(h->loop, &s->u.tcp);
  lua_settop(L, 0);
  push_stream(L, s);
  connect_op *op = malloc(sizeof *op);
  if (!op) return connect_fail(L, UV_ENOMEM, "connect");
  op->s = s;
  op->task = luaio_current(L);
  int r = uv_tcp_connect(&op->req, &s->u.tcp, (struct sockaddr *)&addr, on_connect);
  if (r < 0) { free(op); return connect_fail(L, r, "connect"); }
  uv_tcp_nodelay(&s->u.tcp, 1);
  return luaio_await(L, connect_cancel, op, 0, connect_k);
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
  push_stream(L, s);
  lua_replace(L, 1);
  connect_op *op = malloc(sizeof *op);
  if (!op) return connect_fail(L, UV_ENOMEM, "connect");
  op->s = s;
  op->task = luaio_current(L);
  uv_pipe_connect(&op->req, &s->u.pipe, path, on_connect);
  return luaio_await(L, connect_cancel, op, 0, connect_k);
}

uv_pipe_t *luaio_stream_new_pipe(lua_State *L, luaio_host *h) {
  stream *s = stream_alloc(h);
  if (!s) { luaL_error(L, "out of memory"); return NULL; }
  uv_pipe_init(h->loop, &s->u.pipe, 0);
  s->is_pipe = 1;
  push_stream(L, s);
  return &s->u.pipe;
}

/* ---- listening ----------------------------------------------------------- */

typedef struct listener listener;
struct listener {
  union { uv_handle_t handle; uv_stream_t s; uv_tcp_t tcp; uv_pipe_t pipe; } u;
  luaio_host *h;
  luaio_task *accepter;
  int pending, err, is_pipe, closing;
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

/* listener:accept() ⏸ -> Stream */
static int l_accept(lua_State *L) {
  listener *l = check_listener(L);
  lua_settop(L, 1);
  if (l->pending > 0) {
    stream *s = stream_alloc(l->h);
    if (!s) return luaL_error(L, "out of memory");
    if (l->is_pipe) { uv_pipe_init(l->h->loop, &s->u.pipe, 0); s->is_pipe = 1; }
    else uv_tcp_init(l->h->loop, &s->u.tcp);
    push_stream(L, s);
    l->pending--;
    int r = uv_accept(&l->u.s, &s->u.s);
    if (r < 0) { l_close(L); return raise_uv(L, r, "accept"); }
    if (!l->is_pipe) { uv_tcp_nodelay(&s->u.tcp, 1); remember_peer(s); }
    return 1;
  }
  if (l->err) {
    int err = l->err;
    l->err = 0;
    return raise_uv(L, err, "accept");
  }
  if (l->accepter) return luaL_error(L, "another task is already accepting on this server");
  luaio_task *t = luaio_need_task(L, "accept");
  l->accepter = t;
  return luaio_await(L, accept_cancel, l, 0, accept_k);
}

static int l_listener_close(lua_State *L) {
  listener_box *box = luaio_checkudata(L, 1, LISTENER_MT);
  listener *l = box->l;
  if (!l) return 0;
  box->l = NULL;
  l->h->handles--;
  if (l->accepter) {
    luaio_task *t = l->accepter;
    l->accepter = NULL;
    wake_with_error(t, "OSError", UV_ECANCELED, "the server was closed");
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
    char path[1024];
    size_t len = sizeof path;
    if (uv_pipe_getsockname(&l->u.pipe, path, &len) < 0) return 0;
    lua_pushlstring(L, path, len);
    lua_pushnil(L);
    return 2;
  }
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int r = uv_tcp_getsockname(&l->u.tcp, (struct sockaddr *)&ss, &len);
  if (r < 0) return raise_uv(L, r, "getsockname");
  return push_addr(L, &ss);
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

/* tcp_listen(ip, port, backlog, reuseport) -> Listener */
static int l_tcp_listen(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  const char *ip = luaio_checkcstring(L, 1);
  lua_Integer port = luaio_checkinteger(L, 2);
  int backlog = (int)luaio_optinteger(L, 3, 511);
  int reuseport = lua_toboolean(L, 4);
  if (port < 0 || port > 65535) return luaio_argerror(L, 2, "port must be within 0..65535");
  struct sockaddr_storage addr;
  int family = AF_INET;
  if (uv_ip4_addr(ip, (int)port, (struct sockaddr_in *)&addr) != 0) {
    if (uv_ip6_addr(ip, (int)port, (struct sockaddr_in6 *)&addr) != 0)
      return luaio_error(L, "OSError", "EINVAL", "not a numeric address: %s", ip);
    family = AF_INET6;
  }
  lua_settop(L, 0);
  listener *l = push_listener(L, h);
  char where[96];
  snprintf(where, sizeof where, "%s:%d", ip, (int)port);
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
  int r = uv_pipe_bind(&l->u.pipe, path);
  if (r < 0) return listen_fail(L, r, "bind", path);
  r = uv_listen(&l->u.s, backlog, on_connection);
  if (r < 0) return listen_fail(L, r, "listen on", path);
  lua_settop(L, 1);
  return 1;
}

void luaio_open_stream(lua_State *L, luaio_host *h) {
  static const luaL_Reg methods[] = {
    {"read", l_read}, {"read_exactly", l_read_exactly}, {"readline", l_readline},
    {"read_until", l_read_until}, {"read_all", l_read_all}, {"write", l_write},
    {"drain", l_drain}, {"close", l_close}, {"shutdown", l_shutdown},
    {"peername", l_peername}, {"sockname", l_sockname}, {"set_timeout", l_set_timeout},
    {"set_limits", l_set_limits}, {"buffered", l_buffered}, {"closed", l_closed},
    {"_start_tls", l_start_tls}, {"_start_tls_blocker", l_start_tls_blocker}, {"_read_head", l_read_head}, {"tls_info", l_tls_info}, {NULL, NULL}};
  luaL_newmetatable(L, STREAM_MT);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "stream_mt");        /* into core: the Lua half checks self with it */
  luaL_newlib(L, methods);
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

  /* one per host (a second require keeps it), made after the host's own
  ** reference: its __gc runs before the teardown */
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &linger_key) == LUA_TNIL) {
    linger_list *ll = lua_newuserdatauv(L, sizeof *ll, 0);
    ll->head = NULL;
    ll->gone = 0;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, linger_list_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &linger_key);
  }
  lua_pop(L, 1);

  static const luaL_Reg lmethods[] = {
    {"accept", l_accept}, {"close", l_listener_close}, {"address", l_listener_address},
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
    {"tcp_connect", l_tcp_connect}, {"pipe_connect", l_pipe_connect},
    {"tcp_listen", l_tcp_listen}, {"pipe_listen", l_pipe_listen}, {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
