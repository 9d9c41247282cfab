/*
** newstate.c — the Lua states luaio creates itself (luaio_host_new), on an
** arena (alloc.c) unless a memory tool must see Lua's blocks. luaL_newstate
** cannot take an allocator, so its panic and warning functions (static in
** lauxlib.c) are redone here with the same behaviour: warnings off until
** warn("@on"), then "Lua warning: ..." on stderr.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "alloc.h"

#ifndef LUAIO_UNDER_SANITIZER
/* A valgrind tool that replaces malloc preloads vgpreload_<tool>; callgrind
** and cachegrind preload only vgpreload_core, and they measure the arena as
** it runs for real (RUNNING_ON_VALGRIND would not tell them apart). */
static int under_malloc_watching_valgrind(void) {
  const char *preload = getenv("LD_PRELOAD");
  for (const char *s = preload; s && (s = strstr(s, "vgpreload_")) != NULL; s += strlen("vgpreload_")) {
    if (strncmp(s + strlen("vgpreload_"), "core", 4) != 0) return 1;
  }
  return 0;
}
#endif

int luaio_arena_wanted(void) {
  const char *choice = getenv("LUAIO_ALLOC");
  if (choice && strcmp(choice, "system") == 0) return 0;
#ifdef LUAIO_UNDER_SANITIZER
  return 0;   /* its own allocator must see every block, even when asked */
#else
  if (choice && strcmp(choice, "arena") == 0) return 1;
  return !under_malloc_watching_valgrind();
#endif
}

/* ---- lauxlib's panic and warnings ------------------------------------------ */

static int panic(lua_State *L) {
  const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error object is not a string";
  fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n", msg);
  fflush(stderr);
  return 0;   /* abort */
}

static void warn_off(void *ud, const char *message, int tocont);
static void warn_on(void *ud, const char *message, int tocont);

/* "@on" / "@off" switch warnings; 1 when message was such a control */
static int warn_control(lua_State *L, const char *message, int tocont) {
  if (tocont || *message != '@') return 0;
  if (strcmp(message + 1, "off") == 0) lua_setwarnf(L, warn_off, L);
  else if (strcmp(message + 1, "on") == 0) lua_setwarnf(L, warn_on, L);
  return 1;
}

static void warn_off(void *ud, const char *message, int tocont) { warn_control(ud, message, tocont); }

static void warn_continued(void *ud, const char *message, int tocont) {
  fputs(message, stderr);
  if (!tocont) fputc('\n', stderr);
  fflush(stderr);
  lua_setwarnf(ud, tocont ? warn_continued : warn_on, ud);
}

static void warn_on(void *ud, const char *message, int tocont) {
  if (warn_control(ud, message, tocont)) return;
  fputs("Lua warning: ", stderr);
  warn_continued(ud, message, tocont);
}

/* ---- states ---------------------------------------------------------------- */

lua_State *luaio_newstate(void) {
  if (!luaio_arena_wanted()) return luaL_newstate();
  luaio_arena *a = luaio_arena_new();
  if (!a) return NULL;
  lua_State *L = lua_newstate(luaio_arena_alloc, a);
  if (!L) {
    luaio_arena_free(a);
    return NULL;
  }
  lua_atpanic(L, panic);
  lua_setwarnf(L, warn_off, L);
  return L;
}

void luaio_closestate(lua_State *L) {
  void *ud;
  lua_Alloc alloc = lua_getallocf(L, &ud);
  if (alloc == luaio_arena_alloc) luaio_arena_closing(ud);
  lua_close(L);
  if (alloc == luaio_arena_alloc) luaio_arena_free(ud);
}
