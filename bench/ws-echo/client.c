/* WebSocket echo load generator: `conns` connections each do the opening
** handshake, then send a masked text message of `size` bytes, wait for the
** whole echoed frame to come back, and send again, for `secs` seconds.
** Prints messages/s and the p99 round-trip latency.
**
**   client PORT [CONNS=50] [SECS=10] [SIZE=1024]
**
** Every echoed frame is checked: one unmasked FIN text frame carrying the
** message. Each connection has its own mask key, and its frame is built
** (and masked) once: what the server does per message is all that is measured.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
  uv_tcp_t tcp;
  uv_write_t req, hs_req;          /* a message's write; the handshake's */
  int open;                     /* handshake done */
  int writing, deferred;        /* req in use (until on_write); a send waits for it */
  char *frame;                  /* the masked frame this connection sends */
  size_t frame_len;
  char *in;                     /* what came back: handshake, then one frame */
  size_t got;
  uint64_t sent_at;
} conn;

static char *msg, *expect;      /* the message; the frame the server must echo */
static size_t size, expect_len;
static int port;
static uint64_t deadline, count, lat_len, lat_cap;
static float *lat_us;           /* every round trip, for the percentile */
static int live;

#define IN_CAP 4096
static void send_frame(conn *c);

static void fail(const char *what) { fprintf(stderr, "%s\n", what); exit(2); }

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  (void)hint;
  conn *c = h->data;
  size_t cap = (c->open ? expect_len : IN_CAP - 1) - c->got;
  if (cap == 0) cap = 1;       /* one byte too many is caught in on_read */
  *b = uv_buf_init(c->in + c->got, (unsigned)cap);
}

static void on_close(uv_handle_t *h) { (void)h; live--; }

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  conn *c = s->data;
  if (n == 0) return;
  if (n < 0) { fprintf(stderr, "read: %s\n", uv_strerror((int)n)); uv_close((uv_handle_t *)s, on_close); return; }
  c->got += (size_t)n;
  if (!c->open) {
    c->in[c->got] = 0;
    char *end = strstr(c->in, "\r\n\r\n");
    if (!end) { if (c->got >= IN_CAP - 2) fail("handshake response too long"); return; }
    if (strncmp(c->in, "HTTP/1.1 101", 12) != 0) { fprintf(stderr, "handshake refused:\n%s\n", c->in); exit(2); }
    if (end + 4 != c->in + c->got) fail("data after the 101 before any message was sent");
    c->open = 1;
    c->got = 0;
    send_frame(c);
    return;
  }
  if (c->got < expect_len) return;
  if (c->got > expect_len || memcmp(c->in, expect, expect_len) != 0) fail("the echo is not the message's frame");
  uint64_t now = uv_hrtime();
  count++;
  if (lat_len == lat_cap) { lat_cap = lat_cap ? lat_cap * 2 : 1 << 16; lat_us = realloc(lat_us, lat_cap * sizeof *lat_us); }
  lat_us[lat_len++] = (float)((now - c->sent_at) / 1e3);
  if (now >= deadline) { uv_close((uv_handle_t *)s, on_close); return; }
  send_frame(c);
}

static void on_write(uv_write_t *w, int st) {
  if (st < 0) {
    fprintf(stderr, "write: %s\n", uv_strerror(st));
    if (!uv_is_closing((uv_handle_t *)w->handle)) uv_close((uv_handle_t *)w->handle, on_close);
    return;
  }
  conn *c = w->handle->data;
  if (w != &c->req) return;
  c->writing = 0;
  if (c->deferred) { c->deferred = 0; send_frame(c); }
}

/* the frame out: written at once when the socket takes it all (no request:
** the echo can come back within the same read loop, before libuv would
** call a write request's callback); else the rest through c->req */
static void send_frame(conn *c) {
  c->got = 0;
  c->sent_at = uv_hrtime();
  if (c->writing) { c->deferred = 1; return; }
  uv_buf_t b = uv_buf_init(c->frame, (unsigned)c->frame_len);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (n == (int)c->frame_len) return;
  if (n < 0 && n != UV_EAGAIN) { fprintf(stderr, "write: %s\n", uv_strerror(n)); exit(2); }
  if (n > 0) b = uv_buf_init(c->frame + n, (unsigned)(c->frame_len - (size_t)n));
  c->writing = 1;
  uv_write(&c->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
}

/* a frame header for `len` bytes: FIN + opcode, then the length (7, 16 or 64 bits) */
static size_t frame_head(unsigned char *h, size_t len, int masked) {
  size_t n = 0;
  h[n++] = 0x81;                                     /* FIN, text */
  if (len < 126) h[n++] = (unsigned char)((masked ? 0x80 : 0) | len);
  else if (len < 65536) { h[n++] = (masked ? 0x80 : 0) | 126; h[n++] = (unsigned char)(len >> 8); h[n++] = (unsigned char)len; }
  else { h[n++] = (masked ? 0x80 : 0) | 127; for (int i = 7; i >= 0; i--) h[n++] = (unsigned char)((uint64_t)len >> (8 * i)); }
  return n;
}

static void on_connect(uv_connect_t *r, int st) {
  conn *c = r->data;
  free(r);
  if (st < 0) { fprintf(stderr, "connect: %s\n", uv_strerror(st)); exit(2); }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  static char req[512];
  /* the RFC's sample key: the server's answer is not what is measured */
  int len = snprintf(req, sizeof req,
    "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", port);
  uv_buf_t b = uv_buf_init(req, (unsigned)len);
  uv_write(&c->hs_req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
}

static int cmp(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: client PORT [CONNS] [SECS] [SIZE]\n"); return 2; }
  port = atoi(argv[1]);
  int conns = argc > 2 ? atoi(argv[2]) : 50;
  double secs = argc > 3 ? atof(argv[3]) : 10;
  size = argc > 4 ? (size_t)atoi(argv[4]) : 1024;
  msg = malloc(size);
  for (size_t i = 0; i < size; i++) msg[i] = (char)('a' + i % 26);   /* text: ASCII */
  expect = malloc(size + 14);
  expect_len = frame_head((unsigned char *)expect, size, 0);
  memcpy(expect + expect_len, msg, size);
  expect_len += size;
  uv_loop_t *loop = uv_default_loop();
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", port, &addr);
  conn *cs = calloc((size_t)conns, sizeof *cs);
  srand((unsigned)uv_hrtime());
  for (int i = 0; i < conns; i++) {
    conn *c = &cs[i];
    unsigned char key[4];
    for (int k = 0; k < 4; k++) key[k] = (unsigned char)(1 + rand() % 255);   /* never 0: the server unmasks for real */
    c->frame = malloc(size + 14);
    size_t h = frame_head((unsigned char *)c->frame, size, 1);
    memcpy(c->frame + h, key, 4);
    h += 4;
    for (size_t j = 0; j < size; j++) c->frame[h + j] = (char)(msg[j] ^ key[j % 4]);
    c->frame_len = h + size;
    c->in = malloc((IN_CAP > expect_len ? IN_CAP : expect_len) + 2);
  }
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
