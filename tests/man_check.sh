#!/bin/sh
# Render docs/luaio.1 with man (or groff, or mandoc) and fail on any warning.
set -eu
page=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if command -v man >/dev/null 2>&1; then
  MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -l "$page" >/dev/null 2>"$out"
elif command -v groff >/dev/null 2>&1; then
  groff -man -Tutf8 -wall "$page" >/dev/null 2>"$out"
else
  mandoc -Tlint -Wwarning "$page" >"$out" 2>&1 || true
fi
if [ -s "$out" ]; then echo "warnings from $page:"; cat "$out"; exit 1; fi
echo "man page ok"
