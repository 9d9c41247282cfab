/* errors.c — luaio error objects: tables {name, message, code, traceback}. */
#include <stdarg.h>
#include <string.h>
#include "luaio_int.h"

void luaio_push_error(lua_State *L, const char *name, const char *code, const char *fmt, ...) {
  va_list ap;
  lua_createtable(L, 0, 4);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "name");
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_setfield(L, -2, "message");
  if (code) {
    lua_pushstring(L, code);
    lua_setfield(L, -2, "code");
  }
  luaL_setmetatable(L, LUAIO_ERROR_MT);
}

int luaio_error(lua_State *L, const char *name, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  luaio_push_error(L, name, code, "%s", lua_tostring(L, -1));
  return lua_error(L);
}

/* `what` names the failed operation: "connect to 127.0.0.1:1". */
void luaio_push_uverror(lua_State *L, const char *name, int uverr, const char *what) {
  luaio_push_error(L, name, uv_err_name(uverr), "%s: %s", what, uv_strerror(uverr));
}

int luaio_uverror(lua_State *L, const char *name, int uverr, const char *what) {
  luaio_push_uverror(L, name, uverr, what);
  return lua_error(L);
}

static int err_tostring(lua_State *L) {
  lua_getfield(L, 1, "name");
  lua_getfield(L, 1, "message");
  const char *msg = lua_tostring(L, -1);
  if (msg && *msg) lua_pushfstring(L, "%s: %s", lua_tostring(L, -2), msg);
  else lua_pushstring(L, lua_tostring(L, -2));
  return 1;
}

/* error(name, message [, fields]) -> a new error object (not raised) */
static int l_new_error(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *msg = luaL_optstring(L, 2, "");
  luaio_push_error(L, name, NULL, "%s", msg);
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    }
  }
  return 1;
}

static int l_is_error(lua_State *L) {
  int ours = 0;
  if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
    luaL_getmetatable(L, LUAIO_ERROR_MT);
    ours = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  if (ours && !lua_isnoneornil(L, 2)) {
    lua_getfield(L, 1, "name");
    ours = lua_rawequal(L, -1, 2);
    /* as in Python, a ConnectionError is also an OSError */
    if (!ours && lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "OSError") == 0)
      ours = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "ConnectionError") == 0;
    lua_pop(L, 1);
  }
  lua_pushboolean(L, ours);
  return 1;
}

void luaio_open_errors(lua_State *L) {
  if (luaL_newmetatable(L, LUAIO_ERROR_MT)) {
    lua_pushcfunction(L, err_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushstring(L, "luaio.Error");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_new_error);
  lua_setfield(L, -2, "error");
  lua_pushcfunction(L, l_is_error);
  lua_setfield(L, -2, "is_error");
}
