/* dns.c — getaddrinfo through libuv's thread pool. */
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include "luaio_int.h"

typedef struct {
  uv_getaddrinfo_t req;
  luaio_task *task;        /* NULL once the waiting task gave up */
} dns_op;

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  dns_op *op = (dns_op *)req;
  luaio_task *t = op->task;
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
    const char *family;
    if (ai->ai_family == AF_INET) {
      uv_ip4_name((struct sockaddr_in *)ai->ai_addr, ip, sizeof ip);
      family = "inet";
    } else if (ai->ai_family == AF_INET6) {
      uv_ip6_name((struct sockaddr_in6 *)ai->ai_addr, ip, sizeof ip);
      family = "inet6";
    } else continue;
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

static void dns_cancel(void *data) {
  dns_op *op = data;
  op->task = NULL;
  uv_cancel((uv_req_t *)&op->req);   /* if it already runs, on_resolved drops the result */
}

/* getaddrinfo(host [, port]) ⏸ -> { {addr=, family=}, ... } */
static int l_getaddrinfo(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  const char *host = luaio_checkcstring(L, 1);
  const char *service = NULL;
  if (!lua_isnoneornil(L, 2)) service = luaio_checkcstring(L, 2);   /* a port number or a service name */
  luaio_task *t = luaio_need_task(L, "aio.getaddrinfo");
  dns_op *op = malloc(sizeof *op);
  if (!op) return luaL_error(L, "out of memory");
  op->task = t;
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
  return luaio_await(L, dns_cancel, op, 0, NULL);
}

void luaio_open_dns(lua_State *L, luaio_host *h) {
  lua_pushlightuserdata(L, h);
  lua_pushcclosure(L, l_getaddrinfo, 1);
  lua_setfield(L, -2, "getaddrinfo");
}
