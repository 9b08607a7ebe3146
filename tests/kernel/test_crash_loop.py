"""Crash loop: jitd killed at least 50 times while a client requests and revokes grants.

jitd runs with failpoints armed (JITD_FAILPOINTS: it SIGKILLs itself after a journal sync,
after a kernel ack, or with half a record written) and the test SIGKILLs it at seeded random
moments as well. After every restart the kernel, read with `nft -j` (not through jitd), must
hold:

  * every grant the API acknowledged (201) and did not revoke (200) admits its source on its
    port, unless its endTimeUtc has passed;
  * no element lives longer than the latest end among the grants that may cover it, + 1 s;
  * no two elements of a set overlap.

Requests and revokes whose answer was lost to a crash are undecided: they count as possibly
live for the upper bound and are decided by the next GET /v1/grants. Meanwhile a prober at
10.77.0.3, never granted anything, knocks on the protected ports at 20 Hz and must never get in,
also not while jitd is down or starting.
"""
import dataclasses
import http.client
import ipaddress
import os
import random
import subprocess
import threading
import time
import unittest

from lab import BACKEND, CLIENT_B, GRANT_SETS, SERVER4, LabTest, parse_element, parse_utc, protected_pairs

SEED = int(os.environ.get("JITD_CRASH_SEED", "4242"))
FAILPOINTS = "after_journal_sync=0.15,after_kernel_ack=0.15,journal_mid_record=0.15"
MIN_KILLS = 50
TARGET_KILLS = 60      # stop here ...
LOOP_BUDGET = 70.0     # ... or after this many seconds, whichever comes first
SOURCES = ("10.77.0.2", "10.77.0.4", "10.77.0.4/31")  # never 10.77.0.3
PORTS = (22, 3389)
PROBE_HZ = 20
API_ERRORS = (OSError, http.client.HTTPException, ValueError)

PROBER = r"""
import socket, sys, threading, time
host, source, hz, ports = sys.argv[1], sys.argv[2], float(sys.argv[3]), [int(p) for p in sys.argv[4:]]
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
probes = connected = 0
period = 1.0 / hz
due = time.monotonic()
print("ready", flush=True)
while not stop.is_set():
    port = ports[probes % len(ports)]
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(period * 0.8)
    try:
        s.connect((host, port))
        connected += 1
        print(f"CONNECTED port {port} at {time.time():.3f}", flush=True)
    except OSError:
        pass
    finally:
        s.close()
    probes += 1
    due += period
    time.sleep(max(0.0, due - time.monotonic()))
print(f"probes {probes} connected {connected}", flush=True)
"""


@dataclasses.dataclass
class Grant:
    source: str
    port: int
    end: float          # endTimeUtc; for an unanswered request, the latest it can be
    id: str = ""
    justification: str = ""

    @property
    def first(self):
        return ipaddress.ip_network(self.source, strict=False)[0]

    @property
    def last(self):
        return ipaddress.ip_network(self.source, strict=False)[-1]

    def covers(self, address, port):
        return self.port == port and self.first <= address <= self.last


class CrashLoop(LabTest):
    def setUp(self):
        super().setUp()
        self.rng = random.Random(SEED)
        self.acked = {}             # id -> Grant: 201 seen, no 200 revoke seen
        self.unanswered = []        # requests whose answer was lost
        self.revoking = {}          # id -> Grant: revokes whose answer was lost
        self.revoked = set()        # ids revoked with 200
        self.starts = 0
        self.killed_by_test = set()
        self.deaths = {"test SIGKILL": 0, "failpoint": 0}
        self.kinds = {}             # failpoint deaths by the point they most likely hit
        self.checks = 0
        self.verified = {"grants in force": 0, "elements bounded": 0}
        self.requests = 0

    # ---- jitd ----
    def start(self):
        while True:
            env = {"JITD_FAILPOINTS": FAILPOINTS, "JITD_FAILPOINT_SEED": str(SEED * 1000 + self.starts)}
            self.starts += 1
            if self.lab.start_jitd(env=env, may_exit=True):
                return
            self.assertEqual(self.lab.jitd.returncode, -9,
                             f"jitd failed to start: {self.lab.log()[-3000:]}")
            self.deaths["failpoint"] += 1  # died while starting (ending grants, journal)
            self.kinds["while starting"] = self.kinds.get("while starting", 0) + 1

    def kill_now(self, process):
        if process.poll() is None:
            self.killed_by_test.add(process.pid)
            process.kill()

    def api(self, method, path, body=None):
        try:
            return self.lab.api(method, path, body)
        except API_ERRORS:
            # The answer was lost because jitd is dying: wait for it, so that its death is
            # put down to this operation and not to the next one.
            try:
                self.lab.jitd.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            raise

    # ---- what the kernel holds ----
    def kernel(self, sets_only=False):
        if BACKEND == "ebpf":
            return self.kernel_maps(sets_only)
        before = time.time()
        if sets_only:
            listing = self.lab.nft("list", "sets", "inet")
        else:
            listing = self.lab.table_listing()  # also while jitd is down and its table orphaned
            self.assertIsNotNone(listing, "jitd's table is gone")
        after = time.time()
        state = {"sets": {}, "rules": [], "before": before, "after": after}
        for item in listing["nftables"]:
            if "set" in item and item["set"]["table"] == "jitd":
                state["sets"][item["set"]["name"]] = item["set"].get("elem", [])
            elif "rule" in item:
                state["rules"].append(item["rule"])
        state["grants"] = [parse_element(e) for name in GRANT_SETS[4]
                           for e in state["sets"].get(name, [])]
        return state

    def kernel_maps(self, sets_only):
        """kernel() for the eBPF backend: its maps in the same shape (lab.set_elements), and in
        place of the drop rule, its program attached (unless only the sets are asked for)."""
        before = time.time()
        if not sets_only:
            self.assertTrue(self.lab.table_present(), "jitd's program or maps are gone")
        names = ("protected", *GRANT_SETS[4], *GRANT_SETS[6])
        state = {"sets": {name: self.lab.set_elements(name) for name in names},
                 "rules": [{"expr": [{"drop": None}]}], "before": before, "after": time.time()}
        state["grants"] = [parse_element(e) for name in GRANT_SETS[4]
                           for e in state["sets"].get(name, [])]
        return state

    def possible(self, extra=()):
        return [*self.acked.values(), *self.revoking.values(), *self.unanswered, *extra]

    def describe(self, state):
        elements = [(f"{e['first']}-{e['last']}", e["port"], e["expires"]) for e in state["grants"]]
        book = [(g.id or g.justification, g.source, g.port, round(g.end - state["before"], 1),
                 "acked" if g.id in self.acked else "undecided") for g in self.possible()]
        return (f"\nkernel (range, port, expires): {elements}"
                f"\ngrants (id, source, port, ends in, state): {book}")

    # ---- invariants after each restart ----
    def decide_undecided(self):
        try:
            status, listing = self.api("GET", "/v1/grants")
        except API_ERRORS:
            return  # died again: decided after the next restart
        self.assertEqual(status, 200, listing)
        now = time.time()
        live = {g["id"]: g for g in listing["grants"]}
        back = set(live) & self.revoked
        self.assertFalse(back, f"grants revoked with 200 are back after a restart: {back}")
        for grant in self.acked.values():
            if grant.end > now + 0.5:
                self.assertIn(grant.id, live, f"acknowledged grant {grant} forgotten over a restart")
        by_justification = {g["justification"]: g for g in live.values()}
        for grant in self.unanswered:
            found = by_justification.get(grant.justification)
            if found:
                latest = grant.end
                grant.id, grant.end = found["id"], parse_utc(found["endTimeUtc"])
                self.assertLessEqual(grant.end, latest + 0.001, f"{grant} ends later than asked")
                self.acked[grant.id] = grant
        for grant_id, grant in self.revoking.items():
            if grant_id in live:
                self.acked[grant_id] = grant
            else:
                self.revoked.add(grant_id)
        self.unanswered, self.revoking = [], {}

    def check_invariants(self):
        try:
            self.check_invariants_once()
        except AssertionError as error:
            # What jitd did just before: its log and journal say which step went wrong.
            log = "\n".join(self.lab.log().splitlines()[-60:])
            with open(self.lab.journal_path, errors="replace") as f:
                journal = f.read()[-6000:]
            raise AssertionError(f"{error}\n--- jitd log (end) ---\n{log}"
                                 f"\n--- journal (end) ---\n{journal}") from None

    def check_invariants_once(self):
        self.checks += 1
        self.decide_undecided()
        state = self.kernel()
        before, after = state["before"], state["after"]
        context = self.describe(state)
        # Grants long over can explain nothing any more (an element of theirs would already
        # break the upper bound below): forget them.
        self.acked = {i: g for i, g in self.acked.items() if g.end > before - 2}
        # The table itself: both ports protected, the drop rule in place, nothing for IPv6.
        protected = set(protected_pairs(state["sets"]["protected"]))
        self.assertTrue({("tcp", 22), ("tcp", 3389)} <= protected, protected)
        self.assertTrue(any(any("drop" in x for x in r["expr"]) for r in state["rules"]), state["rules"])
        self.assertEqual([e for name in GRANT_SETS[6] for e in state["sets"].get(name, [])], [])
        elements = state["grants"]
        for element in elements:
            self.assertEqual(element["protocol"], "tcp", element)

        # No overlap, no duplicate.
        for port in {e["port"] for e in elements}:
            ranges = sorted((e["first"], e["last"]) for e in elements if e["port"] == port)
            for (first_a, last_a), (first_b, last_b) in zip(ranges, ranges[1:]):
                self.assertGreater(first_b, last_a, f"elements {first_a}-{last_a} and {first_b}-{last_b} "
                                                    f"overlap on port {port}{context}")

        # Every acknowledged, unrevoked, unended grant is in force until its end.
        for grant in self.acked.values():
            if grant.end <= before + 0.5:
                continue
            covering = sorted((e for e in elements if e["port"] == grant.port
                               and e["first"] <= grant.last and e["last"] >= grant.first),
                              key=lambda e: e["first"])
            reach = grant.first
            for element in covering:
                self.assertLessEqual(element["first"], reach, f"{grant} not fully admitted{context}")
                self.assertGreaterEqual(after + element["expires"] + 1, grant.end - 0.25,
                                        f"{grant} admitted for too short a time by {element}{context}")
                reach = max(reach, element["last"] + 1)
            self.assertGreater(reach, grant.last, f"{grant} not (fully) in the kernel{context}")
            self.verified["grants in force"] += 1

        # Nothing is admitted longer than some grant that may cover it allows.
        for element in elements:
            size = int(element["last"]) - int(element["first"]) + 1
            self.assertLessEqual(size, 256, f"{element} is wider than any grant{context}")
            for number in range(int(element["first"]), int(element["last"]) + 1):
                address = ipaddress.ip_address(number)
                ends = [g.end for g in self.possible() if g.covers(address, element["port"])]
                self.assertTrue(ends, f"{address} port {element['port']} admitted by no grant{context}")
                self.assertLessEqual(before + element["expires"], max(ends) + 1.0,
                                     f"{address} port {element['port']} admitted past the latest "
                                     f"end of its grants{context}")
            self.verified["elements bounded"] += 1

    # ---- which failpoint killed jitd (best effort, from journal and kernel) ----
    def classify(self, inflight):
        with open(self.lab.journal_path, "rb") as f:
            journal = f.read()
        if journal and not journal.endswith(b"\n"):
            return "journal_mid_record"
        last = journal.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        if inflight is None or inflight[1] is None:
            return "after_journal_sync (ending a grant)" if b'"type":"end"' in last else "unknown"
        kind, grant = inflight
        marker = (f'"justification":"{grant.justification}"' if kind == "request"
                  else f'"{grant.id}"').encode()
        if marker not in last:
            return "after_journal_sync (ending a grant)" if b'"status":"Expired"' in last else "unknown"
        state = self.kernel(sets_only=True)
        address = grant.first
        others = [g.end for g in self.possible() if g is not grant and g.covers(address, grant.port)]
        element = next((e for e in state["grants"] if e["port"] == grant.port
                        and e["first"] <= address <= e["last"]), None)
        beyond_others = (element is not None
                         and state["before"] + element["expires"] > max(others, default=0) + 1)
        short_of_grant = element is None or state["after"] + element["expires"] + 1 < grant.end - 1.5
        if kind == "request":
            applied = beyond_others or (element is not None and not others)
            unapplied = short_of_grant
        else:
            applied = short_of_grant
            unapplied = beyond_others or (element is not None and not others)
        if applied and not unapplied:
            return "after_kernel_ack"
        if unapplied and not applied:
            return "after_journal_sync"
        return "after_journal_sync or after_kernel_ack"

    def after_death(self, inflight):
        process = self.lab.jitd
        if process.pid in self.killed_by_test:
            self.deaths["test SIGKILL"] += 1
        else:
            self.deaths["failpoint"] += 1
            self.assertEqual(process.returncode, -9, "jitd died other than by SIGKILL")
            kind = self.classify(inflight)
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self.start()
        self.check_invariants()

    # ---- the client ----
    def request(self):
        self.requests += 1
        source, port = self.rng.choice(SOURCES), self.rng.choice(PORTS)
        seconds = self.rng.randint(2, 6)
        grant = Grant(source, port, 0.0, justification=f"crash loop {self.requests}")
        body = {"ports": [{"number": port, "protocol": "tcp"}], "allowedSourceAddressPrefix": source,
                "duration": f"{seconds}s", "justification": grant.justification}
        try:
            status, reply = self.api("POST", "/v1/grants", body)
        except API_ERRORS:
            grant.end = time.time() + seconds
            self.unanswered.append(grant)
            return grant
        self.assertEqual(status, 201, reply)
        grant.id, grant.end = reply["id"], parse_utc(reply["endTimeUtc"])
        self.acked[grant.id] = grant
        return grant

    def revoke(self):
        live = [g for g in self.acked.values() if g.end > time.time() + 0.3]
        if not live:
            return None
        grant = self.rng.choice(sorted(live, key=lambda g: g.id))
        sent = time.time()
        try:
            status, reply = self.api("DELETE", f"/v1/grants/{grant.id}")
        except API_ERRORS:
            self.revoking[grant.id] = self.acked.pop(grant.id)
            return grant
        if status == 404:
            self.assertLess(grant.end, sent + 0.2, f"jitd does not know acknowledged grant {grant}")
            self.acked.pop(grant.id)
            return grant
        self.assertEqual(status, 200, reply)
        self.acked.pop(grant.id)
        self.revoked.add(grant.id)
        return grant

    def test_crash_loop(self):
        lab = self.lab
        print(f"seed {SEED}, failpoints {FAILPOINTS}", flush=True)
        self.start()
        prober = subprocess.Popen(["ip", "netns", "exec", lab.client_ns, "python3", "-c", PROBER,
                                   SERVER4, CLIENT_B, str(PROBE_HZ), *map(str, PORTS)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        lab.holders.append(prober)  # killed by the lab's cleanup if the test fails
        self.assertEqual(prober.stdout.readline().strip(), "ready")
        began = time.monotonic()
        self.check_invariants()

        while (self.deaths["test SIGKILL"] + self.deaths["failpoint"] < TARGET_KILLS
               and time.monotonic() - began < LOOP_BUDGET):
            if lab.jitd.poll() is not None:  # died between operations (expiring a grant)
                self.after_death(("idle", None))
                continue
            timer = None
            if self.rng.random() < 0.12:
                timer = threading.Timer(self.rng.uniform(0, 0.04), self.kill_now, args=(lab.jitd,))
                timer.start()
            if self.rng.random() < 0.6 or not self.acked:
                inflight = ("request", self.request())
            else:
                inflight = ("revoke", self.revoke())
            if timer:
                timer.join()
            if lab.jitd.poll() is not None:
                self.after_death(inflight)
        loop_seconds = time.monotonic() - began
        if lab.jitd.poll() is not None:
            self.after_death(("idle", None))
        self.check_invariants()

        prober.stdin.close()
        output = prober.stdout.read().splitlines()
        prober.wait(timeout=5)
        probe_seconds = time.monotonic() - began
        connected = [line for line in output if line.startswith("CONNECTED")]
        probes, _ = (int(word) for word in output[-1].split()[1::2])
        kills = self.deaths["test SIGKILL"] + self.deaths["failpoint"]
        print(f"kills {kills}: {self.deaths['test SIGKILL']} by the test (SIGKILL), "
              f"{self.deaths['failpoint']} by failpoints {self.kinds}", flush=True)
        print(f"{self.requests} requests in {loop_seconds:.1f} s, {self.starts} starts, "
              f"{self.checks} invariant checks ({self.verified}), {len(self.revoked)} revoked", flush=True)
        print(f"prober {CLIENT_B}: {probes} probes in {probe_seconds:.1f} s "
              f"({probes / probe_seconds:.1f}/s), {len(connected)} connected", flush=True)

        self.assertEqual(connected, [], "the never-granted prober got in")
        self.assertGreaterEqual(probes, 10 * probe_seconds)
        self.assertGreaterEqual(kills, MIN_KILLS)
        self.assertGreater(self.deaths["test SIGKILL"], 0)
        self.assertGreater(self.deaths["failpoint"], 0)
        self.assertGreater(self.kinds.get("journal_mid_record", 0), 0, self.kinds)
        self.assertEqual(lab.log().count("failpoints armed"), self.starts)


if __name__ == "__main__":
    unittest.main()
