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
#include "../lib/loadgen.h"

typedef struct {
  lg_conn base;                 /* base.out: the masked frame this connection sends */
  uv_write_t hs_req;            /* the handshake's write */
  int open;                     /* handshake done */
  char *in;                     /* what came back: handshake, then one frame */
  size_t got;
} conn;

static char *msg, *expect;      /* the message; the frame the server must echo */
static size_t expect_len;

#define IN_CAP 4096

static void lg_alloc(lg_conn *lc, uv_buf_t *b) {
  conn *c = (conn *)lc;
  size_t cap = (c->open ? expect_len : IN_CAP - 1) - c->got;
  if (cap == 0) cap = 1;       /* one byte too many is caught in lg_on_data */
  *b = uv_buf_init(c->in + c->got, (unsigned)cap);
}

static void send_frame(conn *c) {
  c->got = 0;
  lg_send(&c->base);
}

static void on_handshake_written(uv_write_t *w, int st) {
  if (st < 0) { fprintf(stderr, "write: %s\n", uv_strerror(st)); lg_close((lg_conn *)w->handle); }
}

static void lg_on_open(lg_conn *lc) {
  conn *c = (conn *)lc;
  static char req[512];
  /* the RFC's sample key: the server's answer is not what is measured */
  int len = snprintf(req, sizeof req,
    "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", lg.port);
  uv_buf_t b = uv_buf_init(req, (unsigned)len);
  uv_write(&c->hs_req, (uv_stream_t *)&lc->tcp, &b, 1, on_handshake_written);
}

static void lg_on_data(lg_conn *lc, size_t n) {
  conn *c = (conn *)lc;
  c->got += n;
  if (!c->open) {
    c->in[c->got] = 0;
    char *end = strstr(c->in, "\r\n\r\n");
    if (!end) { if (c->got >= IN_CAP - 2) lg_fail("handshake response too long", 0); return; }
    if (strncmp(c->in, "HTTP/1.1 101", 12) != 0) { fprintf(stderr, "handshake refused:\n%s\n", c->in); exit(2); }
    if (end + 4 != c->in + c->got) lg_fail("data after the 101 before any message was sent", 0);
    c->open = 1;
    send_frame(c);
    return;
  }
  if (c->got < expect_len) return;
  if (c->got > expect_len || memcmp(c->in, expect, expect_len) != 0) lg_fail("the echo is not the message's frame", 0);
  if (lg_round_trip(lc)) send_frame(c);
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

/* c's masked frame of the message, with a mask key of its own */
static void build_frame(conn *c) {
  unsigned char key[4];
  for (int k = 0; k < 4; k++) key[k] = (unsigned char)(1 + rand() % 255);   /* never 0: the server unmasks for real */
  char *frame = malloc(lg.size + 14);
  size_t h = frame_head((unsigned char *)frame, lg.size, 1);
  memcpy(frame + h, key, 4);
  h += 4;
  for (size_t j = 0; j < lg.size; j++) frame[h + j] = (char)(msg[j] ^ key[j % 4]);
  c->base.out = frame;
  c->base.out_len = h + lg.size;
  c->in = malloc((IN_CAP > expect_len ? IN_CAP : expect_len) + 2);
}

int main(int argc, char **argv) {
  lg_args(argc, argv);
  msg = malloc(lg.size);
  for (size_t i = 0; i < lg.size; i++) msg[i] = (char)('a' + i % 26);   /* text: ASCII */
  expect = malloc(lg.size + 14);
  expect_len = frame_head((unsigned char *)expect, lg.size, 0);
  memcpy(expect + expect_len, msg, lg.size);
  expect_len += lg.size;
  conn *cs = calloc((size_t)lg.conns, sizeof *cs);
  srand((unsigned)uv_hrtime());
  for (int i = 0; i < lg.conns; i++) build_frame(&cs[i]);
  lg_run(cs, sizeof *cs);
  return lg_report();
}
