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

--compare-jitd PATH adds a second jitd build (named by --compare-label, default "before"; the
--jitd build is named by --label, default "after"). It runs in a second throw-away namespace
with its own temporary config and state directory, also deleted at the end. In A, C's fill and
C's rounds the two jitds are interleaved request by request (after, before, nft, true, after,
before, ...), both with the same sources, and the report adds a side-by-side table with the
ratio of medians before/after.
"""
import argparse
import ipaddress
import json
import os
import sys
import tempfile

from benchlib import (DEFAULT_JITD, PORT, PROTO, Client, JitdNamespace, NamespaceHelper, bench_main, fmt,
                      now_ns, progress, spawn, summary)

GRANT_DURATION, NFT_TIMEOUT = "PT5M", "5m"
FILL_DURATION, FILL_TIMEOUT = "PT1H", "1h"
WARMUP = 10

# The same set as jitd's grants4 (docs/architecture.md), in a table of its own.
BENCH_TABLE = """table inet jitdbench {
  set grants4 { type ipv4_addr . inet_proto . inet_service; flags interval, timeout; }
}
"""

# Every phase draws its sources from its own 2^20-address block of 10.0.0.0/8 (with
# --compare-jitd both jitds use the same sources: each has a namespace and a set of its own).
BLOCK_JITD, BLOCK_NFT, BLOCK_NETNS_NFT = 0, 1, 2
BLOCK_JITD_FILL, BLOCK_NFT_FILL, BLOCK_JITD_BIG, BLOCK_NFT_BIG = 3, 4, 5, 6
BLOCK_SIZE = 1 << 20
MAX_PER_BLOCK = BLOCK_SIZE // 2


def source(block, i):
    """The i-th source of a block: 10.x.y.z at odd offsets only, so no two are adjacent."""
    return str(ipaddress.IPv4Address(0x0A000000 + block * BLOCK_SIZE + 2 * i + 1))


def nft_add_argv(address):
    return ["nft", "add", "element", "inet", "jitdbench", "grants4",
            f"{{ {address} . {PROTO} . {PORT} timeout {NFT_TIMEOUT} }}"]


def nft_delete_argv(address):
    return ["nft", "delete", "element", "inet", "jitdbench", "grants4",
            f"{{ {address} . {PROTO} . {PORT} }}"]


# ---------------------------------------------------------------------------------------------
# The helper inside the namespace: one command per stdin line, one JSON reply per line.
# ---------------------------------------------------------------------------------------------
def handle(words):
    if words[0] == "add":
        return {"ns": spawn(nft_add_argv(words[1]))}
    if words[0] == "delete":
        return {"ns": spawn(nft_delete_argv(words[1]))}
    if words[0] == "true":
        return {"ns": spawn(["true"])}
    if words[0] == "fill":  # fill <block> <count>: one nft -f for all elements
        block, count = int(words[1]), int(words[2])
        with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as f:
            f.write("add element inet jitdbench grants4 {\n")
            f.write(",\n".join(f"  {source(block, i)} . {PROTO} . {PORT} timeout {FILL_TIMEOUT}"
                               for i in range(count)))
            f.write("\n}\n")
        try:
            return {"ns": spawn(["nft", "-f", f.name])}
        finally:
            os.unlink(f.name)
    return {"error": f"unknown command {' '.join(words)!r}"}


class Helper(NamespaceHelper):
    def __init__(self, ns, children):
        super().__init__(ns, children, __file__)

    def __call__(self, *words):
        return self.request(*words)["ns"]


# ---------------------------------------------------------------------------------------------
# The jitds under test.
# ---------------------------------------------------------------------------------------------
class Target:
    """One jitd build under test: its namespace (a JitdNamespace), its client, and the prefix of
    its result keys ("jitd" for --jitd, "jitd_compare" for --compare-jitd)."""

    def __init__(self, key, label, ns):
        self.key, self.label, self.ns = key, label, ns
        self.client = None

    def name(self, targets):
        """How rows call it: plain "jitd" when it is the only one."""
        return "jitd" if len(targets) == 1 else f"jitd {self.label}"


# ---------------------------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------------------------
def report(results, args, info, targets):
    a = args
    connection = ("a new Unix-socket connection per request" if a.per_request
                  else "one persistent keep-alive Unix-socket connection")
    fills = ", ".join(f"{results[f'{t.key}_fill_s']:.1f} s" + ("" if len(targets) == 1 else f" ({t.label})")
                      for t in targets)
    lines = [
        f"machine: nproc {info['nproc']} ({info['cpu']}), kernel {info['kernel']}, {info['nft']}, "
        f"python {info['python']}, load average at end {info['loadavg_at_end']}",
    ]
    if len(targets) > 1:
        lines.append("builds: " + "; ".join(f"{t.label} = {t.ns.jitd_binary}" for t in targets)
                     + " (interleaved request by request, taking turns at going first)")
    lines += [
        f"jitd: {connection}; audit log (fdatasync per request) on {info['state_fs']}",
        f"fill: {a.fill} grants through jitd's API took {fills}; "
        f"{a.fill} elements with one `nft -f` took {results['nft_fill_s']:.2f} s",
        "",
        "| what | live elements before | n | median ms | p90 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    rows = []
    for t in targets:
        rows += [(f"{t.name(targets)} POST /v1/grants", "0 … N-1", f"{t.key}_add"),
                 (f"{t.name(targets)} DELETE /v1/grants/{{id}}", "N … 1", f"{t.key}_delete")]
    rows += [
        ("nft add element (1 process, spawned in the ns)", "0 … N-1", "nft_add"),
        ("nft delete element (1 process, spawned in the ns)", "N … 1", "nft_delete"),
        ("`true` (1 process, spawned in the ns)", "—", "true"),
        ("`ip netns exec <ns> nft add element` (raw)", "0 … n-1", "netns_nft_add"),
        ("`ip netns exec <ns> nft delete element` (raw)", "n … 1", "netns_nft_delete"),
        ("`ip netns exec <ns> true`", "—", "netns_true"),
    ]
    for t in targets:
        rows += [(f"{t.name(targets)} POST /v1/grants", f"{a.fill} + (0 … n-1)", f"big_{t.key}_add"),
                 (f"{t.name(targets)} DELETE /v1/grants/{{id}}", f"{a.fill} + (n … 1)", f"big_{t.key}_delete")]
    rows += [
        ("nft add element (1 process, spawned in the ns)", f"{a.fill} + (0 … n-1)", "big_nft_add"),
        ("nft delete element (1 process, spawned in the ns)", f"{a.fill} + (n … 1)", "big_nft_delete"),
    ]
    stats = {key: summary(results[key]) for _, _, key in rows}
    for label, size, key in rows:
        s = stats[key]
        lines.append(f"| {label} | {size} | {s['n']} | {fmt(s['median'])} | {fmt(s['p90'])} | "
                     f"{fmt(s['p99'])} |")

    overhead = stats["netns_true"]["median"]
    ratio_rows = []
    for t in targets:
        j, suffix = t.key, "" if len(targets) == 1 else f" ({t.label})"
        ratio_rows += [
            (f"nft spawned in the ns / jitd{suffix}", "nft", j, 0),
            (f"`ip netns exec` nft, raw / jitd{suffix}", "netns_nft", j, 0),
            (f"(`ip netns exec` nft − median `ip netns exec true`) / jitd{suffix}", "netns_nft", j, overhead),
            (f"nft spawned in the ns / jitd{suffix}, {a.fill} live", "big_nft", f"big_{j}", 0),
            (f"jitd{suffix}: {a.fill} live / empty", f"big_{j}", j, 0),
        ]
    ratio_rows.append((f"nft: {a.fill} live / empty", "big_nft", "nft", 0))
    base = targets[0]
    for t in targets[1:]:
        ratio_rows += [(f"jitd {t.label} / {base.label}, empty set", t.key, base.key, 0),
                       (f"jitd {t.label} / {base.label}, {a.fill} live", f"big_{t.key}", f"big_{base.key}", 0)]
    lines += ["", "| ratio of medians | add (POST) | delete (DELETE) |", "|---|---|---|"]
    ratios = {}
    for label, numerator, denominator, minus in ratio_rows:
        pair = tuple((stats[f"{numerator}_{op}"]["median"] - minus) / stats[f"{denominator}_{op}"]["median"]
                     for op in ("add", "delete"))
        ratios[label] = pair
        lines.append(f"| {label} | {pair[0]:.1f}× | {pair[1]:.1f}× |")

    if len(targets) > 1:  # the builds side by side, statistic by statistic
        head = "| request | live elements before | n |"
        for stat in ("median", "p90", "p99"):
            head += "".join(f" {t.label} {stat} ms |" for t in targets)
        head += "".join(f" {t.label} / {base.label} (median) |" for t in targets[1:])
        lines += ["", head, "|---" * (head.count("|") - 1) + "|"]
        for request, size, suffix in (("POST /v1/grants", "0 … N-1", "add"),
                                      ("DELETE /v1/grants/{id}", "N … 1", "delete"),
                                      ("POST /v1/grants", f"{a.fill} + (0 … n-1)", "add"),
                                      ("DELETE /v1/grants/{id}", f"{a.fill} + (n … 1)", "delete")):
            big = "big_" if "+" in size else ""
            per = [stats[f"{big}{t.key}_{suffix}"] for t in targets]
            line = f"| {request} | {size} | {per[0]['n']} |"
            for stat in ("median", "p90", "p99"):
                line += "".join(f" {fmt(s[stat])} |" for s in per)
            line += "".join(f" {s['median'] / per[0]['median']:.2f}× |" for s in per[1:])
            lines.append(line)

    if results[f"{base.key}_fill"]:
        buckets, n = 5, len(results[f"{base.key}_fill"])
        head = "| jitd POST while filling: live grants before | n |"
        head += "".join(" median ms | p90 ms |" if len(targets) == 1 else f" {t.label} median ms | {t.label} p90 ms |"
                        for t in targets)
        lines += ["", head, "|---" * (head.count("|") - 1) + "|"]
        for b in range(buckets):
            lo, hi = n * b // buckets, n * (b + 1) // buckets
            if hi > lo:
                line = f"| {lo} … {hi - 1} | {hi - lo} |"
                for t in targets:
                    s = summary(results[f"{t.key}_fill"][lo:hi])
                    line += f" {fmt(s['median'])} | {fmt(s['p90'])} |"
                lines.append(line)
    return "\n".join(lines), stats, ratios


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------
def count_elements(ns, table):
    listing = json.loads(ns.in_ns("nft", "-j", "list", "set", "inet", table, "grants4").stdout)
    for item in listing["nftables"]:
        if "set" in item:
            return len(item["set"].get("elem", []))
    return 0


class Bench(JitdNamespace):
    """The namespace of --jitd, nft and the helper; with --compare-jitd also a second
    JitdNamespace for the other build, set up, started and cleaned up along with this one."""

    def __init__(self, args):
        super().__init__(args.jitd, prefix="jitd-bench", log_level=args.log_level)
        self.args = args
        self.other = (JitdNamespace(args.compare_jitd, prefix="jitd-bench", log_level=args.log_level)
                      if args.compare_jitd else None)
        self.targets = [Target("jitd", args.label, self)]
        if self.other:
            self.targets.append(Target("jitd_compare", args.compare_label, self.other))

    def setup(self):
        super().setup()
        table = os.path.join(self.dir, "jitdbench.nft")
        with open(table, "w") as f:
            f.write(BENCH_TABLE)
        self.in_ns("nft", "-f", table)
        if self.other:
            progress(f"namespace {self.other.ns} for {self.args.compare_label} ({self.other.jitd_binary}); "
                     f"namespace {self.ns} for {self.args.label} ({self.jitd_binary}), nft and true")
            self.other.setup()

    def start_jitd(self):
        super().start_jitd()
        if self.other:
            self.other.start_jitd()

    def jitd_state(self):
        if not self.other:
            return super().jitd_state()
        return f"{self.args.label} {super().jitd_state()}, {self.args.compare_label} {self.other.jitd_state()}"

    def log_tail(self, lines=20):
        if not self.other:
            return super().log_tail(lines)
        return (f"[{self.args.label}]\n{super().log_tail(lines)}"
                f"[{self.args.compare_label}]\n{self.other.log_tail(lines)}")

    def cleanup(self):
        try:
            if self.other:
                self.other.cleanup()
                print(f"# namespace {self.other.ns} deleted, temporary directory removed", file=sys.stderr)
        finally:
            super().cleanup()

    def in_turn(self, i):
        """The jitd builds in round i's order: it alternates, so neither build always goes first."""
        return self.targets if i % 2 == 0 else self.targets[::-1]

    def interleaved(self, helper, jitd_block, nft_block, count, with_true):
        """count rounds of (each jitd's POST, nft add[, true]), then count of (each jitd's DELETE, nft delete)."""
        out = {"nft_add": [], "nft_delete": [], "true": []}
        ids = {}
        for t in self.targets:
            out[f"{t.key}_add"], out[f"{t.key}_delete"], ids[t.key] = [], [], []
        for i in range(count):
            for t in self.in_turn(i):
                grant_id, elapsed = t.client.grant(source(jitd_block, i), GRANT_DURATION)
                ids[t.key].append(grant_id)
                out[f"{t.key}_add"].append(elapsed)
            out["nft_add"].append(helper("add", source(nft_block, i)))
            if with_true:
                out["true"].append(helper("true"))
        for i in range(count):
            for t in self.in_turn(i):
                out[f"{t.key}_delete"].append(t.client.revoke(ids[t.key][i]))
            out["nft_delete"].append(helper("delete", source(nft_block, i)))
        return out

    def fill(self, count):
        """count grants through each jitd's API, interleaved; per jitd its POST latencies and the
        total time spent in its calls (s)."""
        samples = {t.key: [] for t in self.targets}
        spent = {t.key: 0 for t in self.targets}
        for i in range(count):
            for t in self.in_turn(i):
                started = now_ns()
                samples[t.key].append(t.client.grant(source(BLOCK_JITD_FILL, i), FILL_DURATION)[1])
                spent[t.key] += now_ns() - started
        return samples, {key: ns / 1e9 for key, ns in spent.items()}

    def measure(self):
        a = self.args
        results = {}
        for t in self.targets:
            t.client = Client(t.ns.socket, persistent=not a.per_request)
        helper = Helper(self.ns, self.children)
        names = " / ".join(t.name(self.targets) for t in self.targets)
        try:
            progress(f"warm-up ({WARMUP} rounds, not recorded)")
            self.interleaved(helper, BLOCK_JITD, BLOCK_NFT, WARMUP, True)

            progress(f"A: {a.count} rounds of {names} / nft in the ns / true, interleaved, empty sets")
            results.update(self.interleaved(helper, BLOCK_JITD, BLOCK_NFT, a.count, True))

            progress(f"B: {a.netns_count} rounds of ip netns exec (true, nft add) then nft delete")
            prefix = ["ip", "netns", "exec", self.ns]
            results["netns_true"], results["netns_nft_add"], results["netns_nft_delete"] = [], [], []
            for i in range(a.netns_count):
                results["netns_true"].append(spawn(prefix + ["true"]))
                results["netns_nft_add"].append(spawn(prefix + nft_add_argv(source(BLOCK_NETNS_NFT, i))))
            for i in range(a.netns_count):
                results["netns_nft_delete"].append(spawn(prefix + nft_delete_argv(source(BLOCK_NETNS_NFT, i))))

            progress(f"C: filling {a.fill} live grants through the API of {names}")
            samples, spent = self.fill(a.fill)
            for t in self.targets:
                results[f"{t.key}_fill"], results[f"{t.key}_fill_s"] = samples[t.key], spent[t.key]
            results["nft_fill_s"] = helper("fill", BLOCK_NFT_FILL, a.fill) / 1e9
            for ns, table in [(t.ns, "jitd") for t in self.targets] + [(self, "jitdbench")]:
                live = count_elements(ns, table)
                if live != a.fill:
                    raise RuntimeError(f"expected {a.fill} elements in inet {table} grants4 of {ns.ns}, found {live}")

            took = ", ".join(f"{spent[t.key]:.1f} s" for t in self.targets)
            progress(f"C: {a.big_count} rounds of {names} / nft in the ns, interleaved, {a.fill} live "
                     f"(jitd fill took {took})")
            big = self.interleaved(helper, BLOCK_JITD_BIG, BLOCK_NFT_BIG, a.big_count, False)
            for key, value in big.items():
                if key != "true":
                    results[f"big_{key}"] = value
            helper.close()
        finally:
            for t in self.targets:
                if t.client:
                    t.client.close()
        return results


def parse_args(argv):
    parser = argparse.ArgumentParser(description="jitd grant latency against one nft process per grant",
                                     epilog="see the module docstring for what each row measures")
    parser.add_argument("--count", type=int, default=500, help="rounds on the empty set (default 500)")
    parser.add_argument("--netns-count", type=int, default=100,
                        help="rounds of `ip netns exec <ns> nft|true` from the host namespace (default 100)")
    parser.add_argument("--fill", type=int, default=10000, help="live grants/elements for phase C (default 10000)")
    parser.add_argument("--big-count", type=int, default=100, help="rounds with --fill live (default 100)")
    parser.add_argument("--jitd", default=DEFAULT_JITD,
                        help="jitd binary (default: $JITD_BIN or build/jitd)")
    parser.add_argument("--compare-jitd", metavar="PATH",
                        help="a second jitd binary, run in its own namespace and interleaved with --jitd "
                             "request by request")
    parser.add_argument("--label", default="after", help="name of the --jitd build with --compare-jitd (default after)")
    parser.add_argument("--compare-label", default="before",
                        help="name of the --compare-jitd build (default before)")
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
    if args.compare_jitd:
        args.compare_jitd = os.path.abspath(args.compare_jitd)
        if not os.access(args.compare_jitd, os.X_OK):
            parser.error(f"--compare-jitd: no executable at {args.compare_jitd}")
        if args.label == args.compare_label:
            parser.error("--label and --compare-label must differ")
    return args


def main(argv):
    args = parse_args(argv)
    made = []

    def make_bench(a):
        made.append(Bench(a))
        return made[0]

    def finish(results, info):
        targets = made[0].targets
        text, stats, ratios = report(results, args, info, targets)
        print(text)
        if args.json:
            fill_s = {t.key: results[f"{t.key}_fill_s"] for t in targets}
            fill_s["nft"] = results["nft_fill_s"]
            with open(args.json, "w") as f:
                json.dump({"machine": info, "args": vars(args),
                           "builds": {t.key: {"label": t.label, "binary": t.ns.jitd_binary} for t in targets},
                           "summary_ms": stats,
                           "ratios": {k: {"add": v[0], "delete": v[1]} for k, v in ratios.items()},
                           "fill_s": fill_s,
                           "samples_ns": {k: v for k, v in results.items() if isinstance(v, list)}}, f)

    return bench_main("tests/bench/grant_latency.py", args, lambda: handle, make_bench, finish)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
