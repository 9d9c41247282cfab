/*
** waitinfo.c — what a pending task waits on and where it stands: the
** monitor's `ps` and `where`, and t:traceback().
**
** Nothing is recorded while tasks switch. When asked, the answer is read
** from what the one suspend mechanism (sched.c) keeps anyway:
**  - a native wait (luaio_await) is told by its cancel function, and a
**    luaio_op by its abort: the subsystem registered a describer for it
**    (luaio_wait_kind), which names the wait's data ("stream read from
**    127.0.0.1:5000");
**  - a Lua primitive's wait (core.suspend(owner, what, about)) left its
**    arguments at 1..3 of the waiting frame; Task:wait left the task at 1.
** A wait inside a user coroutine is found by following coroutine.resume's
** frame (coro.c) down to the coroutine that is parked.
*/
#include <stdio.h>
#include <string.h>
#include "task.h"
#include "op.h"

void luaio_wait_kind(luaio_host *h, luaio_wait_key key, luaio_describe_fn fn) {
  int n = h->n_wait_kinds;
  for (int i = 0; i < n; i++)
    if (h->wait_kinds[i].key == key) { h->wait_kinds[i].fn = fn; return; }
  if (n == (int)(sizeof h->wait_kinds / sizeof h->wait_kinds[0])) return;   /* "native wait" */
  h->wait_kinds[n].key = key;
  h->wait_kinds[n].fn = fn;
  h->n_wait_kinds = n + 1;
}

/* The yielded thread a C frame at level 0 of co resumes: coroutine.resume
** keeps it at 1, a wrap function as its upvalue (coro.c). NULL: none. */
static lua_State *resumed_by(lua_State *co) {
  lua_Debug ar;
  lua_State *inner = NULL;
  if (!lua_getstack(co, 0, &ar) || !lua_checkstack(co, 3)) return NULL;
  if (lua_getlocal(co, &ar, 1)) {
    if (lua_type(co, -1) == LUA_TTHREAD) inner = lua_tothread(co, -1);
    lua_pop(co, 1);
  }
  if (!inner && lua_getinfo(co, "f", &ar)) {
    if (lua_iscfunction(co, -1) && lua_getupvalue(co, -1, 1)) {
      if (lua_type(co, -1) == LUA_TTHREAD) inner = lua_tothread(co, -1);
      lua_pop(co, 1);
    }
    lua_pop(co, 1);
  }
  return inner && inner != co && lua_status(inner) == LUA_YIELD ? inner : NULL;
}

/* The coroutine where t's wait really happened. */
static lua_State *innermost(luaio_task *t) {
  lua_State *co = t->co, *inner;
  for (int depth = 0; depth < 64 && (inner = resumed_by(co)); depth++) co = inner;
  return co;
}

/* Push the value at slot `n` of co's waiting frame (nil if none). */
static void push_slot(lua_State *L, lua_State *co, int n) {
  lua_Debug ar;
  if (lua_getstack(co, 0, &ar) && lua_checkstack(co, 1) && lua_getlocal(co, &ar, n))
    lua_xmove(co, L, 1);
  else
    lua_pushnil(L);
}

/* A native wait's line, or NULL when its kind is not registered. */
static int push_native(lua_State *L, luaio_task *t) {
  luaio_wait_key key = LUAIO_WAIT_KEY(t->on_cancel);
  void *data = t->cancel_data;
  if (t->on_cancel == luaio_op_cancel) key = LUAIO_WAIT_KEY(((luaio_op *)data)->abort);
  for (int i = 0; i < t->host->n_wait_kinds; i++)
    if (t->host->wait_kinds[i].key == key) {
      t->host->wait_kinds[i].fn(L, data);
      return 1;
    }
  return 0;
}

/* Set info.wait (a line) or info.wait_what and info.wait_on (a Lua
** primitive's wait: monitor.lua names the object) of the table on top. */
static void set_wait(lua_State *L, luaio_task *t) {
  if (t->state != TASK_WAITING) return;
  if (t->flags & TF_NATIVE_WAIT) {
    if (!push_native(L, t)) lua_pushliteral(L, "native wait");
    lua_setfield(L, -2, "wait");
    return;
  }
  lua_State *co = innermost(t);
  push_slot(L, co, 1);
  luaio_task *other = luaio_to_task(L, -1);
  if (other && (const void *)other == t->owner) {
    lua_getfield(L, -1, "name");
    lua_pushfstring(L, "task wait %d %s", (int)other->id, lua_tostring(L, -1));
    lua_setfield(L, -4, "wait");
    lua_pop(L, 2);
    return;
  }
  if (lua_topointer(L, -1) != t->owner || t->owner == NULL) {
    lua_pop(L, 1);
    lua_pushliteral(L, "waiting");
    lua_setfield(L, -2, "wait");
    return;
  }
  push_slot(L, co, 3);                 /* about: what the program knows (the queue) */
  if (lua_isnil(L, -1)) { lua_pop(L, 1); lua_pushvalue(L, -1); }
  lua_setfield(L, -3, "wait_on");
  lua_pop(L, 1);
  push_slot(L, co, 2);
  lua_setfield(L, -2, "wait_what");
}

static const char *const state_names[] = {"ready", "running", "waiting", "done", "failed", "cancelled"};

/* core.task_info(task) -> {id, name, state, daemon, wait | wait_what, wait_on,
** spawned_at, spawned_time} */
static int l_task_info(lua_State *L) {
  luaio_task *t = luaio_task_check(L, 1);
  lua_settop(L, 1);
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, t->id);
  lua_setfield(L, 2, "id");
  lua_getfield(L, 1, "name");
  lua_setfield(L, 2, "name");
  lua_pushstring(L, t->state == TASK_READY && !(t->flags & TF_STARTED) ? "new" : state_names[t->state]);
  lua_setfield(L, 2, "state");
  lua_pushboolean(L, (t->flags & TF_DAEMON) != 0);
  lua_setfield(L, 2, "daemon");
  if (luaio_task_extras(L, 1, 0)) {
    lua_getfield(L, -1, "spawned_at");
    lua_setfield(L, 2, "spawned_at");
    lua_getfield(L, -1, "spawned_time");
    lua_setfield(L, 2, "spawned_time");
    lua_pop(L, 1);
  }
  set_wait(L, t);
  return 1;
}

/* core.set_daemon(task): the monitor's own tasks (see TF_DAEMON) */
static int l_set_daemon(lua_State *L) {
  luaio_task *t = luaio_task_check(L, 1);
  if (t->state == TASK_WAITING && (t->flags & TF_NATIVE_WAIT))
    return luaL_error(L, "set_daemon: the task is in a native wait");
  t->flags |= TF_DAEMON;
  return 0;
}

/* Push the traceback of a pending task t: where it waits (through the user
** coroutine it waits in), or, running, where it runs now. */
void luaio_task_where(lua_State *L, luaio_task *t) {
  luaio_task_push(L, t);
  lua_getfield(L, -1, "name");
  lua_pushfstring(L, "task %d %s (%s)", (int)t->id, lua_tostring(L, -1), state_names[t->state]);
  lua_replace(L, -3);
  lua_pop(L, 1);
  const char *head = lua_tostring(L, -1);
  if (!(t->flags & TF_STARTED)) {
    lua_pushfstring(L, "%s\nstack traceback:\n\t(not started yet)", head);
  } else if (t->state == TASK_RUNNING && t == luaio_current(L)) {
    luaL_traceback(L, L, head, 1);
  } else {
    lua_State *co = innermost(t);
    luaL_traceback(L, co, head, 0);
    if (co != t->co) {                 /* then the task's own frames, down from the resume */
      luaL_traceback(L, t->co, "in a coroutine resumed by:", 0);
      lua_concat(L, 2);
    }
  }
  lua_remove(L, -2);
}

void luaio_open_waitinfo(lua_State *L, luaio_host *h) {
  static const luaL_Reg funcs[] = {
    {"task_info", l_task_info}, {"set_daemon", l_set_daemon}, {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
