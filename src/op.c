/* op.c — the cancel shared by native operations (op.h). */
#include "op.h"

void luaio_op_cancel(void *data) {
  luaio_op *op = data;
  op->task = NULL;
  if (op->busy) { luaio_vclock_busy_end(op->busy); op->busy = NULL; }
  if (op->abort) op->abort(op);
}
