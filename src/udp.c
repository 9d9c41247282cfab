/* udp.c — UDP sockets: sendto, recvfrom (received datagrams queue natively). */
#include <stdlib.h>
#include <string.h>
#include "netaddr.h"
#include "host.h"

#define UDP_MT "luaio.UDP"

typedef struct datagram {
  struct datagram *next;
  struct sockaddr_storage from;
  size_t len;
  char data[];
} datagram;

typedef struct {
  uv_udp_t handle;
  luaio_host *h;
  luaio_task *receiver;
  datagram *head, *tail;
  int queued, err, receiving;
  char scratch[65536];
} udp_sock;

typedef struct { udp_sock *u; } udp_box;

typedef struct {
  uv_udp_send_t req;
  char data[];
} send_req;

static void on_udp_closed(uv_handle_t *handle) {
  udp_sock *u = handle->data;
  while (u->head) { datagram *d = u->head; u->head = d->next; free(d); }
  free(u);
}

static udp_sock *check_udp(lua_State *L) {
  udp_box *box = luaio_checkudata(L, 1, UDP_MT);
  if (!box->u) luaio_error(L, "OSError", "EBADF", "the socket is closed");
  return box->u;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  udp_sock *u = handle->data;
  buf->base = u->scratch;
  buf->len = sizeof u->scratch;
}

static void on_recv(uv_udp_t *handle, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr, unsigned flags) {
  (void)flags;
  udp_sock *u = handle->data;
  if (nread < 0) u->err = (int)nread;
  else if (addr) {
    datagram *d = malloc(sizeof *d + (size_t)nread);
    if (!d) return;
    d->next = NULL;
    d->len = (size_t)nread;
    memcpy(d->data, buf->base, (size_t)nread);
    memcpy(&d->from, addr, addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    if (u->tail) u->tail->next = d; else u->head = d;
    u->tail = d;
    u->queued++;
  } else return;
  if (u->queued > 1024) { uv_udp_recv_stop(&u->handle); u->receiving = 0; }   /* nobody reads: stop */
  luaio_task *t = u->receiver;
  if (t) { u->receiver = NULL; luaio_wake(t, 0); }
}

static void recv_cancel(void *data) { ((udp_sock *)data)->receiver = NULL; }

static int l_recvfrom(lua_State *L);
static int recv_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return l_recvfrom(L);
}

/* sock:recvfrom() ⏸ -> data, host, port */
static int l_recvfrom(lua_State *L) {
  udp_sock *u = check_udp(L);
  luaio_task *t = luaio_need_task(L, "socket:recvfrom");   /* a waiting function, even with a datagram queued */
  lua_settop(L, 1);
  if (u->head) {
    datagram *d = u->head;
    u->head = d->next;
    if (!u->head) u->tail = NULL;
    u->queued--;
    lua_pushlstring(L, d->data, d->len);
    luaio_addr_push(L, &d->from);
    free(d);
    if (!u->receiving && uv_udp_recv_start(&u->handle, on_alloc, on_recv) == 0) u->receiving = 1;
    return 3;
  }
  if (u->err) { int e = u->err; u->err = 0; return luaio_uverror(L, "OSError", e, "recvfrom"); }
  if (u->receiver) return luaL_error(L, "another task is already receiving on this socket");
  if (!u->receiving) {
    int r = uv_udp_recv_start(&u->handle, on_alloc, on_recv);
    if (r < 0) return luaio_uverror(L, "OSError", r, "recvfrom");
    u->receiving = 1;
  }
  u->receiver = t;
  return luaio_await(L, recv_cancel, u, 0, recv_k);
}

static void on_sent(uv_udp_send_t *req, int status) {
  (void)status;
  free(req);
}

static int parse_addr(lua_State *L, const char *ip, int port, struct sockaddr_storage *ss) {
  if (luaio_addr_parse(ip, port, ss)) return 0;
  return luaio_error(L, "OSError", "EINVAL", "not a numeric address: %s", ip);
}

static int sendto_k(lua_State *L, int status, lua_KContext ctx);

/* sock:sendto(data, host, port) ⏸ — returns once the datagram is handed over
** (sent, or queued by libuv). A host name is resolved first, as Python's
** sendto does: the Lua half's resolve_udp hook (a waiting getaddrinfo)
** picks an address of the socket's own family. */
static int l_sendto(lua_State *L) {
  udp_sock *u = check_udp(L);
  luaio_need_task(L, "socket:sendto");
  size_t len;
  const char *data = luaio_checklstring(L, 2, &len);
  const char *ip = luaio_checkcstring(L, 3);
  lua_Integer port = luaio_checkinteger(L, 4);
  if (port < 1 || port > 65535) return luaio_argerror(L, 4, "port must be within 1..65535");
  struct sockaddr_storage ss;
  if (!luaio_addr_parse(ip, (int)port, &ss)) {
    struct sockaddr_storage own;
    int namelen = sizeof own;
    int inet6 = uv_udp_getsockname(&u->handle, (struct sockaddr *)&own, &namelen) == 0 && own.ss_family == AF_INET6;
    lua_settop(L, 4);
    lua_rawgeti(L, LUA_REGISTRYINDEX, u->h->hooks_ref);
    lua_getfield(L, -1, "resolve_udp");
    lua_remove(L, -2);
    lua_pushvalue(L, 3);
    lua_pushstring(L, inet6 ? "inet6" : "inet");
    lua_callk(L, 2, 1, 0, sendto_k);
    return sendto_k(L, LUA_OK, 0);
  }
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int r = uv_udp_try_send(&u->handle, &b, 1, (struct sockaddr *)&ss);
  if (r == (int)len) return 0;
  if (r != UV_EAGAIN && r < 0) return luaio_uverror(L, "OSError", r, "sendto");
  send_req *req = malloc(sizeof *req + len);
  if (!req) return luaL_error(L, "out of memory");
  memcpy(req->data, data, len);
  b = uv_buf_init(req->data, (unsigned)len);
  r = uv_udp_send(&req->req, &u->handle, &b, 1, (struct sockaddr *)&ss, on_sent);
  if (r < 0) { free(req); return luaio_uverror(L, "OSError", r, "sendto"); }
  return 0;
}

/* the host name resolved: send again with the numeric address (the hook
** returns one or raises, so this does not come back here) */
static int sendto_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  struct sockaddr_storage ss;
  const char *ip = lua_tostring(L, -1);
  if (!ip || !luaio_addr_parse(ip, 1, &ss))
    return luaL_error(L, "sendto: the host name did not resolve to an address");
  lua_replace(L, 3);
  return l_sendto(L);
}

static int l_udp_close(lua_State *L) {
  udp_box *box = luaio_checkudata(L, 1, UDP_MT);
  udp_sock *u = box->u;
  if (!u) return 0;
  luaio_untrack(u->h, box);
  box->u = NULL;
  u->h->handles--;
  if (u->receiver) {
    luaio_task *t = u->receiver;
    u->receiver = NULL;
    luaio_push_uverror(luaio_task_stack(t), "OSError", UV_ECANCELED, "the socket was closed");
    luaio_wake_error(t);
  }
  uv_close((uv_handle_t *)&u->handle, on_udp_closed);
  return 0;
}

static int l_udp_gc(lua_State *L) {
  udp_box *box = luaL_testudata(L, 1, UDP_MT);
  udp_sock *u = box ? box->u : NULL;
  if (!u) return 0;
  if (!u->h->closing) return l_udp_close(L);
  box->u = NULL;
  if (luaio_close_orphan((uv_handle_t *)&u->handle, on_udp_closed)) on_udp_closed((uv_handle_t *)&u->handle);
  return 0;
}

static int l_udp_sockname(lua_State *L) {
  udp_sock *u = check_udp(L);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int r = uv_udp_getsockname(&u->handle, (struct sockaddr *)&ss, &len);
  if (r < 0) return luaio_uverror(L, "OSError", r, "getsockname");
  return luaio_addr_push(L, &ss);
}

static int l_udp_tostring(lua_State *L) {
  udp_box *box = luaio_checkudata(L, 1, UDP_MT);
  lua_pushfstring(L, "UDP<%s>", box->u ? "open" : "closed");
  return 1;
}

/* udp_bind(ip, port) -> socket */
static int l_udp_bind(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  const char *ip = luaio_checkcstring(L, 1);
  lua_Integer port = luaio_optinteger(L, 2, 0);
  if (port < 0 || port > 65535) return luaio_argerror(L, 2, "port must be within 0..65535");
  struct sockaddr_storage ss;
  parse_addr(L, ip, (int)port, &ss);
  udp_sock *u = calloc(1, sizeof *u);
  if (!u) return luaL_error(L, "out of memory");
  u->h = h;
  uv_udp_init(h->loop, &u->handle);
  u->handle.data = u;
  udp_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->u = u;
  luaL_setmetatable(L, UDP_MT);
  h->handles++;
  int r = uv_udp_bind(&u->handle, (struct sockaddr *)&ss, 0);
  if (r < 0) {
    lua_insert(L, 1);
    l_udp_close(L);
    return luaio_uverror(L, "OSError", r, "bind");
  }
  luaio_track(L, h, -1, strchr(ip, ':') ? "UDP socket [%s]:%d" : "UDP socket %s:%d", ip, (int)port);
  return 1;
}

static void describe_recv(lua_State *L, void *data) {
  struct sockaddr_storage ss;
  int len = sizeof ss, port = 0;
  char ip[64] = "?";
  if (uv_udp_getsockname(&((udp_sock *)data)->handle, (struct sockaddr *)&ss, &len) == 0)
    luaio_addr_name((struct sockaddr *)&ss, ip, sizeof ip, &port);
  lua_pushfstring(L, "UDP receive on %s:%d", ip, port);
}

void luaio_open_udp(lua_State *L, luaio_host *h) {
  luaio_wait_kind(h, LUAIO_WAIT_KEY(recv_cancel), describe_recv);
  static const luaL_Reg methods[] = {
    {"sendto", l_sendto}, {"recvfrom", l_recvfrom}, {"close", l_udp_close},
    {"sockname", l_udp_sockname}, {NULL, NULL}};
  luaL_newmetatable(L, UDP_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_udp_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, l_udp_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_udp_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  lua_pushlightuserdata(L, h);
  lua_pushcclosure(L, l_udp_bind, 1);
  lua_setfield(L, -2, "udp_bind");
}
