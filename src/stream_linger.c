/*
** stream_linger.c — the lingering close of streams (stream_int.h).
**
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

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#ifdef __linux__
#include <linux/sockios.h>   /* SIOCOUTQ */
#endif
#include "stream_int.h"

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
  char local[4096], *buf = stream_scratch(s->h);
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
  uv_close(&s->u.handle, stream_on_closed);   /* pending writes and the shutdown end with ECANCELED */
}

static void on_linger_timeout(uv_timer_t *t) { linger_finish(t->data); }

static void linger_rearm(stream *s) {
  uv_update_time(s->h->loop);     /* from now, not from the loop's last wake-up */
  uv_timer_start(&s->ltimer, on_linger_timeout, (uint64_t)(linger_seconds(s) * 1000.0), 0);
}

/* everything written went out, then FIN: wait for the peer's EOF, bounded */
void stream_linger_shut_done(stream *s, int status) {
  if (s->linger_done) return;
  s->linger_shut = 1;
  if (status < 0 || s->linger_eof) linger_finish(s);
  else linger_rearm(s);
}

static void on_linger_shutdown(uv_shutdown_t *req, int status) {
  stream *s = req->data;
  free(req);
  stream_linger_shut_done(s, status);
}

static void linger_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *out) {
  (void)suggested;
  stream *s = handle->data;
  out->base = stream_scratch(s->h);
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
int stream_linger_start(stream *s) {
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
  luaio_rb_free(&s->rb);
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

/* a queued write finished: progress, the wait starts again */
void stream_linger_progress(stream *s) {
  if (!s->linger_done && !s->linger_shut) linger_rearm(s);
}

void stream_open_linger(lua_State *L) {
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
}
