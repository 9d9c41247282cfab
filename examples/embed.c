/*
** examples/embed.c — a C program that hosts luaio on its own libuv loop.
**
** It owns the loop and runs native timer work of its own on it, registers a
** native waiting function `host.compute(n)` (done on libuv's thread pool),
** runs a Lua script whose tasks wait on it alongside aio.sleep and a TCP
** echo, drives uv_run itself, and exits cleanly.
**
**   embed [script.lua]      (default: examples/embed.lua)
*/
#include <stdio.h>
#include <stdlib.h>
#include <luaio.h>
#include <lauxlib.h>

/* ---- the embedder's own work on its loop --------------------------------- */

static int ticks;
static void on_tick(uv_timer_t *t) { (void)t; ticks++; }

/* ---- a native waiting function: host.compute(n) on the thread pool -------- */

typedef struct {
  uv_work_t work;
  luaio_task *task;        /* NULL once the task stopped waiting */
  long long n, result;
} compute_job;

static void compute_run(uv_work_t *w) {        /* a pool thread */
  compute_job *j = w->data;
  long long sum = 0;
  for (long long i = 1; i <= j->n; i++) sum += i * i % 7;
  j->result = sum;
}

static void compute_done(uv_work_t *w, int status) {   /* back on the loop */
  compute_job *j = w->data;
  luaio_task *t = j->task;
  if (t && status == 0) {
    lua_pushinteger(luaio_task_stack(t), j->result);
    luaio_wake(t, 1);
  }
  free(j);
}

static void compute_cancel(void *data) {
  compute_job *j = data;
  j->task = NULL;                     /* the result will be dropped */
  uv_cancel((uv_req_t *)&j->work);    /* or never run, if it has not started */
}

static int l_compute(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 0) return luaL_argerror(L, 1, "must not be negative");
  luaio_task *t = luaio_current(L);
  if (!t) return luaL_error(L, "host.compute must be called inside a task");
  compute_job *j = calloc(1, sizeof *j);
  j->task = t;
  j->n = n;
  j->work.data = j;
  uv_queue_work(luaio_host_loop(luaio_host_of(L)), &j->work, compute_run, compute_done);
  return luaio_await(L, compute_cancel, j, 0, NULL);
}

int main(int argc, char **argv) {
  const char *script = argc > 1 ? argv[1] : "examples/embed.lua";
  uv_loop_t loop;
  uv_loop_init(&loop);

  uv_timer_t timer;                   /* our own native work, on the same loop */
  uv_timer_init(&loop, &timer);
  uv_timer_start(&timer, on_tick, 10, 10);
  uv_unref((uv_handle_t *)&timer);    /* it should not keep the loop alive */

  luaio_host *host = luaio_host_new(&loop);
  lua_State *L = luaio_host_state(host);
  lua_newtable(L);                    /* the `host` global: our native functions */
  lua_pushcfunction(L, l_compute);
  lua_setfield(L, -2, "compute");
  lua_setglobal(L, "host");

  luaio_task *task = luaio_spawn_file(host, script);
  if (!task) {
    fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
    return 1;
  }
  /* the program drives the loop: uv_run returns once no task waits on anything */
  while (!luaio_task_done(task)) uv_run(&loop, UV_RUN_ONCE);

  int status = 0;
  if (luaio_task_results(task, L) >= 0 && luaio_task_status(task)[0] != 'd') {
    fprintf(stderr, "embed: script failed: %s\n", luaL_tolstring(L, -1, NULL));
    status = 1;
  }
  printf("embed: %s; the host's own timer ticked %d times meanwhile\n", luaio_task_status(task), ticks);
  uv_close((uv_handle_t *)&timer, NULL);
  luaio_host_free(host);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0) {
    fprintf(stderr, "embed: the loop still has open handles\n");
    return 1;
  }
  return status;
}
