#!/bin/sh
# Install luaio into a scratch prefix, then build examples/embed.c as an
# outside project would: with pkg-config only, then run it.
set -eu
build=$1 src=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(find "$prefix" -name luaio.pc -printf '%h')
sed -i "s|^prefix=.*|prefix=$prefix|" "$pc/luaio.pc"     # installed elsewhere than configured
export PKG_CONFIG_PATH="$pc"
# -Wl,-E: C modules such as cjson resolve the Lua API from the program
cc -o "$prefix/embed" "$src/examples/embed.c" $(pkg-config --cflags --libs luaio) -Wl,-E
cd "$src" && "$prefix/embed" examples/embed.lua
