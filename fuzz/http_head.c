/* libFuzzer target: the HTTP/1.1 head parser (src/http_parse.c), both kinds.
** The first byte picks request or response; the rest is the head. Checks
** that a parsed head never claims more bytes than it was given, and that
** the server's lean request (luaio_http_push_request) accepts and refuses
** exactly what the full parser does, with the same method, path, answer
** status and keep-alive verdict. */
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <lualib.h>
#include "http_parse.h"

static lua_State *L;

static int same_string_field(int a, int b, const char *field) {
  lua_getfield(L, a, field);
  lua_getfield(L, b, field);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

/* lean(head) -> as luaio_http_push_request: a C closure, for the field
** names are its upvalues (as for stream:_read_head) */
static int lean_request(lua_State *L) {
  size_t len;
  const char *head = lua_tolstring(L, 1, &len);
  lua_settop(L, 2);                                /* no metatable: 2 is nil */
  return luaio_http_push_request(L, head, len, 2, 1);
}

/* The full parse is at 1..3; compare the lean one of the same head. */
static void check_lean(const char *head, size_t len) {
  int full = 1, lean = lua_gettop(L) + 1;
  lua_getfield(L, LUA_REGISTRYINDEX, "lean");
  lua_pushlstring(L, head, len);
  if (lua_pcall(L, 1, 3, 0) != LUA_OK) abort();
  if (lua_istable(L, full) != lua_istable(L, lean)) abort();
  if (!lua_istable(L, full)) {                     /* both refused: same answer */
    if (lua_tointeger(L, full + 1) != lua_tointeger(L, lean + 1)) abort();
    return;
  }
  if (!same_string_field(full, lean, "method")) abort();
  lua_getfield(L, full, "target");
  const char *target = lua_tostring(L, -1);
  lua_pop(L, 1);
  if (target && target[0] == '/') {                /* origin form: the path is its start */
    lua_getfield(L, lean, "path");
    size_t plen;
    const char *path = lua_tolstring(L, -1, &plen);
    if (!path || strncmp(path, target, plen) != 0) abort();
    lua_pop(L, 1);
  }
  lua_getfield(L, full, "keep_alive");
  int keep = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (keep != lua_toboolean(L, lean + 1)) abort();
  lua_getfield(L, lean, "_raw");
  size_t raw_len;
  const char *raw = lua_tolstring(L, -1, &raw_len);
  if (!raw || raw_len != len || memcmp(raw, head, len) != 0) abort();
  lua_pop(L, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) {
    L = luaL_newstate();
    lua_newtable(L);
    luaio_open_http_parse(L, NULL);
    lua_getfield(L, -1, "http_parse_head");
    lua_setfield(L, LUA_REGISTRYINDEX, "parse_head");
    luaio_http_push_request_keys(L);
    lua_pushcclosure(L, lean_request, HTTP_REQUEST_KEYS);
    lua_setfield(L, LUA_REGISTRYINDEX, "lean");
  }
  if (size < 1) return 0;
  int is_request = !(data[0] & 1);
  lua_settop(L, 0);
  lua_getfield(L, LUA_REGISTRYINDEX, "parse_head");
  lua_pushlstring(L, (const char *)data + 1, size - 1);
  lua_pushstring(L, is_request ? "request" : "response");
  if (lua_pcall(L, 2, 3, 0) != LUA_OK) abort();          /* it reports, never raises */
  if (lua_istable(L, 1)) {
    lua_getfield(L, 1, "head_length");
    lua_Integer used = lua_tointeger(L, -1);
    if (used < 0 || (size_t)used > size - 1) abort();
    lua_getfield(L, 1, "headers");
    if (!lua_istable(L, -1)) abort();
    lua_settop(L, 3);
  } else {
    lua_Integer status = lua_tointeger(L, 2);
    if (status < 400 || status > 599 || !lua_isstring(L, 3)) abort();
  }
  if (is_request) check_lean((const char *)data + 1, size - 1);
  return 0;
}
