/* spawn floor: a bare C ring buffer resuming 100,000 Lua coroutines 10 times
** each. No event loop, no task objects: the least this design can cost. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(void) {
  enum { N = 100000 };
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_dostring(L, "return function() for i = 1, 10 do coroutine.yield() end end");
  lua_State **ring = malloc(sizeof *ring * N);
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  lua_createtable(L, N, 0);                 /* anchors the coroutines */
  for (int i = 0; i < N; i++) {
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, -3);
    lua_xmove(L, co, 1);
    lua_rawseti(L, -2, i + 1);
    ring[i] = co;
  }
  size_t head = 0, len = N;
  while (len) {
    lua_State *co = ring[head];
    head = (head + 1) % N;
    len--;
    int nres;
    if (lua_resume(co, L, 0, &nres) == LUA_YIELD) {
      lua_pop(co, nres);
      ring[(head + len++) % N] = co;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("metric seconds %.4f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
  lua_close(L);
  free(ring);
  return 0;
}
