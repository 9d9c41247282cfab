/*
** http_parse.c — HTTP/1.1 request and response heads, strictly.
**
** The head arrives whole (the stream reads up to the blank line, natively,
** within a byte limit); this file validates and splits it in one pass and
** hands Lua a table. Anything a lenient parser would have to guess about
** (bare CR, folded lines, conflicting lengths, two Hosts) is refused, since
** such guesses are what request smuggling is made of.
*/
#include <stdint.h>
#include <string.h>
#include "http_parse.h"

#define MAX_HEADERS 100
#define MAX_LINE 8192

/* RFC 9110 tchar: ALPHA, DIGIT and !#$%&'*+-.^_`|~ (every byte of every
** name is tested: one load each) */
static const unsigned char tchars[256] = {
  ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
  ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
  ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1};

static int is_tchar(unsigned char c) { return tchars[c]; }

typedef struct {
  const char *p, *end;
  int status;            /* status to answer on failure */
  const char *why;
} cursor;

static int fail(cursor *c, int status, const char *why) {
  c->status = status;
  c->why = why;
  return 0;
}

/* 0 when the 8 bytes at p are all printable ASCII (0x20-0x7e), else a mask
** whose top bits mark the bytes that are not: below 0x20 a borrow reaches
** the top bit, above 0x7e adding 1 does or it is set already. Borrows and
** carries only travel upwards from a marked byte, so the lowest mark is
** exact. A browser's head is mostly such runs. */
static uint64_t unprintable8(const char *p) {
  const uint64_t ones = 0x0101010101010101u, tops = 0x8080808080808080u;
  uint64_t x;
  memcpy(&x, p, 8);
  return (((x - 0x20 * ones) & ~x) | (x + ones) | x) & tops;
}

/* Next line without its CRLF; rejects bare CR, lone LF and NUL. *ctl: the
** line holds another control character than HTAB, or DEL (a header
** value's check looks only then). */
static int next_line(cursor *c, const char **line, size_t *len, int *ctl) {
  const char *start = c->p;
  *ctl = 0;
  for (const char *q = start; q < c->end; q++) {
    while (c->end - q >= 8) {
      uint64_t marks = unprintable8(q);
      if (!marks) { q += 8; continue; }
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      q += __builtin_ctzll(marks) >> 3;       /* the first byte that is not printable */
#endif
      break;
    }
    if (q == c->end) break;
    unsigned char ch = (unsigned char)*q;
    if ((unsigned char)(ch - 0x20) < 0x5f) continue;     /* printable ASCII (most bytes): one test */
    if (ch == '\r') {
      if (q + 1 >= c->end || q[1] != '\n') return fail(c, 400, "bare CR in head");
      *line = start;
      *len = (size_t)(q - start);
      if (*len > MAX_LINE) return fail(c, 431, "head line too long");
      c->p = q + 2;
      return 1;
    }
    if (ch == '\n') return fail(c, 400, "line ending without CR");
    if (ch == '\0') return fail(c, 400, "NUL byte in head");
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f) *ctl = 1;
  }
  return fail(c, 400, "head not terminated by CRLF");
}

static int parse_version(const char *v, size_t len, int *minor) {
  if (len != 8 || memcmp(v, "HTTP/1.", 7) != 0) return 0;
  if (v[7] != '0' && v[7] != '1') return 0;
  *minor = v[7] - '0';
  return 1;
}

/* Parse a decimal Content-Length: digits only, at most 2^53. */
static int parse_length(const char *v, size_t len, lua_Integer *out) {
  if (len == 0 || len > 16) return 0;
  lua_Integer n = 0;
  for (size_t i = 0; i < len; i++) {
    if (v[i] < '0' || v[i] > '9') return 0;
    n = n * 10 + (v[i] - '0');
  }
  if (n > ((lua_Integer)1 << 53)) return 0;
  *out = n;
  return 1;
}

static void lower_into(char *dst, const char *src, size_t len) {
  for (size_t i = 0; i < len; i++) {
    char ch = src[i];
    dst[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
  }
}

static int ci_equal(const char *a, size_t alen, const char *b) {
  size_t blen = strlen(b);
  if (alen != blen) return 0;
  for (size_t i = 0; i < alen; i++) {
    char x = a[i];
    if (x >= 'A' && x <= 'Z') x = (char)(x + 32);
    if (x != b[i]) return 0;
  }
  return 1;
}

/* Headers into the table at idx: lowercased names, repeated ones joined
** with ", " (Set-Cookie-like lists stay readable); plus the facts the
** framing depends on. */
/* what the head's fields say about the message */
typedef struct {
  int hosts, has_length, chunked, has_te, conn_close, conn_keep, expect_continue;
  lua_Integer length;
} head_facts;

/* Connection: a list of tokens */
static void note_connection(head_facts *f, const char *v, const char *vend) {
  for (const char *q = v; q < vend;) {
    const char *tok = q;
    while (q < vend && *q != ',') q++;
    const char *tend = q;
    while (tok < tend && (*tok == ' ' || *tok == '\t')) tok++;
    while (tend > tok && (tend[-1] == ' ' || tend[-1] == '\t')) tend--;
    if (ci_equal(tok, (size_t)(tend - tok), "close")) f->conn_close = 1;
    else if (ci_equal(tok, (size_t)(tend - tok), "keep-alive")) f->conn_keep = 1;
    if (q < vend) q++;
  }
}

/* The fields that frame or steer the message (name as sent, n long: only
** a name as long as one of these is compared); 0 after fail(). */
static int note_field(cursor *c, head_facts *f, const char *name, size_t n, const char *v,
                      const char *vend, int is_request) {
  size_t vlen = (size_t)(vend - v);
  if (ci_equal(name, n, "host")) f->hosts++;
  else if (ci_equal(name, n, "content-length")) {
    lua_Integer l;
    if (!parse_length(v, vlen, &l)) return fail(c, 400, "invalid Content-Length");
    if (f->has_length && l != f->length) return fail(c, 400, "conflicting Content-Length fields");
    f->has_length = 1;
    f->length = l;
  } else if (ci_equal(name, n, "transfer-encoding")) {
    f->has_te = 1;
    /* only "chunked", as the last coding, is understood */
    const char *last = v;
    for (const char *q = v; q < vend; q++) if (*q == ',') last = q + 1;
    while (last < vend && (*last == ' ' || *last == '\t')) last++;
    if (!ci_equal(last, (size_t)(vend - last), "chunked") || last != v)
      return fail(c, is_request ? 501 : 400, "unsupported Transfer-Encoding");
    f->chunked = 1;
  } else if (ci_equal(name, n, "connection")) {
    note_connection(f, v, vend);
  } else if (ci_equal(name, n, "expect")) {
    if (ci_equal(v, vlen, "100-continue")) f->expect_continue = 1;
  }
  return 1;
}

/* head.repeated[name] = every value of a repeated field, in order
** (Set-Cookie cannot be joined); the stack: ... old -> ... old */
static void note_repeat(lua_State *L, int tidx, const char *name, size_t n, const char *v, size_t vlen) {
  if (lua_getfield(L, tidx, "repeated") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, tidx, "repeated");
  }
  lua_pushlstring(L, name, n);
  if (lua_rawget(L, -2) != LUA_TTABLE) {       /* the second value: the list starts */
    lua_pop(L, 1);
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, -3);                      /* old */
    lua_rawseti(L, -2, 1);
    lua_pushlstring(L, name, n);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  lua_pushlstring(L, v, vlen);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 2);
}

/* headers[name] = value; a repeated field joins with ", " (and is kept
** whole in head.repeated) */
static void set_field(lua_State *L, int tidx, int hidx, const char *name, size_t n, const char *v, size_t vlen) {
  lua_pushlstring(L, name, n);
  lua_pushvalue(L, -1);
  if (lua_rawget(L, hidx) == LUA_TSTRING) {
    note_repeat(L, tidx, name, n, v, vlen);
    lua_pushliteral(L, ", ");
    lua_pushlstring(L, v, vlen);
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
    lua_pushlstring(L, v, vlen);
  }
  lua_rawset(L, hidx);
}

/* what the facts forbid together; 0 after fail() */
static int check_facts(cursor *c, const head_facts *f, int is_request, int minor) {
  if (is_request && minor == 1 && f->hosts == 0) return fail(c, 400, "missing Host header");
  if (f->hosts > 1) return fail(c, 400, "more than one Host header");
  if (f->has_te && f->has_length) return fail(c, 400, "both Content-Length and Transfer-Encoding");
  return 1;
}

/* HTTP/1.1 keeps the connection unless told to close; 1.0 only when asked */
static int keeps_alive(const head_facts *f, int minor) {
  return minor == 1 ? !f->conn_close : (f->conn_keep && !f->conn_close);
}

/* the headers table (at -1) and the facts into the head table at tidx */
static void set_facts(lua_State *L, const head_facts *f, int tidx, int minor) {
  lua_setfield(L, tidx, "headers");
  if (f->has_length) { lua_pushinteger(L, f->length); lua_setfield(L, tidx, "content_length"); }
  lua_pushboolean(L, f->chunked);
  lua_setfield(L, tidx, "chunked");
  lua_pushboolean(L, keeps_alive(f, minor));
  lua_setfield(L, tidx, "keep_alive");
  lua_pushboolean(L, f->expect_continue);
  lua_setfield(L, tidx, "expect_continue");
}

/* The fields up to the blank line, checked, their facts into f. With
** tidx, the headers table is pushed (and head.repeated set at tidx); with
** 0, they are only checked. 0 after fail(). */
static int parse_headers(lua_State *L, cursor *c, int tidx, int is_request, head_facts *f) {
  int count = 0, hidx = 0;
  char name[256];
  if (tidx) {
    /* sized for its fields at once (one per remaining line, the blank one
    ** aside): growing key by key would rehash at 1, 2, 4, 8... */
    int lines = 0;
    for (const char *q = c->p; (q = memchr(q, '\n', (size_t)(c->end - q))) != NULL; q++) lines++;
    lua_createtable(L, 0, lines > 1 ? (lines - 1 < MAX_HEADERS ? lines - 1 : MAX_HEADERS) : 0);   /* headers */
    hidx = lua_gettop(L);
  }
  for (;;) {
    const char *line;
    size_t len;
    int ctl;
    if (!next_line(c, &line, &len, &ctl)) return 0;
    if (len == 0) break;                     /* end of head */
    if (line[0] == ' ' || line[0] == '\t') return fail(c, 400, "obsolete line folding");
    if (++count > MAX_HEADERS) return fail(c, 431, "too many header fields");
    size_t n = 0;
    while (n < len && is_tchar((unsigned char)line[n])) n++;
    if (n == 0 || n >= len || line[n] != ':') return fail(c, 400, "malformed header field");
    if (n >= sizeof name) return fail(c, 431, "header name too long");
    const char *v = line + n + 1, *vend = line + len;
    while (v < vend && (*v == ' ' || *v == '\t')) v++;
    while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t')) vend--;
    for (const char *q = v; ctl && q < vend; q++) {
      unsigned char ch = (unsigned char)*q;
      if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return fail(c, 400, "control character in a header value");
    }
    if (!note_field(c, f, line, n, v, vend, is_request)) return 0;
    if (hidx) {
      lower_into(name, line, n);
      set_field(L, tidx, hidx, name, n, v, (size_t)(vend - v));
    }
  }
  return 1;
}

typedef struct {
  const char *method, *target, *version;
  size_t method_len, target_len;
  int minor;
} request_line;

static int scan_request_line(cursor *c, request_line *r) {
  const char *line;
  size_t len;
  int ctl;                        /* (not looked at: as before, only CR, LF and NUL matter here) */
  if (!next_line(c, &line, &len, &ctl)) return 0;
  const char *end = line + len, *p = line;
  while (p < end && is_tchar((unsigned char)*p)) p++;
  if (p == line || p >= end || *p != ' ') return fail(c, 400, "malformed request method");
  r->method = line;
  r->method_len = (size_t)(p - line);
  const char *target = ++p;
  while (p < end && *p != ' ') {
    unsigned char ch = (unsigned char)*p;
    if (ch <= 0x20 || ch == 0x7f) return fail(c, 400, "invalid character in the request target");
    p++;
  }
  if (p == target || p >= end) return fail(c, 400, "malformed request target");
  r->target = target;
  r->target_len = (size_t)(p - target);
  p++;
  if (!parse_version(p, (size_t)(end - p), &r->minor)) return fail(c, 400, "unsupported HTTP version");
  r->version = p;
  return 1;
}

static int parse_request_line(lua_State *L, cursor *c, int tidx, int *minor) {
  request_line r;
  if (!scan_request_line(c, &r)) return 0;
  lua_pushlstring(L, r.method, r.method_len);
  lua_setfield(L, tidx, "method");
  lua_pushlstring(L, r.target, r.target_len);
  lua_setfield(L, tidx, "target");
  lua_pushlstring(L, r.version, 8);
  lua_setfield(L, tidx, "version");
  *minor = r.minor;
  return 1;
}

static int parse_status_line(lua_State *L, cursor *c, int tidx, int *minor) {
  const char *line;
  size_t len;
  int ctl;                        /* (not looked at: as before, only CR, LF and NUL matter here) */
  if (!next_line(c, &line, &len, &ctl)) return 0;
  if (len < 12 || !parse_version(line, 8, minor) || line[8] != ' ') return fail(c, 400, "malformed status line");
  const char *d = line + 9;
  if (d[0] < '1' || d[0] > '5' || d[1] < '0' || d[1] > '9' || d[2] < '0' || d[2] > '9')
    return fail(c, 400, "malformed status code");
  if (len > 12 && line[12] != ' ') return fail(c, 400, "malformed status line");
  lua_pushinteger(L, (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0'));
  lua_setfield(L, tidx, "status");
  lua_pushlstring(L, line, 8);
  lua_setfield(L, tidx, "version");
  lua_pushlstring(L, len > 13 ? line + 13 : "", len > 13 ? len - 13 : 0);
  lua_setfield(L, tidx, "reason");
  return 1;
}

static int push_refusal(lua_State *L, const cursor *c) {
  lua_pushnil(L);
  lua_pushinteger(L, c->status);
  lua_pushstring(L, c->why);
  return 3;
}

/* http_parse_head(head, "request"|"response") -> table | nil, status, reason
** `head` is the whole head including its final CRLF CRLF. */
int luaio_http_push_head(lua_State *L, const char *head, size_t len, int is_request) {
  cursor c = {head, head + len, 0, NULL};
  head_facts f = {0};
  int minor = 1;
  lua_createtable(L, 0, 10);
  int tidx = lua_gettop(L);
  int ok = is_request ? parse_request_line(L, &c, tidx, &minor) : parse_status_line(L, &c, tidx, &minor);
  ok = ok && parse_headers(L, &c, tidx, is_request, &f) && check_facts(&c, &f, is_request, minor);
  if (!ok) return push_refusal(L, &c);
  set_facts(L, &f, tidx, minor);
  lua_settop(L, tidx);
  lua_pushinteger(L, (lua_Integer)(c.p - head));
  lua_setfield(L, tidx, "head_length");
  return 1;
}

/* the request's fields that every request sets, in upvalue order */
static const char *const request_keys[HTTP_REQUEST_KEYS] = {"method", "path", "_query", "_raw"};
enum { KEY_METHOD, KEY_PATH, KEY_QUERY, KEY_RAW };

void luaio_http_push_request_keys(lua_State *L) {
  for (int i = 0; i < HTTP_REQUEST_KEYS; i++) lua_pushstring(L, request_keys[i]);
}

/* table[name] = s[0 .. len), the table at -1 and name an upvalue */
static void set_string(lua_State *L, int name_upvalue, const char *s, size_t len) {
  lua_pushvalue(L, lua_upvalueindex(name_upvalue));
  lua_pushlstring(L, s, len);
  lua_rawset(L, -3);
}

/* path and query of an origin-form target (it starts with "/") into the
** table at -1, split as request.lua's split_target: the path ends at the
** first "?" or "#"; the query is what follows a "?" up to a "#", "" after a
** bare "#", absent without either */
static void set_path_query(lua_State *L, const char *target, size_t len, int key_upvalue) {
  const char *end = target + len, *stop = target;
  while (stop < end && *stop != '?' && *stop != '#') stop++;
  set_string(L, key_upvalue + KEY_PATH, target, (size_t)(stop - target));
  if (stop == end) return;
  const char *q = stop, *qend = stop;
  if (*stop == '?') {
    q = qend = stop + 1;
    while (qend < end && *qend != '#') qend++;
  }
  set_string(L, key_upvalue + KEY_QUERY, q, (size_t)(qend - q));
}

int luaio_http_push_request(lua_State *L, const char *head, size_t len, int mt_idx, int key_upvalue) {
  cursor c = {head, head + len, 0, NULL};
  head_facts f = {0};
  request_line r;
  if (!scan_request_line(&c, &r) || !parse_headers(L, &c, 0, 1, &f) || !check_facts(&c, &f, 1, r.minor))
    return push_refusal(L, &c);
  int has_body = f.chunked || (f.has_length && f.length > 0);
  /* room for what the server adds (_conn, body) and the lazy fields' first use */
  lua_createtable(L, 0, has_body ? 16 : 8);
  set_string(L, key_upvalue + KEY_METHOD, r.method, r.method_len);
  if (r.target[0] == '/') set_path_query(L, r.target, r.target_len, key_upvalue);
  set_string(L, key_upvalue + KEY_RAW, head, len);
  if (f.has_length) { lua_pushinteger(L, f.length); lua_setfield(L, -2, "content_length"); }
  if (f.chunked) { lua_pushboolean(L, 1); lua_setfield(L, -2, "chunked"); }
  if (f.expect_continue) { lua_pushboolean(L, 1); lua_setfield(L, -2, "expect_continue"); }
  if (lua_istable(L, mt_idx)) {
    lua_pushvalue(L, mt_idx);
    lua_setmetatable(L, -2);
  }
  lua_pushboolean(L, keeps_alive(&f, r.minor));
  lua_pushboolean(L, has_body);
  return 3;
}

static int l_parse_head(lua_State *L) {
  size_t len;
  const char *head = luaio_checklstring(L, 1, &len);
  const char *kind = luaio_checkstring(L, 2);
  int is_request = strcmp(kind, "request") == 0;
  if (!is_request && strcmp(kind, "response") != 0) return luaio_argerror(L, 2, "'request' or 'response' expected");
  return luaio_http_push_head(L, head, len, is_request);
}

/* http_chunk_size(line) -> size | nil, reason: hex digits, then optional
** ";extensions"; no sign, no overflow, no CR or LF (the line is what came
** before a CRLF). */
static int l_chunk_size(lua_State *L) {
  size_t len;
  const char *line = luaio_checklstring(L, 1, &len);
  lua_Integer n = 0;
  size_t i = 0;
  for (; i < len && luaio_http_hexval((unsigned char)line[i]) >= 0; i++) {
    if (i >= 13) { lua_pushnil(L); lua_pushliteral(L, "chunk size too large"); return 2; }
    n = n * 16 + luaio_http_hexval((unsigned char)line[i]);
  }
  if (i == 0) { lua_pushnil(L); lua_pushliteral(L, "invalid chunk size"); return 2; }
  while (i < len && (line[i] == ' ' || line[i] == '\t')) i++;
  if (i < len && line[i] != ';') { lua_pushnil(L); lua_pushliteral(L, "invalid chunk size"); return 2; }
  /* a bare CR or LF in the extensions: the line was not ended by CRLF (smuggling) */
  if (memchr(line + i, '\n', len - i) || memchr(line + i, '\r', len - i)) {
    lua_pushnil(L); lua_pushliteral(L, "bare CR or LF in a chunk line"); return 2;
  }
  lua_pushinteger(L, n);
  return 1;
}

/* http_unescape(s [, plus_is_space]) -> percent-decoded string */
static int l_unescape(lua_State *L) {
  size_t len;
  const char *s = luaio_checklstring(L, 1, &len);
  int plus = lua_toboolean(L, 2);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, len);
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    char ch = s[i];
    if (ch == '%' && i + 2 < len && luaio_http_hexval((unsigned char)s[i + 1]) >= 0 &&
        luaio_http_hexval((unsigned char)s[i + 2]) >= 0) {
      out[o++] = (char)(luaio_http_hexval((unsigned char)s[i + 1]) * 16 + luaio_http_hexval((unsigned char)s[i + 2]));
      i += 2;
    } else if (ch == '+' && plus) out[o++] = ' ';
    else out[o++] = ch;
  }
  luaL_pushresultsize(&b, o);
  return 1;
}

void luaio_open_http_parse(lua_State *L, luaio_host *h) {
  (void)h;
  lua_pushcfunction(L, l_parse_head);
  lua_setfield(L, -2, "http_parse_head");
  lua_pushcfunction(L, l_chunk_size);
  lua_setfield(L, -2, "http_chunk_size");
  lua_pushcfunction(L, l_unescape);
  lua_setfield(L, -2, "http_unescape");
}
