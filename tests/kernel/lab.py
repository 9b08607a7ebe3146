"""A throw-away test lab: two network namespaces joined by a veth pair, an echo server
and jitd in the server namespace, clients in the client namespace.

Nothing here touches the machine's own network namespace: every `nft` and every
connection runs under `ip netns exec` in a namespace this lab created, and the
namespaces (with jitd's table in them) are deleted on cleanup, also when a test fails.
What a test asserts about the kernel it reads with `nft -j`, never through jitd.
"""
import datetime
import http.client
import ipaddress
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

JITD = os.environ.get("JITD_BIN", "jitd")
JITCTL = os.environ.get("JITCTL_BIN", "jitctl")
NETPEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netpeer.py")

SERVER4, SERVER6 = "10.77.0.1", "fd00:77::1"
CLIENT_A, CLIENT_B, CLIENT_C = "10.77.0.2", "10.77.0.3", "10.77.0.4"
CLIENT6 = "fd00:77::2"

# jitd's grant sets per family: a hash set for single addresses, an interval set for ranges.
GRANT_SETS = {4: ("grants4_single", "grants4"), 6: ("grants6_single", "grants6")}

# The backend under test: tests/kernel/CMakeLists.txt runs the backend-agnostic files once per
# backend (and the core ones again at XDP). The Lab reads the kernel through the backend's own
# state (nft -j, or bpftool on the pinned maps) behind one interface.
BACKEND = os.environ.get("JITD_TEST_BACKEND", "nftables")
ATTACH = os.environ.get("JITD_TEST_ATTACH", "tc")
# How long jitd may take to answer after it starts (tests/vm/guest-tests.py gives more).
START_SECONDS = float(os.environ.get("JITD_TEST_START_SECONDS", "10"))
BPF_LAYOUT_VERSION = 2  # bpf/jitd_abi.h JITD_BPF_LAYOUT_VERSION
PROTOCOL_NAMES = {6: "tcp", 17: "udp"}


def nftables_only(reason):
    """For a test of nftables' own table (its shape, its flags, nft tampering with it)."""
    return unittest.skipIf(BACKEND != "nftables", f"nftables only: {reason}")

DEFAULT_POLICY = """
ports:
  - number: 22
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
  - number: 3389
    protocol: tcp
    allowedSourceAddressPrefixes: ["10.77.0.0/24", "fd00:77::/64"]
    maxRequestAccessDuration: 10m
  - number: 53
    protocol: "*"
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
"""


# Runs argv[2:] with the socket fd argv[1] as fd 3 and systemd's socket activation variables.
ACTIVATE = ("import os, sys; fd = int(sys.argv[1]); fd != 3 and os.dup2(fd, 3); "
            "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid())); "
            "os.execv(sys.argv[2], sys.argv[2:])")


def run(*args, check=True, **kwargs):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kwargs)


# What the kernel tests run or read, each with the Debian package that provides it
# (scripts/install-deps.sh installs them all). setpriv runs jitctl as another user; without
# /etc/protocols nft prints "6" where the tests expect "tcp".
REQUIREMENTS = (("ip", "iproute2"), ("nft", "nftables"), ("python3", "python3"),
                ("setpriv", "util-linux"), ("/etc/protocols", "netbase"),
                ("bpftool", "bpftool"), ("tc", "iproute2"), ("mount", "mount"))


def missing_requirement():
    """Why the tests cannot run on this machine as set up, or None."""
    for name, package in REQUIREMENTS:
        kind, present = (("file", os.path.exists(name)) if os.path.isabs(name)
                         else ("program", shutil.which(name) is not None))
        if not present:
            return f"missing {kind} '{name}' (Debian package {package}): run scripts/install-deps.sh"
    return None


def require_environment(test):
    """Kernel tests need root, network namespaces and REQUIREMENTS; under CI a skip is a failure."""
    reason = ("kernel tests need root (they create network namespaces)" if os.geteuid() != 0
              else missing_requirement())
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        test.fail(f"cannot run under CI: {reason}")
    test.skipTest(reason)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def parse_utc(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def utc(timestamp, digits=3):
    """A Unix time as an RFC 3339 UTC text with `digits` (0..6) fraction digits, e.g.
    2026-11-24T18:00:00.250Z."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + moment.strftime("%f")[:digits]
    return text + "Z"


# Sends one request to jitd's socket as whoever runs it (Lab.api_as runs it with setpriv) and
# prints [status, body].
AS_USER_CLIENT = """
import http.client, json, socket, sys
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sys.argv[1])
connection = Unix("localhost")
connection.request(sys.argv[2], sys.argv[3], body=sys.argv[4] or None,
                   headers={"Content-Type": "application/json"})
reply = connection.getresponse()
print(json.dumps([reply.status, json.loads(reply.read())]))
"""


class Lab:
    def __init__(self, test, policy=DEFAULT_POLICY, tcp_ports=(22, 3389, 53, 8080), udp_ports=(53,),
                 socket_group="", extra_config=""):
        """extra_config: more lines for the main config, e.g. "nftTableOwnership: off\\n"."""
        require_environment(test)
        self.test = test
        tag = secrets.token_hex(3)
        self.server_ns, self.client_ns = f"jitdt-{tag}-s", f"jitdt-{tag}-c"
        self.dir = tempfile.mkdtemp(prefix=f"jitd-test-{tag}-")
        # The socket lives here and jitd changes no directory it did not create: users other
        # than root (socket group tests) must be able to reach it.
        os.chmod(self.dir, 0o755)
        self.jitd = None
        self.listener = None
        self.holders = []
        self.agents = {}
        test.addCleanup(self.cleanup)
        self._make_network(tag)
        self.write_policy(policy)
        self.socket = os.path.join(self.dir, "jitd.sock")
        self.config = os.path.join(self.dir, "jitd.yaml")
        self.bpffs = os.path.join(self.dir, "bpffs")
        with open(self.config, "w") as f:
            f.write(f"socketPath: {self.socket}\nsocketGroup: '{socket_group}'\n"
                    f"policyDirectory: {self.dir}/policies.d\nstateDirectory: {self.dir}/state\n"
                    f"nftTable: jitd\nlogLevel: debug\n"
                    # Tests write no jitd events into the host's journal; the VM test
                    # (tests/vm/run) reads the journal fields back under systemd.
                    f"auditJournal: false\n")
            if BACKEND == "ebpf":
                # A bpffs of the lab's own, mounted in the test's mount namespace so that it
                # outlives each `ip netns exec` (which remounts /sys): a restarted jitd must
                # find its pins, as it would under systemd at /sys/fs/bpf.
                os.makedirs(self.bpffs)
                run("mount", "-t", "bpf", "bpf", self.bpffs)
                f.write(f"backend: ebpf\nattach: {ATTACH}\nbpfFilesystem: {self.bpffs}\n")
            if extra_config:
                f.write(extra_config if extra_config.endswith("\n") else extra_config + "\n")
        self._start_listener(tcp_ports, udp_ports)
        self._agent(self.client_ns)  # started early: ready before any deadline-bound check

    # ---- network ----
    def _make_network(self, tag):
        run("ip", "netns", "add", self.server_ns)
        run("ip", "netns", "add", self.client_ns)
        server_if, client_if = f"vs{tag}", f"vc{tag}"
        run("ip", "link", "add", server_if, "netns", self.server_ns, "type", "veth",
            "peer", "name", client_if, "netns", self.client_ns)
        for ns, ifname, v4, v6 in ((self.server_ns, server_if, [SERVER4], SERVER6),
                                   (self.client_ns, client_if, [CLIENT_A, CLIENT_B, CLIENT_C], CLIENT6)):
            self.ns(ns, "ip", "link", "set", "lo", "up")
            for address in v4:
                self.ns(ns, "ip", "addr", "add", f"{address}/24", "dev", ifname)
            self.ns(ns, "ip", "-6", "addr", "add", f"{v6}/64", "dev", ifname, "nodad")
            self.ns(ns, "ip", "link", "set", ifname, "up")

    def ns(self, namespace, *args, check=True):
        return run("ip", "netns", "exec", namespace, *args, check=check)

    def _start_listener(self, tcp_ports, udp_ports):
        command = ["ip", "netns", "exec", self.server_ns, "python3", NETPEER, "serve",
                   "--tcp", *map(str, tcp_ports), "--udp", *map(str, udp_ports)]
        self.listener = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.listener.stdout.readline().strip() == "ready"

    def _agent(self, namespace):
        if namespace not in self.agents:
            self.agents[namespace] = subprocess.Popen(
                ["ip", "netns", "exec", namespace, "python3", NETPEER, "agent"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return self.agents[namespace]

    def connect(self, host, port, source=None, kind="tcp", timeout=1.0, from_server=False):
        """True when a full round trip to the echo server worked. The SYN leaves at once, so a
        check "open just before the end" may use a timeout that runs past the end: an accepted
        SYN creates a connection that conntrack then keeps."""
        agent = self._agent(self.server_ns if from_server else self.client_ns)
        agent.stdin.write(json.dumps({"kind": kind, "host": host, "port": port, "source": source,
                                      "timeout": timeout}) + "\n")
        agent.stdin.flush()
        answer = agent.stdout.readline().strip()
        self.test.assertTrue(answer == "ok" or answer.startswith("fail"), f"prober died: {answer!r}")
        return answer == "ok"

    def hold(self, host, port, source):
        """An open TCP connection; send(text) returns the echo or an 'ERROR ...' line."""
        process = subprocess.Popen(["ip", "netns", "exec", self.client_ns, "python3", NETPEER, "hold",
                                    host, str(port), "--source", source],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.holders.append(process)
        first = process.stdout.readline().strip()

        class Held:
            connected = first == "connected"

            @staticmethod
            def send(text):
                process.stdin.write(text + "\n")
                process.stdin.flush()
                return process.stdout.readline().strip()
        return Held

    def listen(self, *specs):
        """Sockets in the server namespace that wait and answer nothing, for as long as the
        lab: each spec "tcp|udp,HOST,PORT[,dual]" (dual: IPv6 without IPV6_V6ONLY)."""
        process = subprocess.Popen(["ip", "netns", "exec", self.server_ns, "python3", NETPEER,
                                    "listen", *specs],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.holders.append(process)
        self.test.assertEqual(process.stdout.readline().strip(), "ready", f"listen {specs}")

    # ---- jitd ----
    def write_policy(self, text, name="10-test.yaml"):
        os.makedirs(os.path.join(self.dir, "policies.d"), exist_ok=True)
        with open(os.path.join(self.dir, "policies.d", name), "w") as f:
            f.write(text)

    def set_config(self, key, value):
        """Sets one main config key (replacing its line, or adding one)."""
        with open(self.config) as f:
            lines = [line for line in f.read().splitlines() if not line.startswith(key + ":")]
        with open(self.config, "w") as f:
            f.write("\n".join(lines + [f"{key}: {value}"]) + "\n")
        if key == "socketPath":
            self.socket = value

    def remove_config(self, *keys):
        """Removes main config keys (their lines)."""
        with open(self.config) as f:
            lines = [line for line in f.read().splitlines()
                     if not any(line.startswith(key + ":") for key in keys)]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start_jitd(self, env=None, may_exit=False, activation=None):
        """env: extra environment for jitd (e.g. JITD_FAILPOINTS). may_exit: return False
        instead of failing when jitd exits before it answers (a failpoint fired).
        activation: a listening socket to pass as systemd does (fd 3, LISTEN_FDS, LISTEN_PID)."""
        command = [JITD, "--config", self.config]
        pass_fds = ()
        if activation is not None:
            # LISTEN_PID must be jitd's own pid, known only in the child: set it there.
            command = [sys.executable, "-c", ACTIVATE, str(activation.fileno())] + command
            pass_fds = (activation.fileno(),)
        with open(os.path.join(self.dir, "jitd.log"), "a") as log:
            self.jitd = subprocess.Popen(["ip", "netns", "exec", self.server_ns] + command,
                                         stdout=log, stderr=subprocess.STDOUT, pass_fds=pass_fds,
                                         env=None if env is None else {**os.environ, **env})
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.jitd.poll() is not None:
                if may_exit:
                    return False
                self.test.fail(f"jitd exited with {self.jitd.returncode}: {self.log()}")
            try:
                if self.api("GET", "/v1/policy")[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        self.test.fail(f"jitd did not answer on {self.socket}: {self.log()}")

    def restart_jitd(self, signal_number=15, env=None):
        """Stops jitd with `signal_number` and starts it again."""
        self.kill_jitd(signal_number)
        return self.start_jitd(env=env)

    @property
    def journal_path(self):
        return os.path.join(self.dir, "state", "grants.journal")

    def kill_jitd(self, signal_number=9):
        self.jitd.send_signal(signal_number)
        self.jitd.wait(timeout=10)

    def log(self):
        with open(os.path.join(self.dir, "jitd.log")) as f:
            return f.read()

    def audit(self):
        with open(os.path.join(self.dir, "state", "audit.jsonl")) as f:
            return [json.loads(line) for line in f]

    def api(self, method, path, body=None):
        connection = UnixHTTPConnection(self.socket)
        payload = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        try:
            connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    def api_as(self, user, method, path, body=None, group="nogroup"):
        """lab.api as another uid (setpriv, group `group`, no supplementary groups): the caller
        jitd sees through SO_PEERCRED. The socket must admit that user (socket_group)."""
        result = run("setpriv", f"--reuid={user}", f"--regid={group}", "--clear-groups",
                     sys.executable, "-c", AS_USER_CLIENT, self.socket, method, path,
                     json.dumps(body) if body is not None else "", check=False)
        self.test.assertEqual(result.returncode, 0, result.stderr)
        status, reply = json.loads(result.stdout)
        return status, reply

    def api_pages(self, path, key="grants"):
        """Every item of a paged GET (`next` passed back as `cursor`, page after page) and the
        pages' sizes. Fails on an error status or a cursor seen before."""
        items, sizes, cursors = [], [], set()
        cursor = None
        while True:
            separator = "&" if "?" in path else "?"
            page_path = path if cursor is None else \
                f"{path}{separator}cursor={urllib.parse.quote(cursor, safe='')}"
            status, page = self.api("GET", page_path)
            self.test.assertEqual(status, 200, (page_path, page))
            items += page[key]
            sizes.append(len(page[key]))
            cursor = page.get("next")
            if cursor is None:
                return items, sizes
            self.test.assertNotIn(cursor, cursors, f"{page_path}: next repeats a cursor")
            cursors.add(cursor)
            self.test.assertLess(len(sizes), 1000, f"{path}: no end of pages")

    # ---- the history of ended grants (state/history.jsonl, or segments beside it) ----
    def history_files(self):
        """The files of the grant history in the state directory: history.jsonl and any
        segment named beside it (history*)."""
        state = os.path.join(self.dir, "state")
        if not os.path.isdir(state):
            return []
        return sorted(os.path.join(state, name) for name in os.listdir(state)
                      if name.startswith("history") and os.path.isfile(os.path.join(state, name)))

    def history_text(self):
        """All history files' contents, one after another (to look for ids)."""
        text = ""
        for path in self.history_files():
            with open(path, errors="replace") as f:
                text += f.read()
        return text

    def rewrite_history(self, change):
        """Calls change(record) for every record (a JSON object per line) of every history file;
        a record change() returns (changed in place or new) replaces the line, None keeps it.
        jitd must be stopped. Returns how many records were replaced."""
        replaced = 0
        for path in self.history_files():
            with open(path) as f:
                lines = f.read().splitlines()
            out = []
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError:
                    out.append(line)
                    continue
                new = change(record) if isinstance(record, dict) else None
                if new is None:
                    out.append(line)
                else:
                    out.append(json.dumps(new, separators=(",", ":")))
                    replaced += 1
            mode = os.stat(path).st_mode & 0o777
            with open(path, "w") as f:
                f.write("".join(line + "\n" for line in out))
            os.chmod(path, mode)
        return replaced

    def grant(self, source, ports=((22, "tcp"),), duration="PT1M", **extra):
        body = {"ports": [{"number": n, "protocol": p} for n, p in ports],
                "allowedSourceAddressPrefix": source, "duration": duration,
                "justification": "kernel test"}
        body.update(extra)
        status, reply = self.api("POST", "/v1/grants", body)
        self.test.assertEqual(status, 201, reply)
        return reply

    def jitctl(self, *args, env=None, as_user=None):
        """as_user: (user, group) to run as, via setpriv, with no supplementary groups."""
        prefix = []
        if as_user:
            prefix = ["setpriv", f"--reuid={as_user[0]}", f"--regid={as_user[1]}", "--clear-groups"]
        return run(*prefix, JITCTL, "--socket", self.socket, *args, check=False,
                   env=None if env is None else {**os.environ, **env})

    # ---- the kernel's own view ----
    def nft(self, *args, check=True):
        result = self.ns(self.server_ns, "nft", "-j", *args, check=check)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def table_present(self):
        """Whether jitd's enforcement is in the kernel: its table, or its pinned maps with the
        program attached to the lab's interface."""
        if BACKEND == "ebpf":
            return self.bpf_map("protected_ports") is not None and self.bpf_attached()
        return self.table_listing() is not None

    def wipe_enforcement(self):
        """What a reboot does to jitd's kernel state (jitd must be stopped): its table, or its
        program on every interface, its pins and its conntrack table, are gone."""
        if BACKEND == "ebpf":
            links = json.loads(self.ns(self.server_ns, "ip", "-j", "link", "show").stdout)
            for link in links:
                if link["ifname"] != "lo":
                    self.ns(self.server_ns, "tc", "qdisc", "del", "dev", link["ifname"], "clsact",
                            check=False)
                    self.ns(self.server_ns, "ip", "link", "set", "dev", link["ifname"], "xdp", "off",
                            check=False)
            shutil.rmtree(os.path.join(self.bpffs, "jitd"), ignore_errors=True)
            self.ns(self.server_ns, "nft", "delete", "table", "inet", "jitd_conntrack", check=False)
        else:
            self.ns(self.server_ns, "nft", "delete", "table", "inet", "jitd")

    # ---- the eBPF backend's state, read with bpftool and tc/ip (never through jitd) ----
    @property
    def server_if(self):
        return f"vs{self.server_ns.split('-')[1]}"

    @property
    def pin_dir(self):
        """<bpffs>/jitd/<inode of the server namespace>/v<layout>: where jitd pins its maps."""
        inode = os.stat(f"/run/netns/{self.server_ns}").st_ino
        return os.path.join(self.bpffs, "jitd", str(inode), f"v{BPF_LAYOUT_VERSION}")

    def bpf_map(self, name):
        """A pinned map's entries as (key bytes, value as an integer; per-CPU values summed), or
        None when the map is not pinned."""
        path = os.path.join(self.pin_dir, name)
        return pinned_map_entries(path) if os.path.exists(path) else None

    def bpf_attached(self):
        """Whether jitd's program is attached to the server's interface, read with tc or ip."""
        if ATTACH == "xdp":
            (link,) = json.loads(self.ns(self.server_ns, "ip", "-j", "link", "show", "dev",
                                         self.server_if).stdout)
            return "xdp" in link
        filters = json.loads(self.ns(self.server_ns, "tc", "-j", "filter", "show", "dev",
                                     self.server_if, "ingress").stdout or "[]")
        return any("jitd" in json.dumps(f) for f in filters)

    def _bpf_ranges(self, family, map_name, live_only):
        """The LPM entries of a trie as merged ranges, as `nft -j` would list set elements."""
        size = 4 if family == 4 else 16
        now = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        prefixes = []
        for key, end in self.bpf_map(map_name) or []:
            if live_only and end <= now:
                continue  # the program no longer admits it (nft hides expired elements too)
            length = int.from_bytes(key[0:4], "little") - 32
            protocol, port = key[4], int.from_bytes(key[6:8], "big")
            network = ipaddress.ip_network((key[8:8 + size], length))
            prefixes.append((protocol, port, int(network[0]), int(network[-1]), end))
        prefixes.sort()
        merged = []
        for protocol, port, first, last, end in prefixes:
            if merged and merged[-1][:2] == [protocol, port] and merged[-1][3] + 1 == first \
                    and merged[-1][4] == end:
                merged[-1][3] = last
            else:
                merged.append([protocol, port, first, last, end])
        elements = []
        for protocol, port, first, last, end in merged:
            kind = ipaddress.IPv4Address if size == 4 else ipaddress.IPv6Address
            first, last = kind(first), kind(last)
            address = str(first) if first == last else {"range": [str(first), str(last)]}
            key = {"concat": [address, PROTOCOL_NAMES.get(protocol, protocol), port]}
            if end == (1 << 64) - 1:
                elements.append(key)
            else:
                seconds = max(0, (end - now) // 1_000_000_000)
                elements.append({"elem": {"val": key, "timeout": seconds, "expires": seconds}})
        return elements

    def _bpf_set_elements(self, name):
        if name == "protected":
            return [{"elem": {"val": {"concat": [PROTOCOL_NAMES.get(key[0], key[0]),
                                                 int.from_bytes(key[2:4], "big")]}}}
                    for key, _ in self.bpf_map("protected_ports") or []]
        family = 6 if "6" in name else 4
        if name.startswith("allow"):
            return self._bpf_ranges(family, name, live_only=False)
        single = name.endswith("_single")
        return [e for e in self._bpf_ranges(family, f"grants{family}", live_only=True)
                if isinstance(element_value(e)["concat"][0], str) == single]

    def set_elements(self, name):
        """The elements of one of jitd's nftables sets; with the eBPF backend the same view of
        its maps (single addresses stand for grants<family>_single, ranges for grants<family>)."""
        if BACKEND == "ebpf":
            return self._bpf_set_elements(name)
        listing = self.nft("list", "set", "inet", "jitd", name)
        for item in listing["nftables"]:
            if "set" in item:
                return item["set"].get("elem", [])
        return []

    def kernel_state(self):
        """Everything in jitd's table (or maps) except counters and remaining timeouts."""
        if BACKEND == "ebpf":
            return json.dumps({name: sorted((k.hex(), v) for k, v in self.bpf_map(name) or [])
                               for name in ("protected_ports", "allow4", "allow6", "grants4",
                                            "grants6")})
        text = json.dumps(self.table_listing())
        for volatile in ("expires", "packets", "bytes", "handle"):
            text = _strip_key(text, volatile)
        return text

    def drop_count(self):
        if BACKEND == "ebpf":
            return sum(port_counter(value, "dropped_packets")
                       for _, value in self.bpf_map("counters") or [])
        listing = self.nft("list", "chain", "inet", "jitd", "input")
        for item in listing["nftables"]:
            rule = item.get("rule")
            if rule and any("drop" in e for e in rule["expr"]):
                for expression in rule["expr"]:
                    if "counter" in expression:
                        return expression["counter"]["packets"]
        self.test.fail("no counted drop rule in chain input")

    def table_listing(self):
        """What `nft -j list table inet jitd` lists, without the table object itself, or None when
        the table is absent. nft 1.0.x prints garbage, at times not even valid JSON, for the table
        flags when only `persist` is set (an owned table orphaned while jitd is down), so this
        reads the chain (with its rules) and the sets instead."""
        chain = self.nft("list", "chain", "inet", "jitd", "input", check=False)
        if chain is None:
            return None
        sets = self.nft("list", "sets", "inet")
        items = [i for i in sets["nftables"] if "set" in i and i["set"]["table"] == "jitd"]
        return {"nftables": [i for i in chain["nftables"] if "metainfo" not in i] + items}

    def grant_set_elements(self, family=4):
        """The elements of jitd's two grant sets of a family (4 or 6), as `nft -j` lists them:
        single addresses are in the hash set grants<family>_single, wider ranges in the interval
        set grants<family>."""
        return [e for name in GRANT_SETS[family] for e in self.set_elements(name)]

    def grant_elements(self, family=4):
        """The elements of both grant sets of a family (see grant_set_elements) as dicts: first,
        last (ipaddress objects), protocol ("tcp"/"udp"), port, expires and timeout (seconds)."""
        return [parse_element(e) for e in self.grant_set_elements(family)]

    def wait_for(self, predicate, timeout=2.0, interval=0.01):
        """Polls predicate() every `interval` s; the seconds it took to hold, or None."""
        start = time.monotonic()
        while True:
            if predicate():
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                return None
            time.sleep(interval)

    def cleanup(self):
        for process in [self.jitd, self.listener, *self.holders, *self.agents.values()]:
            if process and process.poll() is None:
                process.kill()
                process.wait()
        for namespace in (self.server_ns, self.client_ns):
            run("ip", "netns", "del", namespace, check=False)
        if os.path.ismount(self.bpffs):
            run("umount", self.bpffs, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def pinned_map_entries(path):
    """A pinned map's entries, read with bpftool, as (key bytes, value as an integer; per-CPU
    values summed). Also used by tests/bench/flood.py."""
    entries = json.loads(run("bpftool", "-j", "map", "dump", "pinned", path).stdout)

    def raw(field):
        return bytes(int(b, 16) for b in field)
    result = []
    for entry in entries:
        if "values" in entry:
            value = sum(int.from_bytes(raw(v["value"]), "little") for v in entry["values"])
        else:
            value = int.from_bytes(raw(entry["value"]), "little")
        result.append((raw(entry["key"]), value))
    return result


# struct jitd_port_counters (bpf/jitd_abi.h), the value of the eBPF backend's counters map.
PORT_COUNTERS = ("dropped_packets", "dropped_connections", "admitted_connections",
                 "would_drop_packets")


def port_counter(value, name):
    """One field of a counters entry as pinned_map_entries reads it: the per-CPU values summed as
    little-endian integers are the fields summed, as long as no field's sum reaches 2^64."""
    return (value >> (64 * PORT_COUNTERS.index(name))) & (2**64 - 1)


def element_value(element):
    """A set element's key as `nft -j` lists it: elements with a counter or a timeout come
    wrapped as {"elem": {"val": key, ...}}."""
    return element["elem"]["val"] if isinstance(element, dict) and "elem" in element else element


def protected_pairs(elements):
    """(protocol, port) of each element of the set `protected`."""
    return [tuple(element_value(e)["concat"]) for e in elements]


def parse_element(element):
    """One set element from `nft -j` (address . protocol . port, optionally with a timeout)."""
    timeout = expires = None
    if isinstance(element, dict) and "elem" in element:
        timeout, expires = element["elem"].get("timeout"), element["elem"].get("expires")
        element = element["elem"]["val"]
    address, protocol, port = element["concat"]
    if isinstance(address, dict) and "prefix" in address:
        network = ipaddress.ip_network(f"{address['prefix']['addr']}/{address['prefix']['len']}")
        first, last = network[0], network[-1]
    elif isinstance(address, dict) and "range" in address:
        first, last = (ipaddress.ip_address(a) for a in address["range"])
    else:
        first = last = ipaddress.ip_address(address)
    protocol = {6: "tcp", 17: "udp"}.get(protocol, protocol)
    return {"first": first, "last": last, "protocol": protocol, "port": int(port),
            "timeout": timeout, "expires": expires}


def _strip_key(text, key):
    data = json.loads(text)

    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items() if k != key}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node
    return json.dumps(walk(data), sort_keys=True)


def sleep_until(timestamp):
    delay = timestamp - time.time()
    if delay > 0:
        time.sleep(delay)


class LabTest(unittest.TestCase):
    """Base class: self.lab is a fresh lab per test."""
    policy = DEFAULT_POLICY
    socket_group = ""
    extra_config = ""

    def setUp(self):
        self.lab = Lab(self, self.policy, socket_group=self.socket_group, extra_config=self.extra_config)
