/* netaddr.h — socket addresses: numeric host/port to sockaddr and back, the
** one place streams, listeners, UDP sockets and DNS results convert them. */
#ifndef LUAIO_NETADDR_H
#define LUAIO_NETADDR_H

#include <sys/socket.h>
#include "luaio_int.h"

/* Fill *ss from a numeric IPv4 or IPv6 address and a port: returns the
** family (AF_INET, AF_INET6), or 0 when ip is not a numeric address. */
int luaio_addr_parse(const char *ip, int port, struct sockaddr_storage *ss);

/* The numeric name of an IPv4 or IPv6 address into ip[cap] (64 will do)
** and its port into *port (may be NULL): returns the family, or 0 for
** another family (ip is then ""). */
int luaio_addr_name(const struct sockaddr *sa, char *ip, size_t cap, int *port);

/* Push host, port of an IPv4/IPv6 address (nil, nil for another family);
** returns 2. */
int luaio_addr_push(lua_State *L, const struct sockaddr_storage *ss);

/* Push the path of a Unix socket (its own or its peer's), then nil: returns
** 2, or the uv error (< 0, nothing pushed). */
int luaio_addr_push_pipe(lua_State *L, uv_pipe_t *p, int peer);

#endif
