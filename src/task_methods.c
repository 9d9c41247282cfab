/*
** task_methods.c — what Lua and C see of a Task: its methods (t:wait(),
** t:cancel(), t:result(), ...), its fields (name, id, user fields, kept in
** the extras), the public C accessors (include/luaio.h) and the core
** functions is_task, current_task and all_tasks. The Task itself is task.c.
*/
#include <string.h>
#include "task.h"

/* ---- Task methods ------------------------------------------------------ */

static const char *status_names[] = {"pending", "pending", "pending", "done", "failed", "cancelled"};

const char *luaio_task_status(luaio_task *t) { return status_names[t->state]; }

int luaio_task_done(luaio_task *t) { return t->state >= TASK_DONE; }

int luaio_task_results(luaio_task *t, lua_State *L) {
  if (t->state < TASK_DONE) return -1;
  int n = t->nargs, top = lua_gettop(t->co);
  if (!lua_checkstack(t->co, n) || !lua_checkstack(L, n)) luaL_error(L, "too many results");
  for (int i = top - n + 1; i <= top; i++) lua_pushvalue(t->co, i);
  lua_xmove(t->co, L, n);
  t->flags |= TF_RETRIEVED;
  return n;
}

const char *luaio_task_traceback(luaio_task *t, lua_State *L) {
  const char *tb = NULL;
  if (!(t->flags & TF_HAS_EXTRAS)) return NULL;
  /* the task is reachable from the caller's stack or the anchors */
  lua_getiuservalue(L, -1, 2);
  if (lua_getfield(L, -1, "traceback") == LUA_TSTRING) tb = lua_tostring(L, -1);
  lua_pop(L, 2);   /* the string stays alive in the extras table */
  return tb;
}

/* Push results, or raise the task's error. */
static int task_outcome(lua_State *L, luaio_task *t) {
  int n = luaio_task_results(t, L);
  if (t->state == TASK_DONE) return n;
  return lua_error(L);
}

/* Cancel t with the message of the error on top of L. */
static void pass_cancel(lua_State *L, luaio_task *t) {
  lua_getfield(L, -1, "message");
  luaio_cancel(L, t, lua_gettop(L));
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  luaio_task *self = luaio_current(L);
  luaio_task *t = (luaio_task *)ctx;
  if (self->flags & TF_RAISE) {
    /* the waiter was cancelled: as `await task` in asyncio, the cancellation
    ** goes to t (same message) and the waiter keeps waiting for t's outcome,
    ** which it then gets (aio.shield is the way around). */
    self->flags &= ~TF_RAISE;
    if (!luaio_is_cancelled_error(L, -1) || t->state >= TASK_DONE) return lua_error(L);
    pass_cancel(L, t);
    return luaio_wait_task(L, self, t, wait_k);    /* still in t's callbacks */
  }
  return task_outcome(L, t);
}

static int t_wait(lua_State *L) {
  luaio_task *t = luaio_task_check(L, 1);
  luaio_task *self = luaio_need_task(L, NULL);   /* even for a finished task: t:result() is the way outside */
  if (t->state >= TASK_DONE) return task_outcome(L, t);
  if (self == t) return luaio_error(L, "InvalidStateError", NULL, "a task cannot wait for itself");
  if (self->flags & TF_CANCEL) {       /* a cancel asked while running: it goes to t */
    self->flags &= ~TF_CANCEL;
    luaio_push_cancel_error(L, self);
    pass_cancel(L, t);
  }
  luaio_task_push(L, self);
  luaio_task_add_callback(L, 1, -1);
  return luaio_wait_task(L, self, t, wait_k);
}

static int t_cancel(lua_State *L) {
  luaio_task *t = luaio_task_check(L, 1);
  lua_pushboolean(L, luaio_cancel(L, t, lua_isnoneornil(L, 2) ? 0 : 2));
  return 1;
}

static int t_uncancel(lua_State *L) {
  luaio_task *t = luaio_task_check(L, 1);
  if (t->cancels > 0 && --t->cancels == 0) t->flags &= ~TF_CANCEL;   /* as asyncio 3.13 */
  lua_pushinteger(L, t->cancels);
  return 1;
}

static int t_cancelling(lua_State *L) {
  lua_pushinteger(L, luaio_task_check(L, 1)->cancels);
  return 1;
}

static int t_done(lua_State *L) {
  lua_pushboolean(L, luaio_task_check(L, 1)->state >= TASK_DONE);
  return 1;
}

static int t_cancelled(lua_State *L) {
  lua_pushboolean(L, luaio_task_check(L, 1)->state == TASK_CANCELLED);
  return 1;
}

static int t_status(lua_State *L) {
  lua_pushstring(L, luaio_task_status(luaio_task_check(L, 1)));
  return 1;
}

static int t_result(lua_State *L) {
  luaio_task *t = luaio_task_check(L, 1);
  if (t->state < TASK_DONE) return luaio_error(L, "InvalidStateError", NULL, "result is not ready: the task is pending");
  return task_outcome(L, t);
}

static int t_error(lua_State *L) {
  luaio_task *t = luaio_task_check(L, 1);
  if (t->state < TASK_DONE) return luaio_error(L, "InvalidStateError", NULL, "the task is pending");
  t->flags |= TF_RETRIEVED;
  if (t->state == TASK_DONE) { lua_pushnil(L); return 1; }
  lua_pushvalue(t->co, -1);
  lua_xmove(t->co, L, 1);
  return 1;
}

static int t_add_done_callback(lua_State *L) {
  luaio_task *t = luaio_task_check(L, 1);
  luaio_checktype(L, 2, LUA_TFUNCTION);
  if (t->state >= TASK_DONE) {        /* already done: call it right away */
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 1);
    luaio_task_call_callback(L);
    return 0;
  }
  luaio_task_add_callback(L, 1, 2);
  return 0;
}

/* t:traceback() -> a pending task's stack where it waits (or runs); a
** finished one's error traceback (nil when it returned) */
static int t_traceback(lua_State *L) {
  luaio_task *t = luaio_task_check(L, 1);
  if (t->state < TASK_DONE) {
    luaio_task_where(L, t);
    return 1;
  }
  if (t->state != TASK_DONE && luaio_task_extras(L, 1, 0)) {
    lua_getfield(L, -1, "traceback");
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

static int is_key(lua_State *L, int idx, const char *name) {
  return lua_type(L, idx) == LUA_TSTRING && strcmp(lua_tostring(L, idx), name) == 0;
}

/* Methods first; other fields (name, user fields) live in the extras. */
static int t_index(lua_State *L) {
  luaio_task *t = luaio_task_check(L, 1);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;   /* a method */
  lua_pop(L, 1);
  if (luaio_task_extras(L, 1, 0)) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, -2) != LUA_TNIL && lua_type(L, 2) == LUA_TSTRING &&
        !is_key(L, 2, "traceback") && !is_key(L, 2, "cancel_error"))
      return 1;
    lua_pop(L, 2);
  }
  if (is_key(L, 2, "name")) {
    lua_pushfstring(L, "Task-%d", (int)t->id);
    return 1;
  }
  if (is_key(L, 2, "id")) {
    lua_pushinteger(L, t->id);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

/* User fields (name, and anything a program attaches) live in the extras. */
static int t_newindex(lua_State *L) {
  luaio_task_check(L, 1);
  if (lua_type(L, 2) != LUA_TSTRING)
    return luaL_error(L, "task fields are named by strings, got %s", luaL_typename(L, 2));
  const char *k = lua_tostring(L, 2);
  if (strcmp(k, "callbacks") == 0 || strcmp(k, "cancel_error") == 0 || strcmp(k, "traceback") == 0)
    return luaL_error(L, "task field '%s' is reserved", k);
  if (strcmp(k, "name") == 0 && !lua_isstring(L, 3))
    return luaL_error(L, "task name must be a string, got %s", luaL_typename(L, 3));
  luaio_task_extras(L, 1, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_rawset(L, -3);
  return 0;
}

static int t_tostring(lua_State *L) {
  luaio_task *t = luaio_task_check(L, 1);
  lua_getfield(L, 1, "name");
  lua_pushfstring(L, "Task<%s %s>", lua_tostring(L, -1), luaio_task_status(t));
  return 1;
}

/* ---- core functions on tasks ------------------------------------------------ */

luaio_task *luaio_check_task(lua_State *L, int idx) { return luaio_task_check(L, idx); }

static int l_is_task(lua_State *L) {
  lua_pushboolean(L, luaio_to_task(L, 1) != NULL);
  return 1;
}

static int l_current_task(lua_State *L) {
  luaio_task *t = luaio_current(L);
  if (t) luaio_task_push(L, t); else lua_pushnil(L);
  return 1;
}

static int l_all_tasks(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  lua_createtable(L, (int)h->pending, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->anchors.ref);
  lua_Integer n = 0;
  for (uint32_t i = 1; i <= h->anchors.top; i++) {
    if (lua_rawgeti(L, -1, i) == LUA_TUSERDATA) lua_rawseti(L, -3, ++n);
    else lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 1;
}

/* The Task metatables; core.task_methods, is_task, current_task, all_tasks. */
void luaio_open_task(lua_State *L, luaio_host *h) {
  static const luaL_Reg methods[] = {
    {"wait", t_wait}, {"cancel", t_cancel}, {"uncancel", t_uncancel},
    {"cancelling", t_cancelling}, {"done", t_done}, {"cancelled", t_cancelled},
    {"status", t_status}, {"result", t_result}, {"error", t_error},
    {"add_done_callback", t_add_done_callback}, {"traceback", t_traceback},
    {NULL, NULL}};
  /* Two metatables alike but for __gc: a finalizer keeps an object and all it
  ** reaches (the coroutine, its stack) alive one more GC cycle, so only a
  ** task that failed, whose error may go unretrieved, is given one. */
  luaL_newlib(L, methods);
  for (int failed = 0; failed <= 1; failed++) {
    luaL_newmetatable(L, failed ? LUAIO_FAILED_TASK_MT : LUAIO_TASK_MT);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "methods");
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, t_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, t_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, t_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "luaio.Task");
    lua_setfield(L, -2, "__name");
    if (failed) {
      lua_pushcfunction(L, luaio_task_gc);
      lua_setfield(L, -2, "__gc");
      lua_pop(L, 1);
    } else {
      h->task_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
  }
  lua_setfield(L, -2, "task_methods");
  static const luaL_Reg funcs[] = {
    {"is_task", l_is_task}, {"current_task", l_current_task}, {"all_tasks", l_all_tasks},
    {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
