#!/usr/bin/env bash
# One command: install what is missing, build, run every test (busted specs
# inside the host, C tests, the embedding example) through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh valgrind     # the C lifecycle test runs under memcheck
tools/build.sh
cd build
ctest --output-on-failure "$@"
