"""Test 8: kill -9 leaves the port closed and an active grant still ends on time."""
import unittest

from lab import CLIENT_A, CLIENT_B, SERVER4, LabTest, parse_utc, sleep_until


class Crash(LabTest):
    def test_kill_9_keeps_enforcement(self):
        lab = self.lab
        lab.start_jitd()
        # Seconds of margin before the end: an emulated guest (tests/vm) is slow to connect.
        grant = lab.grant(CLIENT_A, duration="8s")
        lab.kill_jitd(9)
        self.assertTrue(lab.table_present())
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))
        end = parse_utc(grant["endTimeUtc"])
        sleep_until(end - 3.0)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A, timeout=2.0))
        sleep_until(end + 1.0)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        self.assertEqual(lab.grant_set_elements(4), [])

    def test_sigterm_leaves_table_in_force(self):
        lab = self.lab
        lab.start_jitd()
        lab.grant(CLIENT_A, duration="5m")
        lab.kill_jitd(15)
        self.assertEqual(lab.jitd.returncode, 0, lab.log())
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))


if __name__ == "__main__":
    unittest.main()
