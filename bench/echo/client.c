/* echo load generator: `conns` connections each send a message of `size`
** bytes, wait for all of it to come back, and send again, for `secs`
** seconds. Prints messages/s and the p99 round-trip latency.
**
**   client PORT [CONNS=50] [SECS=10] [SIZE=1024]
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
  uv_tcp_t tcp;
  uv_write_t req;
  size_t got;
  uint64_t sent_at;
} conn;

static char *msg, *rbuf;
static size_t size;
static uint64_t deadline, count, lat_len, lat_cap;
static float *lat_us;           /* every round trip, for the percentile */
static int live;

static void send_one(conn *c);

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)h; (void)hint;
  *b = uv_buf_init(rbuf, 65536);   /* contents are not checked: one buffer serves all */
}

static void on_close(uv_handle_t *h) { (void)h; live--; }

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  conn *c = s->data;
  if (n < 0) { fprintf(stderr, "read: %s\n", uv_strerror((int)n)); uv_close((uv_handle_t *)s, on_close); return; }
  c->got += (size_t)n;
  if (c->got < size) return;
  if (c->got > size) { fprintf(stderr, "echo returned more than sent\n"); exit(2); }
  uint64_t now = uv_hrtime();
  count++;
  if (lat_len == lat_cap) { lat_cap = lat_cap ? lat_cap * 2 : 1 << 16; lat_us = realloc(lat_us, lat_cap * sizeof *lat_us); }
  lat_us[lat_len++] = (float)((now - c->sent_at) / 1e3);
  if (now >= deadline) { uv_close((uv_handle_t *)s, on_close); return; }
  send_one(c);
}

static void on_write(uv_write_t *w, int st) {
  if (st < 0) { fprintf(stderr, "write: %s\n", uv_strerror(st)); uv_close((uv_handle_t *)w->handle, on_close); }
}

static void send_one(conn *c) {
  uv_buf_t b = uv_buf_init(msg, (unsigned)size);
  c->got = 0;
  c->sent_at = uv_hrtime();
  uv_write(&c->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
}

static void on_connect(uv_connect_t *r, int st) {
  conn *c = r->data;
  free(r);
  if (st < 0) { fprintf(stderr, "connect: %s\n", uv_strerror(st)); exit(2); }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  send_one(c);
}

static int cmp(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: client PORT [CONNS] [SECS] [SIZE]\n"); return 2; }
  int port = atoi(argv[1]);
  int conns = argc > 2 ? atoi(argv[2]) : 50;
  double secs = argc > 3 ? atof(argv[3]) : 10;
  size = argc > 4 ? (size_t)atoi(argv[4]) : 1024;
  msg = malloc(size);
  memset(msg, 'x', size);
  rbuf = malloc(65536);
  uv_loop_t *loop = uv_default_loop();
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", port, &addr);
  conn *cs = calloc((size_t)conns, sizeof *cs);
  uint64_t t0 = uv_hrtime();
  deadline = t0 + (uint64_t)(secs * 1e9);
  for (int i = 0; i < conns; i++) {
    uv_tcp_init(loop, &cs[i].tcp);
    cs[i].tcp.data = &cs[i];
    uv_connect_t *r = malloc(sizeof *r);
    r->data = &cs[i];
    uv_tcp_connect(r, &cs[i].tcp, (struct sockaddr *)&addr, on_connect);
    live++;
  }
  uv_run(loop, UV_RUN_DEFAULT);
  double elapsed = (uv_hrtime() - t0) / 1e9;
  qsort(lat_us, lat_len, sizeof *lat_us, cmp);
  printf("metric messages_per_second %.0f\n", count / elapsed);
  printf("metric p99_ms %.3f\n", lat_len ? lat_us[(size_t)(lat_len * 0.99)] / 1e3 : 0.0);
  return live == 0 && count > 0 ? 0 : 1;
}
