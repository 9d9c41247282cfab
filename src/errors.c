/* errors.c — luaio error objects: tables {name, message, code, traceback}. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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
  luaio_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "name");
  lua_getfield(L, 1, "message");
  const char *msg = lua_tostring(L, -1);
  if (msg && *msg) lua_pushfstring(L, "%s: %s", lua_tostring(L, -2), msg);
  else lua_pushstring(L, lua_tostring(L, -2));
  return 1;
}

/* error(name, message [, fields]) -> a new error object (not raised) */
static int l_new_error(lua_State *L) {
  const char *name = luaio_checkstring(L, 1);
  const char *msg = luaio_optstring(L, 2, "");
  if (*name == '\0') return luaio_argerror(L, 1, "an error name expected, got an empty string");
  if (!lua_isnoneornil(L, 3)) luaio_checktype(L, 3, LUA_TTABLE);
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

static void open_argerrors(lua_State *L);

void luaio_open_errors(lua_State *L) {
  open_argerrors(L);
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

/* ---- argument errors: Lua's shape, with the public name ---------------- */

/* Push the public name of the function on top ("aio.sleep", "aio.fs.stat")
** by finding it in the `aio` table or one of its subtables; pops the
** function. Returns 0 (pushing nothing) when it is not a public function. */
static int push_public_name(lua_State *L) {
  int fn = lua_gettop(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  /* luaio.testing's functions are testing.NAME (the module is not in aio) */
  if (lua_getfield(L, -1, "luaio.testing") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_rawequal(L, -1, fn)) {
        lua_pushfstring(L, "testing.%s", lua_tostring(L, -2));
        goto found;
      }
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  if (lua_getfield(L, -1, "luaio") != LUA_TTABLE) { lua_settop(L, fn - 1); return 0; }
  int aio = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, aio)) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      if (lua_rawequal(L, -1, fn)) {
        lua_pushfstring(L, "aio.%s", lua_tostring(L, -2));
        goto found;
      }
      if (lua_type(L, -1) == LUA_TTABLE) {
        int sub = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, sub)) {
          if (lua_type(L, -2) == LUA_TSTRING && lua_rawequal(L, -1, fn)) {
            lua_pushfstring(L, "aio.%s.%s", lua_tostring(L, sub - 1), lua_tostring(L, -2));
            goto found;
          }
          lua_pop(L, 1);
        }
      }
    }
    lua_pop(L, 1);
  }
  lua_settop(L, fn - 1);
  return 0;
found:
  lua_replace(L, fn);
  lua_settop(L, fn);
  return 1;
}

/* The name to show for the function running at `level`: its public name,
** else the one its call site gives; the string stays on the stack. */
static const char *push_function_name(lua_State *L, lua_Debug *ar, const char *fallback) {
  lua_getinfo(L, "nf", ar);
  if (push_public_name(L)) return lua_tostring(L, -1);
  lua_pushstring(L, ar->name ? ar->name : fallback);
  return lua_tostring(L, -1);
}

const char *luaio_function_name(lua_State *L, int level) {
  lua_Debug ar;
  if (!lua_getstack(L, level, &ar)) return "?";
  return push_function_name(L, &ar, "this function");
}

/* luaL_argerror for the function running at `level` (0: the C function
** raising it), positioned at that function's caller. */
static int argerror_at(lua_State *L, int level, int arg, const char *extramsg) {
  lua_Debug ar;
  if (!lua_getstack(L, level, &ar))
    return luaL_error(L, "bad argument #%d (%s)", arg, extramsg);
  const char *name = push_function_name(L, &ar, "?");
  luaL_where(L, level + 1);
  if (ar.namewhat && strcmp(ar.namewhat, "method") == 0 && --arg == 0)
    lua_pushfstring(L, "calling '%s' on bad self (%s)", name, extramsg);
  else
    lua_pushfstring(L, "bad argument #%d to '%s' (%s)", arg, name, extramsg);
  lua_concat(L, 2);
  return lua_error(L);
}

int luaio_argerror(lua_State *L, int arg, const char *extramsg) {
  return argerror_at(L, 0, arg, extramsg);
}

/* The type name Lua's own messages use: __name when there is one. */
static const char *type_name(lua_State *L, int idx) {
  int t = luaL_getmetafield(L, idx, "__name");
  if (t == LUA_TSTRING) return lua_tostring(L, -1);
  if (t != LUA_TNIL) lua_pop(L, 1);
  if (lua_type(L, idx) == LUA_TLIGHTUSERDATA) return "light userdata";
  return luaL_typename(L, idx);
}

int luaio_typeerror(lua_State *L, int arg, const char *tname) {
  const char *got = lua_isnone(L, arg) ? "no value" : type_name(L, arg);
  return luaio_argerror(L, arg, lua_pushfstring(L, "%s expected, got %s", tname, got));
}

static void tag_error(lua_State *L, int arg, int tag) {
  luaio_typeerror(L, arg, lua_typename(L, tag));
}

lua_Number luaio_checknumber(lua_State *L, int arg) {
  int isnum;
  lua_Number d = lua_tonumberx(L, arg, &isnum);
  if (!isnum) tag_error(L, arg, LUA_TNUMBER);
  return d;
}

lua_Integer luaio_checkinteger(lua_State *L, int arg) {
  int isnum;
  lua_Integer d = lua_tointegerx(L, arg, &isnum);
  if (!isnum) {
    if (lua_isnumber(L, arg)) luaio_argerror(L, arg, "number has no integer representation");
    else tag_error(L, arg, LUA_TNUMBER);
  }
  return d;
}

const char *luaio_checklstring(lua_State *L, int arg, size_t *len) {
  const char *s = lua_tolstring(L, arg, len);
  if (!s) tag_error(L, arg, LUA_TSTRING);
  return s;
}

/* A string handed to the system: a NUL inside would silently cut it. */
const char *luaio_checkcstring(lua_State *L, int arg) {
  size_t len;
  const char *s = luaio_checklstring(L, arg, &len);
  if (strlen(s) != len) luaio_argerror(L, arg, "string contains a NUL byte");
  return s;
}

void luaio_checktype(lua_State *L, int arg, int t) {
  if (lua_type(L, arg) != t) tag_error(L, arg, t);
}

void luaio_checkany(lua_State *L, int arg) {
  if (lua_type(L, arg) == LUA_TNONE) luaio_argerror(L, arg, "value expected");
}

void *luaio_checkudata(lua_State *L, int arg, const char *tname) {
  void *p = luaL_testudata(L, arg, tname);
  if (!p) luaio_typeerror(L, arg, tname);
  return p;
}

lua_Integer luaio_optinteger(lua_State *L, int arg, lua_Integer def) {
  return lua_isnoneornil(L, arg) ? def : luaio_checkinteger(L, arg);
}

lua_Number luaio_optnumber(lua_State *L, int arg, lua_Number def) {
  return lua_isnoneornil(L, arg) ? def : luaio_checknumber(L, arg);
}

const char *luaio_optlstring(lua_State *L, int arg, const char *def, size_t *len) {
  if (lua_isnoneornil(L, arg)) {
    if (len) *len = def ? strlen(def) : 0;
    return def;
  }
  return luaio_checklstring(L, arg, len);
}

int luaio_checkoption(lua_State *L, int arg, const char *def, const char *const lst[]) {
  const char *name = def ? luaio_optlstring(L, arg, def, NULL) : luaio_checklstring(L, arg, NULL);
  for (int i = 0; lst[i]; i++)
    if (strcmp(lst[i], name) == 0) return i;
  return luaio_argerror(L, arg, lua_pushfstring(L, "invalid option '%s'", name));
}

/* core.arg_error(n, msg [, level]): the same error for a function written
** in Lua; level 1 (default) is the function calling arg_error. */
static int l_arg_error(lua_State *L) {
  int arg = (int)luaL_checkinteger(L, 1);
  const char *msg = luaL_checkstring(L, 2);
  int level = (int)luaL_optinteger(L, 3, 1);
  return argerror_at(L, level, arg, msg);
}

/* core.type_name(v): the name Lua's messages use for v's type. */
static int l_type_name(lua_State *L) {
  luaL_checkany(L, 1);
  lua_pushstring(L, type_name(L, 1));
  return 1;
}

static void open_argerrors(lua_State *L) {
  lua_pushcfunction(L, l_arg_error);
  lua_setfield(L, -2, "arg_error");
  lua_pushcfunction(L, l_type_name);
  lua_setfield(L, -2, "type_name");
}

/* ---- errors of callbacks -------------------------------------------------- */

static int tostring_protected(lua_State *L) {
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* luaio_int.h. The error's __tostring may raise too. */
void luaio_report_callback_error(lua_State *L, const char *what) {
  lua_pushcfunction(L, tostring_protected);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    lua_pushliteral(L, "(error object whose __tostring fails)");
  }
  fprintf(stderr, "luaio: error in %s: %s\n", what, lua_tostring(L, -1));
  fflush(stderr);
  lua_pop(L, 1);
}

/* luaio_int.h: the core's own structures cannot grow. */
void luaio_oom(const char *what) {
  fprintf(stderr, "luaio: out of memory (%s)\n", what);
  fflush(stderr);
  abort();
}
