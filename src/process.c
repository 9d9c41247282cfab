/*
** process.c — child processes: aio.exec (run to completion, output
** captured natively) and aio.spawn_process (pipes as Streams).
** One file over 500 lines on purpose: both share the checked copy of argv,
** cwd and env and the uv_spawn call, which is most of what they do.
*/
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "stream.h"
#include "op.h"
#include "host.h"

#define PROCESS_MT "luaio.Process"

/* ---- argv / env / cwd from Lua ------------------------------------------ */

typedef struct {
  char **argv, **env;
  char *cwd;
} spawn_args;

static void free_args(spawn_args *a) {
  if (a->argv) for (char **p = a->argv; *p; p++) free(*p);
  if (a->env) for (char **p = a->env; *p; p++) free(*p);
  free(a->argv);
  free(a->env);
  free(a->cwd);
}

/* uv_spawn with the parsed argv/env/cwd and three stdio containers */
static int spawn_child(uv_loop_t *loop, uv_process_t *proc, spawn_args *a,
                       uv_stdio_container_t *stdio, uv_exit_cb on_exit, void *data) {
  uv_process_options_t po;
  memset(&po, 0, sizeof po);
  po.file = a->argv[0];
  po.args = a->argv;
  po.env = a->env;
  po.cwd = a->cwd;
  po.exit_cb = on_exit;
  po.stdio_count = 3;
  po.stdio = stdio;
  proc->data = data;
  return uv_spawn(loop, proc, &po);
}

/* a bad argument (argerror at idx; 0: an error) after a was half filled */
static void args_fail(lua_State *L, spawn_args *a, int idx, const char *msg) {
  free_args(a);
  memset(a, 0, sizeof *a);
  if (idx) luaio_argerror(L, idx, msg);
  else luaL_error(L, "%s", msg);
}

/* A copy of the string at idx, an item of the argument tables handed to the
** system: a number is taken as its text; anything else, or a NUL byte inside
** (it would cut the string), frees what a holds and raises a bad argument
** naming the item (`what`). */
static char *dup_cstring(lua_State *L, spawn_args *a, int idx, int arg, const char *what) {
  const char *msg = NULL;
  int t = lua_type(L, idx);
  size_t len = 0;
  const char *s = NULL;
  if (t != LUA_TSTRING && t != LUA_TNUMBER)
    msg = lua_pushfstring(L, "%s: string expected, got %s", what, luaL_typename(L, idx));
  else {
    s = lua_tolstring(L, idx, &len);
    if (strlen(s) != len) msg = lua_pushfstring(L, "%s contains a NUL byte", what);
  }
  char *d = msg ? NULL : strdup(s);
  if (!d) args_fail(L, a, msg ? arg : 0, msg ? msg : "out of memory");
  return d;
}

/* opts.env (opts at opts_idx, the stack at top) into a->env as "k=v" */
static void read_env(lua_State *L, int opts_idx, int top, spawn_args *a) {
  int env_type = lua_getfield(L, opts_idx, "env");       /* top + 1, kept while copying */
  if (env_type == LUA_TNIL) { lua_settop(L, top); return; }
  if (env_type != LUA_TTABLE) {
    args_fail(L, a, opts_idx, lua_pushfstring(L, "opts.env: table expected, got %s", luaL_typename(L, top + 1)));
  }
  size_t count = 0;
  lua_pushnil(L);
  while (lua_next(L, top + 1)) { count++; lua_pop(L, 1); }
  a->env = calloc(count + 1, sizeof(char *));
  if (!a->env) args_fail(L, a, 0, "out of memory");
  size_t k = 0;
  lua_pushnil(L);
  while (k < count && lua_next(L, top + 1)) {            /* [env, key, value] */
    const char *msg = NULL;
    size_t klen;
    if (lua_type(L, top + 2) != LUA_TSTRING)
      msg = lua_pushfstring(L, "opts.env: string keys expected, got %s", luaL_typename(L, top + 2));
    else {
      const char *key = lua_tolstring(L, top + 2, &klen);
      if (strlen(key) != klen) msg = "opts.env: a variable name contains a NUL byte";
      else if (klen == 0 || strchr(key, '=')) msg = lua_pushfstring(L, "opts.env: bad variable name '%s'", key);
    }
    if (msg) args_fail(L, a, opts_idx, msg);
    lua_pushvalue(L, top + 3);                           /* converted here, not in the table */
    char *v = dup_cstring(L, a, top + 4, opts_idx, lua_pushfstring(L, "opts.env.%s", lua_tostring(L, top + 2)));
    lua_pushfstring(L, "%s=%s", lua_tostring(L, top + 2), v);
    free(v);
    a->env[k] = strdup(lua_tostring(L, -1));
    if (!a->env[k]) args_fail(L, a, 0, "out of memory");
    k++;
    lua_settop(L, top + 2);                              /* the key, for lua_next */
  }
  lua_settop(L, top);
}

/* argv (an array of strings) and opts.cwd / opts.env, copied into a; a bad
** item raises with nothing left allocated. */
static void read_args(lua_State *L, int argv_idx, int opts_idx, spawn_args *a) {
  memset(a, 0, sizeof *a);
  luaio_checktype(L, argv_idx, LUA_TTABLE);
  lua_Integer n = luaL_len(L, argv_idx);
  if (n < 1) luaio_argerror(L, argv_idx, "argv must name a program (an empty table)");
  if (n > 100000) luaio_argerror(L, argv_idx, "argv is too long");
  int top = lua_gettop(L);
  a->argv = calloc((size_t)n + 1, sizeof(char *));
  if (!a->argv) luaL_error(L, "out of memory");
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, argv_idx, i);
    a->argv[i - 1] = dup_cstring(L, a, top + 1, argv_idx, lua_pushfstring(L, "argv[%d]", (int)i));
    lua_settop(L, top);
  }
  if (!lua_istable(L, opts_idx)) return;
  int cwd_type = lua_getfield(L, opts_idx, "cwd");
  if (cwd_type != LUA_TNIL && cwd_type != LUA_TSTRING) {        /* a path: no number taken as one */
    args_fail(L, a, opts_idx, lua_pushfstring(L, "opts.cwd: string expected, got %s", luaL_typename(L, top + 1)));
  }
  if (cwd_type == LUA_TSTRING) a->cwd = dup_cstring(L, a, top + 1, opts_idx, "opts.cwd");
  lua_settop(L, top);
  read_env(L, opts_idx, top, a);
}

static int signal_number(lua_State *L, int idx, int dflt) {
  if (lua_isnoneornil(L, idx)) return dflt;
  if (lua_isinteger(L, idx)) return (int)lua_tointeger(L, idx);
  const char *name = luaio_checkcstring(L, idx);
  static const struct { const char *n; int s; } sigs[] = {
    {"SIGTERM", SIGTERM}, {"SIGKILL", SIGKILL}, {"SIGINT", SIGINT}, {"SIGHUP", SIGHUP},
    {"SIGQUIT", SIGQUIT}, {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2}, {"SIGSTOP", SIGSTOP},
    {"SIGCONT", SIGCONT}, {NULL, 0}};
  for (int i = 0; sigs[i].n; i++)
    if (strcmp(sigs[i].n, name) == 0 || strcmp(sigs[i].n + 3, name) == 0) return sigs[i].s;
  return luaio_argerror(L, idx, "unknown signal name");
}

/* ---- exec ------------------------------------------------------------------ */

typedef struct exec_op exec_op;
typedef struct {
  uv_pipe_t pipe;
  exec_op *op;
  char *buf;
  size_t len, cap;
  int open;
} capture;

struct exec_op {
  luaio_op op;
  uv_process_t proc;
  uv_pipe_t in;
  uv_write_t write_req;
  capture out, err;
  luaio_host *h;
  luaio_timer timer;
  char *input;
  int64_t status;
  int term_signal, exited, timed_out, handles_open, in_open;
  double timeout;
};

static void maybe_finish(exec_op *op);

static void on_exec_handle_closed(uv_handle_t *h) {
  exec_op *op = h->data;
  if (--op->handles_open == 0) {
    free(op->out.buf);
    free(op->err.buf);
    free(op->input);
    free(op);
  }
}

static void close_handle(exec_op *op, uv_handle_t *h) {
  h->data = op;
  uv_close(h, on_exec_handle_closed);
}

static void cap_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)suggested;
  capture *c = h->data;
  if (c->cap - c->len < 4096) {
    size_t cap = c->cap ? c->cap * 2 : 16384;
    char *nb = realloc(c->buf, cap);
    if (!nb) { b->base = NULL; b->len = 0; return; }
    c->buf = nb;
    c->cap = cap;
  }
  b->base = c->buf + c->len;
  b->len = c->cap - c->len;
}

static void cap_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  capture *c = s->data;
  if (n > 0) { c->len += (size_t)n; return; }
  if (n < 0) {
    uv_read_stop(s);
    c->open = 0;
    exec_op *op = c->op;
    close_handle(op, (uv_handle_t *)&c->pipe);
    maybe_finish(op);
  }
}

static void exec_deliver(exec_op *op) {
  luaio_task *t = luaio_op_take(&op->op);
  if (!t) return;
  lua_State *co = luaio_task_stack(t);
  if (op->timed_out) {
    luaio_push_error(co, "TimeoutError", NULL, "process timed out after %f s (killed)", op->timeout);
    luaio_wake_error(t);
    return;
  }
  lua_createtable(co, 0, 4);
  lua_pushinteger(co, (lua_Integer)op->status);
  lua_setfield(co, -2, "status");
  if (op->term_signal) { lua_pushinteger(co, op->term_signal); lua_setfield(co, -2, "signal"); }
  lua_pushlstring(co, op->out.buf ? op->out.buf : "", op->out.len);
  lua_setfield(co, -2, "stdout");
  lua_pushlstring(co, op->err.buf ? op->err.buf : "", op->err.len);
  lua_setfield(co, -2, "stderr");
  luaio_wake(t, 1);
}

static void maybe_finish(exec_op *op) {
  if (!op->exited || op->out.open || op->err.open) return;
  luaio_timer_disarm(op->h, &op->timer);
  exec_deliver(op);
  close_handle(op, (uv_handle_t *)&op->proc);
}

static void on_exec_exit(uv_process_t *p, int64_t status, int sig) {
  exec_op *op = p->data;
  op->exited = 1;
  op->status = status;
  op->term_signal = sig;
  maybe_finish(op);
}

static void on_exec_timeout(luaio_timer *tm) {
  exec_op *op = luaio_container_of(tm, exec_op, timer);
  op->timed_out = 1;
  uv_process_kill(&op->proc, SIGKILL);
}

static void exec_abort(luaio_op *base) {
  exec_op *op = luaio_container_of(base, exec_op, op);
  luaio_timer_disarm(op->h, &op->timer);
  if (!op->exited) uv_process_kill(&op->proc, SIGKILL);
}

static void on_input_written(uv_write_t *req, int status) {
  (void)status;
  exec_op *op = req->data;
  close_handle(op, (uv_handle_t *)&op->in);
}

/* exec's opts (at 2): timeout and stdin (left on the stack until copied) */
static void exec_opts(lua_State *L, double *timeout, const char **input, size_t *inlen) {
  if (!lua_istable(L, 2)) {
    if (!lua_isnoneornil(L, 2)) luaio_typeerror(L, 2, "table");
    return;
  }
  if (lua_getfield(L, 2, "timeout") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaio_argerror(L, 2, lua_pushfstring(L, "opts.timeout: number expected, got %s", luaL_typename(L, -1)));
    *timeout = lua_tonumber(L, -1);
    if (!(*timeout > 0)) luaio_argerror(L, 2, "opts.timeout: a positive number of seconds expected");
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 2, "stdin") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaio_argerror(L, 2, lua_pushfstring(L, "opts.stdin: string expected, got %s", luaL_typename(L, -1)));
    *input = lua_tolstring(L, -1, inlen);
  } else lua_pop(L, 1);
}

/* The child's pipes on op (stdin only with input); stdio for uv_spawn. */
static void exec_pipes(luaio_host *h, exec_op *op, int with_input, uv_stdio_container_t stdio[3]) {
  op->out.op = op->err.op = op;
  uv_pipe_init(h->loop, &op->out.pipe, 0);
  uv_pipe_init(h->loop, &op->err.pipe, 0);
  op->out.pipe.data = &op->out;
  op->err.pipe.data = &op->err;
  stdio[0].flags = UV_IGNORE;
  if (with_input) {
    uv_pipe_init(h->loop, &op->in, 0);
    op->in_open = 1;
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&op->in;
  }
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&op->out.pipe;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&op->err.pipe;
}

/* the child runs: capture its output, feed its input, bound its time */
static void exec_started(luaio_host *h, exec_op *op, const char *input, size_t inlen) {
  op->handles_open = 3 + op->in_open;
  op->out.open = op->err.open = 1;
  uv_read_start((uv_stream_t *)&op->out.pipe, cap_alloc, cap_read);
  uv_read_start((uv_stream_t *)&op->err.pipe, cap_alloc, cap_read);
  if (input) {
    op->input = malloc(inlen ? inlen : 1);
    memcpy(op->input, input, inlen);
    uv_buf_t b = uv_buf_init(op->input, (unsigned)inlen);
    op->write_req.data = op;
    if (uv_write(&op->write_req, (uv_stream_t *)&op->in, &b, 1, on_input_written) < 0)
      close_handle(op, (uv_handle_t *)&op->in);
  }
  if (op->timeout > 0) {
    op->timer.fire = on_exec_timeout;
    luaio_timer_arm(h, &op->timer, op->timeout);
  }
}

/* exec(argv [, opts]) ⏸ -> {status, signal, stdout, stderr} */
static int l_exec(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  luaio_task *t = luaio_need_task(L, "aio.exec");
  lua_settop(L, 2);
  double timeout = 0;
  size_t inlen = 0;
  const char *input = NULL;
  exec_opts(L, &timeout, &input, &inlen);
  spawn_args a;
  read_args(L, 1, 2, &a);
  exec_op *op = calloc(1, sizeof *op);
  if (!op) { free_args(&a); return luaL_error(L, "out of memory"); }
  op->h = h;
  op->timeout = timeout;
  uv_stdio_container_t stdio[3];
  exec_pipes(h, op, input != NULL, stdio);
  int r = spawn_child(h->loop, &op->proc, &a, stdio, on_exec_exit, op);
  if (r < 0) {
    /* the handles were initialised: close them all, then free */
    op->handles_open = 3 + op->in_open;
    close_handle(op, (uv_handle_t *)&op->proc);
    close_handle(op, (uv_handle_t *)&op->out.pipe);
    close_handle(op, (uv_handle_t *)&op->err.pipe);
    if (op->in_open) close_handle(op, (uv_handle_t *)&op->in);
    lua_pushfstring(L, "spawn %s", a.argv[0]);
    free_args(&a);
    return luaio_uverror(L, "OSError", r, lua_tostring(L, -1));
  }
  free_args(&a);
  exec_started(h, op, input, inlen);
  lua_settop(L, 0);
  return luaio_op_await(L, &op->op, t, exec_abort, NULL);
}

/* ---- spawn_process ------------------------------------------------------------ */

typedef struct {
  uv_process_t proc;
  luaio_host *h;
  luaio_task *waiter;
  luaio_host *busy;        /* the virtual clock counts the wait (vclock.c) */
  int64_t status;
  int term_signal, exited, closed;
  int alive_ref;           /* anchors the userdata while the child runs */
} process;

typedef struct { process *p; } process_box;

/* The wait for the exit has ended (exit or cancel). */
static void wait_over(process *p) {
  p->waiter = NULL;
  if (p->busy) { luaio_vclock_busy_end(p->busy); p->busy = NULL; }
}

static void on_proc_closed(uv_handle_t *h) { free(h->data); }

static void on_proc_exit(uv_process_t *pr, int64_t status, int sig) {
  process *p = pr->data;
  p->exited = 1;
  p->status = status;
  p->term_signal = sig;
  luaio_host *h = p->h;
  if (p->waiter) {           /* the results go with the wake: the object may close before it runs */
    luaio_task *t = p->waiter;
    wait_over(p);
    lua_State *co = luaio_task_stack(t);
    lua_pushinteger(co, (lua_Integer)status);
    if (sig) lua_pushinteger(co, sig); else lua_pushnil(co);
    luaio_wake(t, 2);
  }
  if (p->alive_ref != LUA_NOREF) {
    luaL_unref(h->L, LUA_REGISTRYINDEX, p->alive_ref);
    p->alive_ref = LUA_NOREF;
  }
}

/* The process of self (#1), open: a closed one raises. */
static process *check_process(lua_State *L) {
  process_box *b = luaio_checkudata(L, 1, PROCESS_MT);
  if (!b->p || b->p->closed) luaio_error(L, "OSError", "EBADF", "the process is closed");
  return b->p;
}

static void wait_cancel(void *data) { wait_over(data); }

/* process:wait() ⏸ -> status, signal */
static int p_wait(lua_State *L) {
  process *p = check_process(L);
  luaio_task *t = luaio_need_task(L, "process:wait");   /* a waiting function, even for an exited child */
  lua_settop(L, 1);
  if (p->exited) {
    lua_pushinteger(L, (lua_Integer)p->status);
    if (p->term_signal) lua_pushinteger(L, p->term_signal); else lua_pushnil(L);
    return 2;
  }
  if (p->waiter) return luaL_error(L, "another task is already waiting for this process");
  p->waiter = t;
  p->busy = luaio_vclock_busy_begin(p->h);
  return luaio_await(L, wait_cancel, p, 0, NULL);
}

static int p_kill(lua_State *L) {
  process *p = check_process(L);
  int sig = signal_number(L, 2, SIGTERM);
  if (p->exited) { lua_pushboolean(L, 0); return 1; }
  int r = uv_process_kill(&p->proc, sig);
  if (r < 0) return luaio_uverror(L, "OSError", r, "kill");
  lua_pushboolean(L, 1);
  return 1;
}

/* Close the pipes of the process at idx (closing a Stream twice is a no-op). */
static void close_pipes(lua_State *L, int idx) {
  int top = lua_gettop(L);
  for (int i = 0; i < 3; i++) {
    if (lua_getiuservalue(L, idx, i + 1) == LUA_TUSERDATA &&
        luaL_getmetafield(L, -1, "__close") == LUA_TFUNCTION) {
      lua_pushvalue(L, -2);
      lua_call(L, 1, 0);
    }
    lua_settop(L, top);
  }
}

/* close() -> idempotent: closes the pipes; the handle goes once the child
** is reaped (a running child keeps running, as with Python's Popen). */
static int p_close(lua_State *L) {
  process_box *b = luaio_checkudata(L, 1, PROCESS_MT);
  lua_settop(L, 1);
  close_pipes(L, 1);                  /* the pipes go with it (even after a __gc by hand) */
  process *p = b->p;
  if (!p || p->closed) return 0;
  p->closed = 1;
  p->h->handles--;
  luaio_untrack(p->h, b);
  if (p->exited && b->p) {
    b->p = NULL;
    uv_close((uv_handle_t *)&p->proc, on_proc_closed);
  }
  return 0;
}

static int p_gc(lua_State *L) {
  process_box *b = luaL_testudata(L, 1, PROCESS_MT);
  process *p = b ? b->p : NULL;
  if (!p) return 0;
  lua_settop(L, 1);
  if (!p->h->closing) close_pipes(L, 1);   /* (collected with it anyway; this is for a __gc by hand) */
  if (!p->closed) { p->closed = 1; p->h->handles--; luaio_untrack(p->h, b); }
  b->p = NULL;
  if (p->alive_ref != LUA_NOREF) {    /* at host teardown, with the child still running */
    luaL_unref(L, LUA_REGISTRYINDEX, p->alive_ref);
    p->alive_ref = LUA_NOREF;
  }
  if (luaio_close_orphan((uv_handle_t *)&p->proc, on_proc_closed)) on_proc_closed((uv_handle_t *)&p->proc);
  return 0;
}

static int p_closed(lua_State *L) {
  process_box *b = luaio_checkudata(L, 1, PROCESS_MT);
  lua_pushboolean(L, !b->p || b->p->closed);
  return 1;
}

static int p_tostring(lua_State *L) {
  process_box *b = luaio_checkudata(L, 1, PROCESS_MT);
  if (!b->p || b->p->closed) lua_pushliteral(L, "Process<closed>");
  else lua_pushfstring(L, "Process<%d%s>", (int)b->p->proc.pid, b->p->exited ? ", exited" : "");
  return 1;
}

/* process.pid, .stdin, .stdout, .stderr, .returncode, and the methods; on a
** closed process, only its methods (close() is idempotent, the others raise) */
static int p_index(lua_State *L) {
  luaio_checkudata(L, 1, PROCESS_MT);
  const char *k = luaio_checkstring(L, 2);
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "methods");
  if (lua_getfield(L, -1, k) != LUA_TNIL) return 1;
  process *p = check_process(L);
  if (strcmp(k, "pid") == 0) { lua_pushinteger(L, p->proc.pid); return 1; }
  if (strcmp(k, "stdin") == 0) { lua_getiuservalue(L, 1, 1); return 1; }
  if (strcmp(k, "stdout") == 0) { lua_getiuservalue(L, 1, 2); return 1; }
  if (strcmp(k, "stderr") == 0) { lua_getiuservalue(L, 1, 3); return 1; }
  if (strcmp(k, "returncode") == 0) { if (p->exited) lua_pushinteger(L, (lua_Integer)p->status); else lua_pushnil(L); return 1; }
  lua_pushnil(L);
  return 1;
}

/* ---- spawn_process: stdio options (API.md §7b) -------------------------- */

enum { IO_PIPE, IO_INHERIT, IO_NULL, IO_STREAM, IO_MERGE };
static const char *const stdio_names[3] = { "stdin", "stdout", "stderr" };

typedef struct {
  int kind[3];
  int fd[3];           /* IO_STREAM: the Stream's; IO_NULL: /dev/null, opened */
  int merge_fd;        /* stderr = "stdout" with a stdout pipe: the pipe's child end */
} stdio_plan;

/* opts.<stdin|stdout|stderr> -> the plan for stdio i, checked before
** anything is made; the option stays at stack index 3 + i. */
static void plan_stdio(lua_State *L, stdio_plan *sp, int i) {
  const char *name = stdio_names[i];
  int t = lua_istable(L, 2) ? lua_getfield(L, 2, name) : (lua_pushnil(L), LUA_TNIL);
  sp->fd[i] = -1;
  sp->kind[i] = IO_PIPE;
  if (t == LUA_TNIL) return;
  if (t == LUA_TSTRING) {
    const char *v = lua_tostring(L, -1);
    if (strcmp(v, "pipe") == 0) return;
    if (strcmp(v, "inherit") == 0) { sp->kind[i] = IO_INHERIT; return; }
    if (strcmp(v, "null") == 0) { sp->kind[i] = IO_NULL; return; }
    if (i == 2 && strcmp(v, "stdout") == 0) { sp->kind[i] = IO_MERGE; return; }
  }
  const char *why = NULL;
  int fd = luaio_stream_child_fd(L, -1, &why);
  if (fd >= 0) { sp->kind[i] = IO_STREAM; sp->fd[i] = fd; return; }
  if (fd == -2) luaio_argerror(L, 2, lua_pushfstring(L, "opts.%s: %s", name, why));
  luaio_argerror(L, 2, lua_pushfstring(L, "opts.%s: \"pipe\", \"inherit\", \"null\"%s or a Stream expected, got %s",
                                       name, i == 2 ? ", \"stdout\"" : "",
                                       t == LUA_TSTRING ? lua_pushfstring(L, "\"%s\"", lua_tostring(L, -1))
                                                        : luaL_typename(L, -1)));
}

static void close_fd(int *fd) {
  if (*fd >= 0) { uv_fs_t req; uv_fs_close(NULL, &req, *fd, NULL); uv_fs_req_cleanup(&req); *fd = -1; }
}

static void plan_release(stdio_plan *sp) {
  for (int i = 0; i < 3; i++) if (sp->kind[i] == IO_NULL) close_fd(&sp->fd[i]);
  close_fd(&sp->merge_fd);
}

static void inherit(uv_stdio_container_t *c, int fd) {
  c->flags = UV_INHERIT_FD;
  c->data.fd = fd;
}

/* The containers for uv_spawn; the pipe Streams go to the process's
** uservalues (at idx). -> 0, or a libuv error (what fails, in *what). */
static int make_stdio(lua_State *L, luaio_host *h, int idx, stdio_plan *sp,
                      uv_stdio_container_t stdio[3], const char **what) {
  for (int i = 0; i < 3; i++) {
    if (sp->kind[i] == IO_NULL) {
      uv_fs_t req;
      int fd = uv_fs_open(NULL, &req, "/dev/null", i == 0 ? UV_FS_O_RDONLY : UV_FS_O_WRONLY, 0, NULL);
      uv_fs_req_cleanup(&req);
      if (fd < 0) { *what = "open /dev/null"; return fd; }
      sp->fd[i] = fd;
    }
  }
  for (int i = 0; i < 3; i++) {
    switch (sp->kind[i]) {
      case IO_INHERIT: inherit(&stdio[i], i); break;
      case IO_NULL: case IO_STREAM: inherit(&stdio[i], sp->fd[i]); break;
      case IO_MERGE: stdio[i] = stdio[1]; break;
      case IO_PIPE: {
        uv_pipe_t *pipe = luaio_stream_new_pipe(L, h);
        lua_setiuservalue(L, idx, i + 1);
        if (i == 1 && sp->kind[2] == IO_MERGE) {
          /* one pipe for both: made here, its child end inherited twice */
          uv_file ends[2];
          int r = uv_pipe(ends, 0, 0);
          if (r < 0) { *what = "pipe"; return r; }
          sp->merge_fd = ends[1];
          if ((r = uv_pipe_open(pipe, ends[0])) < 0) { close_fd(&ends[0]); *what = "pipe"; return r; }
          inherit(&stdio[i], ends[1]);
          break;
        }
        stdio[i].flags = UV_CREATE_PIPE | (i == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
        stdio[i].data.stream = (uv_stream_t *)pipe;
      }
    }
  }
  return 0;
}

/* After the spawn (idx: the process): the Streams handed over are the
** child's now, and the parent's side is closed. */
static void close_handed(lua_State *L, stdio_plan *sp) {
  for (int i = 0; i < 3; i++) {
    if (sp->kind[i] != IO_STREAM) continue;
    lua_getfield(L, 3 + i, "close");
    lua_pushvalue(L, 3 + i);
    lua_call(L, 1, 0);
  }
}

/* spawn_process(argv [, opts]) -> process */
static int l_spawn_process(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  if (!lua_isnoneornil(L, 2) && !lua_istable(L, 2)) return luaio_typeerror(L, 2, "table");
  lua_settop(L, 2);
  stdio_plan sp = { .merge_fd = -1 };
  for (int i = 0; i < 3; i++) plan_stdio(L, &sp, i);      /* 3, 4, 5: the options */
  spawn_args a;
  read_args(L, 1, 2, &a);
  process_box *box = lua_newuserdatauv(L, sizeof *box, 3);       /* 6 */
  int idx = lua_gettop(L);
  box->p = calloc(1, sizeof(process));
  process *p = box->p;
  p->h = h;
  p->alive_ref = LUA_NOREF;
  luaL_setmetatable(L, PROCESS_MT);
  uv_stdio_container_t stdio[3];
  const char *what = "spawn";
  int r = make_stdio(L, h, idx, &sp, stdio, &what);
  if (r == 0) r = spawn_child(h->loop, &p->proc, &a, stdio, on_proc_exit, p);
  plan_release(&sp);
  if (r < 0) {
    lua_pushfstring(L, "%s %s", what, a.argv[0]);
    free_args(&a);
    p->exited = 1;
    p->closed = 1;
    close_pipes(L, idx);
    if (strcmp(what, "spawn") == 0) uv_close((uv_handle_t *)&p->proc, on_proc_closed);   /* uv_spawn initialised it */
    else free(p);
    box->p = NULL;
    return luaio_uverror(L, "OSError", r, lua_tostring(L, -1));
  }
  luaio_track(L, h, idx, "process %s (pid %d)", a.argv[0], (int)p->proc.pid);
  free_args(&a);
  close_handed(L, &sp);
  h->handles++;
  lua_pushvalue(L, idx);
  p->alive_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_settop(L, idx);
  return 1;
}

static void describe_wait(lua_State *L, void *data) {
  lua_pushfstring(L, "process wait pid %d", (int)((process *)data)->proc.pid);
}

static void describe_exec(lua_State *L, void *data) {
  lua_pushfstring(L, "exec pid %d", (int)luaio_container_of((luaio_op *)data, exec_op, op)->proc.pid);
}

void luaio_open_process(lua_State *L, luaio_host *h) {
  luaio_wait_kind(h, LUAIO_WAIT_KEY(wait_cancel), describe_wait);
  luaio_wait_kind(h, LUAIO_WAIT_KEY(exec_abort), describe_exec);
  static const luaL_Reg methods[] = {
    {"wait", p_wait}, {"kill", p_kill}, {"close", p_close}, {"closed", p_closed}, {NULL, NULL}};
  luaL_newmetatable(L, PROCESS_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "methods");
  lua_pushcfunction(L, p_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, p_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, p_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, p_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  static const luaL_Reg funcs[] = {{"exec", l_exec}, {"spawn_process", l_spawn_process}, {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
