/* libFuzzer target: Redis replies (src/resp.c) read from a read buffer.
**
** The input: byte 0 picks the max_bulk limit, bytes 1-4 seed the slicing,
** the rest is the stream. It is read twice: once whole (one-shot: every
** reply read with a fresh scan, until the buffer is empty, a wait or an
** error), and once delivered in arbitrary slices (byte by byte, small,
** large), read after each slice with the scan state kept across waits as
** stream:_read_resp keeps it. Checked: the two give the same sequence of
** outcomes (each reply serialized, with its kind; a ProtocolError at the
** same place), a wait consumes nothing, a reply consumes exactly its bytes
** (what the one-shot consumed for it), and at EOF a cut reply is a
** ConnectionError.
*/
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <lualib.h>
#include "readbuf.h"
#include "resp.h"
#include "slicing.h"

static lua_State *L;

/* ---- serializing a value (deterministic: map keys sorted) ---------------- */

static void ser(lua_State *L, int idx, luaL_Buffer *B, int depth);

/* a value's serialization, pushed */
static void ser_push(lua_State *L, int idx, int depth) {
  luaL_Buffer B;
  luaL_buffinit(L, &B);
  ser(L, idx, &B, depth);
  luaL_pushresult(&B);
}

/* "{k=v,...}" with the pairs sorted by their serialization (keys may be
** tables: their order must not depend on addresses) */
static void ser_table(lua_State *L, int idx, luaL_Buffer *B, int depth) {
  lua_newtable(L);
  int pairs = lua_gettop(L), n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int v = lua_gettop(L);
    ser_push(L, v - 1, depth + 1);
    lua_pushliteral(L, "=");
    ser_push(L, v, depth + 1);
    lua_concat(L, 3);
    lua_rawseti(L, pairs, ++n);
    lua_pop(L, 1);
  }
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "sort");
  lua_pushvalue(L, pairs);
  lua_call(L, 1, 0);
  lua_getfield(L, -1, "concat");
  lua_pushvalue(L, pairs);
  lua_pushliteral(L, ",");
  lua_call(L, 2, 1);
  lua_remove(L, -2);                    /* table */
  lua_remove(L, -2);                    /* pairs */
  lua_pushliteral(L, "{");
  lua_insert(L, -2);
  lua_pushliteral(L, "}");
  lua_concat(L, 3);
  luaL_addvalue(B);
}

/* (the buffer's placeholder sits on the stack: values are pushed above it
** and taken off before the next luaL_add, as luaL_Buffer requires) */
static void ser(lua_State *L, int idx, luaL_Buffer *B, int depth) {
  check(depth < 200);
  luaL_checkstack(L, 10, NULL);
  switch (lua_type(L, idx)) {
    case LUA_TNIL: luaL_addstring(B, "nil"); break;
    case LUA_TBOOLEAN: luaL_addstring(B, lua_toboolean(L, idx) ? "true" : "false"); break;
    case LUA_TNUMBER: {
      char num[64];
      if (lua_isinteger(L, idx)) snprintf(num, sizeof num, "i%lld", (long long)lua_tointeger(L, idx));
      else snprintf(num, sizeof num, "f%a", (double)lua_tonumber(L, idx));
      luaL_addstring(B, num);
      break;
    }
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      char head[32];
      snprintf(head, sizeof head, "s%zu:", len);
      luaL_addstring(B, head);
      luaL_addlstring(B, s, len);
      break;
    }
    case LUA_TTABLE: ser_table(L, idx, B, depth); break;
    default: abort();
  }
}

/* ---- one read ----------------------------------------------------------------- */

static luaio_readbuf *rb_now;
static luaio_resp_state *st_now;
static uint64_t max_now;

static int call_read(lua_State *L) {
  size_t need;
  int n = luaio_resp_read(L, rb_now, st_now, max_now, &need);
  check(n != RB_FAIL);
  return n < 0 ? 0 : n;
}

enum { R_WAIT, R_VALUE, R_EOF, R_PROTO, R_CONNERR };

/* The outcomes of a read as a string in the registry array `log` at index
** i: "w" waits are not logged; a value is its serialization. */
typedef struct { int log; int n; } outcomes;

static void log_value(outcomes *o, const char *s, size_t len) {
  lua_pushlstring(L, s, len);
  lua_rawseti(L, o->log, ++o->n);
}

/* read everything there is now: values logged; -> the kind that stopped it */
static int drain(luaio_readbuf *b, luaio_resp_state *st, outcomes *o, size_t *consumed_total) {
  for (;;) {
    size_t before = b->len;
    int base = lua_gettop(L);
    rb_now = b;
    st_now = st;
    lua_pushcfunction(L, call_read);
    int status = lua_pcall(L, 0, LUA_MULTRET, 0);
    int r;
    if (status != LUA_OK) {
      check(lua_istable(L, -1));
      lua_getfield(L, -1, "name");
      const char *name = lua_tostring(L, -1);
      check(name != NULL);
      r = strcmp(name, "ProtocolError") == 0 ? R_PROTO : R_CONNERR;
      check(r == R_PROTO || strcmp(name, "ConnectionError") == 0);
      lua_settop(L, base);
      log_value(o, r == R_PROTO ? "P" : "C", 1);
      return r;
    }
    int n = lua_gettop(L) - base;
    if (n == 0) {
      check(b->len == before);          /* a wait consumes nothing */
      return R_WAIT;
    }
    if (n == 2 && strcmp(lua_tostring(L, base + 2), "eof") == 0) {
      check(lua_isnil(L, base + 1) && before == 0);
      lua_settop(L, base);
      return R_EOF;
    }
    check(b->len < before);             /* a reply is at least 3 bytes */
    *consumed_total += before - b->len;
    luaL_Buffer V;
    luaL_buffinit(L, &V);
    ser(L, base + 1, &V, 0);
    luaL_pushresult(&V);
    lua_pushfstring(L, "|%s|%d", n == 2 ? lua_tostring(L, base + 2) : "", (int)(before - b->len));
    lua_concat(L, 2);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    log_value(o, s, len);
    lua_settop(L, base);
  }
}

static void run(const uint8_t *p, size_t n, unsigned style, int sliced, outcomes *o) {
  luaio_readbuf b = {0};
  b.limit = 65536;
  luaio_resp_state st;
  luaio_resp_scan_init(&st);
  size_t pos = 0, consumed = 0;
  int r = R_WAIT;
  if (!sliced) {
    deliver(&b, p, n);
    pos = n;
  }
  while (r == R_WAIT) {
    if (sliced && pos < n) {
      size_t k = slice_len(pos, n - pos, style);
      deliver(&b, p + pos, k);
      pos += k;
    } else if (pos == n && !b.eof) {
      b.eof = 1;
    } else if (b.eof) {
      break;
    }
    if (!sliced) luaio_resp_scan_init(&st);
    r = drain(&b, &st, o, &consumed);
    if (r == R_WAIT && !sliced && !b.eof) continue;
  }
  luaio_rb_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) { L = luaL_newstate(); luaL_openlibs(L); }
  if (size < 5) return 0;
  max_now = (uint64_t)1 << (data[0] % 24);
  uint32_t seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 | (uint32_t)data[3] << 16 | (uint32_t)data[4] << 24;
  const uint8_t *p = data + 5;
  size_t n = size - 5;
  lua_settop(L, 0);
  lua_newtable(L);
  lua_newtable(L);
  outcomes whole = {1, 0}, sliced = {2, 0};
  run(p, n, 0, 0, &whole);
  rng = seed | 1;
  run(p, n, seed >> 8, 1, &sliced);
  check(whole.n == sliced.n);
  for (int i = 1; i <= whole.n; i++) {
    lua_rawgeti(L, 1, i);
    lua_rawgeti(L, 2, i);
    check(lua_rawequal(L, -1, -2));
    lua_pop(L, 2);
  }
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
