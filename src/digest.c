/*
** digest.c — the digests the database clients' authentication needs, all
** OpenSSL's: PostgreSQL's MD5 password hash and SCRAM-SHA-256 (RFC 5802,
** RFC 7677: SHA-256, HMAC-SHA-256, PBKDF2), base64 for SCRAM's messages and
** random bytes for its nonce. Thin wrappers; the protocols are Lua's
** (lua/luaio/pg/auth.lua).
**
**   core.md5_hex(s) -> 32 lowercase hex digits
**   core.sha256(s) -> 32 raw bytes
**   core.hmac_sha256(key, s) -> 32 raw bytes
**   core.pbkdf2_sha256(password, salt, iterations) -> 32 raw bytes
**   core.random_bytes(n) -> n bytes from RAND_bytes (n <= 1024)
**   core.base64_encode(s), core.base64_decode(s) -> string | nil (not base64)
*/
#include <string.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include "luaio_int.h"

static int fail(lua_State *L, const char *what) {
  return luaio_error(L, "OSError", "EIO", "%s failed (OpenSSL)", what);
}

static int l_md5_hex(lua_State *L) {
  size_t len;
  const char *s = luaio_checklstring(L, 1, &len);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  if (EVP_Digest(s, len, md, &n, EVP_md5(), NULL) != 1) return fail(L, "MD5");
  char hex[2 * EVP_MAX_MD_SIZE];
  static const char digits[] = "0123456789abcdef";
  for (unsigned i = 0; i < n; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  lua_pushlstring(L, hex, 2 * (size_t)n);
  return 1;
}

static int l_sha256(lua_State *L) {
  size_t len;
  const char *s = luaio_checklstring(L, 1, &len);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  if (EVP_Digest(s, len, md, &n, EVP_sha256(), NULL) != 1) return fail(L, "SHA-256");
  lua_pushlstring(L, (const char *)md, n);
  return 1;
}

static int l_hmac_sha256(lua_State *L) {
  size_t klen, len;
  const char *key = luaio_checklstring(L, 1, &klen);
  const char *s = luaio_checklstring(L, 2, &len);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)s, len, md, &n)) return fail(L, "HMAC-SHA-256");
  lua_pushlstring(L, (const char *)md, n);
  return 1;
}

static int l_pbkdf2_sha256(lua_State *L) {
  size_t plen, slen;
  const char *pw = luaio_checklstring(L, 1, &plen);
  const char *salt = luaio_checklstring(L, 2, &slen);
  lua_Integer iter = luaio_checkinteger(L, 3);
  if (iter < 1 || iter > 100000000) return luaio_argerror(L, 3, "iterations must be 1 .. 1e8");
  unsigned char out[32];
  if (PKCS5_PBKDF2_HMAC(pw, (int)plen, (const unsigned char *)salt, (int)slen, (int)iter, EVP_sha256(),
                        (int)sizeof out, out) != 1)
    return fail(L, "PBKDF2");
  lua_pushlstring(L, (const char *)out, sizeof out);
  return 1;
}

static int l_random_bytes(lua_State *L) {
  lua_Integer n = luaio_checkinteger(L, 1);
  if (n < 0 || n > 1024) return luaio_argerror(L, 1, "byte count must be 0 .. 1024");
  unsigned char buf[1024];
  if (n > 0 && RAND_bytes(buf, (int)n) != 1) return fail(L, "RAND_bytes");
  lua_pushlstring(L, (const char *)buf, (size_t)n);
  return 1;
}

static int l_base64_encode(lua_State *L) {
  size_t len;
  const char *s = luaio_checklstring(L, 1, &len);
  if (len > (size_t)INT32_MAX / 2) return luaio_argerror(L, 1, "string too long");
  luaL_Buffer B;
  char *out = luaL_buffinitsize(L, &B, 4 * ((len + 2) / 3) + 1);
  int n = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)len);
  luaL_pushresultsize(&B, (size_t)n);
  return 1;
}

/* EVP_DecodeBlock keeps the padding's zero bytes: they are cut here */
static int l_base64_decode(lua_State *L) {
  size_t len;
  const char *s = luaio_checklstring(L, 1, &len);
  if (len % 4 != 0 || len > (size_t)INT32_MAX / 2) { lua_pushnil(L); return 1; }
  luaL_Buffer B;
  char *out = luaL_buffinitsize(L, &B, len / 4 * 3 + 1);
  int n = len ? EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)len) : 0;
  if (n < 0) { lua_pushnil(L); return 1; }
  if (len && s[len - 1] == '=') n--;
  if (len > 1 && s[len - 2] == '=') n--;
  luaL_pushresultsize(&B, (size_t)n);
  return 1;
}

void luaio_open_digest(lua_State *L, luaio_host *h) {
  (void)h;
  static const luaL_Reg funcs[] = {
    {"md5_hex", l_md5_hex}, {"sha256", l_sha256}, {"hmac_sha256", l_hmac_sha256},
    {"pbkdf2_sha256", l_pbkdf2_sha256}, {"random_bytes", l_random_bytes},
    {"base64_encode", l_base64_encode}, {"base64_decode", l_base64_decode}, {NULL, NULL}};
  luaL_setfuncs(L, funcs, 0);
}
