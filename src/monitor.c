/*
** monitor.c — the native side of the task monitor (lua/luaio/monitor.lua):
** its Unix socket, opened at once (the monitor may be started before any
** loop runs, from LUAIO_MONITOR), private to the user (mode 0600), and the
** process's resident memory for `stats`.
**
** The socket path is taken only when it is free: a missing path, or a
** socket file nobody listens on any more (a crashed program's leftover) is
** replaced; a path that exists and is not a socket, or where another
** program listens, is refused. The listener is a daemon's (listener.c):
** neither it nor its connections keep the loop alive.
*/
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "stream_int.h"

static int path_error(lua_State *L, int err, const char *path, const char *what) {
  const char *code = err == EEXIST ? "EEXIST" : err == EADDRINUSE ? "EADDRINUSE" : uv_err_name(uv_translate_sys_error(err));
  return luaio_error(L, "OSError", code, "monitor: %s: %s", path, what ? what : strerror(err));
}

/* Make path free for a new socket, or raise. */
static void claim_path(lua_State *L, const char *path, const struct sockaddr_un *addr) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    if (errno != ENOENT) path_error(L, errno, path, NULL);
    return;
  }
  if (!S_ISSOCK(st.st_mode)) path_error(L, EEXIST, path, "exists and is not a socket");
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) path_error(L, errno, path, NULL);
  int r = connect(probe, (const struct sockaddr *)addr, sizeof *addr), err = errno;
  close(probe);
  if (r == 0) path_error(L, EADDRINUSE, path, "another program listens on this socket");
  if (err != ECONNREFUSED) path_error(L, err, path, NULL);
  if (unlink(path) != 0 && errno != ENOENT) path_error(L, errno, path, NULL);   /* stale */
}

/* core.monitor_listen(path) -> Listener (a daemon's: see the top) */
static int l_monitor_listen(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  const char *path = luaio_checkcstring(L, 1);
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (path[0] == '\0') return luaio_argerror(L, 1, "empty path");
  if (strlen(path) >= sizeof addr.sun_path) return luaio_argerror(L, 1, "path too long for a Unix socket");
  memcpy(addr.sun_path, path, strlen(path));
  lua_settop(L, 1);
  claim_path(L, path, &addr);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return path_error(L, errno, path, NULL);
  mode_t old = umask(0177);            /* the file is born 0600: no window where others may connect */
  int r = bind(fd, (struct sockaddr *)&addr, sizeof addr), err = errno;
  umask(old);
  if (r == 0 && listen(fd, 16) != 0) { r = -1; err = errno; unlink(path); }
  if (r != 0) {
    close(fd);
    return path_error(L, err, path, NULL);
  }
  h->debug.monitor = 1;                /* from now on spawns record where and when */
  return stream_listen_daemon(L, h, fd);
}

/* core.rss() -> resident memory in bytes (nil where /proc is missing) */
static int l_rss(lua_State *L) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, resident = 0;
  int ok = f && fscanf(f, "%ld %ld", &size, &resident) == 2;
  if (f) fclose(f);
  if (!ok) return 0;
  lua_pushinteger(L, (lua_Integer)resident * sysconf(_SC_PAGESIZE));
  return 1;
}

void luaio_open_monitor(lua_State *L, luaio_host *h) {
  static const luaL_Reg funcs[] = {{"monitor_listen", l_monitor_listen}, {"rss", l_rss}, {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
