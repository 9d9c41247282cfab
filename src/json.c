/*
** json.c — aio.json: encode, decode and the array mark, natively.
**
** Why not lua-cjson (which aio.json wrapped until now): Debian's 2.1.0
** decodes [] and {} to the same empty table, so an empty array cannot
** round-trip, and it has no way to mark a table as an array; it prints
** every number with %.14g, so big integers lose digits. Both directions are
** here instead, small and without allocation per value:
**
** - Arrays. One shared metatable, array_mt (in the registry and in every
**   function's upvalue), marks a table as a JSON array: aio.json.array(t)
**   sets it, decode sets it on every array it makes, encode writes a marked
**   table as [t[1], ..., t[#t]] even when empty. Unmarked tables follow
**   cjson's rules as aio.json used them (encode_sparse_array(true)):
**   positive integer keys only -> an array up to the largest key, holes as
**   null, unless excessively sparse (largest > 2 * count and > 10), which
**   goes out as an object with the keys as strings; {} is an object.
** - Numbers. Lua integers print exactly; floats as %.14g (cjson's output,
**   so existing documents do not change); NaN and infinities are errors.
**   Decoding, a whole number within +-2^53 (where floats are exact) becomes
**   a Lua integer, as in Python's json; others stay floats.
** - null is the NULL light userdata, the very value cjson.null is.
** - Errors name where: the decoder the character position (as cjson did),
**   the encoder the path of the offending value ($.a[3]).
** - Nesting is capped at 1000 both ways (cjson's limit): a cycle is caught
**   as nesting too deep, and the C recursion stays bounded.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "luaio_int.h"

#define MAX_DEPTH 1000
#define EXACT_LIMIT 9007199254740992.0   /* 2^53 */
#define ARRAY_MT_KEY "luaio.json.array_mt"
#define ARRAY_MT lua_upvalueindex(1)

/* ==== encoding ========================================================== */

/* The output goes to a buffer of our own rather than a luaL_Buffer: that
** one must stay on top of the stack, and walking a table with lua_next
** keeps its key there. Output up to INIT_SIZE stays in the C frame; beyond,
** it moves to a userdata in a fixed stack slot (box), so an error raised
** midway leaks nothing. */
#define INIT_SIZE 4096

typedef struct {
  lua_State *L;
  char *p;
  size_t n, cap;
  int box;          /* stack slot for the userdata holding p once it outgrows init */
  int root;         /* stack slot of the value encode was given */
  char init[INIT_SIZE];
} encoder;

static void grow(encoder *e, size_t need) {
  size_t cap = e->cap;
  while (cap - e->n < need) {
    if (cap > ((size_t)-1) / 4) luaL_error(e->L, "aio.json.encode: the result is too large");
    cap *= 2;
  }
  char *p = lua_newuserdatauv(e->L, cap, 0);
  memcpy(p, e->p, e->n);
  lua_replace(e->L, e->box);            /* the previous box, if any, is garbage now */
  e->p = p;
  e->cap = cap;
}

static inline char *reserve(encoder *e, size_t need) {
  if (e->cap - e->n < need) grow(e, need);
  return e->p + e->n;
}

static inline void put_char(encoder *e, char c) {
  *reserve(e, 1) = c;
  e->n++;
}

static inline void put_mem(encoder *e, const char *s, size_t len) {
  memcpy(reserve(e, len), s, len);
  e->n += len;
}

/* -- errors: "aio.json.encode: WHAT (at $.a[3])" -------------------------- */

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }
static inline int is_letter(char c) { return c == '_' || ((c | 32) >= 'a' && (c | 32) <= 'z'); }

static int is_identifier(const char *s, size_t len) {
  if (len == 0 || len > 40 || !is_letter(s[0])) return 0;
  for (size_t i = 1; i < len; i++)
    if (!is_letter(s[i]) && !is_digit(s[i])) return 0;
  return 1;
}

/* push the path segment for the key at stack slot k: .name, ["odd key"], [3] */
static void push_segment(lua_State *L, int k) {
  if (lua_type(L, k) != LUA_TSTRING) {
    if (lua_isinteger(L, k)) lua_pushfstring(L, "[%I]", (LUAI_UACINT)lua_tointeger(L, k));
    else lua_pushfstring(L, "[%f]", (LUAI_UACNUMBER)lua_tonumber(L, k));
    return;
  }
  size_t len;
  const char *s = lua_tolstring(L, k, &len);
  if (is_identifier(s, len)) {
    lua_pushfstring(L, ".%s", s);
    return;
  }
  lua_pushliteral(L, "[\"");
  lua_pushlstring(L, s, len > 40 ? 40 : len);
  lua_pushstring(L, len > 40 ? "...\"]" : "\"]");
  lua_concat(L, 3);
}

/* Raise the error about the value at stack slot idx. Each enclosing table
** left, just above itself, the key being encoded and then the value (see
** put_array, put_object): the path is read off the stack, costing nothing
** until something fails. Deep paths show their first 12 steps. */
static void encode_error(encoder *e, int idx, const char *what) {
  lua_State *L = e->L;
  luaL_checkstack(L, 20, NULL);
  int top = lua_gettop(L);
  luaL_where(L, 1);
  lua_pushfstring(L, "aio.json.encode: %s", what);
  int steps = (idx - e->root) / 2;
  if (steps > 0) {
    lua_pushliteral(L, " (at $");
    for (int i = 1; i <= steps && i <= 12; i++) push_segment(L, e->root + 2 * i - 1);
    lua_pushstring(L, steps > 12 ? "...)" : ")");
  }
  lua_concat(L, lua_gettop(L) - top);
  lua_error(L);
}

/* what Lua's messages call the value's type (__name for userdata) */
static const char *value_type(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TLIGHTUSERDATA) return "light userdata";
  if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) return lua_tostring(L, -1);
  return luaL_typename(L, idx);                    /* a non-string __name stays pushed: harmless */
}

/* -- scalars --------------------------------------------------------------- */

static void put_integer(encoder *e, lua_Integer i) {
  char digits[24];
  int n = 0;
  lua_Unsigned u = i < 0 ? 0u - (lua_Unsigned)i : (lua_Unsigned)i;
  do { digits[n++] = (char)('0' + u % 10); u /= 10; } while (u);
  char *o = reserve(e, (size_t)n + 1);
  size_t k = 0;
  if (i < 0) o[k++] = '-';
  while (n) o[k++] = digits[--n];
  e->n += k;
}

/* the number at idx (a value, or a key: the same text, quoted by the caller) */
static void put_number(encoder *e, int idx) {
  lua_State *L = e->L;
  if (lua_isinteger(L, idx)) {
    put_integer(e, lua_tointeger(L, idx));
    return;
  }
  double d = (double)lua_tonumber(L, idx);
  if (isnan(d) || isinf(d)) encode_error(e, idx, "cannot encode NaN or an infinity");
  char *o = reserve(e, 32);
  int len = snprintf(o, 32, "%.14g", d);
  for (int i = 0; i < len; i++)                   /* a locale's decimal comma */
    if (o[i] != '-' && o[i] != '+' && o[i] != 'e' && (o[i] < '0' || o[i] > '9')) o[i] = '.';
  e->n += (size_t)len;
}

/* 0: the byte goes out as is; else the letter after the backslash ('u':
** \u00XX). RFC 8259 requires escaping only '"', '\\' and control chars. */
static const char escape_of[256] = {
  'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
  'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
  ['"'] = '"', ['\\'] = '\\',
};

/* runs of plain bytes go out in one copy: a plain string is one memcpy */
static void put_string(encoder *e, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  put_char(e, '"');
  size_t start = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc = escape_of[c];
    if (!esc) continue;
    put_mem(e, s + start, i - start);
    if (esc == 'u') {
      char u[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
      put_mem(e, u, 6);
    } else {
      char two[2] = { '\\', esc };
      put_mem(e, two, 2);
    }
    start = i + 1;
  }
  put_mem(e, s + start, len - start);
  put_char(e, '"');
}

/* -- tables ---------------------------------------------------------------- */

static void put_value(encoder *e, int idx, int depth);

/* The length an unmarked table encodes as an array with (cjson's rule,
** see the top), or -1 for an object. A table with string keys usually
** shows one first (lua_next walks the array part first, and an object
** has none), so an object costs one step here. */
static lua_Integer array_length(lua_State *L, int t) {
  lua_Integer max = 0, items = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    lua_Integer k;
    if (!lua_isinteger(L, -1) || (k = lua_tointeger(L, -1)) < 1) {
      lua_pop(L, 1);
      return -1;
    }
    if (k > max) max = k;
    items++;
  }
  if (max > 10 && max / 2 > items) return -1;   /* excessively sparse */
  return max;
}

/* t[1..n] (holes as null); the index is pushed under each value so an
** error can name it */
static void put_array(encoder *e, int t, lua_Integer n, int depth) {
  lua_State *L = e->L;
  put_char(e, '[');
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1) put_char(e, ',');
    lua_pushinteger(L, i);
    lua_rawgeti(L, t, i);
    put_value(e, t + 2, depth);
    lua_pop(L, 2);
  }
  put_char(e, ']');
}

static void put_key(encoder *e, int t) {
  lua_State *L = e->L;
  int k = t + 1;
  if (lua_type(L, k) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, k, &len);
    put_string(e, s, len);
  } else if (lua_type(L, k) == LUA_TNUMBER) {      /* never lua_tolstring: it would confuse lua_next */
    put_char(e, '"');
    put_number(e, k);
    put_char(e, '"');
  } else {
    encode_error(e, t, lua_pushfstring(L, "a key must be a string or a number, got %s",
                                       value_type(L, k)));
  }
  put_char(e, ':');
}

static void put_object(encoder *e, int t, int depth) {
  lua_State *L = e->L;
  put_char(e, '{');
  int first = 1;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (!first) put_char(e, ',');
    first = 0;
    put_key(e, t);
    put_value(e, t + 2, depth);
    lua_pop(L, 1);
  }
  put_char(e, '}');
}

/* the table at t, the top of the stack, nested depth deep (1: the root) */
static void put_table(encoder *e, int t, int depth) {
  lua_State *L = e->L;
  if (depth > MAX_DEPTH) encode_error(e, t, "cannot encode a cycle or nesting deeper than 1000");
  luaL_checkstack(L, 6, "aio.json.encode: nesting too deep");
  if (lua_getmetatable(L, t)) {
    int marked = lua_rawequal(L, -1, ARRAY_MT);
    lua_pop(L, 1);
    if (marked) {
      put_array(e, t, (lua_Integer)lua_rawlen(L, t), depth);
      return;
    }
  }
  lua_Integer n = array_length(L, t);
  if (n > 0) put_array(e, t, n, depth);
  else put_object(e, t, depth);
}

/* the value at idx, the top of the stack, inside depth tables */
static void put_value(encoder *e, int idx, int depth) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
    case LUA_TNIL: put_mem(e, "null", 4); return;
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, idx)) put_mem(e, "true", 4);
      else put_mem(e, "false", 5);
      return;
    case LUA_TNUMBER: put_number(e, idx); return;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      put_string(e, s, len);
      return;
    }
    case LUA_TTABLE: put_table(e, idx, depth + 1); return;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == NULL) { put_mem(e, "null", 4); return; }   /* aio.json.null */
      /* FALLTHROUGH */
    default:
      encode_error(e, idx, lua_pushfstring(L, "cannot encode a %s", value_type(L, idx)));
  }
}

/* json_encode(v) -> the JSON text of v */
static int l_json_encode(lua_State *L) {
  luaio_checkany(L, 1);
  lua_settop(L, 1);
  encoder e;
  e.L = L;
  e.p = e.init;
  e.n = 0;
  e.cap = sizeof e.init;
  lua_pushnil(L);                       /* 2: the box */
  e.box = 2;
  lua_pushvalue(L, 1);                  /* 3: the root, at the top as put_value wants */
  e.root = 3;
  put_value(&e, 3, 0);
  lua_pushlstring(L, e.p, e.n);
  return 1;
}

/* ==== decoding ========================================================== */

/* A recursive descent over the whole string (Lua strings end with a NUL
** the length does not count, so peeking at *p is always safe: at the end
** it reads '\0', which nothing accepts). */
typedef struct {
  lua_State *L;
  const char *s, *p, *end;
} decoder;

static void decode_value(decoder *d, int depth);

/* "aio.json.decode: WHAT at character N" (1-based byte position of at) */
static void decode_fail(decoder *d, const char *at, const char *what) {
  luaL_where(d->L, 1);
  lua_pushfstring(d->L, "aio.json.decode: %s at character %I", what, (LUAI_UACINT)(at - d->s + 1));
  lua_concat(d->L, 2);
  lua_error(d->L);
}

/* "... but found X": what is at the current position */
static void decode_expected(decoder *d, const char *expected) {
  lua_State *L = d->L;
  unsigned char c = (unsigned char)*d->p;
  const char *found;
  if (d->p >= d->end) found = "the end";
  else if (c > ' ' && c < 0x7f) found = lua_pushfstring(L, "'%c'", c);
  else {
    char b[16];
    snprintf(b, sizeof b, "byte 0x%02X", c);
    found = lua_pushstring(L, b);
  }
  decode_fail(d, d->p, lua_pushfstring(L, "expected %s but found %s", expected, found));
}

static inline void skip_space(decoder *d) {
  while (*d->p == ' ' || *d->p == '\n' || *d->p == '\r' || *d->p == '\t') d->p++;
}

static void decode_literal(decoder *d, const char *word, size_t len) {
  if ((size_t)(d->end - d->p) < len || memcmp(d->p, word, len) != 0) decode_expected(d, "a value");
  d->p += len;
}

/* -- numbers --------------------------------------------------------------- */

/* Lua's own conversion (the C locale's decimal point, whatever the
** process's locale) of a numeral the grammar already checked */
static void push_numeral(decoder *d, const char *s, size_t len) {
  lua_State *L = d->L;
  char small[64];
  if (len < sizeof small) {
    memcpy(small, s, len);
    small[len] = '\0';
    if (lua_stringtonumber(L, small) == 0) decode_fail(d, s, "invalid number");
    return;
  }
  lua_pushlstring(L, s, len);
  if (lua_stringtonumber(L, lua_tostring(L, -1)) == 0) decode_fail(d, s, "invalid number");
  lua_remove(L, -2);
}

/* RFC 8259's grammar, strictly: no leading zeros, '+', hex, nan or inf */
static void decode_number(decoder *d) {
  lua_State *L = d->L;
  const char *start = d->p, *q = d->p;
  if (*q == '-') q++;
  if (*q == '0') q++;
  else if (is_digit(*q)) while (is_digit(*q)) q++;
  else decode_fail(d, start, "invalid number");
  int whole = 1;
  if (*q == '.') {
    if (!is_digit(*++q)) decode_fail(d, start, "invalid number");
    while (is_digit(*q)) q++;
    whole = 0;
  }
  if (*q == 'e' || *q == 'E') {
    q++;
    if (*q == '+' || *q == '-') q++;
    if (!is_digit(*q)) decode_fail(d, start, "invalid number");
    while (is_digit(*q)) q++;
    whole = 0;
  }
  d->p = q;
  size_t len = (size_t)(q - start);
  int neg = *start == '-';
  if (whole && len - (size_t)neg <= 15) {         /* the common case: below 10^15 < 2^53 */
    lua_Integer v = 0;
    for (const char *c = start + neg; c < q; c++) v = v * 10 + (*c - '0');
    lua_pushinteger(L, neg ? -v : v);
    return;
  }
  push_numeral(d, start, len);
  /* whole numbers within +-2^53 as integers, others as floats (exactness) */
  double f = lua_isinteger(L, -1) ? (double)lua_tointeger(L, -1) : (double)lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (f == floor(f) && fabs(f) < EXACT_LIMIT) lua_pushinteger(L, (lua_Integer)f);
  else lua_pushnumber(L, (lua_Number)f);
}

/* -- strings --------------------------------------------------------------- */

static int hex4(const char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {                   /* stops at the NUL at the end */
    char c = p[i];
    int x = is_digit(c) ? c - '0' : (c | 32) >= 'a' && (c | 32) <= 'f' ? (c | 32) - 'a' + 10 : -1;
    if (x < 0) return -1;
    v = v * 16 + x;
  }
  return v;
}

static void add_utf8(luaL_Buffer *b, unsigned cp) {
  char u[4];
  int n;
  if (cp < 0x80) { u[0] = (char)cp; n = 1; }
  else if (cp < 0x800) { u[0] = (char)(0xC0 | cp >> 6); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
  else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | cp >> 12); u[1] = (char)(0x80 | (cp >> 6 & 0x3F)); u[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    u[0] = (char)(0xF0 | cp >> 18); u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    u[2] = (char)(0x80 | (cp >> 6 & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  luaL_addlstring(b, u, (size_t)n);
}

/* \uXXXX at q (the backslash), a surrogate pair as one code point; lone
** surrogates are refused (as cjson did): they have no UTF-8 form. -> past it */
static const char *unicode_escape(decoder *d, luaL_Buffer *b, const char *q) {
  int cp = hex4(q + 2);
  if (cp < 0) decode_fail(d, q, "invalid \\u escape");
  q += 6;
  if (cp >= 0xDC00 && cp <= 0xDFFF) decode_fail(d, q - 6, "lone UTF-16 surrogate in \\u escape");
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    int lo = q[0] == '\\' && q[1] == 'u' ? hex4(q + 2) : -1;
    if (lo < 0xDC00 || lo > 0xDFFF) decode_fail(d, q - 6, "lone UTF-16 surrogate in \\u escape");
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    q += 6;
  }
  add_utf8(b, (unsigned)cp);
  return q;
}

/* the escape at q (the backslash) -> past it */
static const char *escape(decoder *d, luaL_Buffer *b, const char *q) {
  char c;
  switch (q[1]) {
    case '"': c = '"'; break;
    case '\\': c = '\\'; break;
    case '/': c = '/'; break;
    case 'b': c = '\b'; break;
    case 'f': c = '\f'; break;
    case 'n': c = '\n'; break;
    case 'r': c = '\r'; break;
    case 't': c = '\t'; break;
    case 'u': return unicode_escape(d, b, q);
    default: decode_fail(d, q, "invalid escape in string"); return q;
  }
  luaL_addchar(b, c);
  return q + 2;
}

/* a byte that ends a run of plain string bytes */
static inline int is_special(unsigned char c) { return c == '"' || c == '\\' || c < 0x20; }

/* the string whose opening quote is at d->p: pushed as it is when it has
** no escapes (one copy), else through a luaL_Buffer (nothing else touches
** the stack meanwhile, as the buffer requires) */
static void decode_string(decoder *d) {
  const char *open = d->p, *q = d->p + 1;
  while (!is_special((unsigned char)*q)) q++;
  if (*q == '"') {
    lua_pushlstring(d->L, open + 1, (size_t)(q - open - 1));
    d->p = q + 1;
    return;
  }
  luaL_Buffer b;
  luaL_buffinit(d->L, &b);
  luaL_addlstring(&b, open + 1, (size_t)(q - open - 1));
  while (*q != '"') {
    if (*q == '\\') q = escape(d, &b, q);
    else if (q >= d->end) decode_fail(d, open, "unterminated string");
    else if ((unsigned char)*q < 0x20) decode_fail(d, q, "control character in string");
    const char *run = q;
    while (!is_special((unsigned char)*q)) q++;
    luaL_addlstring(&b, run, (size_t)(q - run));
  }
  luaL_pushresult(&b);
  d->p = q + 1;
}

/* -- containers ------------------------------------------------------------ */

static void enter(decoder *d, int depth) {
  if (depth > MAX_DEPTH) decode_fail(d, d->p, "nesting deeper than 1000");
  luaL_checkstack(d->L, 6, "aio.json.decode: nesting too deep");
  d->p++;                                          /* the bracket */
  skip_space(d);
}

/* an array: marked with array_mt, so it encodes back as one even empty */
static void decode_array(decoder *d, int depth) {
  lua_State *L = d->L;
  enter(d, depth);
  lua_newtable(L);
  lua_pushvalue(L, ARRAY_MT);
  lua_setmetatable(L, -2);
  if (*d->p == ']') { d->p++; return; }
  for (lua_Integer i = 1;; i++) {
    decode_value(d, depth);
    lua_rawseti(L, -2, i);
    skip_space(d);
    if (*d->p == ']') { d->p++; return; }
    if (*d->p != ',') decode_expected(d, "',' or ']'");
    d->p++;
  }
}

static void decode_object(decoder *d, int depth) {
  lua_State *L = d->L;
  enter(d, depth);
  lua_newtable(L);
  if (*d->p == '}') { d->p++; return; }
  for (;;) {
    skip_space(d);
    if (*d->p != '"') decode_expected(d, "a string key");
    decode_string(d);
    skip_space(d);
    if (*d->p != ':') decode_expected(d, "':'");
    d->p++;
    decode_value(d, depth);
    lua_rawset(L, -3);                             /* a repeated key: the last one wins */
    skip_space(d);
    if (*d->p == '}') { d->p++; return; }
    if (*d->p != ',') decode_expected(d, "',' or '}'");
    d->p++;
  }
}

/* one value, pushed; depth: the containers around it */
static void decode_value(decoder *d, int depth) {
  lua_State *L = d->L;
  skip_space(d);
  switch (*d->p) {
    case '{': decode_object(d, depth + 1); return;
    case '[': decode_array(d, depth + 1); return;
    case '"': decode_string(d); return;
    case 't': decode_literal(d, "true", 4); lua_pushboolean(L, 1); return;
    case 'f': decode_literal(d, "false", 5); lua_pushboolean(L, 0); return;
    case 'n': decode_literal(d, "null", 4); lua_pushlightuserdata(L, NULL); return;
    default:
      if (*d->p == '-' || is_digit(*d->p)) decode_number(d);
      else decode_expected(d, "a value");
  }
}

/* json_decode(s) -> the value of the JSON text s */
static int l_json_decode(lua_State *L) {
  luaio_checktype(L, 1, LUA_TSTRING);
  lua_settop(L, 1);
  size_t len;
  decoder d;
  d.L = L;
  d.s = d.p = lua_tolstring(L, 1, &len);
  d.end = d.s + len;
  luaL_checkstack(L, 6, NULL);
  decode_value(&d, 0);
  skip_space(&d);
  if (d.p != d.end) decode_expected(&d, "the end");
  return 1;
}

/* ==== the mark ========================================================== */

/* json_array([t]) -> t (or a new table), marked to encode as an array */
static int l_json_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_newtable(L);
  } else {
    luaio_argexpected(L, lua_type(L, 1) == LUA_TTABLE, 1, "table");
    lua_settop(L, 1);
    if (lua_getmetatable(L, 1)) {                  /* replacing it would break the table's owner */
      if (!lua_rawequal(L, -1, ARRAY_MT)) luaio_argerror(L, 1, "the table has a metatable already");
      lua_pop(L, 1);
    }
  }
  lua_pushvalue(L, ARRAY_MT);
  lua_setmetatable(L, -2);
  return 1;
}

/* The one array metatable of this Lua state, made on first use. Its
** __jsontype is dkjson's convention for the same mark. */
static void push_array_mt(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, ARRAY_MT_KEY) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "array");
  lua_setfield(L, -2, "__jsontype");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, ARRAY_MT_KEY);
}

void luaio_open_json(lua_State *L, luaio_host *h) {
  (void)h;
  static const luaL_Reg fns[] = {
    { "json_encode", l_json_encode },
    { "json_decode", l_json_decode },
    { "json_array", l_json_array },
    { NULL, NULL },
  };
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "json_null");
  push_array_mt(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "json_array_mt");
  luaL_setfuncs(L, fns, 1);                        /* into core, array_mt as upvalue */
}
