/* dns.c — getaddrinfo through libuv's thread pool. */
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include "op.h"
#include "netaddr.h"
#include "host.h"

typedef struct {
  luaio_op op;
  uv_getaddrinfo_t req;
} dns_op;

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  dns_op *op = req->data;
  luaio_task *t = luaio_op_take(&op->op);
  free(op);
  if (!t) { if (res) uv_freeaddrinfo(res); return; }
  lua_State *co = luaio_task_stack(t);
  if (status < 0) {
    luaio_push_uverror(co, "OSError", status, "getaddrinfo");
    luaio_wake_error(t);
    return;
  }
  lua_newtable(co);
  int n = 0;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    char ip[64];
    int af = luaio_addr_name(ai->ai_addr, ip, sizeof ip, NULL);
    if (!af) continue;
    const char *family = af == AF_INET ? "inet" : "inet6";
    /* one entry per address (the resolver repeats them per socket type) */
    int dup = 0;
    for (int i = 1; i <= n && !dup; i++) {
      lua_rawgeti(co, -1, i);
      lua_getfield(co, -1, "addr");
      dup = strcmp(lua_tostring(co, -1), ip) == 0;
      lua_pop(co, 2);
    }
    if (dup) continue;
    lua_createtable(co, 0, 2);
    lua_pushstring(co, ip);
    lua_setfield(co, -2, "addr");
    lua_pushstring(co, family);
    lua_setfield(co, -2, "family");
    lua_rawseti(co, -2, ++n);
  }
  uv_freeaddrinfo(res);
  luaio_wake(t, 1);
}

/* if it already runs, on_resolved drops the result */
static void dns_abort(luaio_op *op) { uv_cancel((uv_req_t *)&luaio_container_of(op, dns_op, op)->req); }

/* getaddrinfo(host [, port]) ⏸ -> { {addr=, family=}, ... } */
static int l_getaddrinfo(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  const char *host = luaio_checkcstring(L, 1);
  const char *service = NULL;
  if (!lua_isnoneornil(L, 2)) service = luaio_checkcstring(L, 2);   /* a port number or a service name */
  luaio_task *t = luaio_need_task(L, "aio.getaddrinfo");
  dns_op *op = malloc(sizeof *op);
  if (!op) return luaL_error(L, "out of memory");
  op->op.task = t;
  op->req.data = op;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int r = uv_getaddrinfo(h->loop, &op->req, on_resolved, host, service, &hints);
  if (r < 0) {
    free(op);
    return luaio_uverror(L, "OSError", r, "getaddrinfo");
  }
  lua_settop(L, 0);
  return luaio_op_await(L, &op->op, t, dns_abort, NULL);
}

static void describe_lookup(lua_State *L, void *data) { (void)data; lua_pushliteral(L, "DNS lookup"); }

void luaio_open_dns(lua_State *L, luaio_host *h) {
  luaio_wait_kind(h, LUAIO_WAIT_KEY(dns_abort), describe_lookup);
  lua_pushlightuserdata(L, h);
  lua_pushcclosure(L, l_getaddrinfo, 1);
  lua_setfield(L, -2, "getaddrinfo");
}
