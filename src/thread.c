/*
** thread.c — aio.to_thread: run a Lua function on libuv's thread pool, in a
** separate Lua state. Functions travel as bytecode (lua_dump), values as a
** flat byte encoding; worker states are made lazily and reused.
*/
#include <stdlib.h>
#include <string.h>
#include <lualib.h>
#include "luaio_int.h"

/* ---- value encoding ------------------------------------------------------ */

typedef struct {
  char *p;
  size_t len, cap;
  char err[256];          /* where encoding failed, e.g. "arg #2.items[3]: function" */
} wbuf;

enum { V_NIL, V_FALSE, V_TRUE, V_INT, V_FLOAT, V_STR, V_TABLE, V_END };

static int put(wbuf *b, const void *data, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return 0;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, data, n);
  b->len += n;
  return 1;
}

static int put_tag(wbuf *b, char tag) { return put(b, &tag, 1); }

static void path_key(lua_State *L, int kidx, char *out, size_t size, const char *path) {
  if (lua_type(L, kidx) == LUA_TSTRING) snprintf(out, size, "%s.%s", path, lua_tostring(L, kidx));
  else if (lua_isinteger(L, kidx)) snprintf(out, size, "%s[%lld]", path, (long long)lua_tointeger(L, kidx));
  else snprintf(out, size, "%s[%s]", path, luaL_typename(L, kidx));
}

/* Encode the value at idx; `path` names it for error messages. */
static int encode(lua_State *L, int idx, wbuf *b, const char *path, int depth) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNIL: return put_tag(b, V_NIL);
    case LUA_TBOOLEAN: return put_tag(b, lua_toboolean(L, idx) ? V_TRUE : V_FALSE);
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        return put_tag(b, V_INT) && put(b, &i, sizeof i);
      } else {
        lua_Number n = lua_tonumber(L, idx);
        return put_tag(b, V_FLOAT) && put(b, &n, sizeof n);
      }
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      return put_tag(b, V_STR) && put(b, &len, sizeof len) && put(b, s, len);
    }
    case LUA_TTABLE: {
      if (depth > 100) {
        size_t len = strlen(path);     /* the path is long by now: keep its two ends */
        snprintf(b->err, sizeof b->err, "%.40s...%s: table nested deeper than 100 levels (or a cycle)",
                 path, len > 80 ? path + len - 40 : "");
        return 0;
      }
      if (!lua_checkstack(L, 4)) {
        snprintf(b->err, sizeof b->err, "%s: table nested too deeply", path);
        return 0;
      }
      if (!put_tag(b, V_TABLE)) return 0;
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        char sub[256];
        int kt = lua_type(L, -2);
        if (kt != LUA_TSTRING && kt != LUA_TNUMBER && kt != LUA_TBOOLEAN) {
          snprintf(b->err, sizeof b->err, "%s: a %s key cannot be copied", path, luaL_typename(L, -2));
          lua_pop(L, 2);
          return 0;
        }
        path_key(L, -2, sub, sizeof sub, path);
        if (!encode(L, -2, b, sub, depth + 1) || !encode(L, -1, b, sub, depth + 1)) {
          lua_pop(L, 2);
          return 0;
        }
        lua_pop(L, 1);
      }
      return put_tag(b, V_END);
    }
    default:
      snprintf(b->err, sizeof b->err, "%s: %s", path, luaL_typename(L, idx));
      return 0;
  }
}

typedef struct { const char *p, *end; } rbuf;

static int decode(lua_State *L, rbuf *r) {
  if (r->p >= r->end) return 0;
  char tag = *r->p++;
  luaL_checkstack(L, 3, "copying values");
  switch (tag) {
    case V_NIL: lua_pushnil(L); return 1;
    case V_FALSE: lua_pushboolean(L, 0); return 1;
    case V_TRUE: lua_pushboolean(L, 1); return 1;
    case V_INT: { lua_Integer i; memcpy(&i, r->p, sizeof i); r->p += sizeof i; lua_pushinteger(L, i); return 1; }
    case V_FLOAT: { lua_Number n; memcpy(&n, r->p, sizeof n); r->p += sizeof n; lua_pushnumber(L, n); return 1; }
    case V_STR: {
      size_t len;
      memcpy(&len, r->p, sizeof len);
      r->p += sizeof len;
      lua_pushlstring(L, r->p, len);
      r->p += len;
      return 1;
    }
    case V_TABLE:
      lua_newtable(L);
      while (r->p < r->end && *r->p != V_END) {
        if (!decode(L, r) || !decode(L, r)) return 0;
        lua_rawset(L, -3);
      }
      r->p++;
      return 1;
  }
  return 0;
}

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
  uv_work_t work;
  luaio_task *task;        /* NULL once the waiting task gave up */
  char *code;              /* bytecode, or "module.function" */
  size_t code_len;
  int by_name;
  wbuf args;               /* encoded argument list */
  int nargs;
  wbuf results;            /* encoded results, or the error message */
  int nresults, failed;
  lua_State *volatile L;   /* the worker state running it, while it runs */
  volatile int cancelled;  /* its task gave up: stop_hook ends the Lua code */
} job;

/* Set by job_cancel on the worker state from the loop's thread (as lua.c
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
  return put((wbuf *)ud, p, sz) ? 0 : 1;
}

static void fail_job(job *j, const char *msg) {
  j->failed = 1;
  j->results.len = 0;
  put(&j->results, msg, strlen(msg));
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
    rbuf r = {j->args.p, j->args.p + j->args.len};
    for (int i = 0; i < j->nargs; i++) decode(L, &r);
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
    if (!encode(L, i, &j->results, path, 0)) {
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
  luaio_task *t = j->task;
  if (!t || status == UV_ECANCELED) { free_job(j); return; }
  lua_State *co = luaio_task_stack(t);
  if (j->failed) {
    lua_pushlstring(co, j->results.p, j->results.len);
    free_job(j);
    luaio_wake_error(t);
    return;
  }
  rbuf r = {j->results.p, j->results.p + j->results.len};
  for (int i = 0; i < j->nresults; i++) decode(co, &r);
  int n = j->nresults;
  free_job(j);
  luaio_wake(t, n);
}

static void job_cancel(void *data) {
  job *j = data;
  j->task = NULL;      /* its result is dropped */
  j->cancelled = 1;
  lua_State *wl = j->L;
  if (wl) lua_sethook(wl, stop_hook, LUA_MASKCOUNT, 1000);   /* running: stop its Lua code */
  uv_cancel((uv_req_t *)&j->work);
}

/* to_thread(fn, ...) ⏸ */
static int l_to_thread(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  int n = lua_gettop(L);
  luaio_task *t = luaio_need_task(L, "aio.to_thread");
  job *j = calloc(1, sizeof *j);
  if (!j) return luaL_error(L, "out of memory");
  if (lua_type(L, 1) == LUA_TSTRING) {
    size_t len;
    const char *name = lua_tolstring(L, 1, &len);
    const char *dot = strrchr(name, '.');
    if (strlen(name) != len) {
      free_job(j);
      return luaio_argerror(L, 1, "string contains a NUL byte");
    }
    if (!dot || dot == name || dot[1] == '\0') {
      free_job(j);
      return luaio_argerror(L, 1, "expected \"module.function\"");
    }
    j->code = malloc(len + 1);
    memcpy(j->code, name, len + 1);
    j->by_name = 1;
  } else if (lua_type(L, 1) == LUA_TFUNCTION) {
    if (lua_iscfunction(L, 1)) { free_job(j); return luaio_argerror(L, 1, "a C function cannot move to another Lua state"); }
    for (int i = 1;; i++) {
      const char *up = lua_getupvalue(L, 1, i);
      if (!up) break;
      lua_pop(L, 1);
      if (strcmp(up, "_ENV") != 0) {
        free_job(j);
        return luaio_argerror(L, 1, lua_pushfstring(L, "the function has an upvalue '%s'; only _ENV is allowed "
                                                       "(pass the value as an argument instead)", up));
      }
    }
    wbuf code = {0};
    lua_pushvalue(L, 1);
    lua_dump(L, dump_writer, &code, 0);
    lua_pop(L, 1);
    j->code = code.p;
    j->code_len = code.len;
  } else {
    free_job(j);
    return luaio_typeerror(L, 1, "function or \"module.function\" string");
  }
  for (int i = 2; i <= n; i++) {
    char path[32];
    snprintf(path, sizeof path, "arg #%d", i - 1);
    if (!encode(L, i, &j->args, path, 0)) {
      char msg[300];
      snprintf(msg, sizeof msg, "aio.to_thread: cannot copy %s", j->args.err);
      free_job(j);
      return luaL_error(L, "%s", msg);
    }
  }
  j->nargs = n - 1;
  j->task = t;
  j->work.data = j;
  uv_once(&pool_once, pool_init);
  int r = uv_queue_work(h->loop, &j->work, run_job, job_done);
  if (r < 0) { free_job(j); return luaio_uverror(L, "OSError", r, "to_thread"); }
  lua_settop(L, 0);
  return luaio_await(L, job_cancel, j, 0, NULL);
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

void luaio_open_thread(lua_State *L, luaio_host *h) {
  uv_once(&pool_once, pool_init);
  uv_mutex_lock(&pool_lock);
  live_hosts++;
  uv_mutex_unlock(&pool_lock);
  lua_pushlightuserdata(L, h);
  lua_pushcclosure(L, l_to_thread, 1);
  lua_setfield(L, -2, "to_thread");
}
