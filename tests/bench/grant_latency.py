#!/usr/bin/env python3
"""Grant latency of jitd against a one-`nft`-process-per-grant baseline.

    sudo python3 tests/bench/grant_latency.py --count 500

Python 3 standard library only; needs root, `ip` and `nft`, and a built jitd
(default: build/jitd of this repository; override with --jitd or $JITD_BIN).

Everything happens in ONE throw-away network namespace (jitd-bench-<hex>) that is deleted at
the end, also on failure, Ctrl-C, SIGTERM or SIGHUP. No `nft` ever runs in the machine's own
namespace: jitd runs under `ip netns exec`, and every `nft` is spawned either by
`ip netns exec <ns> nft ...` or by a copy of this script re-invoked inside the namespace.

What is measured, in one run (all times are wall-clock, taken by the process that issues the
request or spawns the process):

  A. N = --count rounds on an empty set (the set grows to N elements, then shrinks back):
     jitd   POST /v1/grants, then DELETE /v1/grants/{id} for each grant, over ONE persistent
            HTTP/1.1 keep-alive connection on jitd's Unix socket (reopened, untimed, after 5 s
            idle, as jitd drops connections idle for 10 s; --per-request: a new connection per
            request, its connect timed). One /32 source per grant, sources two addresses apart
            so no two kernel ranges touch or merge. Each request is one netlink transaction
            whose ACK jitd waits for, plus one audit line written with fdatasync.
     nft    the same element added to / deleted from an identical set in a separate table
            `inet jitdbench` in the same namespace, by one `nft add element` /
            `nft delete element` process per grant, spawned by a helper (this script,
            re-invoked with `ip netns exec`) that already lives in the namespace, so each
            sample is exactly one nft process;
     true   the helper spawning `true`: the cost of creating any process, for scale.
     The three are interleaved request by request (jitd, nft, true, jitd, nft, ...) so the
     drift of a noisy machine hits all of them alike.
  B. --netns-count rounds (default 100) of the naive baseline from the host namespace:
     `ip netns exec <ns> nft add|delete element ...`, and `ip netns exec <ns> true` alone, so
     the baseline can be reported raw and minus the median `ip netns exec` overhead.
  C. --fill (default 10 000) live grants created through jitd's API (their POST latencies are
     kept, bucketed by live-grant count), the same number of live elements loaded into the
     jitdbench set with one `nft -f`, then --big-count rounds (default 100) of A without `true`.
"""
import argparse
import http.client
import ipaddress
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
PORT, PROTO = 22, "tcp"
GRANT_DURATION, NFT_TIMEOUT = "PT5M", "5m"
FILL_DURATION, FILL_TIMEOUT = "PT1H", "1h"
WARMUP = 10

POLICY = """ports:
  - number: 22
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
"""

# The same set as jitd's grants4 (docs/architecture.md), in a table of its own.
BENCH_TABLE = """table inet jitdbench {
  set grants4 { type ipv4_addr . inet_proto . inet_service; flags interval, timeout; }
}
"""

# Every phase draws its sources from its own 2^20-address block of 10.0.0.0/8.
BLOCK_JITD, BLOCK_NFT, BLOCK_NETNS_NFT = 0, 1, 2
BLOCK_JITD_FILL, BLOCK_NFT_FILL, BLOCK_JITD_BIG, BLOCK_NFT_BIG = 3, 4, 5, 6
BLOCK_SIZE = 1 << 20
MAX_PER_BLOCK = BLOCK_SIZE // 2


def source(block, i):
    """The i-th source of a block: 10.x.y.z at odd offsets only, so no two are adjacent."""
    return str(ipaddress.IPv4Address(0x0A000000 + block * BLOCK_SIZE + 2 * i + 1))


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


def nft_add_argv(address):
    return ["nft", "add", "element", "inet", "jitdbench", "grants4",
            f"{{ {address} . {PROTO} . {PORT} timeout {NFT_TIMEOUT} }}"]


def nft_delete_argv(address):
    return ["nft", "delete", "element", "inet", "jitdbench", "grants4",
            f"{{ {address} . {PROTO} . {PORT} }}"]


# ---------------------------------------------------------------------------------------------
# The helper inside the namespace: one command per stdin line, one JSON reply per line.
# ---------------------------------------------------------------------------------------------
def helper_main():
    for line in sys.stdin:
        words = line.split()
        try:
            if words[0] == "add":
                reply = {"ns": spawn(nft_add_argv(words[1]))}
            elif words[0] == "delete":
                reply = {"ns": spawn(nft_delete_argv(words[1]))}
            elif words[0] == "true":
                reply = {"ns": spawn(["true"])}
            elif words[0] == "fill":  # fill <block> <count>: one nft -f for all elements
                block, count = int(words[1]), int(words[2])
                with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as f:
                    f.write("add element inet jitdbench grants4 {\n")
                    f.write(",\n".join(f"  {source(block, i)} . {PROTO} . {PORT} timeout {FILL_TIMEOUT}"
                                       for i in range(count)))
                    f.write("\n}\n")
                try:
                    reply = {"ns": spawn(["nft", "-f", f.name])}
                finally:
                    os.unlink(f.name)
            else:
                reply = {"error": f"unknown command {line.strip()!r}"}
        except Exception as error:  # reported to the outer script, which stops the run
            reply = {"error": str(error)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


class Helper:
    def __init__(self, ns, children):
        # Own session: a terminal Ctrl-C reaches only the outer script, which then stops this.
        self.process = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__),
                                         "--helper"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                        start_new_session=True)
        children.append(self.process)

    def __call__(self, *words):
        self.process.stdin.write(" ".join(map(str, words)) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"namespace helper exited ({self.process.poll()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"namespace helper: {reply['error']}")
        return reply["ns"]

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
# Statistics and report.
# ---------------------------------------------------------------------------------------------
def percentile(samples, q):
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[rank - 1]


def summary(samples_ns):
    ms = [s / 1e6 for s in samples_ns]
    return {"n": len(ms), "median": statistics.median(ms), "p90": percentile(ms, 90), "p99": percentile(ms, 99)}


def fmt(value):
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


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
    try:
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
    except OSError:
        load = "?"
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(), "nft": command("nft", "--version"),
            "python": platform.python_version(), "state_fs": filesystem_of(state_dir), "loadavg_at_end": load}


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


def report(results, args, info):
    a = args
    connection = ("a new Unix-socket connection per request" if a.per_request
                  else "one persistent keep-alive Unix-socket connection")
    lines = [
        f"machine: nproc {info['nproc']} ({info['cpu']}), kernel {info['kernel']}, {info['nft']}, "
        f"python {info['python']}, load average at end {info['loadavg_at_end']}",
        f"jitd: {connection}; audit log (fdatasync per request) on {info['state_fs']}",
        f"fill: {a.fill} grants through jitd's API took {results['jitd_fill_s']:.1f} s; "
        f"{a.fill} elements with one `nft -f` took {results['nft_fill_s']:.2f} s",
        "",
        "| what | live elements before | n | median ms | p90 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    rows = [
        ("jitd POST /v1/grants", "0 … N-1", "jitd_add"),
        ("jitd DELETE /v1/grants/{id}", "N … 1", "jitd_delete"),
        ("nft add element (1 process, spawned in the ns)", "0 … N-1", "nft_add"),
        ("nft delete element (1 process, spawned in the ns)", "N … 1", "nft_delete"),
        ("`true` (1 process, spawned in the ns)", "—", "true"),
        ("`ip netns exec <ns> nft add element` (raw)", "0 … n-1", "netns_nft_add"),
        ("`ip netns exec <ns> nft delete element` (raw)", "n … 1", "netns_nft_delete"),
        ("`ip netns exec <ns> true`", "—", "netns_true"),
        ("jitd POST /v1/grants", f"{a.fill} + (0 … n-1)", "big_jitd_add"),
        ("jitd DELETE /v1/grants/{id}", f"{a.fill} + (n … 1)", "big_jitd_delete"),
        ("nft add element (1 process, spawned in the ns)", f"{a.fill} + (0 … n-1)", "big_nft_add"),
        ("nft delete element (1 process, spawned in the ns)", f"{a.fill} + (n … 1)", "big_nft_delete"),
    ]
    stats = {key: summary(results[key]) for _, _, key in rows}
    for label, size, key in rows:
        s = stats[key]
        lines.append(f"| {label} | {size} | {s['n']} | {fmt(s['median'])} | {fmt(s['p90'])} | "
                     f"{fmt(s['p99'])} |")

    overhead = stats["netns_true"]["median"]
    ratio_rows = [
        ("nft spawned in the ns / jitd", "nft", "jitd", 0),
        ("`ip netns exec` nft, raw / jitd", "netns_nft", "jitd", 0),
        ("(`ip netns exec` nft − median `ip netns exec true`) / jitd", "netns_nft", "jitd", overhead),
        (f"nft spawned in the ns / jitd, {a.fill} live", "big_nft", "big_jitd", 0),
        (f"jitd: {a.fill} live / empty", "big_jitd", "jitd", 0),
        (f"nft: {a.fill} live / empty", "big_nft", "nft", 0),
    ]
    lines += ["", "| ratio of medians | add (POST) | delete (DELETE) |", "|---|---|---|"]
    ratios = {}
    for label, numerator, denominator, minus in ratio_rows:
        pair = tuple((stats[f"{numerator}_{op}"]["median"] - minus) / stats[f"{denominator}_{op}"]["median"]
                     for op in ("add", "delete"))
        ratios[label] = pair
        lines.append(f"| {label} | {pair[0]:.1f}× | {pair[1]:.1f}× |")

    fill = results["jitd_fill"]
    if fill:
        buckets = 5
        lines += ["", f"| jitd POST while filling: live grants before | n | median ms | p90 ms |", "|---|---|---|---|"]
        for b in range(buckets):
            lo, hi = len(fill) * b // buckets, len(fill) * (b + 1) // buckets
            if hi > lo:
                s = summary(fill[lo:hi])
                lines.append(f"| {lo} … {hi - 1} | {s['n']} | {fmt(s['median'])} | {fmt(s['p90'])} |")
    return "\n".join(lines), stats, ratios


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------
def run(argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True)


def progress(text):
    print(f"# {text}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args):
        self.args = args
        self.ns = f"jitd-bench-{secrets.token_hex(4)}"
        self.dir = None
        self.ns_created = False
        self.children = []
        self.log_path = None
        self.jitd = None

    def in_ns(self, *argv):
        return run(["ip", "netns", "exec", self.ns, *argv])

    def setup(self):
        self.dir = tempfile.mkdtemp(prefix="jitd-bench-")
        run(["ip", "netns", "add", self.ns])
        self.ns_created = True
        self.in_ns("ip", "link", "set", "lo", "up")
        os.makedirs(os.path.join(self.dir, "policies.d"))
        with open(os.path.join(self.dir, "policies.d", "10-bench.yaml"), "w") as f:
            f.write(POLICY)
        self.socket = os.path.join(self.dir, "jitd.sock")
        self.config = os.path.join(self.dir, "jitd.yaml")
        with open(self.config, "w") as f:
            f.write(f"socketPath: {self.socket}\nsocketGroup: ''\n"
                    f"policyDirectory: {self.dir}/policies.d\nstateDirectory: {self.dir}/state\n"
                    f"nftTable: jitd\nlogLevel: {self.args.log_level}\n")
        table = os.path.join(self.dir, "jitdbench.nft")
        with open(table, "w") as f:
            f.write(BENCH_TABLE)
        self.in_ns("nft", "-f", table)

    def start_jitd(self):
        self.log_path = os.path.join(self.dir, "jitd.log")
        with open(self.log_path, "w") as log:
            # Own session: a terminal Ctrl-C reaches only this script, which then stops jitd.
            self.jitd = subprocess.Popen(["ip", "netns", "exec", self.ns, self.args.jitd, "--config", self.config],
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

    def log_tail(self):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-20:])
        except (OSError, TypeError):
            return ""

    def count_elements(self, table):
        listing = json.loads(self.in_ns("nft", "-j", "list", "set", "inet", table, "grants4").stdout)
        for item in listing["nftables"]:
            if "set" in item:
                return len(item["set"].get("elem", []))
        return 0

    def interleaved(self, client, helper, jitd_block, nft_block, count, with_true):
        """count rounds of (jitd POST, nft add[, true]), then count of (jitd DELETE, nft delete)."""
        out = {"jitd_add": [], "jitd_delete": [], "nft_add": [], "nft_delete": [], "true": []}
        ids = []
        for i in range(count):
            grant_id, elapsed = client.grant(source(jitd_block, i), GRANT_DURATION)
            ids.append(grant_id)
            out["jitd_add"].append(elapsed)
            out["nft_add"].append(helper("add", source(nft_block, i)))
            if with_true:
                out["true"].append(helper("true"))
        for i, grant_id in enumerate(ids):
            out["jitd_delete"].append(client.revoke(grant_id))
            out["nft_delete"].append(helper("delete", source(nft_block, i)))
        return out

    def measure(self):
        a = self.args
        results = {}
        client = Client(self.socket, persistent=not a.per_request)
        helper = Helper(self.ns, self.children)
        try:
            progress(f"warm-up ({WARMUP} rounds, not recorded)")
            self.interleaved(client, helper, BLOCK_JITD, BLOCK_NFT, WARMUP, True)

            progress(f"A: {a.count} rounds of jitd / nft in the ns / true, interleaved, empty sets")
            for key, samples in self.interleaved(client, helper, BLOCK_JITD, BLOCK_NFT, a.count, True).items():
                results[key] = samples

            progress(f"B: {a.netns_count} rounds of ip netns exec (true, nft add) then nft delete")
            prefix = ["ip", "netns", "exec", self.ns]
            results["netns_true"], results["netns_nft_add"], results["netns_nft_delete"] = [], [], []
            for i in range(a.netns_count):
                results["netns_true"].append(spawn(prefix + ["true"]))
                results["netns_nft_add"].append(spawn(prefix + nft_add_argv(source(BLOCK_NETNS_NFT, i))))
            for i in range(a.netns_count):
                results["netns_nft_delete"].append(spawn(prefix + nft_delete_argv(source(BLOCK_NETNS_NFT, i))))

            progress(f"C: filling {a.fill} live grants through jitd's API")
            started = now_ns()
            results["jitd_fill"] = [client.grant(source(BLOCK_JITD_FILL, i), FILL_DURATION)[1]
                                    for i in range(a.fill)]
            results["jitd_fill_s"] = (now_ns() - started) / 1e9
            results["nft_fill_s"] = helper("fill", BLOCK_NFT_FILL, a.fill) / 1e9
            for table in ("jitd", "jitdbench"):
                live = self.count_elements(table)
                if live != a.fill:
                    raise RuntimeError(f"expected {a.fill} elements in inet {table} grants4, found {live}")

            progress(f"C: {a.big_count} rounds of jitd / nft in the ns, interleaved, {a.fill} live "
                     f"(jitd fill took {results['jitd_fill_s']:.1f} s)")
            big = self.interleaved(client, helper, BLOCK_JITD_BIG, BLOCK_NFT_BIG, a.big_count, False)
            for key in ("jitd_add", "jitd_delete", "nft_add", "nft_delete"):
                results[f"big_{key}"] = big[key]
            helper.close()
        finally:
            client.close()
        return results

    def cleanup(self):
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
        if self.ns_created:
            result = subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, text=True)
            if result.returncode != 0:
                print(f"WARNING: could not delete namespace {self.ns}: {result.stderr.strip()}", file=sys.stderr)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="jitd grant latency against one nft process per grant",
                                     epilog="see the module docstring for what each row measures")
    parser.add_argument("--count", type=int, default=500, help="rounds on the empty set (default 500)")
    parser.add_argument("--netns-count", type=int, default=100,
                        help="rounds of `ip netns exec <ns> nft|true` from the host namespace (default 100)")
    parser.add_argument("--fill", type=int, default=10000, help="live grants/elements for phase C (default 10000)")
    parser.add_argument("--big-count", type=int, default=100, help="rounds with --fill live (default 100)")
    parser.add_argument("--jitd", default=os.environ.get("JITD_BIN") or os.path.join(REPO, "build", "jitd"),
                        help="jitd binary (default: $JITD_BIN or build/jitd)")
    parser.add_argument("--per-request", action="store_true",
                        help="a new Unix-socket connection per jitd request (default: one persistent connection)")
    parser.add_argument("--log-level", default="info", help="jitd logLevel (default info)")
    parser.add_argument("--json", metavar="FILE", help="also write summaries and raw samples (ns) to FILE")
    parser.add_argument("--helper", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("count", "netns_count", "big_count"):
        if not 1 <= getattr(args, name) <= MAX_PER_BLOCK:
            parser.error(f"--{name.replace('_', '-')} must be 1 … {MAX_PER_BLOCK}")
    if not 1 <= args.fill <= MAX_PER_BLOCK:
        parser.error(f"--fill must be 1 … {MAX_PER_BLOCK}")
    return args


def main(argv):
    args = parse_args(argv)
    if args.helper:
        return helper_main()
    if os.geteuid() != 0:
        print("run as root: it creates a network namespace (sudo python3 tests/bench/grant_latency.py)",
              file=sys.stderr)
        return 2
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            print(f"needs {tool} (apt-get install iproute2 nftables)", file=sys.stderr)
            return 2
    args.jitd = os.path.abspath(args.jitd)
    if not os.access(args.jitd, os.X_OK):
        print(f"no jitd binary at {args.jitd}; build it: cmake --build build --target jitd", file=sys.stderr)
        return 2

    def interrupted(signum, frame):  # SIGTERM/SIGHUP behave like Ctrl-C: the finally below runs
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    bench = Bench(args)
    started = time.monotonic()
    try:
        progress(f"namespace {bench.ns}")
        bench.setup()
        bench.start_jitd()
        results = bench.measure()
        info = machine(bench.dir)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        state = "running" if bench.jitd_running() else f"exited with {bench.jitd.returncode}" if bench.jitd else "not started"
        print(f"# failed; jitd {state}; last lines of its log:\n{bench.log_tail()}", file=sys.stderr)
        raise
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # cleanup is not interruptible
            signal.signal(signum, signal.SIG_IGN)
        bench.cleanup()
        print(f"# namespace {bench.ns} deleted, temporary directory removed", file=sys.stderr)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
    text, stats, ratios = report(results, args, info)
    print(text)
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "args": vars(args), "summary_ms": stats,
                       "ratios": {k: {"add": v[0], "delete": v[1]} for k, v in ratios.items()},
                       "fill_s": {"jitd": results["jitd_fill_s"], "nft": results["nft_fill_s"]},
                       "samples_ns": {k: v for k, v in results.items() if isinstance(v, list)}}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
