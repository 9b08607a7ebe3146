"""Extend (issue 11): the requester (or an administrator) moves a grant's end; the kernel's
element really gets the new timeout, so access lasts past the original end and stops at the
new one. Beyond the rule's maximum (from the grant's start) is 400 DurationTooLong; another
requester is refused; every extension is audited."""
import json
import time
import unittest

from lab import (CLIENT_A, CLIENT_B, CLIENT_C, DEFAULT_POLICY, SERVER4, LabTest, parse_utc,
                 sleep_until, utc)

ROLES_POLICY = DEFAULT_POLICY + """
roles:
  requesters: {users: [nobody, bin]}
  administrators: {users: [sys]}
"""


def element_for(lab, address, port):
    (element,) = [e for e in lab.grant_elements(4)
                  if str(e["first"]) == address and e["port"] == port]
    return element


class ExtendTest(LabTest):
    def assert_element_ends(self, address, port, end):
        """The kernel's element for address/port expires at `end` (nft counts whole seconds)."""
        before = time.time()
        element = element_for(self.lab, address, port)
        after = time.time()
        self.assertIsNotNone(element["expires"], element)
        self.assertLessEqual(before + element["expires"], end + 0.5, element)
        self.assertGreaterEqual(after + element["expires"] + 1, end - 0.5, element)
        return element


class Extend(ExtendTest):
    def test_extend_moves_the_kernel_timeout(self):
        lab = self.lab
        lab.start_jitd()
        by_jitctl = lab.grant(CLIENT_A, duration="PT3S")
        by_api = lab.grant(CLIENT_B, duration="PT3S")
        until_api = lab.grant(CLIENT_C, ports=((3389, "tcp"),), duration="PT3S")
        ends = {g["id"]: parse_utc(g["endTimeUtc"]) for g in (by_jitctl, by_api, until_api)}

        extended = lab.jitctl("extend", by_jitctl["id"], "--by", "10s", "--json")
        self.assertEqual(extended.returncode, 0, extended.stderr)
        reply = json.loads(extended.stdout)
        self.assertEqual(reply["id"], by_jitctl["id"])
        self.assertEqual(reply["startTimeUtc"], by_jitctl["startTimeUtc"])
        self.assertAlmostEqual(parse_utc(reply["endTimeUtc"]), ends[by_jitctl["id"]] + 10, delta=0.01)
        self.assertEqual((reply["status"], reply["statusReason"]), ("Initiated", "UserRequested"))
        self.assertEqual(reply["ports"][0]["endTimeUtc"], reply["endTimeUtc"], reply)

        status, reply = lab.api("POST", f"/v1/grants/{by_api['id']}/extend", {"duration": "PT10S"})
        self.assertEqual(status, 200, reply)
        self.assertAlmostEqual(parse_utc(reply["endTimeUtc"]), ends[by_api["id"]] + 10, delta=0.01)
        new_end = utc(ends[until_api["id"]] + 10)
        status, reply = lab.api("POST", f"/v1/grants/{until_api['id']}/extend",
                                {"endTimeUtc": new_end})
        self.assertEqual(status, 200, reply)
        self.assertEqual(parse_utc(reply["endTimeUtc"]), parse_utc(new_end))
        new_ends = {key: value + 10 for key, value in ends.items()}

        for grant, address, port in ((by_jitctl, CLIENT_A, 22), (by_api, CLIENT_B, 22),
                                     (until_api, CLIENT_C, 3389)):
            element = self.assert_element_ends(address, port, new_ends[grant["id"]])
            if element["timeout"] is not None:
                # Re-added (delete + add) with the new timeout, not the original 3 s.
                self.assertGreater(element["timeout"], 5, element)
        status, listed = lab.api("GET", "/v1/grants")
        self.assertEqual({g["id"]: parse_utc(g["endTimeUtc"]) for g in listed["grants"]}, new_ends)

        sleep_until(max(ends.values()) + 1.0)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A), "closed at the original end")
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_B), "closed at the original end")
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_C), "closed at the original end")
        sleep_until(min(new_ends.values()) - 1.0)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.9))
        sleep_until(max(new_ends.values()) + 1.0)
        for address, port in ((CLIENT_A, 22), (CLIENT_B, 22), (CLIENT_C, 3389)):
            self.assertFalse(lab.connect(SERVER4, port, address, timeout=0.5),
                             f"{address} → {port} open after the new end")
        self.assertEqual(lab.grant_set_elements(4), [])

        extends = [line for line in lab.audit() if line["event"] == "extend"]
        self.assertEqual(sorted((l["grantId"], l["outcome"]) for l in extends),
                         sorted((g["id"], "extended") for g in (by_jitctl, by_api, until_api)),
                         extends)
        self.assertEqual({l["user"] for l in extends}, {"root"}, extends)
        # The history keeps the extended end, and that it expired.
        self.assertIsNotNone(lab.wait_for(
            lambda: len(lab.api("GET", "/v1/grants?state=ended")[1]["grants"]) == 3, timeout=3))
        for grant in (by_jitctl, by_api, until_api):
            status, shown = lab.api("GET", f"/v1/grants/{grant['id']}")
            self.assertEqual((status, shown["status"], shown["statusReason"]),
                             (200, "Revoked", "Expired"), shown)
            self.assertAlmostEqual(parse_utc(shown["endTimeUtc"]), new_ends[grant["id"]], delta=0.01)

    def test_extend_beyond_the_rule_maximum_is_refused(self):
        lab = self.lab
        lab.start_jitd()
        # Port 3389's maximum is 10m, counted from the grant's start.
        grant = lab.grant(CLIENT_A, ports=((3389, "tcp"),), duration="PT9M")
        before = lab.kernel_state()
        status, reply = lab.api("POST", f"/v1/grants/{grant['id']}/extend", {"duration": "PT2M"})
        self.assertEqual(status, 400, reply)
        self.assertEqual(reply["error"]["code"], "DurationTooLong", reply)
        self.assertIn("3389", reply["error"]["message"])
        self.assertIn("start", reply["error"]["message"], "names from when the maximum counts")
        status, reply = lab.api("POST", f"/v1/grants/{grant['id']}/extend",
                                {"endTimeUtc": utc(parse_utc(grant["startTimeUtc"]) + 11 * 60)})
        self.assertEqual((status, reply["error"]["code"]), (400, "DurationTooLong"), reply)
        refused = lab.jitctl("extend", grant["id"], "--by", "2h")
        self.assertNotEqual(refused.returncode, 0, refused.stdout)
        self.assertIn("maximum", refused.stderr)
        self.assertEqual(lab.kernel_state(), before, "a refused extension changed the kernel")
        status, shown = lab.api("GET", f"/v1/grants/{grant['id']}")
        self.assertEqual((status, shown["endTimeUtc"]), (200, grant["endTimeUtc"]), shown)
        # Up to the maximum is fine.
        status, reply = lab.api("POST", f"/v1/grants/{grant['id']}/extend", {"duration": "PT1M"})
        self.assertEqual(status, 200, reply)
        self.assert_element_ends(CLIENT_A, 3389, parse_utc(grant["endTimeUtc"]) + 60)
        refusals = [l for l in lab.audit() if l["event"] == "extend" and l["outcome"] == "refused"]
        self.assertEqual(len(refusals), 3, refusals)
        # Unknown and ended grants cannot be extended.
        status, reply = lab.api("POST", "/v1/grants/00000000deadbeef/extend", {"duration": "PT1M"})
        self.assertEqual(status, 404, reply)
        self.assertEqual(lab.api("DELETE", f"/v1/grants/{grant['id']}")[0], 200)
        status, reply = lab.api("POST", f"/v1/grants/{grant['id']}/extend", {"duration": "PT1M"})
        self.assertEqual(status, 404, reply)
        self.assertEqual(lab.grant_set_elements(4), [])


class ExtendOverlapAndRestart(ExtendTest):
    def test_extension_over_an_overlapping_grant_and_across_restarts(self):
        lab = self.lab
        lab.start_jitd()
        # A: two grants on one element; the shorter is extended past the longer.
        short = lab.grant(CLIENT_A, duration="PT3S")
        long = lab.grant(CLIENT_A, duration="PT8S")
        # B: extended, then jitd restarts (SIGTERM) and is killed (-9): the new end stays.
        restarted = lab.grant(CLIENT_B, duration="PT3S")
        status, reply = lab.api("POST", f"/v1/grants/{short['id']}/extend", {"duration": "PT12S"})
        self.assertEqual(status, 200, reply)
        a_end = parse_utc(short["endTimeUtc"]) + 12
        status, reply = lab.api("POST", f"/v1/grants/{restarted['id']}/extend", {"duration": "PT10S"})
        self.assertEqual(status, 200, reply)
        b_end = parse_utc(restarted["endTimeUtc"]) + 10
        self.assert_element_ends(CLIENT_A, 22, a_end)
        self.assert_element_ends(CLIENT_B, 22, b_end)
        lab.restart_jitd()
        self.assert_element_ends(CLIENT_A, 22, a_end)
        self.assert_element_ends(CLIENT_B, 22, b_end)
        lab.kill_jitd(9)
        lab.start_jitd()
        self.assert_element_ends(CLIENT_A, 22, a_end)
        self.assert_element_ends(CLIENT_B, 22, b_end)
        status, shown = lab.api("GET", f"/v1/grants/{restarted['id']}")
        self.assertEqual((status, parse_utc(shown["endTimeUtc"])), (200, b_end), shown)

        sleep_until(parse_utc(long["endTimeUtc"]) + 1.0)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A), "closed at the other grant's end")
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_B), "closed at the original end")
        sleep_until(b_end + 1.0)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5), "open after the new end")
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        # Revoking the extended grant leaves nothing (the other one has ended).
        self.assertEqual(lab.api("DELETE", f"/v1/grants/{short['id']}")[0], 200)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        self.assertEqual(lab.grant_set_elements(4), [])
        # A live grant revoked leaves the other grant's end on the element.
        first = lab.grant(CLIENT_C, duration="PT4M")
        second = lab.grant(CLIENT_C, duration="PT2M")
        status, reply = lab.api("POST", f"/v1/grants/{second['id']}/extend", {"duration": "PT5M"})
        self.assertEqual(status, 200, reply)
        self.assert_element_ends(CLIENT_C, 22, parse_utc(second["endTimeUtc"]) + 300)
        self.assertEqual(lab.api("DELETE", f"/v1/grants/{second['id']}")[0], 200)
        self.assert_element_ends(CLIENT_C, 22, parse_utc(first["endTimeUtc"]))
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_C))


class ExtendFromNow(ExtendTest):
    policy = DEFAULT_POLICY + """
  - number: 8080
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT10S
    extendFrom: now
"""

    def test_extend_from_now_counts_the_maximum_from_the_extension(self):
        lab = self.lab
        lab.start_jitd()
        grant = lab.grant(CLIENT_A, ports=((8080, "tcp"),), duration="PT8S")
        start = parse_utc(grant["startTimeUtc"])
        sleep_until(start + 4)
        # start + 13 s is past start + 10 s, but within 10 s from now.
        status, reply = lab.api("POST", f"/v1/grants/{grant['id']}/extend", {"duration": "PT5S"})
        self.assertEqual(status, 200, reply)
        new_end = start + 13
        self.assertAlmostEqual(parse_utc(reply["endTimeUtc"]), new_end, delta=0.01)
        self.assert_element_ends(CLIENT_A, 8080, new_end)
        status, reply = lab.api("POST", f"/v1/grants/{grant['id']}/extend", {"duration": "PT3S"})
        self.assertEqual(status, 400, reply)
        self.assertEqual(reply["error"]["code"], "DurationTooLong", reply)
        self.assertIn("extendFrom: now", reply["error"]["message"])
        sleep_until(start + 8 + 1.0)
        self.assertTrue(lab.connect(SERVER4, 8080, CLIENT_A), "closed at the original end")
        sleep_until(new_end - 1.0)
        self.assertTrue(lab.connect(SERVER4, 8080, CLIENT_A, timeout=0.9))
        sleep_until(new_end + 1.0)
        self.assertFalse(lab.connect(SERVER4, 8080, CLIENT_A, timeout=0.5), "open after the new end")


class ExtendRoles(ExtendTest):
    policy = ROLES_POLICY
    socket_group = "nogroup"

    def test_only_the_requester_or_an_administrator_extends(self):
        lab = self.lab
        lab.start_jitd()
        body = {"ports": [{"number": 22, "protocol": "tcp"}], "allowedSourceAddressPrefix": CLIENT_A,
                "duration": "PT5M", "justification": "extend roles"}
        status, grant = lab.api_as("nobody", "POST", "/v1/grants", body)
        self.assertEqual(status, 201, grant)
        end = parse_utc(grant["endTimeUtc"])
        before = lab.kernel_state()
        status, reply = lab.api_as("bin", "POST", f"/v1/grants/{grant['id']}/extend",
                                   {"duration": "PT1M"})
        self.assertEqual(status, 403, reply)
        self.assertEqual(reply["error"]["code"], "Forbidden", reply)
        self.assertEqual(lab.kernel_state(), before, "a refused extension changed the kernel")
        last = lab.audit()[-1]
        self.assertEqual((last["event"], last["user"], last["outcome"]), ("extend", "bin", "refused"),
                         last)
        refused = lab.jitctl("extend", grant["id"], "--by", "1m", as_user=("bin", "nogroup"))
        self.assertNotEqual(refused.returncode, 0, refused.stdout)
        self.assertEqual(lab.kernel_state(), before)

        status, reply = lab.api_as("nobody", "POST", f"/v1/grants/{grant['id']}/extend",
                                   {"duration": "PT1M"})
        self.assertEqual(status, 200, reply)
        self.assertAlmostEqual(parse_utc(reply["endTimeUtc"]), end + 60, delta=0.01)
        done = lab.jitctl("extend", grant["id"], "--by", "1m", as_user=("nobody", "nogroup"))
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("extended", done.stdout)
        status, reply = lab.api_as("sys", "POST", f"/v1/grants/{grant['id']}/extend",
                                   {"duration": "PT1M"})
        self.assertEqual(status, 200, reply)
        self.assertAlmostEqual(parse_utc(reply["endTimeUtc"]), end + 180, delta=0.01)
        self.assert_element_ends(CLIENT_A, 22, end + 180)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        extends = [(l["user"], l["outcome"]) for l in lab.audit() if l["event"] == "extend"]
        self.assertEqual(extends, [("bin", "refused"), ("bin", "refused"), ("nobody", "extended"),
                                   ("nobody", "extended"), ("sys", "extended")])


if __name__ == "__main__":
    unittest.main()
