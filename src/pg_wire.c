/*
** pg_wire.c — PostgreSQL backend messages (protocol 3.0) read in place from
** a stream's read buffer: a type byte, an Int32 length (itself included),
** the body. The protocol is Lua's (lua/luaio/pg/); this file does what is
** per byte: framing, and the DataRows of a result, which are decoded here
** straight into row tables (text format: integers, floats, booleans, bytea
** and strings), so that 100,000 rows cost no Lua call per row or field.
**
** A result's rows are consumed as they are decoded and appended to the
** caller's rows table, which is the read's argument: a read that has to
** wait (or is cancelled) loses none of them. Any other message is returned
** whole, or left in the buffer until it is.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "luaio_int.h"
#include "pg_wire.h"

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int raise_protocol(lua_State *L, const char *why) {
  return luaio_error(L, "ProtocolError", NULL, "PostgreSQL: %s", why);
}

/* ---- field values ---------------------------------------------------------- */

static int hexval(unsigned c) {
  if (c >= '0' && c <= '9') return (int)(c - '0');
  c |= 0x20;
  if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
  return -1;
}

long luaio_pg_bytea(const char *p, size_t n, char *out) {
  const unsigned char *s = (const unsigned char *)p;
  long k = 0;
  if (n >= 2 && s[0] == '\\' && s[1] == 'x') {          /* hex: \x then 2 digits a byte */
    if ((n - 2) % 2) return -1;
    for (size_t i = 2; i < n; i += 2) {
      int hi = hexval(s[i]), lo = hexval(s[i + 1]);
      if (hi < 0 || lo < 0) return -1;
      out[k++] = (char)(hi << 4 | lo);
    }
    return k;
  }
  for (size_t i = 0; i < n; ) {                         /* escape: \\ and \ooo */
    if (s[i] != '\\') { out[k++] = (char)s[i++]; continue; }
    if (i + 1 < n && s[i + 1] == '\\') { out[k++] = '\\'; i += 2; continue; }
    if (n - i < 4) return -1;
    int v = 0;
    for (int j = 1; j <= 3; j++) {
      if (s[i + j] < '0' || s[i + j] > '7') return -1;
      v = v * 8 + (s[i + j] - '0');
    }
    if (v > 255) return -1;
    out[k++] = (char)v;
    i += 4;
  }
  return k;
}

/* an int2/int4/int8/oid: decimal digits with an optional minus */
static int parse_int(const unsigned char *p, size_t n, lua_Integer *out) {
  size_t i = 0;
  int neg = n > 0 && p[0] == '-';
  if (neg) i = 1;
  if (i == n || n - i > 20) return 0;
  uint64_t v = 0;
  for (; i < n; i++) {
    unsigned d = p[i] - '0';
    if (d > 9) return 0;
    if (v > (UINT64_MAX - d) / 10) return 0;
    v = v * 10 + d;
  }
  if (v > (uint64_t)INT64_MAX + (uint64_t)neg) return 0;
  *out = neg ? (lua_Integer)(0 - v) : (lua_Integer)v;
  return 1;
}

/* Clinger's fast path: a decimal with at most 15 significant digits and a
** power of ten up to 22 is one exact product or quotient of two doubles,
** so correctly rounded; -1 when the text is not that simple */
static int fast_float(const unsigned char *p, size_t n, lua_Number *out) {
  static const double pow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  size_t i = 0;
  int neg = p[0] == '-', digits = 0, scale = 0, seen = 0;
  if (neg) i++;
  uint64_t m = 0;
  for (; i < n && (unsigned)(p[i] - '0') <= 9u; i++, seen = 1)
    if (m || p[i] != '0') { m = m * 10 + (p[i] - '0'); if (++digits > 15) return -1; }
  if (i < n && p[i] == '.') {
    for (i++; i < n && (unsigned)(p[i] - '0') <= 9u; i++, seen = 1) {
      if (m || p[i] != '0') { m = m * 10 + (p[i] - '0'); if (++digits > 15) return -1; }
      scale--;
    }
  }
  if (!seen) return -1;
  if (i < n && (p[i] == 'e' || p[i] == 'E')) {
    int eneg = 0, e = 0;
    if (++i < n && (p[i] == '-' || p[i] == '+')) eneg = p[i++] == '-';
    if (i == n) return -1;
    for (; i < n && (unsigned)(p[i] - '0') <= 9u; i++) if ((e = e * 10 + (p[i] - '0')) > 400) return -1;
    scale += eneg ? -e : e;
  }
  if (i != n || scale < -22 || scale > 22) return -1;
  double v = (double)m;
  v = scale < 0 ? v / pow10[-scale] : v * pow10[scale];
  *out = (lua_Number)(neg ? -v : v);
  return 1;
}

/* a float4/float8: decimal, exponent, NaN, Infinity, -Infinity (what the
** fast path does not take, strtod reads; a copy gives it the NUL it needs) */
static int parse_float(const unsigned char *p, size_t n, lua_Number *out) {
  char tmp[64];
  if (n == 0 || n >= sizeof tmp) return 0;
  if (fast_float(p, n, out) > 0) return 1;
  memcpy(tmp, p, n);
  tmp[n] = '\0';
  char *end;
  *out = (lua_Number)strtod(tmp, &end);
  return end == tmp + n;
}

/* a big-endian two's complement integer of 2, 4 or 8 bytes */
static lua_Integer be_int(const unsigned char *p, size_t n) {
  uint64_t v = 0;
  for (size_t k = 0; k < n; k++) v = v << 8 | p[k];
  if (n < 8 && (p[0] & 0x80)) v |= ~(uint64_t)0 << (8 * n);   /* sign-extend */
  return (lua_Integer)v;
}

/* push a field's value as its kind says; anything that does not parse as
** its kind stays the server's text (or bytes) */
static void push_field(lua_State *L, int kind, const unsigned char *p, size_t n) {
  lua_Integer i;
  lua_Number f;
  switch (kind) {
    case PG_INT_BIN: if (n == 2 || n == 4 || n == 8) { lua_pushinteger(L, be_int(p, n)); return; } break;
    case PG_FLOAT8_BIN:
      if (n == 8) {
        uint64_t bits = (uint64_t)be_int(p, 8);
        double d;
        memcpy(&d, &bits, 8);
        lua_pushnumber(L, (lua_Number)d);
        return;
      }
      break;
    case PG_BOOL_BIN: if (n == 1) { lua_pushboolean(L, p[0] != 0); return; } break;
    case PG_INT: if (parse_int(p, n, &i)) { lua_pushinteger(L, i); return; } break;
    case PG_FLOAT: if (parse_float(p, n, &f)) { lua_pushnumber(L, f); return; } break;
    case PG_BOOL: lua_pushboolean(L, n > 0 && p[0] == 't'); return;
    case PG_BYTEA: {
      luaL_Buffer B;
      char *out = luaL_buffinitsize(L, &B, n ? n : 1);
      long k = luaio_pg_bytea((const char *)p, n, out);
      if (k >= 0) { luaL_pushresultsize(&B, (size_t)k); return; }
      luaL_pushresultsize(&B, 0);
      lua_pop(L, 1);
      break;
    }
    default: break;
  }
  lua_pushlstring(L, (const char *)p, n);
}

/* ---- DataRow ----------------------------------------------------------------- */

typedef struct {
  int ncols, names;          /* the names lie on the stack at names + 1 .. names + ncols */
  unsigned char kinds[LUAIO_PG_MAX_COLUMNS];
  lua_Integer count;         /* rows in the rows table */
} row_shape;

/* body[0 .. len) of a DataRow -> a row table on the stack top (1), or 0 when
** it does not match the shape */
static int decode_row(lua_State *L, const row_shape *sh, const unsigned char *body, size_t len) {
  if (len < 2 || (int)(body[0] << 8 | body[1]) != sh->ncols) return 0;
  size_t at = 2;
  lua_createtable(L, 0, sh->ncols);
  for (int c = 0; c < sh->ncols; c++) {
    if (len - at < 4) return 0;
    uint32_t flen = be32(body + at);
    at += 4;
    if (flen == 0xFFFFFFFFu) continue;                   /* NULL: no key */
    if (flen > len - at) return 0;
    lua_pushvalue(L, sh->names + 1 + c);
    push_field(L, sh->kinds[c], body + at, flen);
    lua_rawset(L, -3);
    at += flen;
  }
  return at == len;
}

/* the names and kinds at rows + 1, rows + 2 -> shape (names pushed) */
static void load_shape(lua_State *L, int rows, row_shape *sh) {
  int n = (int)lua_rawlen(L, rows + 1);
  if (n > LUAIO_PG_MAX_COLUMNS) n = LUAIO_PG_MAX_COLUMNS;
  luaL_checkstack(L, n + 8, "too many columns");
  sh->ncols = n;
  sh->names = lua_gettop(L);
  sh->count = (lua_Integer)lua_rawlen(L, rows);
  for (int c = 0; c < n; c++) {
    lua_rawgeti(L, rows + 2, c + 1);
    lua_Integer k = lua_tointeger(L, -1);
    lua_pop(L, 1);
    sh->kinds[c] = (unsigned char)(k >= 0 && k < PG_KINDS ? k : PG_TEXT);
    lua_rawgeti(L, rows + 1, c + 1);
  }
}

/* ---- the reader ----------------------------------------------------------------- */

/* the header of the message at the front: 0 with *total set when the
** header is in, 1 when more bytes are needed */
static int header(lua_State *L, const luaio_readbuf *b, size_t *total) {
  if (b->len < 5) return 1;
  const unsigned char *p = (const unsigned char *)luaio_rb_data(b);
  uint32_t len = be32(p + 1);
  if (len < 4) raise_protocol(L, "message length under 4");
  if (len > LUAIO_PG_MAX_MESSAGE) raise_protocol(L, "message larger than 1 GiB");
  *total = 1 + (size_t)len;
  return 0;
}

/* consume the DataRows at the front into rows, up to another message or
** the end of what is buffered */
static void take_rows(lua_State *L, luaio_readbuf *b, int rows) {
  row_shape *sh = lua_newuserdatauv(L, sizeof *sh, 0);   /* collected with the stack */
  int top = lua_gettop(L);
  load_shape(L, rows, sh);
  size_t total;
  while (header(L, b, &total) == 0 && b->len >= total && luaio_rb_data(b)[0] == 'D') {
    const unsigned char *body = (const unsigned char *)luaio_rb_data(b) + 5;
    if (!decode_row(L, sh, body, total - 5)) raise_protocol(L, "a DataRow that does not match its columns");
    lua_rawseti(L, rows, ++sh->count);
    luaio_rb_consume(b, total);
  }
  lua_settop(L, top - 1);
}

int luaio_pg_read(lua_State *L, luaio_readbuf *b, int rows, size_t *need) {
  *need = 0;
  if (rows && lua_istable(L, rows)) take_rows(L, b, rows);
  size_t total;
  if (header(L, b, &total) == 0) {
    if (b->len >= total) {
      const char *p = luaio_rb_data(b);
      char type = p[0];
      lua_pushlstring(L, &type, 1);
      lua_pushlstring(L, p + 5, total - 5);
      luaio_rb_consume(b, total);
      return 2;
    }
    *need = total;
  }
  if (!b->eof && !b->err) return RB_WAIT;
  if (b->err) return RB_FAIL;
  if (b->len == 0) { lua_pushnil(L); return 1; }
  luaio_rb_consume(b, b->len);
  return luaio_error(L, "ConnectionError", "ECONNRESET", "PostgreSQL: connection closed inside a message");
}
