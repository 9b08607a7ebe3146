"""Scheduled start (issue 11): a request with startTimeUtc in the future is 202 Pending/Scheduled,
the port stays closed until the start, opens then (the element is added at that time) and closes
at the end. The journal keeps a scheduled grant over a restart (SIGTERM or kill -9) before its
start: it still opens on time."""
import math
import time
import unittest

from lab import CLIENT_A, CLIENT_B, SERVER4, Lab, LabTest, parse_utc, sleep_until, utc


def schedule(test, lab, source, start, seconds, port=22):
    status, grant = lab.api("POST", "/v1/grants", {
        "ports": [{"number": port, "protocol": "tcp"}], "allowedSourceAddressPrefix": source,
        "startTimeUtc": utc(start, digits=0), "duration": f"PT{seconds}S",
        "justification": "scheduled"})
    test.assertEqual(status, 202, grant)
    test.assertEqual((grant["status"], grant["statusReason"]), ("Pending", "Scheduled"), grant)
    test.assertEqual(parse_utc(grant["startTimeUtc"]), start, grant)
    test.assertEqual(parse_utc(grant["endTimeUtc"]), start + seconds, grant)
    for port_status in grant["ports"]:
        test.assertEqual((port_status["status"], port_status["statusReason"]), ("Pending", "Scheduled"),
                         grant)
    return grant


def whole_second(offset):
    """A whole UTC second at least `offset` seconds from now."""
    return float(math.ceil(time.time() + offset))


class Schedule(LabTest):
    def test_scheduled_grant_opens_at_its_start_and_closes_at_its_end(self):
        lab = self.lab
        lab.start_jitd()
        start = whole_second(3)
        grant = schedule(self, lab, CLIENT_A, start, 4)
        withdrawn = schedule(self, lab, CLIENT_B, start, 4)
        end = start + 4
        status, reply = lab.api("DELETE", f"/v1/grants/{withdrawn['id']}")
        self.assertEqual(status, 200, reply)
        self.assertEqual((reply["status"], reply["statusReason"]), ("Revoked", "UserRequested"), reply)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5), "open before the start")
        self.assertEqual(lab.grant_set_elements(4), [], "an element before the start")
        status, pending = lab.api("GET", "/v1/grants?state=pending")
        self.assertEqual((status, [g["id"] for g in pending["grants"]]), (200, [grant["id"]]), pending)
        self.assertEqual(lab.api("GET", "/v1/grants")[1]["grants"], [], "pending listed as active")
        status, shown = lab.api("GET", f"/v1/grants/{grant['id']}")
        self.assertEqual((status, shown["status"], shown["statusReason"]),
                         (200, "Pending", "Scheduled"), shown)
        # Only live grants are extended.
        status, reply = lab.api("POST", f"/v1/grants/{grant['id']}/extend", {"duration": "PT5S"})
        self.assertEqual(status, 404, reply)
        # At most 30 days ahead.
        status, reply = lab.api("POST", "/v1/grants", {
            "ports": [{"number": 22, "protocol": "tcp"}], "allowedSourceAddressPrefix": CLIENT_B,
            "startTimeUtc": utc(time.time() + 31 * 86400), "duration": "PT5M"})
        self.assertEqual(status, 400, reply)
        listed = lab.jitctl("list", "--pending")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertIn(grant["id"], listed.stdout)

        sleep_until(start - 1.0)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5), "open before the start")
        sleep_until(start + 1.0)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A), "closed after the start")
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5), "a withdrawn grant opened")
        status, shown = lab.api("GET", f"/v1/grants/{withdrawn['id']}")
        self.assertEqual((status, shown["status"], shown["statusReason"]),
                         (200, "Revoked", "UserRequested"), shown)
        status, active = lab.api("GET", "/v1/grants")
        self.assertEqual([(g["id"], g["status"]) for g in active["grants"]],
                         [(grant["id"], "Initiated")], active)
        (element,) = lab.grant_elements(4)
        self.assertLessEqual(time.time() + element["expires"], end + 0.5, element)
        sleep_until(end - 1.0)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.9), "closed before the end")
        sleep_until(end + 1.0)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5), "open after the end")
        self.assertEqual(lab.grant_set_elements(4), [])
        started = [l for l in lab.audit() if l.get("grantId") == grant["id"]]
        self.assertEqual([(l["event"], l["outcome"]) for l in started][:3],
                         [("request", "pending"), ("extend", "refused"), ("start", "granted")],
                         started)

    def test_scheduled_grant_survives_a_restart_before_its_start(self):
        # Two labs on one timeline: one restarted with SIGTERM, one killed with -9.
        labs = {15: self.lab, 9: Lab(self)}
        start = whole_second(4)
        grants = {}
        for signal_number, lab in labs.items():
            lab.start_jitd()
            grants[signal_number] = schedule(self, lab, CLIENT_A, start, 4)
        for signal_number, lab in labs.items():
            lab.kill_jitd(signal_number)
            lab.start_jitd()
        for signal_number, lab in labs.items():
            with self.subTest(signal=signal_number):
                status, pending = lab.api("GET", "/v1/grants?state=pending")
                self.assertEqual([(g["id"], g["statusReason"]) for g in pending["grants"]],
                                 [(grants[signal_number]["id"], "Scheduled")], pending)
                self.assertEqual(lab.grant_set_elements(4), [])
                self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        sleep_until(start + 1.0)
        for signal_number, lab in labs.items():
            with self.subTest(signal=signal_number):
                self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A), "closed after the start")
        sleep_until(start + 4 + 1.0)
        for signal_number, lab in labs.items():
            with self.subTest(signal=signal_number):
                self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5), "open after the end")

    def test_scheduled_grant_whose_start_passed_while_down_opens_at_start_of_jitd(self):
        lab = self.lab
        lab.start_jitd()
        start = whole_second(2)
        grant = schedule(self, lab, CLIENT_A, start, 20)
        lab.kill_jitd(15)
        sleep_until(start + 1.0)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5),
                         "open with jitd down (nothing added it)")
        lab.start_jitd()
        self.assertIsNotNone(lab.wait_for(lambda: lab.grant_set_elements(4) != [], timeout=2),
                             "not opened at jitd's start")
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        status, shown = lab.api("GET", f"/v1/grants/{grant['id']}")
        self.assertEqual((status, shown["status"], shown["endTimeUtc"]),
                         (200, "Initiated", grant["endTimeUtc"]), shown)
        (element,) = lab.grant_elements(4)
        self.assertLessEqual(time.time() + element["expires"], start + 20 + 0.5, element)


if __name__ == "__main__":
    unittest.main()
