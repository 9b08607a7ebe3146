"""Issue 11: other firewalls. A drop for a protected port in another nftables table still blocks
a granted client; jitd says so: a "warnings" entry in the grant's reply, a warning from
`jitctl grant`, and the conflict in GET /v1/doctor and `jitctl doctor` (exit status 3). Accept
rules in other tables for a protected port are listed too (kind "accepts"). The inspection
itself is tested in depth by kernel.nft_conflicts; this is the end-to-end wiring. Every rule
goes into the lab's server namespace."""
import time
import unittest

from lab import CLIENT_A, CLIENT_B, SERVER4, LabTest, nftables_only
from lifecycle_support import nft_script

DROP_22 = """
table inet other {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 22 drop
  }
}
"""

ACCEPT_22 = """
table inet friendly {
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr 10.77.0.4 tcp dport 22 accept
  }
}
"""


def conflicts_of(report, table):
    return [c for c in report["conflicts"] if c["table"] == table]


@nftables_only("the conflicts are nftables rules in other tables")
class Doctor(LabTest):
    def setUp(self):
        super().setUp()
        self.lab.start_jitd()

    def doctor(self):
        status, report = self.lab.api("GET", "/v1/doctor")
        self.assertEqual(status, 200, report)
        return report

    def test_drop_in_another_table_is_listed_by_doctor(self):
        lab = self.lab
        nft_script(lab, DROP_22)
        (conflict,) = conflicts_of(self.doctor(), "other")
        self.assertEqual(conflict["kind"], "drops", conflict)
        self.assertEqual((conflict["family"], conflict["chain"]), ("inet", "input"), conflict)
        self.assertTrue(conflict["certain"], conflict)
        self.assertIn({"number": 22, "protocol": "tcp"}, conflict["ports"])
        self.assertTrue(conflict["advice"], conflict)
        self.assertEqual(conflicts_of(self.doctor(), "jitd"), [], "jitd's own table is no conflict")

        doctor = lab.jitctl("doctor")
        self.assertEqual(doctor.returncode, 3, doctor.stdout + doctor.stderr)
        self.assertIn("table other", doctor.stdout)
        self.assertIn("drops", doctor.stdout)
        self.assertIn("22", doctor.stdout)

        # Gone again: no conflict, exit 0.
        lab.ns(lab.server_ns, "nft", "delete", "table", "inet", "other")
        self.assertEqual(self.doctor()["conflicts"], [])
        self.assertEqual(lab.jitctl("doctor").returncode, 0)

    def test_drop_in_another_table_is_reported_by_a_grant(self):
        """The other firewall was there first (a distribution's ruleset, ufw at boot)."""
        lab = self.lab
        lab.kill_jitd(15)
        nft_script(lab, DROP_22)
        lab.start_jitd()
        # A line in jitd's log at its start (issue 11).
        self.assertTrue([line for line in lab.log().splitlines() if "table other" in line],
                        f"jitd's log does not mention the conflicting table: {lab.log()[-2000:]}")
        grant = lab.grant(CLIENT_A, duration="PT5M")  # asserts 201
        # The conflict is real: the granted client is still blocked.
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        self.assertTrue(grant.get("warnings"), f"no warning about table other: {grant}")
        self.assertTrue(any("table other" in w and "22" in w for w in grant["warnings"]), grant)

        granted = lab.jitctl("grant", "--port", "22", "--source", CLIENT_B, "--duration", "5m")
        self.assertEqual(granted.returncode, 0, granted.stderr)
        self.assertIn("warning", granted.stderr.lower())
        self.assertIn("table other", granted.stderr)

        # A grant for a port the rule does not drop has no warning.
        self.assertNotIn("warnings", lab.grant(CLIENT_A, ports=((3389, "tcp"),), duration="PT5M"))

    def test_drop_added_while_jitd_runs_is_reported_by_a_grant(self):
        lab = self.lab
        # jitd keeps one reading of the ruleset for grant replies, renewed when another table
        # changes: the monitor's event must reach it before the next grant.
        self.assertNotIn("warnings", lab.grant(CLIENT_B, duration="PT5M"))
        nft_script(lab, DROP_22)
        time.sleep(0.3)
        grant = lab.grant(CLIENT_A, duration="PT5M")
        self.assertTrue(any("table other" in w for w in grant.get("warnings", [])), grant)
        # Gone again: grants answer without warnings, and the grant admits its client.
        lab.ns(lab.server_ns, "nft", "delete", "table", "inet", "other")
        time.sleep(0.3)
        self.assertNotIn("warnings", lab.grant(CLIENT_B, duration="PT5M"))
        self.assertEqual(self.doctor()["conflicts"], [])
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))

    def test_accept_in_another_table_is_listed(self):
        lab = self.lab
        nft_script(lab, ACCEPT_22)
        (conflict,) = conflicts_of(self.doctor(), "friendly")
        self.assertEqual(conflict["kind"], "accepts", conflict)
        self.assertIn({"number": 22, "protocol": "tcp"}, conflict["ports"])
        self.assertIn("10.77.0.4", conflict["advice"], "no allow-list suggestion for the source")
        doctor = lab.jitctl("doctor")
        self.assertEqual(doctor.returncode, 3, doctor.stdout + doctor.stderr)
        self.assertIn("table friendly", doctor.stdout)
        self.assertIn("accepts", doctor.stdout)
        # jitd's drop still wins over the other table's accept.
        self.assertFalse(lab.connect(SERVER4, 22, "10.77.0.4", timeout=0.5))

    def test_no_other_table_no_conflict(self):
        lab = self.lab
        report = self.doctor()
        self.assertEqual(report["conflicts"], [], report)
        doctor = lab.jitctl("doctor")
        self.assertEqual(doctor.returncode, 0, doctor.stdout + doctor.stderr)
        self.assertIn("no conflicting rules found", doctor.stdout)
        grant = lab.grant(CLIENT_A, duration="PT5M")
        self.assertNotIn("warnings", grant)
        granted = lab.jitctl("grant", "--port", "22", "--source", CLIENT_B, "--duration", "5m")
        self.assertEqual(granted.returncode, 0, granted.stderr)
        self.assertNotIn("warning", granted.stderr.lower())


if __name__ == "__main__":
    unittest.main()
