/* libFuzzer target: the PostgreSQL message reader (src/pg_wire.c), two
** properties picked by the first byte:
**
** 0. Arbitrary bytes after a 4-byte prelude (how many columns, their
**    kinds, whether rows are decoded), delivered to a read buffer in
**    arbitrary slices and read with luaio_pg_read after each slice and to
**    the end after EOF. Checked against a reference framer written here: a
**    message is returned once the whole of it is there, with the type and
**    body of its bytes, consumed exactly; with rows, every DataRow before it
**    becomes one row (the last one checked: its text columns hold the
**    field's bytes, its NULLs are absent, its other fields present); a wait consumes nothing but whole DataRows; a
**    ProtocolError only for a length the reference refuses or a DataRow
**    that does not match the columns; an EOF gives nil or ConnectionError.
** 1. bytea: luaio_pg_bytea on arbitrary text writes at most n bytes (the
**    out buffer is exactly n: ASan), and hex text made from bytes decodes
**    back to them.
*/
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include <lualib.h>
#include "readbuf.h"
#include "pg_wire.h"
#include "slicing.h"

static lua_State *L;

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- the reference ------------------------------------------------------- */

/* the message at p[0 .. n): 1 whole (*total), 0 more needed, -1 bad length */
static int ref_frame(const unsigned char *p, size_t n, size_t *total) {
  if (n < 5) return 0;
  uint32_t len = be32(p + 1);
  if (len < 4 || len > LUAIO_PG_MAX_MESSAGE) return -1;
  *total = 1 + (size_t)len;
  return n >= *total;
}

/* a DataRow body matches ncols columns */
static int ref_row_ok(const unsigned char *b, size_t len, int ncols) {
  if (len < 2 || (int)(b[0] << 8 | b[1]) != ncols) return 0;
  size_t at = 2;
  for (int c = 0; c < ncols; c++) {
    if (len - at < 4) return 0;
    uint32_t f = be32(b + at);
    at += 4;
    if (f == 0xFFFFFFFFu) continue;
    if (f > len - at) return 0;
    at += f;
  }
  return at == len;
}

/* ---- one read ---------------------------------------------------------------- */

static luaio_readbuf *rb_now;
static int rows_now;

static int call_read(lua_State *L) {
  size_t need;
  int n = luaio_pg_read(L, rb_now, rows_now ? 1 : 0, &need);
  check(n != RB_FAIL);
  return n < 0 ? 0 : n;
}

typedef struct {
  const unsigned char *data;
  size_t size, done;           /* done: bytes the reference has consumed */
  int ncols, decode, kinds[4];
  lua_Integer rows;            /* rows the reference expects in the table */
  const unsigned char *last;   /* the body of the last DataRow consumed */
  int failed;
} ref_state;

/* the reference consumes what it can of data[done .. avail); -> what a read
** must give: 2 message, 0 wait, -1 ProtocolError */
static int ref_step(ref_state *r, size_t avail, size_t *msg_at, size_t *msg_total) {
  while (1) {
    size_t total;
    int f = ref_frame(r->data + r->done, avail - r->done, &total);
    if (f < 0) return -1;
    if (f == 0) return 0;
    const unsigned char *m = r->data + r->done;
    if (r->decode && m[0] == 'D') {
      if (!ref_row_ok(m + 5, total - 5, r->ncols)) return -1;
      r->last = m + 5;
      r->done += total;
      r->rows++;
      continue;
    }
    *msg_at = r->done;
    *msg_total = total;
    r->done += total;
    return 2;
  }
}

/* the last row of the table against its DataRow: NULLs absent, text
** columns the field's bytes, the others present */
static void check_last_row(lua_State *L, int rows, const ref_state *r) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, rows);
  if (n == 0) return;
  lua_rawgeti(L, rows, n);
  check(lua_istable(L, -1));
  size_t at = 2;
  for (int c = 0; c < r->ncols; c++) {
    uint32_t f = be32(r->last + at);
    at += 4;
    lua_rawgeti(L, 2, c + 1);
    lua_rawget(L, -2);
    if (f == 0xFFFFFFFFu) check(lua_isnil(L, -1));
    else {
      check(!lua_isnil(L, -1));
      if (r->kinds[c] == PG_TEXT) {
        size_t vl;
        const char *v = lua_tolstring(L, -1, &vl);
        check(vl == f && memcmp(v, r->last + at, f) == 0);
      }
      at += f;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static void fuzz_stream(const unsigned char *data, size_t size) {
  if (size < 4) return;
  ref_state r = {0};
  r.ncols = data[1] % 5;
  r.decode = data[1] & 0x80;
  for (int c = 0; c < 4; c++) r.kinds[c] = (data[2] >> (2 * c)) % PG_KINDS;
  uint32_t seed = data[3] | 1u;
  r.data = data + 4;
  r.size = size - 4;
  luaio_readbuf b = {0};
  b.limit = 65536;
  lua_settop(L, 0);
  /* the rows table, names and kinds at 1, 2, 3 */
  lua_newtable(L);
  lua_newtable(L);
  lua_newtable(L);
  for (int c = 0; c < r.ncols; c++) {
    lua_pushfstring(L, "c%d", c);
    lua_rawseti(L, 2, c + 1);
    lua_pushinteger(L, r.kinds[c]);
    lua_rawseti(L, 3, c + 1);
  }
  rows_now = r.decode;
  rb_now = &b;
  size_t fed = 0;
  int eof = 0;
  while (!r.failed) {
    if (fed < r.size) {
      seed ^= seed << 13; seed ^= seed >> 17; seed ^= seed << 5;
      size_t k = 1 + seed % 300;
      if (k > r.size - fed) k = r.size - fed;
      deliver(&b, r.data + fed, k);
      fed += k;
    } else if (!eof) {
      b.eof = 1;
      eof = 1;
    } else break;
    while (1) {
      size_t at = 0, total = 0;
      int want = ref_step(&r, fed, &at, &total);
      int top = lua_gettop(L);
      lua_pushcfunction(L, call_read);
      for (int i = 1; i <= 3; i++) lua_pushvalue(L, i);
      int st = lua_pcall(L, 3, LUA_MULTRET, 0);
      check(lua_rawlen(L, 1) == (size_t)r.rows);         /* the rows decoded so far */
      if (r.decode) check_last_row(L, 1, &r);
      if (want < 0) {
        check(st != LUA_OK);
        lua_getfield(L, -1, "name");
        check(strcmp(lua_tostring(L, -1), "ProtocolError") == 0);
        r.failed = 1;
        break;
      }
      if (st != LUA_OK) {                                  /* only an EOF inside a message */
        check(eof && want == 0);
        lua_getfield(L, -1, "name");
        check(strcmp(lua_tostring(L, -1), "ConnectionError") == 0);
        r.failed = 1;
        break;
      }
      int got = lua_gettop(L) - top;
      if (want == 0) {
        if (eof) {
          check(got == 1 && lua_isnil(L, -1));
          check(r.done == fed);
          r.failed = 1;
        } else {
          check(got == 0);
          check(b.len == fed - r.done);                  /* nothing but whole DataRows consumed */
        }
        lua_settop(L, top);
        break;
      }
      check(got == 2);
      size_t tl, bl;
      const char *t = lua_tolstring(L, -2, &tl);
      const char *body = lua_tolstring(L, -1, &bl);
      check(tl == 1 && (unsigned char)t[0] == r.data[at]);
      check(bl == total - 5 && memcmp(body, r.data + at + 5, bl) == 0);
      check(b.len == fed - r.done);
      lua_settop(L, top);
    }
  }
  luaio_rb_free(&b);
}

/* ---- bytea ------------------------------------------------------------------------ */

static void fuzz_bytea(const unsigned char *data, size_t size) {
  char *out = malloc(size ? size : 1);
  long k = luaio_pg_bytea((const char *)data, size, out);
  check(k <= (long)size);
  free(out);
  /* hex of the bytes decodes back to them */
  size_t hn = 2 + 2 * size;
  char *hex = malloc(hn);
  static const char digits[] = "0123456789abcdef";
  hex[0] = '\\';
  hex[1] = 'x';
  for (size_t i = 0; i < size; i++) {
    hex[2 + 2 * i] = digits[data[i] >> 4];
    hex[3 + 2 * i] = digits[data[i] & 15];
  }
  out = malloc(hn);
  k = luaio_pg_bytea(hex, hn, out);
  check(k == (long)size && memcmp(out, data, size) == 0);
  free(out);
  free(hex);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) L = luaL_newstate();
  if (size < 1) return 0;
  if (data[0] % 2 == 0) fuzz_stream(data, size);
  else fuzz_bytea(data + 1, size - 1);
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
