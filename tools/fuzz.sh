#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into build-fuzz/ (or
# $FUZZ_BUILD_DIR) and runs each for FUZZ_SECONDS (default 60), starting
# from the seed corpus in fuzz/corpus/. Any crash, sanitizer report or
# failed check stops with an error; the input that caused it is left in
# <build dir>/findings/.
#   tools/fuzz.sh [target...]     targets: http_head chunk_size reader copier tls_glue json ws_frame resp pg_wire
set -euo pipefail
cd "$(dirname "$0")/.."
export FUZZ_BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
b=$FUZZ_BUILD_DIR
tools/deps.sh clang
# libFuzzer's runtime comes with clang's compiler-rt package (a Recommends)
if ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  tools/deps.sh "libclang-rt-$(clang --version | sed -n 's/.*version \([0-9]*\).*/\1/p' | head -1)-dev"
fi
CC=clang cmake -S . -B "$b" -DLUAIO_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(http_head chunk_size reader copier tls_glue json ws_frame resp pg_wire)
cmake --build "$b" -j"$(nproc)" --target "${targets[@]/#/fuzz_}" >/dev/null
mkdir -p $b/findings
for t in "${targets[@]}"; do
  work=$b/corpus/$t
  mkdir -p "$work"
  echo "fuzz_$t: ${FUZZ_SECONDS:-60} s"
  $b/fuzz_$t -max_total_time="${FUZZ_SECONDS:-60}" -print_final_stats=1 \
    -artifact_prefix=$b/findings/$t- "$work" fuzz/corpus/$t 2>$b/fuzz_$t.log \
    || { tail -40 $b/fuzz_$t.log; echo "fuzz_$t: FAILED (input in $b/findings/)"; exit 1; }
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" $b/fuzz_$t.log | tr '\n' ' '
  echo
done
