/*
** zlib.c — streaming compression for the HTTP layer (gzip responses;
** gzip/deflate bodies) and WebSocket permessage-deflate (RFC 7692).
**
**   core.deflater(format [, level [, window_bits [, mem_level]]]) -> Deflater
**     d:write(data [, flush]) -> the compressed bytes produced so far ("" is
**       common: zlib holds input back until it has a block's worth);
**       flush "none" (default) | "sync" | "full" | "finish". A sync flush
**       with nothing new since the last one returns "" (as Python's zlib).
**     d:finish() = d:write("", "finish"); after it write raises until reset
**     d:reset()  a new stream with the same settings (RFC 7692's
**                no_context_takeover: reset after each message)
**   core.inflater(format [, max_output [, window_bits]]) -> Inflater
**     i:write(data [, max]) -> the decompressed bytes; `max` bounds this
**       call's output (a WebSocket message's share of its limit), max_output
**       the object's whole life (reset() does not give it back)
**     i:finished() -> the end of the compressed stream was seen
**     i:trailing() -> bytes after the end that were ignored
**     i:total()    -> bytes output so far, over the object's life
**     i:reset()    a new stream (the output count stays)
**   both: close() (idempotent), __close, __gc; any method but close on a
**   closed object raises InvalidStateError "the deflater is closed".
**
** Formats: "gzip" (RFC 1952), "zlib" (RFC 1950), "raw" (RFC 1951: what
** WebSocket and many "deflate" servers send), and for inflaters "auto" (gzip
** or zlib, by the header). An inflater in gzip form (also "auto" that saw
** gzip) reads concatenated members as `gzip -d` does; bytes after the end
** that do not start a member (and anything after a zlib or raw stream) are
** ignored and counted by trailing(), as urllib3 does for HTTP bodies.
**
** window_bits is 8..15 (default 15). zlib refuses 8 for raw and gzip
** deflate (and writes 9 in a zlib header for it), so 8 means 9, as in most
** implementations. Inflaters take 8 as 9 too: a larger window reads all a
** smaller one wrote. A WebSocket peer that demands server_max_window_bits=8
** must therefore be declined, not answered with 8.
**
** Errors: corrupt data raises ProtocolError naming zlib's reason; output
** past a limit raises ProtocolError {limit = true} "decompressed data
** exceeds N bytes", as soon as the limit is passed — a call never makes more
** than limit + 1 bytes, so a gzip bomb costs what the limit allows, not what
** it expands to. A call that raised half-way (those errors, out of memory)
** has lost output, so the object refuses further writes until reset().
**
** Output goes through a small scratch buffer on the C stack into a
** luaL_Buffer: nothing is allocated beyond the result string.
*/
#include <limits.h>
#include <string.h>
#include <zlib.h>
#include "luaio_int.h"

#define DEFLATER_MT "luaio.Deflater"
#define INFLATER_MT "luaio.Inflater"

/* Output produced per zlib call, on the C stack: small enough for any
** stack, large enough that the per-call overhead is lost in zlib's work. */
#define CHUNK 16384

enum { FMT_GZIP, FMT_ZLIB, FMT_RAW, FMT_AUTO };
static const char *const format_names[] = {"gzip", "zlib", "raw", "auto", NULL};

static const char *const flush_names[] = {"none", "sync", "full", "finish", NULL};
static const int flush_modes[] = {Z_NO_FLUSH, Z_SYNC_FLUSH, Z_FULL_FLUSH, Z_FINISH};

/* z_stream lives inside the userdata: zlib keeps a pointer back to it,
** which is safe because Lua never moves a userdata. */
typedef struct {
  z_stream z;
  uint8_t open;       /* z holds zlib's state (until close or __gc) */
  uint8_t broken;     /* a write raised half-way: output was lost */
  uint8_t finished;   /* Z_FINISH was given: the stream is complete */
  uint8_t format;
} deflater;

typedef struct {
  z_stream z;
  lua_Integer limit;     /* max_output, or -1: none */
  lua_Integer total;     /* bytes output over the object's life */
  lua_Integer trailing;  /* bytes ignored after the end */
  uint8_t open, broken;
  uint8_t ended;         /* Z_STREAM_END seen, no new member since */
  uint8_t format;
  uint8_t members;       /* a new gzip member may follow the end */
  uint8_t sniffed;       /* "auto": the stream's first byte was looked at */
} inflater;

/* ---- arguments shared by both constructors ----------------------------- */

/* window_bits at arg: 8..15, default 15; 8 is taken as 9 (see the top). */
static int check_window_bits(lua_State *L, int arg) {
  lua_Integer w = luaio_optinteger(L, arg, 15);
  if (w < 8 || w > 15) luaio_argerror(L, arg, "window bits must be within 8..15");
  return w == 8 ? 9 : (int)w;
}

/* The windowBits zlib's init functions take for `format` with window w. */
static int zlib_window_bits(int format, int w) {
  switch (format) {
    case FMT_GZIP: return w + 16;
    case FMT_RAW: return -w;
    case FMT_AUTO: return w + 32;
    default: return w;
  }
}

/* An init or reset failure: only memory can run out with valid settings. */
static int init_failed(lua_State *L, int rc) {
  if (rc == Z_MEM_ERROR) return luaL_error(L, "out of memory");
  return luaL_error(L, "zlib initialisation failed (%d)", rc);
}

/* Unusable object: closed (for every method) or broken (for write). */
static int state_error(lua_State *L, const char *what, int closed) {
  if (closed) return luaio_error(L, "InvalidStateError", NULL, "the %s is closed", what);
  return luaio_error(L, "InvalidStateError", NULL,
                     "the %s failed during an earlier call; reset() it to start a new stream", what);
}

/* ---- Deflater ----------------------------------------------------------- */

static deflater *check_deflater(lua_State *L) {
  deflater *d = luaio_checkudata(L, 1, DEFLATER_MT);
  if (!d->open) state_error(L, "deflater", 1);
  return d;
}

/* deflater(format [, level [, window_bits [, mem_level]]]) -> Deflater */
static int l_deflater(lua_State *L) {
  int format = luaio_checkoption(L, 1, NULL, format_names);
  if (format == FMT_AUTO) luaio_argerror(L, 1, "a deflater needs gzip, zlib or raw");
  lua_Integer level = luaio_optinteger(L, 2, Z_DEFAULT_COMPRESSION);
  if (level < -1 || level > 9) luaio_argerror(L, 2, "level must be within 0..9 (or -1: the default)");
  int w = check_window_bits(L, 3);
  lua_Integer mem = luaio_optinteger(L, 4, 8);
  if (mem < 1 || mem > 9) luaio_argerror(L, 4, "memory level must be within 1..9");
  deflater *d = lua_newuserdatauv(L, sizeof *d, 0);
  memset(d, 0, sizeof *d);
  d->format = (uint8_t)format;
  /* the metatable first: if init raises, __gc sees open == 0 */
  luaL_setmetatable(L, DEFLATER_MT);
  int rc = deflateInit2(&d->z, (int)level, Z_DEFLATED, zlib_window_bits(format, w), (int)mem,
                        Z_DEFAULT_STRATEGY);
  if (rc != Z_OK) return init_failed(L, rc);
  d->open = 1;
  return 1;
}

/* Compress len bytes at data with `flush`; pushes the output. */
static int deflate_push(lua_State *L, deflater *d, const char *data, size_t len, int flush) {
  unsigned char out[CHUNK];
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  d->broken = 1;                         /* until this call returns normally */
  d->z.avail_in = 0;                     /* a call that raised may have left input behind */
  size_t left = len;
  int rc;
  for (;;) {
    if (d->z.avail_in == 0 && left > 0) {   /* avail_in is a uInt: feed 4 GiB at most at a time */
      uInt n = left > UINT_MAX ? UINT_MAX : (uInt)left;
      d->z.next_in = (Bytef *)(data + (len - left));   /* zlib does not write input; not const-typed */
      d->z.avail_in = n;
      left -= n;
    }
    d->z.next_out = out;
    d->z.avail_out = CHUNK;
    rc = deflate(&d->z, left > 0 ? Z_NO_FLUSH : flush);
    if (rc == Z_STREAM_ERROR) return luaL_error(L, "zlib deflate failed: %s", d->z.msg ? d->z.msg : "?");
    luaL_addlstring(&b, (const char *)out, CHUNK - d->z.avail_out);
    if (rc == Z_STREAM_END) break;
    /* done when zlib had room to spare and nothing is left to feed (zlib's
    ** rule for every flush mode) */
    if (d->z.avail_out != 0 && d->z.avail_in == 0 && left == 0) break;
  }
  d->z.next_in = NULL;                   /* do not keep pointing into a string Lua may free */
  d->z.next_out = NULL;
  if (flush == Z_FINISH) d->finished = 1;
  d->broken = 0;
  luaL_pushresult(&b);
  return 1;
}

static deflater *check_writable(lua_State *L) {
  deflater *d = check_deflater(L);
  if (d->broken) state_error(L, "deflater", 0);
  if (d->finished)
    luaio_error(L, "InvalidStateError", NULL, "the deflater is finished; reset() it to start a new stream");
  return d;
}

/* d:write(data [, flush]) -> compressed bytes */
static int d_write(lua_State *L) {
  deflater *d = check_writable(L);
  size_t len;
  const char *data = luaio_checklstring(L, 2, &len);
  int flush = flush_modes[luaio_checkoption(L, 3, "none", flush_names)];
  return deflate_push(L, d, data, len, flush);
}

/* d:finish() -> the rest of the stream */
static int d_finish(lua_State *L) {
  return deflate_push(L, check_writable(L), "", 0, Z_FINISH);
}

static int d_reset(lua_State *L) {
  deflater *d = check_deflater(L);
  int rc = deflateReset(&d->z);
  if (rc != Z_OK) return init_failed(L, rc);
  d->finished = d->broken = 0;
  return 0;
}

/* close, __close and __gc: free zlib's state (about 256 KiB at the
** defaults, unseen by Lua's collector: close early) */
static int d_close(lua_State *L) {
  deflater *d = luaio_checkudata(L, 1, DEFLATER_MT);
  if (d->open) {
    d->open = 0;
    deflateEnd(&d->z);
  }
  return 0;
}

static int d_tostring(lua_State *L) {
  deflater *d = luaio_checkudata(L, 1, DEFLATER_MT);
  lua_pushfstring(L, "Deflater<%s%s>", format_names[d->format], d->open ? "" : ", closed");
  return 1;
}

/* ---- Inflater ----------------------------------------------------------- */

static inflater *check_inflater(lua_State *L) {
  inflater *in = luaio_checkudata(L, 1, INFLATER_MT);
  if (!in->open) state_error(L, "inflater", 1);
  return in;
}

/* State for a new stream; the output count and limit are the object's. */
static void inflater_restart(inflater *in) {
  in->ended = in->broken = in->sniffed = 0;
  in->trailing = 0;
  in->members = in->format == FMT_GZIP;
}

/* inflater(format [, max_output [, window_bits]]) -> Inflater */
static int l_inflater(lua_State *L) {
  int format = luaio_checkoption(L, 1, NULL, format_names);
  lua_Integer limit = luaio_optinteger(L, 2, -1);
  if (!lua_isnoneornil(L, 2) && limit < 0) luaio_argerror(L, 2, "max_output must be >= 0 (or nil: no limit)");
  int w = check_window_bits(L, 3);
  inflater *in = lua_newuserdatauv(L, sizeof *in, 0);
  memset(in, 0, sizeof *in);
  in->format = (uint8_t)format;
  in->limit = limit;
  inflater_restart(in);
  luaL_setmetatable(L, INFLATER_MT);
  int rc = inflateInit2(&in->z, zlib_window_bits(format, w));
  if (rc != Z_OK) return init_failed(L, rc);
  in->open = 1;
  return 1;
}

static int limit_error(lua_State *L, lua_Integer limit) {
  luaio_push_error(L, "ProtocolError", NULL, "decompressed data exceeds %I bytes", limit);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "limit");
  return lua_error(L);
}

static int inflate_error(lua_State *L, inflater *in, int rc) {
  switch (rc) {
    case Z_DATA_ERROR:
      return luaio_error(L, "ProtocolError", NULL, "corrupt compressed data: %s",
                         in->z.msg ? in->z.msg : "invalid data");
    case Z_NEED_DICT:
      return luaio_error(L, "ProtocolError", NULL, "compressed data needs a preset dictionary");
    case Z_MEM_ERROR: return luaL_error(L, "out of memory");
    default: return luaL_error(L, "zlib inflate failed (%d)", rc);
  }
}

/* After Z_STREAM_END with `rest` bytes of input left at next: start the
** next gzip member (1f 8b...), or count the rest as trailing and drop it.
** Returns 1 when inflating goes on. */
static int after_end(inflater *in, const unsigned char *next, size_t rest) {
  if (in->members && *next == 0x1f) {
    inflateReset(&in->z);                  /* cannot fail on a valid stream */
    in->ended = 0;
    return 1;
  }
  in->trailing += (lua_Integer)rest;
  return 0;
}

/* i:write(data [, max]) -> decompressed bytes */
static int i_write(lua_State *L) {
  inflater *in = check_inflater(L);
  if (in->broken) state_error(L, "inflater", 0);
  size_t len;
  const char *data = luaio_checklstring(L, 2, &len);
  lua_Integer cap = luaio_optinteger(L, 3, -1);
  if (!lua_isnoneornil(L, 3) && cap < 0) luaio_argerror(L, 3, "max must be >= 0 (or nil: no limit)");
  /* budget: the most this call may output; `named` is the limit to report */
  lua_Integer budget = -1, named = -1;
  if (in->limit >= 0) budget = in->limit - in->total, named = in->limit;
  if (cap >= 0 && (budget < 0 || cap < budget)) budget = cap, named = cap;

  unsigned char out[CHUNK];
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  in->broken = 1;                          /* until this call returns normally */
  in->z.avail_in = 0;                      /* a call that raised left its input (freed since) behind */
  lua_Integer produced = 0;
  size_t left = len;
  for (;;) {
    if (in->z.avail_in == 0 && left > 0) {   /* avail_in is a uInt: feed 4 GiB at most at a time */
      uInt n = left > UINT_MAX ? UINT_MAX : (uInt)left;
      in->z.next_in = (Bytef *)(data + (len - left));
      in->z.avail_in = n;
      left -= n;
    }
    size_t rest = in->z.avail_in + left;
    if (rest == 0) break;
    if (in->ended && !after_end(in, in->z.next_in, rest)) break;
    if (!in->sniffed) {                    /* "auto" reads concatenated members only for gzip */
      in->sniffed = 1;
      if (in->format == FMT_AUTO) in->members = in->z.next_in[0] == 0x1f;
    }
    /* room for at most one byte past the budget: enough to see it passed */
    size_t room = CHUNK;
    if (budget >= 0 && (lua_Unsigned)(budget - produced) < CHUNK) room = (size_t)(budget - produced) + 1;
    in->z.next_out = out;
    in->z.avail_out = (uInt)room;
    int rc = inflate(&in->z, Z_NO_FLUSH);
    size_t n = room - in->z.avail_out;
    produced += (lua_Integer)n;
    in->total += (lua_Integer)n;
    if (budget >= 0 && produced > budget) return limit_error(L, named);
    luaL_addlstring(&b, (const char *)out, n);
    if (rc == Z_STREAM_END) in->ended = 1;            /* the loop top looks at what follows */
    else if (rc == Z_BUF_ERROR) break;                /* no progress: more input is needed */
    else if (rc != Z_OK) return inflate_error(L, in, rc);
    else if (in->z.avail_in == 0 && left == 0 && in->z.avail_out != 0) break;   /* all taken in and out */
  }
  in->z.next_in = NULL;                    /* do not keep pointing into a string Lua may free */
  in->z.avail_in = 0;
  in->z.next_out = NULL;
  in->broken = 0;
  luaL_pushresult(&b);
  return 1;
}

static int i_finished(lua_State *L) {
  lua_pushboolean(L, check_inflater(L)->ended);
  return 1;
}

static int i_trailing(lua_State *L) {
  lua_pushinteger(L, check_inflater(L)->trailing);
  return 1;
}

static int i_total(lua_State *L) {
  lua_pushinteger(L, check_inflater(L)->total);
  return 1;
}

static int i_reset(lua_State *L) {
  inflater *in = check_inflater(L);
  int rc = inflateReset(&in->z);
  if (rc != Z_OK) return init_failed(L, rc);
  inflater_restart(in);
  return 0;
}

/* close, __close and __gc */
static int i_close(lua_State *L) {
  inflater *in = luaio_checkudata(L, 1, INFLATER_MT);
  if (in->open) {
    in->open = 0;
    inflateEnd(&in->z);
  }
  return 0;
}

static int i_tostring(lua_State *L) {
  inflater *in = luaio_checkudata(L, 1, INFLATER_MT);
  lua_pushfstring(L, "Inflater<%s%s>", format_names[in->format], in->open ? "" : ", closed");
  return 1;
}

/* ---- registration -------------------------------------------------------- */

/* The metatable `name` (luaL_newmetatable sets __name) with its methods. */
static void new_type(lua_State *L, const char *name, const luaL_Reg *methods,
                     lua_CFunction close, lua_CFunction tostring) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

void luaio_open_zlib(lua_State *L, luaio_host *h) {
  (void)h;
  static const luaL_Reg dmethods[] = {
    {"write", d_write}, {"finish", d_finish}, {"reset", d_reset}, {"close", d_close}, {NULL, NULL}};
  static const luaL_Reg imethods[] = {
    {"write", i_write}, {"finished", i_finished}, {"trailing", i_trailing}, {"total", i_total},
    {"reset", i_reset}, {"close", i_close}, {NULL, NULL}};
  new_type(L, DEFLATER_MT, dmethods, d_close, d_tostring);
  new_type(L, INFLATER_MT, imethods, i_close, i_tostring);
  lua_pushcfunction(L, l_deflater);
  lua_setfield(L, -2, "deflater");
  lua_pushcfunction(L, l_inflater);
  lua_setfield(L, -2, "inflater");
}
