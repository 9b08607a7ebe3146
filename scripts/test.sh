#!/usr/bin/env bash
# The whole test suite, as CI runs it (root; each kernel test builds its own network namespaces
# and never touches the host's ruleset):
#   1. build/       the plain build: unit tests, kernel tests, the no-shell check (ctest);
#   2. build-package/ the Debian package (scripts/package.sh), checked without installing it
#                   (tests/package/check_package.py); later steps find its path in $deb;
#   3. build-vm/    a Debian 12 VM on its stock Linux 6.1 (tests/vm/run, qemu): the package
#                   installed, granted, restarted, rebooted and removed there; the Ansible
#                   example; this build's C++ kernel tests and a named subset of the Python
#                   ones in the guest (tests/vm/ci-subset; tests/vm/run --full runs them all);
#   4. build-asan/  one clang build with ASan + UBSan and libFuzzer's instrumentation, for two
#                   steps: the libFuzzer harnesses, each for JITD_FUZZ_SECONDS (10) over its
#                   corpus (findings go to build-asan/fuzz/findings/<harness>/); then the unit
#                   tests and the kernel tests labelled `sanitize`, where any sanitizer report
#                   (also from a jitd a kernel test started) fails the step.
# Every step runs even when an earlier one failed; the exit status is non-zero if any did.
# Usage: sudo scripts/test.sh   (CI=true turns a kernel-test skip or a missing clang into a
# failure; JITD_SANITIZERS=0 skips the fuzzers and sanitizers, JITD_PACKAGE=0 the package and
# the VM, JITD_VM=0 the VM)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
root=$PWD
jobs=$(nproc)
build=${JITD_BUILD_DIR:-build}
failed=()

# step <name> <function>: runs it, says how long it took, remembers a failure. The functions
# chain their commands with && / || return: `set -e` does not apply inside an `if`.
step() {
  local name=$1 start=$SECONDS status=0
  echo "=== $name"
  "$2" || status=$?
  if [ "$status" -eq 0 ]; then
    echo "=== $name: passed in $((SECONDS - start)) s"
  else
    echo "=== $name: FAILED (exit $status) after $((SECONDS - start)) s" >&2
    failed+=("$name")
  fi
}

plain_tests() {
  # Kernel tests mostly sleep on timeouts, so they run side by side.
  ctest --test-dir "$build" --output-on-failure --timeout 600 -j "${JITD_TEST_JOBS:-6}"
}

deb=''
package() {
  local built
  # package.sh's last line of stdout is the .deb's path.
  built=$(scripts/package.sh "$root/build-package" | tail -n 1) || return
  export deb=$built
  tests/package/check_package.py "$deb"
}

# Both sanitizer steps share build-asan/: one instrumented build instead of two (clang compiles
# it in about a quarter of gcc's time with -fsanitize=address,undefined).
sanitized_build() {
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DJITD_SANITIZE=ON -DJITD_FUZZ=ON >/dev/null
}

fuzz() {
  sanitized_build &&
    scripts/fuzz.sh --build build-asan --out build-asan/fuzz "${JITD_FUZZ_SECONDS:-10}"
}

asan() {
  sanitized_build && cmake --build build-asan -j"$jobs" || return
  local logs=$root/build-asan/sanitizer-logs status=0
  rm -rf "$logs" && mkdir -p "$logs" || return
  # log_path: a jitd started by a kernel test writes its report here, not to a log its test
  # deletes; the step fails on any report, whatever the test's own verdict.
  ASAN_OPTIONS="log_path=$logs/asan:detect_leaks=1:strict_init_order=1:detect_stack_use_after_return=1" \
    UBSAN_OPTIONS="log_path=$logs/ubsan:print_stacktrace=1:halt_on_error=1" \
    ctest --test-dir build-asan -L '^(unit|sanitize)$' --output-on-failure --timeout 900 \
    -j "${JITD_TEST_JOBS:-6}" || status=$?
  if compgen -G "$logs/*" >/dev/null; then
    echo "sanitizer reports:" >&2
    for report in "$logs"/*; do echo "--- $report" >&2; cat "$report" >&2; done
    status=1
  fi
  return "$status"
}

vm() {
  # The package step's .deb; the guest runs this build's kernel tests.
  if [ -z "${deb:-}" ]; then
    echo "no package to install in the VM (the package step failed or JITD_PACKAGE=0)" >&2
    return 1
  fi
  tests/vm/run --deb "$deb" --build "$build"
}

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j"$jobs"
step "tests (plain build)" plain_tests

if [ "${JITD_PACKAGE:-1}" != 0 ]; then
  step "package (scripts/package.sh, tests/package)" package
fi

if [ "${JITD_PACKAGE:-1}" != 0 ] && [ "${JITD_VM:-1}" != 0 ]; then
  step "Debian 12 VM on Linux 6.1 (tests/vm/run)" vm
fi

if [ "${JITD_SANITIZERS:-1}" != 0 ]; then
  if command -v clang++ >/dev/null && command -v clang >/dev/null; then
    step "fuzzers (build-asan, ${JITD_FUZZ_SECONDS:-10} s each)" fuzz
    step "ASan + UBSan tests (build-asan)" asan
  elif [ "${CI:-}" = true ]; then
    echo "=== sanitizers: clang not found (Debian packages clang, libclang-rt-14-dev)" >&2
    failed+=("sanitizers: no clang")
  else
    echo "=== sanitizers: skipped, clang not found (scripts/install-deps.sh installs it)"
  fi
fi

if [ ${#failed[@]} -ne 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "all passed"
