/* echo load generator: `conns` connections each send a message of `size`
** bytes, wait for all of it to come back, and send again, for `secs`
** seconds. Prints messages/s and the p99 round-trip latency.
**
**   client PORT [CONNS=50] [SECS=10] [SIZE=1024]
*/
#include "../lib/loadgen.h"

typedef struct { lg_conn base; size_t got; } conn;

static char *msg, *rbuf;

static void lg_alloc(lg_conn *c, uv_buf_t *b) {
  (void)c;
  *b = uv_buf_init(rbuf, 65536);   /* contents are not checked: one buffer serves all */
}

static void send_message(conn *c) {
  c->got = 0;
  lg_send(&c->base);
}

static void lg_on_open(lg_conn *c) {
  c->out = msg;
  c->out_len = lg.size;
  send_message((conn *)c);
}

static void lg_on_data(lg_conn *lc, size_t n) {
  conn *c = (conn *)lc;
  c->got += n;
  if (c->got < lg.size) return;
  if (c->got > lg.size) lg_fail("echo returned more than sent", 0);
  if (lg_round_trip(lc)) send_message(c);
}

int main(int argc, char **argv) {
  lg_args(argc, argv);
  msg = malloc(lg.size);
  memset(msg, 'x', lg.size);
  rbuf = malloc(65536);
  conn *cs = calloc((size_t)lg.conns, sizeof *cs);
  lg_run(cs, sizeof *cs);
  return lg_report();
}
