/*
** queue.c — the native core of aio.Queue, aio.LifoQueue and
** aio.PriorityQueue (queue.lua keeps the API and asyncio's queues.py
** semantics).
**
** A core (userdata) holds a queue's counts (items queued, unfinished,
** maxsize, shut down) and its two lists of waiting tasks. A FIFO or LIFO
** queue keeps its items in it too, in a table: a ring at slots 1..cap, a
** stack at 1..n, so they stay in its array part (ever-growing indices
** would rehash, and a slot set to nil is a slow path of Lua's own). Their
** put and get are C closures (queue_methods): the common case — room to
** put, an item to get — is one C call. Waiting goes to queue.lua, which
** suspends on a waiter list's table (the owner core.wake checks) and comes
** back here for the rest. A PriorityQueue keeps its heap in Lua and tells
** the core what it stored and took (queue_admit, queue_added, queue_taken).
**
** A put wakes one getter, which takes the item itself when it runs: an item
** is never handed to a task that may be cancelled before it looks at it.
**
** User values of a core: 1 the items, 2 the getters, 3 the putters (the
** waiter lists: tasks at slots first..last, like fifo.lua's lists).
*/
#include "luaio_int.h"
#include "task.h"

#define CORE_MT "luaio.queue_core"
#define CORE_MAGIC 0x51554555u   /* "QUEU" */
enum { UV_ITEMS = 1, UV_GETTERS = 2, UV_PUTTERS = 3 };
enum { KIND_FIFO, KIND_LIFO, KIND_HEAP };
enum { FIRST_RING_CAP = 16, MAX_PRESIZED_CAP = 1024 };

typedef struct { lua_Integer first, last; } waiter_list;

typedef struct {
  uint32_t magic;            /* CORE_MAGIC */
  const void *self;          /* the queue table: put/get's identity check */
  lua_Integer n;             /* items queued */
  lua_Integer unfinished;    /* put and not yet task_done */
  lua_Number maxsize;        /* <= 0: unbounded */
  lua_Integer head, cap;     /* FIFO ring: first item at slot head + 1 of cap */
  int kind, shutdown;
  waiter_list getters, putters;
} queue_core;

/* the core at idx (queue.lua's waiting calls these: no lookup by name) */
static queue_core *check_core(lua_State *L, int idx) {
  queue_core *q = lua_type(L, idx) == LUA_TUSERDATA ? lua_touserdata(L, idx) : NULL;
  if (!q || lua_rawlen(L, idx) != sizeof *q || q->magic != CORE_MAGIC) luaio_typeerror(L, idx, CORE_MT);
  return q;
}

static int has_room(const queue_core *q) {
  return !q->shutdown && (q->maxsize <= 0 || (lua_Number)q->n < q->maxsize);
}

/* ---- waiter lists ------------------------------------------------------ */

static waiter_list *list_of(queue_core *q, int uv) {
  return uv == UV_GETTERS ? &q->getters : &q->putters;
}

/* Wake the first task still parked on the list of core `qi` (user value
** uv); skips those that left (woken by a cancellation meanwhile). */
static void wake_first(lua_State *L, queue_core *q, int qi, int uv) {
  waiter_list *w = list_of(q, uv);
  lua_getiuservalue(L, qi, uv);                    /* +list */
  const void *owner = lua_topointer(L, -1);
  while (w->first <= w->last) {
    lua_rawgeti(L, -1, w->first);                  /* +task */
    luaio_task *t = luaio_to_task(L, -1);
    lua_pushnil(L);
    lua_rawseti(L, -3, w->first++);
    lua_pop(L, 1);                                 /* -task */
    if (t && luaio_parked_on(t, owner)) {
      luaio_wake(t, 0);
      break;
    }
  }
  if (w->first > w->last) w->first = 1, w->last = 0;
  lua_pop(L, 1);                                   /* -list */
}

static int list_arg(lua_State *L, int arg) {
  static const char *const names[] = {"get", "put", NULL};
  return luaio_checkoption(L, arg, NULL, names) == 0 ? UV_GETTERS : UV_PUTTERS;
}

/* queue_wait(core, "get"|"put", task): task joins the end of that list
** (it suspends on the list next: queue.lua) */
static int l_wait(lua_State *L) {
  queue_core *q = check_core(L, 1);
  int uv = list_arg(L, 2);
  luaio_task_check(L, 3);
  waiter_list *w = list_of(q, uv);
  lua_getiuservalue(L, 1, uv);
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, ++w->last);
  return 0;
}

/* queue_abandon(core, "get"|"put", task): a wait ended by a cancellation.
** The task leaves the list; a wake-up it may have consumed goes on to the
** next waiter when there is something for it. */
static int l_abandon(lua_State *L) {
  queue_core *q = check_core(L, 1);
  int uv = list_arg(L, 2);
  waiter_list *w = list_of(q, uv);
  lua_settop(L, 3);
  lua_getiuservalue(L, 1, uv);                     /* 4: list */
  for (lua_Integer i = w->first; i <= w->last; i++) {
    lua_rawgeti(L, 4, i);
    int found = lua_rawequal(L, -1, 3);
    lua_pop(L, 1);
    if (!found) continue;
    for (lua_Integer j = i; j < w->last; j++) {
      lua_rawgeti(L, 4, j + 1);
      lua_rawseti(L, 4, j);
    }
    lua_pushnil(L);
    lua_rawseti(L, 4, w->last--);
    break;
  }
  if (w->first > w->last) w->first = 1, w->last = 0;
  int something = uv == UV_GETTERS ? q->n > 0 || q->shutdown : has_room(q) || q->shutdown;
  if (something) wake_first(L, q, 1, uv);
  return 0;
}

/* ---- storing and taking (FIFO ring, LIFO stack) ------------------------ */

/* Double the ring: the wrapped part (slots 1..head) moves after the old end. */
static void ring_grow(lua_State *L, queue_core *q, int items) {
  for (lua_Integer i = 1; i <= q->head; i++) {
    lua_rawgeti(L, items, i);
    lua_rawseti(L, items, q->cap + i);
    lua_pushnil(L);
    lua_rawseti(L, items, i);
  }
  q->cap *= 2;
}

/* Store the value on top of the stack (popped): there is room. */
static void store(lua_State *L, queue_core *q, int items) {
  if (q->kind == KIND_LIFO) {
    lua_rawseti(L, items, ++q->n);
    return;
  }
  if (q->n == q->cap) ring_grow(L, q, items);
  lua_Integer slot = q->head + q->n;
  if (slot >= q->cap) slot -= q->cap;
  lua_rawseti(L, items, slot + 1);
  q->n++;
}

/* Push the next item, taken out: there is one. */
static void take(lua_State *L, queue_core *q, int items) {
  lua_Integer slot = q->kind == KIND_LIFO ? q->n : q->head + 1;
  lua_rawgeti(L, items, slot);
  lua_pushnil(L);
  lua_rawseti(L, items, slot);
  if (q->kind == KIND_FIFO && ++q->head == q->cap) q->head = 0;
  q->n--;
}

static int raise_shut(lua_State *L, const char *msg) {
  return luaio_error(L, "QueueShutDown", NULL, "%s", msg);
}

/* Room checks of a put, raising as put_nowait does. */
static void admit(lua_State *L, const queue_core *q) {
  if (q->shutdown) raise_shut(L, "the queue is shut down");
  if (!has_room(q)) luaio_error(L, "QueueFull", NULL, "the queue is full");
}

static void admit_take(lua_State *L, const queue_core *q) {
  if (q->n > 0) return;
  if (q->shutdown) raise_shut(L, "the queue is shut down and empty");
  luaio_error(L, "QueueEmpty", NULL, "the queue is empty");
}

/* An item was stored: count it, wake a getter. */
static void added(lua_State *L, queue_core *q, int qi) {
  q->unfinished++;
  if (q->getters.first <= q->getters.last) wake_first(L, q, qi, UV_GETTERS);
}

/* queue_put_now(core, x): put_nowait of a FIFO or LIFO queue */
static int l_put_now(lua_State *L) {
  queue_core *q = check_core(L, 1);
  admit(L, q);
  lua_settop(L, 2);
  lua_getiuservalue(L, 1, UV_ITEMS);               /* 3: items */
  lua_pushvalue(L, 2);
  store(L, q, 3);
  added(L, q, 1);
  return 0;
}

/* queue_get_now(core) -> x: get_nowait of a FIFO or LIFO queue */
static int l_get_now(lua_State *L) {
  queue_core *q = check_core(L, 1);
  admit_take(L, q);
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, UV_ITEMS);               /* 2: items */
  take(L, q, 2);
  if (q->putters.first <= q->putters.last) wake_first(L, q, 1, UV_PUTTERS);
  return 1;
}

/* A PriorityQueue's steps around its own store: queue_admit(core) raises
** as put_nowait does; queue_added(core) counts the item stored and wakes
** a getter; queue_admit_take(core) raises as get_nowait does;
** queue_taken(core) counts the item taken and wakes a putter. */
static int l_admit(lua_State *L) { admit(L, check_core(L, 1)); return 0; }

static int l_added(lua_State *L) {
  queue_core *q = check_core(L, 1);
  q->n++;
  added(L, q, 1);
  return 0;
}

static int l_admit_take(lua_State *L) { admit_take(L, check_core(L, 1)); return 0; }

static int l_taken(lua_State *L) {
  queue_core *q = check_core(L, 1);
  q->n--;
  if (q->putters.first <= q->putters.last) wake_first(L, q, 1, UV_PUTTERS);
  return 0;
}

/* ---- put and get: C closures, one per queue ---------------------------- */

/* The continuation of a call to another queue's own method: its results. */
static int call_results(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return lua_gettop(L);
}

/* Upvalues of put and get: 1 the core, 2 its items, 3 the Queue metatable,
** 4 queue.lua's wait for room / for an item: wait(self, core, task). */
enum { UP_CORE = 1, UP_ITEMS, UP_QUEUE_MT, UP_WAIT };

/* put or get called with another self: another queue's own method, or a
** bad argument. */
static int other_self(lua_State *L, const char *name) {
  if (!lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(UP_QUEUE_MT)))
    return luaio_typeerror(L, 1, "luaio.Queue");
  lua_pop(L, 1);
  lua_pushstring(L, name);
  if (lua_rawget(L, 1) != LUA_TFUNCTION)
    return luaL_error(L, "this queue's %s method was removed", name);
  lua_insert(L, 1);
  lua_callk(L, lua_gettop(L) - 1, LUA_MULTRET, 0, call_results);
  return call_results(L, LUA_OK, 0);
}

/* Suspend in queue.lua's wait (upvalue UP_WAIT) until k may go ahead: the
** running task joins a waiter list there, and leaves it when cancelled. */
static int wait_then(lua_State *L, const char *fname, lua_KFunction k) {
  luaio_task *me = luaio_need_task(L, fname);
  lua_pushvalue(L, lua_upvalueindex(UP_WAIT));
  lua_pushvalue(L, 1);
  lua_pushvalue(L, lua_upvalueindex(UP_CORE));
  luaio_task_push(L, me);
  lua_callk(L, 3, 0, 0, k);
  return k(L, LUA_OK, 0);
}

/* after waiting: x (at 2) goes in, or the put raises */
static int put_after_wait(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  queue_core *q = lua_touserdata(L, lua_upvalueindex(UP_CORE));
  admit(L, q);
  lua_settop(L, 2);
  store(L, q, lua_upvalueindex(UP_ITEMS));
  added(L, q, lua_upvalueindex(UP_CORE));
  return 0;
}

/* put(self, x) ⏸ */
static int put_method(lua_State *L) {
  queue_core *q = lua_touserdata(L, lua_upvalueindex(UP_CORE));
  if (lua_topointer(L, 1) != q->self) return other_self(L, "put");
  if (lua_gettop(L) != 2) lua_settop(L, 2);       /* x on top */
  if (has_room(q)) {
    store(L, q, lua_upvalueindex(UP_ITEMS));
    added(L, q, lua_upvalueindex(UP_CORE));
    return 0;
  }
  if (q->shutdown) return raise_shut(L, "the queue is shut down");
  return wait_then(L, "queue:put", put_after_wait);
}

/* Push the next item, taken out, and wake a putter: there is an item. */
static int take_next(lua_State *L, queue_core *q) {
  take(L, q, lua_upvalueindex(UP_ITEMS));
  if (q->putters.first <= q->putters.last) wake_first(L, q, lua_upvalueindex(UP_CORE), UV_PUTTERS);
  return 1;
}

/* after waiting: the next item, or the get raises (shut down and empty) */
static int get_after_wait(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  queue_core *q = lua_touserdata(L, lua_upvalueindex(UP_CORE));
  admit_take(L, q);
  return take_next(L, q);
}

/* get(self) ⏸ -> x */
static int get_method(lua_State *L) {
  queue_core *q = lua_touserdata(L, lua_upvalueindex(UP_CORE));
  if (lua_topointer(L, 1) != q->self) return other_self(L, "get");
  if (q->n > 0) return take_next(L, q);
  if (q->shutdown) return raise_shut(L, "the queue is shut down and empty");
  return wait_then(L, "queue:get", get_after_wait);
}

/* queue_methods(core, Queue, wait_put, wait_get) -> put, get: the queue's
** own put and get (FIFO and LIFO queues) */
static int l_methods(lua_State *L) {
  queue_core *q = check_core(L, 1);
  luaio_argexpected(L, q->kind != KIND_HEAP, 1, "FIFO or LIFO queue core");
  luaio_checktype(L, 2, LUA_TTABLE);
  luaio_checktype(L, 3, LUA_TFUNCTION);
  luaio_checktype(L, 4, LUA_TFUNCTION);
  for (int i = 0; i < 2; i++) {
    lua_pushvalue(L, 1);
    lua_getiuservalue(L, 1, UV_ITEMS);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3 + i);
    lua_pushcclosure(L, i == 0 ? put_method : get_method, 4);
  }
  return 2;
}

/* ---- the rest ---------------------------------------------------------- */

/* queue_new(self, "fifo"|"lifo"|"heap", maxsize) -> core, getters, putters
** (the waiter lists: the owners a waiting task suspends on) */
static int l_new(lua_State *L) {
  static const char *const kinds[] = {"fifo", "lifo", "heap", NULL};
  luaio_checktype(L, 1, LUA_TTABLE);
  int kind = luaio_checkoption(L, 2, NULL, kinds);
  lua_Number maxsize = luaio_checknumber(L, 3);
  queue_core *q = lua_newuserdatauv(L, sizeof *q, 3);
  *q = (queue_core){ .magic = CORE_MAGIC, .self = lua_topointer(L, 1), .maxsize = maxsize, .kind = kind,
                     .cap = FIRST_RING_CAP, .getters = {1, 0}, .putters = {1, 0} };
  while (q->cap < maxsize && q->cap < MAX_PRESIZED_CAP) q->cap *= 2;
  luaL_setmetatable(L, CORE_MT);
  lua_createtable(L, kind == KIND_HEAP ? 0 : (int)q->cap, 0);
  lua_setiuservalue(L, -2, UV_ITEMS);
  for (int uv = UV_GETTERS; uv <= UV_PUTTERS; uv++) {
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 4, uv);                   /* 4: the core */
  }
  return 3;
}

/* queue_state(core) -> items queued, unfinished, shut down */
static int l_state(lua_State *L) {
  queue_core *q = check_core(L, 1);
  lua_pushinteger(L, q->n);
  lua_pushinteger(L, q->unfinished);
  lua_pushboolean(L, q->shutdown);
  return 3;
}

/* queue_task_done(core) -> whether no item is unfinished now */
static int l_task_done(lua_State *L) {
  queue_core *q = check_core(L, 1);
  if (q->unfinished <= 0)
    return luaio_error(L, "ValueError", NULL, "task_done() called more times than there were items");
  lua_pushboolean(L, --q->unfinished == 0);
  return 1;
}

/* queue_shutdown(core, immediate) -> whether no item is unfinished: puts
** raise from now on, gets once the queue is empty; immediate drops the
** items (each counts as done; a PriorityQueue drops its own). Then
** queue_wake_all(core) wakes every waiter (after the joiners: queue.lua). */
static int l_shutdown(lua_State *L) {
  queue_core *q = check_core(L, 1);
  q->shutdown = 1;
  if (lua_toboolean(L, 2)) {
    if (q->kind != KIND_HEAP) {
      lua_Integer last = q->kind == KIND_LIFO ? q->n : q->cap;   /* a stack has no cap */
      lua_getiuservalue(L, 1, UV_ITEMS);
      for (lua_Integer i = 1; i <= last; i++) {
        lua_pushnil(L);
        lua_rawseti(L, -2, i);
      }
      lua_pop(L, 1);
    }
    q->unfinished = q->unfinished > q->n ? q->unfinished - q->n : 0;
    q->n = q->head = 0;
  }
  lua_pushboolean(L, q->unfinished == 0);
  return 1;
}

static int l_wake_all(lua_State *L) {
  queue_core *q = check_core(L, 1);
  while (q->getters.first <= q->getters.last) wake_first(L, q, 1, UV_GETTERS);
  while (q->putters.first <= q->putters.last) wake_first(L, q, 1, UV_PUTTERS);
  return 0;
}

void luaio_open_queue(lua_State *L, luaio_host *h) {
  (void)h;
  static const luaL_Reg funcs[] = {
    {"queue_new", l_new}, {"queue_methods", l_methods}, {"queue_state", l_state},
    {"queue_put_now", l_put_now}, {"queue_get_now", l_get_now},
    {"queue_admit", l_admit}, {"queue_added", l_added},
    {"queue_admit_take", l_admit_take}, {"queue_taken", l_taken},
    {"queue_wait", l_wait}, {"queue_abandon", l_abandon},
    {"queue_task_done", l_task_done}, {"queue_shutdown", l_shutdown},
    {"queue_wake_all", l_wake_all}, {NULL, NULL}};
  luaL_newmetatable(L, CORE_MT);
  lua_pop(L, 1);
  luaL_setfuncs(L, funcs, 0);
}
