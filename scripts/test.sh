#!/usr/bin/env bash
# The whole test suite: unit tests and kernel tests (root; each kernel test builds
# its own network namespaces and never touches the host's ruleset).
# Usage: sudo scripts/test.sh        (CI=true turns a kernel-test skip into a failure)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build=${JITD_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j"$(nproc)"
# Kernel tests mostly sleep on timeouts, so they run side by side.
ctest --test-dir "$build" --output-on-failure --timeout 600 -j "${JITD_TEST_JOBS:-6}"
