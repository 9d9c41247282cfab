/*
** http_respond.c — stream:_http_response, the HTTP server's answers: a whole
** response (status line, headers, ours, body) or a streamed one's head goes
** out as one write of its pieces, with no string made for the head. The
** Date line is formatted once a second, per host.
*/
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "stream_int.h"

/* _http_response's flags (response.lua's send_head and writer set them) */
enum {
  RESPONSE_TYPED = 1,      /* the headers hold a Content-Type: no text/plain of ours */
  RESPONSE_SIZED = 2,      /* ... a Content-Length (or the answer has no body): none of ours */
  RESPONSE_CLOSE = 4,      /* the connection ends after it: Connection: close */
  RESPONSE_HEAD_ONLY = 8   /* HEAD: the head as for GET, without the body */
};

/* "Date: <IMF-fixdate>\r\nServer: luaio\r\n" of this second (RFC 9110
** 5.6.7: English names, whatever the locale) */
static const char *date_lines(luaio_host *h, size_t *len) {
  time_t now = time(NULL);
  if (now != h->http_date.second || h->http_date.len == 0) {
    static const char days[] = "SunMonTueWedThuFriSat", months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    struct tm tm;
    gmtime_r(&now, &tm);
    int n = snprintf(h->http_date.line, sizeof h->http_date.line,
                     "Date: %.3s, %02d %.3s %04d %02d:%02d:%02d GMT\r\nServer: luaio\r\n",
                     days + 3 * tm.tm_wday, tm.tm_mday, months + 3 * tm.tm_mon, tm.tm_year + 1900,
                     tm.tm_hour, tm.tm_min, tm.tm_sec);
    h->http_date.len = n > 0 && (size_t)n < sizeof h->http_date.line ? (size_t)n : 0;
    h->http_date.second = now;
  }
  *len = h->http_date.len;
  return h->http_date.line;
}

/* "Content-Length: n\r\n" into out (room for any size_t); its length */
static size_t length_line(char *out, size_t n) {
  char digits[24];
  size_t k = 0, pos = sizeof "Content-Length: " - 1;
  do { digits[k++] = (char)('0' + n % 10); n /= 10; } while (n);
  memcpy(out, "Content-Length: ", pos);
  while (k) out[pos++] = digits[--k];
  out[pos++] = '\r';
  out[pos++] = '\n';
  return pos;
}

static uv_buf_t piece(const char *p, size_t len) { return uv_buf_init((char *)p, (unsigned)len); }

/* _http_response(status_line, headers, body, flags [, ours]) ⏸ -> nothing, or
** false when body is not a string (nothing is written then). status_line
** ends with CRLF; headers and ours (the server's own, e.g. HSTS) are
** header lines; flags as above. Waits as write does. */
int stream_l_http_response(lua_State *L) {
  stream *s = stream_check_hot(L, 1);
  size_t line_len, headers_len, body_len, ours_len = 0, date_len;
  const char *line = luaio_checklstring(L, 2, &line_len);
  const char *headers = luaio_checklstring(L, 3, &headers_len);
  int flags = (int)luaio_checkinteger(L, 5);
  const char *ours = lua_isnoneornil(L, 6) ? "" : luaio_checklstring(L, 6, &ours_len);
  if (lua_type(L, 4) != LUA_TSTRING) {
    lua_pushboolean(L, 0);
    return 1;
  }
  const char *body = lua_tolstring(L, 4, &body_len);
  static const char text_type[] = "Content-Type: text/plain; charset=utf-8\r\n";
  static const char close_end[] = "Connection: close\r\n\r\n";
  char length[48];
  uv_buf_t bufs[8];
  int n = 0;
  bufs[n++] = piece(line, line_len);
  if (headers_len) bufs[n++] = piece(headers, headers_len);
  if (!(flags & RESPONSE_TYPED) && body_len > 0) bufs[n++] = piece(text_type, sizeof text_type - 1);
  if (!(flags & RESPONSE_SIZED))
    bufs[n++] = piece(length, length_line(length, body_len));
  const char *date = date_lines(s->h, &date_len);
  bufs[n++] = piece(date, date_len);
  if (ours_len) bufs[n++] = piece(ours, ours_len);
  bufs[n++] = flags & RESPONSE_CLOSE ? piece(close_end, sizeof close_end - 1) : piece("\r\n", 2);
  if (!(flags & RESPONSE_HEAD_ONLY) && body_len) bufs[n++] = piece(body, body_len);
  size_t total = 0;
  for (int i = 0; i < n; i++) total += bufs[i].len;
  return stream_write_bufs(L, s, bufs, n, total);
}
