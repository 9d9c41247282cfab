#!/usr/bin/env bash
# One command: install what is missing, build, run every test — the busted
# specs inside the host, the C tests and the embedding example (ctest), then
# the hardening stage (ASan+UBSan suite, valgrind, fuzzing, load and soak:
# tools/hardening.sh). CI runs exactly this.
#   tools/test.sh [--quick] [ctest args...]    --quick: skip the hardening stage
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = "--quick" ]; then quick=1; shift; fi
# valgrind: the C lifecycle test runs under memcheck; nginx, chromium and
# python3-aiohttp: the HTTP specs' real peers (a reverse proxy, a browser, aiohttp);
# redis-server, postgresql (and python3-redis/hiredis, python3-asyncpg as
# cross-checking clients): the database clients' servers, started by the specs;
# tmux: the prompt's terminal in its specs; luarocks: the rockspec's test;
# man-db: the manual page's test (libreadline-dev, for the build: deps.sh's own)
tools/deps.sh valgrind nginx chromium python3-aiohttp redis-server python3-redis python3-hiredis \
  postgresql python3-asyncpg tmux luarocks man-db
tools/build.sh
(cd build && ctest --output-on-failure "$@")
if [ $quick = 0 ]; then tools/hardening.sh; fi
