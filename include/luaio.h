/*
** luaio.h — embed the luaio async Lua host in a C program.
**
** A host is one lua_State plus a scheduler bound to one libuv loop. Lua code
** runs in tasks (coroutines); a task that calls a waiting function is
** suspended and resumed later by the loop. The embedder either hands the
** loop over (luaio_run_main) or keeps driving uv_run itself: every handle the
** host keeps open for its own needs is unreferenced, so uv_run returns once
** no task waits on anything.
**
** Native waiting functions: a lua_CFunction called from a task starts some
** native work, then ends with `return luaio_await(L, on_cancel, data, ctx, k)`.
** When the work completes (in a libuv callback, or from another thread via
** luaio_post), the embedder pushes result values on luaio_task_stack(task)
** and calls luaio_wake(task, n) — or luaio_wake_error to make the call raise.
** If the task is cancelled first, on_cancel(data) runs once on the loop
** thread: abort the work or arrange for its result to be dropped, and do not
** wake the task afterwards.
**
** All functions must be called on the loop's thread, except luaio_post.
*/
#ifndef LUAIO_H
#define LUAIO_H

#include <lua.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LUAIO_VERSION "0.1.0"

typedef struct luaio_host luaio_host;
typedef struct luaio_task luaio_task;

/* ---- host lifecycle -------------------------------------------------- */

/* Create a host. `loop` is the embedder's loop, or NULL to let the host own
** one. The host opens the standard Lua libraries and preloads "luaio".
** Returns NULL when out of memory. */
luaio_host *luaio_host_new(uv_loop_t *loop);

/* Cancel every pending task, let them unwind, close all handles of the
** host, close the lua_State and (if owned) the loop. */
void luaio_host_free(luaio_host *h);

lua_State *luaio_host_state(luaio_host *h);
uv_loop_t *luaio_host_loop(luaio_host *h);

/* The host of a lua_State created by luaio_host_new or by require "luaio". */
luaio_host *luaio_host_of(lua_State *L);

/* ---- running Lua as tasks -------------------------------------------- */

/* Pop a function and `nargs` arguments from the host's state (function
** pushed first) and schedule them as a new task; push the Task object and
** return its pointer. Does not run the loop. */
luaio_task *luaio_spawn(luaio_host *h, int nargs);

/* Load a file / a string as a chunk and spawn it (arguments as `...`).
** On a load error, push the message and return NULL. */
luaio_task *luaio_spawn_file(luaio_host *h, const char *path);
luaio_task *luaio_spawn_string(luaio_host *h, const char *code, const char *chunkname);

/* Run the loop until `t` ends (other tasks keep running alongside it), then
** cancel the tasks still pending and let them finish. Returns LUA_OK and
** pushes the task's results, or returns an error status and pushes the
** error value. The pushed count is stored in *nresults when not NULL. */
int luaio_run_main(luaio_host *h, luaio_task *t, int *nresults);

/* Nonzero once the task has ended (done, failed or cancelled). */
int luaio_task_done(luaio_task *t);

/* Task state: one of "pending", "done", "failed", "cancelled". */
const char *luaio_task_status(luaio_task *t);

/* Push the task's results (or error object) onto L; returns the count
** pushed, or -1 when the task is still pending. */
int luaio_task_results(luaio_task *t, lua_State *L);

/* The traceback recorded when the task failed, or NULL. Valid while the
** task object lives. */
const char *luaio_task_traceback(luaio_task *t, lua_State *L);

/* ---- native waiting functions ---------------------------------------- */

typedef void (*luaio_cancel_fn)(void *data);

/* The task running now in `L` (NULL outside a task). */
luaio_task *luaio_current(lua_State *L);

/* The running task, when it can wait here; otherwise raises a Lua error
** ("NAME must be called inside a task ..." or "NAME cannot wait here ...",
** NAME = fname, or the function's own name when NULL). Call it before arming
** any native work. */
luaio_task *luaio_need_task(lua_State *L, const char *fname);

/* Suspend the current task; use as `return luaio_await(L, ...)`. When
** resumed, `k(L, LUA_YIELD, ctx)` is called with the wake values on top of
** the stack (k may be NULL: the wake values are returned). Raises
** "... must be called inside a task" outside a task, and where the task
** cannot yield (after calling on_cancel(data): nothing stays armed). */
int luaio_await(lua_State *L, luaio_cancel_fn on_cancel, void *data,
                lua_KContext ctx, lua_KFunction k);

/* The stack on which to push the values a wake passes to the task. */
lua_State *luaio_task_stack(luaio_task *t);

/* Resume the suspended task with the top `n` values of luaio_task_stack(t)
** (it runs at the next scheduler turn, never inside this call). */
void luaio_wake(luaio_task *t, int n);

/* Resume the suspended task so that its waiting call raises the value on
** top of luaio_task_stack(t). */
void luaio_wake_error(luaio_task *t);

/* Push a luaio error object ({name=, message=, code=}) onto L. `code` may
** be NULL. luaio_error raises it. */
void luaio_push_error(lua_State *L, const char *name, const char *code,
                      const char *fmt, ...);
int luaio_error(lua_State *L, const char *name, const char *code,
                const char *fmt, ...);

/* Run fn(arg) on the loop thread at its next turn; safe from any thread.
** Returns 0, or a negative libuv error code. */
int luaio_post(luaio_host *h, void (*fn)(luaio_host *h, void *arg), void *arg);

/* The Lua C module entry point (also preloaded by luaio_host_new). */
int luaopen_luaio(lua_State *L);

#ifdef __cplusplus
}
#endif
#endif
