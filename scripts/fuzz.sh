#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang, -DJITD_FUZZ=ON, in build-fuzz/) and runs each for
# SECONDS over its seed corpus (tests/fuzz/corpus/<harness>/, only read) and what earlier runs
# in OUT found (OUT/corpus/<harness>/, grown by this run).
#   OUT/findings/<harness>/   crash-*, leak-*, timeout-*, oom-*: inputs that failed
#   OUT/logs/<harness>.log    libFuzzer's output
# Exit status non-zero when any harness found something. Replay a finding:
#   build-fuzz/tests/fuzz/fuzz_<harness> OUT/findings/<harness>/crash-...
# Usage: scripts/fuzz.sh [--out DIR] [--build DIR] SECONDS [HARNESS...]
#   e.g. scripts/fuzz.sh 3600 router      (default OUT: fuzz-out/; harnesses: all four)
set -euo pipefail
cd "$(dirname "$0")/.."
out=fuzz-out
build=build-fuzz
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
seconds=${1:?usage: scripts/fuzz.sh [--out DIR] [--build DIR] SECONDS [HARNESS...]}
shift
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(policy main_config router parsers)

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DJITD_FUZZ=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target jitd_fuzzers

failed=()
for harness in "${harnesses[@]}"; do
  corpus=$out/corpus/$harness findings=$out/findings/$harness log=$out/logs/$harness.log
  mkdir -p "$corpus" "$findings" "$(dirname "$log")"
  start=$SECONDS
  # The first corpus folder receives new inputs, so the committed seeds come second.
  if "$build/tests/fuzz/fuzz_$harness" -max_total_time="$seconds" -timeout=10 \
      -artifact_prefix="$findings/" -print_final_stats=1 "$corpus" "tests/fuzz/corpus/$harness" \
      >"$log" 2>&1; then
    echo "fuzz_$harness: $(grep -Eo '#[0-9]+' "$log" | tail -1 | tr -d '#') runs in" \
      "$((SECONDS - start)) s, no finding"
  else
    echo "fuzz_$harness: FOUND SOMETHING after $((SECONDS - start)) s; log $log:" >&2
    tail -n 60 "$log" >&2
    ls -l "$findings" >&2
    failed+=("$harness")
  fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz findings in: ${failed[*]} (see $out/findings/)" >&2; exit 1; }
