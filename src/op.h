/* op.h — the base of a native operation a task waits on (a DNS lookup, a
** thread-pool job, a file job, a child process, a connect).
**
** The operation outlives the wait: libuv finishes it after the task gave
** up. So the waiting task is remembered in the operation and cleared on
** cancellation; the completion callback takes it (NULL: nobody waits, drop
** the result) and frees the operation. The base is embedded first in each
** operation struct; luaio_container_of gets back from the base to it.
*/
#ifndef LUAIO_OP_H
#define LUAIO_OP_H

#include "luaio_int.h"

typedef struct luaio_op luaio_op;
struct luaio_op {
  luaio_task *task;               /* the waiting task, NULL once it gave up */
  void (*abort)(luaio_op *op);    /* after a cancel: stop the work if it can (may be NULL) */
  luaio_host *busy;               /* counted by the virtual clock while waited on */
};

/* The luaio_await cancel of every operation: forget the task (the result
** is dropped when it comes), then abort. */
void luaio_op_cancel(void *op);

/* Wait for op as task t (luaio_current(L)); abort as above. */
static inline int luaio_op_await(lua_State *L, luaio_op *op, luaio_task *t,
                                 void (*abort)(luaio_op *), lua_KFunction k) {
  op->task = t;
  op->abort = abort;
  op->busy = luaio_vclock_busy_begin(t->host);
  return luaio_await(L, luaio_op_cancel, op, 0, k);
}

/* The completion's side: the waiting task, or NULL when it gave up; after
** this the operation is no longer waited on. */
static inline luaio_task *luaio_op_take(luaio_op *op) {
  luaio_task *t = op->task;
  op->task = NULL;
  if (op->busy) { luaio_vclock_busy_end(op->busy); op->busy = NULL; }
  return t;
}

#endif
