/*
** tests/c/test_alloc.c — the arena allocator of luaio's Lua states
** (src/alloc.c) against lua_Alloc's contract: random work checked against
** fill patterns, every size class boundary, resizes across classes and to
** and from malloc's blocks, pages given back, chunks passed from a closed
** arena to the next, failures that leave blocks
** intact, and a Lua state living on it through waves of garbage.
*/
#define _DEFAULT_SOURCE   /* setenv under a strict -std */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <lualib.h>
#include "alloc.h"

static int failures, checks;
#define CHECK(cond, ...) do { checks++; if (!(cond)) { failures++; \
  fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

#define SMALL LUAIO_ARENA_SMALL_MAX
#define N_CLASSES (SMALL / 8)
#define CACHED_MAX 8   /* alloc.c's CACHED_PAGES_MAX */

static uint64_t rng = 88172645463325252ull;
static uint32_t next_random(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)rng; }

static void *arena_call(luaio_arena *a, void *ptr, size_t osize, size_t nsize) {
  return luaio_arena_alloc(a, ptr, osize, nsize);
}

static void fill(unsigned char *p, size_t size, unsigned seed) {
  for (size_t i = 0; i < size; i++) p[i] = (unsigned char)(seed * 31 + i * 7);
}
static int filled(const unsigned char *p, size_t size, unsigned seed) {
  for (size_t i = 0; i < size; i++) if (p[i] != (unsigned char)(seed * 31 + i * 7)) return 0;
  return 1;
}

static luaio_arena_stats stats_of(luaio_arena *a) {
  luaio_arena_stats s;
  luaio_arena_get_stats(a, &s);
  return s;
}

/* ---- random work against a reference ------------------------------------- */

typedef struct { unsigned char *p; size_t size; unsigned seed; } slot;

static size_t random_size(void) {
  uint32_t r = next_random() % 100;
  if (r < 80) return 1 + next_random() % SMALL;            /* the classes */
  if (r < 95) return SMALL - 16 + next_random() % 32;       /* around the border */
  return SMALL + 1 + next_random() % 20000;                 /* malloc's */
}

static void test_random(void) {
  enum { SLOTS = 4096, STEPS = 400000 };
  static slot slots[SLOTS];
  luaio_arena *a = luaio_arena_new();
  int bad = 0;
  for (int step = 0; step < STEPS && !bad; step++) {
    slot *s = &slots[next_random() % SLOTS];
    if (s->p && !filled(s->p, s->size, s->seed)) { bad = 1; CHECK(0, "block of %zu bytes changed (step %d)", s->size, step); break; }
    uint32_t op = next_random() % 3;
    if (!s->p || op == 0) {                                  /* a new block (after freeing the old) */
      if (s->p) arena_call(a, s->p, s->size, 0);
      s->size = random_size();
      s->p = arena_call(a, NULL, next_random() % 9, s->size);   /* osize: a type tag */
      if (((uintptr_t)s->p & 7) != 0) { bad = 1; CHECK(0, "block of %zu bytes not 8-aligned", s->size); }
    } else if (op == 1) {                                    /* a resize keeps the common prefix */
      size_t nsize = random_size();
      s->p = arena_call(a, s->p, s->size, nsize);
      size_t kept = s->size < nsize ? s->size : nsize;
      if (!filled(s->p, kept, s->seed)) { bad = 1; CHECK(0, "resize %zu -> %zu lost bytes", s->size, nsize); }
      s->size = nsize;
    } else {
      arena_call(a, s->p, s->size, 0);
      s->p = NULL;
      continue;
    }
    s->seed = next_random();
    fill(s->p, s->size, s->seed);
  }
  CHECK(!bad, "random work kept every block's bytes");
  for (int i = 0; i < SLOTS; i++) {
    if (slots[i].p) arena_call(a, slots[i].p, slots[i].size, 0);
    slots[i].p = NULL;
  }
  luaio_arena_stats st = stats_of(a);
  CHECK(st.small_blocks == 0 && st.big_bytes == 0, "all freed: %zu blocks, %zu big bytes left", st.small_blocks, st.big_bytes);
  CHECK(st.pages_resident <= N_CLASSES + CACHED_MAX, "%zu pages left mapped", st.pages_resident);
  luaio_arena_free(a);
}

/* ---- sizes ---------------------------------------------------------------- */

static void test_boundaries(void) {
  luaio_arena *a = luaio_arena_new();
  enum { PER_SIZE = 3 };
  static unsigned char *blocks[SMALL + 64][PER_SIZE];
  for (size_t size = 1; size < SMALL + 64; size++) {           /* every size, three of each */
    for (int k = 0; k < PER_SIZE; k++) {
      blocks[size][k] = arena_call(a, NULL, 0, size);
      fill(blocks[size][k], size, (unsigned)(size * PER_SIZE + k));
    }
  }
  int intact = 1, apart = 1;
  for (size_t size = 1; size < SMALL + 64; size++) {
    for (int k = 0; k < PER_SIZE; k++) {
      if (!filled(blocks[size][k], size, (unsigned)(size * PER_SIZE + k))) intact = 0;
      if (k && blocks[size][k] == blocks[size][k - 1]) apart = 0;
    }
  }
  CHECK(intact, "every block of every size keeps its bytes next to its neighbours");
  CHECK(apart, "blocks are distinct");
  /* a resize within a class stays in place; one byte over moves */
  for (size_t top = 8; top <= SMALL; top += 8) {
    void *p = arena_call(a, NULL, 0, top - 7);
    void *same = arena_call(a, p, top - 7, top);
    CHECK(same == p, "%zu -> %zu stays in its class", top - 7, top);
    fill(same, top, (unsigned)top);
    void *moved = arena_call(a, same, top, top + 1);
    CHECK(moved != NULL && filled(moved, top, (unsigned)top), "%zu -> %zu moves with its bytes", top, top + 1);
    arena_call(a, moved, top + 1, 0);
  }
  for (size_t size = 1; size < SMALL + 64; size++)
    for (int k = 0; k < PER_SIZE; k++) arena_call(a, blocks[size][k], size, 0);
  luaio_arena_stats st = stats_of(a);
  CHECK(st.small_blocks == 0 && st.big_bytes == 0, "boundaries: all freed");
  luaio_arena_free(a);
}

static void test_across(void) {
  luaio_arena *a = luaio_arena_new();
  static const size_t path[] = {1, 8, 9, 64, 168, 208, 720, SMALL, SMALL + 1, 5000, 100000, SMALL + 1, SMALL, 720, 8, 3000, 16, 1};
  size_t n = sizeof path / sizeof path[0];
  unsigned char *p = arena_call(a, NULL, 0, path[0]);
  fill(p, path[0], 7);
  for (size_t i = 1; i < n; i++) {
    p = arena_call(a, p, path[i - 1], path[i]);
    size_t kept = path[i - 1] < path[i] ? path[i - 1] : path[i];
    CHECK(p && filled(p, kept, 7), "resize %zu -> %zu keeps %zu bytes", path[i - 1], path[i], kept);
    fill(p, path[i], 7);
  }
  luaio_arena_stats st = stats_of(a);
  CHECK(st.small_blocks == 1 && st.big_bytes == 0, "one small block left, no malloc bytes");
  arena_call(a, p, path[n - 1], 0);
  CHECK(arena_call(a, NULL, 0, 0) == NULL, "a zero-size new block is NULL");
  luaio_arena_free(a);
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f && fgets(line, sizeof line, f)) if (sscanf(line, "VmRSS: %ld", &kib) == 1) break;
  if (f) fclose(f);
  return kib;
}

/* ---- pages ------------------------------------------------------------------ */

static void test_pages_returned(void) {
  enum { N = 240000 };
  static void *blocks[N];
  static size_t sizes[N];
  luaio_arena *a = luaio_arena_new();
  for (int i = 0; i < N; i++) {
    sizes[i] = 64 + (size_t)(i % 4) * 200;                  /* 64, 264, 464, 664: ~90 MB */
    blocks[i] = arena_call(a, NULL, 0, sizes[i]);
    memset(blocks[i], 0xab, sizes[i]);
  }
  luaio_arena_stats full = stats_of(a);
  CHECK(full.pages_resident > 1000, "a burst maps pages: %zu", full.pages_resident);
  for (int i = 0; i < N; i++)                               /* every other one of each size: pages stay */
    if ((i / 4) % 2 == 0) arena_call(a, blocks[i], sizes[i], 0);
  luaio_arena_stats half = stats_of(a);
  CHECK(half.pages_resident == full.pages_resident, "half-used pages stay mapped");
  long rss_full = rss_kib();
  for (int i = 0; i < N; i++)
    if ((i / 4) % 2 == 1) arena_call(a, blocks[i], sizes[i], 0);
  long rss_empty = rss_kib();
  CHECK(rss_full - rss_empty > 60 * 1024, "the burst's memory leaves the process: %ld KiB -> %ld KiB", rss_full, rss_empty);
  luaio_arena_stats empty = stats_of(a);
  CHECK(empty.small_blocks == 0, "all freed");
  CHECK(empty.pages_resident <= 4 + CACHED_MAX, "the burst's pages go back: %zu mapped", empty.pages_resident);
  CHECK(empty.pages_cached <= CACHED_MAX, "%zu pages cached", empty.pages_cached);
  /* again: the same burst reuses rather than grows */
  for (int i = 0; i < N; i++) blocks[i] = arena_call(a, NULL, 0, sizes[i]);
  luaio_arena_stats again = stats_of(a);
  CHECK(again.pages_resident <= full.pages_resident, "a second burst maps no more: %zu vs %zu", again.pages_resident, full.pages_resident);
  for (int i = 0; i < N; i++) arena_call(a, blocks[i], sizes[i], 0);
  luaio_arena_free(a);
}

/* a closed arena's chunks serve the next arena: no new faults */
static void test_chunks_reused(void) {
  luaio_arena *a = luaio_arena_new();
  void *first = arena_call(a, NULL, 0, 100);
  uintptr_t first_page = (uintptr_t)first & ~(uintptr_t)0xffff;
  arena_call(a, first, 100, 0);
  luaio_arena_free(a);
  luaio_arena *b = luaio_arena_new();
  void *again = arena_call(b, NULL, 0, 100);
  CHECK(((uintptr_t)again & ~(uintptr_t)0xffff) == first_page, "the next arena starts in the same chunk");
  arena_call(b, again, 100, 0);
  luaio_arena_free(b);
}

/* ---- failures ------------------------------------------------------------------ */

static void test_failure(void) {
  luaio_arena *a = luaio_arena_new();
  luaio_arena_set_limit(a, 4 * 64 * 1024);                  /* four pages */
  enum { MAX = 2000 };
  static unsigned char *blocks[MAX];
  int n = 0;
  while (n < MAX && (blocks[n] = arena_call(a, NULL, 0, 1000)) != NULL) fill(blocks[n], 1000, (unsigned)n), n++;
  CHECK(n > 0 && n < MAX, "the limit stops new blocks after %d", n);
  int intact = 1;
  for (int i = 0; i < n; i++) if (!filled(blocks[i], 1000, (unsigned)i)) intact = 0;
  CHECK(intact, "a failed allocation touches no block");
  CHECK(arena_call(a, blocks[0], 1000, 300000) == NULL, "growing into malloc's range fails");
  CHECK(arena_call(a, blocks[0], 1000, 8) == blocks[0], "shrinking with no page for the class keeps the block");
  CHECK(filled(blocks[0], 8, 0), "and its bytes");
  arena_call(a, blocks[0], 8, 0);                          /* Lua now knows it as 8 bytes */
  CHECK(arena_call(a, blocks[1], 1000, 20000) == NULL && filled(blocks[1], 1000, 1), "a failed move leaves the block intact");
  luaio_arena_set_limit(a, 0);
  void *big = arena_call(a, NULL, 0, 20000);
  CHECK(big != NULL, "without the limit, allocations succeed again");
  luaio_arena_set_limit(a, 1);
  CHECK(arena_call(a, big, 20000, 400000) == NULL, "a failed big resize returns NULL");
  big = arena_call(a, big, 20000, 10000);
  CHECK(big != NULL, "a big shrink needs no more memory");
  luaio_arena_set_limit(a, 0);
  luaio_arena_stats st = stats_of(a);
  CHECK(st.big_bytes == 10000, "big bytes counted: %zu", st.big_bytes);
  for (int i = 1; i < n; i++) arena_call(a, blocks[i], 1000, 0);
  arena_call(a, big, 10000, 0);
  luaio_arena_free(a);
}

/* ---- a Lua state on it ---------------------------------------------------------- */

static const char *waves =
  "local keep = {}\n"
  "for i = 1, 100000 do keep[i] = { i, tostring(i) .. ('x'):rep(i % 50), { n = i } } end\n"
  "keep = nil\n"
  "collectgarbage() collectgarbage()\n";

static void test_lua_state(void) {
  luaio_arena *a = luaio_arena_new();
  lua_State *L = lua_newstate(luaio_arena_alloc, a);
  luaL_openlibs(L);
  size_t first = 0, most = 0;
  for (int wave = 0; wave < 4; wave++) {
    if (luaL_dostring(L, waves) != LUA_OK) { CHECK(0, "wave: %s", lua_tostring(L, -1)); break; }
    luaio_arena_stats st = stats_of(a);
    if (wave == 0) first = st.pages_resident;
    if (st.pages_resident > most) most = st.pages_resident;
  }
  CHECK(most <= first + 4, "waves of garbage keep the pages bounded: %zu after the first, %zu at most", first, most);
  lua_close(L);
  luaio_arena_stats st = stats_of(a);
  CHECK(st.small_blocks == 0 && st.big_bytes == 0, "lua_close frees every block: %zu, %zu", st.small_blocks, st.big_bytes);
  luaio_arena_free(a);
}

static void test_choice(void) {
  setenv("LUAIO_ALLOC", "system", 1);
  CHECK(luaio_arena_wanted() == 0, "LUAIO_ALLOC=system: the system allocator");
  lua_State *L = luaio_newstate();
  void *ud;
  CHECK(lua_getallocf(L, &ud) != luaio_arena_alloc, "and the state uses it");
  luaio_closestate(L);
#ifndef LUAIO_UNDER_SANITIZER
  setenv("LUAIO_ALLOC", "arena", 1);
  CHECK(luaio_arena_wanted() == 1, "LUAIO_ALLOC=arena: the arena");
  L = luaio_newstate();
  CHECK(lua_getallocf(L, &ud) == luaio_arena_alloc, "and the state uses it");
  luaL_openlibs(L);
  CHECK(luaL_dostring(L, "warn('@on') return #('x'):rep(5000)") == LUA_OK && lua_tointeger(L, -1) == 5000, "it runs Lua");
  luaio_closestate(L);
#endif
  unsetenv("LUAIO_ALLOC");
}

int main(int argc, char **argv) {
  const char *only = argc > 1 ? argv[1] : NULL;
  static const struct { const char *name; void (*fn)(void); } tests[] = {
    {"random", test_random}, {"boundaries", test_boundaries}, {"across", test_across},
    {"pages", test_pages_returned}, {"reuse", test_chunks_reused}, {"failure", test_failure}, {"lua", test_lua_state},
    {"choice", test_choice}};
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
    if (!only || strcmp(only, tests[i].name) == 0) tests[i].fn();
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
