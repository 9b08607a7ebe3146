#!/usr/bin/env python3
"""How long jitd's table stays broken after another tool changes it.

    sudo python3 tests/bench/tamper_restore.py --count 30

Python 3 standard library only; needs root, `ip` and `nft`, and a built jitd
(default: build/jitd of this repository; override with --jitd or $JITD_BIN).

Everything happens in ONE throw-away network namespace (jitd-tamper-<hex>) that is deleted at
the end, also on failure, Ctrl-C, SIGTERM or SIGHUP (tests/bench/benchlib.py, shared with
grant_latency.py). No `nft` ever runs in the machine's own namespace.

jitd runs there with `nftTableOwnership: off`: on kernels with the owner flag (6.9+) the default
`auto` makes the table jitd's own, so no other process can touch it and there is nothing to
restore. With `off` jitd relies on self-healing: it listens to netfilter's netlink events,
coalesces a burst on a 2 ms timer and re-installs the whole table (policy + every live grant with its
remaining time) in one transaction.

For each number of live grants in --grants (default 1 and 1000, created through jitd's API,
PT1H each, /32 sources two addresses apart) the script runs --count rounds (default 30; after
--warmup rounds that are not recorded) of three tampering commands, interleaved round by round:

    nft flush ruleset
    nft delete table inet jitd
    nft flush set inet jitd grants4_single

Each command is spawned by a helper (this script re-invoked with `ip netns exec`) that already
lives in the namespace, so no `ip netns exec` start-up is counted. Before each command the
outer script pauses a random 0 … --jitter-ms (default 250 ms), so the commands do not lock
into a fixed phase with jitd's timers. The helper takes t_spawn just before it spawns `nft`,
then polls the kernel directly over its own NETLINK_NETFILTER socket (no process per probe):
every probe asks for the ruleset generation (NFT_MSG_GETGEN, one round trip); when it moved,
or while the table is not back yet, it dumps the rules of chain `input` and the elements of
`grants4_single` (the hash set that holds the /32 grants) and compares their counts with the
baseline taken before the command (the generation moves at the start of a commit, before a
dump shows the commit's result, so a change of generation alone is not enough). jitd's re-install is one atomic transaction, so
"same counts, generation at least baseline + 2" (the tampering commit and jitd's commit)
means restored. Between probes the helper sleeps --poll-interval-us (default 200 µs) so that
it does not take a whole CPU from jitd and nft; the report gives the measured median time
between probes, the resolution of the external figures. Per trial it records, as the time at
the end of the probe that saw it:

    restored − broken seen   the window the helper observed (0 when no probe fell into it; the
                             report says in how many trials the broken state was seen)
    restored − nft exited    from the moment the helper saw `nft` exit (waitpid polled every
                             probe); negative if the restore was seen before the exit
    restored − t_spawn       upper bound of the window: also includes starting the nft process

and, from jitd's log, the line `table inet jitd changed by another tool (...); restored in N us`:
jitd's own time from the first foreign event it read to the ACK of its re-install (this
includes the coalescing timer). The kernel sends the events at the end of the tampering
commit, after the change has taken effect, so a long commit (e.g. `nft flush set` of 1000
elements of an interval set) is in the observed window but not in jitd's figure.
After every trial the table is compared with the baseline
(`nft -j list table inet jitd`, set-element timeouts, expiries and handles ignored) and
exactly one restore line is expected; anything else stops the run.
"""
import argparse
import errno
import gc
import ipaddress
import json
import os
import random
import re
import socket
import statistics
import struct
import subprocess
import sys
import time

from benchlib import (DEFAULT_JITD, Client, JitdNamespace, NamespaceHelper, bench_main, fmt, loadavg,
                      now_ns, percentile, progress)

COMMANDS = {
    "flush-ruleset": ["nft", "flush", "ruleset"],
    "delete-table": ["nft", "delete", "table", "inet", "jitd"],
    "flush-set": ["nft", "flush", "set", "inet", "jitd", "grants4_single"],
}
GRANT_DURATION = "PT1H"
TRIAL_TIMEOUT_S = 10
LOG_WAIT_S = 5
SETTLE_S = 0.05  # after the restore line, so that a second (unexpected) restore would show


def source(i):
    """The i-th grant source: 10.0.x.y at odd offsets only, so no two kernel ranges touch."""
    return str(ipaddress.IPv4Address(0x0A000000 + 2 * i + 1))


# ---------------------------------------------------------------------------------------------
# nf_tables over netlink, from the helper inside the namespace (include/uapi/linux/netfilter/
# nf_tables.h and nfnetlink.h).
# ---------------------------------------------------------------------------------------------
NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWRULE, NFT_MSG_GETRULE = 6, 7
NFT_MSG_NEWSETELEM, NFT_MSG_GETSETELEM = 12, 13
NFT_MSG_NEWGEN, NFT_MSG_GETGEN = 15, 16
NFTA_GEN_ID = 1
NFTA_RULE_TABLE, NFTA_RULE_CHAIN = 1, 2
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFPROTO_UNSPEC, NFPROTO_INET = 0, 1
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_DUMP_INTR, NLM_F_DUMP = 0x1, 0x2, 0x10, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_TYPE_MASK = 0x3FFF


class DumpInterrupted(Exception):
    pass


def attribute(kind, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def attributes(data):
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        yield kind & NLA_TYPE_MASK, data[offset + 4:offset + length]
        offset += (length + 3) & ~3


class Nftables:
    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((0, 0))
        self.seq = 0

    def request(self, message, family, flags, attrs=b""):
        """[(type, payload after nfgenmsg)] of the reply; [] for ENOENT; raises on other errors."""
        self.seq += 1
        body = struct.pack("=BBH", family, 0, 0) + attrs
        kind = (NFNL_SUBSYS_NFTABLES << 8) | message
        self.sock.send(struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | flags, self.seq, 0) + body)
        replies, interrupted = [], False
        while True:
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, msg_flags, seq, _ = struct.unpack_from("=IHHII", data, offset)
                payload = data[offset + 16:offset + length]
                offset += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if msg_flags & NLM_F_DUMP_INTR:
                    interrupted = True
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code == 0:
                        return replies
                    if code == errno.ENOENT:
                        return []
                    raise OSError(code, f"nf_tables message {message}: {os.strerror(code)}")
                if kind == NLMSG_DONE:
                    if interrupted:
                        raise DumpInterrupted()
                    return replies
                replies.append((kind & 0xFF, payload[4:]))
                if not msg_flags & NLM_F_MULTI:
                    return replies

    def generation(self):
        for kind, payload in self.request(NFT_MSG_GETGEN, NFPROTO_UNSPEC, 0):
            if kind == NFT_MSG_NEWGEN:
                for attr, value in attributes(payload):
                    if attr == NFTA_GEN_ID:
                        return struct.unpack(">I", value[:4])[0]
        raise RuntimeError("no generation id in the NFT_MSG_GETGEN reply")

    def rules(self, table, chain):
        attrs = attribute(NFTA_RULE_TABLE, table.encode() + b"\0") + attribute(NFTA_RULE_CHAIN, chain.encode() + b"\0")
        replies = self.request(NFT_MSG_GETRULE, NFPROTO_INET, NLM_F_DUMP, attrs)
        return sum(kind == NFT_MSG_NEWRULE for kind, _ in replies)

    def elements(self, table, set_name):
        attrs = (attribute(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
                 + attribute(NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0"))
        count = 0
        for kind, payload in self.request(NFT_MSG_GETSETELEM, NFPROTO_INET, NLM_F_DUMP, attrs):
            if kind == NFT_MSG_NEWSETELEM:
                for attr, value in attributes(payload):
                    if attr == NFTA_SET_ELEM_LIST_ELEMENTS:
                        count += sum(1 for _ in attributes(value))
        return count

    def state(self):
        """(generation, rules in jitd's input chain, elements in grants4_single), one consistent reading."""
        while True:
            try:
                generation = self.generation()
                state = (generation, self.rules("jitd", "input"), self.elements("jitd", "grants4_single"))
                if self.generation() == generation:
                    return state
            except DumpInterrupted:
                pass


# ---------------------------------------------------------------------------------------------
# The helper inside the namespace: one command per stdin line, one JSON reply per line.
# ---------------------------------------------------------------------------------------------
class Prober:
    def __init__(self):
        self.nft = Nftables()

    def baseline(self):
        return {"state": self.nft.state()}

    def trial(self, kind, interval_us):
        base_generation, *base = self.nft.state()
        if self.nft.state()[0] != base_generation:
            raise RuntimeError("the ruleset changes on its own; no baseline")
        sleep_s = interval_us / 1e6
        probes, generation, counts = 0, base_generation, base
        broken_seen = restored = exited = None
        gc.disable()
        try:
            t_spawn = now_ns()
            process = subprocess.Popen(COMMANDS[kind], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE)
            while True:
                if exited is None and process.poll() is not None:
                    exited = now_ns()
                probes += 1
                current = self.nft.generation()
                # The generation moves at the start of a commit, before e.g. a new set's elements
                # are visible to a dump: keep dumping until the counts are back, not only on change.
                if current != generation or counts != base:
                    current, *counts = self.nft.state()
                    seen = now_ns()
                    generation = current
                    if counts != base:
                        broken_seen, restored = broken_seen or seen, None
                    elif current >= base_generation + 2 and restored is None:
                        restored = seen
                if restored is not None and exited is not None:
                    break
                if now_ns() - t_spawn > TRIAL_TIMEOUT_S * 1e9:
                    process.kill()
                    raise RuntimeError(f"{kind}: not restored within {TRIAL_TIMEOUT_S} s (generation "
                                       f"{base_generation} → {generation}; rules, elements {base} → {counts})")
                if sleep_s:
                    time.sleep(sleep_s)
            t_end = now_ns()
        finally:
            gc.enable()
        stderr = process.stderr.read().decode().strip()
        process.stderr.close()
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(COMMANDS[kind])}: exit {process.returncode}: {stderr}")
        return {"spawn_to_restored": restored - t_spawn, "exit_to_restored": restored - exited,
                "broken_to_restored": restored - broken_seen if broken_seen is not None else 0,
                "broken_seen": broken_seen is not None, "probes": probes,
                "probe_period": (t_end - t_spawn) / probes,
                "generations": generation - base_generation}


def normalized_table():
    """jitd's table as `nft -j` lists it, without handles, element timeouts/expiries, metainfo."""
    listing = json.loads(subprocess.run(["nft", "-j", "list", "table", "inet", "jitd"], check=True,
                                        capture_output=True, text=True).stdout)

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("handle", "timeout", "expires")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return [strip(item) for item in listing["nftables"] if "metainfo" not in item]


def helper_handler():
    prober = Prober()

    def handle(words):
        if words[0] == "baseline":
            return prober.baseline()
        if words[0] == "trial":
            return prober.trial(words[1], int(words[2]))
        if words[0] == "list":
            return {"table": normalized_table()}
        return {"error": f"unknown command {' '.join(words)!r}"}
    return handle


# ---------------------------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------------------------
RESTORED = re.compile(r"table inet jitd changed by another tool \((.*)\); restored in (\d+) us")
PORT_SUFFIX = re.compile(r" \(netlink port \d+\)")


class Bench(JitdNamespace):
    def __init__(self, args):
        super().__init__(args.jitd, prefix="jitd-tamper", log_level=args.log_level,
                         extra_config="nftTableOwnership: off\n")
        self.args = args
        self.log_offset = 0

    def new_log_lines(self):
        with open(self.log_path) as f:
            f.seek(self.log_offset)
            text = f.read()
        complete = text[:text.rfind("\n") + 1]
        self.log_offset += len(complete.encode())
        return complete.splitlines()

    def wait_for_restore_lines(self):
        lines, deadline = [], time.monotonic() + LOG_WAIT_S
        while time.monotonic() < deadline:
            lines += self.new_log_lines()
            if any(RESTORED.search(line) for line in lines):
                time.sleep(SETTLE_S)
                return lines + self.new_log_lines()
            time.sleep(0.005)
        return lines

    def trial(self, helper, kind, expected_table):
        time.sleep(random.uniform(0, self.args.jitter_ms / 1e3))
        sample = helper.request("trial", kind, self.args.poll_interval_us)
        lines = self.wait_for_restore_lines()
        restores = [RESTORED.search(line) for line in lines]
        restores = [m for m in restores if m]
        trouble = [line for line in lines if "[error]" in line or "restore failed" in line]
        if len(restores) != 1 or trouble:
            raise RuntimeError(f"{kind}: expected one restore line in jitd's log, got:\n" + "\n".join(lines))
        sample["jitd_us"] = int(restores[0].group(2))
        sample["jitd_what"] = restores[0].group(1)
        if helper.request("list")["table"] != expected_table:
            raise RuntimeError(f"{kind}: jitd's table after the restore differs from the one before")
        return sample

    def measure(self):
        a = self.args
        results = {"phases": []}
        client = Client(self.socket, persistent=True)
        helper = NamespaceHelper(self.ns, self.children, __file__)
        try:
            live = 0
            for target in a.grants:
                progress(f"{target} live grant(s): creating {target - live} through jitd's API")
                while live < target:
                    client.grant(source(live), GRANT_DURATION)
                    live += 1
                client.close()
                self.new_log_lines()
                _, rules, elements = helper.request("baseline")["state"]
                expected_table = helper.request("list")["table"]
                phase = {"grants": target, "rules": rules, "elements": elements,
                         "loadavg_before": loadavg(), "samples": {kind: [] for kind in COMMANDS}}
                progress(f"{target} live grant(s) ({elements} kernel elements, {rules} rules): "
                         f"{a.warmup} warm-up + {a.count} rounds of {', '.join(COMMANDS)}")
                for round_number in range(a.warmup + a.count):
                    for kind in COMMANDS:
                        sample = self.trial(helper, kind, expected_table)
                        if round_number >= a.warmup:
                            phase["samples"][kind].append(sample)
                phase["loadavg_after"] = loadavg()
                results["phases"].append(phase)
            helper.close()
        finally:
            client.close()
        return results


def ms_summary(values_ms):
    return {"n": len(values_ms), "median": statistics.median(values_ms), "p90": percentile(values_ms, 90),
            "max": max(values_ms)}


FIGURES = [
    ("jitd_us", "jitd's log: first foreign event → ACK of the re-install", 1e-3),
    ("exit_to_restored", "seen restored − nft exit seen", 1e-6),
    ("broken_to_restored", "seen restored − seen broken", 1e-6),
    ("spawn_to_restored", "seen restored − nft spawned (upper bound)", 1e-6),
]


def report(results, args, info):
    lines = [
        f"machine: nproc {info['nproc']} ({info['cpu']}), kernel {info['kernel']}, {info['nft']}, "
        f"python {info['python']}, load average at end {info['loadavg_at_end']}",
        f"jitd: nftTableOwnership off; helper sleeps {args.poll_interval_us} µs between probes; "
        f"random pause of 0 … {args.jitter_ms:g} ms before each command",
        "",
        "| live grants | command | figure | n | median ms | p90 ms | max ms |",
        "|---|---|---|---|---|---|---|",
    ]
    stats = {}
    notes = []
    for phase in results["phases"]:
        for kind, samples in phase["samples"].items():
            command = " ".join(COMMANDS[kind])
            for key, label, scale in FIGURES:
                s = ms_summary([sample[key] * scale for sample in samples])
                stats[f"{phase['grants']}/{kind}/{key}"] = s
                lines.append(f"| {phase['grants']} | `{command}` | {label} | {s['n']} | {fmt(s['median'])} | "
                             f"{fmt(s['p90'])} | {fmt(s['max'])} |")
            periods = [sample["probe_period"] / 1e6 for sample in samples]
            seen = sum(sample["broken_seen"] for sample in samples)
            logged = " / ".join(sorted({PORT_SUFFIX.sub("", sample["jitd_what"]) for sample in samples}))
            notes.append(f"{phase['grants']} live, `{command}`: broken state seen in {seen}/{len(samples)} "
                         f"trials; median time between probes {fmt(statistics.median(periods))} ms; "
                         f"generations per trial {sorted({sample['generations'] for sample in samples})}; "
                         f"jitd logged: {logged}")
    lines += [""] + notes
    lines += [""] + [f"{phase['grants']} live grant(s): {phase['elements']} kernel elements in grants4_single, "
                     f"{phase['rules']} rules in chain input; load average before {phase['loadavg_before']}, "
                     f"after {phase['loadavg_after']}" for phase in results["phases"]]
    return "\n".join(lines), stats


def parse_args(argv):
    parser = argparse.ArgumentParser(description="how fast jitd restores its nftables table after tampering",
                                     epilog="see the module docstring for what each figure measures")
    parser.add_argument("--count", type=int, default=30, help="recorded rounds per number of grants (default 30)")
    parser.add_argument("--warmup", type=int, default=2, help="rounds not recorded, per number of grants (default 2)")
    parser.add_argument("--grants", default="1,1000",
                        help="comma-separated numbers of live grants, ascending (default 1,1000)")
    parser.add_argument("--poll-interval-us", type=int, default=200,
                        help="helper's sleep between probes in µs, 0 = tight loop (default 200)")
    parser.add_argument("--jitter-ms", type=float, default=250,
                        help="random pause before each command, uniform in [0, this) ms (default 250)")
    parser.add_argument("--jitd", default=DEFAULT_JITD, help="jitd binary (default: $JITD_BIN or build/jitd)")
    parser.add_argument("--log-level", default="info",
                        help="jitd logLevel (default info; the restore line is a warning)")
    parser.add_argument("--json", metavar="FILE", help="also write summaries and raw samples to FILE")
    parser.add_argument("--helper", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.helper:
        return args
    try:
        args.grants = [int(n) for n in args.grants.split(",")]
    except ValueError:
        parser.error("--grants: comma-separated integers")
    if not args.grants or args.grants != sorted(args.grants) or args.grants[0] < 1 or args.grants[-1] > 30000:
        parser.error("--grants: ascending, 1 … 30000")
    if args.count < 1 or args.warmup < 0 or args.poll_interval_us < 0 or args.jitter_ms < 0:
        parser.error("--count ≥ 1, --warmup ≥ 0, --poll-interval-us ≥ 0, --jitter-ms ≥ 0")
    return args


def main(argv):
    args = parse_args(argv)

    def finish(results, info):
        text, stats = report(results, args, info)
        print(text)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": info, "args": vars(args), "summary_ms": stats,
                           "phases": results["phases"]}, f)

    return bench_main("tests/bench/tamper_restore.py", args, helper_handler, Bench, finish)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
