/* stream_int.h — the stream struct and what its files share: stream.c
** (lifetime, writes, close), stream_read.c (reads), stream_linger.c (the lingering close),
** stream_tls.c (TLS), listener.c (listen, accept) and connect.c. Not for
** other subsystems: they use stream.h. */
#ifndef LUAIO_STREAM_INT_H
#define LUAIO_STREAM_INT_H

#include <sys/socket.h>
#include "stream.h"
#include "readbuf.h"
#include "tls.h"
#include "host.h"

#define STREAM_MT "luaio.Stream"
#define SCRATCH_SIZE 65536   /* one socket read of ciphertext, or one chunk of it to send */

enum { OP_READ, OP_EXACT, OP_LINE, OP_UNTIL, OP_ALL, OP_HANDSHAKE, OP_HEAD };
enum { WAIT_HWM, WAIT_DRAIN, WAIT_SHUTDOWN };

typedef struct stream stream;
typedef struct { stream *s; } stream_box;

struct stream {
  union { uv_handle_t handle; uv_stream_t s; uv_tcp_t tcp; uv_pipe_t pipe; } u;
  luaio_host *h;
  stream_box *box;              /* the userdata, while it lives */
  luaio_readbuf rb;             /* what was read and not taken yet */
  size_t hwm, queued;           /* write high-water mark, bytes not yet written */
  luaio_task *reader, *writer;
  int write_wait;               /* what the writer waits for */
  luaio_timer rtimer, wtimer;   /* per-operation deadlines */
  double timeout;               /* per-operation deadline; < 0: none, 0: at once */
  double read_wait;             /* what the armed read timer was armed for, seconds */
  uint64_t read_later;          /* ms the read's deadline lies past rtimer's due (lazy) */
  int write_err;
  struct sockaddr_storage peer; /* remembered when connected: valid after the peer left */
  unsigned has_peer : 1;
  unsigned reading : 1, closing : 1, shut : 1, is_pipe : 1, counted : 1;
  unsigned handshaking : 1, tls_failed : 1;
  unsigned lazy_rtimer : 1;     /* rtimer stays armed past its read (stream_read.c) */
  luaio_tls *tls;               /* NULL for a plain stream */
  /* closing gracefully (see stream_linger.c) */
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

static inline void stream_stop_reading(stream *s) {
  if (s->reading) { uv_read_stop(&s->u.s); s->reading = 0; }
}

/* stream.c */
stream *stream_alloc(luaio_host *h);
void stream_push(lua_State *L, stream *s);            /* its userdata, for an initialised handle */
void stream_free(stream *s);
void stream_on_closed(uv_handle_t *handle);
void stream_close(stream *s);
int stream_closed_error(lua_State *L);

/* the open stream at idx (every method's first step: inline) */
static inline stream *stream_check(lua_State *L, int idx) {
  stream_box *box = luaio_checkudata(L, idx, STREAM_MT);
  if (!box->s) stream_closed_error(L);
  return box->s;
}
/* the same for the hot methods (reads, write, the HTTP server's head read
** and answer), whose upvalue 1 is the stream metatable: compared at once,
** no lookup of the registry by name (from a function without that upvalue
** the comparison fails and stream_check decides: slower, still right) */
static inline stream *stream_check_hot(lua_State *L, int idx) {
  stream_box *box = lua_touserdata(L, idx);
  int same = box != NULL && lua_getmetatable(L, idx);
  if (same) {
    same = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
  }
  if (!same) return stream_check(L, idx);   /* (not a stream: its usual error) */
  if (!box->s) stream_closed_error(L);
  return box->s;
}
void stream_remember_peer(stream *s);
/* debug mode (track.c): the stream at -1 of L was just made; how ("connected", ...) */
void stream_track(lua_State *L, stream *s, const char *how);
void stream_push_named(lua_State *L, stream *s, const char *what);   /* "what 127.0.0.1:80" */
void stream_read_kinds(luaio_host *h);                  /* stream_read.c: its waits, named */
int stream_listen_daemon(lua_State *L, luaio_host *h, int fd);   /* listener.c, for monitor.c */
int stream_send(stream *s, const uv_buf_t *bufs, unsigned n, size_t total);
/* write's work once its pieces are known: queue (TLS: encrypt) them, then
** wait while the unsent data is above the high-water mark; the values
** l_write returns (0), or raises */
int stream_write_bufs(lua_State *L, stream *s, const uv_buf_t *bufs, int n, size_t total);
int stream_raise_uv(lua_State *L, int err, const char *what);
void stream_wake_error(luaio_task *t, const char *name, int err, const char *what);
void stream_wake_timeout(stream *s, luaio_task **slot, const char *what, double seconds);

/* stream_read.c */
extern const luaL_Reg stream_read_methods[];
char *stream_scratch(luaio_host *h);                  /* SCRATCH_SIZE bytes, or NULL */
int stream_do_read(lua_State *L, int op);            /* the reads' common wait */

/* stream_linger.c */
int stream_linger_start(stream *s);                   /* 0: close the handle at once */
void stream_linger_progress(stream *s);               /* a queued write finished */
void stream_linger_shut_done(stream *s, int status);
void stream_open_linger(lua_State *L);

/* stream_tls.c */
void stream_tls_input(stream *s, const char *p, size_t n);
void stream_tls_flush(stream *s);
int stream_tls_write(lua_State *L, stream *s, const uv_buf_t *bufs, int n, size_t total);
int stream_handshake_state(lua_State *L, stream *s);  /* as a readbuf read */
int stream_raise_read_error(lua_State *L, stream *s);
int stream_l_start_tls(lua_State *L);
int stream_l_start_tls_blocker(lua_State *L);
int stream_l_tls_info(lua_State *L);

/* the hot methods, registered with the metatable as their upvalue:
** stream:_read_head (stream_read.c), stream:_http_response (http_respond.c) */
int stream_l_read_head(lua_State *L);
int stream_l_http_response(lua_State *L);

/* connect.c, listener.c: their functions into the core table */
void stream_open_connect(lua_State *L, luaio_host *h);
void stream_open_listener(lua_State *L, luaio_host *h);

#endif
