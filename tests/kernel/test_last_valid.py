"""A policy broken by a bad push never leaves a rebooted host open.

After a reboot no table is in the kernel. If jitd refused to start on invalid files, the
protected ports would be open to everyone until someone fixed them. jitd keeps the last
policy it found valid in its state directory, starts with it, says so (log, audit,
GET /v1/policy, jitctl policy), and takes the files as soon as they are fixed. Only when no
valid policy was ever seen does it refuse to start. Removing jitd works whatever the files say.
"""
import os
import shutil
import subprocess
import unittest

from lab import CLIENT_A, CLIENT_B, JITD, SERVER4, LabTest

BROKEN = "ports:\n  - number: 70000\n    protocol: tcp\n"
ONLY_RDP = """
ports:
  - number: 3389
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
"""


class LastValid(LabTest):
    def reboot(self):
        """What a reboot does to jitd's kernel state: its enforcement is gone."""
        self.lab.kill_jitd(15)
        self.lab.wipe_enforcement()
        self.assertFalse(self.lab.table_present())

    def test_broken_files_at_boot_keep_the_last_valid_policy_in_force(self):
        lab = self.lab
        lab.start_jitd()
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        self.reboot()
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A), "the reboot left 22 closed")
        lab.write_policy(BROKEN)

        lab.start_jitd()
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5),
                         "22 open to everyone after a start with broken files")
        self.assertIn("enforcing the last valid policy", lab.log())
        status, policy = lab.api("GET", "/v1/policy")
        self.assertEqual(status, 200)
        self.assertEqual(policy["source"]["kind"], "lastValidCopy")
        self.assertIn("savedUtc", policy["source"])
        self.assertTrue(any("10-test.yaml:2:13" in e for e in policy["source"]["errors"]),
                        policy["source"])
        self.assertEqual({p["number"] for p in policy["ports"]}, {22, 3389, 53})
        audited = [e for e in lab.audit() if e["event"] == "policy"]
        self.assertEqual(audited[-1]["outcome"], "last-valid-copy")
        shown = lab.jitctl("policy")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertIn("WARNING: the policy files are invalid", shown.stdout)
        lab.grant(CLIENT_A, duration="PT1M")  # the copy serves requests too
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))

        lab.write_policy(ONLY_RDP)  # fixed: taken at once (inotify)
        self.assertTrue(lab.wait_for(
            lambda: lab.api("GET", "/v1/policy")[1]["source"]["kind"] == "files", timeout=5))
        status, policy = lab.api("GET", "/v1/policy")
        self.assertEqual({p["number"] for p in policy["ports"]}, {3389})
        self.assertEqual(policy["source"]["errors"], [])
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_B), "22 still protected after the fix")

        # The fixed files are now the last valid ones.
        self.reboot()
        lab.write_policy(BROKEN)
        lab.start_jitd()
        status, policy = lab.api("GET", "/v1/policy")
        self.assertEqual(policy["source"]["kind"], "lastValidCopy")
        self.assertEqual({p["number"] for p in policy["ports"]}, {3389})
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_B, timeout=0.5))
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_B))

    def test_refused_reload_is_reported_until_fixed_and_never_saved(self):
        lab = self.lab
        lab.start_jitd()
        lab.write_policy(BROKEN)
        self.assertTrue(lab.wait_for(
            lambda: lab.api("GET", "/v1/policy")[1]["source"]["errors"] != [], timeout=5))
        status, policy = lab.api("GET", "/v1/policy")
        self.assertEqual(policy["source"]["kind"], "files")
        self.assertIn("previous policy stays in force", lab.jitctl("policy").stdout)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        # A reboot now: the copy is the policy that was in force, not the refused files.
        self.reboot()
        lab.start_jitd()
        status, policy = lab.api("GET", "/v1/policy")
        self.assertEqual(policy["source"]["kind"], "lastValidCopy")
        self.assertEqual({p["number"] for p in policy["ports"]}, {22, 3389, 53})
        lab.write_policy(ONLY_RDP)
        self.assertTrue(lab.wait_for(
            lambda: lab.api("GET", "/v1/policy")[1]["source"] == {"kind": "files", "errors": []},
            timeout=5))
        self.assertNotIn("WARNING", lab.jitctl("policy").stdout)

    def test_missing_policy_directory_at_boot_serves_the_copy_and_finds_the_directory_again(self):
        lab = self.lab
        lab.start_jitd()
        self.reboot()
        policies = os.path.join(lab.dir, "policies.d")
        shutil.rmtree(policies)  # a fleet tool died between its two renames
        lab.start_jitd()
        self.assertEqual(lab.api("GET", "/v1/policy")[1]["source"]["kind"], "lastValidCopy")
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        lab.grant(CLIENT_A, duration="PT1M")
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        lab.write_policy(ONLY_RDP)  # the directory is back
        self.assertTrue(lab.wait_for(
            lambda: lab.api("GET", "/v1/policy")[1]["source"]["kind"] == "files", timeout=5))
        self.assertEqual({p["number"] for p in lab.api("GET", "/v1/policy")[1]["ports"]}, {3389})

    def test_no_valid_policy_ever_refuses_to_start_before_the_kernel_changes(self):
        lab = self.lab
        lab.write_policy(BROKEN)
        self.assertFalse(lab.start_jitd(may_exit=True))
        self.assertNotEqual(lab.jitd.returncode, 0)
        self.assertIn("no valid policy was ever seen here", lab.log())
        self.assertFalse(lab.table_present())

    def test_damaged_copy_refuses_to_start_and_says_why(self):
        lab = self.lab
        lab.start_jitd()
        self.reboot()
        with open(os.path.join(lab.dir, "state", "policy.last-valid.json"), "w") as f:
            f.write('{"format": 1, "files": ')
        lab.write_policy(BROKEN)
        self.assertFalse(lab.start_jitd(may_exit=True))
        self.assertIn("policy.last-valid.json is damaged", lab.log())
        self.assertFalse(lab.table_present())

    def test_uninstall_works_with_broken_files(self):
        lab = self.lab
        lab.start_jitd()
        lab.kill_jitd(15)
        lab.write_policy(BROKEN)
        removed = subprocess.run(["ip", "netns", "exec", lab.server_ns, JITD, "--config",
                                  lab.config, "--uninstall"], capture_output=True, text=True,
                                 timeout=20)
        self.assertEqual(removed.returncode, 0, removed.stdout + removed.stderr)
        self.assertFalse(lab.table_present())
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))


if __name__ == "__main__":
    unittest.main()
