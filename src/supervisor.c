/*
** supervisor.c — `luaio --workers N|auto [--grace SEC] script.lua [args]`.
**
** The supervising process runs no Lua and no user code. It starts N workers
** by re-executing this binary (/proc/self/exe) on the script with
** $LUAIO_WORKER set (worker.c reads it); each worker reads the script
** afresh, which is what a reload needs. Then:
**
**   a worker dies   it is restarted under the same id after a delay that
**                   doubles (DELAY_MIN .. DELAY_MAX) while it keeps dying
**                   and starts over once a worker stayed up STAYED_UP s, so
**                   a script that fails at start cannot make this spin;
**                   every event goes to stderr with the id, pid and cause.
**   SIGTERM/SIGINT  graceful stop: SIGTERM to every worker (each one stops
**                   accepting and lets its connections finish for up to
**                   --grace s); SIGKILL to those still there KILL_MARGIN s
**                   after the grace. Exit 0 when every worker stopped in
**                   time, 1 otherwise; a second signal kills them at once.
**   SIGHUP          rolling reload: a new generation starts; each old worker
**                   gets SIGTERM once its replacement is ready (worker.c
**                   says when a worker is).
**
** Listening sockets are the supervisor's: a worker asks for the one of an
** address on its channel and gets its id's socket (socket_for), the same in
** every generation, so none closes during a reload: closing a listening
** socket resets the connections waiting in its backlog (docs/deployment.md
** has the measures behind this design). Workers die with the
** supervisor, even a SIGKILLed one: PR_SET_PDEATHSIG (SIGTERM, so they stop
** gracefully) is set between fork and exec, then getppid() is checked to
** close the race with a supervisor that died before that.
**
** One thread and one poll(): a signalfd (those signals and SIGCHLD are
** blocked) and the workers' channels; the timers are deadlines looked at on
** each turn.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include "supervisor.h"

#define DELAY_MIN 0.1      /* seconds before the first restart */
#define DELAY_MAX 10.0     /* the longest delay a dying worker gets */
#define STAYED_UP 10.0     /* a worker that lived this long restarts at DELAY_MIN */
#define KILL_MARGIN 3.0    /* past the grace, for the main task's cleanup */
#define KEEP_SOCKETS 1.0   /* a worker restarting within this keeps its sockets open */
#define MAX_WORKERS 1024

typedef struct shared_socket {
  struct shared_socket *next;
  int fd;                  /* -1 once closed (at the stop), kept while held */
  int users;               /* worker processes holding it */
  char key[160];           /* "T ip port" or "U path" */
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];   /* Unix: unlinked at close */
} shared_socket;

typedef struct proc {      /* one worker process */
  struct proc *next;
  pid_t pid;
  int id;                  /* 1..count: the slot it fills */
  unsigned gen;            /* the generation that started it */
  int chan;                /* our end of its channel; -1 once closed */
  double started, kill_at; /* kill_at: 0 until it is asked to stop */
  int ready, killed;
  shared_socket **held;
  int nheld;
} proc;

typedef struct {           /* a worker id */
  double delay;            /* before its next restart */
  double restart_at;       /* 0: none pending */
  shared_socket **held;    /* a dead worker's sockets, kept for its successor */
  int nheld;
} slot;

typedef struct {
  int count;
  double grace;
  char **argv;             /* the workers' command line: luaio script args */
  const char *script;
  unsigned gen;
  slot *slots;             /* [count]: id - 1 */
  proc *procs;
  shared_socket *socks;
  int sigfd;
  int stopping;            /* the stop signal, once it came */
  int second_signal;       /* a stop signal during the stop: everything was killed */
  int failed;              /* a worker did not stop in time */
  struct pollfd *pfd;      /* poll's array: [0] the signalfd, then channels */
  proc **pfd_owner;
  int pfd_cap;
} sup;

static void say(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("luaio: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(stderr);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the options --------------------------------------------------------- */

int luaio_supervisor_wanted(int argc, char **argv) {
  for (int i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
    if (strncmp(argv[i], "--workers", 9) == 0 || strncmp(argv[i], "--grace", 7) == 0) return 1;
    if (strcmp(argv[i], "--") == 0) break;
    if (strcmp(argv[i], "-e") == 0) i++;       /* its code is no option */
  }
  return 0;
}

/* "auto": the CPUs this process may run on (what nproc counts) */
static int cpu_count(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

static int parse_count(const char *v, int *out) {
  if (strcmp(v, "auto") == 0) { *out = cpu_count(); return 1; }
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || end == v || *end || n < 1 || n > MAX_WORKERS) return 0;
  *out = (int)n;
  return 1;
}

static int parse_grace(const char *v, double *out) {
  char *end;
  double g = strtod(v, &end);
  if (end == v || *end || !isfinite(g) || g < 0) return 0;
  *out = g;
  return 1;
}

/* argv[*i] is `--name VALUE` or `--name=VALUE`: -> VALUE (NULL: missing) */
static const char *option_value(int argc, char **argv, int *i, const char *name) {
  size_t n = strlen(name);
  if (argv[*i][n] == '=') return argv[*i] + n + 1;
  return *i + 1 < argc ? argv[++*i] : NULL;
}

static int usage_error(const char *fmt, const char *a, const char *b) {
  fputs("luaio: ", stderr);
  fprintf(stderr, fmt, a, b);
  fputs("\nusage: luaio --workers N|auto [--grace SEC] script.lua [args]\n", stderr);
  return 2;
}

static int is_option(const char *arg, const char *name) {
  size_t n = strlen(name);
  return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

/* -> 0 and the first argument of the workers' command in *script, or the
** exit status 2 with the reason on stderr */
static int parse_options(int argc, char **argv, sup *s, int *script) {
  int i = 1;
  s->grace = 10;
  for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
    const char *v;
    if (strcmp(argv[i], "--") == 0) { i++; break; }
    if (is_option(argv[i], "--workers")) {
      if (!(v = option_value(argc, argv, &i, "--workers")) || !parse_count(v, &s->count))
        return usage_error("--workers: a number from 1 to 1024 or 'auto' expected, got %s%s",
                           v ? v : "nothing", "");
    } else if (is_option(argv[i], "--grace")) {
      if (!(v = option_value(argc, argv, &i, "--grace")) || !parse_grace(v, &s->grace))
        return usage_error("--grace: a number of seconds >= 0 expected, got %s%s", v ? v : "nothing", "");
    } else {
      return usage_error("%s cannot be used with --workers%s", argv[i], "");
    }
  }
  if (s->count == 0) return usage_error("--grace needs --workers%s%s", "", "");
  if (i >= argc || strcmp(argv[i], "-") == 0)
    return usage_error("--workers needs a script file (the workers read it, again at each reload)%s%s", "", "");
  if (access(argv[i], R_OK) != 0) return usage_error("cannot read %s: %s", argv[i], strerror(errno));
  *script = i;
  return 0;
}

/* ---- shared listening sockets ---------------------------------------------- */

static int bind_listen(int fd, const struct sockaddr *sa, socklen_t len, int backlog, const char **step) {
  *step = "bind";
  if (bind(fd, sa, len) < 0) return -errno;
  *step = "listen";
  if (listen(fd, backlog) < 0) return -errno;
  return fd;
}

/* a listening TCP socket as libuv makes one (SO_REUSEADDR), in the
** address's SO_REUSEPORT group; -> fd | -errno */
static int open_tcp(const char *ip, int port, int backlog, const char **step) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  socklen_t len;
  *step = "bind";
  if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET, a4->sin_port = htons((uint16_t)port), len = sizeof *a4;
  } else if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6, a6->sin6_port = htons((uint16_t)port), len = sizeof *a6;
  } else {
    return -EINVAL;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  if (fd < 0) return -errno;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  int r = bind_listen(fd, (struct sockaddr *)&ss, len, backlog, step);
  if (r < 0) close(fd);
  return r;
}

static int open_unix(const char *path, int backlog, const char **step) {
  struct sockaddr_un un = { .sun_family = AF_UNIX };
  *step = "bind";
  if (strlen(path) >= sizeof un.sun_path) return -ENAMETOOLONG;
  strcpy(un.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int r = bind_listen(fd, (struct sockaddr *)&un, sizeof un, backlog, step);
  if (r < 0) close(fd);
  return r;
}

/* The socket that worker `id` gets for a request ("T ip port backlog" |
** "U path backlog"), opened on first use. A TCP address has one socket per
** worker id, all in one SO_REUSEPORT group: the kernel spreads connections
** over them by a hash, not by which worker wakes first (with one shared
** socket the worker awake takes a whole burst of connections). A Unix
** path can be bound once: its one socket is every worker's. NULL with *err
** and *step on failure. */
static shared_socket *socket_for(sup *s, int id, const char *spec, const char **step, int *err) {
  char addr[128];
  int port = 0, backlog = 511, is_unix = spec[0] == 'U';
  int n = is_unix ? sscanf(spec, "U %127s %d", addr, &backlog)
                  : sscanf(spec, "T %127s %d %d", addr, &port, &backlog);
  *step = "bind";
  *err = EINVAL;
  if (n < 2) return NULL;
  char key[160];
  if (is_unix) snprintf(key, sizeof key, "U %s", addr);
  else snprintf(key, sizeof key, "T %s %d #%d", addr, port, id);
  for (shared_socket *k = s->socks; k; k = k->next)
    if (strcmp(k->key, key) == 0 && k->fd >= 0) return k;
  int fd = is_unix ? open_unix(addr, backlog, step) : open_tcp(addr, port, backlog, step);
  if (fd < 0) { *err = -fd; return NULL; }
  shared_socket *k = calloc(1, sizeof *k);
  if (!k) { close(fd); *err = ENOMEM; return NULL; }
  k->fd = fd;
  memcpy(k->key, key, sizeof key);
  if (is_unix) snprintf(k->path, sizeof k->path, "%s", addr);
  k->next = s->socks;
  s->socks = k;
  return k;
}

/* Close our copy: the workers' copies keep it listening until they close
** theirs. A Unix socket's path goes with it (as libuv removes its own). */
static void close_socket_fd(shared_socket *k) {
  if (k->fd < 0) return;
  close(k->fd);
  k->fd = -1;
  if (k->path[0]) unlink(k->path);
}

static void drop_socket(sup *s, shared_socket *k) {
  for (shared_socket **pp = &s->socks; *pp; pp = &(*pp)->next) {
    if (*pp == k) { *pp = k->next; break; }
  }
  close_socket_fd(k);
  free(k);
}

static int hold_socket(proc *p, shared_socket *k) {
  for (int i = 0; i < p->nheld; i++) if (p->held[i] == k) return -EADDRINUSE;  /* twice in one worker */
  shared_socket **held = realloc(p->held, (size_t)(p->nheld + 1) * sizeof *held);
  if (!held) return -ENOMEM;
  p->held = held;
  p->held[p->nheld++] = k;
  k->users++;
  return 0;
}

/* A holder lets go of its sockets: one nobody holds any more closes. */
static void release_list(sup *s, shared_socket ***held, int *nheld) {
  for (int i = 0; i < *nheld; i++) {
    if (--(*held)[i]->users == 0) drop_socket(s, (*held)[i]);
  }
  free(*held);
  *held = NULL;
  *nheld = 0;
}

static void release_slot(sup *s, int id) {
  release_list(s, &s->slots[id - 1].held, &s->slots[id - 1].nheld);
}

/* A worker that died unasked: its sockets stay open for the next worker of
** its id when that one comes soon (the connections waiting in them are
** served then, not reset); a worker that keeps dying lets them close, and
** the kernel sends the new connections to the other workers' sockets. */
static void pass_sockets(sup *s, proc *p, int keep) {
  slot *sl = &s->slots[p->id - 1];
  shared_socket **old = sl->held;
  int nold = sl->nheld;
  if (keep) {
    sl->held = p->held, sl->nheld = p->nheld;
    p->held = NULL, p->nheld = 0;
  } else {
    sl->held = NULL, sl->nheld = 0;
    release_list(s, &p->held, &p->nheld);
  }
  release_list(s, &old, &nold);
}

static void send_answer(int chan, int fd, const char *step, int err) {
  char text[64];
  if (fd < 0) {
    int n = snprintf(text, sizeof text, "E %s %d", step, err);
    (void)send(chan, text, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    return;
  }
  union { struct cmsghdr h; char space[CMSG_SPACE(sizeof(int))]; } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct iovec iov = { "OK", 2 };
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof ctl };
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  (void)sendmsg(chan, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* "L ...": a worker asks for the listening socket of an address */
static void on_listen(sup *s, proc *p, const char *spec) {
  const char *step = "listen";
  int err = ESHUTDOWN;                  /* the supervisor is stopping */
  shared_socket *k = s->stopping ? NULL : socket_for(s, p->id, spec, &step, &err);
  if (k) {
    int r = hold_socket(p, k);
    if (r < 0) {
      err = -r, step = "bind";
      if (k->users == 0) drop_socket(s, k);
      k = NULL;
    }
  }
  send_answer(p->chan, k ? k->fd : -1, step, err);
}

/* ---- starting and stopping workers ----------------------------------------- */

static void stop_proc(sup *s, proc *p) {
  if (p->kill_at) return;
  p->kill_at = now() + s->grace + KILL_MARGIN;
  kill(p->pid, SIGTERM);
}

/* In the child, between fork and exec: only async-signal-safe calls. */
static void exec_worker(sup *s, int chan, pid_t parent) {
  sigset_t none;
  sigemptyset(&none);
  signal(SIGPIPE, SIG_DFL);             /* (the host decides about it itself) */
  signal(SIGHUP, SIG_IGN);              /* a reload is the supervisor's: a terminal's
                                        ** hangup (to the whole group) kills no worker */
  sigprocmask(SIG_SETMASK, &none, NULL);
  prctl(PR_SET_PDEATHSIG, SIGTERM);     /* the supervisor's death: a graceful stop */
  if (getppid() != parent) _exit(1);    /* it died before prctl took effect */
  int flags = fcntl(chan, F_GETFD);
  fcntl(chan, F_SETFD, flags & ~FD_CLOEXEC);
  execv("/proc/self/exe", s->argv);
  static const char msg[] = "luaio: a worker cannot run /proc/self/exe\n";
  (void)!write(2, msg, sizeof msg - 1);
  _exit(127);
}

static void schedule_restart(sup *s, int id, double lived) {
  slot *sl = &s->slots[id - 1];
  if (lived >= STAYED_UP) sl->delay = DELAY_MIN;
  sl->restart_at = now() + sl->delay;
  sl->delay = fmin(sl->delay * 2, DELAY_MAX);
}

static void spawn_worker(sup *s, int id) {
  int sv[2];
  proc *p = calloc(1, sizeof *p);
  if (!p || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
    say("cannot start worker %d: %s; trying again in %.1f s", id, strerror(p ? errno : ENOMEM), s->slots[id - 1].delay);
    free(p);
    schedule_restart(s, id, 0);
    return;
  }
  char env[96];
  snprintf(env, sizeof env, "%d/%d/%u/%d/%.17g", id, s->count, s->gen, sv[1], s->grace);
  setenv("LUAIO_WORKER", env, 1);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) exec_worker(s, sv[1], parent);
  int fork_errno = errno;
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    free(p);
    say("cannot start worker %d: %s; trying again in %.1f s", id, strerror(fork_errno), s->slots[id - 1].delay);
    schedule_restart(s, id, 0);
    return;
  }
  *p = (proc){ .next = s->procs, .pid = pid, .id = id, .gen = s->gen, .chan = sv[0], .started = now() };
  s->procs = p;
  if (s->gen > 1) say("worker %d started (pid %d, generation %u)", id, (int)pid, s->gen);
  else say("worker %d started (pid %d)", id, (int)pid);
}

/* A live worker of the same id and a newer generation (a replacement). */
static int replaced(sup *s, proc *p) {
  for (proc *q = s->procs; q; q = q->next)
    if (q != p && q->id == p->id && q->gen > p->gen) return 1;
  return 0;
}

static void on_ready(sup *s, proc *p) {
  if (p->ready) return;
  p->ready = 1;
  say("worker %d (pid %d) is ready", p->id, (int)p->pid);
  release_slot(s, p->id);               /* it holds its sockets itself now */
  /* its predecessors of the same id now stop: the port stays served */
  for (proc *q = s->procs; q; q = q->next) {
    if (q != p && q->id == p->id && q->gen < p->gen && !q->kill_at) {
      say("worker %d (pid %d, generation %u) replaced: stopping it", q->id, (int)q->pid, q->gen);
      stop_proc(s, q);
    }
  }
}

static void on_channel(sup *s, proc *p) {
  char buf[256];
  ssize_t n = recv(p->chan, buf, sizeof buf - 1, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {                         /* the worker is gone (SIGCHLD tells how) */
    close(p->chan);
    p->chan = -1;
    return;
  }
  buf[n] = '\0';
  if (buf[0] == 'R') on_ready(s, p);
  else if (buf[0] == 'L' && n > 2) on_listen(s, p, buf + 2);
}

/* ---- deaths ---------------------------------------------------------------- */

static void describe(int status, char *out, size_t size) {
  if (WIFEXITED(status)) snprintf(out, size, "exited with status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(out, size, "was killed by signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
             WCOREDUMP(status) ? ", core dumped" : "");
  else snprintf(out, size, "ended (status %d)", status);
}

/* A worker asked to stop is gone: in time (status 0, or the stop signal
** itself before it could handle it), or not. */
static void stopped(sup *s, proc *p, int status, const char *why) {
  int clean = !p->killed && ((WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
              (WIFSIGNALED(status) && (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGINT)));
  if (clean) {
    say("worker %d (pid %d) stopped", p->id, (int)p->pid);
    return;
  }
  const char *note = p->killed ? ": it was still running after the grace period"
                   : WIFEXITED(status) && WEXITSTATUS(status) == 143 ? ": the grace period ran out with connections in flight" : "";
  say("worker %d (pid %d) did not stop cleanly: it %s%s", p->id, (int)p->pid, why, note);
  if (s->stopping) s->failed = 1;
}

/* A worker died unasked: restart it, unless a newer one is taking its place. */
static void died(sup *s, proc *p, const char *why) {
  if (s->stopping) {
    say("worker %d (pid %d) %s", p->id, (int)p->pid, why);
    return;
  }
  if (replaced(s, p)) {
    say("worker %d (pid %d, generation %u) %s; its replacement is starting", p->id, (int)p->pid, p->gen, why);
    return;
  }
  schedule_restart(s, p->id, now() - p->started);
  slot *sl = &s->slots[p->id - 1];
  pass_sockets(s, p, sl->restart_at - now() <= KEEP_SOCKETS);
  say("worker %d (pid %d) %s; restarting in %.1f s", p->id, (int)p->pid, why, sl->restart_at - now());
}

static void on_exit_status(sup *s, proc *p, int status) {
  char why[128];
  describe(status, why, sizeof why);
  if (p->chan >= 0) close(p->chan);
  p->chan = -1;
  if (p->kill_at) stopped(s, p, status, why);
  else died(s, p, why);
  release_list(s, &p->held, &p->nheld);   /* (what died did not pass on) */
}

static void reap(sup *s) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (proc **pp = &s->procs; *pp; pp = &(*pp)->next) {
      proc *p = *pp;
      if (p->pid != pid) continue;
      *pp = p->next;
      on_exit_status(s, p, status);
      free(p);
      break;
    }
  }
}

/* ---- signals ----------------------------------------------------------------- */

static void reload(sup *s) {
  if (s->stopping) return;
  s->gen++;
  say("reloading: starting generation %u of %s", s->gen, s->script);
  for (int id = 1; id <= s->count; id++) {
    s->slots[id - 1].restart_at = 0;
    /* older workers not ready yet serve nothing: the new one replaces them now */
    for (proc *q = s->procs; q; q = q->next)
      if (q->id == id && !q->ready && !q->kill_at) stop_proc(s, q);
    spawn_worker(s, id);
  }
}

static void stop_all(sup *s, int signum) {
  if (s->stopping) {                    /* impatience: everything ends now */
    s->second_signal = signum;
    for (proc *p = s->procs; p; p = p->next) {
      if (!p->killed) { kill(p->pid, SIGKILL); p->killed = 1; }
      if (!p->kill_at) p->kill_at = now();
    }
    say("%s again: workers killed", strsignal(signum));
    return;
  }
  s->stopping = signum;
  int live = 0;
  for (proc *p = s->procs; p; p = p->next) live++;
  say("%s: stopping %d worker%s (grace %g s)", strsignal(signum), live, live == 1 ? "" : "s", s->grace);
  for (int id = 1; id <= s->count; id++) {
    s->slots[id - 1].restart_at = 0;
    release_slot(s, id);
  }
  /* new connections go nowhere now: the workers stop accepting on theirs */
  for (shared_socket *k = s->socks; k; k = k->next) close_socket_fd(k);
  for (proc *p = s->procs; p; p = p->next) stop_proc(s, p);
}

static void on_signals(sup *s) {
  struct signalfd_siginfo si;
  while (read(s->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
    switch (si.ssi_signo) {
      case SIGCHLD: reap(s); break;
      case SIGHUP: reload(s); break;
      case SIGTERM: case SIGINT: stop_all(s, (int)si.ssi_signo); break;
      default: break;
    }
  }
}

static int open_signalfd(void) {
  sigset_t set;
  sigemptyset(&set);
  int sigs[] = { SIGCHLD, SIGHUP, SIGTERM, SIGINT };
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    sigaddset(&set, sigs[i]);
    signal(sigs[i], SIG_DFL);           /* an inherited SIG_IGN (nohup, `&`) would drop them */
  }
  sigprocmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);             /* a worker's channel that closed: EPIPE, not death */
  return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

/* ---- the loop ------------------------------------------------------------------ */

static void run_timers(sup *s, double t) {
  for (int id = 1; id <= s->count; id++) {
    slot *sl = &s->slots[id - 1];
    if (sl->restart_at && t >= sl->restart_at) {
      sl->restart_at = 0;
      spawn_worker(s, id);
    }
  }
  for (proc *p = s->procs; p; p = p->next) {
    if (p->kill_at && !p->killed && t >= p->kill_at) {
      say("worker %d (pid %d) still runs %g s after the grace period: killing it", p->id, (int)p->pid, KILL_MARGIN);
      kill(p->pid, SIGKILL);
      p->killed = 1;
    }
  }
}

/* milliseconds until the next deadline; -1: none */
static int next_timeout(sup *s) {
  double next = INFINITY, t = now();
  for (int id = 1; id <= s->count; id++)
    if (s->slots[id - 1].restart_at) next = fmin(next, s->slots[id - 1].restart_at);
  for (proc *p = s->procs; p; p = p->next)
    if (p->kill_at && !p->killed) next = fmin(next, p->kill_at);
  if (next == INFINITY) return -1;
  return next <= t ? 0 : (int)ceil((next - t) * 1000);
}

static int grow_pollfds(sup *s, int need) {
  if (need <= s->pfd_cap) return 0;
  int cap = need * 2;
  struct pollfd *pfd = realloc(s->pfd, (size_t)cap * sizeof *pfd);
  if (!pfd) return -1;
  s->pfd = pfd;
  proc **owner = realloc(s->pfd_owner, (size_t)cap * sizeof *owner);
  if (!owner) return -1;
  s->pfd_owner = owner;
  s->pfd_cap = cap;
  return 0;
}

static void poll_once(sup *s, int timeout) {
  int n = 1;
  for (proc *p = s->procs; p; p = p->next) n++;
  if (grow_pollfds(s, n) < 0) { say("out of memory"); sleep(1); return; }
  s->pfd[0] = (struct pollfd){ .fd = s->sigfd, .events = POLLIN };
  n = 1;
  for (proc *p = s->procs; p; p = p->next) {
    if (p->chan < 0) continue;
    s->pfd[n] = (struct pollfd){ .fd = p->chan, .events = POLLIN };
    s->pfd_owner[n++] = p;
  }
  if (poll(s->pfd, (nfds_t)n, timeout) <= 0) return;
  /* the channels first: reaping (a signal) frees the processes they name */
  for (int i = 1; i < n; i++)
    if (s->pfd[i].revents) on_channel(s, s->pfd_owner[i]);
  if (s->pfd[0].revents) on_signals(s);
}

static void free_all(sup *s) {
  for (int id = 1; s->slots && id <= s->count; id++) free(s->slots[id - 1].held);
  while (s->socks) drop_socket(s, s->socks);
  while (s->procs) {
    proc *p = s->procs;
    s->procs = p->next;
    free(p->held);
    free(p);
  }
  free(s->slots);
  free(s->argv);
  free(s->pfd);
  free(s->pfd_owner);
  if (s->sigfd >= 0) close(s->sigfd);
}

int luaio_supervise(int argc, char **argv) {
  sup s = { .gen = 1, .sigfd = -1 };
  int script;
  int status = parse_options(argc, argv, &s, &script);
  if (status) return status;
  s.script = argv[script];
  s.slots = calloc((size_t)s.count, sizeof *s.slots);
  s.argv = calloc((size_t)(argc - script + 2), sizeof *s.argv);
  if (!s.slots || !s.argv) { say("out of memory"); free_all(&s); return 1; }
  s.argv[0] = argv[0];
  memcpy(s.argv + 1, argv + script, (size_t)(argc - script) * sizeof *argv);
  s.sigfd = open_signalfd();
  if (s.sigfd < 0) { say("signalfd: %s", strerror(errno)); free_all(&s); return 1; }
  say("supervisor (pid %d): %d worker%s of %s", (int)getpid(), s.count, s.count == 1 ? "" : "s", s.script);
  for (int id = 1; id <= s.count; id++) {
    s.slots[id - 1].delay = DELAY_MIN;
    spawn_worker(&s, id);
  }
  while (!s.stopping || s.procs) {
    run_timers(&s, now());
    poll_once(&s, next_timeout(&s));
  }
  status = s.second_signal ? 128 + s.second_signal : s.failed ? 1 : 0;
  say("supervisor exits with status %d", status);
  free_all(&s);
  return status;
}
