#!/usr/bin/env python3
"""Runs the project's kernel tests inside the VM guest and writes one result per test.

    guest-tests.py DIR [--python ENTRY ...] [--jobs 4] [--timeout S]

DIR holds bin/ (jitd, jitctl, jitd_*_test) and kernel/ (tests/kernel/*.py). The C++ tests run
one binary at a time (they create namespaces and read the kernel; two in parallel would only
compete for the two emulated CPUs), the Python ones `--jobs` at a time (they are sleep-bound).
A Python ENTRY is a module, run against the nftables backend, or MODULE@VARIANT: MODULE@ebpf
runs it against the eBPF backend at tc ingress, MODULE@xdp at XDP (the environment lab.py
reads, as tests/kernel/CMakeLists.txt's kernel.ebpf.* and kernel.xdp.* entries set it). A
variant's test ids carry its name as a prefix, so the runs of one module stay distinct:
`ebpf:test_blocking.Blocking.test_x`, `xdp:test_blocking.Blocking.test_x`.
Results go to DIR/results.json: {"listed": [ids], "results": {id: {"status", "detail"}}},
status one of passed, failed, skipped, timeout. "listed" is what each binary and module says it
contains, so the host can tell a test that never ran from one that passed.
Python 3 standard library only: the guest has nothing else.
"""
import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time
import unittest

# MODULE@VARIANT -> what the variant's child process gets in its environment (lab.py reads it).
VARIANTS = {
    "ebpf": {"JITD_TEST_BACKEND": "ebpf", "JITD_TEST_ATTACH": "tc"},
    "xdp": {"JITD_TEST_BACKEND": "ebpf", "JITD_TEST_ATTACH": "xdp"},
}


def split_entry(entry):
    """'test_x@ebpf' -> ('test_x', 'ebpf'); 'test_x' -> ('test_x', None)."""
    module, _, variant = entry.partition("@")
    if variant and variant not in VARIANTS:
        raise SystemExit(f"unknown variant in {entry!r}: one of {sorted(VARIANTS)}")
    return module, variant or None


def id_prefix(entry):
    """What the entry's test ids start with: 'test_x' or 'ebpf:test_x' (tests/vm/run matches
    allowed-skips patterns against the prefixed ids)."""
    module, variant = split_entry(entry)
    return f"{variant}:{module}" if variant else module


def run_one_module(entry, out):
    """In a child process (whose environment has the entry's variant): runs one test module
    like `python3 -m unittest -v MODULE` and records each test's outcome under its prefixed id
    (the verbose text output is not a stable format to parse)."""
    sys.path.insert(0, os.getcwd())  # the test modules and lab.py, as `python3 -m unittest`
    module, variant = split_entry(entry)
    prefix = f"{variant}:" if variant else ""
    results = {}

    class Recording(unittest.TextTestResult):
        def addSuccess(self, test):
            super().addSuccess(test)
            results[prefix + test.id()] = {"status": "passed", "detail": ""}

        def addFailure(self, test, err):
            super().addFailure(test, err)
            results[prefix + test.id()] = {"status": "failed", "detail": self._exc_info_to_string(err, test)}

        def addError(self, test, err):
            super().addError(test, err)
            # setUpClass/module errors come as _ErrorHolder: charge them to the module.
            results[prefix + getattr(test, "id", lambda: str(test))()] = {
                "status": "failed", "detail": self._exc_info_to_string(err, test)}

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            results[prefix + test.id()] = {"status": "skipped", "detail": reason}

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)
            results[prefix + test.id()] = {"status": "passed", "detail": "expected failure"}

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            results[prefix + test.id()] = {"status": "failed", "detail": "unexpected success"}

    suite = unittest.defaultTestLoader.loadTestsFromName(module)
    unittest.TextTestRunner(verbosity=2, resultclass=Recording, stream=sys.stdout).run(suite)
    with open(out, "w") as f:
        json.dump(results, f)


def list_module(entry):
    """The entry's test ids. The ids do not depend on the backend (skips are decided when a
    test runs), so listing in this process, whatever its environment, is right."""
    module, variant = split_entry(entry)
    prefix = f"{variant}:" if variant else ""
    suite = unittest.defaultTestLoader.loadTestsFromName(module)
    ids = []

    def walk(node):
        for item in node:
            if isinstance(item, unittest.TestSuite):
                walk(item)
            else:
                ids.append(prefix + item.id())
    walk(suite)
    return ids


def run_gtest(binary, directory, timeout):
    """One C++ test binary with JSON output; test ids are BINARY/Suite.Name."""
    name = os.path.basename(binary)
    listing = subprocess.run([binary, "--gtest_list_tests"], capture_output=True, text=True)
    listed, suite = [], ""
    for line in listing.stdout.splitlines():
        if not line.strip() or line.startswith(("Running", "Note")):
            continue
        if not line.startswith(" "):
            suite = line.split("#")[0].strip()
        else:
            listed.append(f"{name}/{suite}{line.split('#')[0].strip()}")
    report = os.path.join(directory, f"{name}.json")
    started = time.monotonic()
    with open(os.path.join(directory, f"{name}.log"), "w") as log:
        try:
            done = subprocess.run([binary, f"--gtest_output=json:{report}"], stdout=log,
                                  stderr=subprocess.STDOUT, timeout=timeout)
            code = done.returncode
        except subprocess.TimeoutExpired:
            code = None
    # gtest's JSON report has no skip message; its text output has "file:line: Skipped" and the
    # message on the lines before "[  SKIPPED ] Suite.Name".
    skip_messages, message = {}, None
    with open(os.path.join(directory, f"{name}.log"), errors="replace") as log:
        lines = log.read().splitlines()
    for number, line in enumerate(lines):
        if line.endswith(": Skipped") and number + 1 < len(lines):
            message = lines[number + 1].strip()
        elif line.startswith("[  SKIPPED ] ") and message is not None:
            skip_messages[line[len("[  SKIPPED ] "):].split(" (")[0].strip()] = message
            message = None
    results = {}
    if os.path.exists(report):
        for test_suite in json.load(open(report)).get("testsuites", []):
            for case in test_suite.get("testsuite", []):
                test_id = f"{name}/{test_suite['name']}.{case['name']}"
                if case.get("failures"):
                    detail = "\n".join(f.get("failure", "") for f in case["failures"])
                    results[test_id] = {"status": "failed", "detail": detail}
                elif case.get("result") == "SKIPPED" or case.get("status") == "NOTRUN":
                    message = skip_messages.get(f"{test_suite['name']}.{case['name']}", "")
                    results[test_id] = {"status": "skipped", "detail": message}
                else:
                    results[test_id] = {"status": "passed", "detail": ""}
    for test_id in listed:
        if test_id not in results:
            results[test_id] = {"status": "timeout" if code is None else "failed",
                                "detail": f"no result (binary exit {code})"}
    print(f"{name}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
    return listed, results


def run_module(entry, directory, env, timeout):
    """One entry in a child process; its log and results are out/ENTRY.log and .json."""
    out = os.path.join(directory, f"{entry}.json")
    started = time.monotonic()
    _, variant = split_entry(entry)
    env = {**env, **VARIANTS.get(variant, {})}
    with open(os.path.join(directory, f"{entry}.log"), "w") as log:
        try:
            subprocess.run([sys.executable, os.path.abspath(__file__), "--one", entry, out],
                           cwd=os.path.join(os.path.dirname(directory), "kernel"), env=env,
                           stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
            code = 0
        except subprocess.TimeoutExpired:
            code = None
    results = json.load(open(out)) if os.path.exists(out) else {}
    print(f"{entry}: {'timeout' if code is None else 'done'} after "
          f"{time.monotonic() - started:.0f} s", flush=True)
    return entry, code, results


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        run_one_module(sys.argv[2], sys.argv[3])
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--python", nargs="*", default=[])
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--timeout", type=int, default=600, help="per binary / module")
    args = parser.parse_args()
    base = os.path.abspath(args.dir)
    out = os.path.join(base, "out")
    os.makedirs(out, exist_ok=True)
    bin_dir = os.path.join(base, "bin")
    env = {**os.environ, "CI": "true", "PYTHONDONTWRITEBYTECODE": "1",
           "JITD_BIN": os.path.join(bin_dir, "jitd"), "JITCTL_BIN": os.path.join(bin_dir, "jitctl"),
           # Under TCG emulation, with --jobs tests at once, loading the eBPF program through
           # 6.1's verifier takes jitd's start past lab.py's 10 s.
           "JITD_TEST_START_SECONDS": "60"}
    os.environ.update(env)  # the C++ binaries read CI too
    listed, results, phases = [], {}, {}

    sys.path.insert(0, os.path.join(base, "kernel"))
    for module in args.python:
        listed += list_module(module)

    started = time.monotonic()
    # Python tests first, in the background (sleep-bound), the C++ ones meanwhile one by one:
    # the C++ ones are CPU-bound, the Python ones mostly wait, so together they fit the 2 CPUs.
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_module, m, out, env, args.timeout) for m in args.python]
        cpp_started = time.monotonic()
        for binary in sorted(os.listdir(bin_dir)):
            if binary.startswith("jitd_") and binary.endswith("_test"):
                names, found = run_gtest(os.path.join(bin_dir, binary), out, args.timeout)
                listed += names
                results.update(found)
        phases["cpp_seconds"] = round(time.monotonic() - cpp_started)
        for future in futures:
            entry, code, found = future.result()
            results.update(found)
            for test_id in listed:
                if test_id.startswith(id_prefix(entry) + ".") and test_id not in results:
                    results[test_id] = {"status": "timeout" if code is None else "failed",
                                        "detail": f"no result from {entry} (see {entry}.log)"}
    phases["all_seconds"] = round(time.monotonic() - started)
    with open(os.path.join(base, "results.json"), "w") as f:
        json.dump({"listed": listed, "results": results, "phases": phases,
                   "kernel": os.uname().release}, f, indent=1)
    print(f"guest tests: {len(results)} results in {phases['all_seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
