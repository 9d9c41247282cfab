/*
** lineread.c — the `luaio` command's line reader, for the prompt (repl.lua)
** and `luaio --attach` (attach.lua). Linked into the command only (with GNU
** readline), never into libluaio.a or luaio.so; main.c registers it:
**
**   core.read_line([prompt]) ⏸ -> line (without its newline) | nil at EOF
**   core.add_history(line)        remember a line (Up recalls it); appended to
**                                 the history file when one is set
**   core.history_file(path [, max])  load the history from path, keep it to
**                                 max lines (default 1000) there from now on
**   core.line_editing()           -> true when lines come through readline
**
** Standard input is read through the loop, so every other task (servers,
** spawned tasks) goes on while a line is awaited. With a terminal on both
** stdin and stdout (as Python decides), readline's callback interface does
** the editing: a uv_poll on fd 0 feeds rl_callback_read_char one key at a
** time, and the handler is removed as soon as a line is complete, so the
** terminal is back in its ordinary mode while the line runs (a line reading
** io.read() gets a normal terminal). Without a terminal, plain lines are
** read (no prompt is written); bytes read past a line stay here for the next
** call. A regular file (or /dev/null) cannot be polled: it is read at once.
**
** Readline gets no signal handlers: SIGINT belongs to the loop (the prompt
** listens to it with aio.on_signal and cancels the read or the line).
** Cancelling a read clears the line being typed and ends the display line.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <readline/readline.h>
#include <readline/history.h>
#include "luaio_int.h"
#include "lineread.h"

typedef struct reader {
  uv_poll_t poll;
  luaio_task *task;
} reader;

static struct {
  int mode;                  /* 0: not decided yet, 1: readline, 2: plain lines */
  int rl_ready;              /* readline initialised */
  reader *active;            /* the read in progress (one at a time) */
  /* readline: the line the handler received for the active read */
  int got_line;
  char *line;
  /* plain lines: bytes read past the last line returned */
  char *buf;
  size_t len, cap;
  int eof;
  /* history */
  char *history_path;
  int history_max;
} R;

static int editing(void) {
  if (!R.mode) R.mode = isatty(0) && isatty(1) ? 1 : 2;
  return R.mode == 1;
}

/* ---- ending a read ---------------------------------------------------- */

static void free_reader(uv_handle_t *handle) { free(handle->data); }

static void end_read(reader *r) {
  uv_poll_stop(&r->poll);
  uv_close((uv_handle_t *)&r->poll, free_reader);
  R.active = NULL;
}

/* Wake the reader's task with the string s[0..n) (s NULL: nil at EOF). */
static void deliver(reader *r, const char *s, size_t n) {
  luaio_task *t = r->task;
  lua_State *S = luaio_task_stack(t);
  end_read(r);
  if (s) lua_pushlstring(S, s, n);
  else lua_pushnil(S);
  luaio_wake(t, 1);
}

static void deliver_error(reader *r, int uverr) {
  luaio_task *t = r->task;
  end_read(r);
  luaio_push_uverror(luaio_task_stack(t), "OSError", uverr, "read_line");
  luaio_wake_error(t);
}

/* ---- readline --------------------------------------------------------- */

static void on_rl_line(char *line) {
  R.got_line = 1;
  R.line = line;
  rl_callback_handler_remove();      /* the terminal goes back to normal now */
}

static void rl_setup(void) {
  if (R.rl_ready) return;
  R.rl_ready = 1;
  rl_readline_name = "luaio";
  rl_instream = stdin;
  rl_outstream = stdout;
  rl_catch_signals = 0;              /* SIGINT and SIGTERM are the loop's */
  rl_catch_sigwinch = 0;
  rl_change_environment = 0;         /* no LINES/COLUMNS in our environment */
  using_history();
}

static void on_tty_readable(uv_poll_t *p, int status, int events) {
  (void)events;
  reader *r = p->data;
  if (status < 0) {
    rl_callback_sigcleanup();
    rl_callback_handler_remove();
    deliver_error(r, status);
    return;
  }
  rl_callback_read_char();
  if (!R.got_line) return;
  R.got_line = 0;
  char *line = R.line;
  R.line = NULL;
  deliver(r, line, line ? strlen(line) : 0);
  if (!line) fputc('\n', stdout);   /* Ctrl-D: end the prompt's display line */
  fflush(stdout);
  free(line);
}

/* ---- plain lines ------------------------------------------------------ */

/* A complete line in the buffer (or the rest at EOF): push it, drop it from
** the buffer, return 1; 0 when more input is needed. */
static int take_line(lua_State *L) {
  char *nl = R.len ? memchr(R.buf, '\n', R.len) : NULL;
  if (!nl && !R.eof) return 0;
  if (!nl && R.len == 0) { lua_pushnil(L); return 1; }
  size_t n = nl ? (size_t)(nl - R.buf) : R.len;
  size_t used = nl ? n + 1 : n;
  if (n > 0 && R.buf[n - 1] == '\r') n--;
  lua_pushlstring(L, R.buf, n);
  memmove(R.buf, R.buf + used, R.len - used);
  R.len -= used;
  return 1;
}

/* One read(2) into the buffer: 1 data or EOF, 0 try again, <0 a uv error. */
static int fill(void) {
  if (R.cap - R.len < 4096) {
    size_t cap = R.cap ? R.cap * 2 : 8192;
    char *b = realloc(R.buf, cap);
    if (!b) return UV_ENOMEM;
    R.buf = b;
    R.cap = cap;
  }
  ssize_t n = read(0, R.buf + R.len, R.cap - R.len);
  if (n > 0) { R.len += (size_t)n; return 1; }
  if (n == 0) { R.eof = 1; return 1; }
  if (errno == EAGAIN || errno == EINTR) return 0;
  return uv_translate_sys_error(errno);
}

static void on_pipe_readable(uv_poll_t *p, int status, int events) {
  (void)events;
  reader *r = p->data;
  int st = status < 0 ? status : fill();
  if (st < 0) { deliver_error(r, st); return; }
  if (st == 0) return;
  lua_State *S = luaio_task_stack(r->task);
  if (!take_line(S)) return;
  luaio_task *t = r->task;
  end_read(r);
  luaio_wake(t, 1);
}

/* ---- read_line -------------------------------------------------------- */

static void read_cancel(void *data) {
  reader *r = data;
  if (editing()) {
    rl_callback_sigcleanup();        /* a half-typed key sequence too */
    rl_replace_line("", 0);
    rl_callback_handler_remove();
    fputc('\n', stdout);             /* what was typed stays on screen, above */
    fflush(stdout);
  }
  end_read(r);
}

/* read_line([prompt]) ⏸ -> line | nil at EOF */
static int l_read_line(lua_State *L) {
  const char *prompt = lua_isnoneornil(L, 1) ? "" : luaio_checkcstring(L, 1);
  luaio_task *t = luaio_need_task(L, "read_line");
  if (R.active) return luaio_error(L, "InvalidStateError", NULL, "another task is reading a line already");
  int tty = editing();
  if (!tty && take_line(L)) return 1;
  reader *r = calloc(1, sizeof *r);
  if (!r) return luaio_error(L, "OSError", "ENOMEM", "read_line: out of memory");
  int flags = fcntl(0, F_GETFL);
  int e = uv_poll_init(luaio_host_loop(luaio_host_of(L)), &r->poll, 0);
  /* uv_poll_init made stdin non-blocking: that is the open file's state,
  ** shared with the shell and with a line's own io.read(); readiness is
  ** all we need, so it goes back as it was */
  if (flags >= 0 && !(flags & O_NONBLOCK)) fcntl(0, F_SETFL, flags);
  if (e < 0) {
    free(r);
    if (tty || e != UV_EPERM) return luaio_uverror(L, "OSError", e, "read_line");
    /* a regular file or /dev/null: reading never waits */
    while (!take_line(L)) {
      int st = fill();
      if (st < 0) return luaio_uverror(L, "OSError", st, "read_line");
    }
    return 1;
  }
  r->poll.data = r;
  r->task = t;
  fflush(stdout);
  if (tty) {
    rl_setup();
    rl_reset_screen_size();          /* the window may have changed since */
    rl_callback_handler_install(prompt, on_rl_line);
  }
  uv_poll_start(&r->poll, UV_READABLE, tty ? on_tty_readable : on_pipe_readable);
  R.active = r;
  return luaio_await(L, read_cancel, r, 0, NULL);
}

/* ---- history ---------------------------------------------------------- */

/* add_history(line): not twice in a row, never an empty line */
static int l_add_history(lua_State *L) {
  const char *line = luaio_checkcstring(L, 1);
  if (!editing() || !*line) return 0;
  rl_setup();
  HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
  if (last && strcmp(last->line, line) == 0) return 0;
  add_history(line);
  if (R.history_path && append_history(1, R.history_path) == 0)
    history_truncate_file(R.history_path, R.history_max);
  return 0;
}

/* history_file(path [, max]): load it, and append every new line to it */
static int l_history_file(lua_State *L) {
  const char *path = luaio_checkcstring(L, 1);
  lua_Integer max = luaio_optinteger(L, 2, 1000);
  if (max < 1 || max > 1000000) return luaio_argerror(L, 2, "between 1 and 1000000 expected");
  if (!editing()) return 0;
  rl_setup();
  char *copy = strdup(path);
  if (!copy) return luaio_error(L, "OSError", "ENOMEM", "history_file: out of memory");
  free(R.history_path);
  R.history_path = copy;
  R.history_max = (int)max;
  stifle_history((int)max);
  if (read_history(path) != 0) write_history(path);    /* a new file (mode 0600) */
  return 0;
}

static int l_line_editing(lua_State *L) {
  lua_pushboolean(L, editing());
  return 1;
}

void luaio_lineread_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"read_line", l_read_line}, {"add_history", l_add_history},
    {"history_file", l_history_file}, {"line_editing", l_line_editing}, {NULL, NULL}};
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "luaio.core") == LUA_TTABLE) luaL_setfuncs(L, funcs, 0);
  lua_pop(L, 2);
}

/* At exit: readline's memory, the buffer. */
void luaio_lineread_close(void) {
  if (R.rl_ready) clear_history();
  free(R.history_path);
  free(R.buf);
  memset(&R, 0, sizeof R);
}
