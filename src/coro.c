/*
** coro.c — coroutine.resume/wrap that let waiting calls through.
**
** A waiting call inside a user coroutine yields the scheduler's marker to
** whoever resumed that coroutine. These versions of resume and wrap see the
** marker, yield it onward from their own coroutine (up to the task and the
** scheduler), and when the task is resumed they resume the inner coroutine
** with the same values. Ordinary yields behave as in stock Lua.
*/
#include <lualib.h>
#include "host.h"

static int resume_k(lua_State *L, int status, lua_KContext ctx);

/* Coroutines parked in a luaio wait (a weak set in the registry): closing
** one would leave its task waiting for a coroutine that is gone, holding
** whatever it was handed (a lock, a queue item), so coroutine.close refuses. */
static char parked_key;

static void set_parked(lua_State *L, lua_State *co, int parked) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &parked_key);
  lua_pushthread(co);
  lua_xmove(co, L, 1);
  if (parked) lua_pushboolean(L, 1); else lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Resume co with the top narg values of L. `wrap` selects wrap's result
** convention; `base` is the stack height of L to keep between rounds. */
static int do_resume(lua_State *L, lua_State *co, int narg, int wrap, int base) {
  int nres, status;
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    goto fail;
  }
  if (lua_status(co) == LUA_OK && lua_gettop(co) == 0) {
    lua_pushliteral(L, "cannot resume dead coroutine");
    goto fail;
  }
  lua_xmove(L, co, narg);
  /* resumed where L cannot yield: a wait inside co could not reach the
  ** scheduler, so waiting calls in it must raise at once (sched.c) */
  luaio_task *t = luaio_current(L);
  luaio_host *h = t ? t->host : NULL;
  int noyield = h && !lua_isyieldable(L);
  if (noyield) h->noyield++;
  if (h) h->intr.executing = co;
  status = lua_resume(co, L, narg, &nres);
  if (h) luaio_interrupt_handoff(h, co, L);
  if (noyield) h->noyield--;
  if (status == LUA_YIELD && nres == 1 && lua_touserdata(co, -1) == &luaio_yield_marker) {
    lua_pop(co, 1);
    lua_settop(L, base);
    set_parked(L, co, 1);
    lua_pushlightuserdata(L, &luaio_yield_marker);
    return lua_yieldk(L, 1, (lua_KContext)(base * 2 + wrap), resume_k);
  }
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      goto fail;
    }
    lua_settop(L, base);
    if (!wrap) lua_pushboolean(L, 1);
    lua_xmove(co, L, nres);
    return nres + !wrap;
  }
  /* the coroutine raised */
  if (wrap) {
    int stat = lua_resetthread(co);   /* close its pending to-be-closed variables */
    lua_xmove(co, L, 1);
    if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
      luaL_where(L, 1);
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
  lua_xmove(co, L, 1);
fail:
  if (wrap) return lua_error(L);
  lua_pushboolean(L, 0);
  lua_insert(L, -2);
  return 2;
}

static int resume_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int wrap = (int)(ctx & 1), base = (int)(ctx >> 1);
  lua_State *co = wrap ? lua_tothread(L, lua_upvalueindex(1)) : lua_tothread(L, 1);
  lua_checkstack(L, 4);
  set_parked(L, co, 0);
  return do_resume(L, co, lua_gettop(L) - base, wrap, base);
}

static int co_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaio_argexpected(L, co, 1, "coroutine");
  return do_resume(L, co, lua_gettop(L) - 1, 0, 1);
}

static int wrap_call(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  return do_resume(L, co, lua_gettop(L), 1, 0);
}

static int co_wrap(lua_State *L) {
  luaio_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, wrap_call, 1);
  return 1;
}

/* coroutine.close: Lua's own (written here, so that no upvalue hands it
** out), refusing a coroutine parked in a luaio wait. */
static int co_close(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaio_argexpected(L, co, 1, "coroutine");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &parked_key);
  lua_pushvalue(L, 1);
  if (lua_rawget(L, -2) != LUA_TNIL)
    return luaL_error(L, "cannot close a coroutine that is waiting inside a task (cancel the task instead)");
  lua_settop(L, 1);
  if (luaio_is_task_thread(co))
    return luaL_error(L, "cannot close the coroutine of a pending task (cancel the task instead)");
  lua_Debug ar;
  if (co == L) return luaL_error(L, "cannot close a running coroutine");
  if (lua_status(co) == LUA_OK && lua_getstack(co, 0, &ar))
    return luaL_error(L, "cannot close a normal coroutine");
  if (lua_resetthread(co) == LUA_OK) {   /* closes its pending to-be-closed variables */
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_xmove(co, L, 1);                   /* the error of a __close */
  return 2;
}

void luaio_open_coro(lua_State *L) {
  luaio_new_weak_keys(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &parked_key);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, LUA_COLIBNAME) == LUA_TTABLE) {
    lua_pushcfunction(L, co_resume);
    lua_setfield(L, -2, "resume");
    lua_pushcfunction(L, co_wrap);
    lua_setfield(L, -2, "wrap");
    lua_pushcfunction(L, co_close);
    lua_setfield(L, -2, "close");
  }
  lua_pop(L, 2);
}
