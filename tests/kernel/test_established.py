"""Tests 5 and 6: established sessions survive a grant's end and jitd's start."""
import time
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
        self.assertEqual(lab.grant_set_elements(4), [])
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

    def test_session_the_table_cut_off_stays_cut_across_a_restart(self):
        """Adoption is for sessions that predate the table. Once the table exists, an
        established socket without a conntrack entry is one the table is dropping; a restart
        must not revive it."""
        lab = self.lab
        lab.start_jitd()
        grant = lab.grant(CLIENT_A, duration="1m")
        held = lab.hold(SERVER4, 22, CLIENT_A)
        self.assertTrue(held.connected)
        self.assertEqual(held.send("during"), "during")
        status, _ = lab.api("DELETE", f"/v1/grants/{grant['id']}")
        self.assertEqual(status, 200)
        self.assertEqual(held.send("after revoke"), "after revoke")  # conntrack keeps it
        # Once the server's last ACK is out (a packet from the server would let conntrack pick
        # the flow up again from its own side), the entry goes: the table now drops it.
        time.sleep(0.5)
        lab.ns(lab.server_ns, "conntrack", "-F")
        lab.restart_jitd()
        self.assertIn("not adopting", lab.log())
        self.assertTrue(held.send("after restart").startswith("ERROR"),
                        "a session the table had cut off was revived by jitd's restart")


if __name__ == "__main__":
    unittest.main()
