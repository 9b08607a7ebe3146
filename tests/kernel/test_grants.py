"""Tests 2 and 3: a grant admits exactly its source, range, family and protocol."""
import unittest

from lab import CLIENT6, CLIENT_A, CLIENT_B, CLIENT_C, SERVER4, SERVER6, LabTest


class Grants(LabTest):
    def test_grant_admits_its_address_only(self):
        lab = self.lab
        lab.start_jitd()
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        grant = lab.grant(CLIENT_A)
        self.assertEqual(grant["ports"][0]["status"], "Initiated")
        self.assertEqual(grant["requestor"]["uid"], 0)
        elements = lab.grant_set_elements(4)
        self.assertEqual(len(elements), 1, elements)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_A, timeout=0.5))

    def test_cidr_grant_admits_addresses_inside(self):
        lab = self.lab
        lab.start_jitd()
        lab.grant("10.77.0.0/24", ports=((3389, "tcp"),))
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_B))
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_C))
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))

    def test_ipv6_grant(self):
        lab = self.lab
        lab.start_jitd()
        self.assertFalse(lab.connect(SERVER6, 22, CLIENT6, timeout=0.5))
        lab.grant(CLIENT6)
        self.assertEqual(len(lab.grant_set_elements(6)), 1)
        self.assertTrue(lab.connect(SERVER6, 22, CLIENT6))
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))

    def test_udp_grant_and_tcp_grant_opens_no_udp(self):
        lab = self.lab
        lab.start_jitd()
        self.assertFalse(lab.connect(SERVER4, 53, CLIENT_A, kind="udp", timeout=0.5))
        lab.grant(CLIENT_A, ports=((53, "tcp"),))
        self.assertTrue(lab.connect(SERVER4, 53, CLIENT_A, kind="tcp"))
        self.assertFalse(lab.connect(SERVER4, 53, CLIENT_A, kind="udp", timeout=0.5))
        lab.grant(CLIENT_A, ports=((53, "udp"),))
        self.assertTrue(lab.connect(SERVER4, 53, CLIENT_A, kind="udp"))
        self.assertFalse(lab.connect(SERVER4, 53, CLIENT_B, kind="udp", timeout=0.5))

    def test_jitctl_grant_list_revoke(self):
        lab = self.lab
        lab.start_jitd()
        granted = lab.jitctl("grant", "--port", "22", "--source", CLIENT_A, "--duration", "5m",
                             "--reason", "ticket 42", "--json")
        self.assertEqual(granted.returncode, 0, granted.stderr)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        listed = lab.jitctl("list")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertIn(CLIENT_A, listed.stdout)
        self.assertIn("ticket 42", listed.stdout)
        refused = lab.jitctl("grant", "--port", "22", "--source", CLIENT_A, "--duration", "2h")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("exceeds the maximum", refused.stderr)
        grant_id = __import__("json").loads(granted.stdout)["id"]
        revoked = lab.jitctl("revoke", grant_id)
        self.assertEqual(revoked.returncode, 0, revoked.stderr)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        audit = lab.audit()
        outcomes = [(line["event"], line["outcome"]) for line in audit]
        self.assertIn(("request", "granted"), outcomes)
        self.assertIn(("request", "refused"), outcomes)
        self.assertIn(("revoke", "revoked"), outcomes)
        granted_line = next(l for l in audit if l["outcome"] == "granted")
        self.assertEqual(granted_line["justification"], "ticket 42")
        self.assertEqual(granted_line["source"], CLIENT_A)


if __name__ == "__main__":
    unittest.main()
