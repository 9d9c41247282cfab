#!/bin/sh
# luarocks --lua-version 5.4 make into a scratch tree, from a copy of the
# source (the rock's build directory stays out of the checkout), then stock
# lua5.4 with that tree's cpath requires "luaio" and runs a task.
set -eu
src=$1
if ! command -v luarocks >/dev/null 2>&1; then
  echo "SKIPPED: luarocks is not installed (Debian: apt-get install luarocks)"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
(cd "$src" && tar cf - --exclude='./build*' --exclude=./.git .) | (cd "$work/src" && tar xf -)
cd "$work/src"
luarocks --lua-version 5.4 make luaio-0.1.0-1.rockspec --tree "$work/tree" >"$work/make.log" 2>&1 ||
  { cat "$work/make.log"; exit 1; }
lua5.4 -e "package.cpath = '$work/tree/lib/lua/5.4/?.so;' .. package.cpath" -e '
  local aio = require "luaio"
  print(aio.run(function()
    local t = aio.spawn(function() aio.sleep(0.01) return "rock" end)
    return t:wait() .. " ok"
  end))'
"$work/tree/bin/luaio" -e 'print("the command runs: " .. aio.version())'
