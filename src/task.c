/*
** task.c — the Task userdata: its anchor while pending, its extras (rare
** fields in a lazily made table), its done callbacks, the tracebacks of
** its errors and the reports of errors nobody retrieved. How a task runs, waits and is woken
** is sched.c; its methods and core functions are task_methods.c.
**
** A Task is a full userdata holding a luaio_task, with two user values:
** 1 = its coroutine, 2 = its extras table, or its only done callback
** (TF_ONE_CALLBACK: gather and wait add one per task, without a table).
*/
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "task.h"

/* ---- anchoring pending tasks ------------------------------------------ */

static uint32_t anchor(lua_State *L, luaio_host *h, int idx) {
  uint32_t slot = h->anchors.free_len ? h->anchors.free[--h->anchors.free_len] : ++h->anchors.top;
  idx = lua_absindex(L, idx);
  assert(slot >= 1 && slot <= h->anchors.top);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->anchors.ref);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
  h->pending++;
  return slot;
}

static void unanchor(lua_State *L, luaio_host *h, uint32_t slot) {
  assert(slot >= 1 && slot <= h->anchors.top);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->anchors.ref);
  lua_pushnil(L);
  lua_rawseti(L, -2, slot);
  lua_pop(L, 1);
  if (h->anchors.free_len == h->anchors.free_cap) {
    uint32_t cap = h->anchors.free_cap ? h->anchors.free_cap * 2 : 256;
    uint32_t *slots = realloc(h->anchors.free, cap * sizeof *slots);
    if (!slots) luaio_oom("the task anchors");
    h->anchors.free = slots;
    h->anchors.free_cap = cap;
  }
  h->anchors.free[h->anchors.free_len++] = slot;
  h->pending--;
}

void luaio_task_free_anchors(luaio_host *h) {
  free(h->anchors.free);
  h->anchors.free = NULL;
}

void luaio_push_task(lua_State *L, luaio_task *t) { luaio_task_push(L, t); }

/* ---- extras and cancellation errors ------------------------------------- */

int luaio_task_extras(lua_State *L, int idx, int create) {
  luaio_task *t = lua_touserdata(L, idx);
  if (t->flags & TF_HAS_EXTRAS) { lua_getiuservalue(L, idx, 2); return 1; }
  if (!create) return 0;
  idx = lua_absindex(L, idx);
  lua_createtable(L, 0, 2);
  if (t->flags & TF_ONE_CALLBACK) {    /* the lone callback moves into the table */
    lua_createtable(L, 2, 0);
    lua_getiuservalue(L, idx, 2);
    lua_rawseti(L, -2, 1);
    lua_setfield(L, -2, "callbacks");
    t->flags &= ~TF_ONE_CALLBACK;
  }
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, idx, 2);
  t->flags |= TF_HAS_EXTRAS;
  return 1;
}

void luaio_push_cancelled(lua_State *L, lua_State *msgL, int msg_idx) {
  const char *msg = msg_idx ? lua_tostring(msgL, msg_idx) : NULL;
  luaio_push_error(L, "CancelledError", NULL, "%s", msg ? msg : "cancelled");
}

void luaio_push_cancel_error(lua_State *L, luaio_task *t) {
  luaio_task_push(L, t);
  luaio_task_extras(L, -1, 1);
  lua_getfield(L, -1, "cancel_error");
  lua_replace(L, -3);
  lua_pop(L, 1);
}

int luaio_is_cancelled_error(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  lua_getfield(L, idx, "name");
  int yes = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "CancelledError") == 0;
  lua_pop(L, 1);
  return yes;
}

/* ---- the coroutine's body and the traceback of its error ---------------- */

/* Re-raising another task's error (aio.run at a script's top level): its
** traceback, where the error really happened, is the one to keep. The
** traceback at tb, the task's extras at tb+2, its name at tb+3. */
static int keep_reraised(lua_State *L, int tb) {
  lua_getfield(L, tb + 2, "_reraised_error");
  int reraised = lua_rawequal(L, -1, 1);
  lua_pop(L, 1);
  if (!reraised || lua_getfield(L, tb + 2, "_reraised_traceback") != LUA_TSTRING) return 0;
  lua_pushfstring(L, "%s\n\tre-raised in task %s", lua_tostring(L, -1), lua_tostring(L, tb + 3));
  lua_replace(L, tb);
  lua_settop(L, tb + 2);
  lua_pushnil(L);
  lua_setfield(L, tb + 2, "_reraised_error");
  lua_pushvalue(L, tb);
  lua_setfield(L, tb + 2, "traceback");
  return 1;
}

/* A luaio error table carries its traceback (at tb) too. */
static void stamp_error(lua_State *L, int tb) {
  if (lua_type(L, 1) != LUA_TTABLE || !lua_getmetatable(L, 1)) return;
  luaL_getmetatable(L, LUAIO_ERROR_MT);
  int ours = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (ours && lua_getfield(L, 1, "traceback") == LUA_TNIL) {
    lua_pushvalue(L, tb);
    lua_setfield(L, 1, "traceback");
  }
  lua_pop(L, 1);
}

/* Records the traceback where a task's error was raised; every traceback
** names its task, and in debug mode where it was spawned. */
static int task_msgh(lua_State *L) {
  luaio_task *t = luaio_current(L);
  const char *msg = NULL;
  if (lua_type(L, 1) == LUA_TSTRING) msg = lua_tostring(L, 1);
  else if (luaL_callmeta(L, 1, "__tostring")) msg = lua_tostring(L, -1);
  luaL_traceback(L, L, msg ? msg : "(error object)", 1);
  if (t == NULL) return lua_settop(L, 1), 1;
  int tb = lua_gettop(L);
  luaio_task_push(L, t);
  luaio_task_extras(L, -1, 1);                   /* tb+2 */
  lua_getfield(L, tb + 1, "name");               /* tb+3 */
  if (keep_reraised(L, tb)) return lua_settop(L, 1), 1;
  lua_settop(L, tb + 3);
  if (lua_getfield(L, tb + 2, "spawned_at") == LUA_TSTRING)
    lua_pushfstring(L, "%s\n\tin task %s, spawned at %s", lua_tostring(L, tb), lua_tostring(L, tb + 3), lua_tostring(L, tb + 4));
  else
    lua_pushfstring(L, "%s\n\tin task %s", lua_tostring(L, tb), lua_tostring(L, tb + 3));
  lua_replace(L, tb);
  lua_settop(L, tb + 2);
  lua_pushvalue(L, tb);
  lua_setfield(L, -2, "traceback");
  stamp_error(L, tb);
  lua_settop(L, 1);
  return 1;
}

static int task_body_k(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  luaio_task *t = luaio_current(L);
  if (status == LUA_OK || status == LUA_YIELD) {
    t->state = TASK_DONE;
    return lua_gettop(L) - 1;          /* all but the message handler */
  }
  t->state = luaio_is_cancelled_error(L, -1) ? TASK_CANCELLED : TASK_FAILED;
  return 1;
}

/* The coroutine's main function: fn(...) under a pcall, so that errors
** unwind inside the coroutine and `<close>` handlers may still wait. */
static int task_body(lua_State *L) {
  lua_pushcfunction(L, task_msgh);
  lua_insert(L, 1);
  return task_body_k(L, lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 1, 0, task_body_k), 0);
}

/* Whether co is the coroutine of a task that has not ended: its outermost
** frame (or, before it started, the function waiting at its bottom) is
** task_body. Walks co's frames: for rare checks only. */
int luaio_is_task_thread(lua_State *co) {
  lua_Debug ar;
  int level = 0;
  while (lua_getstack(co, level, &ar)) level++;
  if (level == 0)                       /* no frame: not started, or dead */
    return lua_status(co) == LUA_OK && lua_gettop(co) >= 1 && lua_tocfunction(co, 1) == task_body;
  if (!lua_checkstack(co, 1) || !lua_getstack(co, level - 1, &ar) || !lua_getinfo(co, "f", &ar)) return 0;
  int yes = lua_tocfunction(co, -1) == task_body;
  lua_pop(co, 1);
  return yes;
}

luaio_task *luaio_task_new(lua_State *L, luaio_host *h) {
  luaio_task *t = lua_newuserdatauv(L, sizeof *t, 2);
  memset(t, 0, sizeof *t);
  t->magic = LUAIO_TASK_MAGIC;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->task_mt_ref);
  lua_setmetatable(L, -2);
  t->host = h;
  t->co = lua_newthread(L);
  lua_setiuservalue(L, -2, 1);
  t->id = ++h->task_seq;
  t->anchor = anchor(L, h, -1);
  lua_checkstack(t->co, lua_gettop(L) + 1);
  lua_pushcfunction(t->co, task_body);
  return t;
}

/* ---- debug mode ----------------------------------------------------------- */

void luaio_task_note_spawn(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  luaio_push_user_where(L);
  luaio_task_extras(L, idx, 1);
  lua_insert(L, -2);
  lua_setfield(L, -2, "spawned_at");
  lua_pushnumber(L, luaio_now(luaio_to_task(L, idx)->host));
  lua_setfield(L, -2, "spawned_time");
  lua_pop(L, 1);
}

/* ---- done callbacks ------------------------------------------------------- */

/* Call the function at -2 with the task at -1, protected; an error is logged. */
void luaio_task_call_callback(lua_State *L) {
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) luaio_report_callback_error(L, "a done callback");
}

/* Pop a done callback of t (the task at ti) and run it: wake a waiting
** Task, or call a function with the task. */
static void run_callback(lua_State *L, luaio_task *t, int ti) {
  if (lua_type(L, -1) == LUA_TUSERDATA) {
    if (luaio_is_latch(lua_touserdata(L, -1))) {
      luaio_latch_fire(L, t, ti);
      lua_pop(L, 1);
      return;
    }
    luaio_task *w = lua_touserdata(L, -1);
    if (w->state == TASK_WAITING && !(w->flags & TF_NATIVE_WAIT) && w->owner == t) { w->owner = NULL; luaio_ready(w); }
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, ti);
  luaio_task_call_callback(L);
}

static void run_callbacks(lua_State *L, luaio_task *t, int ti) {
  if (t->flags & TF_ONE_CALLBACK) {
    t->flags &= ~TF_ONE_CALLBACK;
    lua_getiuservalue(L, ti, 2);
    lua_pushnil(L);
    lua_setiuservalue(L, ti, 2);
    run_callback(L, t, ti);
  } else if (t->flags & TF_HAS_EXTRAS) {
    lua_getiuservalue(L, ti, 2);
    if (lua_getfield(L, -1, "callbacks") == LUA_TTABLE) {
      lua_pushnil(L);
      lua_setfield(L, -3, "callbacks");
      lua_Integer n = luaL_len(L, -1);
      for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        run_callback(L, t, ti);
      }
    }
    lua_pop(L, 2);
  }
}

/* Add the value at value_idx to the callbacks of the Task at task_idx. */
void luaio_task_add_callback(lua_State *L, int task_idx, int value_idx) {
  luaio_task *t = lua_touserdata(L, task_idx);
  task_idx = lua_absindex(L, task_idx);
  value_idx = lua_absindex(L, value_idx);
  if (!(t->flags & (TF_HAS_EXTRAS | TF_ONE_CALLBACK))) {
    lua_pushvalue(L, value_idx);
    lua_setiuservalue(L, task_idx, 2);
    t->flags |= TF_ONE_CALLBACK;
    return;
  }
  luaio_task_extras(L, task_idx, 1);
  if (lua_getfield(L, -1, "callbacks") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "callbacks");
  }
  lua_pushvalue(L, value_idx);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_pop(L, 2);
}

void luaio_task_ended(lua_State *L, luaio_task *t) {
  luaio_host *h = t->host;
  assert(t->state >= TASK_DONE && t->anchor != 0);
  luaio_task_push(L, t);
  int ti = lua_gettop(L);
  if (t->state == TASK_FAILED && !(t->flags & TF_MAIN)) {
    luaL_setmetatable(L, LUAIO_FAILED_TASK_MT);   /* the task is on top: report if never retrieved */
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->failed_ref);
    lua_pushvalue(L, ti);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  unanchor(L, h, t->anchor);
  t->anchor = 0;
  run_callbacks(L, t, ti);
  lua_settop(L, ti - 1);
}

/* ---- errors nobody retrieved ---------------------------------------------- */

/* Report the task at idx if it failed and nobody retrieved its error. */
int luaio_uncaught_report(lua_State *L, int idx) {
  luaio_task *t = lua_touserdata(L, idx);
  if (t->state != TASK_FAILED || (t->flags & (TF_RETRIEVED | TF_MAIN))) return 0;
  t->flags |= TF_RETRIEVED;
  int top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  lua_getfield(L, idx, "name");
  const char *name = lua_tostring(L, -1);
  const char *tb = NULL;
  if (t->flags & TF_HAS_EXTRAS) {
    lua_getiuservalue(L, idx, 2);
    if (lua_getfield(L, -1, "traceback") == LUA_TSTRING) tb = lua_tostring(L, -1);
  }
  if (!tb && lua_gettop(t->co) > 0) {   /* the error object itself */
    lua_pushvalue(t->co, -1);
    lua_xmove(t->co, L, 1);
    tb = luaL_tolstring(L, -1, NULL);
  }
  fprintf(stderr, "Task exception was never retrieved: %s: %s\n", name, tb ? tb : "?");
  fflush(stderr);
  lua_settop(L, top);
  return 1;
}

/* At loop close: report the failed tasks whose error nobody looked at,
** including those still referenced (the collector would report the rest). */
void luaio_report_unretrieved(luaio_host *h) {
  lua_State *L = h->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->failed_ref);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    luaio_uncaught_report(L, -1);
  }
  lua_pop(L, 1);
  luaio_new_weak_keys(L);
  lua_rawseti(L, LUA_REGISTRYINDEX, h->failed_ref);
}

int luaio_task_gc(lua_State *L) {
  luaio_task *t = luaio_to_task(L, 1);      /* a finalizer can be called by hand, with anything */
  if (t && t->host && !t->host->closing) luaio_uncaught_report(L, 1);
  return 0;
}

