/*
** stream_read.c — a stream's reader: read-ahead from the socket into the
** read buffer (readbuf.h) up to its limit, the reads of Stream (read,
** read_exactly, readline, read_until, read_all, _read_head, _read_ws_frame)
** and the wait of the one task that reads. A waiting reader is woken with no
** values and takes its data from the buffer when it runs, so a cancelled
** reader loses nothing.
*/
#include <stdlib.h>
#include <string.h>
#include "stream_int.h"
#include "http_head.h"
#include "ws_frame.h"
#include "resp.h"
#include "pg_wire.h"

enum { OP_WS_FRAME = OP_HEAD + 1, OP_RESP, OP_PG };

/* The host's scratch buffer: libuv calls alloc and read back to back, and
** the bytes are consumed before anything else runs, so one per host will do. */
char *stream_scratch(luaio_host *h) {
  if (!h->scratch) h->scratch = malloc(SCRATCH_SIZE);
  return h->scratch;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *out) {
  (void)suggested;
  stream *s = handle->data;
  if (s->tls) {
    out->base = stream_scratch(s->h);
    out->len = out->base ? SCRATCH_SIZE : 0;
    return;
  }
  size_t room;
  out->base = luaio_rb_space(&s->rb, &room);
  out->len = room;
}

static void wake_reader(stream *s) {
  luaio_task *t = s->reader;
  if (!t) return;
  s->reader = NULL;
  if (!s->lazy_rtimer) luaio_timer_disarm(s->h, &s->rtimer);
  luaio_wake(t, 0);
}

static void on_read(uv_stream_t *handle, ssize_t nread, const uv_buf_t *b) {
  stream *s = handle->data;
  if (nread > 0 && s->tls) stream_tls_input(s, b->base, (size_t)nread);
  else if (nread > 0) s->rb.len += (size_t)nread;
  else if (nread == UV_EOF) { s->rb.eof = 1; stream_stop_reading(s); }
  else if (nread < 0) { s->rb.err = (int)nread; stream_stop_reading(s); }
  if (!s->reader && s->rb.len >= s->rb.limit) stream_stop_reading(s);   /* read-ahead full */
  if (nread != 0) wake_reader(s);
}

static void start_reading(stream *s) {
  if (s->reading || s->rb.eof || s->rb.err || s->closing) return;
  int r = uv_read_start(&s->u.s, on_alloc, on_read);
  if (r == 0) s->reading = 1;
  else s->rb.err = r;
}

/* ---- a WebSocket frame larger than the limit ----------------------------
** Read-ahead stops at the limit whenever no reader waits, and a waiting
** reader is woken at each batch of bytes: until its task runs, the socket
** is stopped again. A frame larger than the limit would come in a batch per
** pass of the loop, the socket stopped and restarted in between. So while
** a reader waits for such a frame, the limit is the frame's size (at most
** max_payload + 14: larger frames are refused from their header) and the
** socket reads on. The try notes the size it wants, the wait raises the
** limit (so a read that raises instead of waiting changes nothing), and
** the limit from before comes back when the wait ends: at the next try
** (whatever it returns), at cancellation, at the timeout. The note lives in
** a small userdata in the read's own stack slot 5, which is also the
** cancel data. A limit that set_limits changed meanwhile stays as set. */
typedef struct { stream *s; size_t want, base, raised; } ws_raise;

static void ws_lower(ws_raise *r) {
  if (r->raised && r->s->rb.limit == r->raised) r->s->rb.limit = r->base;
  r->raised = 0;
}

/* a try that waits for `need` bytes, more than the limit: note it in slot 5
** (the same for a PostgreSQL message larger than the limit) */
static int note_need(lua_State *L, stream *s, int n, size_t need) {
  ws_raise *r = lua_touserdata(L, 5);
  if (n == RB_WAIT && need > s->rb.limit) {
    if (!r) {
      r = lua_newuserdatauv(L, sizeof *r, 0);
      lua_replace(L, 5);
      r->s = s;
      r->raised = 0;
    }
    r->want = need;
  }
  return n;
}

static void clear_note(lua_State *L) {
  ws_raise *r = lua_touserdata(L, 5);
  if (r) { ws_lower(r); r->want = 0; }
}

/* _read_ws_frame's try: (self, expect_masked, max_payload, allow_rsv1, note) */
static int try_ws_frame(lua_State *L, stream *s) {
  clear_note(L);
  luaio_ws_limits lim = {lua_toboolean(L, 2), lua_toboolean(L, 4), (uint64_t)lua_tointeger(L, 3)};
  size_t need;
  int n = luaio_ws_read_frame(L, &s->rb, &lim, &need);
  return note_need(L, s, n, need);
}

/* _read_pg's try: (self, rows, names, kinds, note) */
static int try_pg(lua_State *L, stream *s) {
  clear_note(L);
  size_t need;
  int n = luaio_pg_read(L, &s->rb, 2, &need);
  return note_need(L, s, n, need);
}

/* _read_resp's try: (self, max_bulk, note). A reply that is not whole
** keeps its scan in the note (made on the first wait only: most replies
** are whole at once), and while it waits the limit grows to the size the
** reply is known to need, or past what is buffered (an array of unknown
** size), so the socket reads on. */
typedef struct { ws_raise r; luaio_resp_state scan; } resp_note;

static int try_resp(lua_State *L, stream *s) {
  resp_note *note = lua_touserdata(L, 3);
  luaio_resp_state local, *st = &local;
  if (note) { ws_lower(&note->r); note->r.want = 0; st = &note->scan; }
  else luaio_resp_scan_init(st);
  size_t need;
  int n = luaio_resp_read(L, &s->rb, st, (uint64_t)lua_tointeger(L, 2), &need);
  if (n != RB_WAIT) return n;
  if (!note) {
    note = lua_newuserdatauv(L, sizeof *note, 0);
    lua_replace(L, 3);
    note->r.s = s;
    note->r.raised = 0;
    note->scan = local;
  }
  size_t base = note->r.raised ? note->r.base : s->rb.limit;
  size_t grow = s->rb.len + (s->rb.len > base ? s->rb.len : base);   /* doubling: few pauses */
  note->r.want = need > grow ? need : grow;
  return n;
}

/* _read_head's kind, checked by stream_l_read_head */
static int head_kind(const char *kind) {
  return kind[0] == 's' ? HTTP_SERVER_REQUEST : kind[2] == 'q' ? HTTP_REQUEST : HTTP_RESPONSE;
}

/* Try to complete a read from the buffer: push its result and return the
** number of values, or return RB_WAIT when it has to wait for more data. */
static int try_read(lua_State *L, stream *s, int op) {
  luaio_readbuf *b = &s->rb;
  size_t len;
  const char *sep;
  int n;
  switch (op) {
    case OP_READ: n = luaio_rb_read(L, b, (size_t)luaio_optinteger(L, 2, 65536)); break;
    case OP_EXACT: n = luaio_rb_read_exactly(L, b, (size_t)lua_tointeger(L, 2)); break;
    case OP_LINE: n = luaio_rb_read_until(L, b, "\n", 1, 1); break;
    case OP_UNTIL:
      sep = lua_tolstring(L, 2, &len);
      n = luaio_rb_read_until(L, b, sep, len, 0);
      break;
    case OP_ALL: n = luaio_rb_read_all(L, b); break;
    case OP_HEAD: n = luaio_http_read_head(L, b, head_kind(lua_tostring(L, 2))); break;
    case OP_WS_FRAME: n = try_ws_frame(L, s); break;
    case OP_RESP: n = try_resp(L, s); break;
    case OP_PG: n = try_pg(L, s); break;
    default: n = stream_handshake_state(L, s); break;
  }
  return n == RB_FAIL ? stream_raise_read_error(L, s) : n;
}

static void reader_cancel(void *data) {
  stream *s = data;
  s->reader = NULL;
  luaio_timer_disarm(s->h, &s->rtimer);
  if (s->rb.len >= s->rb.limit) stream_stop_reading(s);
}

static void ws_reader_cancel(void *data) {
  ws_raise *r = data;
  ws_lower(r);
  reader_cancel(r->s);
}

static void describe_read(lua_State *L, void *data) { stream_push_named(L, data, "stream read from"); }
static void describe_ws_read(lua_State *L, void *data) {
  stream_push_named(L, ((ws_raise *)data)->s, "WebSocket read from");
}

void stream_read_kinds(luaio_host *h) {
  luaio_wait_kind(h, LUAIO_WAIT_KEY(reader_cancel), describe_read);
  luaio_wait_kind(h, LUAIO_WAIT_KEY(ws_reader_cancel), describe_ws_read);
}

static void on_read_timeout(luaio_timer *tm) {
  stream *s = luaio_container_of(tm, stream, rtimer);
  luaio_task *t = s->reader;
  if (!t) return;                 /* a lazy timer that outlived its read */
  if (s->read_later) {            /* a later read moved the deadline on: the rest */
    uint64_t due = tm->due + s->read_later;
    s->read_later = 0;
    luaio_timer_arm_due(s->h, tm, due);
    return;
  }
  if (t && t->on_cancel == ws_reader_cancel) ws_lower(t->cancel_data);   /* the wait's own data */
  stream_wake_timeout(s, &s->reader, "read", s->read_wait);
}

static int read_from(lua_State *L, stream *s, int op);

/* The read's deadline, wait seconds from now. The server's head reads
** (one per request on a keep-alive connection) are lazy: their timer stays
** armed when the read completes, and the next one only notes how much later
** its deadline is (read_later) when it is not sooner: the timer, when it
** fires, waits for the rest (on_read_timeout). No heap or uv timer work
** per request. Not under the virtual clock, which would jump to a deadline
** no read waits for. */
static void arm_read_timer(stream *s, double wait, int lazy) {
  s->read_wait = wait;
  s->rtimer.fire = on_read_timeout;
  s->lazy_rtimer = lazy && !s->h->vclock.on;
  s->read_later = 0;
  if (!s->lazy_rtimer) {
    luaio_timer_arm(s->h, &s->rtimer, wait);
    return;
  }
  uint64_t due = luaio_timer_due_in(s->h, wait);
  if (s->rtimer.slot && s->rtimer.due <= due) s->read_later = due - s->rtimer.due;
  else luaio_timer_arm_due(s->h, &s->rtimer, due);
}

/* the read again once woken: self was checked when it began (its stack
** slot is the same), but the stream may have closed meanwhile */
static int read_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  stream_box *box = lua_touserdata(L, 1);
  if (!box->s) return stream_closed_error(L);
  return read_from(L, box->s, (int)ctx);
}

static const char *const read_names[] = {
  "stream:read", "stream:read_exactly", "stream:readline", "stream:read_until",
  "stream:read_all", "stream:start_tls", "stream:_read_head", "stream:_read_ws_frame",
  "stream:_read_resp", "stream:_read_pg"};

static int read_from(lua_State *L, stream *s, int op) {
  /* a waiting function, even when the data is there already */
  luaio_task *t = luaio_need_task(L, read_names[op]);
  lua_settop(L, op == OP_WS_FRAME || op == OP_PG ? 5 : op == OP_HEAD ? 4 : 3);
  int n = try_read(L, s, op);
  if (n >= 0) {
    if (!s->reading && s->rb.len < s->rb.limit) start_reading(s);   /* keep reading ahead */
    return n;
  }
  if (s->reader) return luaL_error(L, "another task is already reading from this stream");
  start_reading(s);
  double wait = s->timeout;
  if (op == OP_HEAD && lua_type(L, 3) == LUA_TNUMBER) {   /* a deadline for the whole head */
    wait = lua_tonumber(L, 3) - luaio_now(s->h);
    if (wait < 0) wait = 0;
  }
  if (wait == 0)                  /* set_timeout(0), a deadline passed: time out at once */
    return luaio_error(L, "TimeoutError", NULL, "read timed out after 0 s");
  s->reader = t;
  if (wait > 0) arm_read_timer(s, wait, op == OP_HEAD && head_kind(lua_tostring(L, 2)) == HTTP_SERVER_REQUEST);
  else if (s->rtimer.slot) luaio_timer_disarm(s->h, &s->rtimer);   /* (a lazy one left armed) */
  ws_raise *r = op == OP_WS_FRAME || op == OP_PG ? lua_touserdata(L, 5)
              : op == OP_RESP ? lua_touserdata(L, 3) : NULL;
  if (r && r->want > s->rb.limit) {
    r->base = s->rb.limit;
    r->raised = s->rb.limit = r->want;
    return luaio_await(L, ws_reader_cancel, r, op, read_k);
  }
  return luaio_await(L, reader_cancel, s, op, read_k);
}

int stream_do_read(lua_State *L, int op) { return read_from(L, stream_check_hot(L, 1), op); }

static int l_read(lua_State *L) {
  if (!lua_isnoneornil(L, 2)) {
    lua_Integer n = luaio_checkinteger(L, 2);
    if (n == -1) {                    /* asyncio's read(-1): everything until EOF */
      lua_settop(L, 1);
      return stream_do_read(L, OP_ALL);
    }
    if (n <= 0) return luaio_argerror(L, 2, "byte count must be positive (or -1: until EOF)");
  }
  return stream_do_read(L, OP_READ);
}

static int l_read_exactly(lua_State *L) {
  lua_Integer n = luaio_checkinteger(L, 2);
  if (n < 0) return luaio_argerror(L, 2, "byte count must not be negative");
  return stream_do_read(L, OP_EXACT);
}

static int l_readline(lua_State *L) { return stream_do_read(L, OP_LINE); }

static int l_read_until(lua_State *L) {
  size_t len;
  luaio_checklstring(L, 2, &len);
  if (len == 0) return luaio_argerror(L, 2, "separator must not be empty");
  return stream_do_read(L, OP_UNTIL);
}

static int l_read_all(lua_State *L) { return stream_do_read(L, OP_ALL); }

/* _read_head("request" | "response" [, deadline]) ⏸ -> head | false | nil, status, reason;
** deadline: a time of core.now() when the whole head must be in (TimeoutError).
** _read_head("server", seconds, mt) ⏸ -> request, keep_alive, has_body | false |
** nil, status, reason: the server's lean request (luaio_http_push_request),
** whole within seconds from now */
int stream_l_read_head(lua_State *L) {
  stream *s = stream_check_hot(L, 1);
  const char *kind = luaio_checkstring(L, 2);
  /* (head_kind, later, looks at the first and third bytes of a valid kind) */
  if (strcmp(kind, "server") != 0 && strcmp(kind, "request") != 0 && strcmp(kind, "response") != 0)
    return luaio_argerror(L, 2, "'request', 'response' or 'server' expected");
  if (kind[0] == 's') {           /* seconds from now: the deadline the waits share */
    lua_Number seconds = luaio_checknumber(L, 3);
    lua_pushnumber(L, luaio_now(s->h) + seconds);
    lua_replace(L, 3);
  }
  return read_from(L, s, OP_HEAD);
}

/* _read_ws_frame(expect_masked, max_payload [, allow_rsv1]) ⏸ -> fin, opcode,
** payload, rsv1 | nil at a clean EOF; WebSocketError {code} (ws_frame.h) */
static int l_read_ws_frame(lua_State *L) {
  luaio_checktype(L, 2, LUA_TBOOLEAN);
  lua_Integer max = luaio_checkinteger(L, 3);
  if (max < 0) return luaio_argerror(L, 3, "payload limit must not be negative");
  if (!lua_isnoneornil(L, 4)) luaio_checktype(L, 4, LUA_TBOOLEAN);
  lua_settop(L, 4);               /* slot 5 is the read's own (try_ws_frame) */
  return stream_do_read(L, OP_WS_FRAME);
}

/* _read_pg([rows, names, kinds]) ⏸ -> type, body | nil at a clean EOF: one
** PostgreSQL message; with rows, the DataRows before it are decoded into
** rows first (pg_wire.h) */
static int l_read_pg(lua_State *L) {
  if (!lua_isnoneornil(L, 2)) {
    luaio_checktype(L, 2, LUA_TTABLE);
    luaio_checktype(L, 3, LUA_TTABLE);
    luaio_checktype(L, 4, LUA_TTABLE);
  }
  lua_settop(L, 4);
  return stream_do_read(L, OP_PG);
}

/* _read_resp([max_bulk]) ⏸ -> one whole Redis reply (resp.h): value [,
** "error" | "push"] | nil, "eof" at a clean EOF; ProtocolError on bad data */
static int l_read_resp(lua_State *L) {
  lua_Integer max = luaio_optinteger(L, 2, 512 * 1024 * 1024);
  if (max < 0) return luaio_argerror(L, 2, "bulk string limit must not be negative");
  if ((uint64_t)max > SIZE_MAX / 2) max = (lua_Integer)(SIZE_MAX / 2);
  lua_settop(L, 1);
  lua_pushinteger(L, max);
  lua_pushnil(L);                 /* slot 3 is the read's own (try_resp) */
  return stream_do_read(L, OP_RESP);
}

const luaL_Reg stream_read_methods[] = {
  {"read", l_read}, {"read_exactly", l_read_exactly}, {"readline", l_readline},
  {"read_until", l_read_until}, {"read_all", l_read_all}, 
  {"_read_ws_frame", l_read_ws_frame}, {"_read_resp", l_read_resp}, {"_read_pg", l_read_pg},
  {NULL, NULL}};
