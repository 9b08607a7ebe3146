"""Test 4: the kernel ends access on time: open 1 s before endTimeUtc, closed by 1 s after."""
import time
import unittest

from lab import CLIENT_A, SERVER4, LabTest, parse_utc, sleep_until


class Expiry(LabTest):
    def test_new_connections_fail_after_end_time(self):
        lab = self.lab
        lab.start_jitd()
        grant = lab.grant(CLIENT_A, duration="4s")
        end = parse_utc(grant["endTimeUtc"])
        self.assertAlmostEqual(end - time.time(), 4, delta=1)
        sleep_until(end - 1.0)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.9))
        sleep_until(end + 1.0)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        self.assertEqual(lab.grant_set_elements(4), [])
        time.sleep(1.5)  # the daemon records the expiry on its own
        self.assertEqual(lab.api("GET", "/v1/grants")[1]["grants"], [])
        self.assertIn(("expire", "expired"), [(l["event"], l["outcome"]) for l in lab.audit()])

    def test_end_time_utc_request(self):
        lab = self.lab
        lab.start_jitd()
        end_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 4))
        status, grant = lab.api("POST", "/v1/grants", {
            "ports": [{"number": 22, "protocol": "tcp"}], "allowedSourceAddressPrefix": CLIENT_A,
            "endTimeUtc": end_text, "justification": "end time"})
        self.assertEqual(status, 201, grant)
        self.assertEqual(grant["endTimeUtc"], end_text)
        end = parse_utc(end_text)
        sleep_until(end - 1.0)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.9))
        sleep_until(end + 1.0)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))


if __name__ == "__main__":
    unittest.main()
