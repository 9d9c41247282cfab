/*
** task.h — between the scheduler's files (sched.c, task.c, host.c): the
** Task userdata's side of the protocol. Subsystems use luaio_int.h.
*/
#ifndef LUAIO_TASK_H
#define LUAIO_TASK_H

#include "host.h"

/* The Task at idx, or NULL. Hot (every Task method, core.wake): no
** metatable lookup by name. */
static inline luaio_task *luaio_to_task(lua_State *L, int idx) {
  luaio_task *t = lua_type(L, idx) == LUA_TUSERDATA ? lua_touserdata(L, idx) : NULL;
  return t && lua_rawlen(L, idx) == sizeof *t && t->magic == LUAIO_TASK_MAGIC ? t : NULL;
}

static inline luaio_task *luaio_task_check(lua_State *L, int idx) {
  luaio_task *t = luaio_to_task(L, idx);
  if (!t) luaio_typeerror(L, idx, "Task");
  return t;
}

/* Push a pending task: pending tasks are anchored in the registry, in the
** slot t->anchor of the anchor table. */
static inline void luaio_task_push(lua_State *L, luaio_task *t) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->host->anchors.ref);
  lua_rawgeti(L, -1, t->anchor);
  lua_remove(L, -2);
}

/* A new pending task (anchored, counted in h->pending) on L's top, its
** coroutine's stack holding its body only: push fn and arguments on it. */
luaio_task *luaio_task_new(lua_State *L, luaio_host *h);
/* t has ended (state and results set): release its anchor and run its
** done callbacks. */
void luaio_task_ended(lua_State *L, luaio_task *t);
void luaio_task_free_anchors(luaio_host *h);

/* Push the extras table of the Task at idx (rare fields: callbacks, name,
** traceback, cancel_error...), creating it when `create`; 0 when none. */
int luaio_task_extras(lua_State *L, int idx, int create);
/* Push a CancelledError with the message at msg_idx of msgL (0: none). */
void luaio_push_cancelled(lua_State *L, lua_State *msgL, int msg_idx);
/* Push the cancellation waiting for t's next waiting call (TF_CANCEL). */
void luaio_push_cancel_error(lua_State *L, luaio_task *t);

/* Done callbacks: add the value at value_idx (a function, or a waiting
** Task) to those of the Task at task_idx; call the function at -2 with the
** task at -1, protected, an error logged. */
void luaio_task_add_callback(lua_State *L, int task_idx, int value_idx);
void luaio_task_call_callback(lua_State *L);
int luaio_is_cancelled_error(lua_State *L, int idx);
/* __gc of a failed Task: reports its error if nobody retrieved it. */
int luaio_task_gc(lua_State *L);

/* Debug mode or a monitor: where the task at idx was spawned (the user's
** line that led to it: track.c) and when (aio.now()); and
** (interrupt.c) the slow-task report around a resume. */
void luaio_task_note_spawn(lua_State *L, int idx);
void luaio_task_debug_begin(luaio_host *h, luaio_task *t, char *where, size_t size);
void luaio_task_debug_end(luaio_host *h, luaio_task *t, const char *where);

/* waitinfo.c: push the traceback of the pending task t (where it waits) */
void luaio_task_where(lua_State *L, luaio_task *t);

/* sched.c: suspend the running task `self` until t ends; k resumes it. */
int luaio_wait_task(lua_State *L, luaio_task *self, luaio_task *t, lua_KFunction k);
void luaio_open_task(lua_State *L, luaio_host *h);

/* gather.c: aio.gather's latch, a done callback settled in C. Whether the
** userdata block p is one; note that t (at ti) ended, the latch at -1. */
int luaio_is_latch(void *p);
void luaio_latch_fire(lua_State *L, luaio_task *t, int ti);
void luaio_open_gather(lua_State *L);

#endif
