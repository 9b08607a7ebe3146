"""Test 7: revoke is immediate; overlapping grants are independent records."""
import unittest

from lab import CLIENT_A, CLIENT_B, SERVER4, LabTest, parse_utc, sleep_until


class Revoke(LabTest):
    def test_revoke_blocks_at_once(self):
        lab = self.lab
        lab.start_jitd()
        grant = lab.grant(CLIENT_A)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        status, revoked = lab.api("DELETE", f"/v1/grants/{grant['id']}")
        self.assertEqual(status, 200, revoked)
        self.assertEqual(revoked["ports"][0]["status"], "Revoked")
        self.assertEqual(revoked["ports"][0]["statusReason"], "UserRequested")
        self.assertEqual(lab.grant_set_elements(4), [])
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        self.assertEqual(lab.api("DELETE", f"/v1/grants/{grant['id']}")[0], 404)

    def test_nested_grants_with_different_ends(self):
        lab = self.lab
        lab.start_jitd()
        wide = lab.grant("10.77.0.0/24", ports=((3389, "tcp"),), duration="3s")
        narrow = lab.grant(CLIENT_A + "/32", ports=((3389, "tcp"),), duration="8m")
        self.assertNotEqual(wide["id"], narrow["id"])
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_A))
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_B))
        # The /24 ends first: A keeps access through its own grant, B loses it.
        sleep_until(parse_utc(wide["endTimeUtc"]) + 1.0)
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_A))
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_B, timeout=0.5))
        self.assertEqual(lab.api("DELETE", f"/v1/grants/{narrow['id']}")[0], 200)
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_A, timeout=0.5))

    def test_revoking_one_of_two_overlapping_grants_keeps_the_other(self):
        lab = self.lab
        lab.start_jitd()
        wide = lab.grant("10.77.0.0/24", ports=((3389, "tcp"),), duration="5m")
        narrow = lab.grant(CLIENT_A, ports=((3389, "tcp"),), duration="9m")
        self.assertEqual(lab.api("DELETE", f"/v1/grants/{narrow['id']}")[0], 200)
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_A))
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_B))
        narrow = lab.grant(CLIENT_A, ports=((3389, "tcp"),), duration="9m")
        self.assertEqual(lab.api("DELETE", f"/v1/grants/{wide['id']}")[0], 200)
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_A))
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_B, timeout=0.5))

    def test_second_grant_same_source_extends_to_later_end(self):
        lab = self.lab
        lab.start_jitd()
        short = lab.grant(CLIENT_A, duration="3s")
        long = lab.grant(CLIENT_A, duration="5m")
        self.assertNotEqual(short["id"], long["id"])
        sleep_until(parse_utc(short["endTimeUtc"]) + 1.0)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        # Revoking the later grant brings back the earlier end, which has passed.
        self.assertEqual(lab.api("DELETE", f"/v1/grants/{long['id']}")[0], 200)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        # And the other order: revoking the shorter one leaves the longer in force.
        first = lab.grant(CLIENT_A, duration="4m")
        lab.grant(CLIENT_A, duration="6m")
        self.assertEqual(lab.api("DELETE", f"/v1/grants/{first['id']}")[0], 200)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        elements = lab.grant_set_elements(4)
        self.assertEqual(len(elements), 1)
        self.assertGreater(elements[0]["elem"]["expires"], 300)


if __name__ == "__main__":
    unittest.main()
