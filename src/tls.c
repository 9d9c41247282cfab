/*
** tls.c — TLS contexts and sessions (OpenSSL) for streams (stream_tls.c).
**
** Each session does its I/O through a BIO of our own: reads take the bytes
** the stream lends (straight from libuv's read buffer), writes append to the
** output buffer the stream sends from. Memory BIOs would copy every byte in
** and keep, per connection, buffers as large as the largest write. Nothing
** here blocks, and nothing here knows about libuv.
**
** Failures are kept (the OpenSSL error and the verify result at the moment
** of failure) so the TLSError raised later, in the waiting task, names the
** reason even though OpenSSL's error queue has moved on.
*/
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "tls.h"

#define CTX_MT "luaio.TLSContext"

struct luaio_tls {
  SSL *ssl;
  const char *in;           /* lent ciphertext not consumed yet */
  size_t in_len;
  luaio_tls_out *out;
  unsigned long err;        /* the OpenSSL error of the last failure */
  long verify;              /* the verify result when that failure was a verification */
};

typedef struct {
  SSL_CTX *ctx;
  int server, verify;
} tls_ctx;

/* ---- errors ------------------------------------------------------------- */

static const char *verify_code(long v) {
  switch (v) {
    case X509_V_ERR_CERT_HAS_EXPIRED: return "CERT_HAS_EXPIRED";
    case X509_V_ERR_CERT_NOT_YET_VALID: return "CERT_NOT_YET_VALID";
    case X509_V_ERR_HOSTNAME_MISMATCH: return "HOSTNAME_MISMATCH";
    case X509_V_ERR_IP_ADDRESS_MISMATCH: return "IP_ADDRESS_MISMATCH";
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: return "DEPTH_ZERO_SELF_SIGNED_CERT";
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: return "SELF_SIGNED_CERT_IN_CHAIN";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: return "UNABLE_TO_GET_ISSUER_CERT_LOCALLY";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT: return "UNABLE_TO_GET_ISSUER_CERT";
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: return "UNABLE_TO_VERIFY_LEAF_SIGNATURE";
    case X509_V_ERR_CERT_REVOKED: return "CERT_REVOKED";
    case X509_V_ERR_CERT_SIGNATURE_FAILURE: return "CERT_SIGNATURE_FAILURE";
    case X509_V_ERR_INVALID_CA: return "INVALID_CA";
    case X509_V_ERR_INVALID_PURPOSE: return "INVALID_PURPOSE";
    case X509_V_ERR_CERT_UNTRUSTED: return "CERT_UNTRUSTED";
    case X509_V_ERR_CERT_REJECTED: return "CERT_REJECTED";
    case X509_V_ERR_CERT_CHAIN_TOO_LONG: return "CERT_CHAIN_TOO_LONG";
    case X509_V_ERR_EE_KEY_TOO_SMALL: return "EE_KEY_TOO_SMALL";
    default: return "CERTIFICATE_VERIFY_FAILED";
  }
}

/* "wrong version number" -> "WRONG_VERSION_NUMBER": the names Python's ssl
** module shows too, stable across OpenSSL versions. */
static void reason_code(unsigned long e, char *out, size_t cap) {
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  if (!r) { snprintf(out, cap, "TLS_ERROR"); return; }
  size_t i = 0;
  for (; r[i] && i + 1 < cap; i++)
    out[i] = isalnum((unsigned char)r[i]) ? (char)toupper((unsigned char)r[i]) : '_';
  out[i] = '\0';
}

static int is_verify_failure(unsigned long e) {
  return e && ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED;
}

void luaio_tls_push_error(lua_State *L, luaio_tls *t) {
  if (is_verify_failure(t->err) && t->verify != X509_V_OK) {
    luaio_push_error(L, "TLSError", verify_code(t->verify), "certificate verify failed: %s",
                     X509_verify_cert_error_string(t->verify));
    return;
  }
  char code[96], text[256];
  reason_code(t->err, code, sizeof code);
  if (t->err) ERR_error_string_n(t->err, text, sizeof text);
  else snprintf(text, sizeof text, "protocol failure");
  luaio_push_error(L, "TLSError", code, "TLS: %s", text);
}

/* An error while loading a context: the file's own problem first. */
static int load_error(lua_State *L, const char *what, const char *path) {
  unsigned long e = ERR_peek_last_error();
  char code[96];
  reason_code(e, code, sizeof code);
  ERR_clear_error();
  return luaio_error(L, "TLSError", code, "cannot load %s %s: %s", what, path,
                     e && ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "invalid");
}

static void check_readable(lua_State *L, const char *what, const char *path) {
  FILE *f = fopen(path, "rb");
  if (f) { fclose(f); return; }
  int err = uv_translate_sys_error(errno);
  luaio_error(L, "OSError", uv_err_name(err), "cannot open %s %s: %s", what, path, uv_strerror(err));
}

/* ---- the BIO between a session and its stream ---------------------------- */

static BIO_METHOD *glue_method;
static uv_once_t glue_once = UV_ONCE_INIT;

static int glue_read(BIO *b, char *buf, int len) {
  luaio_tls *t = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (t->in_len == 0) {
    BIO_set_retry_read(b);        /* not EOF: more will come */
    return -1;
  }
  size_t n = (size_t)len < t->in_len ? (size_t)len : t->in_len;
  memcpy(buf, t->in, n);
  t->in += n;
  t->in_len -= n;
  return (int)n;
}

static int glue_write(BIO *b, const char *data, int len) {
  luaio_tls *t = BIO_get_data(b);
  luaio_tls_out *o = t->out;
  BIO_clear_retry_flags(b);
  if (o->cap - o->len < (size_t)len) {
    size_t cap = o->cap ? o->cap : 65536;
    while (cap - o->len < (size_t)len) cap *= 2;
    char *p = realloc(o->data, cap);
    if (!p) return -1;
    o->data = p;
    o->cap = cap;
  }
  memcpy(o->data + o->len, data, (size_t)len);
  o->len += (size_t)len;
  return len;
}

static long glue_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)num; (void)ptr;
  luaio_tls *t = BIO_get_data(b);
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;           /* the stream sends after every call */
    case BIO_CTRL_PENDING: return t ? (long)t->in_len : 0;
    default: return 0;
  }
}

static int glue_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static void glue_init(void) {
  glue_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "luaio stream");
  if (!glue_method) return;
  BIO_meth_set_read(glue_method, glue_read);
  BIO_meth_set_write(glue_method, glue_write);
  BIO_meth_set_ctrl(glue_method, glue_ctrl);
  BIO_meth_set_create(glue_method, glue_create);
}

/* ---- sessions ------------------------------------------------------------- */

static int fail(luaio_tls *t, int r) {
  int e = SSL_get_error(t->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return TLS_WANT;
  if (e == SSL_ERROR_ZERO_RETURN) return TLS_CLOSED;
  t->err = ERR_peek_error();
  t->verify = SSL_get_verify_result(t->ssl);
  ERR_clear_error();
  return TLS_FAILED;
}

static int is_ip_address(const char *s) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

luaio_tls *luaio_tls_new(lua_State *L, int ctx_idx, const char *server_name, luaio_tls_out *out) {
  tls_ctx *c = luaio_checkudata(L, ctx_idx, CTX_MT);
  uv_once(&glue_once, glue_init);
  luaio_tls *t = calloc(1, sizeof *t);
  if (!t) { lua_pushstring(L, "out of memory"); return NULL; }
  t->out = out;
  ERR_clear_error();
  t->ssl = SSL_new(c->ctx);
  BIO *bio = glue_method ? BIO_new(glue_method) : NULL;
  if (!t->ssl || !bio) {
    BIO_free(bio);
    SSL_free(t->ssl);
    free(t);
    luaio_push_error(L, "TLSError", "TLS_ERROR", "cannot create a TLS session (out of memory)");
    return NULL;
  }
  BIO_set_data(bio, t);
  SSL_set_bio(t->ssl, bio, bio);         /* one BIO both ways: one reference taken */
  if (c->server) {
    SSL_set_accept_state(t->ssl);
  } else {
    SSL_set_connect_state(t->ssl);
    if (server_name && *server_name) {
      int ip = is_ip_address(server_name);
      int ok = 1;
      if (!ip) ok = SSL_set_tlsext_host_name(t->ssl, server_name) == 1;   /* SNI is for names only */
      if (ok && c->verify) {
        if (ip) ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), server_name) == 1;
        else {
          SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
          ok = SSL_set1_host(t->ssl, server_name) == 1;
        }
      }
      if (!ok) {
        luaio_tls_free(t);
        ERR_clear_error();
        luaio_push_error(L, "TLSError", "BAD_SERVER_NAME", "not a usable server name: %s", server_name);
        return NULL;
      }
    }
  }
  return t;
}

void luaio_tls_free(luaio_tls *t) {
  if (!t) return;
  SSL_free(t->ssl);              /* frees the BIO */
  free(t);
}

void luaio_tls_input(luaio_tls *t, const char *p, size_t n) {
  t->in = p;
  t->in_len = n;
}

size_t luaio_tls_input_left(const luaio_tls *t) { return t->in_len; }

int luaio_tls_handshake(luaio_tls *t) {
  ERR_clear_error();
  int r = SSL_do_handshake(t->ssl);
  return r == 1 ? TLS_DONE : fail(t, r);
}

int luaio_tls_read(luaio_tls *t, char *buf, size_t cap, size_t *got) {
  ERR_clear_error();
  int r = SSL_read_ex(t->ssl, buf, cap, got);
  return r == 1 ? TLS_DONE : fail(t, r);
}

int luaio_tls_write(luaio_tls *t, const char *p, size_t n) {
  size_t written;
  ERR_clear_error();
  int r = SSL_write_ex(t->ssl, p, n, &written);
  if (r == 1) return TLS_DONE;
  r = fail(t, r);
  if (r == TLS_WANT) {     /* a memory BIO takes everything: only a renegotiation could ask */
    t->err = 0;
    t->verify = X509_V_OK;
  }
  return TLS_FAILED;
}

void luaio_tls_close_notify(luaio_tls *t) {
  if (SSL_is_init_finished(t->ssl) && !(SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN))
    SSL_shutdown(t->ssl);
  ERR_clear_error();
}

static void push_name(lua_State *L, X509_NAME *name) {
  BIO *b = BIO_new(BIO_s_mem());
  if (!b) { lua_pushnil(L); return; }
  X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
  char *p;
  long n = BIO_get_mem_data(b, &p);
  lua_pushlstring(L, p, (size_t)n);
  BIO_free(b);
}

void luaio_tls_push_info(lua_State *L, luaio_tls *t) {
  SSL *ssl = t->ssl;
  lua_createtable(L, 0, 8);
  lua_pushstring(L, SSL_get_version(ssl));
  lua_setfield(L, -2, "protocol");
  lua_pushstring(L, SSL_get_cipher_name(ssl));
  lua_setfield(L, -2, "cipher");
  lua_pushinteger(L, SSL_get_cipher_bits(ssl, NULL));
  lua_setfield(L, -2, "bits");
  const unsigned char *alpn;
  unsigned alpn_len;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  if (alpn_len) {
    lua_pushlstring(L, (const char *)alpn, alpn_len);
    lua_setfield(L, -2, "alpn");
  }
  const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (sni) {
    lua_pushstring(L, sni);
    lua_setfield(L, -2, "server_name");
  }
  lua_pushboolean(L, SSL_session_reused(ssl));
  lua_setfield(L, -2, "session_reused");
  X509 *peer = SSL_get1_peer_certificate(ssl);
  if (peer) {
    push_name(L, X509_get_subject_name(peer));
    lua_setfield(L, -2, "peer_subject");
    push_name(L, X509_get_issuer_name(peer));
    lua_setfield(L, -2, "peer_issuer");
    lua_pushboolean(L, SSL_get_verify_result(ssl) == X509_V_OK);
    lua_setfield(L, -2, "peer_verified");
    X509_free(peer);
  }
}

/* ---- contexts --------------------------------------------------------------- */

static int alpn_slot = -1;
static uv_once_t alpn_once = UV_ONCE_INIT;

static void alpn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
  (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
  free(ptr);
}

static void alpn_slot_init(void) {
  alpn_slot = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, alpn_free);
}

/* The server's choice: its own first protocol the client also offers; none
** in common proceeds without ALPN rather than failing the handshake. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg) {
  (void)arg;
  const unsigned char *ours = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), alpn_slot);
  if (!ours) return SSL_TLSEXT_ERR_NOACK;
  unsigned char *chosen;
  if (SSL_select_next_proto(&chosen, outlen, ours + 1, ours[0], in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

static const char *opt_string(lua_State *L, const char *field) {
  lua_getfield(L, 1, field);
  const char *s = NULL;
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t len;
    s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len) luaL_error(L, "tls.%s contains a NUL byte", field);
  }
  else if (!lua_isnil(L, -1)) luaL_error(L, "tls.%s must be a string, got %s", field, luaL_typename(L, -1));
  lua_pop(L, 1);   /* the string stays alive: it is a field of the options table */
  return s;
}

/* ALPN list -> wire format (length-prefixed names) in a new buffer */
static unsigned char *alpn_wire(lua_State *L, size_t *len) {
  lua_getfield(L, 1, "alpn");
  if (lua_isnil(L, -1)) { lua_pop(L, 1); return NULL; }
  if (lua_type(L, -1) == LUA_TSTRING) {
    lua_createtable(L, 1, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
  }
  if (!lua_istable(L, -1)) luaL_error(L, "tls.alpn must be a string or a list of strings");
  int list = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  int n = (int)luaL_len(L, list);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    size_t plen;
    const char *p = lua_tolstring(L, -1, &plen);
    if (!p || plen == 0 || plen > 255) luaL_error(L, "tls.alpn[%d] must be a protocol name of 1..255 bytes", i);
    lua_pop(L, 1);   /* p stays alive: the list holds it */
    luaL_addchar(&b, (char)plen);
    luaL_addlstring(&b, p, plen);
  }
  luaL_pushresult(&b);
  size_t wlen;
  const char *w = lua_tolstring(L, -1, &wlen);
  unsigned char *copy = malloc(wlen + 1);
  if (!copy) luaL_error(L, "out of memory");
  copy[0] = (unsigned char)wlen;       /* only for the server's copy: total length first */
  memcpy(copy + 1, w, wlen);
  lua_pop(L, 2);
  *len = wlen;
  return copy;
}

static int ctx_gc(lua_State *L) {
  tls_ctx *c = luaio_checkudata(L, 1, CTX_MT);
  if (c->ctx) { SSL_CTX_free(c->ctx); c->ctx = NULL; }
  return 0;
}

/* tls_context{server=, verify=, ca_file=, cert_file=, key_file=, alpn=} -> TLSContext */
/* the context's own certificate and key (key_file NULL: in cert_file) */
static int load_cert(lua_State *L, SSL_CTX *ctx, const char *cert_file, const char *key_file) {
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) return load_error(L, "certificate", cert_file);
  const char *kf = key_file ? key_file : cert_file;
  if (SSL_CTX_use_PrivateKey_file(ctx, kf, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      return luaio_error(L, "TLSError", "KEY_VALUES_MISMATCH",
                         "the private key %s does not match the certificate %s", kf, cert_file);
    }
    return load_error(L, "private key", kf);
  }
  return 0;
}

/* whom the context trusts (ca_file NULL: the system's store) */
static int load_trust(lua_State *L, SSL_CTX *ctx, int server, const char *ca_file) {
  if (ca_file) {
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) return load_error(L, "CA file", ca_file);
  } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    return load_error(L, "the system CA store", "");
  }
  int mode = SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
  SSL_CTX_set_verify(ctx, mode, NULL);
  if (server && ca_file) SSL_CTX_set_client_CA_list(ctx, SSL_load_client_CA_file(ca_file));
  return 0;
}

/* tls.alpn: offered by a client, chosen from by a server */
static void set_alpn(lua_State *L, SSL_CTX *ctx, int server) {
  size_t wlen;
  unsigned char *wire = alpn_wire(L, &wlen);
  if (!wire) return;
  if (wlen > 255 && server) { free(wire); luaL_error(L, "tls.alpn: the list is too long"); }
  if (server) {
    uv_once(&alpn_once, alpn_slot_init);
    SSL_CTX_set_ex_data(ctx, alpn_slot, wire);     /* freed with the context */
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
  } else {
    int r = SSL_CTX_set_alpn_protos(ctx, wire + 1, (unsigned)wlen);   /* 0 is success here */
    free(wire);
    if (r != 0) luaL_error(L, "tls.alpn: not a valid protocol list");
  }
}

/* The TLS 1.2 suites a server accepts: forward secret (ECDHE) and AEAD
** only, in the order it prefers them (AES-GCM first: hardware accelerated
** almost everywhere). CBC suites and RSA key exchange are what scanners
** such as testssl.sh flag; every client of the last decade has these. */
#define SERVER_TLS12_CIPHERS \
  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* The protocol profile ("modern", as Mozilla's intermediate minus the
** DHE suites): TLS 1.2 at least, for clients too; TLS 1.3 keeps OpenSSL's
** default suites (all AEAD). No renegotiation (a memory-BIO session never
** re-handshakes, and client-initiated renegotiation is a DoS lever) and no
** compression (CRIME). A server picks the suite by its own order, so a
** client listing a weaker suite first does not get it. -> 1 on success */
static int set_profile(SSL_CTX *ctx, int server) {
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) return 0;
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  if (!server) return 1;
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  return SSL_CTX_set_cipher_list(ctx, SERVER_TLS12_CIPHERS);
}

static int l_tls_context(lua_State *L) {
  luaio_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_getfield(L, 1, "server");
  int server = lua_toboolean(L, -1);
  lua_getfield(L, 1, "verify");
  int verify = lua_isnil(L, -1) ? !server : lua_toboolean(L, -1);
  lua_pop(L, 2);
  const char *ca_file = opt_string(L, "ca_file");
  const char *cert_file = opt_string(L, "cert_file");
  const char *key_file = opt_string(L, "key_file");
  if (server && (!cert_file || !key_file))
    return luaL_error(L, "a TLS server needs tls.cert_file and tls.key_file");
  if (key_file && !cert_file) return luaL_error(L, "tls.key_file given without tls.cert_file");
  if (ca_file) check_readable(L, "CA file", ca_file);
  if (cert_file) check_readable(L, "certificate file", cert_file);
  if (key_file) check_readable(L, "key file", key_file);

  tls_ctx *c = lua_newuserdatauv(L, sizeof *c, 0);     /* index 2 */
  c->ctx = NULL;
  luaL_setmetatable(L, CTX_MT);
  c->server = server;
  c->verify = verify;
  ERR_clear_error();
  c->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!c->ctx) return luaio_error(L, "TLSError", "TLS_ERROR", "cannot create a TLS context");
  SSL_CTX *ctx = c->ctx;
  if (set_profile(ctx, server) != 1)
    return luaio_error(L, "TLSError", "TLS_ERROR", "cannot set the TLS protocol profile");
  /* an idle connection gives back its ~34 KiB of record buffers (as nginx
  ** does): thousands of idle keep-alive clients must not cost a GiB */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (cert_file) load_cert(L, ctx, cert_file, key_file);
  if (verify) load_trust(L, ctx, server, ca_file);
  else SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  if (server) SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"luaio", 5);
  set_alpn(L, ctx, server);
  return 1;
}

void luaio_open_tls(lua_State *L, luaio_host *h) {
  (void)h;
  if (luaL_newmetatable(L, CTX_MT)) {
    lua_pushcfunction(L, ctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushstring(L, CTX_MT);
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_tls_context);
  lua_setfield(L, -2, "tls_context");
}
