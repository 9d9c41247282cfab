/*
** alloc.h — the allocator of the Lua states luaio creates itself
** (luaio_host_new): small blocks by size class in 64 KiB pages, the rest
** from malloc. Plain data structure: no libuv; Lua only for lua_Alloc's
** contract and the state maker (newstate.c). States made by someone else
** (require "luaio" from stock lua5.4) keep their own allocator.
*/
#ifndef LUAIO_ALLOC_H
#define LUAIO_ALLOC_H

#include <stddef.h>
#include <lua.h>

typedef struct luaio_arena luaio_arena;

/* What an arena holds now (the C test counts pages through it). */
typedef struct {
  size_t pages_resident;  /* 64 KiB pages holding memory, cached ones included */
  size_t pages_cached;    /* empty pages kept for reuse */
  size_t small_blocks;    /* blocks of the size classes handed out */
  size_t big_bytes;       /* bytes handed out by malloc (blocks over the classes) */
} luaio_arena_stats;

#define LUAIO_ARENA_SMALL_MAX 1024   /* larger blocks come from malloc */

luaio_arena *luaio_arena_new(void);   /* NULL: out of memory */
void luaio_arena_free(luaio_arena *a);   /* unmaps every page: only after lua_close */
/* lua_close comes: empty pages stay for luaio_arena_free's few whole unmaps. */
void luaio_arena_closing(luaio_arena *a);
/* A lua_Alloc with the arena as its ud (lua_newstate(luaio_arena_alloc, a)). */
void *luaio_arena_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
void luaio_arena_get_stats(const luaio_arena *a, luaio_arena_stats *out);
/* Fail allocations beyond `bytes` (pages mapped + big bytes); 0: no limit. */
void luaio_arena_set_limit(luaio_arena *a, size_t bytes);

/* Whether the arena should serve luaio's states: not under AddressSanitizer,
** nor under a valgrind tool that watches malloc (memcheck, massif, ...);
** LUAIO_ALLOC=system or =arena decides instead when set. */
int luaio_arena_wanted(void);
#if defined(__SANITIZE_ADDRESS__)
#define LUAIO_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define LUAIO_UNDER_SANITIZER 1
#endif
#endif

/* newstate.c: luaL_newstate on an arena when wanted (with lauxlib's panic
** and warning behaviour); luaio_closestate closes it and frees its arena. */
lua_State *luaio_newstate(void);
void luaio_closestate(lua_State *L);

#endif
