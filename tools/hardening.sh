#!/usr/bin/env bash
# The hardening stage: the spec suite under ASan+UBSan, the core specs under
# valgrind memcheck, every fuzz target for FUZZ_SECONDS, and the HTTP load and
# soak test. tools/test.sh runs it after the normal suite (skip with --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh valgrind clang wrk
echo "== ASan+UBSan: the whole suite"
tools/sanitize.sh
echo "== valgrind memcheck: the specs of the core, streams, TLS, HTTP and system"
LUAIO_VALGRIND=1 valgrind --quiet --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite \
  --suppressions=tools/valgrind.supp \
  build/luaio /usr/bin/busted --output=plainTerminal spec/core_spec.lua spec/combinators_spec.lua \
  spec/sync_spec.lua spec/queue_spec.lua spec/stream_spec.lua spec/http_server_spec.lua \
  spec/http_client_spec.lua spec/system_spec.lua spec/hardening_spec.lua spec/tls_spec.lua \
  spec/guarantees_spec.lua spec/lifetime_spec.lua spec/nul_spec.lua spec/argcheck_spec.lua \
  spec/json_spec.lua spec/http_form_spec.lua spec/http_cookies_spec.lua spec/http_client_more_spec.lua \
  spec/ws_frame_spec.lua spec/redis_spec.lua spec/pg_spec.lua spec/testing_spec.lua \
  spec/process_stdio_spec.lua spec/monitor_spec.lua spec/debug_report_spec.lua
echo "== fuzzing"
# 30 s a target here (nine targets); FUZZ_SECONDS=3600 tools/fuzz.sh for a long run
FUZZ_SECONDS=${FUZZ_SECONDS:-30} tools/fuzz.sh
echo "== load and soak"
(
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  limit=$(ulimit -n)
  # 10,000 idle connections need as many descriptors on each side
  if [ "$limit" != unlimited ] && [ "$limit" -lt 12000 ]; then
    export LOAD_IDLE=$((limit - 2000 > 100 ? limit - 2000 : 100))
    echo "descriptor limit $limit: holding $LOAD_IDLE idle connections instead of 10,000"
  fi
  build/luaio bench/load.lua
)
