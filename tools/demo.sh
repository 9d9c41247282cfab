#!/usr/bin/env bash
# One command: install what is missing, build, run the course's first demo.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
tools/build.sh
exec build/luaio scripts/async_vs_sync.lua "$@"
