/*
** resp.c — the native half of the Redis client: replies (RESP2, RESP3)
** decoded where they lie in the read buffer, and commands encoded in one
** string. The client itself (connections, pipelines, pub/sub, the pool) is
** Lua's (lua/luaio/redis.lua).
**
** Reading (stream:_read_resp, driven by stream_read.c) takes two passes.
** The scan walks the reply's elements forward and stops where the bytes
** end, remembering its place (the position, the open aggregates and how
** many elements each still waits for): when more bytes come it goes on from
** there, so an array of 100,000 elements arriving in pieces is scanned once.
** A bulk string's header says its size, so it is not scanned at all: the
** scan waits for that many bytes. Once the whole reply is there, the decode
** builds the Lua values in one pass (each bulk string copied once, from the
** buffer into its Lua string) and the reply is consumed. A reply that is
** not whole leaves the buffer as it was: a cancelled read loses nothing.
**
** Values: simple string and bulk string -> string; integer -> integer;
** null bulk, null array, RESP3 null -> nil; array, set (~) and push (>) ->
** a table 1..n with field n (nil elements are holes: n counts them);
** map (%) -> a table key -> value (a pair whose key is nil is dropped);
** boolean -> boolean; double -> float; big number -> string; verbatim
** string -> its text without the "txt:" prefix; error and bulk error ->
** a RedisError object (not raised; `code` is its first word when that is
** upper case, as "WRONGTYPE"); an attribute (|) is read and dropped.
**
**   core.resp_command(arg, ...) -> "*N\r\n$len\r\narg\r\n..." | nil, bad, got
*/
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "luaio_int.h"
#include "resp.h"

/* ---- the scan ----------------------------------------------------------- */

static int bad(const char **why, const char *reason) {
  *why = reason;
  return LUAIO_RESP_BAD;
}

/* a decimal integer filling p[0 .. n) (an optional sign, then 1-19 digits
** within int64): 1, or 0 when it is not one */
static int parse_int(const char *p, size_t n, int64_t *out) {
  size_t i = 0;
  int neg = 0;
  if (n > 0 && (p[0] == '-' || p[0] == '+')) { neg = p[0] == '-'; i = 1; }
  if (i == n || n - i > 19) return 0;
  uint64_t v = 0;
  for (; i < n; i++) {
    unsigned d = (unsigned char)p[i] - '0';
    if (d > 9) return 0;
    v = v * 10 + d;
  }
  if (v > (uint64_t)INT64_MAX + (uint64_t)neg) return 0;
  *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
  return 1;
}

static int is_digits(const char *p, size_t n) {
  if (n > 0 && (p[0] == '-' || p[0] == '+')) { p++; n--; }
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) if ((unsigned char)p[i] - '0' > 9) return 0;
  return 1;
}

/* a RESP3 double ("1.5", "-3e7", "inf", "-inf", "nan") -> 1, or 0 */
static int parse_double(const char *p, size_t n, double *out) {
  char buf[80];
  if (n == 0 || n >= sizeof buf) return 0;
  memcpy(buf, p, n);
  buf[n] = '\0';
  char *end;
  *out = strtod(buf, &end);
  return end == buf + n;
}

/* The element at st->pos: where its type line ends (the CR, in *cr). The
** search resumes at st->line_from, so a long line coming in pieces is
** searched once. */
static int find_line(const char *p, size_t n, luaio_resp_state *st, size_t *cr, const char **why) {
  size_t from = st->line_from > st->pos ? st->line_from : st->pos + 1;
  const char *q = from < n ? memchr(p + from, '\r', n - from) : NULL;
  if (!q) {
    st->line_from = n > from ? n : from;
    if (n - st->pos > LUAIO_RESP_MAX_LINE) return bad(why, "a type line longer than 64 KiB");
    return LUAIO_RESP_MORE;
  }
  size_t i = (size_t)(q - p);
  if (i - st->pos > LUAIO_RESP_MAX_LINE) return bad(why, "a type line longer than 64 KiB");
  if (i + 1 >= n) { st->line_from = i; return LUAIO_RESP_MORE; }
  if (p[i + 1] != '\n') return bad(why, "CR without LF in a type line");
  *cr = i;
  return LUAIO_RESP_DONE;
}

static int known_type(char t) {
  return t && strchr("+-:_#,($!=*~>%|", t) != NULL;
}

/* A bulk string (t: $ ! =) whose length line is line[0 .. len): its end in
** *next, or MORE (*need: the bytes the reply needs so far) or BAD. */
static int scan_bulk(const char *p, size_t n, char t, const char *line, size_t len, uint64_t max_bulk,
                     size_t *next, size_t *need, const char **why) {
  int64_t size;
  if (!parse_int(line, len, &size)) return bad(why, "malformed bulk string length");
  if (size == -1 && t == '$') return LUAIO_RESP_DONE;      /* RESP2's null */
  if (size < 0) return bad(why, "negative bulk string length");
  if ((uint64_t)size > max_bulk) return bad(why, "bulk string larger than the limit (max_bulk)");
  if (t == '=' && size < 4) return bad(why, "verbatim string without its format");
  size_t end = *next + (size_t)size + 2;
  if (n < end) { *need = end; return LUAIO_RESP_MORE; }
  if (p[end - 2] != '\r' || p[end - 1] != '\n') return bad(why, "bulk string not followed by CRLF");
  if (t == '=' && p[*next + 3] != ':') return bad(why, "verbatim string without its format");
  *next = end;
  return LUAIO_RESP_DONE;
}

/* An aggregate's header: the elements it opens (a map's pairs count
** twice) in *count, or -1 for RESP2's null array. */
static int scan_aggregate(char t, const char *line, size_t len, int64_t *count, const char **why) {
  if (!parse_int(line, len, count)) return bad(why, "malformed aggregate length");
  if (*count == -1 && t == '*') return LUAIO_RESP_DONE;
  if (*count < 0) return bad(why, "negative aggregate length");
  if (*count > INT_MAX / 2) return bad(why, "aggregate too large");
  if (t == '%' || t == '|') *count *= 2;
  return LUAIO_RESP_DONE;
}

/* the scalar line of type t: well formed? */
static int scan_scalar(char t, const char *line, size_t len, const char **why) {
  int64_t i;
  double d;
  switch (t) {
    case ':': return parse_int(line, len, &i) ? 0 : bad(why, "malformed integer");
    case '_': return len == 0 ? 0 : bad(why, "malformed null");
    case '#': return len == 1 && (line[0] == 't' || line[0] == 'f') ? 0 : bad(why, "malformed boolean");
    case ',': return parse_double(line, len, &d) ? 0 : bad(why, "malformed double");
    case '(': return is_digits(line, len) ? 0 : bad(why, "malformed big number");
    default: return 0;          /* + and -: any text */
  }
}

/* One element from st->pos: a complete one (st->pos moves past it, *open
** = 0), the header of an aggregate (*open = its element count > 0), or
** MORE / BAD. *attr: it is an attribute. */
static int scan_element(const char *p, size_t n, luaio_resp_state *st, uint64_t max_bulk, int64_t *open,
                        int *attr, size_t *need, const char **why) {
  char t = p[st->pos];
  if (!known_type(t)) return bad(why, "unknown reply type byte");
  size_t cr;
  int r = find_line(p, n, st, &cr, why);
  if (r != LUAIO_RESP_DONE) return r;
  const char *line = p + st->pos + 1;
  size_t len = cr - st->pos - 1, next = cr + 2;
  *open = 0;
  *attr = t == '|';
  if (t == '$' || t == '!' || t == '=') r = scan_bulk(p, n, t, line, len, max_bulk, &next, need, why);
  else if (strchr("*~>%|", t)) r = scan_aggregate(t, line, len, open, why);
  else r = scan_scalar(t, line, len, why);
  if (r == LUAIO_RESP_MORE) st->line_from = cr;   /* the header stays parsed up to its CR */
  if (r != LUAIO_RESP_DONE) return r;
  if (*open < 0) *open = 0;
  st->pos = next;
  st->line_from = 0;
  return LUAIO_RESP_DONE;
}

int luaio_resp_scan(const char *p, size_t n, luaio_resp_state *st, uint64_t max_bulk,
                    size_t *need, const char **why) {
  *need = 0;
  for (;;) {
    if (st->pos >= n) return LUAIO_RESP_MORE;
    int64_t open;
    int attr;
    int r = scan_element(p, n, st, max_bulk, &open, &attr, need, why);
    if (r != LUAIO_RESP_DONE) return r;
    if (open > 0) {
      if (st->depth == LUAIO_RESP_MAX_DEPTH) return bad(why, "aggregates nested deeper than 64");
      st->left[st->depth] = open;
      st->attr[st->depth++] = (unsigned char)attr;
      continue;
    }
    if (attr) continue;          /* an empty attribute: the element it annotates follows */
    /* an element is complete: so are the aggregates it was the last one of */
    for (;;) {
      if (st->depth == 0) return LUAIO_RESP_DONE;
      if (--st->left[st->depth - 1] > 0) break;
      if (st->attr[--st->depth]) break;   /* an attribute is not an element of its parent */
    }
  }
}

/* ---- the decode (of a reply the scan found whole and well formed) -------- */

typedef struct { const char *p; size_t pos, len; } cursor;

static void push_redis_error(lua_State *L, const char *msg, size_t len) {
  lua_pushlstring(L, msg, len);
  size_t word = 0;
  while (word < len && ((msg[word] >= 'A' && msg[word] <= 'Z') || msg[word] == '_')) word++;
  luaio_push_error(L, "RedisError", NULL, "%s", lua_tostring(L, -1));
  if (word > 0 && (word == len || msg[word] == ' ')) {
    lua_pushlstring(L, msg, word);
    lua_setfield(L, -2, "code");
  }
  lua_remove(L, -2);
}

static int decode(lua_State *L, cursor *c);

static void decode_array(lua_State *L, cursor *c, int64_t n) {
  lua_createtable(L, (int)n, 0);
  for (int64_t i = 1; i <= n; i++) {
    decode(L, c);
    lua_rawseti(L, -2, i);
  }
}

static void decode_map(lua_State *L, cursor *c, int64_t n) {
  lua_createtable(L, 0, (int)n);
  for (int64_t i = 0; i < n; i++) {
    decode(L, c);
    decode(L, c);
    int key = lua_gettop(L) - 1;
    lua_Number k = lua_type(L, key) == LUA_TNUMBER ? lua_tonumber(L, key) : 0;
    if (lua_isnil(L, key) || k != k) lua_pop(L, 2);    /* nil or NaN: not a key */
    else lua_rawset(L, -3);
  }
}

/* push the element at c->pos and move past it: 0 a value, 1 an error, 2 a push */
static int decode(lua_State *L, cursor *c) {
  luaL_checkstack(L, 6, "Redis reply nested too deep");
  const char *p = c->p;
  char t = p[c->pos];
  size_t cr = (size_t)((const char *)memchr(p + c->pos + 1, '\r', c->len - c->pos - 1) - p);
  const char *line = p + c->pos + 1;
  size_t len = cr - c->pos - 1;
  int64_t n = 0;
  double d = 0;
  c->pos = cr + 2;
  switch (t) {
    case '+': case '(': lua_pushlstring(L, line, len); return 0;
    case '-': push_redis_error(L, line, len); return 1;
    case ':': parse_int(line, len, &n); lua_pushinteger(L, (lua_Integer)n); return 0;
    case '_': lua_pushnil(L); return 0;
    case '#': lua_pushboolean(L, line[0] == 't'); return 0;
    case ',': parse_double(line, len, &d); lua_pushnumber(L, (lua_Number)d); return 0;
    case '$': case '!': case '=': {
      parse_int(line, len, &n);
      if (n < 0) { lua_pushnil(L); return 0; }
      size_t skip = t == '=' ? 4 : 0;      /* "txt:" */
      if (t == '!') push_redis_error(L, p + c->pos, (size_t)n);
      else lua_pushlstring(L, p + c->pos + skip, (size_t)n - skip);
      c->pos += (size_t)n + 2;
      return t == '!';
    }
    case '%': parse_int(line, len, &n); decode_map(L, c, n); return 0;
    case '|':                                /* an attribute: read, dropped */
      parse_int(line, len, &n);
      decode_map(L, c, n);
      lua_pop(L, 1);
      return decode(L, c);
    default:                                 /* * ~ > */
      parse_int(line, len, &n);
      if (n < 0) { lua_pushnil(L); return 0; }
      decode_array(L, c, n);
      return t == '>' ? 2 : 0;
  }
}

int luaio_resp_push(lua_State *L, const char *p, size_t len) {
  cursor c = {p, 0, len};
  return decode(L, &c);
}

/* ---- the read ------------------------------------------------------------ */

int luaio_resp_read(lua_State *L, luaio_readbuf *b, luaio_resp_state *st, uint64_t max_bulk,
                    size_t *need) {
  const char *why = NULL;
  const char *p = luaio_rb_data(b);
  int r = luaio_resp_scan(p, b->len, st, max_bulk, need, &why);
  if (r == LUAIO_RESP_BAD) {
    luaio_rb_consume(b, b->len);             /* nothing after it can be trusted */
    return luaio_error(L, "ProtocolError", NULL, "bad Redis reply: %s", why);
  }
  if (r == LUAIO_RESP_DONE) {
    size_t total = st->pos;
    int kind = luaio_resp_push(L, p, total);
    luaio_rb_consume(b, total);
    luaio_resp_scan_init(st);
    if (kind == 0) return 1;
    lua_pushstring(L, kind == 1 ? "error" : "push");
    return 2;
  }
  if (!b->eof && !b->err) return RB_WAIT;
  if (b->err) return RB_FAIL;
  if (b->len == 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "eof");
    return 2;
  }
  luaio_rb_consume(b, b->len);
  return luaio_error(L, "ConnectionError", "ECONNRESET", "connection closed inside a Redis reply");
}

/* ---- commands ------------------------------------------------------------- */

/* one argument as Redis reads it: integers in decimal, floats with 17
** digits (enough to come back the same), strings as they are */
static const char *arg_bytes(lua_State *L, int i, char *num, size_t *len) {
  if (lua_type(L, i) == LUA_TSTRING) return lua_tolstring(L, i, len);
  if (lua_isinteger(L, i)) {
    *len = (size_t)snprintf(num, 64, LUA_INTEGER_FMT, lua_tointeger(L, i));
  } else {
    lua_Number x = lua_tonumber(L, i);
    if (x != x) return NULL;
    if (x == (lua_Number)HUGE_VAL || x == -(lua_Number)HUGE_VAL) *len = (size_t)snprintf(num, 64, "%sinf", x < 0 ? "-" : "");
    else *len = (size_t)snprintf(num, 64, "%.17g", (double)x);
  }
  return num;
}

/* resp_command(arg, ...) -> the command in RESP (an array of bulk
** strings) | nil, index, what: argument `index` is not a string or number
** (what: its type name, or "NaN") */
static int l_resp_command(lua_State *L) {
  int n = lua_gettop(L);
  if (n == 0) return luaio_argerror(L, 1, "a command name expected");
  for (int i = 1; i <= n; i++) {
    int t = lua_type(L, i);
    if ((t != LUA_TSTRING && t != LUA_TNUMBER) || (t == LUA_TNUMBER && lua_tonumber(L, i) != lua_tonumber(L, i))) {
      const char *what = t == LUA_TNUMBER ? "NaN" : luaL_typename(L, i);
      lua_pushnil(L);
      lua_pushinteger(L, i);
      lua_pushstring(L, what);
      return 3;
    }
  }
  luaL_Buffer B;
  luaL_buffinit(L, &B);
  char head[32], num[64];
  luaL_addlstring(&B, head, (size_t)snprintf(head, sizeof head, "*%d\r\n", n));
  for (int i = 1; i <= n; i++) {
    size_t len;
    const char *s = arg_bytes(L, i, num, &len);
    luaL_addlstring(&B, head, (size_t)snprintf(head, sizeof head, "$%zu\r\n", len));
    luaL_addlstring(&B, s, len);
    luaL_addlstring(&B, "\r\n", 2);
  }
  luaL_pushresult(&B);
  return 1;
}

void luaio_open_resp(lua_State *L, luaio_host *h) {
  (void)h;
  lua_pushcfunction(L, l_resp_command);
  lua_setfield(L, -2, "resp_command");
}
