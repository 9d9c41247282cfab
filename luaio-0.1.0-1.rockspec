-- luarocks --lua-version 5.4 make [--tree T]: builds luaio.so (require "luaio"
-- from stock lua5.4) and the `luaio` command with CMake, from this checkout.
-- The C libraries are the system's (Debian: liblua5.4-dev libuv1-dev
-- libssl-dev zlib1g-dev libreadline-dev, cmake, pkg-config).
rockspec_format = "3.0"
package = "luaio"
version = "0.1.0-1"
-- (not published yet: `luarocks make` builds this checkout and never fetches
-- the source; the url is a placeholder that a release will replace)
source = {
  url = "git+file:///dev/null/luaio.git",
}
description = {
  summary = "An embeddable async Lua 5.4 host on libuv: asyncio-style tasks in coroutines",
  detailed = [[
Timers, sockets, TLS, HTTP(S), WebSocket, DNS, files, processes, signals and
the thread pool of libuv, in Lua 5.4 coroutines: tasks, gather, timeouts,
cancellation, locks, queues and streams in the style of Python's asyncio.
]],
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
build = {
  type = "command",
  build_command = [[cmake -S . -B build-rock -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-rock --target luaio_module luaio -j2]],
  install = {
    lib = { luaio = "build-rock/luaio.so" },
    bin = { luaio = "build-rock/luaio" },
  },
}
