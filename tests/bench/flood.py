#!/usr/bin/env python3
"""jitd's kernel backends under a SYN flood, and new connections/s with 100 000 grants live,
each next to no filtering at all, measured side by side in one run.

    sudo python3 tests/bench/flood.py --write-doc     # the full run (3 rounds, 10 s floods, 100k grants)
    sudo python3 tests/bench/flood.py --smoke         # seconds per run, 500 grants (ctest bench.flood_smoke)

Python 3 standard library only; needs root, `ip`, `nft`, `tc`, `bpftool`, `trafgen` (Debian
package netsniff-ng), `mount`, a built jitd (--jitd, $JITD_BIN or build/jitd) and
tests/bench/connect_rate.c built (--connect-rate, $JITD_CONNECT_RATE,
build/tests/jitd_connect_rate, else compiled with `cc` into the temporary directory).

Isolation: two throw-away network namespaces, `jitd-flood-<hex>` (jitd, the listener on port
22) and `jitd-flood-<hex>-c` (trafgen, connect_rate), joined by a veth pair; a private bpffs
mounted in the temporary directory and given to jitd as bpfFilesystem (the machine's
/sys/fs/bpf is never read or written; bpftool reads only the pins under that mount). All of it
is removed at the end, also on an error, Ctrl-C, SIGTERM or SIGHUP (benchlib.guarded_run).
Every `nft`, `tc`, `trafgen` and jitd runs under `ip netns exec` in one of these namespaces.

Configurations, visited in turn each round (the order mirrored every other round: A B C D,
D C B A, ...), all with the same --grants grants live (one /32 each, made once through the API
by --clients processes and kept in jitd's journal, so each backend installs them at its start):

  none      no filtering at all: jitd stopped and `jitd --uninstall`ed, no table, no program,
            no conntrack hooks; the kernel answers the SYNs itself (SYN-ACK, syncookies once the
            listener's SYN queue is full) out through an ifb interface that discards them.
  nftables  backend: nftables (jitd's table at the input hook, after conntrack and routing).
  tc        backend: ebpf, attach: tc (clsact ingress: before netfilter, after skb allocation).
  xdp       backend: ebpf, attach: xdp (the veth's native XDP: before the stack builds an skb
            of its own for the frame).

Per visit:

  1. SYN flood: trafgen (one process, pinned by trafgen to one CPU) sends crafted TCP SYNs
     from the client veth to the server's address, port 22 (the protected port), as fast as it
     can for --seconds: the server veth's MAC, correct IP and TCP checksums (csumip/csumtcp),
     source addresses random over 10.88.0.0/16 (no grant covers them), random source ports,
     sequence numbers and IP ids. Figures: packets offered (trafgen's count over its own run
     time); packets dropped as the kernel counted them (GET /v1/status droppedPackets of port
     22, cross-checked with the nft rule counter or the pinned per-CPU counters map read with
     bpftool); what reached TCP (the server namespace's Tcp InSegs) and what it answered
     (OutSegs); and CPU time from /proc/stat (see CPU below).
  2. connect_rate (tests/bench/connect_rate.c) from the client namespace to port 22 for
     --pp-seconds, --pp-parallel connects in flight, RST on close, from a source address that
     is one of the --grants grants (the middle one): new TCP connections/s. The listener is
     restarted (untimed) after every flood, so a SYN queue the baseline's flood filled does not
     slow the next measurement.

CPU: a veth has no interrupt or receive thread of its own. trafgen's transmit hands each frame
to the peer's receive path on the same CPU: the frame is queued to that CPU's backlog (or, with
XDP on the veth, to its ring and NAPI) and processed in NET_RX softirq when trafgen's send
re-enables bottom halves (or in ksoftirqd/N under load). So the server side's packet work is the
softirq time of trafgen's CPU. This kernel has no IRQ time accounting (CONFIG_IRQ_TIME_ACCOUNTING
unset), so /proc/stat's softirq column is sampled at the tick (HZ 250: 2 500 samples in a 10 s
run); a softirq tick that lands while trafgen is running is also added to trafgen's own system
time, so "whole machine minus trafgen's process time" would wrongly subtract the receive work
too and is not used. The report gives (a) softirq CPU seconds per million packets offered on
trafgen's CPU (the server side's receive path: XDP/tc/netfilter/TCP, and for the baseline the
answers' transmit), (b) the same summed over all CPUs, (c) all busy time of trafgen's CPU per
packet (generation and receive; about 1/rate, as that CPU is saturated), and trafgen's own user
and system time (from wait4), and how busy the other CPU was (other load on the machine).

Counters read before and after each flood: /proc/stat, trafgen's output and rusage, jitd's
status, the nft counter or the bpftool counters map, the server namespace's /proc/net/snmp and
/proc/net/netstat, both veths' statistics and /proc/net/softnet_stat (backlog drops).
"""
import argparse
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (DEFAULT_JITD, PORT, REPO, Client, ClientServerNamespaces, UnixHTTPConnection,  # noqa: E402
                      check_environment, guarded_run, loadavg, machine, progress, refuse_without_root, run)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernel"))
from lab import pinned_map_entries, port_counter  # noqa: E402  (one reader of bpftool's map dumps)
from scale import B_FILL, MAX_CLIENTS, MAX_SINGLES, concurrent, git_commit, grant_body, single, split  # noqa: E402

POLICY = """ports:
  - number: 22
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT24H
"""
SERVER_IP, CLIENT_IP = "192.168.77.1", "192.168.77.2"
FLOOD_NET = "10.88.0.0/16"  # the flood's sources: trafgen sets the last two bytes at random
CONFIGS = ("none", "nftables", "tc", "xdp")
BACKENDS = CONFIGS[1:]
LABELS = {"none": "no filtering (baseline)", "nftables": "nftables (input hook)",
          "tc": "eBPF at tc ingress", "xdp": "eBPF at XDP"}
BACKEND_CONFIG = {"nftables": "backend: nftables\n", "tc": "backend: ebpf\nattach: tc\n",
                  "xdp": "backend: ebpf\nattach: xdp\n"}
MARK_BEGIN, MARK_END = "<!-- flood:begin -->", "<!-- flood:end -->"
ABI_HEADER = os.path.join(REPO, "bpf", "jitd_abi.h")


def bpf_layout_version():
    """JITD_BPF_LAYOUT_VERSION from bpf/jitd_abi.h: the last part of jitd's pin path."""
    with open(ABI_HEADER) as f:
        return int(re.search(r"#define JITD_BPF_LAYOUT_VERSION (\d+)", f.read()).group(1))


def read_proc_stat():
    """{cpu name: [user, nice, system, idle, iowait, irq, softirq, steal, ...]} in USER_HZ ticks."""
    cpus = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu"):
                name, *values = line.split()
                cpus[name] = [int(v) for v in values]
    return cpus


def cpu_delta(before, after):
    """Seconds per CPU (and "cpu" for all): softirq, system, busy (all but idle, iowait, steal;
    guest time is already inside user)."""
    hz = os.sysconf("SC_CLK_TCK")
    out = {}
    for name in after:
        d = [a - b for a, b in zip(after[name], before.get(name, after[name]))]
        user, nice, system, idle, iowait, irq, softirq, steal = (d + [0] * 8)[:8]
        out[name] = {"softirq": softirq / hz, "system": system / hz, "user": (user + nice) / hz,
                     "irq": irq / hz, "busy": (user + nice + system + irq + softirq) / hz,
                     "idle": (idle + iowait) / hz}
    return out


def snmp_counters(text):
    """{"Tcp.InSegs": n, "TcpExt.SyncookiesSent": n, ...} from /proc/net/snmp or netstat text."""
    counters, lines = {}, text.splitlines()
    for header, values in zip(lines[::2], lines[1::2]):
        kind, names = header.split(":", 1)
        for name, value in zip(names.split(), values.split(":", 1)[1].split()):
            counters[f"{kind}.{name}"] = int(value)
    return counters


def link_stats(ns, ifname):
    (link,) = json.loads(run(["ip", "netns", "exec", ns, "ip", "-s", "-j", "link", "show", "dev", ifname]).stdout)
    return {"rx_packets": link["stats64"]["rx"]["packets"], "rx_dropped": link["stats64"]["rx"]["dropped"],
            "tx_packets": link["stats64"]["tx"]["packets"], "tx_dropped": link["stats64"]["tx"]["dropped"]}


def softnet_dropped():
    """Packets dropped because a CPU's backlog was full (the second column, summed)."""
    with open("/proc/net/softnet_stat") as f:
        return sum(int(line.split()[1], 16) for line in f if line.strip())


class TrafgenFailed(RuntimeError):
    """trafgen stopped without its report (seen once under load: "Flushing TX_RING failed:
    Resource temporarily unavailable"); the run measured nothing and may be made again."""


def parse_trafgen(text):
    """trafgen's exit report: packets sent, and (cpu, seconds, packets) per worker."""
    workers = [(int(cpu), int(sec) + int(usec) / 1e6, int(packets)) for sec, usec, cpu, packets in
               re.findall(r"(\d+) sec, (\d+) usec on CPU(\d+) \((\d+) packets\)", text)]
    total = re.search(r"(\d+) packets outgoing", text)
    if not total or not workers:
        raise TrafgenFailed(f"no packet count in trafgen's output:\n{text[-2000:]}")
    return int(total.group(1)), workers


def trafgen_config(server_mac, client_mac):
    """The SYN, byte by byte (trafgen(8) syntax): csumip/csumtcp are recomputed per packet
    after the drnd() fields change."""
    mac = lambda text: ", ".join(f"0x{b}" for b in text.split(":"))  # noqa: E731
    server_ip = ", ".join(SERVER_IP.split("."))
    return f"""/* SYN flood for tests/bench/flood.py: 54-byte frames, one template, random fields */
{{
  /* Ethernet: to the server veth, from the client veth, IPv4 */
  {mac(server_mac)},
  {mac(client_mac)},
  c16(0x0800),
  /* IPv4 header (offset 14): version 4, IHL 5, TOS 0, total length 40, random id, DF, TTL 64, TCP */
  0x45, 0x00, c16(40), drnd(), drnd(), 0x40, 0x00, 64, 6,
  csumip(14, 33),
  /* source 10.88.x.y, x and y random per packet (no grant covers 10.88.0.0/16) */
  10, 88, drnd(), drnd(),
  /* destination: the server */
  {server_ip},
  /* TCP header (offset 34): random source port, destination port {PORT}, random sequence */
  drnd(), drnd(), c16({PORT}),
  drnd(), drnd(), drnd(), drnd(),
  c32(0),
  /* data offset 5 words, flags SYN, window 64240, checksum over the pseudo-header, urgent 0 */
  0x50, 0x02, c16(64240),
  csumtcp(14, 34),
  c16(0),
}}
"""


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# ---------------------------------------------------------------------------------------------
# The namespaces and the run.
# ---------------------------------------------------------------------------------------------
class Flood(ClientServerNamespaces):
    def __init__(self, args):
        super().__init__(args.jitd, prefix="jitd-flood", log_level=args.log_level, policy=POLICY)
        self.args = args
        self.sink_if = f"vd{self.ns.rsplit('-', 1)[1]}"
        self.bpffs = None
        self.bpffs_mounted = False
        self.listener = None
        self.current = None  # the configuration in force
        self.live = 0
        self.source = None  # the granted address connect_rate connects from
        self.results = {"flood": [], "connect": [], "switches": []}

    # ---- set-up and cleanup ----
    def setup(self):
        super().setup()
        self.setup_pair(SERVER_IP, CLIENT_IP)
        self.source = single(B_FILL, self.args.grants // 2)
        # The granted source connect_rate uses, and the server's route back to it.
        self.ns_run(self.client_ns, "ip", "addr", "add", f"{self.source}/32", "dev", self.client_if)
        self.ns_run(self.ns, "ip", "route", "add", f"{self.source}/32", "via", CLIENT_IP)
        # The flood's sources are answered (baseline) out through an ifb interface, which
        # discards what is sent to it (what tc did not redirect there; counted as its rx_dropped)
        # and needs no ARP: the answers cost what building and sending them costs, and nobody
        # downstream pays for receiving them. (ifb, not dummy: this kernel has no dummy driver.)
        self.ns_run(self.ns, "ip", "link", "add", self.sink_if, "type", "ifb")
        self.ns_run(self.ns, "ip", "link", "set", self.sink_if, "up")
        self.ns_run(self.ns, "ip", "route", "add", FLOOD_NET, "dev", self.sink_if)
        # Spoofed sources must reach the input path whatever the defaults of a new namespace.
        for key in ("all", "default", self.server_if):
            self.ns_run(self.ns, "sysctl", "-q", "-w", f"net.ipv4.conf.{key}.rp_filter=0")
        # RST-closed connections leave conntrack after 1 s (as in scale.py's packet path).
        subprocess.run(["ip", "netns", "exec", self.ns, "sysctl", "-q", "-w",
                        "net.netfilter.nf_conntrack_tcp_timeout_close=1"], capture_output=True)
        # A bpffs of our own (as tests/kernel/lab.py): mounted here, in this mount namespace, so
        # that it outlives each `ip netns exec` and a restarted jitd finds its pins.
        self.bpffs = os.path.join(self.dir, "bpffs")
        os.makedirs(self.bpffs)
        run(["mount", "-t", "bpf", "bpf", self.bpffs])
        self.bpffs_mounted = True
        with open(self.config) as f:
            base = f.read()
        self.configs = {}
        for backend, text in BACKEND_CONFIG.items():
            path = os.path.join(self.dir, f"jitd-{backend}.yaml")
            extra = text if backend == "nftables" else \
                text + f"interfaces: [{self.server_if}]\nbpfFilesystem: {self.bpffs}\n"
            with open(path, "w") as f:
                f.write(base + extra)
            self.configs[backend] = path
        macs = {}
        for ns, ifname in ((self.ns, self.server_if), (self.client_ns, self.client_if)):
            (link,) = json.loads(self.ns_run(ns, "ip", "-j", "link", "show", "dev", ifname).stdout)
            macs[ifname] = link["address"]
        self.trafgen_cfg = os.path.join(self.dir, "syn.cfg")
        with open(self.trafgen_cfg, "w") as f:
            f.write(trafgen_config(macs[self.server_if], macs[self.client_if]))
        self.connect_rate = self.find_connect_rate(self.args.connect_rate)
        self.pin_dir = os.path.join(self.bpffs, "jitd", str(os.stat(f"/run/netns/{self.ns}").st_ino),
                                    f"v{bpf_layout_version()}")

    def ns_run(self, ns, *argv):
        return run(["ip", "netns", "exec", ns, *argv])

    def cleanup(self):
        # The fill's processes, jitd, trafgen and the listener first, then the bpffs, then the
        # namespaces and the directory (the base classes' cleanup).
        self.stop_procs()
        self.stop_children()
        if self.bpffs_mounted:
            result = subprocess.run(["umount", self.bpffs], capture_output=True, text=True)
            if result.returncode != 0:
                print(f"WARNING: could not unmount {self.bpffs}: {result.stderr.strip()}; lazy unmount",
                      file=sys.stderr)
                subprocess.run(["umount", "-l", self.bpffs], capture_output=True)
            self.bpffs_mounted = False
        super().cleanup()

    # ---- jitd and the switches between configurations ----
    def launch(self, backend, expect, timeout=600):
        """Starts jitd with `backend`'s config; seconds until GET /v1/grants listed `expect`."""
        self.config = self.configs[backend]
        self.log_path = os.path.join(self.dir, "jitd.log")
        with open(self.log_path, "a") as log:
            log.write(f"--- flood.py: start with {backend} at {time.time():.3f}\n")
            log.flush()
            started = time.monotonic()
            self.jitd = subprocess.Popen(["ip", "netns", "exec", self.ns, self.jitd_binary, "--config", self.config],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        self.children.append(self.jitd)
        while time.monotonic() - started < timeout:
            if self.jitd.poll() is not None:
                raise RuntimeError(f"jitd ({backend}) exited with {self.jitd.returncode}:\n{self.log_tail()}")
            try:
                connection = UnixHTTPConnection(self.socket, timeout=timeout)
                connection.request("GET", "/v1/grants")
                response = connection.getresponse()
                data = response.read()
                connection.close()
                if response.status == 200 and len(json.loads(data)["grants"]) == expect:
                    return time.monotonic() - started
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"jitd ({backend}) did not list {expect} grants within {timeout} s:\n{self.log_tail()}")

    def stop(self):
        self.jitd.send_signal(signal.SIGTERM)
        self.jitd.wait(timeout=600)

    def uninstall(self, backend):
        result = subprocess.run(["ip", "netns", "exec", self.ns, self.jitd_binary, "--config", self.configs[backend],
                                 "--uninstall"], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"jitd --uninstall ({backend}): {result.returncode}: {result.stderr.strip()}")

    def status(self):
        status, reply, _ = Client(self.socket, persistent=False).call("GET", "/v1/status")
        if status != 200:
            raise RuntimeError(f"GET /v1/status: {status} {reply}")
        return reply

    def filters_present(self):
        """What of any filter is in the server namespace, read from the kernel: nft tables,
        tc filters and XDP on the server veth, jitd's pins."""
        found = []
        ruleset = json.loads(self.ns_run(self.ns, "nft", "-j", "list", "tables").stdout or '{"nftables": []}')
        found += [f"table {t['table']['family']} {t['table']['name']}" for t in ruleset["nftables"] if "table" in t]
        tc = subprocess.run(["ip", "netns", "exec", self.ns, "tc", "-j", "filter", "show", "dev", self.server_if,
                             "ingress"], capture_output=True, text=True)  # fails without a clsact qdisc
        if tc.returncode == 0 and json.loads(tc.stdout or "[]"):
            found.append("tc ingress filter")
        if self.xdp_mode():
            found.append(f"xdp ({self.xdp_mode()})")
        if os.path.isdir(self.pin_dir) and os.listdir(self.pin_dir):
            found.append(f"pins in {self.pin_dir}")
        return found

    def xdp_mode(self):
        (link,) = json.loads(self.ns_run(self.ns, "ip", "-j", "link", "show", "dev", self.server_if).stdout)
        xdp = link.get("xdp")
        if not xdp:
            return None
        return {1: "native", 2: "generic", 3: "offload"}.get(xdp.get("mode"), str(xdp.get("mode")))

    def bpf_map(self, name):
        """A pinned map's entries as (key bytes, value as an integer; per-CPU values summed)."""
        return pinned_map_entries(os.path.join(self.pin_dir, name))

    def kernel_grants(self, backend):
        """Grant entries in the kernel: elements of jitd's two IPv4 grant sets, or grants4's
        entries (read with bpftool from the pins)."""
        if backend == "nftables":
            count = 0
            for name in ("grants4_single", "grants4"):
                listing = json.loads(self.ns_run(self.ns, "nft", "-j", "list", "set", "inet", "jitd", name).stdout)
                count += sum(len(i["set"].get("elem", [])) for i in listing["nftables"] if "set" in i)
            return count
        return len(json.loads(run(["bpftool", "-j", "map", "dump", "pinned",
                                   os.path.join(self.pin_dir, "grants4")]).stdout))

    def kernel_drops(self, backend):
        """Port 22's drops as the kernel counts them, read without jitd: the counter of the drop
        rule of jitd's chain, or the pinned per-CPU counters map."""
        if backend == "nftables":
            listing = json.loads(self.ns_run(self.ns, "nft", "-j", "list", "chain", "inet", "jitd", "input").stdout)
            for item in listing["nftables"]:
                rule = item.get("rule")
                if rule and any("drop" in e for e in rule["expr"]):
                    for expression in rule["expr"]:
                        if "counter" in expression:
                            return expression["counter"]["packets"]
            raise RuntimeError("no counted drop rule in jitd's chain")
        key = bytes([6, 0]) + PORT.to_bytes(2, "big")
        return sum(port_counter(value, "dropped_packets")
                   for k, value in self.bpf_map("counters") if k == key)

    def switch(self, target):
        """Puts `target` in force: jitd stopped and uninstalled, then started with the target's
        backend, which installs every live grant (from the journal); checked in the kernel."""
        if target == self.current:
            return
        started = time.monotonic()
        if self.current not in (None, "none"):
            self.stop()
            self.uninstall(self.current)
        left = self.filters_present()
        if left:
            raise RuntimeError(f"after jitd --uninstall ({self.current}) the server namespace still has: {left}")
        record = {"from": self.current, "to": target}
        if target != "none":
            record["ready_s"] = self.launch(target, expect=self.live)
            status = self.status()
            record["where"] = status["enforcement"]["where"]
            record["backend"] = status["backend"]
            grants = self.kernel_grants(target)
            if grants != self.live:
                raise RuntimeError(f"{target}: {grants} grant entries in the kernel, expected {self.live}")
            record["kernel_grants"] = grants
            if target == "xdp":
                record["xdp_mode"] = self.xdp_mode()
        record["switch_s"] = time.monotonic() - started
        self.results["switches"].append(record)
        self.current = target
        progress(f"in force: {LABELS[target]}" + (f" ({record.get('where')}; {record['kernel_grants']} grants in "
                                                  f"the kernel, ready in {record['ready_s']:.1f} s)"
                                                  if target != "none" else " (nothing in the server namespace)"))

    # ---- the listener ----
    def start_listener(self):
        self.listener = subprocess.Popen(["ip", "netns", "exec", self.ns, self.connect_rate, "serve", str(PORT)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                         start_new_session=True)
        self.children.append(self.listener)
        if self.listener.stdout.readline().strip() != "ready":
            raise RuntimeError("connect_rate serve did not start")

    def restart_listener(self):
        """A fresh listening socket: the SYN queue a baseline flood filled goes with the old one."""
        self.listener.stdin.close()  # serve then ends its process group
        self.listener.wait(timeout=10)
        self.start_listener()

    # ---- the fill ----
    def fill(self):
        a = self.args
        prefixes = [single(B_FILL, i) for i in range(a.grants)]
        progress(f"fill: {a.grants} grants (/32 each) through the API, {a.clients} clients")
        wall, _ = concurrent(self.socket, split([("POST", "/v1/grants", grant_body(p)) for p in prefixes], a.clients),
                             "fill", self.procs)
        self.live = a.grants
        self.results["fill"] = {"grants": a.grants, "clients": a.clients, "wall_s": wall, "rate": a.grants / wall}
        progress(f"fill: {a.grants / wall:.0f} grants/s")

    # ---- the measurements ----
    def counters(self, config):
        c = {"snmp": snmp_counters(self.ns_run(self.ns, "cat", "/proc/net/snmp").stdout),
             "netstat": snmp_counters(self.ns_run(self.ns, "cat", "/proc/net/netstat").stdout),
             "server_if": link_stats(self.ns, self.server_if), "client_if": link_stats(self.client_ns, self.client_if),
             "sink_if": link_stats(self.ns, self.sink_if), "softnet_dropped": softnet_dropped()}
        if config != "none":
            # Frames trafgen sent just before it stopped may still be on their way through the
            # veth backlog: compare the two counts only once the kernel's has stopped moving
            # (read on both sides of the status call, equal), or a loaded machine splits them.
            for _ in range(50):
                first = self.kernel_drops(config)
                ports = self.status()["ports"]
                if self.kernel_drops(config) == first:
                    break
                time.sleep(0.1)
            (port,) = [p for p in ports if p["number"] == PORT and p["protocol"] == "tcp"]
            c["status_drops"] = port["droppedPackets"]
            c["kernel_drops"] = first
        return c

    def flood_run(self, config, round_number):
        a = self.args
        before = self.counters(config)
        stat_before = read_proc_stat()
        started = time.monotonic()
        trafgen = subprocess.Popen(["ip", "netns", "exec", self.client_ns, "trafgen", "--dev", self.client_if,
                                    "--conf", self.trafgen_cfg, "--cpus", "1", "--no-sock-mem", "--notouch-irq"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
        self.children.append(trafgen)
        time.sleep(a.seconds)
        os.killpg(trafgen.pid, signal.SIGINT)  # trafgen and its worker: the report comes on exit
        output = trafgen.stdout.read()
        _, wait_status, usage = os.wait4(trafgen.pid, 0)  # `ip netns exec` execs trafgen: its rusage
        trafgen.returncode = os.waitstatus_to_exitcode(wait_status)
        wall = time.monotonic() - started
        stat_after = read_proc_stat()
        after = self.counters(config)
        sent, workers = parse_trafgen(output)
        cpu_n, run_s, _ = max(workers, key=lambda w: w[2])
        cpu = cpu_delta(stat_before, stat_after)
        d = lambda group, key: after[group][key] - before[group][key]  # noqa: E731
        record = {"config": config, "round": round_number, "wall_s": wall, "trafgen_s": run_s, "trafgen_cpu": cpu_n,
                  "offered": sent, "offered_pps": sent / run_s,
                  "trafgen_user_s": usage.ru_utime, "trafgen_sys_s": usage.ru_stime,
                  "softirq_s_trafgen_cpu": cpu[f"cpu{cpu_n}"]["softirq"], "softirq_s_all": cpu["cpu"]["softirq"],
                  "system_s_all": cpu["cpu"]["system"], "busy_s_all": cpu["cpu"]["busy"],
                  "busy_s_trafgen_cpu": cpu[f"cpu{cpu_n}"]["busy"],
                  "busy_s_other_cpus": cpu["cpu"]["busy"] - cpu[f"cpu{cpu_n}"]["busy"],
                  "tcp_in": d("snmp", "Tcp.InSegs"), "tcp_out": d("snmp", "Tcp.OutSegs"),
                  "tcp_out_rsts": d("snmp", "Tcp.OutRsts"),
                  "syncookies_sent": d("netstat", "TcpExt.SyncookiesSent"),
                  "server_rx": d("server_if", "rx_packets"), "server_rx_dropped": d("server_if", "rx_dropped"),
                  "client_tx": d("client_if", "tx_packets"), "client_tx_dropped": d("client_if", "tx_dropped"),
                  "answers_out": d("sink_if", "rx_dropped"), "backlog_dropped": after["softnet_dropped"] -
                  before["softnet_dropped"]}
        if config == "none":
            record["drops"] = record["kernel_drops"] = 0  # no filter: nothing to count drops
        else:
            record["drops"] = after["status_drops"] - before["status_drops"]
            record["kernel_drops"] = after["kernel_drops"] - before["kernel_drops"]
        record["drops_per_s"] = record["drops"] / run_s
        per_m = 1e6 / sent if sent else 0
        for key, name in (("softirq_s_trafgen_cpu", "softirq_us_per_packet_trafgen_cpu"),
                          ("softirq_s_all", "softirq_us_per_packet_all"), ("busy_s_all", "busy_us_per_packet_all"),
                          ("busy_s_trafgen_cpu", "busy_us_per_packet_trafgen_cpu"),
                          ("trafgen_user_s", "trafgen_user_us_per_packet"),
                          ("trafgen_sys_s", "trafgen_sys_us_per_packet")):
            record[name] = record[key] * per_m
        self.results["flood"].append(record)
        progress(f"flood {config}: {sent} SYNs in {run_s:.2f} s ({sent / run_s:.0f}/s) on CPU{cpu_n}; "
                 f"dropped {record['drops']} (kernel count {record['kernel_drops']}), reached TCP {record['tcp_in']}; "
                 f"softirq {record['softirq_s_trafgen_cpu']:.2f} s")
        return record

    def connect_run(self, config, round_number):
        a = self.args
        result = subprocess.run(["ip", "netns", "exec", self.client_ns, self.connect_rate, "connect", SERVER_IP,
                                 str(PORT), str(a.pp_seconds), str(a.pp_parallel), self.source],
                                capture_output=True, text=True, timeout=a.pp_seconds + 60)
        if result.returncode != 0:
            raise RuntimeError(f"connect_rate: {result.stderr.strip()}")
        record = {"config": config, "round": round_number, **json.loads(result.stdout)}
        self.results["connect"].append(record)
        progress(f"connect {config}: {record['rate']:.0f} conn/s ({record['failures']} failures, "
                 f"{record['timeouts']} timeouts)")
        return record

    def measure(self):
        a = self.args
        self.start_listener()
        self.launch("nftables", expect=0)
        self.current = "nftables"
        self.fill()
        grants = self.kernel_grants("nftables")
        if grants != self.live:
            raise RuntimeError(f"nftables: {grants} grant entries in the kernel after the fill, expected {self.live}")
        for r in range(a.rounds):
            order = CONFIGS if r % 2 == 0 else tuple(reversed(CONFIGS))
            for config in order:
                self.switch(config)
                time.sleep(1.0)  # let the switch's own work (jitd's start, the listings) settle
                for attempt in range(1, 4):
                    try:
                        self.flood_run(config, r)
                        break
                    except TrafgenFailed as failed:
                        if attempt == 3:
                            raise
                        progress(f"{config}: trafgen stopped without its report (attempt {attempt} of "
                                 f"3), run again: {failed}")
                self.restart_listener()
                self.connect_run(config, r)
        self.results["grants"] = self.live
        self.results["source"] = self.source
        return self.results


# ---------------------------------------------------------------------------------------------
# Summary, report and doc.
# ---------------------------------------------------------------------------------------------
def summarize(results):
    flood, connect = {}, {}
    for config in CONFIGS:
        runs = [r for r in results["flood"] if r["config"] == config]
        if runs:
            flood[config] = {key: median(r[key] for r in runs) for key in runs[0] if isinstance(runs[0][key], (int, float))
                             and key not in ("round", "trafgen_cpu")}
            flood[config]["runs"] = len(runs)
            flood[config]["offered_pps_runs"] = [r["offered_pps"] for r in runs]
            flood[config]["drops_runs"] = [r["drops"] for r in runs]
            flood[config]["min_drops"] = min(r["drops"] for r in runs)
            flood[config]["cpus"] = sorted({r["trafgen_cpu"] for r in runs})
            flood[config]["kernel_matches_status"] = all(r["drops"] == r["kernel_drops"] for r in runs)
        runs = [r for r in results["connect"] if r["config"] == config]
        if runs:
            connect[config] = {"median": median(r["rate"] for r in runs), "rates": [r["rate"] for r in runs],
                               "failures": sum(r["failures"] for r in runs),
                               "timeouts": sum(r["timeouts"] for r in runs),
                               "min_connections": min(r["connections"] for r in runs)}
    return flood, connect


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "—"


def num(value, digits=0):
    return "—" if value is None else f"{value:,.{digits}f}".replace(",", " ")


def report(results, args, info, commit, command, elapsed_s, quiet):
    flood, connect = summarize(results)
    base, cbase = flood.get("none", {}), connect.get("none", {})
    where = {s["to"]: s.get("where") for s in results["switches"] if s.get("where")}
    xdp_modes = sorted({s.get("xdp_mode") for s in results["switches"] if s["to"] == "xdp"} - {None})
    lines = [
        f"Command: `{command}`; jitd commit `{commit}`; run on "
        f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, {elapsed_s:.0f} s.",
        f"Machine: nproc {info['nproc']} ({info['cpu']}), kernel {info['kernel']}, {info['nft']}, {info['trafgen']}, "
        f"Python {info['python']}. {quiet} Load average at the end {info['loadavg_at_end']}.",
        f"Options: rounds {args.rounds}, {args.seconds} s per flood, {results['grants']} grants live "
        f"(filled at {results['fill']['rate']:.0f}/s by {results['fill']['clients']} clients), connect_rate "
        f"{args.pp_seconds} s per run with {args.pp_parallel} in flight from {results['source']} (one of the grants).",
        "Where jitd put its filter (GET /v1/status): " + "; ".join(f"{c}: {w}" for c, w in where.items())
        + (f"; XDP mode read with `ip link`: {', '.join(xdp_modes)}." if xdp_modes else "."),
        "",
        f"### SYN flood at port {PORT} from 10.88.0.0/16 (no grant), trafgen on one CPU",
        "",
        "Medians over the rounds. *Offered*: trafgen's packets over its own run time (one process, as fast as "
        "it can; the receive work runs on its CPU, so a cheaper drop lets it offer more). *Dropped*: "
        f"`droppedPackets` of port {PORT} in GET /v1/status, per second of trafgen's run. *softirq µs/packet*: "
        "softirq time of trafgen's CPU per packet offered (= CPU seconds per million packets): the server "
        "side's receive path. *Busy µs/packet*: user + system + irq + softirq time of trafgen's CPU per packet: "
        "generation and receive together (plus whatever else ran on that CPU; the second table shows how busy the "
        "other CPU was).",
        "",
        "| configuration | offered pkt/s | dropped pkt/s | dropped / offered | reached TCP / offered | "
        "softirq µs/packet (trafgen's CPU) | busy µs/packet (trafgen's CPU) | "
        "offered / baseline | softirq per packet / baseline |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for config in CONFIGS:
        f = flood.get(config)
        if not f:
            continue
        offered = f["offered"] or 1
        lines.append(
            f"| {LABELS[config]} | {num(f['offered_pps'])} | {num(f['drops_per_s'])} | {f['drops'] / offered:.1%} | "
            f"{f['tcp_in'] / offered:.1%} | {f['softirq_us_per_packet_trafgen_cpu']:.2f} | "
            f"{f['busy_us_per_packet_trafgen_cpu']:.2f} | "
            f"{ratio(f['offered_pps'], base.get('offered_pps'))} | "
            f"{ratio(f['softirq_us_per_packet_trafgen_cpu'], base.get('softirq_us_per_packet_trafgen_cpu'))} |")
    lines += ["", "Per run and cross-checks (medians unless noted; per packet = per packet offered):", "",
              "| configuration | offered pkt/s per run | drops: status = kernel count (every run) | "
              "server veth rx / offered | TCP segments sent per packet (SYN-ACK, RST, retransmits) | "
              "answers discarded by the ifb per packet | syncookies per packet | backlog drops | "
              "softirq µs/packet, all CPUs | trafgen's own user / system µs/packet | other CPU busy (s of the run) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for config in CONFIGS:
        f = flood.get(config)
        if not f:
            continue
        offered = f["offered"] or 1
        check = "—" if config == "none" else ("yes" if f["kernel_matches_status"] else "**no**")
        lines.append(
            f"| {LABELS[config]} | {', '.join(num(x) for x in f['offered_pps_runs'])} | {check} | "
            f"{f['server_rx'] / offered:.1%} | {f['tcp_out'] / offered:.2f} | {f['answers_out'] / offered:.2f} | "
            f"{f['syncookies_sent'] / offered:.2f} | {num(f['backlog_dropped'])} | "
            f"{f['softirq_us_per_packet_all']:.2f} | "
            f"{f['trafgen_user_us_per_packet']:.2f} / {f['trafgen_sys_us_per_packet']:.2f} | "
            f"{f['busy_s_other_cpus']:.2f} of {f['wall_s']:.1f} |")
    lines += ["", f"### New TCP connections/s to port {PORT}, granted, {results['grants']} grants live", "",
              f"`connect_rate` from {results['source']} (one of the {results['grants']} grants), "
              f"{args.pp_parallel} connects in flight, RST on close, {args.pp_seconds} s per run, each configuration "
              "visited in the mirrored order above.", "",
              "| configuration | conn/s (median) | / baseline | runs | failures, timeouts |", "|---|---|---|---|---|"]
    for config in CONFIGS:
        c = connect.get(config)
        if c:
            versus = f"{c['median'] / cbase['median']:.1%}" if config != "none" and cbase.get("median") else "—"
            lines.append(f"| {LABELS[config]} | {num(c['median'])} | {versus} | "
                         f"{', '.join(num(x) for x in c['rates'])} | {c['failures']}, {c['timeouts']} |")
    switches = [s for s in results["switches"] if s.get("ready_s") is not None]
    if switches:
        lines += ["", "jitd start → all grants listed, per backend switch: " + "; ".join(
            f"{s['to']} {s['ready_s']:.1f} s" for s in switches) + "."]
    return "\n".join(lines), flood, connect


DOC_INTRO = """`tests/bench/flood.py` (Python 3 standard library, run as root; this section, between the
`flood` markers, is rewritten by its `--write-doc`, the rest of this file is not):

```
sudo python3 tests/bench/flood.py --write-doc      # 3 rounds, 10 s floods, 100 000 grants
sudo python3 tests/bench/flood.py --smoke          # 1 round, 2 s floods, 500 grants (ctest bench.flood_smoke)
```

Options: `--rounds` (default 3), `--seconds` (per flood, default 10), `--grants` (default
100 000), `--clients` (fill, default 16), `--pp-seconds` / `--pp-parallel` (connect_rate: 5 s,
64 in flight), `--wait-quiet` (seconds to wait for no `qemu-system` process before starting,
polling every 30 s), `--jitd`, `--connect-rate`, `--json FILE`, `--write-doc [PATH]`.

Two throw-away network namespaces (server: jitd, a listener on port 22; client: trafgen and
connect_rate) joined by a veth pair, and a private bpffs in the temporary directory as jitd's
`bpfFilesystem`; all removed at the end, also on failure or Ctrl-C. Four configurations, each
round visiting all four (order mirrored every other round), all with the same grants live
(made once through the API, reinstalled by each backend from jitd's journal at its start, and
counted in the kernel — nft set elements or the pinned `grants4` map — at every switch):
no filtering (jitd stopped and `--uninstall`ed: no table, no program, no conntrack hooks; the
kernel answers the SYNs out through an ifb interface that discards them), nftables, eBPF at
tc ingress, eBPF at XDP (`interfaces: [the server veth]`).

1. **SYN flood**: `trafgen` (one process, on the CPU it pins itself to) sends 54-byte TCP SYNs to
   port 22 with random sources over 10.88.0.0/16, random ports, sequence numbers and IP ids,
   correct checksums (`csumip`/`csumtcp`), the server veth's MAC, as fast as it can for
   `--seconds`. Dropped packets are `droppedPackets` from `GET /v1/status`, checked equal to the
   kernel's own count (the nft drop rule's counter, or the pinned per-CPU `drops` map read with
   `bpftool`); the server namespace's `Tcp InSegs` says how many reached TCP.
2. **Connections/s**: `connect_rate` to port 22 from a source that is one of the grants.

**What the CPU figure covers.** A veth has no interrupt or receive thread: the sender's
transmit queues the frame to the receiver's backlog (or, with XDP on the veth, its ring and
NAPI) on the sender's own CPU, and the receive path runs there in NET_RX softirq. So the
softirq time of trafgen's CPU is the server side's packet work (for the baseline also building
and sending the answers). The kernel has no IRQ time accounting, so `/proc/stat` softirq is
sampled at the 250 Hz tick; a softirq tick that lands in trafgen's context is also charged to
trafgen's system time, which is why "machine minus trafgen's process time" is not used. Because
sender and receiver share one CPU, the offered rate is itself a result: the cheaper the drop,
the more SYNs one CPU generates and discards per second.
"""


def write_doc(path, text):
    section = (f"{MARK_BEGIN}\n## SYN flood and connection rate per backend: `tests/bench/flood.py`\n\n{DOC_INTRO}\n"
               f"### Figures\n\n{text}\n{MARK_END}\n")
    with open(path) as f:
        doc = f.read()
    if MARK_BEGIN in doc and MARK_END in doc:
        head, rest = doc.split(MARK_BEGIN, 1)
        tail = rest.split(MARK_END, 1)[1].lstrip("\n")
        doc = head + section + ("\n" + tail if tail else "")
    else:
        doc = doc.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(doc)


# ---------------------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------------------
SMOKE = {"rounds": 1, "seconds": 2, "grants": 500, "pp_seconds": 1, "pp_parallel": 8}
DEFAULTS = {"rounds": 3, "seconds": 10, "grants": 100000, "pp_seconds": 5, "pp_parallel": 64}


def parse_args(argv):
    parser = argparse.ArgumentParser(description="jitd's backends under a SYN flood and at 100k grants, "
                                                 "next to no filtering, in one run",
                                     epilog="see the module docstring for what each figure measures")
    parser.add_argument("--smoke", action="store_true",
                        help="1 round, 2 s floods, 500 grants, 1 s connect runs; checks that every configuration "
                             "produced figures, asserts no timing")
    parser.add_argument("--rounds", type=int, help="rounds over the four configurations (default 3)")
    parser.add_argument("--seconds", type=float, help="seconds per flood (default 10)")
    parser.add_argument("--grants", type=int, help="live grants, one /32 each (default 100000)")
    parser.add_argument("--clients", type=int, default=MAX_CLIENTS,
                        help=f"client processes for the fill (default and maximum {MAX_CLIENTS})")
    parser.add_argument("--pp-seconds", type=float, help="seconds per connect_rate run (default 5)")
    parser.add_argument("--pp-parallel", type=int, help="connects in flight (default 64)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="first wait up to this long, polling every 30 s, until no qemu-system process runs "
                             "(the report says whether one still was)")
    parser.add_argument("--jitd", default=DEFAULT_JITD, help="jitd binary (default: $JITD_BIN or build/jitd)")
    parser.add_argument("--connect-rate", help="connect_rate binary (default: $JITD_CONNECT_RATE, "
                                               "build/tests/jitd_connect_rate, else built with cc)")
    parser.add_argument("--log-level", default="info", help="jitd logLevel (default info)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    parser.add_argument("--write-doc", nargs="?", const=os.path.join(REPO, "docs", "benchmarks.md"),
                        metavar="PATH", help="regenerate the flood section of docs/benchmarks.md (or PATH)")
    args = parser.parse_args(argv)
    for key, value in (SMOKE if args.smoke else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be 1 … {MAX_CLIENTS} (jitd's connection cap per uid)")
    if not 1 <= args.grants <= MAX_SINGLES:
        parser.error(f"--grants must be 1 … {MAX_SINGLES}")
    if args.rounds < 1 or args.seconds <= 0 or args.pp_seconds <= 0 or args.pp_parallel < 1:
        parser.error("--rounds ≥ 1, --seconds > 0, --pp-seconds > 0, --pp-parallel ≥ 1")
    return args


def qemu_running():
    return subprocess.run(["pgrep", "-f", "qemu-system"], capture_output=True).returncode == 0


def wait_quiet(limit):
    """Waits (polling every 30 s, up to `limit` s) until no qemu-system process runs; a sentence for
    the report."""
    started = time.monotonic()
    while qemu_running() and time.monotonic() - started < limit:
        progress(f"a qemu-system process is running; waiting ({time.monotonic() - started:.0f} s of {limit:.0f})")
        time.sleep(30)
    waited = time.monotonic() - started
    if qemu_running():
        return (f"A qemu-system process (another VM test) was still running after {waited:.0f} s of waiting: "
                "the run went ahead anyway, with that load on both cores.")
    return (f"No qemu-system process was running at the start (waited {waited:.0f} s)."
            if limit else "No qemu-system process was running at the start.")


def smoke_check(results):
    """Every configuration produced figures: drops > 0 where something filters, none without a
    filter (and the kernel answered there), connections > 0 everywhere; no timing asserted."""
    problems = []
    flood, connect = summarize(results)
    for config in CONFIGS:
        f, c = flood.get(config), connect.get(config)
        if not f or not f["offered"]:
            problems.append(f"{config}: no flood figures")
            continue
        if config == "none":
            if any(r["drops"] for r in results["flood"] if r["config"] == "none"):
                problems.append("baseline: drops counted without a filter")
            if not f["tcp_out"]:
                problems.append("baseline: the kernel answered none of the SYNs (did they arrive?)")
        else:
            if f["min_drops"] <= 0:
                problems.append(f"{config}: a flood run counted no drops")
            if not f["kernel_matches_status"]:
                problems.append(f"{config}: GET /v1/status and the kernel's own counter disagree")
        if not c or c["min_connections"] <= 0:
            problems.append(f"{config}: a connect_rate run made no connection")
    return problems


def main(argv):
    args = parse_args(argv)
    refused = refuse_without_root("flood.py", "it creates network namespaces and mounts a bpffs")
    if refused is not None:
        return refused
    args.jitd = os.path.abspath(args.jitd)
    failed = check_environment("tests/bench/flood.py", args.jitd)
    if failed is not None:
        return failed
    for program, package in (("trafgen", "netsniff-ng"), ("bpftool", "bpftool"), ("tc", "iproute2"),
                             ("mount", "mount"), ("umount", "mount")):
        if not shutil.which(program):
            print(f"missing program '{program}' (Debian package {package}): run scripts/install-deps.sh",
                  file=sys.stderr)
            return 2
    quiet = wait_quiet(args.wait_quiet) + f" Load average at the start {loadavg()}."
    command = "sudo python3 tests/bench/flood.py " + " ".join(argv)
    commit = git_commit()
    bench = Flood(args)

    def body(b):
        b.setup()
        results = b.measure()
        info = machine(b.dir)
        info["trafgen"] = subprocess.run(["trafgen", "--version"], capture_output=True, text=True).stdout.split(",")[0]
        return results, info

    started = time.monotonic()
    status, outcome = guarded_run(bench, body)
    if status:
        return status
    results, info = outcome
    elapsed = time.monotonic() - started
    if qemu_running() and "still running" not in quiet:
        quiet += " A qemu-system process was running at the end of the run."
    text, flood, connect = report(results, args, info, commit, command.strip(), elapsed, quiet)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "commit": commit, "command": command, "args": vars(args), "quiet": quiet,
                       "results": results, "summary": {"flood": flood, "connect": connect}}, f, indent=1)
    if args.write_doc:
        write_doc(args.write_doc, text)
        print(f"# wrote the flood section of {args.write_doc}", file=sys.stderr)
    print(f"\ntotal {elapsed:.0f} s")
    problems = smoke_check(results)
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    if problems:
        return 1
    if args.smoke:
        print("smoke: every configuration produced figures (drops where filtered, none without a filter, "
              "connections everywhere)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
