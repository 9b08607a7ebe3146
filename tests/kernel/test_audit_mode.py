"""mode: audit, the rollout without lock-out: a port in audit mode lets a client through that
enforcement would block, counts it (wouldDropPackets) and shows its source (wouldBlock), while
ports in enforce mode keep dropping; switching the policy to enforce (a reload like any other)
then blocks the same client. Read through the status API only, so it holds for either backend."""
import unittest

from lab import CLIENT_A, SERVER4, LabTest

AUDIT_POLICY = """
mode: audit                 # every rule without a mode of its own
ports:
  - number: 22
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
  - number: 3389
    protocol: tcp
    allowedSourceAddressPrefixes: ["10.77.0.0/24"]
    maxRequestAccessDuration: 10m
    mode: enforce
"""

ENFORCE_POLICY = AUDIT_POLICY.replace("mode: audit ", "mode: enforce")


class AuditMode(LabTest):
    policy = AUDIT_POLICY

    def status(self):
        status, reply = self.lab.api("GET", "/v1/status")
        self.assertEqual(status, 200, reply)
        self.assertEqual(reply["errors"], [], reply)
        return reply, {(p["number"], p["protocol"]): p for p in reply["ports"]}

    def modes(self):
        status, policy = self.lab.api("GET", "/v1/policy")
        self.assertEqual(status, 200, policy)
        return {(p["number"], p["protocol"]): p["mode"] for p in policy["ports"]}

    def test_audit_admits_and_counts_then_enforce_blocks(self):
        lab = self.lab
        lab.start_jitd()
        self.assertEqual(self.modes(), {(22, "tcp"): "audit", (3389, "tcp"): "enforce"})
        reply, ports = self.status()
        self.assertEqual(ports[(22, "tcp")]["mode"], "audit")
        self.assertEqual(ports[(22, "tcp")]["wouldDropPackets"], 0)
        self.assertEqual(reply["wouldBlock"], [])

        # No grant, yet through: audit mode accepts what enforcement would drop.
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        # The enforced port stays closed to the same client.
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_A, timeout=0.3))

        reply, ports = self.status()
        ssh, rdp = ports[(22, "tcp")], ports[(3389, "tcp")]
        # Only each connection's opening packet reaches the verdict; the rest are established.
        self.assertGreaterEqual(ssh["wouldDropPackets"], 2, ssh)
        self.assertEqual(ssh["droppedPackets"], 0, ssh)
        self.assertEqual(ssh["droppedConnections"], 0, ssh)
        self.assertEqual(rdp["wouldDropPackets"], 0, rdp)
        self.assertGreaterEqual(rdp["droppedConnections"], 1, rdp)
        self.assertEqual(reply["wouldBlockOmitted"], 0)
        self.assertEqual([(s["source"], s["port"], s["protocol"]) for s in reply["wouldBlock"]],
                         [(CLIENT_A, 22, "tcp")], reply["wouldBlock"])
        self.assertGreaterEqual(reply["wouldBlock"][0]["packets"], 2, reply["wouldBlock"])

        shown = lab.jitctl("status")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertIn("would have been blocked", shown.stdout)
        self.assertTrue(any(line.split()[:3] == [CLIENT_A, "22", "tcp"]
                            for line in shown.stdout.splitlines()), shown.stdout)

        # Enforce: a policy change like any other, here reloaded on the file's change (the
        # reload re-installs the ruleset, which restarts the counters: one reload only).
        lab.write_policy(ENFORCE_POLICY)
        enforced = {(22, "tcp"): "enforce", (3389, "tcp"): "enforce"}
        self.assertIsNotNone(lab.wait_for(lambda: self.modes() == enforced, 5.0, 0.05),
                             self.modes())
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.3))
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_A, timeout=0.3))
        reply, ports = self.status()
        ssh = ports[(22, "tcp")]
        self.assertEqual(ssh["mode"], "enforce")
        self.assertGreaterEqual(ssh["droppedConnections"], 1, ssh)

        # A grant still opens it.
        lab.grant(CLIENT_A)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))


if __name__ == "__main__":
    unittest.main()
