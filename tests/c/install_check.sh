#!/bin/sh
# Install luaio into a scratch prefix, then build as an outside project would,
# with pkg-config alone (the installed luaio.pc, nothing edited): the README's
# C example and examples/embed.c; run both. Also: the manual page is there.
set -eu
build=$1 src=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
pc=$(find "$prefix" -name luaio.pc -printf '%h')
export PKG_CONFIG_PATH="$pc"
# the paths pkg-config gives are the prefix's
case "$(pkg-config --cflags luaio)" in
  *"$prefix"*) ;;
  *) echo "pkg-config --cflags luaio does not name $prefix: $(pkg-config --cflags luaio)"; exit 1 ;;
esac
test -f "$prefix/share/man/man1/luaio.1" || { echo "no luaio.1 under $prefix/share/man/man1"; exit 1; }
# the README's C example: the first ```c block
awk '/^```c$/ { on = 1; next } on && /^```$/ { exit } on { print }' "$src/README.md" > "$prefix/app.c"
# -Wl,-E: C modules such as cjson resolve the Lua API from the program
cc -o "$prefix/app" "$prefix/app.c" $(pkg-config --cflags --libs luaio) -Wl,-E
"$prefix/app"
cc -o "$prefix/embed" "$src/examples/embed.c" $(pkg-config --cflags --libs luaio) -Wl,-E
cd "$src" && "$prefix/embed" examples/embed.lua
