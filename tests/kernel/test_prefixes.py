"""Issue 7: prefixes as the kernel matches them: v4-mapped sources are IPv4, and a port rule's
request width limit holds."""
import unittest

from lab import CLIENT_A, CLIENT_B, SERVER4, LabTest


class V4MappedSources(LabTest):
    def test_mapped_grant_admits_the_ipv4_client(self):
        # A dual-stack sshd shows an IPv4 client as ::ffff:a.b.c.d (jitctl's default source).
        lab = self.lab
        lab.start_jitd()
        grant = lab.grant("::ffff:" + CLIENT_A)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        self.assertEqual(grant["allowedSourceAddressPrefix"], CLIENT_A)
        self.assertEqual(len(lab.set_elements("grants4")), 1)
        self.assertEqual(lab.set_elements("grants6"), [])
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))


if __name__ == "__main__":
    unittest.main()
