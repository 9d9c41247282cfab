/* libFuzzer target: the chunked-encoding size line parser and the
** percent-decoder (src/http_parse.c). A size must be what the hex digits
** say; the decoder must never grow its input. */
#include <stdlib.h>
#include <lauxlib.h>
#include <lualib.h>
#include "http_parse.h"

static lua_State *L;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) {
    L = luaL_newstate();
    lua_newtable(L);
    luaio_open_http_parse(L, NULL);
    lua_getfield(L, -1, "http_chunk_size");
    lua_setfield(L, LUA_REGISTRYINDEX, "chunk_size");
    lua_getfield(L, -1, "http_unescape");
    lua_setfield(L, LUA_REGISTRYINDEX, "unescape");
  }
  lua_settop(L, 0);
  lua_getfield(L, LUA_REGISTRYINDEX, "chunk_size");
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 2, 0) != LUA_OK) abort();
  if (lua_isinteger(L, 1)) {
    lua_Integer n = lua_tointeger(L, 1);
    unsigned long long want = 0;
    size_t i = 0;
    while (i < size && luaio_http_hexval(data[i]) >= 0) want = want * 16 + (unsigned)luaio_http_hexval(data[i++]);
    if (i == 0 || n < 0 || (unsigned long long)n != want) abort();
  } else if (!lua_isstring(L, 2)) abort();

  lua_settop(L, 0);
  lua_getfield(L, LUA_REGISTRYINDEX, "unescape");
  lua_pushlstring(L, (const char *)data, size);
  lua_pushboolean(L, size & 1);
  if (lua_pcall(L, 2, 1, 0) == LUA_OK && lua_rawlen(L, 1) > size) abort();
  return 0;
}
