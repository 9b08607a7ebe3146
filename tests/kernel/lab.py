"""A throw-away test lab: two network namespaces joined by a veth pair, an echo server
and jitd in the server namespace, clients in the client namespace.

Nothing here touches the machine's own network namespace: every `nft` and every
connection runs under `ip netns exec` in a namespace this lab created, and the
namespaces (with jitd's table in them) are deleted on cleanup, also when a test fails.
What a test asserts about the kernel it reads with `nft -j`, never through jitd.
"""
import datetime
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

JITD = os.environ.get("JITD_BIN", "jitd")
JITCTL = os.environ.get("JITCTL_BIN", "jitctl")
NETPEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netpeer.py")

SERVER4, SERVER6 = "10.77.0.1", "fd00:77::1"
CLIENT_A, CLIENT_B, CLIENT_C = "10.77.0.2", "10.77.0.3", "10.77.0.4"
CLIENT6 = "fd00:77::2"

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


def run(*args, check=True, **kwargs):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kwargs)


def require_root(test):
    """Kernel tests need root and network namespaces; under CI a skip is a failure."""
    reason = None
    if os.geteuid() != 0:
        reason = "kernel tests need root (they create network namespaces)"
    elif shutil.which("nft") is None or shutil.which("ip") is None:
        reason = "kernel tests need nft and ip (apt-get install nftables iproute2)"
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


class Lab:
    def __init__(self, test, policy=DEFAULT_POLICY, tcp_ports=(22, 3389, 53, 8080), udp_ports=(53,),
                 socket_group=""):
        require_root(test)
        self.test = test
        tag = secrets.token_hex(3)
        self.server_ns, self.client_ns = f"jitdt-{tag}-s", f"jitdt-{tag}-c"
        self.dir = tempfile.mkdtemp(prefix=f"jitd-test-{tag}-")
        self.jitd = None
        self.listener = None
        self.holders = []
        self.agents = {}
        test.addCleanup(self.cleanup)
        self._make_network(tag)
        self.write_policy(policy)
        self.socket = os.path.join(self.dir, "jitd.sock")
        self.config = os.path.join(self.dir, "jitd.yaml")
        with open(self.config, "w") as f:
            f.write(f"socketPath: {self.socket}\nsocketGroup: '{socket_group}'\n"
                    f"policyDirectory: {self.dir}/policies.d\nstateDirectory: {self.dir}/state\n"
                    f"nftTable: jitd\nlogLevel: debug\n")
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
        """True when a full round trip to the echo server worked."""
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

    # ---- jitd ----
    def write_policy(self, text, name="10-test.yaml"):
        os.makedirs(os.path.join(self.dir, "policies.d"), exist_ok=True)
        with open(os.path.join(self.dir, "policies.d", name), "w") as f:
            f.write(text)

    def start_jitd(self):
        with open(os.path.join(self.dir, "jitd.log"), "a") as log:
            self.jitd = subprocess.Popen(["ip", "netns", "exec", self.server_ns, JITD, "--config", self.config],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.jitd.poll() is not None:
                self.test.fail(f"jitd exited with {self.jitd.returncode}: {self.log()}")
            try:
                if self.api("GET", "/v1/policy")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.test.fail(f"jitd did not answer on {self.socket}: {self.log()}")

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
        return self.nft("list", "table", "inet", "jitd", check=False) is not None

    def set_elements(self, name):
        listing = self.nft("list", "set", "inet", "jitd", name)
        for item in listing["nftables"]:
            if "set" in item:
                return item["set"].get("elem", [])
        return []

    def kernel_state(self):
        """Everything in jitd's table except counters and remaining timeouts."""
        listing = self.nft("list", "table", "inet", "jitd")
        text = json.dumps(listing)
        for volatile in ("expires", "packets", "bytes", "handle"):
            text = _strip_key(text, volatile)
        return text

    def drop_count(self):
        listing = self.nft("list", "chain", "inet", "jitd", "input")
        for item in listing["nftables"]:
            rule = item.get("rule")
            if rule and any("drop" in e for e in rule["expr"]):
                for expression in rule["expr"]:
                    if "counter" in expression:
                        return expression["counter"]["packets"]
        self.test.fail("no counted drop rule in chain input")

    def cleanup(self):
        for process in [self.jitd, self.listener, *self.holders, *self.agents.values()]:
            if process and process.poll() is None:
                process.kill()
                process.wait()
        for namespace in (self.server_ns, self.client_ns):
            run("ip", "netns", "del", namespace, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


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

    def setUp(self):
        self.lab = Lab(self, self.policy, socket_group=self.socket_group)
