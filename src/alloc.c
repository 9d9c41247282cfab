/*
** alloc.c — a size-class allocator for the Lua states luaio creates.
**
** Why: a task is five small blocks (its lua_State 208 B, stack 720 B, Task
** userdata 168 B, two CallInfos 64 B); malloc rounds each up and adds a
** header, ~70 B per task, and its first touch of fresh memory showed in
** spawn's profile. Lua passes the true old size of every block it frees or
** resizes (lua_Alloc's contract), so blocks need no header here: a block's
** class follows from its size, its page from its address.
**
** Layout: blocks up to LUAIO_ARENA_SMALL_MAX bytes come from classes 8 bytes
** apart (8, 16, ... 1024: the sizes above are all exact; 8 is what Lua
** aligns to, LUAI_MAXALIGN). A class's blocks live in 64 KiB pages aligned
** to 64 KiB (a block's page: its address masked), each page starting with
** its header: a free list threaded through its freed blocks, a bump pointer
** over the never-used rest (untouched memory stays unmapped by the kernel),
** and a count of live blocks. Pages are carved from 1 MiB chunks (a few
** mmap calls per host, not one per page). Pages with room are listed per
** class; a page whose last block is freed goes to a small cache, beyond it
** its memory goes back to the kernel (madvise MADV_DONTNEED), so a burst of
** small objects does not stay resident; the page stays reserved for reuse
** (not munmap: a hole in a chunk could be mapped by someone else before the
** chunk's final unmap). At lua_close the pages wait for the chunks' whole
** unmap instead. Bigger blocks go to malloc/realloc/free.
** A closed arena's chunks go to a small pool shared by the
** process (under a lock: hosts may live on several threads), so an embedder
** making host after host reuses memory already faulted in.
**
** No locks: one arena per lua_State, and a state is used by one thread at a
** time (nothing in luaio calls a state's allocator from another thread).
*/
#define _DEFAULT_SOURCE   /* MAP_ANONYMOUS under a strict -std */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "alloc.h"

#define PAGE_SIZE_BYTES ((size_t)64 * 1024)
#define CLASS_STEP 8
#define N_CLASSES (LUAIO_ARENA_SMALL_MAX / CLASS_STEP)
#define CHUNK_PAGES 16          /* pages are reserved 1 MiB at a time */
#define CACHED_PAGES_MAX 8      /* empty pages kept for reuse (512 KiB) */
#define POOLED_CHUNKS_MAX 4     /* chunks kept between arenas (4 MiB) */

typedef struct free_block { struct free_block *next; } free_block;

/* A growable stack of addresses (chunks, released pages), from malloc. */
typedef struct { void **items; size_t len, cap; } address_stack;

static int push_address(address_stack *s, void *address) {
  if (s->len == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 16;
    void **grown = realloc(s->items, cap * sizeof *grown);
    if (!grown) return 0;
    s->items = grown;
    s->cap = cap;
  }
  s->items[s->len++] = address;
  return 1;
}

typedef struct page {
  struct page *prev, *next;     /* in its class's list of pages with room, or the cache */
  free_block *free;             /* blocks freed, to reuse first */
  char *bump;                   /* the next never-used block */
  uint32_t live;                /* blocks handed out */
  uint32_t block_size;
  uint32_t cls;
  uint32_t listed;              /* in its class's list */
} page;

#define PAGE_HEADER ((sizeof(page) + 63) & ~(size_t)63)   /* blocks start on a cache line */

struct luaio_arena {
  page *with_room[N_CLASSES];   /* pages with a free or never-used block */
  page *cache;                  /* empty pages, by `next` */
  size_t n_cached, pages_resident, small_blocks, big_bytes;
  size_t limit;                 /* bytes; 0: none */
  char *hint;                   /* where the next chunk is asked for (below the last) */
  char *carve;                  /* the newest chunk's next page never handed out */
  size_t carve_left;            /* pages left there */
  address_stack chunks;         /* every chunk reserved, unmapped whole at the end */
  address_stack released;       /* pages whose memory went back to the kernel */
  uint32_t class_pages[N_CLASSES];   /* pages a class has taken (see prefault) */
  int closing;                  /* lua_close runs: empty pages wait for the whole unmap */
};

static inline uint32_t class_of(size_t size) { return (uint32_t)((size - 1) / CLASS_STEP); }
static inline page *page_of(void *block) {
  return (page *)((uintptr_t)block & ~(uintptr_t)(PAGE_SIZE_BYTES - 1));
}

static int over_limit(const luaio_arena *a, size_t more) {
  return a->limit && a->pages_resident * PAGE_SIZE_BYTES + a->big_bytes + more > a->limit;
}

/* ---- pages from the kernel --------------------------------------------- */

#define CHUNK_BYTES (CHUNK_PAGES * PAGE_SIZE_BYTES)

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static char *pooled_chunks[POOLED_CHUNKS_MAX];
static int n_pooled;

static char *take_pooled_chunk(void) {
  pthread_mutex_lock(&pool_lock);
  char *m = n_pooled > 0 ? pooled_chunks[--n_pooled] : NULL;
  pthread_mutex_unlock(&pool_lock);
  return m;
}

static void give_back_chunk(char *m) {
  pthread_mutex_lock(&pool_lock);
  if (n_pooled < POOLED_CHUNKS_MAX) {
    pooled_chunks[n_pooled++] = m;
    m = NULL;
  }
  pthread_mutex_unlock(&pool_lock);
  if (m) munmap(m, CHUNK_BYTES);
}

static void *map_fresh(void *where, size_t size) {
  void *m = mmap(where, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return m == MAP_FAILED ? NULL : m;
}

/* A fresh chunk of pages aligned to 64 KiB: first where the last one ended
** (mappings grow downwards, so one call usually suffices), else mapped a page
** larger and trimmed. */
static char *map_chunk(luaio_arena *a) {
  char *m = a->hint ? map_fresh(a->hint, CHUNK_BYTES) : NULL;
  if (m && ((uintptr_t)m & (PAGE_SIZE_BYTES - 1)) != 0) {
    munmap(m, CHUNK_BYTES);
    m = NULL;
  }
  if (!m) {
    char *raw = map_fresh(NULL, CHUNK_BYTES + PAGE_SIZE_BYTES);
    if (!raw) return NULL;
    m = (char *)(((uintptr_t)raw + PAGE_SIZE_BYTES - 1) & ~(uintptr_t)(PAGE_SIZE_BYTES - 1));
    if (m > raw) munmap(raw, (size_t)(m - raw));
    char *tail = m + CHUNK_BYTES, *raw_end = raw + CHUNK_BYTES + PAGE_SIZE_BYTES;
    if (raw_end > tail) munmap(tail, (size_t)(raw_end - tail));
  }
  a->hint = m > (char *)CHUNK_BYTES ? m - CHUNK_BYTES : NULL;
  return m;
}

/* Pages come from chunks so that a host maps and unmaps a few chunks, not
** one page at a time; a pooled chunk first. */
static int reserve_chunk(luaio_arena *a) {
  char *m = take_pooled_chunk();
  if (!m && !(m = map_chunk(a))) return 0;
  if (!push_address(&a->chunks, m)) {
    give_back_chunk(m);
    return 0;
  }
  a->carve = m;
  a->carve_left = CHUNK_PAGES;
  return 1;
}

/* A page for a class: a cached one, a released one (faulted in again as
** it is used), or the next of the newest chunk; *cold: not resident. */
static page *take_page(luaio_arena *a, int *cold) {
  *cold = 0;
  if (a->cache) {
    page *p = a->cache;
    a->cache = p->next;
    a->n_cached--;
    return p;
  }
  *cold = 1;
  if (over_limit(a, PAGE_SIZE_BYTES)) return NULL;
  page *p;
  if (a->released.len > 0) p = a->released.items[--a->released.len];
  else if (a->carve_left > 0 || reserve_chunk(a)) {
    p = (page *)a->carve;
    a->carve += PAGE_SIZE_BYTES;
    a->carve_left--;
  } else return NULL;
  a->pages_resident++;
  return p;
}

/* Its memory back to the kernel; 0 when it cannot be recorded for reuse. */
static int release_page(luaio_arena *a, page *p) {
  if (!push_address(&a->released, p)) return 0;
  madvise(p, PAGE_SIZE_BYTES, MADV_DONTNEED);
  a->pages_resident--;
  return 1;
}

/* ---- a class's pages with room ------------------------------------------ */

static void list_page(luaio_arena *a, page *p) {
  page **head = &a->with_room[p->cls];
  p->prev = NULL;
  p->next = *head;
  if (*head) (*head)->prev = p;
  *head = p;
  p->listed = 1;
}

static void unlist_page(luaio_arena *a, page *p) {
  if (p->prev) p->prev->next = p->next;
  else a->with_room[p->cls] = p->next;
  if (p->next) p->next->prev = p->prev;
  p->listed = 0;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23   /* Linux 5.14; older kernels refuse it: then pages fault in one by one */
#endif
enum { PREFAULT_AFTER = 2 };     /* a class's pages taken before its next ones are prefaulted */

/* A class taking page after page (a burst of tasks, rows, strings) will
** fill this one too: its 16 kernel pages in one call rather than 16 faults,
** which cost dearly on a VM. A class's first pages fault in as used, so a
** small program's resident size does not grow. */
static void prefault(luaio_arena *a, page *p, uint32_t cls) {
  if (a->class_pages[cls] < UINT32_MAX) a->class_pages[cls]++;
  if (a->class_pages[cls] > PREFAULT_AFTER) madvise(p, PAGE_SIZE_BYTES, MADV_POPULATE_WRITE);
}

static page *new_page(luaio_arena *a, uint32_t cls) {
  int cold;
  page *p = take_page(a, &cold);
  if (!p) return NULL;
  if (cold) prefault(a, p, cls);
  p->free = NULL;
  p->bump = (char *)p + PAGE_HEADER;
  p->live = 0;
  p->cls = cls;
  p->block_size = (cls + 1) * CLASS_STEP;
  list_page(a, p);
  return p;
}

/* An empty page leaves its class: to the cache, or its memory back to the kernel. */
static void retire_page(luaio_arena *a, page *p) {
  unlist_page(a, p);
  if ((a->n_cached >= CACHED_PAGES_MAX && !a->closing) && release_page(a, p)) return;
  p->next = a->cache;
  a->cache = p;
  a->n_cached++;
}

/* ---- small blocks ------------------------------------------------------- */

static void *small_alloc(luaio_arena *a, uint32_t cls) {
  page *p = a->with_room[cls];
  if (!p && !(p = new_page(a, cls))) return NULL;
  void *block;
  if (p->free) {
    block = p->free;
    p->free = p->free->next;
  } else {
    block = p->bump;
    p->bump += p->block_size;
  }
  p->live++;
  a->small_blocks++;
  size_t never_used = (size_t)((char *)p + PAGE_SIZE_BYTES - p->bump);
  if (!p->free && never_used < p->block_size) unlist_page(a, p);   /* full */
  return block;
}

static void small_free(luaio_arena *a, void *block) {
  page *p = page_of(block);
  free_block *f = block;
  f->next = p->free;
  p->free = f;
  p->live--;
  a->small_blocks--;
  if (!p->listed) list_page(a, p);
  /* an empty page is kept while it is its class's only one (no churn for a
  ** class with one block coming and going) */
  if (p->live == 0 && (p->prev || p->next)) retire_page(a, p);
}

/* ---- big blocks ----------------------------------------------------------- */

static void *big_resize(luaio_arena *a, void *ptr, size_t osize, size_t nsize) {
  if (nsize > osize && over_limit(a, nsize - osize)) return NULL;
  void *n = realloc(ptr, nsize);
  if (n) a->big_bytes = a->big_bytes - osize + nsize;
  return n;
}

static void big_free(luaio_arena *a, void *ptr, size_t osize) {
  free(ptr);
  a->big_bytes -= osize;
}

/* ---- lua_Alloc -------------------------------------------------------------- */

static void release(luaio_arena *a, void *ptr, size_t size) {
  if (size <= LUAIO_ARENA_SMALL_MAX) small_free(a, ptr);
  else big_free(a, ptr, size);
}

/* lua_Alloc: ptr NULL: a new block (osize is then a type tag); nsize 0: a
** free; else a resize keeping min(osize, nsize) bytes. NULL on failure, the
** old block untouched. */
void *luaio_arena_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  luaio_arena *a = ud;
  if (!ptr) osize = 0;
  if (nsize == 0) {
    if (ptr) release(a, ptr, osize);
    return NULL;
  }
  if (osize > LUAIO_ARENA_SMALL_MAX && nsize > LUAIO_ARENA_SMALL_MAX) return big_resize(a, ptr, osize, nsize);
  if (ptr && osize <= LUAIO_ARENA_SMALL_MAX && nsize <= LUAIO_ARENA_SMALL_MAX &&
      class_of(osize) == class_of(nsize)) return ptr;
  void *n = nsize <= LUAIO_ARENA_SMALL_MAX ? small_alloc(a, class_of(nsize)) : big_resize(a, NULL, 0, nsize);
  if (!n) {
    /* a small block shrinking in place stays valid: frees find its page by address */
    return ptr && nsize < osize && osize <= LUAIO_ARENA_SMALL_MAX ? ptr : NULL;
  }
  if (ptr) {
    memcpy(n, ptr, osize < nsize ? osize : nsize);
    release(a, ptr, osize);
  }
  return n;
}

/* ---- the arena ------------------------------------------------------------ */

luaio_arena *luaio_arena_new(void) { return calloc(1, sizeof(luaio_arena)); }

void luaio_arena_closing(luaio_arena *a) { a->closing = 1; }

void luaio_arena_free(luaio_arena *a) {
  if (!a) return;
  for (size_t i = 0; i < a->chunks.len; i++) give_back_chunk(a->chunks.items[i]);
  free(a->chunks.items);
  free(a->released.items);
  free(a);
}

void luaio_arena_get_stats(const luaio_arena *a, luaio_arena_stats *out) {
  out->pages_resident = a->pages_resident;
  out->pages_cached = a->n_cached;
  out->small_blocks = a->small_blocks;
  out->big_bytes = a->big_bytes;
}

void luaio_arena_set_limit(luaio_arena *a, size_t bytes) { a->limit = bytes; }
