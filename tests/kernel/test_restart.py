"""Restarts: grants outlive the daemon and keep their original end; the journal decides at start.

SIGTERM leaves the table and its grants in force. At start jitd replays its journal: live
grants come back with the time they have left, grants that ended meanwhile are audited as
expired, and kernel elements the journal does not know are removed.
"""
import time
import unittest

from lab import CLIENT_A, CLIENT_B, CLIENT_C, SERVER4, Lab, LabTest, nftables_only, parse_utc, sleep_until

ORPHAN = "10.77.0.9"


def keys(lab, family=4):
    return {(str(e["first"]), str(e["last"]), e["protocol"], e["port"])
            for e in lab.grant_elements(family)}


class Restart(LabTest):
    def test_grant_survives_restart_and_keeps_its_end(self):
        lab = self.lab
        lab.start_jitd()
        grant = lab.grant(CLIENT_A, duration="20s")
        start, end = parse_utc(grant["startTimeUtc"]), parse_utc(grant["endTimeUtc"])
        self.assertAlmostEqual(end - start, 20, delta=0.01)

        sleep_until(start + 5)
        lab.kill_jitd(15)
        self.assertEqual(lab.jitd.returncode, 0, lab.log())
        self.assertTrue(lab.table_present(), "enforcement gone with jitd")
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A), "grant stopped working with jitd down")
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))
        time.sleep(1)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A), "grant stopped working with jitd down")

        lab.start_jitd()
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A), "grant lost over the restart")
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))
        status, listing = lab.api("GET", "/v1/grants")
        self.assertEqual(status, 200, listing)
        self.assertEqual([(g["id"], g["endTimeUtc"]) for g in listing["grants"]],
                         [(grant["id"], grant["endTimeUtc"])])
        # Re-added with the time it had left, not the full 20 s again (nft shows whole seconds).
        before = time.time()
        (element,) = lab.grant_elements(4)
        after = time.time()
        self.assertLessEqual(before + element["expires"], end + 0.5, element)
        self.assertGreaterEqual(after + element["expires"] + 1, end - 0.5, element)
        self.assertIn("1 live grant(s) restored", lab.log())

        sleep_until(end - 1.0)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.9), "closed before endTimeUtc")
        sleep_until(end + 1.0)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5), "open after endTimeUtc")
        self.assertEqual(lab.grant_set_elements(4), [])

    def test_grant_ending_while_down_is_audited_and_not_restored(self):
        lab = self.lab
        lab.start_jitd()
        short = lab.grant(CLIENT_A, duration="2s")
        long = lab.grant(CLIENT_C, ports=((3389, "tcp"),), duration="5m")
        lab.kill_jitd(15)
        sleep_until(parse_utc(short["endTimeUtc"]) + 0.5)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))

        audited_before = len(lab.audit())
        lab.start_jitd()
        self.assertIn("1 live grant(s) restored, 1 ended while jitd was not running", lab.log())
        since_start = lab.audit()[audited_before:]
        expired = [l for l in since_start if l["event"] == "expire"]
        self.assertEqual([(l["grantId"], l["outcome"]) for l in expired], [(short["id"], "expired")],
                         since_start)
        self.assertEqual(expired[0]["endTimeUtc"], short["endTimeUtc"])
        listed = lab.api("GET", "/v1/grants")[1]["grants"]
        self.assertEqual([g["id"] for g in listed], [long["id"]])
        self.assertEqual(keys(lab), {(CLIENT_C, CLIENT_C, "tcp", 3389)})
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_C))
        # Recorded once: the next start does not audit it again.
        audited_before = len(lab.audit())
        lab.restart_jitd()
        self.assertEqual([l for l in lab.audit()[audited_before:] if l["event"] == "expire"], [])

    @nftables_only("adds an element with nft while jitd is down")
    def test_element_unknown_to_the_journal_is_removed_at_start(self):
        # With ownership (auto, the default) the table is orphaned but persistent while jitd
        # is down; without it (off) it is a plain table. Both must be cleaned at start.
        for mode, lab in (("auto", self.lab),
                          ("off", Lab(self, extra_config="nftTableOwnership: off\n"))):
            with self.subTest(nftTableOwnership=mode):
                lab.start_jitd()
                grant = lab.grant(CLIENT_A, duration="5m")
                lab.kill_jitd(15)
                added = lab.ns(lab.server_ns, "nft", "add", "element", "inet", "jitd", "grants4_single",
                               f"{{ {ORPHAN} . tcp . 22 timeout 1h }}", check=False)
                if added.returncode != 0:
                    # The orphaned owned table refused a foreign write: nothing to clean, but
                    # nothing may have changed either.
                    print(f"nftTableOwnership: {mode}: nft add element refused: {added.stderr.strip()}")
                    self.assertNotEqual(mode, "off", added.stderr)
                    self.assertEqual(keys(lab), {(CLIENT_A, CLIENT_A, "tcp", 22)})
                    continue
                print(f"nftTableOwnership: {mode}: nft add element into the stopped jitd's table accepted")
                self.assertIn((ORPHAN, ORPHAN, "tcp", 22), keys(lab))
                lab.start_jitd()
                self.assertEqual(keys(lab), {(CLIENT_A, CLIENT_A, "tcp", 22)})
                self.assertEqual([g["id"] for g in lab.api("GET", "/v1/grants")[1]["grants"]],
                                 [grant["id"]])
                self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))


if __name__ == "__main__":
    unittest.main()
