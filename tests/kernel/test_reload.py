"""Policy reload: by inotify on the policy directory, SIGHUP and POST /v1/policy/reload.

All or nothing: an invalid policy leaves the old one in force (audit "reload" "refused"); a valid
one is applied (audit "reload" "applied") and live grants follow it: a port no longer protected
revokes its grants, narrowed sources revoke the grants outside them, and a shorter maximum
moves a grant's end to start + the new maximum.
"""
import os
import re
import signal
import time
import unittest

from lab import CLIENT_A, CLIENT_B, CLIENT_C, DEFAULT_POLICY, SERVER4, LabTest, parse_utc, protected_pairs, sleep_until

WITH_8080 = DEFAULT_POLICY + """
  - number: 8080
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
"""

WITHOUT_3389 = """
ports:
  - number: 22
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
  - number: 53
    protocol: "*"
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
"""

NARROW_22 = """
ports:
  - number: 22
    protocol: tcp
    allowedSourceAddressPrefixes: ["10.77.0.2/32"]
    maxRequestAccessDuration: PT1H
  - number: 53
    protocol: "*"
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
"""

SHORT_22 = DEFAULT_POLICY.replace("""  - number: 22
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H""", """  - number: 22
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: 4s""")

# Two errors in one file: every one must be reported, each as file:line:col: message.
INVALID = """ports:
  - number: 99999
    protocol: tcp
    allowedSourceAddressPrefixes: ["10.0.0.0/33"]
    maxRequestAccessDuration: PT1H
"""


def protected(lab):
    return set(protected_pairs(lab.set_elements("protected")))


def grant_keys(lab):
    return {(str(e["first"]), str(e["last"]), e["protocol"], e["port"])
            for e in lab.grant_elements(4)}


def listed_ids(lab):
    status, listing = lab.api("GET", "/v1/grants")
    assert status == 200, listing
    return sorted(g["id"] for g in listing["grants"])


class Reload(LabTest):
    def reloads(self, outcome, trigger=""):
        return [l for l in self.lab.audit() if (l["event"], l["outcome"]) == ("reload", outcome)
                and l["reason"].startswith(trigger)]

    def wait_reload(self, outcome, count, trigger="", timeout=3.0):
        """Waits until the audit holds `count` reloads with `outcome` (and trigger)."""
        took = self.lab.wait_for(lambda: len(self.reloads(outcome, trigger)) >= count, timeout, 0.02)
        self.assertIsNotNone(took, f"no reload {outcome} ({trigger or 'any'}) within {timeout} s: "
                                   f"{self.lab.audit()}")
        return took

    def test_invalid_policy_keeps_the_old_policy(self):
        lab = self.lab
        lab.start_jitd()
        grant = lab.grant(CLIENT_A, duration="5m")
        ports_before = protected(lab)
        policy_before = lab.api("GET", "/v1/policy")[1]

        lab.write_policy(INVALID, name="20-bad.yaml")
        bad_file = os.path.join(lab.dir, "policies.d", "20-bad.yaml")
        time.sleep(1.0)
        self.assertEqual(protected(lab), ports_before)
        policy_after = lab.api("GET", "/v1/policy")[1]
        # The refusal is reported until the files are fixed; the policy itself is unchanged.
        self.assertTrue(any("20-bad.yaml" in e for e in policy_after.pop("source")["errors"]))
        policy_before.pop("source")
        self.assertEqual(policy_after, policy_before)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A), "grant lost by a refused reload")
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_B, timeout=0.5))
        self.assertEqual(listed_ids(lab), [grant["id"]])
        self.wait_reload("refused", 1, "policy directory changed")
        refused = self.reloads("refused", "policy directory changed")
        self.assertEqual(len(refused), 1, lab.audit())
        self.assertIn(f"{bad_file}:2:", refused[0]["reason"])
        self.assertEqual(self.reloads("applied"), [])

        status, reply = lab.api("POST", "/v1/policy/reload")
        self.assertEqual(status, 400, reply)
        self.assertEqual(reply["error"]["code"], "PolicyInvalid", reply)
        details = reply["error"]["details"]
        print(f"POST /v1/policy/reload: 400 {details}")
        self.assertEqual(len(details), 2, details)
        for detail in details:
            self.assertRegex(detail, rf"^{re.escape(bad_file)}:\d+:\d+: \S")
        self.assertTrue(details[0].startswith(f"{bad_file}:2:"), details)
        self.assertTrue(details[1].startswith(f"{bad_file}:4:"), details)
        self.assertIn(details[0], reply["error"]["message"])
        self.wait_reload("refused", 1, "API by root")

        lab.jitd.send_signal(signal.SIGHUP)
        self.wait_reload("refused", 1, "SIGHUP")
        self.assertEqual(protected(lab), ports_before)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))

        # Fixing the directory applies again; the grant was never touched.
        os.unlink(bad_file)
        self.wait_reload("applied", 1, "policy directory changed")
        self.assertEqual(protected(lab), ports_before)
        self.assertEqual(listed_ids(lab), [grant["id"]])
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))

    def test_added_port_is_protected_via_inotify(self):
        lab = self.lab
        lab.start_jitd()
        self.assertTrue(lab.connect(SERVER4, 8080, CLIENT_B), "8080 is not protected yet")
        written = time.monotonic()
        lab.write_policy(WITH_8080)
        took = lab.wait_for(lambda: not lab.connect(SERVER4, 8080, CLIENT_B, timeout=0.2),
                            timeout=3.0, interval=0.02)
        self.assertIsNotNone(took, f"8080 still open 3 s after the policy change: {lab.log()}")
        took = time.monotonic() - written
        print(f"8080 blocked {took * 1000:.0f} ms after the policy file was written")
        self.assertLess(took, 1.5)
        self.assertIn(("tcp", 8080), protected(lab))
        self.wait_reload("applied", 1, "policy directory changed")
        lab.grant(CLIENT_B, ports=((8080, "tcp"),), duration="1m")
        self.assertTrue(lab.connect(SERVER4, 8080, CLIENT_B))
        self.assertFalse(lab.connect(SERVER4, 8080, CLIENT_C, timeout=0.5))

    def test_directory_swapped_by_rename_is_still_watched(self):
        """Fleet tools may build a new policy directory and rename it into place."""
        lab = self.lab
        lab.start_jitd()
        policies = os.path.join(lab.dir, "policies.d")
        for round_number, (text, port_protected) in enumerate(((WITH_8080, True),
                                                               (DEFAULT_POLICY, False))):
            staged = os.path.join(lab.dir, f"policies.new{round_number}")
            os.mkdir(staged)
            with open(os.path.join(staged, "10-test.yaml"), "w") as f:
                f.write(text)
            os.rename(policies, os.path.join(lab.dir, f"policies.old{round_number}"))
            os.rename(staged, policies)
            took = lab.wait_for(lambda: (("tcp", 8080) in protected(lab)) == port_protected,
                                timeout=3.0, interval=0.02)
            self.assertIsNotNone(took, f"swap {round_number} not applied: {lab.log()}")

    def test_removed_port_and_narrowed_sources_revoke_grants(self):
        lab = self.lab
        lab.start_jitd()
        keep = lab.grant(CLIENT_A, duration="5m")
        on_3389 = [lab.grant(source, ports=((3389, "tcp"),), duration="5m")
                   for source in (CLIENT_A, CLIENT_C)]
        outside = lab.grant(CLIENT_C, duration="5m")
        self.assertEqual(len(grant_keys(lab)), 4)

        lab.write_policy(WITHOUT_3389)
        self.wait_reload("applied", 1, "policy directory changed")
        self.assertNotIn(("tcp", 3389), protected(lab))
        self.assertEqual(listed_ids(lab), sorted([keep["id"], outside["id"]]))
        self.assertEqual(grant_keys(lab),
                         {(CLIENT_A, CLIENT_A, "tcp", 22), (CLIENT_C, CLIENT_C, "tcp", 22)})
        revoked = {l["grantId"]: l for l in lab.audit() if l["event"] == "revoke"}
        for grant in on_3389:
            self.assertIn(grant["id"], revoked, lab.audit())
            self.assertEqual(revoked[grant["id"]]["outcome"], "revoked")
            self.assertIn("PolicyChanged", revoked[grant["id"]]["reason"])
        self.assertIn("grants revoked 2", self.reloads("applied")[-1]["reason"])
        # 3389 is not protected at all any more: anyone reaches it.
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_B))
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))

        # Port 22 now only for 10.77.0.2: the grant for 10.77.0.4 falls outside and is revoked.
        lab.write_policy(NARROW_22)
        self.wait_reload("applied", 2, "policy directory changed")
        self.assertEqual(listed_ids(lab), [keep["id"]])
        self.assertEqual(grant_keys(lab), {(CLIENT_A, CLIENT_A, "tcp", 22)})
        revoked = {l["grantId"]: l for l in lab.audit() if l["event"] == "revoke"}
        self.assertIn(outside["id"], revoked)
        self.assertIn("PolicyChanged", revoked[outside["id"]]["reason"])
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_C, timeout=0.5))
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        self.assertNotIn(keep["id"], revoked)

    def test_shortened_maximum_moves_the_end(self):
        lab = self.lab
        lab.start_jitd()
        grant = lab.grant(CLIENT_A, duration="1m")
        start = parse_utc(grant["startTimeUtc"])
        lab.write_policy(SHORT_22)
        self.wait_reload("applied", 1, "policy directory changed")
        (listed,) = lab.api("GET", "/v1/grants")[1]["grants"]
        self.assertEqual(listed["id"], grant["id"])
        self.assertEqual(listed["startTimeUtc"], grant["startTimeUtc"])
        end = parse_utc(listed["endTimeUtc"])
        self.assertAlmostEqual(end, start + 4, delta=0.002, msg=listed)
        self.assertIn("clamped 1", self.reloads("applied")[-1]["reason"])
        (element,) = lab.grant_elements(4)
        self.assertLessEqual(element["expires"], 4, element)
        sleep_until(end - 1.0)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.9), "closed before the new end")
        sleep_until(end + 1.0)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5), "open after the new end")
        self.assertEqual(lab.grant_set_elements(4), [])

    def test_sighup_and_api_reload(self):
        lab = self.lab
        # The policy file is a hard link to a file outside the watched directory (jitd refuses
        # symbolic links): writing through the outside name raises no directory event, so only
        # SIGHUP or the API can apply it.
        source = os.path.join(lab.dir, "policy-source.yaml")
        link = os.path.join(lab.dir, "policies.d", "10-test.yaml")
        with open(source, "w") as f:
            f.write(DEFAULT_POLICY)
        os.unlink(link)
        os.link(source, link)
        lab.start_jitd()
        with open(source, "w") as f:
            f.write(WITH_8080)
        time.sleep(0.6)
        self.assertNotIn(("tcp", 8080), protected(lab), "premise: no inotify event for the target")

        lab.jitd.send_signal(signal.SIGHUP)
        took = lab.wait_for(lambda: ("tcp", 8080) in protected(lab), timeout=2.0)
        self.assertIsNotNone(took, f"SIGHUP did not apply the policy: {lab.log()}")
        print(f"SIGHUP: 8080 protected after {took * 1000:.0f} ms")
        self.wait_reload("applied", 1, "SIGHUP")
        self.assertFalse(lab.connect(SERVER4, 8080, CLIENT_B, timeout=0.5))
        on_8080 = lab.grant(CLIENT_B, ports=((8080, "tcp"),), duration="5m")
        self.assertTrue(lab.connect(SERVER4, 8080, CLIENT_B))

        with open(source, "w") as f:
            f.write(DEFAULT_POLICY)
        status, reply = lab.api("POST", "/v1/policy/reload")
        self.assertEqual(status, 200, reply)
        self.assertEqual(reply, {"applied": True, "revoked": 1, "narrowed": 0, "clamped": 0})
        # Applied before the answer: the kernel already has the new policy.
        self.assertNotIn(("tcp", 8080), protected(lab))
        self.assertEqual(grant_keys(lab), set())
        self.assertEqual(listed_ids(lab), [])
        self.wait_reload("applied", 1, "API by root")
        revoked = [l for l in lab.audit()
                   if l["event"] == "revoke" and l.get("grantId") == on_8080["id"]]
        self.assertEqual(len(revoked), 1, lab.audit())
        self.assertIn("PolicyChanged", revoked[0]["reason"])

        status, reply = lab.api("POST", "/v1/policy/reload")
        self.assertEqual((status, reply),
                         (200, {"applied": True, "revoked": 0, "narrowed": 0, "clamped": 0}))


if __name__ == "__main__":
    unittest.main()
