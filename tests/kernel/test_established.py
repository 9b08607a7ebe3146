"""Tests 5 and 6: established sessions survive a grant's end and jitd's start."""
import unittest

from lab import CLIENT_A, CLIENT_B, SERVER4, LabTest, parse_utc, sleep_until


class Established(LabTest):
    def test_connection_outlives_its_grant(self):
        lab = self.lab
        lab.start_jitd()
        grant = lab.grant(CLIENT_A, duration="3s")
        held = lab.hold(SERVER4, 22, CLIENT_A)
        self.assertTrue(held.connected)
        self.assertEqual(held.send("during"), "during")
        sleep_until(parse_utc(grant["endTimeUtc"]) + 1.0)
        self.assertEqual(lab.set_elements("grants4"), [])
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        self.assertEqual(held.send("after expiry"), "after expiry")

    def test_session_from_before_jitd_survives_its_start(self):
        lab = self.lab
        held = lab.hold(SERVER4, 22, CLIENT_B)
        self.assertTrue(held.connected)
        self.assertEqual(held.send("before"), "before")
        lab.start_jitd()
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))
        self.assertEqual(held.send("after start"), "after start")
        self.assertEqual(held.send("still"), "still")


if __name__ == "__main__":
    unittest.main()
