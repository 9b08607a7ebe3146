"""Test 1: deny by default, and only for the protected ports."""
import unittest

from lab import CLIENT_A, SERVER4, SERVER6, LabTest, nftables_only, protected_pairs


class Blocking(LabTest):
    def test_protected_port_closed_until_granted_unprotected_open_loopback_works(self):
        lab = self.lab
        # Without jitd's table the same connections work: the listener is proven.
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        self.assertTrue(lab.connect(SERVER4, 8080, CLIENT_A))
        lab.start_jitd()
        self.assertTrue(lab.table_present())
        drops_before = lab.drop_count()
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_A, timeout=0.5))
        self.assertFalse(lab.connect(SERVER6, 22, timeout=0.5))
        self.assertGreater(lab.drop_count(), drops_before)
        # Unprotected port: untouched.
        self.assertTrue(lab.connect(SERVER4, 8080, CLIENT_A))
        self.assertTrue(lab.connect(SERVER6, 8080))
        # Loopback inside the server's namespace reaches the protected port.
        self.assertTrue(lab.connect("127.0.0.1", 22, from_server=True))
        self.assertTrue(lab.connect("::1", 22, from_server=True))
        self.assertTrue(lab.connect(SERVER4, 22, from_server=True))

    @nftables_only("the table's sets and chain")
    def test_ruleset_shape(self):
        lab = self.lab
        lab.start_jitd()
        protected = lab.set_elements("protected")
        keys = sorted(protected_pairs(protected))
        self.assertEqual(keys, [("tcp", 22), ("tcp", 53), ("tcp", 3389), ("udp", 53)])
        listing = lab.nft("list", "table", "inet", "jitd")["nftables"]
        sets = {i["set"]["name"]: i["set"] for i in listing if "set" in i}
        for family in (4, 6):
            # Single addresses in a hash set, wider ranges in an interval set.
            self.assertEqual(sets[f"grants{family}_single"]["flags"], ["timeout"])
            self.assertEqual(sorted(sets[f"grants{family}"]["flags"]), ["interval", "timeout"])
        # The base chain, and the regular chains it branches to for counting.
        chains = {i["chain"]["name"]: i["chain"] for i in listing if "chain" in i}
        self.assertEqual(sorted(chains), ["audit", "granted", "input"])
        self.assertEqual(chains["input"]["hook"], "input")
        self.assertEqual(chains["input"]["policy"], "accept")


if __name__ == "__main__":
    unittest.main()
