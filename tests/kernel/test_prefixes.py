"""Issue 7: prefixes as the kernel matches them: v4-mapped sources are IPv4, and a port rule's
request width limit holds."""
import unittest

from lab import CLIENT_A, CLIENT_B, CLIENT_C, DEFAULT_POLICY, SERVER4, LabTest

WIDTH_LIMITED = DEFAULT_POLICY.replace(
    "    maxRequestAccessDuration: PT1H\n",
    "    maxRequestAccessDuration: PT1H\n"
    "    minRequestPrefixLengthV4: 24\n"
    "    minRequestPrefixLengthV6: 56\n", 1)


class V4MappedSources(LabTest):
    def test_mapped_grant_admits_the_ipv4_client(self):
        # A dual-stack sshd shows an IPv4 client as ::ffff:a.b.c.d (jitctl's default source).
        lab = self.lab
        lab.start_jitd()
        grant = lab.grant("::ffff:" + CLIENT_A)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        self.assertEqual(grant["allowedSourceAddressPrefix"], CLIENT_A)
        self.assertEqual(len(lab.set_elements("grants4_single")), 1)
        self.assertEqual(lab.grant_set_elements(6), [])
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))


class SingleAndRangeTogether(LabTest):
    def test_single_in_the_hash_set_and_range_in_the_interval_set_both_admit(self):
        # A /30 for 10 minutes and its last address for an hour: the kernel holds the range
        # 10.77.0.0-10.77.0.2 in grants4 (interval) and 10.77.0.3 in grants4_single (hash).
        lab = self.lab
        lab.start_jitd()
        network = lab.grant("10.77.0.0/30", duration="PT10M")
        lab.grant(CLIENT_B, duration="PT1H")
        ranges = lab.grant_elements(4)
        self.assertEqual(sorted((str(e["first"]), str(e["last"])) for e in ranges),
                         [("10.77.0.0", "10.77.0.2"), (CLIENT_B, CLIENT_B)], ranges)
        self.assertEqual(len(lab.set_elements("grants4_single")), 1)
        self.assertEqual(len(lab.set_elements("grants4")), 1)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))  # in the range
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_B))  # the single address
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_C, timeout=0.5))
        # Revoking the /30 removes the range; the single address stays open.
        self.assertEqual(lab.api("DELETE", f"/v1/grants/{network['id']}")[0], 200)
        self.assertEqual(lab.set_elements("grants4"), [])
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_B))


class RequestWidthLimit(LabTest):
    policy = WIDTH_LIMITED

    def test_everyone_is_refused_a_24_is_granted(self):
        lab = self.lab
        lab.start_jitd()
        body = {"ports": [{"number": 22, "protocol": "tcp"}],
                "allowedSourceAddressPrefix": "0.0.0.0/0", "duration": "PT1M"}
        status, reply = lab.api("POST", "/v1/grants", body)
        self.assertEqual(status, 403, reply)
        self.assertIn("wider than port 22/tcp", reply["error"]["message"])
        self.assertIn("/24 or longer", reply["error"]["message"])
        self.assertEqual(lab.grant_set_elements(4), [])
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        lab.grant("10.77.0.0/24")
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        # 53 has no limit: Azure's "Any" still works there.
        lab.grant("0.0.0.0/0", ports=((53, "udp"),))


if __name__ == "__main__":
    unittest.main()
