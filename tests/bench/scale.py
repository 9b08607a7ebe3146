#!/usr/bin/env python3
"""jitd at scale: grant latency at 0 / 10k / 100k live grants, throughput with concurrent
clients, fill + restart + memory + journal, an expiry storm, and the packet path, each figure
next to a baseline measured in the same run.

    sudo python3 tests/bench/scale.py --write-doc     # the full run (sizes 0,10000,100000)
    sudo python3 tests/bench/scale.py --smoke         # every phase at a few hundred grants

Python 3 standard library only; needs root, `ip`, `nft`, a built jitd (--jitd, $JITD_BIN or
build/jitd) and tests/bench/connect_rate.c built (--connect-rate, $JITD_CONNECT_RATE,
build/tests/jitd_connect_rate, else compiled with `cc` into the temporary directory).

Isolation: two throw-away network namespaces, `jitd-scale-<hex>` (jitd, the nft baselines, the
packet-path server) and `jitd-scale-<hex>-c` (the packet-path client), joined by a veth pair,
and one temporary directory; all deleted at the end, also on an error, Ctrl-C, SIGTERM or
SIGHUP (benchlib.guarded_run). Every `nft` runs inside the server namespace (spawned by a
helper that lives there, or under `ip netns exec`); the machine's own ruleset is never read
or changed. The phases, in order (each is described where it is measured, below, and in the
report):

  0. restart baseline: jitd restarted with 0 live grants; its resident memory at 0.
  1. latency: for each --sizes level (ascending) the live grants are filled to that level
     (the fill is figure 2/3), then --rounds rounds, interleaved request by request:
     POST /32, `nft add element` /32, POST range (disjoint, /24 … /28 by turn), `nft add` of the
     same range, POST range nested in an earlier one (overlapping), `nft add` of a disjoint
     range of that length (the kernel refuses overlapping elements; that is what jitd's range
     derivation is for), GET /v1/policy (the HTTP round trip floor) and one 100-byte append +
     fdatasync in jitd's state directory (the durability floor: a grant waits for one).
     Afterwards the round's grants are revoked and the elements deleted (untimed), so every
     level's rounds start at exactly that many live grants.
  2. throughput: every fill segment is --clients processes, each with its own keep-alive
     connection, splitting the segment's grants; grants/s = grants / wall time. Baselines: the
     same processes against GET /v1/policy and against a canned-reply server (connect_rate
     canned: one epoll process in C replying the bytes jitd replied to a grant): what the
     client side alone can do.
  3. fill and restart: the fill total (to --fill live), jitd's VmRSS, the journal's size;
     SIGTERM, start again, time to a GET /v1/grants answer listing every live grant (the
     restart reads and compacts the journal, installs the table and opens the socket);
     baselines: `nft -f` of the same elements, the restart at 0, VmRSS at 0, the listing on
     the running jitd.
  4. packet path: connect_rate (tests/bench/connect_rate.c) from the client namespace opens new
     TCP connections to an unprotected port and to the protected, granted port, with --fill
     grants live, against jitd's table and then against a table holding only
     `ct state established,related accept`; jitd's table is swapped out by stopping jitd and
     deleting it, and back by starting jitd. --pp-rounds rounds, ABBA order, medians.
  5. expiry storm: a fresh jitd (state directory moved aside, so 0 grants), --storm grants
     with the same endTimeUtc, whole seconds, set --storm-margin s after the fill is expected
     to end; one client makes a grant every --storm-probe-interval-ms on another range from the
     fill's end until every expiry is audited; its latency before the end time is the
     baseline of its latency during the storm; the audit log must count exactly --storm
     "expire" records.
"""
import argparse
import datetime
import http.client
import json
import math
import multiprocessing
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (DEFAULT_JITD, PORT, PROTO, REPO, Client, ClientServerNamespaces, NamespaceHelper,  # noqa: E402
                      UnixHTTPConnection, check_environment, fmt, guarded_run, machine, now_ns, percentile,
                      progress, refuse_without_root, run, spawn)

POLICY = """ports:
  - number: 22
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT24H
"""
FILL_DURATION = "PT1H"
NFT_TIMEOUT = "1h"
UNPROTECTED = 8080
SERVER_IP, CLIENT_IP = "192.168.77.1", "192.168.77.2"
MAX_CLIENTS = 16  # jitd closes a uid's 17th connection at once (docs/architecture.md)

# The same sets as jitd's (docs/architecture.md): single addresses in a hash set, ranges in an
# interval set, so the nft baseline pays for the same kernel work as jitd.
BENCH_TABLE = """table inet scalebench {
  set grants4_single { type ipv4_addr . inet_proto . inet_service; flags timeout; }
  set grants4 { type ipv4_addr . inet_proto . inet_service; flags interval, timeout; }
}
"""
GRANT_SETS = ("grants4_single", "grants4")


def set_for(prefix):
    """The set jitd (and the baseline) keeps an element for `prefix` in."""
    return "grants4_single" if "/" not in prefix or prefix.endswith("/32") else "grants4"


def element_file(verb, prefixes, suffix=""):
    """nft -f text that adds or deletes the elements of `prefixes`, each in its set."""
    lines = []
    for name in GRANT_SETS:
        chosen = [p for p in prefixes if set_for(p) == name]
        if chosen:
            lines.append(f"{verb} element inet scalebench {name} {{\n" + ",\n".join(
                f"  {p} . {PROTO} . {PORT}{suffix}" for p in chosen) + "\n}\n")
    return "".join(lines)
BASE_TABLE = """table inet scalebase {
  chain input {
    type filter hook input priority filter - 10; policy accept;
    ct state established,related accept
  }
}
"""

# Sources: each use has its own 2^20-address block of 10.0.0.0/8; /32s at odd offsets (never
# adjacent, so no two kernel ranges touch or merge); ranges in /24-aligned slots.
BLOCK = 1 << 20
B_FILL, B_SINGLE, B_RANGE, B_NESTED, B_NFT_NESTED, B_PROBE, B_STORM = 0, 1, 2, 3, 4, 5, 6
MAX_SINGLES = BLOCK // 2
MAX_SLOTS = BLOCK // 256
RANGE_LENGTHS = (24, 25, 26, 27, 28)

MARK_BEGIN, MARK_END = "<!-- scale-bench:begin -->", "<!-- scale-bench:end -->"


def single(block, i):
    return f"10.{(block * BLOCK + 2 * i + 1) >> 16 & 255}.{(block * BLOCK + 2 * i + 1) >> 8 & 255}." \
           f"{(block * BLOCK + 2 * i + 1) & 255}"


def slot_prefix(block, slot, length):
    base = block * BLOCK + slot * 256
    return f"10.{base >> 16 & 255}.{base >> 8 & 255}.0/{length}"


def grant_body(prefix, duration=FILL_DURATION, end_time_utc=None):
    body = {"ports": [{"number": PORT, "protocol": PROTO}], "allowedSourceAddressPrefix": prefix,
            "justification": "scale bench"}
    if end_time_utc:
        body["endTimeUtc"] = end_time_utc
    else:
        body["duration"] = duration
    return body


def post_grant(client, prefix, duration=FILL_DURATION, end_time_utc=None):
    status, reply, elapsed = client.call("POST", "/v1/grants", grant_body(prefix, duration, end_time_utc))
    if status != 201:
        raise RuntimeError(f"POST /v1/grants {prefix}: {status} {reply}")
    return reply["id"], elapsed


def open_client(path, timeout=10):
    """A keep-alive Client whose connection answered GET /v1/policy. Retries for a while: jitd
    closes a connection over its per-uid cap at once, and the previous phase's connections may
    not all be closed on its side yet."""
    deadline = time.monotonic() + timeout
    while True:
        client = Client(path, persistent=True)
        try:
            if client.call("GET", "/v1/policy")[0] in (200, 201):  # 201: the canned-reply server
                return client
        except (OSError, http.client.HTTPException, ValueError):
            pass
        client.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"no connection to {path} answered within {timeout} s")
        time.sleep(0.05)


def stats(samples_ns):
    if not samples_ns:
        return None
    ms = [s / 1e6 for s in samples_ns]
    return {"n": len(ms), "p50": statistics.median(ms), "p99": percentile(ms, 99), "max": max(ms)}


# ---------------------------------------------------------------------------------------------
# The helper inside the server namespace.
# ---------------------------------------------------------------------------------------------
def handle(words):
    if words[0] == "add":  # add <prefix>: one nft process, one element
        return {"ns": spawn(["nft", "add", "element", "inet", "scalebench", set_for(words[1]),
                             f"{{ {words[1]} . {PROTO} . {PORT} timeout {NFT_TIMEOUT} }}"])}
    if words[0] == "file":  # file <path>: one nft -f
        return {"ns": spawn(["nft", "-f", words[1]])}
    return {"error": f"unknown command {' '.join(words)!r}"}


# ---------------------------------------------------------------------------------------------
# Concurrent clients (processes: one keep-alive connection each).
# ---------------------------------------------------------------------------------------------
class RawClient:
    """HTTP/1.1 keep-alive on a Unix socket with requests encoded up front and replies parsed by
    hand: a fraction of http.client's cost, so the client side keeps up with a fast server."""

    def __init__(self, path, timeout=600):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buffer = b""

    @staticmethod
    def encode(method, route, body):
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {route} HTTP/1.1\r\nHost: localhost\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        return (head + "\r\n").encode() + payload

    def request(self, data):
        """(status, body bytes) of one encoded request."""
        self.sock.sendall(data)
        while b"\r\n\r\n" not in self.buffer:
            self.read()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status = int(head[9:12])
        match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        if not match:
            raise RuntimeError(f"reply without Content-Length: {head[:200]!r}")
        length = int(match.group(1))
        while len(self.buffer) < length:
            self.read()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, body

    def read(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    def close(self):
        self.sock.close()


def open_raw(path, timeout=10):
    """A RawClient whose connection answered a GET /v1/policy (retried as in open_client)."""
    deadline = time.monotonic() + timeout
    while True:
        client = None
        try:
            client = RawClient(path)
            if client.request(RawClient.encode("GET", "/v1/policy", None))[0] in (200, 201):
                return client
        except OSError:
            pass
        if client:
            client.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"no connection to {path} answered within {timeout} s")
        time.sleep(0.05)


def _worker(path, requests, start, done, out):
    """requests: [(method, route, body)]; puts (first start, last end, [ns per request]) on out."""
    try:
        encoded = [RawClient.encode(*r) for r in requests]
        client = open_raw(path)  # connected before the clock starts
        start.wait()
        samples, began = [], time.monotonic_ns()
        for data in encoded:
            started = time.perf_counter_ns()
            status, body = client.request(data)
            samples.append(time.perf_counter_ns() - started)
            if status not in (200, 201):
                raise RuntimeError(f"{data.split(b' ', 2)[:2]}: {status} {body[:300]!r}")
            if len(samples) % 16 == 0:
                with done.get_lock():
                    done.value += 16
        ended = time.monotonic_ns()
        client.close()
        out.put((began, ended, samples, None))
    except BaseException as error:  # reported to the parent, which stops the run
        out.put((0, 0, [], f"{type(error).__name__}: {error}"))


def concurrent(path, per_client, label, children):
    """Runs per_client[i] (a list of requests) on client i, all started together; returns
    (wall seconds from the first start to the last end, [ns per request])."""
    context = multiprocessing.get_context("fork")
    start, done, out = context.Event(), context.Value("l", 0), context.Queue()
    workers = [context.Process(target=_worker, args=(path, requests, start, done, out), daemon=True)
               for requests in per_client]
    for w in workers:
        w.start()
        children.append(w)
    total = sum(len(r) for r in per_client)
    time.sleep(0.2)
    start.set()
    results, last = [], time.monotonic()
    while len(results) < len(workers):
        try:
            results.append(out.get(timeout=2))
        except Exception:  # queue.Empty
            if any(w.exitcode not in (None, 0) for w in workers):
                raise RuntimeError(f"{label}: a client process died")
        if time.monotonic() - last > 10:
            last = time.monotonic()
            progress(f"{label}: {done.value}/{total}")
    for w in workers:
        w.join(timeout=10)
    errors = [r[3] for r in results if r[3]]
    if errors:
        raise RuntimeError(f"{label}: {errors[0]}")
    wall = (max(r[1] for r in results) - min(r[0] for r in results)) / 1e9
    return wall, [s for r in results for s in r[2]]


def split(items, n):
    return [items[i::n] for i in range(n)]


# ---------------------------------------------------------------------------------------------
# The namespaces and the run.
# ---------------------------------------------------------------------------------------------
class Scale(ClientServerNamespaces):
    def __init__(self, args):
        super().__init__(args.jitd, prefix="jitd-scale", log_level=args.log_level, policy=POLICY)
        self.args = args
        self.results = {}
        self.client = None
        self.helper = None
        self.live = 0  # live fill grants
        self.fill_i = 0  # next fill source index

    # ---- set-up and cleanup ----
    def setup(self):
        super().setup()
        self.setup_pair(SERVER_IP, CLIENT_IP)
        self.write(os.path.join(self.dir, "scalebench.nft"), BENCH_TABLE)
        self.write(os.path.join(self.dir, "scalebase.nft"), BASE_TABLE)
        self.in_ns("nft", "-f", os.path.join(self.dir, "scalebench.nft"))
        self.connect_rate = self.find_connect_rate(self.args.connect_rate)

    @staticmethod
    def write(path, text):
        with open(path, "w") as f:
            f.write(text)

    # ---- jitd ----
    def launch(self, timeout=600, expect=None, timings=None):
        """Starts jitd (log appended); seconds until GET /v1/grants answered with `expect` grants
        (any number when None), and that answer's grant count. `timings["serving_s"]`: seconds
        until jitd first answered at all (GET /v1/policy): it serves only once its table, with
        every live grant, is installed, so this is the reconcile time."""
        self.log_path = os.path.join(self.dir, "jitd.log")
        with open(self.log_path, "a") as log:
            log.write(f"--- scale.py: start at {time.time():.3f}\n")
            log.flush()
            started = time.monotonic()
            self.jitd = subprocess.Popen(["ip", "netns", "exec", self.ns, self.jitd_binary, "--config", self.config],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.children.append(self.jitd)
        serving = None
        while time.monotonic() - started < timeout:
            if self.jitd.poll() is not None:
                raise RuntimeError(f"jitd exited with {self.jitd.returncode}:\n{self.log_tail()}")
            try:
                if serving is None:
                    connection = UnixHTTPConnection(self.socket, timeout=timeout)
                    connection.request("GET", "/v1/policy")
                    answered = connection.getresponse()
                    answered.read()
                    connection.close()
                    serving = time.monotonic() - started
                    if timings is not None:
                        timings["serving_s"] = serving
                connection = UnixHTTPConnection(self.socket, timeout=timeout)
                connection.request("GET", "/v1/grants")
                response = connection.getresponse()
                data = response.read()
                elapsed = time.monotonic() - started
                connection.close()
                if response.status == 200:
                    count = len(json.loads(data)["grants"])
                    if expect is None or count == expect:
                        return elapsed, count
                    progress(f"GET /v1/grants listed {count}, expected {expect}; polling on")
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.01)
        raise RuntimeError(f"jitd did not list its grants within {timeout} s:\n{self.log_tail()}")

    def start_jitd(self):
        self.launch()

    def stop(self):
        """SIGTERM jitd; seconds until it exited."""
        started = time.monotonic()
        self.jitd.send_signal(signal.SIGTERM)
        self.jitd.wait(timeout=600)
        return time.monotonic() - started

    def restart(self, expect):
        with open(self.log_path) as f:
            offset = len(f.read())
        stop_s = self.stop()
        timings = {}
        ready_s, count = self.launch(expect=expect, timings=timings)
        with open(self.log_path) as f:
            lines = [line.strip() for line in f.read()[offset:].splitlines()
                     if re.search(r"journal|restor|compact|install", line)]
        return {"stop_s": stop_s, "ready_s": ready_s, "serving_s": timings.get("serving_s", ready_s),
                "count": count, "log": lines}

    def rss_kib(self):
        with open(f"/proc/{self.jitd.pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f)
        if fields["Name"].strip() != "jitd":
            raise RuntimeError(f"pid {self.jitd.pid} is {fields['Name'].strip()}, not jitd")
        return {k: int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM")}

    @property
    def journal(self):
        return os.path.join(self.dir, "state", "grants.journal")

    def journal_size(self):
        try:
            return os.path.getsize(self.journal)
        except OSError:
            return 0

    def elements(self, table):
        count = 0
        for name in GRANT_SETS:
            listing = json.loads(self.in_ns("nft", "-j", "list", "set", "inet", table, name).stdout)
            count += sum(len(i["set"].get("elem", [])) for i in listing["nftables"] if "set" in i)
        return count

    def new_client(self):
        if self.client:
            self.client.close()
        self.client = open_client(self.socket)
        return self.client

    def close_client(self):
        if self.client:
            self.client.close()
            self.client = None

    # ---- the phases ----
    def fill_to(self, target, label):
        """Fills jitd to `target` live fill grants with --clients processes, and the nft set
        to the same elements with one `nft -f`; one throughput record."""
        count = target - self.live
        if count <= 0:
            return None
        a = self.args
        prefixes = [single(B_FILL, self.fill_i + i) for i in range(count)]
        self.close_client()  # the fill's connections plus ours must stay within jitd's 16
        progress(f"{label}: {count} grants through the API, {a.clients} clients ({self.live} live)")
        body = lambda p: grant_body(p)  # noqa: E731
        wall, samples = concurrent(self.socket, split([("POST", "/v1/grants", body(p)) for p in prefixes],
                                                      a.clients), label, self.procs)
        progress(f"{label}: {count / wall:.0f} grants/s; client-side baselines")
        base_n = min(count, a.baseline_requests)
        policy_wall, _ = concurrent(self.socket, split([("GET", "/v1/policy", None)] * base_n, a.clients),
                                    f"{label} GET /v1/policy", self.procs)
        canned_wall, _ = concurrent(self.canned_socket, split([("POST", "/v1/grants", body(p))
                                                               for p in prefixes[:base_n]], a.clients),
                                    f"{label} canned server", self.procs)
        nft_file = os.path.join(self.dir, "fill.nft")
        self.write(nft_file, element_file("add", prefixes, f" timeout {NFT_TIMEOUT}"))
        nft_s = self.helper.request("file", nft_file)["ns"] / 1e9
        os.unlink(nft_file)
        self.fill_i += count
        self.live = target
        record = {"label": label, "from": target - count, "to": target, "grants": count, "clients": a.clients,
                  "wall_s": wall, "rate": count / wall, "latency": stats(samples), "nft_f_s": nft_s,
                  "policy_rate": base_n / policy_wall, "canned_rate": base_n / canned_wall,
                  "baseline_requests": base_n}
        self.results.setdefault("fills", []).append(record)
        return record

    def fdatasync_probe(self):
        started = now_ns()
        fd = os.open(os.path.join(self.dir, "state", "scale-fdatasync-probe"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            os.write(fd, b"x" * 99 + b"\n")
            os.fdatasync(fd)
        finally:
            os.close(fd)
        return now_ns() - started

    def latency_level(self, level, slot_base, single_base):
        a = self.args
        progress(f"latency at {level} live: {a.rounds} interleaved rounds")
        client = self.new_client()
        keys = ("jitd_single", "nft_single", "jitd_range", "nft_range", "jitd_nested", "nft_nested",
                "get_policy", "fdatasync")
        out = {k: [] for k in keys}
        by_length = {(kind, n): [] for kind in ("jitd_range", "nft_range", "jitd_nested") for n in RANGE_LENGTHS}
        ids, nft_elements = [], []
        for i in range(a.rounds):
            length = RANGE_LENGTHS[i % len(RANGE_LENGTHS)]
            s = single(B_SINGLE, single_base + i)
            disjoint = slot_prefix(B_RANGE, slot_base + i, length)
            # Nested: each group of five rounds stacks /24, /25, … /28 on one slot's base.
            nested = slot_prefix(B_NESTED, slot_base + i // len(RANGE_LENGTHS), length)
            nft_nested = slot_prefix(B_NFT_NESTED, slot_base + i, length)
            for kind, prefix, nft_prefix in (("single", s, s), ("range", disjoint, disjoint),
                                              ("nested", nested, nft_nested)):
                grant_id, elapsed = post_grant(client, prefix)
                ids.append(grant_id)
                out[f"jitd_{kind}"].append(elapsed)
                nft_ns = self.helper.request("add", nft_prefix)["ns"]
                out[f"nft_{kind}"].append(nft_ns)
                nft_elements.append(nft_prefix)
                if kind != "single":
                    by_length[(f"jitd_{kind}", length)].append(elapsed)
                    if kind == "range":
                        by_length[("nft_range", length)].append(nft_ns)
            status, _, elapsed = client.call("GET", "/v1/policy")
            out["get_policy"].append(elapsed)
            out["fdatasync"].append(self.fdatasync_probe())
        # Back to exactly `level` live: revoke the rounds' grants, delete their elements (untimed).
        for grant_id in ids:
            client.revoke(grant_id)
        nft_file = os.path.join(self.dir, "delete.nft")
        self.write(nft_file, element_file("delete", nft_elements))
        self.helper.request("file", nft_file)
        os.unlink(nft_file)
        self.close_client()
        record = {"level": level, **{k: stats(v) for k, v in out.items()},
                  "by_length": {f"{kind}/{n}": stats(v) for (kind, n), v in by_length.items()}}
        self.results.setdefault("latency", []).append(record)
        return record

    def packet_run(self, port):
        result = subprocess.run(["ip", "netns", "exec", self.client_ns, self.connect_rate, "connect", SERVER_IP,
                                 str(port), str(self.args.pp_seconds), str(self.args.pp_parallel)],
                                capture_output=True, text=True, timeout=self.args.pp_seconds + 60)
        if result.returncode != 0:
            raise RuntimeError(f"connect_rate: {result.stderr.strip()}")
        return json.loads(result.stdout)

    def packet_path(self):
        a = self.args
        expect = self.live + 1
        progress(f"packet path: {a.pp_rounds} rounds × (jitd table, baseline table) × 2 ports, "
                 f"{a.pp_seconds} s each, {expect} grants live")
        server = subprocess.Popen(["ip", "netns", "exec", self.ns, self.connect_rate, "serve", str(PORT),
                                   str(UNPROTECTED)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  start_new_session=True)
        self.children.append(server)
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError("connect_rate serve did not start")
        client = self.new_client()
        post_grant(client, f"{CLIENT_IP}")
        self.close_client()
        # Short CLOSE timeouts in our namespace: RST-closed connections leave conntrack quickly.
        subprocess.run(["ip", "netns", "exec", self.ns, "sysctl", "-q", "-w",
                        "net.netfilter.nf_conntrack_tcp_timeout_close=1"], capture_output=True)
        runs = {(table, port): [] for table in ("jitd", "base") for port in (UNPROTECTED, PORT)}
        restarts, current = [], "jitd"
        for r in range(a.pp_rounds):
            for table in (("jitd", "base") if r % 2 == 0 else ("base", "jitd")):
                if table != current:
                    if table == "base":
                        self.stop()
                        self.in_ns("nft", "delete", "table", "inet", "jitd")
                        self.in_ns("nft", "-f", os.path.join(self.dir, "scalebase.nft"))
                    else:
                        self.in_ns("nft", "delete", "table", "inet", "scalebase")
                        restarts.append(self.launch(expect=expect)[0])
                    current = table
                for port in (UNPROTECTED, PORT):
                    runs[(table, port)].append(self.packet_run(port))
        if current != "jitd":
            self.in_ns("nft", "delete", "table", "inet", "scalebase")
            restarts.append(self.launch(expect=expect)[0])
        record = {"grants_live": expect, "seconds": a.pp_seconds, "parallel": a.pp_parallel, "restarts_s": restarts}
        for (table, port), samples in runs.items():
            record[f"{table}_{port}"] = {"rates": [s["rate"] for s in samples],
                                         "median": statistics.median(s["rate"] for s in samples),
                                         "failures": sum(s["failures"] for s in samples),
                                         "timeouts": sum(s["timeouts"] for s in samples)}
        self.results["packet"] = record
        server.stdin.close()
        return record

    def storm(self):
        a = self.args
        progress(f"storm: fresh jitd (state directory moved aside), {a.storm} grants, one endTimeUtc")
        self.stop()
        os.rename(os.path.join(self.dir, "state"), os.path.join(self.dir, "state.before-storm"))
        self.launch(expect=0)
        fills = self.results.get("fills") or []
        rate = (sum(f["grants"] for f in fills) / sum(f["wall_s"] for f in fills)) if fills else 500
        estimate = a.storm / rate * 1.3 + 2
        end_wall = math.ceil(time.time() + estimate + a.storm_margin)
        end_text = datetime.datetime.fromtimestamp(end_wall, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        end_mono = end_wall - time.time() + time.monotonic()
        progress(f"storm: filling to end at {end_text} (fill estimated {estimate:.0f} s at {rate:.0f}/s)")
        prefixes = [single(B_STORM, i) for i in range(a.storm)]
        wall, _ = concurrent(self.socket, split([("POST", "/v1/grants", grant_body(p, end_time_utc=end_text))
                                                 for p in prefixes], a.clients), "storm fill", self.procs)
        fill_end = time.monotonic()
        overran = fill_end > end_mono - 1
        if overran:
            print(f"WARNING: the storm fill ended {fill_end - end_mono + 1:.1f} s too late "
                  "(raise --storm-margin)", file=sys.stderr)
        # The probe client, in its own process so its timing does not share our GIL.
        context = multiprocessing.get_context("fork")
        stop, out = context.Event(), context.Queue()
        probe = context.Process(target=_probe, args=(self.socket, a.storm_probe_interval_ms / 1000, stop, out),
                                daemon=True)
        probe.start()
        self.procs.append(probe)
        audit = os.path.join(self.dir, "state", "audit.jsonl")
        expired, offset, first_seen, all_seen, pending = 0, 0, None, None, b""
        deadline = end_mono + a.storm_timeout
        progress(f"storm: probing; waiting for {a.storm} expire records (end in {end_mono - time.monotonic():.0f} s)")
        while time.monotonic() < deadline:
            with open(audit, "rb") as f:
                f.seek(offset)
                data = pending + f.read()
            offset += len(data) - len(pending)
            lines = data.split(b"\n")
            pending = lines.pop()
            for line in lines:
                if b'"expire"' in line and json.loads(line).get("event") == "expire":
                    expired += 1
            now = time.monotonic()
            if expired and first_seen is None:
                first_seen = now
            if expired >= a.storm:
                all_seen = now
                break
            time.sleep(0.1)
        storm_end = max(all_seen or time.monotonic(), end_mono + 2)
        time.sleep(max(0.0, storm_end + 1 - time.monotonic()))  # a second of "after"
        stop.set()
        samples, failures, error = out.get(timeout=600)
        probe.join(timeout=10)
        if error:
            raise RuntimeError(f"storm probe: {error}")
        warm = fill_end + 1
        before = [ns for t, ns in samples if warm <= t / 1e9 < end_mono]
        during = [ns for t, ns in samples if end_mono <= t / 1e9 <= storm_end]
        after = [ns for t, ns in samples if t / 1e9 > storm_end]
        record = {"grants": a.storm, "end_time_utc": end_text, "fill_s": wall, "fill_rate": a.storm / wall,
                  "fill_ended_before_end_s": end_mono - fill_end, "overran": overran,
                  "expired": expired, "first_expire_after_end_s": (first_seen - end_mono) if first_seen else None,
                  "all_expired_after_end_s": (all_seen - end_mono) if all_seen else None,
                  "probe_before": stats(before), "probe_during": stats(during), "probe_after": stats(after),
                  "probe_grants": len(samples), "probe_failures": len(failures),
                  "probe_failures_during": sum(1 for t, _, _ in failures if end_mono <= t / 1e9 <= storm_end),
                  "probe_failure_examples": [f"{(t / 1e9 - end_mono):+.1f} s after the end time, after "
                                             f"{ns / 1e9:.1f} s: {e}" for t, ns, e in failures[:3]]}
        self.results["storm"] = record
        return record

    def measure(self):
        a = self.args
        r = self.results
        canned_dir = tempfile.mkdtemp(prefix="jitd-scale-canned-", dir=self.dir)
        self.canned_socket = os.path.join(canned_dir, "canned.sock")
        self.helper = NamespaceHelper(self.ns, self.children, __file__)
        # A real reply of jitd's to a grant, for the canned server; that grant is then revoked.
        client = self.new_client()
        connection = UnixHTTPConnection(self.socket)
        connection.request("POST", "/v1/grants", body=json.dumps(grant_body(single(B_PROBE, MAX_SINGLES - 1))),
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        body = response.read()
        connection.close()
        client.revoke(json.loads(body)["id"])
        reply_file = os.path.join(canned_dir, "reply")
        with open(reply_file, "wb") as f:
            f.write(f"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                    .encode() + body)
        canned = subprocess.Popen([self.connect_rate, "canned", self.canned_socket, reply_file], stdout=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        self.children.append(canned)
        if canned.stdout.readline().strip() != "ready":
            raise RuntimeError("connect_rate canned did not start")

        progress("restart baseline: 0 live grants")
        r["rss_0"] = self.rss_kib()
        r["restart_0"] = self.restart(expect=0)
        slot_base, single_base = 0, 0
        for level in a.sizes:
            self.fill_to(level, f"fill {self.live}→{level}")
            self.latency_level(level, slot_base, single_base)
            slot_base += a.rounds
            single_base += a.rounds
        self.fill_to(a.fill, f"fill {self.live}→{a.fill}")
        progress(f"fill and restart at {self.live} live")
        live = self.elements("jitd")
        if live != self.live:
            raise RuntimeError(f"expected {self.live} elements in jitd's grant sets, found {live}")
        r["rss_fill"] = self.rss_kib()
        r["journal_before_restart"] = self.journal_size()
        started = time.monotonic()
        client = self.new_client()
        status, _, listing_ns = client.call("GET", "/v1/grants")
        r["listing_s"] = listing_ns / 1e9
        self.close_client()
        r["listing_wall_s"] = time.monotonic() - started
        r["restart_fill"] = self.restart(expect=self.live)
        r["journal_after_restart"] = self.journal_size()
        r["rss_fill_after_restart"] = self.rss_kib()
        r["live"] = self.live
        self.packet_path()
        self.storm()
        return r


def _probe(path, interval, stop, out):
    """Grants every `interval` s until `stop`; puts ([(monotonic start ns, latency ns)],
    [(monotonic start ns, ns until it failed, error)], None). A failed request (jitd shut the
    connection, a refusal) is recorded and the client reconnects: the storm may do that."""
    try:
        client, samples, failures, i = open_client(path), [], [], 0
        next_at = time.monotonic()
        while not stop.is_set():
            started, t0 = time.monotonic_ns(), now_ns()
            try:
                _, elapsed = post_grant(client, single(B_PROBE, i))
                samples.append((started, elapsed))
            except (OSError, http.client.HTTPException, RuntimeError, ValueError) as error:
                failures.append((started, now_ns() - t0, f"{type(error).__name__}: {error}"[:200]))
                client.close()
                client = open_client(path, timeout=600)
            i += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()
        client.close()
        out.put((samples, failures, None))
    except BaseException as error:
        out.put(([], [], f"{type(error).__name__}: {error}"))


# ---------------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------------
def verdict(ok):
    return "PASS" if ok else "MISS"


def ratio(a, b):
    return f"{a / b:.2f}×" if b else "—"


def cell(s):
    return f"{fmt(s['p50'])} / {fmt(s['p99'])} / {fmt(s['max'])}" if s else "—"


def report(r, args, info, commit, command, elapsed_s):
    lines = [
        f"Command: `{command}`; jitd commit `{commit}`; run on "
        f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, {elapsed_s:.0f} s.",
        f"Machine: nproc {info['nproc']} ({info['cpu']}), kernel {info['kernel']}, {info['nft']}, "
        f"Python {info['python']}, state directory on {info['state_fs']}, load average at end "
        f"{info['loadavg_at_end']}.",
        f"Options: sizes {','.join(map(str, args.sizes))}, rounds {args.rounds}, fill {args.fill}, "
        f"clients {args.clients}, storm {args.storm} (margin {args.storm_margin} s, probe every "
        f"{args.storm_probe_interval_ms} ms), packet path {args.pp_rounds} rounds × {args.pp_seconds} s, "
        f"{args.pp_parallel} connects in flight.",
        "",
        "Milliseconds as p50 / p99 / max; every sample is one request's wall-clock time on one keep-alive "
        "Unix-socket connection, or one `nft` process spawned by a helper already inside the namespace.",
        "",
        "### 1. Grant latency by live grants",
        "",
        "| live grants | request | n | jitd p50 / p99 / max | nft add element p50 / p99 / max | nft / jitd (p50) |",
        "|---|---|---|---|---|---|",
    ]
    latency = {rec["level"]: rec for rec in r.get("latency", [])}
    for level, rec in latency.items():
        for kind, label in (("single", "/32"), ("range", "/24 … /28, disjoint"),
                            ("nested", "/24 … /28 nested in each other (nft: disjoint, same length)")):
            j, n = rec[f"jitd_{kind}"], rec[f"nft_{kind}"]
            lines.append(f"| {level} | {label} | {j['n']} | {cell(j)} | {cell(n)} | {ratio(n['p50'], j['p50'])} |")
    lines += ["", "Floors measured in the same rounds: GET /v1/policy on the same connection (the HTTP round trip) "
              "and one 100-byte append + `fdatasync` in jitd's state directory (a grant waits for one: the "
              "journal's, shared by the requests of its batch; the audit log is synced apart, 50 ms later). "
              "The last column is what jitd adds above these two floors, which no durable grant over HTTP "
              "can go below.", "",
              "| live grants | GET /v1/policy | append + fdatasync | jitd /32 p50 − (GET + fdatasync) p50 |",
              "|---|---|---|---|"]
    for level, rec in latency.items():
        floor = rec["get_policy"]["p50"] + rec["fdatasync"]["p50"]
        lines.append(f"| {level} | {cell(rec['get_policy'])} | {cell(rec['fdatasync'])} | "
                     f"{fmt(max(0, rec['jitd_single']['p50'] - floor))} |")
    lines += ["", "The range curve, p50 by prefix length (jitd disjoint / jitd nested / nft disjoint):", "",
              "| live grants | " + " | ".join(f"/{n}" for n in RANGE_LENGTHS) + " |",
              "|---|" + "---|" * len(RANGE_LENGTHS)]
    for level, rec in latency.items():
        b = rec["by_length"]
        lines.append(f"| {level} | " + " | ".join(
            f"{fmt(b[f'jitd_range/{n}']['p50'])} / {fmt(b[f'jitd_nested/{n}']['p50'])} / "
            f"{fmt(b[f'nft_range/{n}']['p50'])}" if b[f"jitd_range/{n}"] else "—" for n in RANGE_LENGTHS) + " |")

    targets = []
    if 10000 in latency:
        p99 = latency[10000]["jitd_single"]["p99"]
        targets.append(("/32 POST p99 at 10k ≤ 1 ms", f"{fmt(p99)} ms", p99 <= 1))
    for level in (0, 10000):
        if level in latency:
            x = latency[level]["nft_single"]["p50"] / latency[level]["jitd_single"]["p50"]
            targets.append((f"/32 median ≥ 10× faster than nft at {level}", f"{x:.1f}×", x >= 10))
    if 0 in latency and 100000 in latency:
        x = latency[100000]["jitd_single"]["p50"] / latency[0]["jitd_single"]["p50"]
        targets.append(("/32 median at 100k ≤ 2× at 0", f"{x:.2f}×", x <= 2))

    lines += ["", f"### 2. Throughput, {args.clients} concurrent clients (one process and keep-alive connection each)",
              "", "| fill segment | grants | jitd grants/s | POST p50 / p99 / max | client alone: canned-reply "
              "server req/s | GET /v1/policy req/s | jitd / client alone | `nft -f` of the same elements |",
              "|---|---|---|---|---|---|---|---|"]
    for f in r.get("fills", []):
        lines.append(f"| {f['from']} → {f['to']} | {f['grants']} | {f['rate']:.0f} | {cell(f['latency'])} | "
                     f"{f['canned_rate']:.0f} | {f['policy_rate']:.0f} | {f['rate'] / f['canned_rate']:.2f} | "
                     f"{f['nft_f_s'] * 1000:.1f} ms |")
        targets.append((f"throughput {f['from']} → {f['to']} ≥ 5,000 grants/s", f"{f['rate']:.0f}/s"
                        + (" (client-bound)" if f["rate"] >= 0.8 * f["canned_rate"] else ""), f["rate"] >= 5000))
    lines += ["", "The canned-reply server (`connect_rate canned`, one epoll process in C) answers each request "
              "with the bytes jitd replied to a grant, so its rate is about what these client processes can drive "
              "at all on this machine; a jitd rate near it (≥ 0.8×) means the client, not jitd, bounds the figure."]

    fills = r.get("fills", [])
    fill_s = sum(f["wall_s"] for f in fills)
    nft_s = sum(f["nft_f_s"] for f in fills)
    rf, r0 = r["restart_fill"], r["restart_0"]
    rss0, rssf = r["rss_0"]["VmRSS"], r["rss_fill"]["VmRSS"]
    lines += ["", f"### 3. Fill and restart at {r['live']} live grants", "",
              "| figure | value | baseline | ratio |", "|---|---|---|---|",
              f"| fill through the API ({len(fills)} segment(s), rounds between them not counted) | {fill_s:.2f} s "
              f"| `nft -f` of the same elements: {nft_s:.3f} s | {ratio(fill_s, nft_s)} |",
              f"| restart: SIGTERM → exit | {rf['stop_s']:.2f} s | at 0 live: {r0['stop_s']:.2f} s | "
              f"{ratio(rf['stop_s'], r0['stop_s'])} |",
              f"| restart: start → serving (journal replayed, table with all {rf['count']} grants installed, "
              f"first answer) | {rf['serving_s']:.2f} s | at 0 live: {r0['serving_s']:.2f} s | "
              f"{ratio(rf['serving_s'], r0['serving_s'])} |",
              f"| restart: start → GET /v1/grants answered listing all {rf['count']} | {rf['ready_s']:.2f} s | "
              f"at 0 live: {r0['ready_s']:.2f} s | {ratio(rf['ready_s'], r0['ready_s'])} |",
              f"| of which the listing itself (GET /v1/grants on the running jitd, before the restart) | "
              f"{r['listing_s'] * 1000:.1f} ms | — | — |",
              f"| jitd VmRSS | {rssf / 1024:.1f} MiB (after the restart {r['rss_fill_after_restart']['VmRSS'] / 1024:.1f}"
              f" MiB) | at 0 live: {rss0 / 1024:.1f} MiB | {ratio(rssf, rss0)} |",
              f"| grants.journal | {r['journal_before_restart'] / 1e6:.2f} MB before the restart, "
              f"{r['journal_after_restart'] / 1e6:.2f} MB after the restart; "
              f"{r['journal_after_restart'] / max(1, r['live']):.0f} B per live grant | — | — |",
              "", "The serving time is everything jitd does at start before it answers: read the "
              "journal (compacting it when it is damaged or mostly ended records), replay it, install the table with every live grant in one transaction, serve the socket "
              "(the reconcile; the target applies to it). The listing time adds one GET /v1/grants of them all, "
              "which builds a JSON document of every grant. jitd's log at that start:", ""]
    lines += [f"    {line}" for line in rf["log"]] or ["    (nothing about the journal)"]
    targets += [(f"fill {r['live']} ≤ 30 s", f"{fill_s:.1f} s", fill_s <= 30),
                ("restart → reconciled and serving ≤ 2 s", f"{rf['serving_s']:.2f} s", rf["serving_s"] <= 2),
                ("VmRSS ≤ 64 MiB", f"{rssf / 1024:.1f} MiB", rssf <= 64 * 1024)]

    p = r["packet"]
    lines += ["", f"### 4. Packet path: new TCP connections/s, {p['grants_live']} grants live", "",
              f"`connect_rate` in the client namespace, {p['parallel']} connects in flight, RST on close; "
              f"{args.pp_rounds} run(s) of {p['seconds']} s per cell, jitd's table and the baseline table "
              "alternating (ABBA). Baseline: jitd stopped, its table deleted, a table holding only "
              "`ct state established,related accept` in its place.", "",
              "| port | jitd's table conn/s (median) | baseline conn/s (median) | jitd / baseline | runs jitd | "
              "runs baseline | failures, timeouts |", "|---|---|---|---|---|---|---|"]
    for port, label in ((UNPROTECTED, f"{UNPROTECTED} (not protected)"), (PORT, f"{PORT} (protected, granted)")):
        j, b = p[f"jitd_{port}"], p[f"base_{port}"]
        lines.append(f"| {label} | {j['median']:.0f} | {b['median']:.0f} | {j['median'] / b['median']:.1%} | "
                     f"{', '.join(f'{x:.0f}' for x in j['rates'])} | {', '.join(f'{x:.0f}' for x in b['rates'])} | "
                     f"{j['failures'] + b['failures']}, {j['timeouts'] + b['timeouts']} |")
        targets.append((f"packet path port {port} ≥ 95 % of baseline", f"{j['median'] / b['median']:.1%}",
                        j["median"] >= 0.95 * b["median"]))
    if p["restarts_s"]:
        lines += ["", "jitd restarts while swapping the table back (start → all grants listed): "
                  + ", ".join(f"{x:.2f} s" for x in p["restarts_s"]) + "."]

    s = r["storm"]
    lines += ["", f"### 5. Expiry storm: {s['grants']} grants ending at {s['end_time_utc']}", "",
              f"A fresh jitd (0 grants); the fill took {s['fill_s']:.2f} s ({s['fill_rate']:.0f}/s) and ended "
              f"{s['fill_ended_before_end_s']:.1f} s before the end time"
              + (" (**overran**: some ended during the fill)" if s["overran"] else "") + ". "
              f"One client granted a /32 every {args.storm_probe_interval_ms} ms ({s['probe_grants']} in all). "
              f"First expire record seen {s['first_expire_after_end_s'] if s['first_expire_after_end_s'] is not None else float('nan'):.1f} s "
              f"after the end time, all {s['expired']} by "
              f"{s['all_expired_after_end_s'] if s['all_expired_after_end_s'] is not None else float('nan'):.1f} s "
              "(the audit log polled every 0.1 s).", "",
              "| probe POST | n | p50 / p99 / max |", "|---|---|---|",
              f"| before the end time (baseline) | {(s['probe_before'] or {}).get('n', 0)} | {cell(s['probe_before'])} |",
              f"| during the storm (end time → all expiries audited, at least 2 s) | {(s['probe_during'] or {}).get('n', 0)} | "
              f"{cell(s['probe_during'])} |",
              f"| after | {(s['probe_after'] or {}).get('n', 0)} | {cell(s['probe_after'])} |"]
    if s["probe_failures"]:
        lines.append(f"\n**{s['probe_failures']} probe request(s) failed** ({s['probe_failures_during']} during the "
                     "storm); the probe reconnected after each. First: " + "; ".join(s["probe_failure_examples"]) + ".")
    during, before = s["probe_during"], s["probe_before"]
    if during and before:
        lines.append(f"\nDuring / before, p99: {ratio(during['p99'], before['p99'])}.")
    targets.append(("storm probe p99 ≤ 5 ms", (f"{fmt(during['p99'])} ms" if during else "no sample")
                    + (f", {s['probe_failures_during']} failed" if s["probe_failures_during"] else ""),
                    bool(during) and during["p99"] <= 5 and not s["probe_failures_during"]))
    targets.append((f"audit: expire records == {s['grants']}", str(s["expired"]), s["expired"] == s["grants"]))

    lines += ["", "### Targets", "", "| target | measured | |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {verdict(ok)} |" for name, value, ok in targets]
    return "\n".join(lines), targets


DOC_INTRO = """`tests/bench/scale.py` (Python 3 standard library, run as root; this section, between the
`scale-bench` markers, is rewritten by its `--write-doc`, the rest of this file is not):

```
sudo python3 tests/bench/scale.py --write-doc      # sizes 0,10000,100000; fill and storm 100 000
sudo python3 tests/bench/scale.py --smoke          # every phase at 300 grants, < 1 min (ctest bench.scale_smoke)
```

Options: `--sizes` (live-grant levels of the latency rounds, default `0,10000,100000`),
`--rounds` (interleaved rounds per level, default 200), `--fill` (live grants for fill,
restart, memory and packet path, default the largest size), `--storm` (grants in the expiry
storm, default 100 000), `--clients` (concurrent client processes, default and maximum 16:
jitd closes a uid's 17th connection), `--storm-margin` (s between the expected fill end and the
storm's end time, default 20), `--storm-timeout`, `--storm-probe-interval-ms` (default 5),
`--pp-rounds` / `--pp-seconds` / `--pp-parallel` (packet path: 3 × 5 s, 64 connects in flight),
`--baseline-requests`, `--jitd`, `--connect-rate` (built as `jitd_connect_rate` from
`tests/bench/connect_rate.c`), `--json FILE`, `--write-doc [PATH]`.

Two throw-away network namespaces (jitd, the `nft` baselines and the packet-path server; the
packet-path client) joined by a veth pair, deleted at the end also on failure or Ctrl-C; every
`nft` runs inside them. What each figure measures, and its baseline from the same run:

1. **Latency** at each size: `POST /v1/grants` on one keep-alive connection for a /32, a
   disjoint /24 … /28 and a /24 … /28 nested in an earlier grant, each followed by one
   `nft add element` process (spawned by a helper already in the namespace) into an identical
   interval set holding the same live elements (for the nested row a disjoint element of the
   same length: the kernel refuses overlapping ones). Floors from the same rounds: `GET
   /v1/policy` (HTTP round trip) and one append + `fdatasync` in jitd's state directory.
2. **Throughput**: each fill segment is split over `--clients` processes, one keep-alive
   connection each; grants/s over the segment's wall time. Baselines: the same processes
   against `GET /v1/policy` and against a canned-reply server (`connect_rate canned`, one epoll
   process in C replying the bytes of a real grant reply): what the client side can drive.
3. **Fill and restart**: the fill's total time (baseline: one `nft -f` of the same elements);
   jitd's VmRSS (baseline: at 0); `grants.journal` before and after the restart; SIGTERM,
   start, time until jitd first answers (reconciled: the table with every grant installed) and
   until `GET /v1/grants` lists every grant (baseline: the same restart at 0 grants), and
   jitd's log lines about the journal and the install at that start.
4. **Packet path**: new TCP connections/s (`connect_rate`: non-blocking connects, RST on
   close) from the client namespace to an unprotected port and to the protected, granted port
   with `--fill` grants live; baseline: the same namespaces with jitd stopped and its table
   replaced by one holding only `ct state established,related accept`; ABBA, medians.
5. **Expiry storm**: a fresh jitd (state directory moved aside), `--storm` grants with one
   `endTimeUtc`; a probe client grants a /32 every `--storm-probe-interval-ms` from the fill's
   end until the audit log holds one `expire` record per grant (which must be exactly
   `--storm`); its latency before the end time is the baseline of its latency during the storm.

Targets (printed PASS/MISS): /32 p99 ≤ 1 ms at 10k; /32 median ≥ 10× faster than `nft` at 0
and 10k; /32 median at 100k ≤ 2× at 0; ≥ 5 000 grants/s; fill of 100k ≤ 30 s; restart ≤ 2 s;
VmRSS ≤ 64 MiB; packet path ≥ 95 % of the baseline; storm probe p99 ≤ 5 ms; expire records ==
grants.
"""


def write_doc(path, text):
    section = f"{MARK_BEGIN}\n## Scale: `tests/bench/scale.py`\n\n{DOC_INTRO}\n### Figures\n\n{text}\n{MARK_END}\n"
    with open(path) as f:
        doc = f.read()
    if MARK_BEGIN in doc and MARK_END in doc:
        head, rest = doc.split(MARK_BEGIN, 1)
        tail = rest.split(MARK_END, 1)[1].lstrip("\n")
        doc = head + section + ("\n" + tail if tail else "")
    else:
        first, _, rest = doc.partition("\n")
        if first.startswith("# "):
            doc = f"{first}\n\n{section}\n{rest.lstrip(chr(10))}"
        else:
            doc = f"{section}\n{doc}"
    with open(path, "w") as f:
        f.write(doc)


# ---------------------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------------------
SMOKE = {"sizes": [0, 300], "rounds": 10, "fill": 300, "storm": 300, "storm_margin": 8, "storm_timeout": 30,
         "pp_rounds": 1, "pp_seconds": 0.5, "pp_parallel": 4, "baseline_requests": 300}


def parse_args(argv):
    parser = argparse.ArgumentParser(description="jitd at scale, each figure next to a baseline from the same run",
                                     epilog="see the module docstring for what each figure measures")
    parser.add_argument("--smoke", action="store_true",
                        help="every phase with a few hundred grants (well under a minute); checks that every "
                             "phase produced figures and the audit count matched, asserts no timing")
    parser.add_argument("--sizes", help="live-grant levels for the latency rounds (default 0,10000,100000)")
    parser.add_argument("--rounds", type=int, help="interleaved latency rounds per level (default 200)")
    parser.add_argument("--fill", type=int, help="live grants for fill/restart/memory/packet path "
                                                 "(default: the largest size)")
    parser.add_argument("--storm", type=int, help="grants in the expiry storm (default 100000)")
    parser.add_argument("--clients", type=int, default=MAX_CLIENTS,
                        help=f"concurrent client processes for fills (default and maximum {MAX_CLIENTS})")
    parser.add_argument("--storm-margin", type=float, help="seconds between the expected fill end and the "
                                                           "storm's end time (default 20)")
    parser.add_argument("--storm-timeout", type=float,
                        help="seconds after the end time to wait for every expire record (default 300)")
    parser.add_argument("--storm-probe-interval-ms", type=float, default=5.0,
                        help="the storm probe's pace (default 5 ms)")
    parser.add_argument("--pp-rounds", type=int, help="packet-path rounds, ABBA (default 3)")
    parser.add_argument("--pp-seconds", type=float, help="seconds per packet-path run (default 5)")
    parser.add_argument("--pp-parallel", type=int, help="connects in flight (default 64)")
    parser.add_argument("--baseline-requests", type=int,
                        help="requests per client-side throughput baseline (default min(segment, 20000))")
    parser.add_argument("--jitd", default=DEFAULT_JITD, help="jitd binary (default: $JITD_BIN or build/jitd)")
    parser.add_argument("--connect-rate", help="connect_rate binary (default: $JITD_CONNECT_RATE, "
                                               "build/tests/jitd_connect_rate, else built with cc)")
    parser.add_argument("--log-level", default="info", help="jitd logLevel (default info)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    parser.add_argument("--write-doc", nargs="?", const=os.path.join(REPO, "docs", "benchmarks.md"),
                        metavar="PATH", help="regenerate the scale-bench section of docs/benchmarks.md (or PATH)")
    parser.add_argument("--helper", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = {"sizes": [0, 10000, 100000], "rounds": 200, "storm": 100000, "storm_margin": 20,
                "storm_timeout": 300, "pp_rounds": 3, "pp_seconds": 5, "pp_parallel": 64, "baseline_requests": 20000}
    if args.smoke:
        defaults.update(SMOKE)
    if args.sizes:
        try:
            args.sizes = sorted({int(x) for x in args.sizes.split(",")})
        except ValueError:
            parser.error("--sizes: comma-separated numbers")
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.fill is None:
        args.fill = max(args.sizes)
    if args.fill < max(args.sizes):
        parser.error("--fill must be at least the largest --sizes")
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be 1 … {MAX_CLIENTS} (jitd's connection cap per uid)")
    if args.fill > MAX_SINGLES or args.storm > MAX_SINGLES or min(args.sizes) < 0 or args.storm < 1:
        parser.error(f"--fill/--storm/--sizes must be within 0 … {MAX_SINGLES} (--storm ≥ 1)")
    if not 1 <= args.rounds or args.rounds * len(args.sizes) > MAX_SLOTS:
        parser.error(f"--rounds × number of sizes must be 1 … {MAX_SLOTS}")
    if args.pp_rounds < 1 or args.pp_seconds <= 0 or args.pp_parallel < 1:
        parser.error("--pp-rounds ≥ 1, --pp-seconds > 0, --pp-parallel ≥ 1")
    return args


def git_commit():
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def smoke_check(r):
    """Every phase produced figures and the audit count matched; no timing is asserted."""
    problems = []
    for rec in r.get("latency", []):
        for key in ("jitd_single", "nft_single", "jitd_range", "nft_range", "jitd_nested", "nft_nested",
                    "get_policy", "fdatasync"):
            if not rec.get(key):
                problems.append(f"latency at {rec['level']}: no {key} samples")
    if not r.get("fills"):
        problems.append("no fill / throughput figure")
    for key in ("restart_0", "restart_fill"):
        if key not in r:
            problems.append(f"no {key}")
    if r.get("restart_fill", {}).get("count") != r.get("live"):
        problems.append("the restart did not list every live grant")
    p = r.get("packet", {})
    for key in (f"jitd_{UNPROTECTED}", f"jitd_{PORT}", f"base_{UNPROTECTED}", f"base_{PORT}"):
        if not p.get(key) or p[key]["median"] <= 0:
            problems.append(f"packet path: no connections for {key}")
    s = r.get("storm", {})
    if s.get("expired") != s.get("grants"):
        problems.append(f"storm: {s.get('expired')} expire records, expected {s.get('grants')}")
    if not s.get("probe_grants"):
        problems.append("storm: no probe samples")
    return problems


def main(argv):
    args = parse_args(argv)
    if args.helper:
        from benchlib import helper_loop
        return helper_loop(handle)
    refused = refuse_without_root("scale.py", "it creates network namespaces")
    if refused is not None:
        return refused
    args.jitd = os.path.abspath(args.jitd)
    failed = check_environment("tests/bench/scale.py", args.jitd)
    if failed is not None:
        return failed
    command = "sudo python3 tests/bench/scale.py " + " ".join(argv)
    commit = git_commit()
    bench = Scale(args)

    def body(b):
        b.setup()
        b.start_jitd()
        return b.measure(), machine(b.dir)

    started = time.monotonic()
    status, outcome = guarded_run(bench, body)
    if status:
        return status
    results, info = outcome
    elapsed = time.monotonic() - started
    text, targets = report(results, args, info, commit, command.strip(), elapsed)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "commit": commit, "command": command, "args": vars(args),
                       "results": results, "targets": [{"target": t, "measured": m, "met": ok}
                                                       for t, m, ok in targets]}, f, indent=1)
    if args.write_doc:
        write_doc(args.write_doc, text)
        print(f"# wrote the scale-bench section of {args.write_doc}", file=sys.stderr)
    print(f"\ntotal {elapsed:.0f} s")
    problems = smoke_check(results)
    if args.smoke or problems:
        for problem in problems:
            print(f"FAIL: {problem}", file=sys.stderr)
        if problems:
            return 1
        print("smoke: every phase produced figures; the audit counted every expiry")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
