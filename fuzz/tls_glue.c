/* libFuzzer target: the TLS glue (src/tls.c) between two real OpenSSL
** sessions, a client and a server, wired back to back through luaio's own
** BIO. The input is a script: deliver some in-flight bytes one way or the
** other (in arbitrary slices), write application data, flip a byte in
** flight, send close_notify. Checks that lent input is always consumed
** whole before a session asks for more (nothing silently dropped), that the
** application data arrives exactly as written while nobody tampered with
** that direction, and that tampering ends in a reported failure, never a
** crash or a leak. Certificates come from tools/make_test_certs.sh. */
#include <stdio.h>
#include <string.h>
#include <lauxlib.h>
#include "tls.h"
#include <lualib.h>
#include <stdlib.h>

/* $FUZZ_BUILD_DIR/tls-certs (tools/fuzz.sh), build-fuzz/tls-certs by default */
static char cert_dir[512];
#define MAX_DATA 65536

static lua_State *L;

typedef struct {
  luaio_tls *t;
  luaio_tls_out out;
  int handshake_done, dead, closed, said_goodbye;
  char *sent; size_t nsent;          /* application data this end wrote */
  char *got; size_t ngot;            /* application data this end received */
  char *wire; size_t nwire;          /* ciphertext on its way to the other end */
  int tampered;                      /* a byte of this end's outgoing wire was flipped */
} end_t;

static void make_contexts(void) {
  const char *dir = getenv("FUZZ_BUILD_DIR");
  snprintf(cert_dir, sizeof cert_dir, "%s/tls-certs", dir && *dir ? dir : "build-fuzz");
  char cmd[600], path[600];
  snprintf(cmd, sizeof cmd, "tools/make_test_certs.sh '%s' >/dev/null 2>&1", cert_dir);
  if (system(cmd) != 0) abort();
  L = luaL_newstate();
  lua_newtable(L);
  luaio_open_tls(L, NULL);               /* registers the context metatable */
  lua_getfield(L, -1, "tls_context");
  lua_setfield(L, LUA_REGISTRYINDEX, "tls_context");
  lua_pop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "tls_context");
  lua_createtable(L, 0, 1);
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "verify");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) abort();          /* index 1: the client's */
  lua_getfield(L, LUA_REGISTRYINDEX, "tls_context");
  lua_createtable(L, 0, 3);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "server");
  snprintf(path, sizeof path, "%s/server.pem", cert_dir);
  lua_pushstring(L, path);
  lua_setfield(L, -2, "cert_file");
  snprintf(path, sizeof path, "%s/server.key", cert_dir);
  lua_pushstring(L, path);
  lua_setfield(L, -2, "key_file");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) abort();          /* index 2: the server's */
}

/* what a session wrote goes on the wire towards the other end */
static void collect(end_t *e) {
  if (e->out.len == 0) return;
  e->wire = realloc(e->wire, e->nwire + e->out.len);
  memcpy(e->wire + e->nwire, e->out.data, e->out.len);
  e->nwire += e->out.len;
  e->out.len = 0;
}

/* deliver up to n bytes of from's wire to `to`, as stream_tls.c's stream_tls_input does */
static void deliver(end_t *from, end_t *to, size_t n) {
  if (to->dead || to->closed || from->nwire == 0) return;
  if (n > from->nwire) n = from->nwire;
  luaio_tls_input(to->t, from->wire, n);
  int r = TLS_DONE;
  if (!to->handshake_done) {
    r = luaio_tls_handshake(to->t);
    if (r == TLS_DONE) to->handshake_done = 1;
  }
  while (r == TLS_DONE && to->handshake_done) {
    char buf[4096];
    size_t got = 0;
    r = luaio_tls_read(to->t, buf, sizeof buf, &got);
    if (got > 0) {
      if (to->ngot + got > MAX_DATA) abort();            /* more than was ever written */
      memcpy(to->got + to->ngot, buf, got);
      to->ngot += got;
    }
  }
  if (r == TLS_WANT && luaio_tls_input_left(to->t) != 0) abort();      /* the lend contract */
  if (r == TLS_FAILED) {
    if (!from->tampered && !to->tampered) abort();       /* honest bytes must never fail */
    to->dead = 1;
  }
  if (r == TLS_CLOSED) to->closed = 1;
  luaio_tls_input(to->t, NULL, 0);
  memmove(from->wire, from->wire + n, from->nwire - n);
  from->nwire -= n;
  collect(to);
}

static void check_received(end_t *writer, end_t *reader) {
  if (writer->tampered) return;
  if (reader->ngot > writer->nsent || memcmp(reader->got, writer->sent, reader->ngot) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!L) make_contexts();
  end_t ends[2];
  memset(ends, 0, sizeof ends);
  for (int i = 0; i < 2; i++) {
    ends[i].t = luaio_tls_new(L, i + 1, i == 0 ? "localhost" : NULL, &ends[i].out);
    if (!ends[i].t) abort();
    ends[i].sent = malloc(MAX_DATA);
    ends[i].got = malloc(MAX_DATA);
  }
  end_t *client = &ends[0];
  if (luaio_tls_handshake(client->t) != TLS_WANT) abort();   /* the ClientHello */
  collect(client);
  for (size_t i = 0; i + 1 < size; i += 2) {
    int side = data[i] & 1, op = (data[i] >> 1) & 3;
    size_t arg = (size_t)data[i + 1] + 1;
    end_t *me = &ends[side], *peer = &ends[!side];
    switch (op) {
      case 0:                                              /* slices of my wire reach the peer */
        deliver(me, peer, arg * (size_t)(1 + (data[i] >> 3)));
        break;
      case 1:                                              /* I write application data */
        if (me->dead || !me->handshake_done || me->said_goodbye || me->closed || me->nsent + arg > MAX_DATA) break;
        for (size_t k = 0; k < arg; k++) me->sent[me->nsent + k] = (char)(me->nsent + k);
        if (luaio_tls_write(me->t, me->sent + me->nsent, arg) == TLS_DONE) me->nsent += arg;
        else if (!me->tampered && !peer->tampered) abort();
        else me->dead = 1;
        collect(me);
        break;
      case 2:                                              /* a byte of my wire flips */
        if (me->nwire > 0) {
          me->wire[arg % me->nwire] ^= (char)(1 + (data[i] >> 3));
          me->tampered = 1;
        }
        break;
      default:                                             /* I say goodbye */
        if (!me->dead) luaio_tls_close_notify(me->t);
        me->said_goodbye = 1;
        collect(me);
    }
    check_received(&ends[0], &ends[1]);
    check_received(&ends[1], &ends[0]);
  }
  /* whatever is still in flight, untampered, arrives whole */
  deliver(&ends[0], &ends[1], SIZE_MAX);
  deliver(&ends[1], &ends[0], SIZE_MAX);
  deliver(&ends[0], &ends[1], SIZE_MAX);
  check_received(&ends[0], &ends[1]);
  check_received(&ends[1], &ends[0]);
  for (int i = 0; i < 2; i++) {
    end_t *e = &ends[i], *o = &ends[!i];
    if (!o->tampered && !e->tampered && !e->dead && !o->dead && e->handshake_done && o->handshake_done &&
        !e->closed && e->ngot != o->nsent)
      abort();                                             /* delivered in full, so received in full */
    luaio_tls_free(e->t);
    free(e->out.data);
    free(e->sent);
    free(e->got);
    free(e->wire);
  }
  return 0;
}
