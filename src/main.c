/*
** main.c — the `luaio` command: runs a script's top level as the main task.
**   luaio script.lua [args]   luaio -e 'code'   luaio -   luaio (prompt)   luaio -v
**   luaio -i (the prompt, after the rest)   luaio --attach PATH   luaio --help
**   (the prompt and --attach: lua/luaio/repl.lua and attach.lua over the line
**   reader of lineread.c)
**   luaio --workers N|auto [--grace SEC] script.lua [args]   (supervisor.c)
** Exit status: 0 success, 1 uncaught error, 130 interrupted by SIGINT, 143 by SIGTERM
** (2: bad options of the supervisor).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "luaio_int.h"
#include "supervisor.h"
#include "lineread.h"

static const char *progname = "luaio";

static const char usage_text[] =
  "usage: %s [options] [script [args]]\n"
  "Runs a Lua 5.4 script's top level as the main task of an event loop.\n"
  "\n"
  "options:\n"
  "  -e code        run the string 'code' as a main task (`aio` is predefined)\n"
  "  -i             enter the interactive prompt (after the script or -e, if any)\n"
  "  -v             show version information\n"
  "  -h, --help     show this help\n"
  "  --             stop handling options\n"
  "  -              run standard input as the script\n"
  "  (none)         interactive prompt when standard input is a terminal,\n"
  "                 else run standard input as the script\n"
  "  --workers N|auto [--grace SEC] script [args]\n"
  "                 run the script in N worker processes under a supervisor\n"
  "                 (auto: one per CPU; SIGTERM stops them gracefully within\n"
  "                 SEC seconds, default 10; SIGHUP restarts them one by one)\n"
  "  --attach PATH  talk to a running program's monitor console (a Unix socket)\n"
  "\n"
  "environment:\n"
  "  LUAIO_DEBUG=1      debug mode: slow-task warnings, what is left open at exit\n"
  "  LUAIO_MONITOR=PATH open the monitor console on the Unix socket PATH\n"
  "  LUAIO_HISTORY=FILE the prompt's history file (default ~/.luaio_history;\n"
  "                     empty: none)\n"
  "  LUAIO_LUA_DIR=DIR  load the Lua half from DIR (a source tree's lua/)\n"
  "  LUAIO_ALLOC=system Lua's memory from malloc instead of luaio's size classes\n"
  "                     (automatic under AddressSanitizer and valgrind memcheck)\n"
  "  LUA_PATH_5_4, LUA_CPATH_5_4, LUA_PATH, LUA_CPATH  as for lua5.4\n"
  "\n"
  "exit status: 0 success, 1 uncaught error, 2 bad options of --workers,\n"
  "130 SIGINT, 143 SIGTERM. See luaio(1).\n";

static void usage(FILE *to) {
  fprintf(to, usage_text, progname);
}

/* arg table as the standalone lua builds it: script at 0, options below */
static void set_arg(lua_State *L, char **argv, int argc, int script) {
  lua_createtable(L, argc - script, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

/* Report the main task's failure; returns the exit status. */
static int report(luaio_host *h, luaio_task *t) {
  lua_State *L = luaio_host_state(h);
  int err = lua_gettop(L);
  if (lua_type(L, err) == LUA_TTABLE) {
    lua_getfield(L, err, "name");
    lua_getfield(L, err, "message");
    int cancelled = lua_isstring(L, -2) && strcmp(lua_tostring(L, -2), "CancelledError") == 0;
    const char *why = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";
    int status = !cancelled ? 0 : strcmp(why, "SIGINT") == 0 ? 130 : strcmp(why, "SIGTERM") == 0 ? 143 : 0;
    lua_pop(L, 2);
    if (status) return status;      /* the shell's convention: 128 + signal number */
  }
  const char *tb = NULL;
  lua_pushvalue(L, -2);     /* the task object */
  tb = luaio_task_traceback(t, L);
  if (tb) fprintf(stderr, "%s: %s\n", progname, tb);
  else fprintf(stderr, "%s: %s\n", progname, luaL_tolstring(L, err, NULL));
  fflush(stderr);
  return 1;
}

/* Run the task on the stack as the main task; returns the exit status (with
** use_result, an integer the task returns is the status). */
static int run_task_main(luaio_host *h, int nargs, int use_result) {
  lua_State *L = luaio_host_state(h);
  luaio_task *t = luaio_spawn(h, nargs);
  int ti = lua_gettop(L);
  int n = 0;
  int status = luaio_run_main(h, t, &n);
  if (status == LUA_OK) {
    int code = use_result && n > 0 && lua_isinteger(L, ti + 1) ? (int)lua_tointeger(L, ti + 1) : 0;
    lua_settop(L, ti - 1);
    /* main caught the signal's cancellation and returned: as asyncio.run
    ** (KeyboardInterrupt), the command still ends by the signal */
    return luaio_host_signal(h) ? 128 + luaio_host_signal(h) : code;
  }
  int code = report(h, t);
  lua_settop(L, ti - 1);
  return code;
}

/* LUAIO_MONITOR=PATH: the task monitor on that socket (lua/luaio/monitor.lua),
** for the script or the prompt; 1 when it cannot open. */
static int start_monitor(lua_State *L) {
  const char *path = getenv("LUAIO_MONITOR");
  if (!path || !*path) return 0;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luaio.monitor");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "from_env");
  lua_pushstring(L, path);
  int st = lua_pcall(L, 1, 0, 0);
  if (st != LUA_OK) fprintf(stderr, "%s: LUAIO_MONITOR: %s\n", progname, luaL_tolstring(L, -1, NULL));
  lua_settop(L, lua_gettop(L) - (st == LUA_OK ? 1 : 3));
  return st != LUA_OK;
}

static int load_error(lua_State *L) {
  fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
  lua_pop(L, 1);
  return 1;
}

/* `aio` as a global, for -e and the prompt */
static void predefine_aio(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "luaio");
  lua_call(L, 1, 1);
  lua_setglobal(L, "aio");
}

/* Push the function `name` of the embedded module `mod` (the prompt, --attach). */
static void push_module_function(lua_State *L, const char *mod, const char *name) {
  lua_getglobal(L, "require");
  lua_pushstring(L, mod);
  lua_call(L, 1, 1);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}

static int run_prompt(luaio_host *h) {
  lua_State *L = luaio_host_state(h);
  predefine_aio(L);
  push_module_function(L, "luaio.repl", "repl");
  return run_task_main(h, 0, 0);
}

static int run_attach(luaio_host *h, const char *path) {
  lua_State *L = luaio_host_state(h);
  push_module_function(L, "luaio.attach", "attach");
  lua_pushstring(L, path);
  return run_task_main(h, 1, 1);
}

int main(int argc, char **argv) {
  if (argv[0] && argv[0][0]) progname = argv[0];
  if (luaio_supervisor_wanted(argc, argv)) return luaio_supervise(argc, argv);
  int i = 1, code = 0, ran = 0, interactive = 0;
  luaio_host *h = luaio_host_new(NULL);
  if (!h) { fprintf(stderr, "%s: cannot create the host\n", progname); return 1; }
  if (luaio_worker_attach(h) < 0) {
    fprintf(stderr, "%s: $LUAIO_WORKER is malformed (only the supervisor sets it)\n", progname);
    luaio_host_free(h);
    return 2;
  }
  lua_State *L = luaio_host_state(h);
  luaio_lineread_open(L);
  for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
    if (strcmp(argv[i], "-v") == 0) {
      printf("luaio %s  (%s, libuv %s)\n", LUAIO_VERSION, LUA_RELEASE, uv_version_string());
      ran = 1;
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      goto out;
    } else if (strcmp(argv[i], "-i") == 0) {
      interactive = 1;
    } else if (strcmp(argv[i], "--attach") == 0) {
      if (++i >= argc) { usage(stderr); code = 1; goto out; }
      code = run_attach(h, argv[i]);
      goto out;
    } else if (strcmp(argv[i], "-e") == 0) {
      if (++i >= argc) { usage(stderr); code = 1; goto out; }
      set_arg(L, argv, argc, 0);
      predefine_aio(L);
      if (luaL_loadbuffer(L, argv[i], strlen(argv[i]), "=(command line)") != LUA_OK) {
        code = load_error(L);
        goto out;
      }
      code = run_task_main(h, 0, 0);
      ran = 1;
      if (code) goto out;
    } else if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    } else {
      fprintf(stderr, "%s: unknown option '%s'\n", progname, argv[i]);
      usage(stderr);
      code = 1;
      goto out;
    }
  }
  if ((i < argc || !ran || interactive) && start_monitor(L)) { code = 1; goto out; }
  if (i < argc) {
    const char *script = argv[i];
    set_arg(L, argv, argc, i);
    int st = strcmp(script, "-") == 0 ? luaL_loadfile(L, NULL) : luaL_loadfile(L, script);
    if (st != LUA_OK) { code = load_error(L); goto out; }
    int nargs = argc - i - 1;
    luaL_checkstack(L, nargs, "too many arguments");
    for (int k = i + 1; k < argc; k++) lua_pushstring(L, argv[k]);
    code = luaio_worker_exit_status(h, run_task_main(h, nargs, 0));
    if (code == 0 && interactive) code = run_prompt(h);
  } else if (interactive || (!ran && isatty(0))) {
    if (!ran) set_arg(L, argv, argc, 0);
    code = run_prompt(h);
  } else if (!ran) {
    set_arg(L, argv, argc, 0);
    if (luaL_loadfile(L, NULL) != LUA_OK) { code = load_error(L); goto out; }
    code = run_task_main(h, 0, 0);
  }
out:
  fflush(stdout);
  luaio_host_free(h);
  luaio_lineread_close();
  return code;
}
