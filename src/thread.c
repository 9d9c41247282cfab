/*
** thread.c — aio.to_thread: run a Lua function on libuv's thread pool, in a
** separate Lua state. Functions travel as bytecode (lua_dump), values as a
** flat byte encoding (value_copy.c); worker states are made lazily and reused.
*/
#include <stdlib.h>
#include <string.h>
#include <lualib.h>
#include "op.h"
#include "value_copy.h"
#include "host.h"

/* ---- worker states ------------------------------------------------------- */

typedef struct worker { struct worker *next; lua_State *L; } worker;

static uv_mutex_t pool_lock;
static uv_once_t pool_once = UV_ONCE_INIT;
static worker *idle_workers;

static void pool_init(void) { uv_mutex_init(&pool_lock); }

static void close_workers(void) {
  uv_mutex_lock(&pool_lock);
  while (idle_workers) {
    worker *w = idle_workers;
    idle_workers = w->next;
    lua_close(w->L);
    free(w);
  }
  uv_mutex_unlock(&pool_lock);
}

static worker *take_worker(void) {
  uv_mutex_lock(&pool_lock);
  worker *w = idle_workers;
  if (w) idle_workers = w->next;
  uv_mutex_unlock(&pool_lock);
  if (w) return w;
  w = malloc(sizeof *w);
  if (!w) return NULL;
  w->L = luaL_newstate();
  if (!w->L) { free(w); return NULL; }
  *(void **)lua_getextraspace(w->L) = NULL;   /* the job running there (stop_hook) */
  luaL_openlibs(w->L);
  return w;
}

static void give_worker(worker *w) {
  lua_settop(w->L, 0);
  uv_mutex_lock(&pool_lock);
  w->next = idle_workers;
  idle_workers = w;
  uv_mutex_unlock(&pool_lock);
}

/* ---- jobs ------------------------------------------------------------------ */

typedef struct {
  luaio_op op;
  uv_work_t work;
  char *code;              /* bytecode, or "module.function" */
  size_t code_len;
  int by_name;
  luaio_wbuf args;               /* encoded argument list */
  int nargs;
  luaio_wbuf results;            /* encoded results, or the error message */
  int nresults, failed;
  /* Between the loop's thread (job_abort) and the worker: each side stores
  ** its own then loads the other's, sequentially consistent, so that at
  ** least one of them sees both and sets the hook. */
  lua_State *_Atomic L;    /* the worker state running it, while it runs */
  _Atomic int cancelled;   /* its task gave up: stop_hook ends the Lua code */
} job;

/* Set by job_abort on the worker state from the loop's thread (as lua.c
** sets its hook from a signal handler): a cancelled job's Lua code stops at
** its next instructions instead of running on, unseen, until it ends. The
** job is the one running on L now, or none (a stale hook is dropped). */
static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  job *j = *(job **)lua_getextraspace(L);
  if (j && j->cancelled) luaL_error(L, "to_thread: cancelled");
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  (void)L;
  return luaio_wbuf_put((luaio_wbuf *)ud, p, sz) ? 0 : 1;
}

static void fail_job(job *j, const char *msg) {
  j->failed = 1;
  j->results.len = 0;
  luaio_wbuf_put(&j->results, msg, strlen(msg));
}

static int run_code(job *j, lua_State *L);
static void encode_results(job *j, lua_State *L);

static void run_job(uv_work_t *req) {
  job *j = req->data;
  worker *w = take_worker();
  if (!w) { fail_job(j, "to_thread: cannot create a worker Lua state"); return; }
  lua_State *L = w->L;
  lua_settop(L, 0);
  *(job **)lua_getextraspace(L) = j;
  j->L = L;
  if (j->cancelled) lua_sethook(L, stop_hook, LUA_MASKCOUNT, 1);   /* cancelled as it started */
  int ok = run_code(j, L);
  j->L = NULL;
  *(job **)lua_getextraspace(L) = NULL;
  lua_sethook(L, NULL, 0, 0);
  if (ok) encode_results(j, L);
  give_worker(w);
}

/* Load the job's function on L and call it; 1 with its results on L, or 0
** with the job failed. */
static int run_code(job *j, lua_State *L) {
  int ok;
  if (j->by_name) {
    /* "module.function": require the module, take the function */
    const char *dot = strrchr(j->code, '.');
    lua_getglobal(L, "require");
    lua_pushlstring(L, j->code, (size_t)(dot - j->code));
    ok = lua_pcall(L, 1, 1, 0) == LUA_OK;
    if (ok) {
      lua_getfield(L, -1, dot + 1);
      lua_remove(L, -2);
      if (!lua_isfunction(L, -1)) {
        lua_pushfstring(L, "to_thread: '%s' is not a function", j->code);
        ok = 0;
      }
    }
  } else {
    ok = luaL_loadbuffer(L, j->code, j->code_len, "=to_thread") == LUA_OK;
  }
  if (ok) {
    luaio_rbuf r = {j->args.p, j->args.p + j->args.len};
    for (int i = 0; i < j->nargs; i++) luaio_value_decode(L, &r);
    ok = lua_pcall(L, j->nargs, LUA_MULTRET, 0) == LUA_OK;
  }
  if (!ok) fail_job(j, luaL_tolstring(L, -1, NULL));
  return ok;
}

static void encode_results(job *j, lua_State *L) {
  int n = lua_gettop(L);
  j->results.len = 0;
  for (int i = 1; i <= n; i++) {
    char path[32];
    snprintf(path, sizeof path, "result #%d", i);
    if (!luaio_value_encode(L, i, &j->results, path, 0)) {
      char msg[300];
      snprintf(msg, sizeof msg, "to_thread: cannot copy %s", j->results.err);
      fail_job(j, msg);
      return;
    }
  }
  j->nresults = n;
}

static void free_job(job *j) {
  free(j->code);
  free(j->args.p);
  free(j->results.p);
  free(j);
}

static void job_done(uv_work_t *req, int status) {
  job *j = req->data;
  luaio_task *t = luaio_op_take(&j->op);
  if (!t || status == UV_ECANCELED) { free_job(j); return; }
  lua_State *co = luaio_task_stack(t);
  if (j->failed) {
    lua_pushlstring(co, j->results.p, j->results.len);
    free_job(j);
    luaio_wake_error(t);
    return;
  }
  luaio_rbuf r = {j->results.p, j->results.p + j->results.len};
  for (int i = 0; i < j->nresults; i++) luaio_value_decode(co, &r);
  int n = j->nresults;
  free_job(j);
  luaio_wake(t, n);
}

/* after a cancel (the result is dropped): a queued job is unqueued, a
** running one has its Lua code stopped */
static void job_abort(luaio_op *op) {
  job *j = luaio_container_of(op, job, op);
  j->cancelled = 1;
  lua_State *wl = j->L;
  if (wl) lua_sethook(wl, stop_hook, LUA_MASKCOUNT, 1000);
  uv_cancel((uv_req_t *)&j->work);
}

/* The function to run (at 1) into j: bytecode, or "module.function"; a
** bad one frees j and raises. */
static void job_code(lua_State *L, job *j) {
  if (lua_type(L, 1) == LUA_TSTRING) {
    size_t len;
    const char *name = lua_tolstring(L, 1, &len);
    const char *dot = strrchr(name, '.');
    if (strlen(name) != len) {
      free_job(j);
      luaio_argerror(L, 1, "string contains a NUL byte");
    }
    if (!dot || dot == name || dot[1] == '\0') {
      free_job(j);
      luaio_argerror(L, 1, "expected \"module.function\"");
    }
    j->code = malloc(len + 1);
    memcpy(j->code, name, len + 1);
    j->by_name = 1;
  } else if (lua_type(L, 1) == LUA_TFUNCTION) {
    if (lua_iscfunction(L, 1)) { free_job(j); luaio_argerror(L, 1, "a C function cannot move to another Lua state"); }
    for (int i = 1;; i++) {
      const char *up = lua_getupvalue(L, 1, i);
      if (!up) break;
      lua_pop(L, 1);
      if (strcmp(up, "_ENV") != 0) {
        free_job(j);
        luaio_argerror(L, 1, lua_pushfstring(L, "the function has an upvalue '%s'; only _ENV is allowed "
                                             "(pass the value as an argument instead)", up));
      }
    }
    luaio_wbuf code = {0};
    lua_pushvalue(L, 1);
    lua_dump(L, dump_writer, &code, 0);
    lua_pop(L, 1);
    j->code = code.p;
    j->code_len = code.len;
  } else {
    free_job(j);
    luaio_typeerror(L, 1, "function or \"module.function\" string");
  }
}

/* to_thread(fn, ...) ⏸ */
static int l_to_thread(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  int n = lua_gettop(L);
  luaio_task *t = luaio_need_task(L, "aio.to_thread");
  job *j = calloc(1, sizeof *j);
  if (!j) return luaL_error(L, "out of memory");
  job_code(L, j);
  for (int i = 2; i <= n; i++) {
    char path[32];
    snprintf(path, sizeof path, "arg #%d", i - 1);
    if (!luaio_value_encode(L, i, &j->args, path, 0)) {
      char msg[300];
      snprintf(msg, sizeof msg, "aio.to_thread: cannot copy %s", j->args.err);
      free_job(j);
      return luaL_error(L, "%s", msg);
    }
  }
  j->nargs = n - 1;
  j->op.task = t;
  j->work.data = j;
  uv_once(&pool_once, pool_init);
  int r = uv_queue_work(h->loop, &j->work, run_job, job_done);
  if (r < 0) { free_job(j); return luaio_uverror(L, "OSError", r, "to_thread"); }
  lua_settop(L, 0);
  return luaio_op_await(L, &j->op, t, job_abort, NULL);
}

/* Worker states are shared by the hosts of the process; the last host to
** go closes the idle ones (atexit would be unsafe: luaio.so may be unloaded
** before exit). */
static int live_hosts;

void luaio_thread_host_gone(void) {
  uv_mutex_lock(&pool_lock);
  int last = --live_hosts == 0;
  uv_mutex_unlock(&pool_lock);
  if (last) close_workers();
}

static void describe_job(lua_State *L, void *data) {
  job *j = luaio_container_of((luaio_op *)data, job, op);
  if (j->by_name) lua_pushfstring(L, "thread job %s", j->code);
  else lua_pushliteral(L, "thread job (a function)");
}

void luaio_open_thread(lua_State *L, luaio_host *h) {
  luaio_wait_kind(h, LUAIO_WAIT_KEY(job_abort), describe_job);
  uv_once(&pool_once, pool_init);
  uv_mutex_lock(&pool_lock);
  live_hosts++;
  uv_mutex_unlock(&pool_lock);
  lua_pushlightuserdata(L, h);
  lua_pushcclosure(L, l_to_thread, 1);
  lua_setfield(L, -2, "to_thread");
}
