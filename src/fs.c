/*
** fs.c — aio.fs: file operations as jobs on libuv's thread pool. Each job
** does its whole sequence of plain syscalls (open, read..., close) in the
** worker, so a read_file is one round trip to the pool, not one per call.
** One file over 500 lines on purpose: the aio.fs functions and the File
** methods are the same jobs (one fs_job, one runner, one completion).
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "op.h"
#include "host.h"

#define FILE_MT "luaio.File"

enum { READ_FILE, WRITE_FILE, APPEND_FILE, STAT, LISTDIR, MKDIR, REMOVE, RENAME, OPEN,
       FREAD, FWRITE, FSEEK, FCLOSE };

/* The most one file:read(n) returns (as one read(2) on Linux); the rest
** comes with the next read, or read(-1) reads it all. */
#define READ_MAX ((size_t)0x7ffff000)

static const char *op_names[] = {"read_file", "write_file", "append_file", "stat", "listdir",
                                 "mkdir", "remove", "rename", "open", "read", "write", "seek", "close"};

/* An open file, apart from its userdata: the jobs working on its fd share
** it, so that neither close() nor __gc closes the fd under a job still
** running in the pool (a cancelled read goes on there), where a new open
** could reuse the number. */
typedef struct {
  int fd;                  /* -1 once closed */
  int busy;                /* jobs on the fd not finished yet */
  int close_pending;       /* close the fd when the last of them finishes */
  int box_gone;            /* the userdata was collected: free with the last job */
} file_state;

typedef struct {
  luaio_op wait;           /* the task waiting for the job */
  uv_work_t work;
  file_state *file;        /* the file a read/write/seek/close works on */
  file_state *opened;      /* OPEN: the state the new file will get (owned) */
  int op, err, fd, flags, parents, whence;
  char *path, *path2;
  char *data;              /* input for writes; output for reads */
  size_t len;
  int64_t offset, pos;
  struct stat st;
  char **names;
  size_t nnames;
} fs_job;

typedef struct { file_state *f; int closed; } file_box;

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) { if (errno == EINTR) continue; return -errno; }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int read_all(int fd, char **out, size_t *outlen, size_t hint) {
  size_t cap = hint > 0 ? hint + 1 : 8192, len = 0;
  char *buf = malloc(cap);
  if (!buf) return -ENOMEM;
  for (;;) {
    if (len == cap) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) { free(buf); return -ENOMEM; }
      buf = nb;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + len, cap - len);
    if (r < 0) { if (errno == EINTR) continue; free(buf); return -errno; }
    if (r == 0) break;
    len += (size_t)r;
  }
  *out = buf;
  *outlen = len;
  return 0;
}

static int mkdir_parents(char *path) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    int r = mkdir(path, 0777);
    *p = '/';
    if (r < 0 && errno != EEXIST) return -errno;
  }
  if (mkdir(path, 0777) < 0 && errno != EEXIST) return -errno;
  return 0;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* the jobs that take more than a call or two, run in the pool: each
** returns 0 or -errno */
static int fs_read_file(fs_job *j) {
  int fd = open(j->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct stat st;
  size_t hint = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? (size_t)st.st_size : 0;
  int r = read_all(fd, &j->data, &j->len, hint);
  close(fd);
  return r;
}

/* atomic: a temp file beside the target, synced, then renamed over it */
static int fs_write_file(fs_job *j) {
  size_t n = strlen(j->path);
  char *tmp = malloc(n + 16);
  if (!tmp) return -ENOMEM;
  memcpy(tmp, j->path, n);
  memcpy(tmp + n, ".tmp.XXXXXX", 12);
  int fd = mkstemp(tmp);
  if (fd < 0) { int r = -errno; free(tmp); return r; }
  fchmod(fd, 0644);
  int r = write_all(fd, j->data, j->len);
  if (r == 0 && fsync(fd) < 0) r = -errno;
  if (close(fd) < 0 && r == 0) r = -errno;
  if (r == 0 && rename(tmp, j->path) < 0) r = -errno;
  if (r != 0) unlink(tmp);
  free(tmp);
  return r;
}

static int fs_append_file(fs_job *j) {
  int fd = open(j->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return -errno;
  int r = write_all(fd, j->data, j->len);
  if (close(fd) < 0 && r == 0) r = -errno;
  return r;
}

static int fs_listdir(fs_job *j) {
  DIR *d = opendir(j->path);
  if (!d) return -errno;
  size_t cap = 16;
  j->names = malloc(cap * sizeof *j->names);
  struct dirent *e;
  while (j->names && (e = readdir(d))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (j->nnames == cap) {
      char **nn = realloc(j->names, cap * 2 * sizeof *nn);
      if (!nn) break;
      j->names = nn;
      cap *= 2;
    }
    j->names[j->nnames++] = strdup(e->d_name);
  }
  closedir(d);
  if (j->names) qsort(j->names, j->nnames, sizeof *j->names, cmp_names);
  return 0;
}

static int fs_remove(fs_job *j) {
  if (unlink(j->path) == 0) return 0;
  if (errno != EISDIR && errno != EPERM) return -errno;
  return rmdir(j->path) < 0 ? -errno : 0;
}

static int fs_fread(fs_job *j) {
  if (j->len == 0) return read_all(j->fd, &j->data, &j->len, 0);
  /* one read(2) returns at most this much anyway: a huge n is no reason
  ** to allocate it */
  if (j->len > READ_MAX) j->len = READ_MAX;
  j->data = malloc(j->len);
  if (!j->data) return -ENOMEM;
  for (;;) {
    ssize_t got = read(j->fd, j->data, j->len);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return -errno;
    j->len = (size_t)got;
    return 0;
  }
}

static int fs_fseek(fs_job *j) {
  off_t pos = lseek(j->fd, (off_t)j->offset, j->whence);
  if (pos < 0) return -errno;
  j->pos = pos;
  return 0;
}

#define SYS(call) ((call) < 0 ? -errno : 0)

static void run_fs(uv_work_t *req) {
  fs_job *j = req->data;
  int r = 0;
  switch (j->op) {
    case READ_FILE: r = fs_read_file(j); break;
    case WRITE_FILE: r = fs_write_file(j); break;
    case APPEND_FILE: r = fs_append_file(j); break;
    case STAT: r = SYS(stat(j->path, &j->st)); break;
    case LISTDIR: r = fs_listdir(j); break;
    case MKDIR: r = j->parents ? mkdir_parents(j->path) : SYS(mkdir(j->path, 0777)); break;
    case REMOVE: r = fs_remove(j); break;
    case RENAME: r = SYS(rename(j->path, j->path2)); break;
    case OPEN:
      j->fd = open(j->path, j->flags | O_CLOEXEC, 0644);
      r = SYS(j->fd);
      break;
    case FREAD: r = fs_fread(j); break;
    case FWRITE: r = write_all(j->fd, j->data, j->len); break;
    case FSEEK: r = fs_fseek(j); break;
    case FCLOSE: r = SYS(close(j->fd)); break;
  }
  j->err = r;
}

static void free_job(fs_job *j) {
  free(j->opened);
  free(j->path);
  free(j->path2);
  free(j->data);
  for (size_t i = 0; i < j->nnames; i++) free(j->names[i]);
  free(j->names);
  free(j);
}

static const char *type_of(mode_t m) {
  if (S_ISREG(m)) return "file";
  if (S_ISDIR(m)) return "directory";
  if (S_ISLNK(m)) return "link";
  if (S_ISFIFO(m)) return "fifo";
  if (S_ISSOCK(m)) return "socket";
  if (S_ISCHR(m)) return "char";
  if (S_ISBLK(m)) return "block";
  return "other";
}

static int push_results(lua_State *co, fs_job *j) {
  switch (j->op) {
    case READ_FILE:
      lua_pushlstring(co, j->data ? j->data : "", j->len);
      return 1;
    case FREAD:
      if (j->len == 0 && j->data) { lua_pushnil(co); return 1; }   /* EOF */
      lua_pushlstring(co, j->data ? j->data : "", j->len);
      return 1;
    case STAT: {
      struct stat *st = &j->st;
      lua_createtable(co, 0, 12);
      lua_pushinteger(co, (lua_Integer)st->st_size); lua_setfield(co, -2, "size");
      lua_pushinteger(co, st->st_mode & 07777); lua_setfield(co, -2, "mode");
      lua_pushstring(co, type_of(st->st_mode)); lua_setfield(co, -2, "type");
      lua_pushnumber(co, st->st_mtim.tv_sec + st->st_mtim.tv_nsec / 1e9); lua_setfield(co, -2, "mtime");
      lua_pushnumber(co, st->st_atim.tv_sec + st->st_atim.tv_nsec / 1e9); lua_setfield(co, -2, "atime");
      lua_pushnumber(co, st->st_ctim.tv_sec + st->st_ctim.tv_nsec / 1e9); lua_setfield(co, -2, "ctime");
      lua_pushinteger(co, (lua_Integer)st->st_nlink); lua_setfield(co, -2, "nlink");
      lua_pushinteger(co, st->st_uid); lua_setfield(co, -2, "uid");
      lua_pushinteger(co, st->st_gid); lua_setfield(co, -2, "gid");
      lua_pushinteger(co, (lua_Integer)st->st_ino); lua_setfield(co, -2, "ino");
      return 1;
    }
    case LISTDIR:
      lua_createtable(co, (int)j->nnames, 0);
      for (size_t i = 0; i < j->nnames; i++) {
        lua_pushstring(co, j->names[i]);
        lua_rawseti(co, -2, (lua_Integer)i + 1);
      }
      return 1;
    case OPEN: {
      file_box *f = lua_newuserdatauv(co, sizeof *f, 0);
      f->f = j->opened;
      f->f->fd = j->fd;
      f->closed = 0;
      j->opened = NULL;
      luaL_setmetatable(co, FILE_MT);
      return 1;
    }
    case FSEEK:
      lua_pushinteger(co, (lua_Integer)j->pos);
      return 1;
    default:
      return 0;
  }
}

/* A job on an open file finished (or never ran): the deferred close and
** free happen with the last one. */
static void file_release(fs_job *j, int status) {
  file_state *f = j->file;
  if (!f) return;
  j->file = NULL;
  f->busy--;
  if (j->op == FCLOSE) {
    if (status == UV_ECANCELED) close(f->fd);   /* it never ran: the fd must not leak */
    f->fd = -1;
  }
  if (f->busy > 0) return;
  if (f->close_pending && f->fd >= 0) { close(f->fd); f->fd = -1; }
  if (f->box_gone) free(f);
}

static void fs_done(uv_work_t *req, int status) {
  fs_job *j = req->data;
  luaio_task *t = luaio_op_take(&j->wait);
  file_release(j, status);
  if (!t || status == UV_ECANCELED) {
    if (j->op == OPEN && j->err == 0 && status != UV_ECANCELED) close(j->fd);   /* nobody will get it */
    free_job(j);
    return;
  }
  lua_State *co = luaio_task_stack(t);
  if (j->err) {
    int uverr = uv_translate_sys_error(-j->err);
    luaio_push_error(co, "OSError", uv_err_name(uverr), "%s %s: %s", op_names[j->op],
                     j->path ? j->path : "(file)", uv_strerror(uverr));
    if (j->path) { lua_pushstring(co, j->path); lua_setfield(co, -2, "path"); }
    free_job(j);
    luaio_wake_error(t);
    return;
  }
  int n = push_results(co, j);
  if (j->op == OPEN) luaio_track(co, t->host, -1, "file %s", j->path);
  free_job(j);
  luaio_wake(t, n);
}

static void fs_abort(luaio_op *op) { uv_cancel((uv_req_t *)&luaio_container_of(op, fs_job, wait)->work); }

static void describe_job(lua_State *L, void *data) {
  fs_job *j = luaio_container_of((luaio_op *)data, fs_job, wait);
  lua_pushfstring(L, "file %s %s", op_names[j->op], j->path ? j->path : "");
}

static fs_job *new_job(lua_State *L, int op, int path_idx) {
  lua_pushfstring(L, op >= FREAD ? "file:%s" : "aio.fs.%s", op_names[op]);
  luaio_need_task(L, lua_tostring(L, -1));
  lua_pop(L, 1);
  const char *path = NULL;
  if (path_idx) {                       /* checked before the job exists: a bad one raises */
    size_t len;
    path = luaio_checklstring(L, path_idx, &len);
    if (len == 0 || memchr(path, '\0', len)) luaio_argerror(L, path_idx, "invalid path");
  }
  fs_job *j = calloc(1, sizeof *j);
  if (!j) { luaL_error(L, "out of memory"); return NULL; }
  j->op = op;
  j->fd = -1;
  if (path) j->path = strdup(path);
  return j;
}

static void copy_data(lua_State *L, fs_job *j, int idx) {
  size_t len;
  const char *d = luaio_checklstring(L, idx, &len);
  j->data = malloc(len ? len : 1);
  memcpy(j->data, d, len);
  j->len = len;
}

static int submit(lua_State *L, fs_job *j) {
  luaio_host *h = luaio_upvalue_host(L);
  luaio_task *t = luaio_current(L);
  j->wait.task = t;
  j->work.data = j;
  int r = uv_queue_work(h->loop, &j->work, run_fs, fs_done);
  if (r < 0) {
    file_release(j, UV_ECANCELED);
    free_job(j);
    return luaio_uverror(L, "OSError", r, "fs");
  }
  lua_settop(L, 0);
  return luaio_op_await(L, &j->wait, t, fs_abort, NULL);
}

static int l_read_file(lua_State *L) { return submit(L, new_job(L, READ_FILE, 1)); }
static int l_stat(lua_State *L) { return submit(L, new_job(L, STAT, 1)); }
static int l_listdir(lua_State *L) { return submit(L, new_job(L, LISTDIR, 1)); }
static int l_remove(lua_State *L) { return submit(L, new_job(L, REMOVE, 1)); }

static int l_write_file(lua_State *L) {
  luaio_checkstring(L, 2);
  fs_job *j = new_job(L, WRITE_FILE, 1);
  copy_data(L, j, 2);
  return submit(L, j);
}

static int l_append_file(lua_State *L) {
  luaio_checkstring(L, 2);
  fs_job *j = new_job(L, APPEND_FILE, 1);
  copy_data(L, j, 2);
  return submit(L, j);
}

static int l_mkdir(lua_State *L) {
  int parents = 0;
  if (lua_istable(L, 2)) { lua_getfield(L, 2, "parents"); parents = lua_toboolean(L, -1); lua_pop(L, 1); }
  else parents = lua_toboolean(L, 2);
  fs_job *j = new_job(L, MKDIR, 1);
  j->parents = parents;
  return submit(L, j);
}

static int l_rename(lua_State *L) {
  size_t len;
  const char *to = luaio_checklstring(L, 2, &len);
  if (len == 0 || memchr(to, '\0', len)) luaio_argerror(L, 2, "invalid path");
  fs_job *j = new_job(L, RENAME, 1);
  j->path2 = strdup(to);
  return submit(L, j);
}

static int l_open(lua_State *L) {
  const char *mode = luaio_optstring(L, 2, "r");
  int flags;
  int plus = strchr(mode, '+') != NULL;
  switch (mode[0]) {
    case 'r': flags = plus ? O_RDWR : O_RDONLY; break;
    case 'w': flags = (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_TRUNC; break;
    case 'a': flags = (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_APPEND; break;
    default: return luaio_argerror(L, 2, "mode must be r, w or a (with an optional + and b)");
  }
  for (const char *m = mode + 1; *m; m++)
    if (*m != '+' && *m != 'b') return luaio_argerror(L, 2, "mode must be r, w or a (with an optional + and b)");
  fs_job *j = new_job(L, OPEN, 1);
  j->flags = flags;
  j->opened = calloc(1, sizeof *j->opened);
  if (!j->opened) { free_job(j); return luaL_error(L, "out of memory"); }
  j->opened->fd = -1;
  return submit(L, j);
}

static file_box *check_file(lua_State *L) {
  file_box *f = luaio_checkudata(L, 1, FILE_MT);
  if (f->closed) luaio_error(L, "OSError", "EBADF", "the file is closed");
  return f;
}

/* the job works on f's fd: f stays until it finishes */
static void attach(fs_job *j, file_box *f) {
  j->file = f->f;
  j->fd = f->f->fd;
  f->f->busy++;
}

static int f_read(lua_State *L) {
  file_box *f = check_file(L);
  size_t n = 0;
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *what = lua_tostring(L, 2);
    if (what[0] != 'a' && !(what[0] == '*' && what[1] == 'a')) return luaio_argerror(L, 2, "a byte count or \"a\" expected");
  } else {
    lua_Integer want = luaio_optinteger(L, 2, 65536);
    if (want == -1) want = 0;         /* Python's read(-1): the rest of the file, as "a" */
    else if (want <= 0) return luaio_argerror(L, 2, "byte count must be positive (or -1: the rest)");
    n = (size_t)want;
  }
  fs_job *j = new_job(L, FREAD, 0);
  attach(j, f);
  j->len = n;
  return submit(L, j);
}

static int f_write(lua_State *L) {
  file_box *f = check_file(L);
  luaL_Buffer b;
  int n = lua_gettop(L);
  luaL_buffinit(L, &b);
  for (int i = 2; i <= n; i++) {
    luaio_checkstring(L, i);
    lua_pushvalue(L, i);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  fs_job *j = new_job(L, FWRITE, 0);
  attach(j, f);
  copy_data(L, j, lua_gettop(L));
  return submit(L, j);
}

static int f_seek(lua_State *L) {
  file_box *f = check_file(L);
  static const char *const names[] = {"set", "cur", "end", NULL};
  static const int whences[] = {SEEK_SET, SEEK_CUR, SEEK_END};
  int w = luaio_checkoption(L, 2, "cur", names);
  lua_Integer off = luaio_optinteger(L, 3, 0);
  fs_job *j = new_job(L, FSEEK, 0);
  attach(j, f);
  j->whence = whences[w];
  j->offset = off;
  return submit(L, j);
}

/* file:close() ⏸ — idempotent. While other jobs on the file still run
** (a cancelled read goes on in the pool), the fd closes after the last. */
static int f_close(lua_State *L) {
  file_box *f = luaio_checkudata(L, 1, FILE_MT);
  if (f->closed) return 0;
  fs_job *j = new_job(L, FCLOSE, 0);     /* raises outside a task, before anything changes */
  f->closed = 1;
  luaio_untrack(luaio_host_get(L), f);
  if (f->f->busy > 0) {
    f->f->close_pending = 1;
    free_job(j);
    return 0;
  }
  attach(j, f);
  return submit(L, j);
}

static int f_gc(lua_State *L) {
  file_box *f = luaL_testudata(L, 1, FILE_MT);
  if (!f || !f->f) return 0;
  file_state *st = f->f;
  f->f = NULL;
  if (!f->closed) luaio_untrack(luaio_host_get(L), f);
  f->closed = 1;
  if (st->busy > 0) { st->close_pending = 1; st->box_gone = 1; return 0; }
  if (st->fd >= 0) close(st->fd);
  free(st);
  return 0;
}

static int f_tostring(lua_State *L) {
  file_box *f = luaio_checkudata(L, 1, FILE_MT);
  lua_pushfstring(L, "File<%s>", f->closed ? "closed" : "open");
  return 1;
}

void luaio_open_fs(lua_State *L, luaio_host *h) {
  luaio_wait_kind(h, LUAIO_WAIT_KEY(fs_abort), describe_job);
  static const luaL_Reg fmethods[] = {
    {"read", f_read}, {"write", f_write}, {"seek", f_seek}, {"close", f_close}, {NULL, NULL}};
  luaL_newmetatable(L, FILE_MT);
  luaL_newlibtable(L, fmethods);
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, fmethods, 1);       /* the methods wait too: they need the host */
  lua_setfield(L, -2, "__index");
  lua_pushlightuserdata(L, h);
  lua_pushcclosure(L, f_close, 1);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, f_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, f_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  static const luaL_Reg funcs[] = {
    {"read_file", l_read_file}, {"write_file", l_write_file}, {"append_file", l_append_file},
    {"stat", l_stat}, {"listdir", l_listdir}, {"mkdir", l_mkdir}, {"remove", l_remove},
    {"rename", l_rename}, {"open", l_open}, {NULL, NULL}};
  lua_createtable(L, 0, 10);
  lua_pushlightuserdata(L, h);
  luaL_setfuncs(L, funcs, 1);
  lua_setfield(L, -2, "fs");
}
