#!/usr/bin/env python3
"""Helpers for the grant-lifecycle kernel tests (test_session_end, test_approval, test_doctor).

Imported: `Sessions` (live TCP sessions whose both ends the test drives, to prove that data
stops, or keeps, passing in each direction), and
`nft_script` (a ruleset of another "firewall" in the lab's server namespace).

Run as a script inside a lab namespace (`ip netns exec`), it is the two ends of those sessions:

  lifecycle_support.py serve PORT...
        accepts TCP connections on the ports; prints "accepted CID PEER_ADDRESS LOCAL_PORT",
        "recv CID TEXT" per line received, "closed CID REASON"; reads "send CID TEXT" on stdin
        and answers "sent CID" or "error CID REASON"
  lifecycle_support.py client HOST PORT SOURCE
        one connection: prints "connected" (or "ERROR REASON"), then "recv TEXT" per line
        received and "closed REASON"; reads "send TEXT" on stdin, answers "sent" or "error REASON"
Lines are printed as they happen, so the test sees each delivery with its time.
"""
import os
import queue
import select
import socket
import subprocess
import sys
import threading
import time

SELF = os.path.abspath(__file__)


# ---- the two ends, run inside a namespace ----
def _say(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _serve(ports):
    listeners = {}
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(16)
        listeners[s.fileno()] = s
    connections, buffers, next_id = {}, {}, 1
    _say("ready")
    stdin = sys.stdin.buffer.raw if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
    pending = b""
    while True:
        watched = [stdin] + list(listeners.values()) + list(connections.values())
        readable, _, _ = select.select(watched, [], [])
        for r in readable:
            if r is stdin:
                chunk = os.read(stdin.fileno(), 4096)
                if not chunk:
                    return
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    _, cid, text = line.decode().split(" ", 2)
                    s = connections.get(int(cid))
                    if s is None:
                        _say(f"error {cid} no such connection")
                        continue
                    try:
                        s.sendall(text.encode() + b"\n")
                        _say(f"sent {cid}")
                    except OSError as error:
                        _say(f"error {cid} {error}")
            elif r.fileno() in listeners:
                conn, peer = r.accept()
                cid, next_id = next_id, next_id + 1
                connections[cid], buffers[cid] = conn, b""
                _say(f"accepted {cid} {peer[0]} {conn.getsockname()[1]}")
            else:
                cid = next(c for c, s in connections.items() if s is r)
                try:
                    data = r.recv(4096)
                    reason = "eof"
                except OSError as error:
                    data, reason = b"", str(error)
                if not data:
                    _say(f"closed {cid} {reason}")
                    del connections[cid]
                    r.close()
                    continue
                buffers[cid] += data
                while b"\n" in buffers[cid]:
                    line, buffers[cid] = buffers[cid].split(b"\n", 1)
                    _say(f"recv {cid} {line.decode()}")


def _client(host, port, source):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(2.0)
    try:
        s.connect((host, port))
    except OSError as error:
        _say(f"ERROR {error}")
        return 1
    s.settimeout(None)
    _say("connected")
    stdin = sys.stdin.buffer.raw if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
    pending, buffer, open_ = b"", b"", True
    while True:
        readable, _, _ = select.select([stdin] + ([s] if open_ else []), [], [])
        for r in readable:
            if r is stdin:
                chunk = os.read(stdin.fileno(), 4096)
                if not chunk:
                    return 0
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    text = line.decode().split(" ", 1)[1]
                    try:
                        s.sendall(text.encode() + b"\n")
                        _say("sent")
                    except OSError as error:
                        _say(f"error {error}")
            else:
                try:
                    data = s.recv(4096)
                    reason = "eof"
                except OSError as error:
                    data, reason = b"", str(error)
                if not data:
                    _say(f"closed {reason}")
                    open_ = False
                    continue
                buffer += data
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    _say(f"recv {line.decode()}")


# ---- the test's side ----
class _Process:
    """A child whose stdout lines are recorded with the time they were read."""

    def __init__(self, argv):
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, bufsize=1)
        self.events = []  # (monotonic time, wall time, line)
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        try:
            for line in self.process.stdout:
                with self.lock:
                    self.events.append((time.monotonic(), time.time(), line.rstrip("\n")))
                    self.arrived.notify_all()
        except (OSError, ValueError):
            pass  # closed by stop()

    def write(self, line):
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def wait_line(self, predicate, timeout):
        """The first recorded line (any time) for which predicate holds, or None after timeout."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for _, _, line in self.events:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.arrived.wait(left)

    def lines(self):
        with self.lock:
            return list(self.events)

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=1)
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except OSError:
                pass


class Session:
    """One live TCP connection from the client namespace to the lab's session server."""

    def __init__(self, sessions, client, cid, port):
        self.sessions, self.client, self.cid, self.port = sessions, client, cid, port
        self.sent = {}  # tag -> wall time it was written

    def _tag(self, direction):
        self.sessions.counter += 1
        return f"{direction}{self.port}-{self.sessions.counter}"

    def send_both(self):
        """Sends one line each way; returns the two tags."""
        up, down = self._tag("c"), self._tag("s")
        self.sent[up] = time.time()
        self.client.write(f"send {up}")
        self.sent[down] = time.time()
        self.sessions.server.write(f"send {self.cid} {down}")
        return up, down

    def delivered(self, tag):
        """When `tag` arrived at the other end (wall time), or None."""
        if tag.startswith("c"):
            process, wanted = self.sessions.server, f"recv {self.cid} {tag}"
        else:
            process, wanted = self.client, f"recv {tag}"
        for _, wall, line in process.lines():
            if line == wanted:
                return wall
        return None

    def round_trip(self, timeout=1.0):
        """Whether a line passes each way within timeout: (client->server, server->client)."""
        up, down = self.send_both()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.delivered(up) and self.delivered(down):
                break
            time.sleep(0.01)
        return self.delivered(up) is not None, self.delivered(down) is not None

    def client_events(self):
        return [line for _, _, line in self.client.lines()]

    def server_events(self):
        return [line for _, _, line in self.sessions.server.lines()
                if line.split(" ")[1:2] == [str(self.cid)]]


class Sessions:
    """A session server on `ports` in the lab's server namespace; `open` connects to it from
    the client namespace. Both are stopped at the test's cleanup."""

    def __init__(self, lab, ports):
        self.lab = lab
        self.counter = 0
        self.clients = []
        self.claimed = set()
        self.server = _Process(["ip", "netns", "exec", lab.server_ns, sys.executable, SELF,
                                "serve", *map(str, ports)])
        lab.test.addCleanup(self.stop)
        lab.test.assertEqual(self.server.wait_line(lambda l: l == "ready", 5), "ready",
                             "session server did not start")

    def open(self, host, port, source):
        client = _Process(["ip", "netns", "exec", self.lab.client_ns, sys.executable, SELF,
                           "client", host, str(port), source])
        self.clients.append(client)
        first = client.wait_line(lambda l: l == "connected" or l.startswith("ERROR"), 5)
        self.lab.test.assertEqual(first, "connected", f"no session to {host}:{port} from {source}")
        accepted = self.server.wait_line(
            lambda l: l.startswith("accepted ") and l.split(" ")[1] not in self.claimed
            and l.split(" ")[2] == source and l.split(" ")[3] == str(port), 5)
        self.lab.test.assertIsNotNone(accepted, f"server did not see the session from {source}")
        cid = int(accepted.split(" ")[1])
        self.claimed.add(str(cid))
        return Session(self, client, cid, port)

    def can_connect(self, host, port, source):
        """Whether a new connection gets through (the server accepts it) within 2 s."""
        client = _Process(["ip", "netns", "exec", self.lab.client_ns, sys.executable, SELF,
                           "client", host, str(port), source])
        self.clients.append(client)
        first = client.wait_line(lambda l: l == "connected" or l.startswith("ERROR"), 5)
        client.stop()
        return first == "connected"

    def stop(self):
        for process in [*self.clients, self.server]:
            process.stop()


def watch(sessions, start, until, interval=0.1, grace=1.0):
    """Sends a line each way on every session every `interval` s from now until wall time
    `until`, then waits `grace` s for late deliveries. For each session: a dict with
    `last_delivered` (the latest wall time, relative to `start`, at which a line that arrived
    was sent, per direction; None when none arrived), `lost` (lines sent after `start` that never
    arrived), and the client's and server's events."""
    tags = {id(s): [] for s in sessions}
    while time.time() < until:
        for s in sessions:
            tags[id(s)].extend(s.send_both())
        time.sleep(interval)
    time.sleep(grace)
    report = {}
    for s in sessions:
        last = {"up": None, "down": None}
        lost = []
        for tag in tags[id(s)]:
            direction = "up" if tag.startswith("c") else "down"
            sent = s.sent[tag] - start
            if s.delivered(tag) is None:
                lost.append((tag, round(sent, 3)))
            elif last[direction] is None or sent > last[direction]:
                last[direction] = sent
        report[id(s)] = {"last_delivered": last, "lost": lost,
                         "client": s.client_events()[-5:], "server": s.server_events()[-5:]}
    return report


def nft_script(lab, text):
    """Loads an nft ruleset (`nft -f`) in the lab's server namespace, never the host's."""
    path = os.path.join(lab.dir, f"other-{time.monotonic_ns()}.nft")
    with open(path, "w") as f:
        f.write(text)
    return lab.ns(lab.server_ns, "nft", "-f", path)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        _serve([int(p) for p in sys.argv[2:]])
    elif sys.argv[1] == "client":
        sys.exit(_client(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
    else:
        sys.exit(f"unknown command {sys.argv[1]!r}")
