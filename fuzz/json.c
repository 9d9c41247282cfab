/* libFuzzer target: the JSON decoder and encoder (src/json.c). Any input
** either decodes or fails with an "aio.json.decode: ... at character N"
** error whose N lies within the input (+1: the end). What decodes encodes
** again (or fails only on an infinity, which JSON cannot hold), and the
** round trip settles: after two rounds, decoding and encoding again gives
** text of the same length (the same text but for the order of object keys,
** which a Lua table does not keep). Two rounds, because the first can turn
** a float into an integer: 999999999999999.9 prints as 1e+15 (%.14g),
** which decodes as the integer 1000000000000000. */
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <lualib.h>
#include "luaio_int.h"

static lua_State *L;

static void check_decode_error(size_t size) {
  const char *msg = lua_tostring(L, -1);
  const char *at = msg ? strstr(msg, " at character ") : NULL;
  if (!msg || !strstr(msg, "aio.json.decode: ") || !at) abort();
  long long n = atoll(at + strlen(" at character "));
  if (n < 1 || (unsigned long long)n > size + 1) abort();
}

/* fn (a registry name) on the value on top: replaces it with the result;
** returns 0 when fn raised (the error on top) */
static int call(const char *fn) {
  lua_getfield(L, LUA_REGISTRYINDEX, fn);
  lua_insert(L, -2);
  return lua_pcall(L, 1, 1, 0) == LUA_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) {
    L = luaL_newstate();
    lua_newtable(L);
    luaio_open_json(L, NULL);
    lua_getfield(L, -1, "json_decode");
    lua_setfield(L, LUA_REGISTRYINDEX, "decode");
    lua_getfield(L, -1, "json_encode");
    lua_setfield(L, LUA_REGISTRYINDEX, "encode");
  }
  lua_settop(L, 0);
  lua_pushlstring(L, (const char *)data, size);
  if (!call("decode")) {
    check_decode_error(size);
    return 0;
  }
  if (!call("encode")) {
    const char *msg = lua_tostring(L, -1);
    if (!msg || !strstr(msg, "cannot encode NaN or an infinity")) abort();
    return 0;
  }
  if (!call("decode") || !call("encode")) abort();
  size_t settled = lua_rawlen(L, -1);
  if (!call("decode") || !call("encode") || lua_rawlen(L, -1) != settled) abort();
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
