/* loadgen.h — what the bench's C load generators (echo, ws-echo) share:
** the command line, the connections, a send that never reuses a write
** request before its callback, the round-trip record and the report.
** Header-only (each client is one file compiled by bench/run).
**
** A client embeds lg_conn first in its connection struct, defines
**   static void lg_on_open(lg_conn *c);                  connected
**   static void lg_alloc(lg_conn *c, uv_buf_t *b);       where to read
**   static void lg_on_data(lg_conn *c, size_t n);        n bytes arrived
** and calls lg_send, lg_round_trip (a whole echo came back: 1 to go on,
** 0 when the time is up and the connection was closed), lg_fail.
*/
#ifndef BENCH_LOADGEN_H
#define BENCH_LOADGEN_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct lg_conn {
  uv_tcp_t tcp;
  uv_write_t req;               /* the rest of a send the socket did not take at once */
  int writing, deferred;        /* req in use (until its callback); a send waits for it */
  const char *out;              /* what the next send writes */
  size_t out_len;
  uint64_t sent_at;
} lg_conn;

static struct {
  int port, conns, live;
  double secs;
  size_t size;
  uint64_t t0, deadline, count, lat_len, lat_cap;
  float *lat_us;                /* every round trip, for the percentile */
} lg;

static void lg_on_open(lg_conn *c);
static void lg_alloc(lg_conn *c, uv_buf_t *b);
static void lg_on_data(lg_conn *c, size_t n);

static void lg_fail(const char *what, int err) {
  if (err) fprintf(stderr, "%s: %s\n", what, uv_strerror(err));
  else fprintf(stderr, "%s\n", what);
  exit(2);
}

static void lg_on_close(uv_handle_t *h) { (void)h; lg.live--; }

static void lg_close(lg_conn *c) {
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, lg_on_close);
}

/* client PORT [CONNS=50] [SECS=10] [SIZE=1024] */
static void lg_args(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s PORT [CONNS] [SECS] [SIZE]\n", argv[0]); exit(2); }
  lg.port = atoi(argv[1]);
  lg.conns = argc > 2 ? atoi(argv[2]) : 50;
  lg.secs = argc > 3 ? atof(argv[3]) : 10;
  lg.size = argc > 4 ? (size_t)atoi(argv[4]) : 1024;
}

static void lg_send(lg_conn *c);

static void lg_on_write(uv_write_t *w, int st) {
  lg_conn *c = (lg_conn *)w->handle;
  if (st < 0) { fprintf(stderr, "write: %s\n", uv_strerror(st)); lg_close(c); return; }
  c->writing = 0;
  if (c->deferred) { c->deferred = 0; lg_send(c); }
}

/* c->out, written at once when the socket takes it all (no request: the
** echo can come back within the same read loop, before libuv would call a
** request's callback); else the rest through c->req, and a send meanwhile
** waits for that request's callback */
static void lg_send(lg_conn *c) {
  c->sent_at = uv_hrtime();
  if (c->writing) { c->deferred = 1; return; }
  uv_buf_t b = uv_buf_init((char *)c->out, (unsigned)c->out_len);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (n == (int)c->out_len) return;
  if (n < 0 && n != UV_EAGAIN) lg_fail("write", n);
  if (n > 0) b = uv_buf_init((char *)c->out + n, (unsigned)(c->out_len - (size_t)n));
  c->writing = 1;
  uv_write(&c->req, (uv_stream_t *)&c->tcp, &b, 1, lg_on_write);
}

static int lg_round_trip(lg_conn *c) {
  uint64_t now = uv_hrtime();
  lg.count++;
  if (lg.lat_len == lg.lat_cap) {
    lg.lat_cap = lg.lat_cap ? lg.lat_cap * 2 : 1 << 16;
    lg.lat_us = realloc(lg.lat_us, lg.lat_cap * sizeof *lg.lat_us);
    if (!lg.lat_us) lg_fail("out of memory", 0);
  }
  lg.lat_us[lg.lat_len++] = (float)((now - c->sent_at) / 1e3);
  if (now < lg.deadline) return 1;
  lg_close(c);
  return 0;
}

static void lg_uv_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) { (void)hint; lg_alloc((lg_conn *)h, b); }

static void lg_uv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  if (n == 0) return;
  if (n < 0) { fprintf(stderr, "read: %s\n", uv_strerror((int)n)); lg_close((lg_conn *)s); return; }
  lg_on_data((lg_conn *)s, (size_t)n);
}

static void lg_on_connect(uv_connect_t *r, int st) {
  lg_conn *c = r->data;
  free(r);
  if (st < 0) lg_fail("connect", st);
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, lg_uv_alloc, lg_uv_read);
  lg_on_open(c);
}

/* connect conns[i] (each struct `stride` bytes, lg_conn first) and run */
static int lg_run(void *conns, size_t stride) {
  uv_loop_t *loop = uv_default_loop();
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", lg.port, &addr);
  lg.t0 = uv_hrtime();
  lg.deadline = lg.t0 + (uint64_t)(lg.secs * 1e9);
  for (int i = 0; i < lg.conns; i++) {
    lg_conn *c = (lg_conn *)((char *)conns + (size_t)i * stride);
    uv_tcp_init(loop, &c->tcp);
    uv_connect_t *r = malloc(sizeof *r);
    r->data = c;
    uv_tcp_connect(r, &c->tcp, (struct sockaddr *)&addr, lg_on_connect);
    lg.live++;
  }
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}

static int lg_cmp(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* messages/s and the p99 round trip; the exit status */
static int lg_report(void) {
  double elapsed = (uv_hrtime() - lg.t0) / 1e9;
  qsort(lg.lat_us, lg.lat_len, sizeof *lg.lat_us, lg_cmp);
  printf("metric messages_per_second %.0f\n", lg.count / elapsed);
  printf("metric p99_ms %.3f\n", lg.lat_len ? lg.lat_us[(size_t)(lg.lat_len * 0.99)] / 1e3 : 0.0);
  return lg.live == 0 && lg.count > 0 ? 0 : 1;
}

#endif
