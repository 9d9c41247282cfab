/*
** post.c — luaio_post: running a function on the loop thread, from any
** thread. Items go on a locked list and an async handle wakes the loop,
** which runs them in posting order. The handle is unreferenced, except
** while native waits are pending (sched.c: luaio_await), so that the loop
** stays alive for a thread that will post their completion.
*/
#include <stdlib.h>
#include "host.h"

typedef struct luaio_post_item {
  struct luaio_post_item *next;
  void (*fn)(luaio_host *h, void *arg);
  void *arg;
} luaio_post_item;

static void on_async(uv_async_t *handle) {
  luaio_host *h = handle->data;
  uv_mutex_lock(&h->post.lock);
  luaio_post_item *list = h->post.items;
  h->post.items = NULL;
  uv_mutex_unlock(&h->post.lock);
  /* reverse to run in posting order */
  luaio_post_item *ordered = NULL;
  while (list) { luaio_post_item *next = list->next; list->next = ordered; ordered = list; list = next; }
  while (ordered) {
    luaio_post_item *next = ordered->next;
    ordered->fn(h, ordered->arg);
    free(ordered);
    ordered = next;
  }
}

int luaio_post(luaio_host *h, void (*fn)(luaio_host *h, void *arg), void *arg) {
  luaio_post_item *item = malloc(sizeof *item);
  if (!item) return UV_ENOMEM;
  item->fn = fn;
  item->arg = arg;
  uv_mutex_lock(&h->post.lock);
  item->next = h->post.items;
  h->post.items = item;
  uv_mutex_unlock(&h->post.lock);
  return uv_async_send(&h->post.async);
}

void luaio_post_init(luaio_host *h) {
  uv_async_init(h->loop, &h->post.async, on_async);
  uv_mutex_init(&h->post.lock);
  h->post.async.data = h;
  uv_unref((uv_handle_t *)&h->post.async);
}

void luaio_post_close(luaio_host *h) {
  uv_close((uv_handle_t *)&h->post.async, NULL);
}

/* After the loop is done with the handle: run (and free) anything still posted. */
void luaio_post_free(luaio_host *h) {
  on_async(&h->post.async);
  uv_mutex_destroy(&h->post.lock);
}
