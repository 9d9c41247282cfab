#!/usr/bin/env bash
# Builds with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/
# and runs the whole test suite there.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
BUILD_DIR=build-asan tools/build.sh -DLUAIO_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
cd build-asan
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --output-on-failure "$@"
