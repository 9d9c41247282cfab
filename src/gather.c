/*
** gather.c — the latch behind aio.gather: one done callback shared by all
** the gathered tasks, counted in C. A Lua closure per gather, called
** through a protected call as each task ends, cost more than the rest of
** a short task's life; the latch is a userdata that task.c's callback
** runner recognises and settles without running Lua code.
**
** The policy stays in combinators.lua: it waits on the latch with
** core.suspend(latch, "gather"), cancels the tasks when it must, and
** raises or returns. Here: watching, counting, the first failure, waking
** the gathering task, and collecting the results.
**
** A latch has two user values: 1 = the gathering task (kept alive, so the
** latch never points at a collected Task), 2 = the first task that failed
** or was cancelled, when failures stop the gather.
*/
#include <string.h>
#include "task.h"

#define LATCH_MAGIC 0x6c746368u   /* "ltch": not LUAIO_TASK_MAGIC */

typedef struct {
  uint32_t magic;               /* first, as in luaio_task: task.c tells them apart */
  uint32_t pending;             /* watched tasks (with repeats) not ended yet */
  luaio_task *waiter;           /* the gathering task (user value 1) */
  int stop_on_error;            /* not return_exceptions */
  int failed;                   /* user value 2 holds the first failed task */
} gather_latch;

int luaio_is_latch(void *p) { return p && *(uint32_t *)p == LATCH_MAGIC; }

static gather_latch *check_latch(lua_State *L, int idx) {
  gather_latch *g = lua_touserdata(L, idx);
  if (!g || lua_rawlen(L, idx) != sizeof *g || g->magic != LATCH_MAGIC) luaio_typeerror(L, idx, "gather latch");
  return g;
}

/* Note that watched task t ended (failed ones are retrieved: gather
** reports them) and wake the gatherer when all have, or one failed.
** [-0, +0]: the latch is at -1 and stays; t (no longer anchored) is at ti. */
void luaio_latch_fire(lua_State *L, luaio_task *t, int ti) {
  gather_latch *g = lua_touserdata(L, -1);
  g->pending--;
  if (t->state != TASK_DONE) {
    t->flags |= TF_RETRIEVED;
    if (g->stop_on_error && !g->failed) {
      lua_pushvalue(L, ti);
      lua_setiuservalue(L, -2, 2);
      g->failed = 1;
    }
  }
  luaio_task *w = g->waiter;
  if ((g->pending == 0 || g->failed) && w->state == TASK_WAITING && !(w->flags & TF_NATIVE_WAIT) && w->owner == g)
    luaio_wake(w, 0);
}

/* core.gather_latch(me, tasks, n, stop_on_error) -> latch: watches
** tasks[1..n] (all Tasks); a task already ended is counted at once. */
static int l_gather_latch(lua_State *L) {
  luaio_task *me = luaio_task_check(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer n = luaL_checkinteger(L, 3);
  gather_latch *g = lua_newuserdatauv(L, sizeof *g, 2);
  memset(g, 0, sizeof *g);
  g->magic = LATCH_MAGIC;
  g->waiter = me;
  g->stop_on_error = lua_toboolean(L, 4);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  int latch = lua_gettop(L);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    luaio_task *t = luaio_task_check(L, -1);
    if (t->state < TASK_DONE) {
      g->pending++;
      luaio_task_add_callback(L, -1, latch);
    } else if (t->state != TASK_DONE && g->stop_on_error && !g->failed) {
      lua_pushvalue(L, -1);
      lua_setiuservalue(L, latch, 2);
      g->failed = 1;
    }
    lua_pop(L, 1);
  }
  return 1;
}

/* core.gather_state(latch) -> settled, first_failed|nil */
static int l_gather_state(lua_State *L) {
  gather_latch *g = check_latch(L, 1);
  lua_pushboolean(L, g->pending == 0 || g->failed);
  lua_getiuservalue(L, 1, 2);
  return 2;
}

/* Whether any of tasks[1..n] (ended) gives a value: a result or an error. */
static int any_value(lua_State *L, lua_Integer n) {
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    luaio_task *t = luaio_task_check(L, -1);
    lua_pop(L, 1);
    if (t->state != TASK_DONE || (t->nargs > 0 && !lua_isnil(t->co, lua_gettop(t->co) - t->nargs + 1))) return 1;
  }
  return 0;
}

/* core.gather_results(tasks, n) -> { n = n, first result or error of each }
** (sized for n values only when there are some: tasks that return nothing,
** sleepers say, leave an empty table) */
static int l_gather_results(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = luaL_checkinteger(L, 2);
  lua_createtable(L, n > 0 && n < (1 << 26) && any_value(L, n) ? (int)n : 0, 1);
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    luaio_task *t = luaio_task_check(L, -1);
    lua_pop(L, 1);
    if (t->state < TASK_DONE) return luaio_error(L, "InvalidStateError", NULL, "the task is pending");
    t->flags |= TF_RETRIEVED;
    lua_State *co = t->co;
    if (t->state != TASK_DONE) lua_pushvalue(co, -1);          /* its error */
    else if (t->nargs > 0) lua_pushvalue(co, lua_gettop(co) - t->nargs + 1);
    else continue;
    lua_xmove(co, L, 1);
    lua_rawseti(L, -2, i);
  }
  return 1;
}

void luaio_open_gather(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"gather_latch", l_gather_latch}, {"gather_state", l_gather_state},
    {"gather_results", l_gather_results}, {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
}
