/* libFuzzer target: the HTTP/1.1 head parser (src/http_parse.c), both kinds.
** The first byte picks request or response; the rest is the head. Checks
** that a parsed head never claims more bytes than it was given. */
#include <stdlib.h>
#include <lauxlib.h>
#include <lualib.h>
#include "luaio_int.h"

static lua_State *L;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) {
    L = luaL_newstate();
    lua_newtable(L);
    luaio_open_http_parse(L, NULL);
    lua_getfield(L, -1, "http_parse_head");
    lua_setfield(L, LUA_REGISTRYINDEX, "parse_head");
  }
  if (size < 1) return 0;
  const char *kind = data[0] & 1 ? "response" : "request";
  lua_settop(L, 0);
  lua_getfield(L, LUA_REGISTRYINDEX, "parse_head");
  lua_pushlstring(L, (const char *)data + 1, size - 1);
  lua_pushstring(L, kind);
  if (lua_pcall(L, 2, 3, 0) != LUA_OK) abort();          /* it reports, never raises */
  if (lua_istable(L, 1)) {
    lua_getfield(L, 1, "head_length");
    lua_Integer used = lua_tointeger(L, -1);
    if (used < 0 || (size_t)used > size - 1) abort();
    lua_getfield(L, 1, "headers");
    if (!lua_istable(L, -1)) abort();
  } else {
    lua_Integer status = lua_tointeger(L, 2);
    if (status < 400 || status > 599 || !lua_isstring(L, 3)) abort();
  }
  return 0;
}
