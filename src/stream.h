/* stream.h — native streams shared with other subsystems (processes). */
#ifndef LUAIO_STREAM_H
#define LUAIO_STREAM_H

#include "luaio_int.h"

/* Push a new Stream whose handle is a uv_pipe_t already initialised on the
** host's loop (ipc = 0), and return the handle. Once the caller has opened
** it (e.g. as UV_CREATE_PIPE stdio of uv_spawn), it reads and writes like
** any Stream. */
uv_pipe_t *luaio_stream_new_pipe(lua_State *L, luaio_host *h);

/* The descriptor of the Stream at idx, for a child process to inherit
** (spawn_process's stdio); the caller closes the Stream after the spawn.
** -1: idx is not a Stream; -2: it cannot be handed over (*why says why:
** closed, TLS, busy, or holding data read ahead). */
int luaio_stream_child_fd(lua_State *L, int idx, const char **why);

#endif
