/* netaddr.c — socket addresses (netaddr.h). */
#include <string.h>
#include <netinet/in.h>
#include "netaddr.h"

int luaio_addr_parse(const char *ip, int port, struct sockaddr_storage *ss) {
  if (uv_ip4_addr(ip, port, (struct sockaddr_in *)ss) == 0) return AF_INET;
  if (uv_ip6_addr(ip, port, (struct sockaddr_in6 *)ss) == 0) return AF_INET6;
  return 0;
}

int luaio_addr_name(const struct sockaddr *sa, char *ip, size_t cap, int *port) {
  int p = 0;
  ip[0] = '\0';
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    uv_ip4_name(a, ip, cap);
    p = ntohs(a->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(a, ip, cap);
    p = ntohs(a->sin6_port);
  } else {
    return 0;
  }
  if (port) *port = p;
  return sa->sa_family;
}

int luaio_addr_push(lua_State *L, const struct sockaddr_storage *ss) {
  char ip[64];
  int port;
  if (!luaio_addr_name((const struct sockaddr *)ss, ip, sizeof ip, &port)) {
    lua_pushnil(L);
    lua_pushnil(L);
    return 2;
  }
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  return 2;
}

int luaio_addr_push_pipe(lua_State *L, uv_pipe_t *p, int peer) {
  char path[1024];
  size_t len = sizeof path;
  int r = peer ? uv_pipe_getpeername(p, path, &len) : uv_pipe_getsockname(p, path, &len);
  if (r < 0) return r;
  lua_pushlstring(L, path, len);
  lua_pushnil(L);
  return 2;
}
