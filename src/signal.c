/*
** signal.c — aio.on_signal and aio.wait_signal. A handler for SIGINT or
** SIGTERM replaces the host's default (cancel the main task) while it is open.
*/
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "host.h"

#define SIGNAL_MT "luaio.SignalHandler"

typedef struct {
  uv_signal_t handle;
  luaio_host *h;
  int signum;
  int fn_ref;              /* handler function, or LUA_NOREF for a one-shot wait */
  int self_ref;            /* anchors the userdata while open */
  luaio_task *waiter;
  int closed;
} sig_handler;

typedef struct { sig_handler *s; } sig_box;

static int signal_by_name(lua_State *L, int idx) {
  if (lua_isinteger(L, idx)) return (int)lua_tointeger(L, idx);
  const char *name = luaio_checkcstring(L, idx);
  static const struct { const char *n; int s; } sigs[] = {
    {"SIGINT", SIGINT}, {"SIGTERM", SIGTERM}, {"SIGHUP", SIGHUP}, {"SIGQUIT", SIGQUIT},
    {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2}, {"SIGWINCH", SIGWINCH}, {"SIGCHLD", SIGCHLD},
    {"SIGALRM", SIGALRM}, {"SIGPIPE", SIGPIPE}, {NULL, 0}};
  for (int i = 0; sigs[i].n; i++)
    if (strcmp(sigs[i].n, name) == 0 || strcmp(sigs[i].n + 3, name) == 0) return sigs[i].s;
  return luaio_argerror(L, idx, "unknown signal name (use e.g. \"SIGINT\", \"SIGTERM\", \"SIGUSR1\")");
}

static void count_user(sig_handler *s, int delta) {
  if (s->signum == SIGINT || s->signum == SIGTERM) s->h->user_signal_handlers += delta;
}

static void on_closed(uv_handle_t *handle) { free(handle->data); }

static void handler_close(lua_State *L, sig_handler *s) {
  if (s->closed) return;
  s->closed = 1;
  count_user(s, -1);
  uv_signal_stop(&s->handle);
  luaL_unref(L, LUA_REGISTRYINDEX, s->fn_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, s->self_ref);
  s->fn_ref = s->self_ref = LUA_NOREF;
  uv_close((uv_handle_t *)&s->handle, on_closed);
}

/* a handler runs as a task of its own per signal */
static void on_signal(uv_signal_t *handle, int signum) {
  sig_handler *s = handle->data;
  lua_State *L = s->h->L;
  if (s->fn_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->h->hooks_ref);
  lua_getfield(L, -1, "spawn");
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->fn_ref);
  lua_pushinteger(L, signum);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) lua_pop(L, 1);
  lua_pop(L, 1);
}

static sig_handler *start(lua_State *L, luaio_host *h, int signum, uv_signal_cb cb) {
  sig_box *box = lua_newuserdatauv(L, sizeof *box, 0);
  sig_handler *s = calloc(1, sizeof *s);
  box->s = s;
  luaL_setmetatable(L, SIGNAL_MT);
  s->h = h;
  s->signum = signum;
  s->fn_ref = s->self_ref = LUA_NOREF;
  uv_signal_init(h->loop, &s->handle);
  s->handle.data = s;
  int r = uv_signal_start(&s->handle, cb, signum);
  if (r < 0) {
    s->closed = 1;
    uv_close((uv_handle_t *)&s->handle, on_closed);
    box->s = NULL;
    luaio_uverror(L, "OSError", r, "signal");
  }
  /* an open handler keeps the loop alive: waiting for a signal is real work */
  count_user(s, 1);
  return s;
}

/* on_signal(name, fn) -> handle with :close() */
static int l_on_signal(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  int signum = signal_by_name(L, 1);
  luaio_checktype(L, 2, LUA_TFUNCTION);
  sig_handler *s = start(L, h, signum, on_signal);
  lua_pushvalue(L, 2);
  s->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (h->debug.on) {
    luaL_tolstring(L, 1, NULL);
    luaio_track(L, h, -2, "signal handler %s", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return 1;
}

static void on_wait_signal(uv_signal_t *handle, int signum) {
  sig_handler *s = handle->data;
  luaio_task *t = s->waiter;
  s->waiter = NULL;
  if (!t) return;
  lua_pushinteger(luaio_task_stack(t), signum);
  luaio_wake(t, 1);
}

/* the handle itself closes with its userdata; it stops listening now */
static void wait_cancel(void *data) {
  sig_handler *s = data;
  s->waiter = NULL;
  uv_signal_stop(&s->handle);
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  sig_box *box = lua_touserdata(L, 1);
  if (box->s) { handler_close(L, box->s); box->s = NULL; }
  lua_pushstring(L, lua_tostring(L, 2));
  return 1;
}

/* wait_signal(name) ⏸ -> name */
static int l_wait_signal(lua_State *L) {
  luaio_host *h = luaio_upvalue_host(L);
  int signum = signal_by_name(L, 1);
  luaio_task *t = luaio_need_task(L, "aio.wait_signal");
  const char *name = lua_tostring(L, 1);
  lua_settop(L, 1);
  lua_pushstring(L, name ? name : "signal");
  sig_handler *s = start(L, h, signum, on_wait_signal);
  lua_replace(L, 1);                   /* [handle, name] */
  s->waiter = t;
  return luaio_await(L, wait_cancel, s, 0, wait_k);
}

static int h_close(lua_State *L) {
  sig_box *box = luaio_checkudata(L, 1, SIGNAL_MT);
  if (box->s) { luaio_untrack(box->s->h, box); handler_close(L, box->s); box->s = NULL; }
  return 0;
}

static int h_gc(lua_State *L) {
  sig_box *box = luaL_testudata(L, 1, SIGNAL_MT);
  sig_handler *s = box ? box->s : NULL;
  if (!s) return 0;
  box->s = NULL;
  /* at host teardown the loop walk closed the handle without our callback:
  ** the memory is ours to free now */
  if (!s->h->closing) handler_close(L, s);
  else if (luaio_close_orphan((uv_handle_t *)&s->handle, on_closed)) free(s);
  return 0;
}

static int h_tostring(lua_State *L) {
  sig_box *box = luaio_checkudata(L, 1, SIGNAL_MT);
  lua_pushfstring(L, "SignalHandler<%s>", box->s ? "open" : "closed");
  return 1;
}

static void describe_wait(lua_State *L, void *data) {
  lua_pushfstring(L, "signal wait %d", ((sig_handler *)data)->signum);
}

void luaio_open_signal(lua_State *L, luaio_host *h) {
  luaio_wait_kind(h, LUAIO_WAIT_KEY(wait_cancel), describe_wait);
  luaL_newmetatable(L, SIGNAL_MT);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, h_close);
  lua_setfield(L, -2, "close");
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, h_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, h_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, h_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  static const luaL_Reg funcs[] = {{"on_signal", l_on_signal}, {"wait_signal", l_wait_signal}, {NULL, NULL}};
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
}
