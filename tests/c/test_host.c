/*
** tests/c/test_host.c — C-level tests of the embedding API: host lifecycle,
** native waits resolved from another thread, cancellation of a native wait,
** errors raised from C, luaio_run_main's results.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <luaio.h>
#include <lauxlib.h>

static int failures, checks;
#define CHECK(cond, ...) do { checks++; if (!(cond)) { failures++; \
  fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

/* run `code` as the main task; returns the status, results on the stack */
static int run(luaio_host *h, const char *code, int *n) {
  luaio_task *t = luaio_spawn_string(h, code, "=test");
  if (!t) { fprintf(stderr, "load: %s\n", lua_tostring(luaio_host_state(h), -1)); return -1; }
  int st = luaio_run_main(h, t, n);
  lua_remove(luaio_host_state(h), -1 - *n);   /* the task object pushed by spawn */
  return st;
}

static void test_lifecycle(void) {
  for (int i = 0; i < 1000; i++) {
    luaio_host *h = luaio_host_new(NULL);
    CHECK(h != NULL, "host_new(NULL) #%d", i);
    luaio_host_free(h);
  }
  for (int i = 0; i < 1000; i++) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    luaio_host *h = luaio_host_new(&loop);
    CHECK(luaio_host_loop(h) == &loop, "borrowed loop");
    luaio_host_free(h);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0, "the borrowed loop closes clean #%d", i);
  }
  /* a host with work: tasks, timers, a pending task at free */
  luaio_host *h = luaio_host_new(NULL);
  int n;
  CHECK(run(h, "local aio = require 'luaio' aio.spawn(aio.sleep, 10) aio.sleep(0.01) return 1", &n) == LUA_OK, "run");
  lua_pop(luaio_host_state(h), n);
  luaio_host_free(h);
}

/* ---- a native wait resolved from another thread ---------------------------- */

typedef struct { luaio_host *h; luaio_task *task; uv_thread_t thread; int cancelled; } external;
static external ext;

static void deliver(luaio_host *h, void *arg) {      /* on the loop thread */
  (void)h;
  external *e = arg;
  if (!e->task) return;
  lua_pushstring(luaio_task_stack(e->task), "from another thread");
  luaio_wake(e->task, 1);
  e->task = NULL;
}

static void worker(void *arg) {
  external *e = arg;
  uv_sleep(20);
  luaio_post(e->h, deliver, e);                    /* the only call allowed off the loop thread */
}

static void external_cancel(void *data) { external *e = data; e->task = NULL; e->cancelled++; }

static int l_wait_external(lua_State *L) {
  ext.task = luaio_current(L);
  ext.h = luaio_host_of(L);
  uv_thread_create(&ext.thread, worker, &ext);
  return luaio_await(L, external_cancel, &ext, 0, NULL);
}

static int l_wait_forever(lua_State *L) {
  ext.task = luaio_current(L);
  return luaio_await(L, external_cancel, &ext, 0, NULL);
}

/* ---- an error raised from C ---------------------------------------------------- */

static uv_timer_t fail_timer;
static luaio_task *fail_task;
static void fail_now(uv_timer_t *t) {
  (void)t;
  luaio_push_error(luaio_task_stack(fail_task), "OSError", "EIO", "the device said %s", "no");
  luaio_wake_error(fail_task);
}

static int l_fail_later(lua_State *L) {
  fail_task = luaio_current(L);
  uv_timer_init(luaio_host_loop(luaio_host_of(L)), &fail_timer);
  uv_timer_start(&fail_timer, fail_now, 5, 0);
  return luaio_await(L, NULL, NULL, 0, NULL);
}

static void test_native_waits(void) {
  luaio_host *h = luaio_host_new(NULL);
  lua_State *L = luaio_host_state(h);
  lua_pushcfunction(L, l_wait_external); lua_setglobal(L, "wait_external");
  lua_pushcfunction(L, l_wait_forever); lua_setglobal(L, "wait_forever");
  lua_pushcfunction(L, l_fail_later); lua_setglobal(L, "fail_later");
  int n;

  CHECK(run(h, "return wait_external()", &n) == LUA_OK, "external wait");
  CHECK(n == 1 && strcmp(lua_tostring(L, -1), "from another thread") == 0, "woken with the thread's value");
  lua_pop(L, n);
  uv_thread_join(&ext.thread);

  ext.cancelled = 0;
  CHECK(run(h, "local aio = require 'luaio' "
               "local ok, e = pcall(aio.wait_for, wait_forever, 0.02) "
               "return aio.is_error(e, 'TimeoutError')", &n) == LUA_OK, "cancel run");
  CHECK(lua_toboolean(L, -1), "a cancelled native wait raises TimeoutError via wait_for");
  CHECK(ext.cancelled == 1, "on_cancel called exactly once (%d)", ext.cancelled);
  lua_pop(L, n);

  CHECK(run(h, "local aio = require 'luaio' local ok, e = pcall(fail_later) "
               "return aio.is_error(e, 'OSError'), e.code, e.message", &n) == LUA_OK, "error run");
  CHECK(lua_toboolean(L, -3), "the C error arrives as an OSError object");
  CHECK(strcmp(lua_tostring(L, -2), "EIO") == 0, "with its code");
  CHECK(strcmp(lua_tostring(L, -1), "the device said no") == 0, "and message");
  lua_pop(L, n);
  uv_close((uv_handle_t *)&fail_timer, NULL);

  /* run_main: results and errors */
  CHECK(run(h, "return 1, 'two', nil", &n) == LUA_OK && n == 3, "three results (%d)", n);
  CHECK(lua_tointeger(L, -3) == 1 && lua_isnil(L, -1), "result values");
  lua_pop(L, n);
  CHECK(run(h, "error('main failed')", &n) != LUA_OK, "an error status");
  CHECK(strstr(lua_tostring(L, -1), "main failed") != NULL, "the error value");
  lua_pop(L, n);
  luaio_host_free(h);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "lifecycle") == 0) test_lifecycle();
  else if (argc > 1 && strcmp(argv[1], "waits") == 0) test_native_waits();
  else { test_lifecycle(); test_native_waits(); }
  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures ? 1 : 0;
}
