"""Tampering with jitd's table: restored at once without ownership, refused by the kernel with it.

Without table ownership (nftTableOwnership: off) jitd watches netfilter events and puts its
table back when another process changes it; with ownership (auto, Linux 6.9+) the kernel
refuses other processes' changes to the table in the first place.
"""
import json
import re
import time
import unittest

from lab import CLIENT_A, CLIENT_B, CLIENT_C, SERVER4, LabTest, _strip_key, parse_utc

# Each in the server namespace, by another process than jitd.
TAMPERING = [
    ("flush ruleset", ("flush", "ruleset")),
    ("delete table", ("delete", "table", "inet", "jitd")),
    # The grant below is one address, so it is in the hash set.
    ("flush set grants4_single", ("flush", "set", "inet", "jitd", "grants4_single")),
    # Two more ways to open the port: an accept in front, and a grant nobody asked for.
    ("insert accept rule", ("insert", "rule", "inet", "jitd", "input", "accept")),
    ("add foreign grant", ("add", "element", "inet", "jitd", "grants4_single",
                           f"{{ {CLIENT_B} . tcp . 22 timeout 1h }}")),
    ("add foreign range", ("add", "element", "inet", "jitd", "grants4",
                           f"{{ {CLIENT_B}-{CLIENT_C} . tcp . 22 timeout 1h }}")),
]


def snapshot(lab):
    """The table as the kernel has it, without handles, counters and timeouts; None when it is
    absent. One `nft -j` call, so that a poll is quick and sees one state. (`list table` is safe
    here: jitd runs throughout, so the table is never an orphan with only the persist flag,
    which nft 1.0.x lists as garbage; see Lab.table_listing.)"""
    listing = lab.nft("list", "table", "inet", "jitd", check=False)
    if listing is None:
        return None
    state = {"table": None, "chains": [], "rules": [], "sets": {}}
    for item in listing["nftables"]:
        if "table" in item:
            state["table"] = (item["table"]["name"], item["table"].get("flags"))
        elif "chain" in item:
            chain = dict(item["chain"])
            chain.pop("handle", None)
            state["chains"].append(chain)
        elif "rule" in item:
            rule = item["rule"]
            expressions = _strip_key(_strip_key(json.dumps(rule["expr"]), "packets"), "bytes")
            state["rules"].append((rule["chain"], expressions))
        elif "set" in item:
            elements = item["set"].get("elem", [])
            state["sets"][item["set"]["name"]] = sorted(
                str(e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e) for e in elements)
    return state


def grant_expires(lab):
    """Remaining seconds of each IPv4 grant element (both grant sets), by key."""
    return {(str(e["first"]), str(e["last"]), e["protocol"], e["port"]): e["expires"]
            for e in lab.grant_elements(4)}


class TamperSelfHealing(LabTest):
    extra_config = "nftTableOwnership: off\n"

    def test_tampering_is_restored_within_2_seconds(self):
        lab = self.lab
        lab.start_jitd()
        self.assertIn("not owned (self-healing only)", lab.log())
        end = parse_utc(lab.grant(CLIENT_A, duration="PT2M")["endTimeUtc"])
        baseline = snapshot(lab)
        self.assertEqual(len(baseline["sets"]["grants4_single"]), 1, baseline)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))
        tamper_before = 0
        for label, command in TAMPERING:
            log_before = len(lab.log())
            done = lab.ns(lab.server_ns, "nft", *command, check=False)
            self.assertEqual(done.returncode, 0, f"{label}: {done.stderr}")
            changed = time.monotonic()
            took = lab.wait_for(lambda: snapshot(lab) == baseline, timeout=2.0, interval=0.01)
            self.assertIsNotNone(took, f"after {label} the table is not back within 2 s: "
                                       f"{snapshot(lab)} != {baseline}\n{lab.log()}")
            took = time.monotonic() - changed
            jitd_said = re.findall(r"restored in (\d+) us", lab.log()[log_before:])
            logged = ", ".join(f"{us} us" for us in jitd_said) or "nothing"
            print(f"restored after {label} in {took * 1000:.0f} ms (polled with nft -j; jitd logged: {logged})",
                  flush=True)
            self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A), f"grant lost after {label}")
            self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5),
                             f"ungranted source admitted after {label}")
            # The grant keeps its end: restored with the time it had left, not a fresh timeout
            # (nft -j shows whole seconds, cut down).
            before = time.time()
            (expires,) = grant_expires(lab).values()
            after = time.time()
            self.assertLessEqual(before + expires, end + 0.5, f"{label}: grant end moved later")
            self.assertGreaterEqual(after + expires + 1, end - 0.5, f"{label}: grant end moved earlier")
            tampers = [l for l in lab.audit() if l["event"] == "tamper"]
            self.assertGreater(len(tampers), tamper_before, f"no tamper audit after {label}")
            self.assertEqual(tampers[-1]["outcome"], "restored", tampers[-1])
            tamper_before = len(tampers)
        self.assertEqual(lab.api("GET", "/v1/grants")[1]["grants"][0]["allowedSourceAddressPrefix"],
                         CLIENT_A)

    def test_other_tables_are_not_tampering(self):
        # Changes to tables that are not jitd's are none of its business: no repair, no audit.
        lab = self.lab
        lab.start_jitd()
        lab.grant(CLIENT_A, duration="PT2M")
        for command in (("add", "table", "inet", "other"),
                        ("add", "chain", "inet", "other", "input",
                         "{ type filter hook input priority 10 ; }"),
                        ("add", "rule", "inet", "other", "input", "tcp", "dport", "9", "accept"),
                        ("add", "set", "inet", "other", "s", "{ type ipv4_addr ; }"),
                        ("add", "element", "inet", "other", "s", "{ 10.1.2.3 }"),
                        ("add", "table", "ip", "foreign"),
                        ("add", "chain", "ip", "foreign", "c")):
            lab.ns(lab.server_ns, "nft", *command)
        time.sleep(0.5)
        tampers = [l for l in lab.audit() if l["event"] == "tamper"]
        self.assertEqual(tampers, [], "changes to other tables were audited as tampering with "
                                      "inet jitd")
        self.assertNotIn("changed by another tool", lab.log())


class TamperOwnedTable(LabTest):
    """nftTableOwnership: auto (the default) on a kernel with owner + persist flags."""

    def test_owned_table_cannot_be_touched(self):
        lab = self.lab
        lab.start_jitd()
        if "owned by jitd and persistent" not in lab.log():
            self.skipTest("this kernel has no owner + persist table flags (Linux < 6.9)")
        lab.grant(CLIENT_A, duration="PT2M")
        baseline = snapshot(lab)
        expires = grant_expires(lab)
        for label, command in TAMPERING:
            done = lab.ns(lab.server_ns, "nft", *command, check=False)
            answer = done.stderr.strip().splitlines()[0] if done.stderr.strip() else "(no message)"
            print(f"{label}: nft exit {done.returncode}: {answer}", flush=True)
            time.sleep(0.05)  # a repair, if jitd thought one was needed, would be done by now
            self.assertEqual(snapshot(lab), baseline, f"{label} changed the owned table")
            now = grant_expires(lab)
            self.assertEqual(now.keys(), expires.keys())
            for key, left in now.items():
                self.assertLessEqual(left, expires[key], f"{label}: grant element re-added")
            self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A), f"grant lost after {label}")
            self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5),
                             f"ungranted source admitted after {label}")
        # Nothing was changed, so there was nothing to restore.
        self.assertEqual([l for l in lab.audit() if l["event"] == "tamper"], [])


if __name__ == "__main__":
    unittest.main()
