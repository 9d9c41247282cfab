/*
** module.c — luaopen_luaio (and luaopen_luaio_testing): builds the native core table, registers it as
** the module "luaio.core", then runs the embedded Lua half (every .lua file
** under lua/luaio, compiled in; init.lua assembles and returns `aio`).
**
** ==== The C–Lua seam ======================================================
** Everything the Lua half can reach of the C side is listed here: the
** functions of `core` (require "luaio.core"), grouped by the C file that
** defines them, and the hooks, the Lua functions C calls by name.
** ⏸ = waits (must run inside a task; raises the contract's error
** otherwise). Public = installed as is under that aio.* name by the Lua
** half (lua/luaio/<file> in brackets); the others are used there only.
**
** core function            C file         contract
** -------------            ------         --------
** spawn(fn, ...)           sched.c        -> Task, queued to run soon   [aio.spawn]
** sleep(sec) ⏸             sched.c        sleep(0) yields to the ready tasks   [aio.sleep]
** suspend(owner [, what [, about]]) ⏸ sched.c  park the running task until wake(it,
**                                         owner, ...): -> true, ...; false, err when
**                                         cancelled; what (a constant string: "queue get")
**                                         and about (the queue) name the wait for the monitor
** wake(task, owner, ...)   sched.c        resume a task parked on owner with ...; false
**                                         if it is not (any more) parked on owner
** now()                    sched.c        a monotonic clock, seconds (the virtual one
**                                         while it is on: vclock.c)   [aio.now]
** stats()                  sched.c        {tasks, ready, timers, handles, switches,
**                                         iterations, spawned}   [aio.stats]
** need_task(fname)         sched.c        -> the running task, or the "must be called
**                                         inside a task" / "cannot wait here" error at
**                                         the caller's caller (first line of a Lua wait)
** is_task(v)               task_methods.c v is a Task
** current_task()           task_methods.c -> Task | nil   [aio.current_task]
** all_tasks()              task_methods.c -> the pending tasks   [aio.all_tasks]
** task_methods             task_methods.c the Task methods table (wait, cancel, uncancel,
**                                         cancelling, done, cancelled, status, result,
**                                         error, add_done_callback, traceback): the Lua
**                                         half calls them as plain functions
** call_later(sec, fn)      timers.c       -> Timer (t:cancel()); fn runs on the loop, not
**                                         in a task
** run(fn, ...)             host.c         run fn as the main task of a loop to its end
**                                         (inside the luaio command: hooks.run_nested)
**                                         [aio.run]
** run_virtual(fn, ...)     host.c         run on the virtual clock (inside the luaio
**                                         command: hooks.run_virtual)   [testing.run]
** set_clock(virtual)       vclock.c       switch the host's clock (-> whether it was
**                                         virtual); the rules of the jump: vclock.c
** clock_virtual()          vclock.c       -> whether the clock is virtual
** clock_fire(t)            vclock.c       the earliest deadlines, if due by t (a time of
**                                         aio.now()): the clock moves there, they fire
**                                         -> whether any did   (testing.advance)
** clock_set(t)             vclock.c       move the virtual clock forward to t
** set_debug(on [, opts])   host.c         debug mode (opts.slow_callback, seconds):
**                                         slow-task warnings, open-resource report
**                                         [aio.set_debug]
** get_debug()              host.c         -> on, slow_callback
** interrupted()            host.c         -> "SIGINT" | "SIGTERM" | nil: the signal that
**                                         cancelled the main task
** interrupt_lines(on)      host.c         -> SIGINTs delivered to running code since the last
**                                         call; on: the prompt's mode (interrupt.c)
** queue_new(self, kind, maxsize) queue.c -> core, getters, putters: the native core of
**                                         a Queue ("fifo"), LifoQueue ("lifo") or
**                                         PriorityQueue ("heap": items kept in Lua)
** queue_methods(core, Queue, wait_put, wait_get) queue.c -> the queue's own put, get
**                                         (C closures; waiting calls back into Lua)
** queue_state(core)        queue.c        -> items queued, unfinished, shut down
** queue_put_now(core, x), queue_get_now(core) -> x   queue.c   put_nowait/get_nowait
** queue_admit, queue_added, queue_admit_take, queue_taken (core)   queue.c
**                                         a PriorityQueue's checks and counts around
**                                         its own store
** queue_wait(core, "get"|"put", task), queue_abandon(core, which, task)   queue.c
**                                         join a waiter list; leave it when cancelled
** queue_task_done(core) -> all done; queue_shutdown(core, immediate) -> all done;
** queue_wake_all(core)     queue.c        the waiters of a queue shut down
** version()                module.c       -> "luaio X (Lua 5.4.x, libuv Y)"   [aio.version]
** error(name, msg [, fields]) errors.c    -> a new luaio error object (not raised)
**                                         [aio.new_error]
** is_error(v [, name])     errors.c       v is a luaio error (of that name)   [aio.is_error]
** arg_error(n, msg [, level]) errors.c    raise Lua's "bad argument #n to 'aio.NAME'"
**                                         for a function written in Lua (level 1: the
**                                         function calling arg_error)
** type_name(v)             errors.c       the type name Lua's messages use (__name)
** json_encode(v)           json.c         -> JSON text (marked tables as arrays)   [aio.json.encode]
** json_decode(s)           json.c         -> value; arrays marked, whole numbers within
**                                         2^53 integers   [aio.json.decode]
** json_array([t])          json.c         -> t (or {}) marked with json_array_mt   [aio.json.array]
** json_array_mt, json_null json.c         the array mark; null (NULL light userdata)
**                                         [aio.json.array_mt, aio.json.null]
** deflater(format [, level [, wbits [, memlevel]]]) zlib.c  -> Deflater: "gzip" | "zlib" |
**                                         "raw"; write(data [, flush]) -> bytes (flush
**                                         "none" | "sync" | "full" | "finish"), finish(),
**                                         reset(), close()
** inflater(format [, max_output [, wbits]]) zlib.c  -> Inflater: also "auto"; write(data
**                                         [, max]) -> bytes, finished(), trailing(),
**                                         total(), reset(), close(); output past a limit:
**                                         ProtocolError {limit = true}; corrupt data:
**                                         ProtocolError
** http_parse_head(s, kind) http_parse.c   -> head table | nil, status, reason
** http_chunk_size(line)    http_parse.c   -> size | nil, reason (a chunked-body size line)
** http_unescape(s [, plus]) http_parse.c  -> percent-decoded s
** ws_frame(opcode, payload, fin, rsv1, masked) ws_frame.c  -> header, body: a WebSocket
**                                         frame's header (2-14 bytes, with a random mask
**                                         key when masked) and its payload (masked: a
**                                         masked copy); then stream:write(header, body)
** ws_utf8(state, data [, final]) ws_frame.c  -> state (0: at a character boundary)
**                                         | false: data, continuing from state, is not
**                                         UTF-8; final: ending inside a character is false
** ws_accept(key)           ws_frame.c     -> Sec-WebSocket-Accept for key (base64 SHA-1)
** ws_key()                 ws_frame.c     -> a new random Sec-WebSocket-Key
** resp_command(arg, ...)   resp.c         -> a Redis command in RESP (integers in decimal,
**                                         floats %.17g) | nil, index, type name: an
**                                         argument neither string nor number (or NaN)
** md5_hex(s), sha256(s), hmac_sha256(key, s), pbkdf2_sha256(pw, salt, iter),
**   random_bytes(n), base64_encode(s), base64_decode(s) -> s | nil   digest.c
**                                         the digests of database authentication
** getaddrinfo(host [, port]) ⏸ dns.c      -> { {addr=, family=}, ... }   [aio.getaddrinfo]
** tcp_connect(ip, port) ⏸  connect.c      -> Stream (no name resolution: streams.lua)
** pipe_connect(path) ⏸     connect.c      -> Stream on a Unix socket
** tcp_listen(ip, port, backlog, reuseport) listener.c  -> Listener (accept ⏸,
**                                         accept_nowait -> Stream | nil, close, address);
**                                         in worker mode the supervisor's socket (port > 0)
** pipe_listen(path, backlog) listener.c   -> Listener on a Unix socket
** stream_mt, stream_methods stream.c      the Stream metatable and its methods table
**                                         (streams.lua adds lines, start_tls)
**                                         stream:_read_ws_frame(expect_masked, max_payload
**                                         [, allow_rsv1]) ⏸ (stream_read.c, ws_frame.c)
**                                         -> fin, opcode, payload, rsv1 | nil at EOF;
**                                         WebSocketError {code = 1002 | 1009}
**                                         stream:_read_resp([max_bulk]) ⏸ (stream_read.c,
**                                         resp.c) -> one Redis reply (RESP2/3) as Lua
**                                         values [, "error" | "push"] | nil, "eof";
**                                         ProtocolError (bad data, over max_bulk)
**                                         stream:_ended() -> an EOF or read error is
**                                         buffered (the peer has gone)
**                                         stream:_read_pg([rows, names, kinds]) ⏸
**                                         (stream_read.c, pg_wire.c) -> type, body | nil
**                                         at EOF: a PostgreSQL message, the DataRows
**                                         before it decoded into rows
** tls_context{...}         tls.c          -> TLSContext (server, verify, ca_file,
**                                         cert_file, key_file, alpn); TLS 1.2+, a
**                                         server ECDHE+AEAD only, in its own order
** udp_bind(ip, port)       udp.c          -> UDP socket (sendto ⏸ via hooks.resolve_udp)
** to_thread(fn, ...) ⏸     thread.c       run fn in a worker Lua state on the libuv pool
**                                         [aio.to_thread]
** exec(argv [, opts]) ⏸    process.c      -> {status, signal, stdout, stderr}   [aio.exec]
** spawn_process(argv [, opts]) process.c  -> Process; opts.stdin/stdout/stderr: "pipe",
**                                         "inherit", "null", a Stream, stderr "stdout"
**                                         [aio.spawn_process]
** fs                       fs.c           table: read_file, write_file, append_file,
**                                         stat, listdir, mkdir, remove, rename, open
**                                         (⏸ all) [aio.fs; system.lua adds exists]
** on_signal(name, fn)      signal.c       -> handle (fn spawned per signal, hooks.spawn)
**                                         [aio.on_signal]
** wait_signal(name) ⏸      signal.c       -> name   [aio.wait_signal]
** worker_info()            worker.c       -> id, count, pid | nothing outside worker
**                                         mode (`luaio --workers`)   [aio.worker, worker.lua]
** worker_done(in_time)     worker.c       the worker's drain is over (in time or not):
**                                         cancel the main task as the stop signal would
** task_info(task)          waitinfo.c     -> {id, name, state ("new", "ready", "running",
**                                         "waiting", ...), daemon, wait (a line) | wait_what,
**                                         wait_on, spawned_at, spawned_time}: the monitor's ps
** set_daemon(task)         waitinfo.c     the monitor's tasks: their waits keep neither the
**                                         loop nor a deadlock alive; hidden from ps
** track(obj, label)        track.c        debug mode: obj is open, made at the user's line
**                                         [aio._track]
** untrack(obj)             track.c        obj (a Lua object or a native userdata) is closed
**                                         [aio._untrack]
** open_resources()         track.c        -> labels of what is open, oldest first (debug)
** monitor_listen(path)     monitor.c      -> Listener on a new 0600 Unix socket (a stale
**                                         one replaced), unref'd, its connections too
** rss()                    monitor.c      -> resident memory, bytes (nil without /proc)
** hooks                    host.c         the hooks table (registry h->hooks_ref), below
** -- added by the luaio command only (main.c, lineread.c; not in libluaio/luaio.so):
** read_line([prompt]) ⏸    lineread.c     -> a line of stdin | nil at EOF, the loop running;
**                                         readline on a terminal (terminal.lua, repl.lua)
** add_history(line), history_file(path [, max]), line_editing()  lineread.c  the
**                                         prompt's history (file kept to max lines)
** (coro.c replaces coroutine.resume/wrap/close in place; not in core.)
**
** hook (core.hooks.NAME)   called by      defined in lua/luaio/hooks.lua; contract
** ----------------------   ---------      ----------------------------------------
** spawn(fn, ...) -> Task   sched.c (luaio_spawn), signal.c   required: = core.spawn
** run_nested(fn, ...)      host.c (l_run)  required: aio.run(main) at the top level
**                                         of a script the luaio command runs: main as
**                                         a task, with asyncio.run's end semantics
** run_virtual(fn, ...)     host.c (run_virtual), testing.it  required: run_nested
**                                         on the virtual clock, then back to the real one
** resolve_udp(host, family) -> addr  udp.c (sendto)  required for sendto to a
**                                         host name: an address of the socket's family
** worker_stop(signal, grace) worker.c    required in worker mode: SIGTERM/SIGINT came;
**                                         close every server, let connections drain up
**                                         to grace seconds, then core.worker_done
** slow_task(task, sec, where) sched.c     optional: debug mode, a task held the loop
** main_done()              host.c (run_until)  optional: the main task ended; debug
**                                         mode lists tasks and resources left open
** loop_closed()            host.c (run_until)  optional, defined nowhere today: after
**                                         the loop drained, before unretrieved task
**                                         errors are reported (call_hook skips a
**                                         hook that is not a function)
** ===========================================================================
*/
#include <stdlib.h>
#include <string.h>
#include <lualib.h>
#include "luaio_int.h"
#include "host.h"

typedef struct { const char *name; const char *src; size_t len; } luaio_source;
extern const luaio_source luaio_sources[];

luaio_host *luaio_host_attach(lua_State *L, uv_loop_t *loop);
void luaio_open_host(lua_State *L, luaio_host *h);

/* the loop that luaio_host_new asks the next luaopen_luaio to borrow */
_Thread_local uv_loop_t *luaio_borrow_loop;

/* Load module `modname` ("luaio.sync"): from $LUAIO_LUA_DIR when set (for
** working on the Lua half without rebuilding), else from the binary. */
int luaio_load_embedded(lua_State *L, const char *modname) {
  const char *dir = getenv("LUAIO_LUA_DIR");
  if (dir && *dir) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, dir);
    luaL_addchar(&b, '/');
    for (const char *p = modname; *p; p++) luaL_addchar(&b, *p == '.' ? '/' : *p);
    luaL_addstring(&b, ".lua");
    luaL_pushresult(&b);
    int st = luaL_loadfile(L, lua_tostring(L, -1));
    lua_remove(L, -2);
    return st;
  }
  for (const luaio_source *s = luaio_sources; s->name; s++) {
    if (strcmp(s->name, modname) == 0) {
      lua_pushfstring(L, "@[luaio]/%s.lua", modname);
      int st = luaL_loadbuffer(L, s->src, s->len, lua_tostring(L, -1));
      lua_remove(L, -2);
      return st;
    }
  }
  lua_pushfstring(L, "no embedded module '%s'", modname);
  return LUA_ERRFILE;
}

/* package.preload loader for the embedded modules */
static int preload_embedded(lua_State *L) {
  const char *name = luaio_checkstring(L, 1);
  if (luaio_load_embedded(L, name) != LUA_OK) return lua_error(L);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

/* With $LUAIO_LUA_DIR set, a searcher (after preload) for the "luaio.*"
** modules the binary does not embed yet: new files of the Lua half load
** without a rebuild. */
static int search_dev_dir(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  if (strncmp(name, "luaio.", 6) != 0) {
    lua_pushfstring(L, "no module '%s' in $LUAIO_LUA_DIR (only luaio.*)", name);
    return 1;
  }
  int st = luaio_load_embedded(L, name);
  if (st == LUA_ERRFILE) return 1;      /* the message: not there */
  if (st != LUA_OK) return lua_error(L);
  lua_pushvalue(L, 1);
  return 2;
}

static void add_dev_searcher(lua_State *L) {
  int top = lua_gettop(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, LUA_LOADLIBNAME) == LUA_TTABLE &&
      lua_getfield(L, -1, "searchers") == LUA_TTABLE &&
      lua_rawgeti(L, -1, 2) != LUA_TNIL && lua_tocfunction(L, -1) != search_dev_dir) {
    lua_pop(L, 1);
    for (lua_Integer i = (lua_Integer)luaL_len(L, -1); i >= 2; i--) {  /* insert at 2, after preload */
      lua_rawgeti(L, -1, i);
      lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, search_dev_dir);
    lua_rawseti(L, -2, 2);
  }
  lua_settop(L, top);
}

static int l_version(lua_State *L) {
  lua_pushfstring(L, "luaio %s (%s, libuv %s)", LUAIO_VERSION, LUA_RELEASE, uv_version_string());
  return 1;
}

static void (*const subsystems[])(lua_State *L, luaio_host *h) = {
  luaio_open_stream, luaio_open_udp, luaio_open_dns, luaio_open_fs,
  luaio_open_process, luaio_open_signal, luaio_open_thread, luaio_open_http_parse,
  luaio_open_tls, luaio_open_json, luaio_open_zlib, luaio_open_ws, luaio_worker_open,
  luaio_open_waitinfo, luaio_open_track, luaio_open_monitor,
  luaio_open_resp, luaio_open_digest, luaio_open_queue,
};

int luaopen_luaio(lua_State *L) {
  luaio_host *h = luaio_host_get(L);
  if (!h) {
    h = luaio_host_attach(L, luaio_borrow_loop);
    if (!h) return luaL_error(L, "luaio: cannot create the host (out of memory or no loop)");
  }
  lua_createtable(L, 0, 32);     /* core */
  luaio_open_errors(L);
  luaio_open_sched(L, h);
  luaio_open_host(L, h);
  lua_pushcfunction(L, l_version);
  lua_setfield(L, -2, "version");
  luaio_open_coro(L);
  for (size_t i = 0; i < sizeof subsystems / sizeof subsystems[0]; i++) subsystems[i](L, h);
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->hooks_ref);
  lua_setfield(L, -2, "hooks");
  /* the Lua half's modules require "luaio.core" for this table; a second
  ** luaopen_luaio in this state (a fresh core) reloads them all */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  for (const luaio_source *s = luaio_sources; s->name; s++) {
    lua_pushnil(L);
    lua_setfield(L, -2, s->name);
  }
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "luaio.core");
  lua_pop(L, 1);
  /* embedded submodules are found by require */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const luaio_source *s = luaio_sources; s->name; s++) {
    if (strcmp(s->name, "luaio.init") == 0) continue;
    lua_pushcfunction(L, preload_embedded);
    lua_setfield(L, -2, s->name);
  }
  lua_pop(L, 1);
  if (getenv("LUAIO_LUA_DIR") && *getenv("LUAIO_LUA_DIR")) add_dev_searcher(L);
  if (luaio_load_embedded(L, "luaio.init") != LUA_OK) return lua_error(L);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  /* Compiling the Lua half leaves its garbage (parser tables, chunk names):
  ** one full collection, so that a program starts from a heap of live
  ** objects only and the collector's pacing from then on does not depend on
  ** how the Lua half is split into files (a spawn benchmark moved by 3 % on
  ** where the last cycle fell). */
  lua_gc(L, LUA_GCCOLLECT);
  return 1;
}

/* require "luaio.testing" first thing from stock lua5.4: Lua's all-in-one
** loader finds luaio.so under the name "luaio" and asks it for this entry
** point. Load luaio (which preloads its Lua half), then the module itself. */
int luaopen_luaio_testing(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luaio");
  lua_call(L, 1, 0);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luaio.testing");
  lua_call(L, 1, 1);
  return 1;
}
