"""Shared pieces of the jitd benchmarks in tests/bench (Python 3 standard library only).

One throw-away network namespace with jitd running in it (JitdNamespace), a helper process
re-invoked inside that namespace that answers one JSON line per command (NamespaceHelper),
jitd's HTTP API over its Unix socket (Client), and the statistics and machine description the
reports share. `guarded_run` deletes the namespace and the temporary directory at the end, also
on an error, Ctrl-C, SIGTERM or SIGHUP.
"""
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_JITD = os.environ.get("JITD_BIN") or os.path.join(REPO, "build", "jitd")

PORT, PROTO = 22, "tcp"

POLICY = """ports:
  - number: 22
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
"""


def now_ns():
    return time.perf_counter_ns()


def spawn(argv):
    """Wall-clock ns of one process, from spawn to exit; raises when it fails."""
    started = now_ns()
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    elapsed = now_ns() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr.decode().strip()}")
    return elapsed


def run(argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True)


def progress(text):
    print(f"# {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# A helper inside the namespace: the calling script re-invoked with --helper under
# `ip netns exec`; one command per stdin line, one JSON reply per line.
# ---------------------------------------------------------------------------------------------
def helper_loop(handle):
    """Body of the helper: handle(words) -> dict; an exception becomes {"error": ...}."""
    for line in sys.stdin:
        try:
            reply = handle(line.split())
        except Exception as error:  # reported to the outer script, which stops the run
            reply = {"error": f"{type(error).__name__}: {error}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


class NamespaceHelper:
    def __init__(self, ns, children, script):
        # Own session: a terminal Ctrl-C reaches only the outer script, which then stops this.
        self.process = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(script),
                                         "--helper"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                        start_new_session=True)
        children.append(self.process)

    def request(self, *words):
        self.process.stdin.write(" ".join(map(str, words)) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"namespace helper exited ({self.process.poll()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"namespace helper: {reply['error']}")
        return reply

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=10)


# ---------------------------------------------------------------------------------------------
# jitd over its Unix socket.
# ---------------------------------------------------------------------------------------------
class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


class Client:
    # jitd closes a connection idle for 10 s (MHD_OPTION_CONNECTION_TIMEOUT in agent/api/server.cpp);
    # the persistent connection is reopened, outside the timed part, after this much idleness.
    REOPEN_AFTER_IDLE_S = 5

    def __init__(self, path, persistent):
        self.path = path
        self.persistent = persistent
        self.connection = None
        self.last_used = 0.0

    def call(self, method, route, body=None):
        """(status, reply, ns); the time covers connect (if new), send, jitd's work, full reply."""
        payload = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if payload else {}
        if self.persistent and (self.connection is None
                                or time.monotonic() - self.last_used > self.REOPEN_AFTER_IDLE_S):
            self.close()
            self.connection = UnixHTTPConnection(self.path)
            self.connection.connect()
        started = now_ns()
        connection = self.connection or UnixHTTPConnection(self.path)
        try:
            connection.request(method, route, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (http.client.HTTPException, OSError):
            connection.close()
            raise
        finally:
            if not self.persistent:
                connection.close()
        elapsed = now_ns() - started
        self.last_used = time.monotonic()
        return response.status, json.loads(data) if data else None, elapsed

    def grant(self, address, duration):
        status, reply, elapsed = self.call("POST", "/v1/grants", {
            "ports": [{"number": PORT, "protocol": PROTO}],
            "allowedSourceAddressPrefix": address, "duration": duration,
            "justification": "bench"})
        if status != 201:
            raise RuntimeError(f"POST /v1/grants {address}: {status} {reply}")
        return reply["id"], elapsed

    def revoke(self, grant_id):
        status, reply, elapsed = self.call("DELETE", f"/v1/grants/{grant_id}")
        if status != 200:
            raise RuntimeError(f"DELETE /v1/grants/{grant_id}: {status} {reply}")
        return elapsed

    def close(self):
        if self.connection:
            self.connection.close()
            self.connection = None


# ---------------------------------------------------------------------------------------------
# The namespace, jitd in it, and the cleanup.
# ---------------------------------------------------------------------------------------------
class JitdNamespace:
    """One network namespace `<prefix>-<8 hex>` and one temporary directory, with jitd running
    in the namespace under `ip netns exec` with a temporary config and the tcp/22 policy (or
    `policy`, a policy file's text)."""

    def __init__(self, jitd_binary, prefix="jitd-bench", log_level="info", extra_config="", policy=POLICY):
        self.jitd_binary = jitd_binary
        self.policy = policy
        self.log_level = log_level
        self.extra_config = extra_config
        self.ns = f"{prefix}-{secrets.token_hex(4)}"
        self.dir = None
        self.ns_created = False
        self.children = []
        self.log_path = None
        self.jitd = None

    def in_ns(self, *argv):
        return run(["ip", "netns", "exec", self.ns, *argv])

    def setup(self):
        self.dir = tempfile.mkdtemp(prefix=f"{self.ns.rsplit('-', 1)[0]}-")
        run(["ip", "netns", "add", self.ns])
        self.ns_created = True
        self.in_ns("ip", "link", "set", "lo", "up")
        os.makedirs(os.path.join(self.dir, "policies.d"))
        with open(os.path.join(self.dir, "policies.d", "10-bench.yaml"), "w") as f:
            f.write(self.policy)
        self.socket = os.path.join(self.dir, "jitd.sock")
        self.config = os.path.join(self.dir, "jitd.yaml")
        with open(self.config, "w") as f:
            f.write(f"socketPath: {self.socket}\nsocketGroup: ''\n"
                    f"policyDirectory: {self.dir}/policies.d\nstateDirectory: {self.dir}/state\n"
                    f"nftTable: jitd\nlogLevel: {self.log_level}\n{self.extra_config}")

    def start_jitd(self):
        self.log_path = os.path.join(self.dir, "jitd.log")
        with open(self.log_path, "w") as log:
            # Own session: a terminal Ctrl-C reaches only this script, which then stops jitd.
            self.jitd = subprocess.Popen(["ip", "netns", "exec", self.ns, self.jitd_binary, "--config", self.config],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.children.append(self.jitd)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.jitd.poll() is not None:
                raise RuntimeError(f"jitd exited with {self.jitd.returncode}:\n{self.log_tail()}")
            try:
                if Client(self.socket, False).call("GET", "/v1/policy")[0] == 200:
                    return
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"jitd did not answer on {self.socket}:\n{self.log_tail()}")

    def jitd_running(self):
        return self.jitd is not None and self.jitd.poll() is None

    def jitd_state(self):
        if self.jitd is None:
            return "not started"
        return "running" if self.jitd_running() else f"exited with {self.jitd.returncode}"

    def log_tail(self, lines=20):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-lines:])
        except (OSError, TypeError):
            return ""

    def stop_children(self):
        """Stops every process this bench started (jitd, helpers, load generators), newest
        first; those already gone are skipped, so it may run more than once."""
        for process in reversed(self.children):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(timeout=5)
                except ProcessLookupError:
                    pass
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

    def find_connect_rate(self, given):
        """tests/bench/connect_rate.c's binary: `given`, $JITD_CONNECT_RATE or the build's, else
        compiled with cc into the bench's directory."""
        for candidate in (given, os.environ.get("JITD_CONNECT_RATE"),
                          os.path.join(REPO, "build", "tests", "jitd_connect_rate")):
            if candidate and os.access(candidate, os.X_OK):
                return os.path.abspath(candidate)
        compiler = shutil.which("cc") or shutil.which("gcc")
        if not compiler:
            raise RuntimeError("no connect_rate binary (build the jitd_connect_rate target) and no cc to build one")
        out = os.path.join(self.dir, "connect_rate")
        run([compiler, "-O2", "-o", out, os.path.join(os.path.dirname(os.path.abspath(__file__)), "connect_rate.c")])
        return out

    def cleanup(self):
        self.stop_children()
        if self.ns_created:
            result = subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, text=True)
            if result.returncode != 0:
                print(f"WARNING: could not delete namespace {self.ns}: {result.stderr.strip()}", file=sys.stderr)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


# What the benchmarks run or read, each with the Debian package that provides it
# (scripts/install-deps.sh installs them all); nft reads "tcp" through /etc/protocols.
REQUIREMENTS = (("ip", "iproute2"), ("nft", "nftables"), ("/etc/protocols", "netbase"))


class ClientServerNamespaces(JitdNamespace):
    """jitd's namespace (the server) and a client namespace `<ns>-c`, joined by a veth pair,
    for benchmarks that send traffic; multiprocessing children in `procs` are stopped too."""

    def __init__(self, jitd_binary, prefix, log_level, policy):
        super().__init__(jitd_binary, prefix=prefix, log_level=log_level, policy=policy)
        self.client_ns = f"{self.ns}-c"
        self.client_ns_created = False
        tag = self.ns.rsplit("-", 1)[1]
        self.server_if, self.client_if = f"vs{tag}", f"vc{tag}"
        self.procs = []  # multiprocessing children (cleanup() stops the Popen ones)

    def setup_pair(self, server_ip, client_ip):
        """The client namespace and the veth pair, each end with its /24 address and up; the
        client may use every port above 1023 (connection floods)."""
        run(["ip", "netns", "add", self.client_ns])
        self.client_ns_created = True
        run(["ip", "link", "add", self.server_if, "netns", self.ns, "type", "veth", "peer", "name",
             self.client_if, "netns", self.client_ns])
        for ns, ifname, address in ((self.ns, self.server_if, server_ip),
                                    (self.client_ns, self.client_if, client_ip)):
            run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"])
            run(["ip", "netns", "exec", ns, "ip", "addr", "add", f"{address}/24", "dev", ifname])
            run(["ip", "netns", "exec", ns, "ip", "link", "set", ifname, "up"])
        subprocess.run(["ip", "netns", "exec", self.client_ns, "sysctl", "-q", "-w",
                        "net.ipv4.ip_local_port_range=1024 65535"], capture_output=True)

    def stop_procs(self):
        for process in self.procs:
            if process.is_alive():
                process.terminate()
                process.join(5)
                if process.is_alive():
                    process.kill()
                    process.join()

    def cleanup(self):
        self.stop_procs()
        try:
            super().cleanup()
        finally:
            if self.client_ns_created:
                subprocess.run(["ip", "netns", "del", self.client_ns], capture_output=True)
                print(f"# namespace {self.client_ns} deleted", file=sys.stderr)


def refuse_without_root(script, why):
    """None as root; else prints why and returns the exit status: 1 under CI=true (where a
    benchmark smoke test that cannot run is a failure), 77 (ctest's skip) elsewhere."""
    if os.geteuid() == 0:
        return None
    if os.environ.get("CI") == "true":
        print(f"FAIL: cannot run under CI: {script} needs root: {why}", file=sys.stderr)
        return 1
    print(f"SKIP: {script} needs root: {why} (sudo python3 tests/bench/{script})", file=sys.stderr)
    return 77


def check_environment(script, jitd_binary):
    """None when root, REQUIREMENTS and the jitd binary are there; else an exit status (message printed)."""
    if os.geteuid() != 0:
        print(f"run as root: it creates a network namespace (sudo python3 {script})", file=sys.stderr)
        return 2
    for name, package in REQUIREMENTS:
        kind, present = (("file", os.path.exists(name)) if os.path.isabs(name)
                         else ("program", shutil.which(name) is not None))
        if not present:
            print(f"missing {kind} '{name}' (Debian package {package}): run scripts/install-deps.sh",
                  file=sys.stderr)
            return 2
    if not os.access(jitd_binary, os.X_OK):
        print(f"no jitd binary at {jitd_binary}; build it: cmake --build build --target jitd", file=sys.stderr)
        return 2
    return None


def guarded_run(bench, body):
    """(status, result of body(bench)): the namespace and directory go away whatever happens."""
    def interrupted(signum, frame):  # SIGTERM/SIGHUP behave like Ctrl-C: the finally below runs
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)
    try:
        progress(f"namespace {bench.ns}")
        return 0, body(bench)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130, None
    except Exception:
        print(f"# failed; jitd {bench.jitd_state()}; last lines of its log:\n{bench.log_tail()}", file=sys.stderr)
        raise
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # cleanup is not interruptible
            signal.signal(signum, signal.SIG_IGN)
        bench.cleanup()
        print(f"# namespace {bench.ns} deleted, temporary directory removed", file=sys.stderr)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)


def bench_main(script, args, helper_handler, make_bench, finish):
    """The main() both benchmarks share: helper mode (re-invoked inside the namespace), the
    environment check, the guarded run, and the total time. finish(results, machine_info)
    prints the report and writes --json."""
    if args.helper:
        return helper_loop(helper_handler())
    args.jitd = os.path.abspath(args.jitd)
    failed = check_environment(script, args.jitd)
    if failed is not None:
        return failed

    def body(bench):
        bench.setup()
        bench.start_jitd()
        results = bench.measure()
        return results, machine(bench.dir)

    started = time.monotonic()
    status, outcome = guarded_run(make_bench(args), body)
    if status:
        return status
    finish(*outcome)
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0


# ---------------------------------------------------------------------------------------------
# Statistics and the machine.
# ---------------------------------------------------------------------------------------------
def percentile(samples, q):
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[rank - 1]


def summary(samples_ns):
    ms = [s / 1e6 for s in samples_ns]
    return {"n": len(ms), "median": statistics.median(ms), "p90": percentile(ms, 90), "p99": percentile(ms, 99),
            "max": max(ms)}


def fmt(value):
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def machine(state_dir):
    def command(*argv):
        try:
            return subprocess.run(list(argv), capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(), "nft": command("nft", "--version"),
            "python": platform.python_version(), "state_fs": filesystem_of(state_dir), "loadavg_at_end": loadavg()}


def filesystem_of(path):
    best, kind = "", "?"
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                device, mount, fstype = line.split()[:3]
                if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                    best, kind = mount, f"{fstype} ({device} on {mount})"
    except OSError:
        pass
    return kind
