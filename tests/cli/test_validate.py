"""`jitd --validate`: the fleet's pre-deploy check. No root, no kernel."""
import os
import subprocess
import tempfile
import unittest

JITD = os.environ.get("JITD_BIN", "jitd")
PACKAGED_POLICY = os.path.join(os.path.dirname(__file__), "..", "..", "packaging", "policies.d",
                               "10-management.yaml")


class Validate(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.policies = os.path.join(self.dir.name, "policies.d")
        os.mkdir(self.policies)
        self.config = os.path.join(self.dir.name, "jitd.yaml")
        with open(self.config, "w") as f:
            f.write(f"policyDirectory: {self.policies}\nstateDirectory: {self.dir.name}/state\n")

    def validate(self, *extra):
        return subprocess.run([JITD, "--config", self.config, "--validate", *extra],
                              capture_output=True, text=True)

    def write(self, name, text):
        with open(os.path.join(self.policies, name), "w") as f:
            f.write(text)

    def test_packaged_policy_is_valid(self):
        with open(PACKAGED_POLICY) as f:
            self.write("10-management.yaml", f.read())
        result = self.validate()
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("4 port rules", result.stdout)
        self.assertEqual(result.stderr, "")

    def test_every_error_is_reported_with_file_line_column(self):
        self.write("10-a.yaml", "ports:\n"
                                "  - number: 70000\n"
                                "    protocol: tcp\n"
                                "    allowedSourceAddressPrefixes: [\"10.0.0.1/8\"]\n"
                                "    maxRequestAccessDuration: PT0S\n")
        self.write("20-b.yaml", "ports:\n  - number: 22\n    protocol: tcpx\n"
                                "    allowedSourceAddressPrefix: \"*\"\n"
                                "    maxRequestAccessDuration: 3h\n    extra: 1\n")
        result = self.validate()
        self.assertEqual(result.returncode, 1)
        lines = result.stderr.strip().splitlines()
        a = os.path.join(self.policies, "10-a.yaml")
        b = os.path.join(self.policies, "20-b.yaml")
        self.assertEqual([l.split(": ")[0] for l in lines],
                         [f"{a}:2:13", f"{a}:4:36", f"{a}:5:31", f"{b}:3:15", f"{b}:6:5"])
        self.assertIn("did you mean 10.0.0.0/8", lines[1])
        self.assertIn("unknown key 'extra'", lines[4])

    def test_yaml_syntax_error(self):
        self.write("10-a.yaml", "ports: [\n  - number: 22\n")
        result = self.validate()
        self.assertEqual(result.returncode, 1)
        self.assertTrue(result.stderr.startswith(os.path.join(self.policies, "10-a.yaml") + ":"),
                        result.stderr)

    def test_missing_named_config_file_is_an_error(self):
        result = subprocess.run([JITD, "--config", os.path.join(self.dir.name, "nope.yaml"),
                                 "--validate"], capture_output=True, text=True)
        self.assertEqual(result.returncode, 1)
        self.assertIn("does not exist", result.stderr)

    def test_bad_main_config(self):
        with open(self.config, "a") as f:
            f.write("socketPath: relative.sock\nbogus: 1\n")
        result = self.validate()
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"{self.config}:3:13:", result.stderr)
        self.assertIn(f"{self.config}:4:1:", result.stderr)

    def test_policy_that_is_not_utf8_is_refused_where_it_breaks(self):
        with open(os.path.join(self.policies, "10-a.yaml"), "wb") as f:
            f.write(b"# f\xfcr alle\nports: []\n")
        result = self.validate()
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"{self.policies}/10-a.yaml:1:4: not valid UTF-8 (byte 3)", result.stderr)

    # Ansible's `validate:` runs with the candidate in a temporary file while the copy it
    # replaces is still in the directory: checked alone or added naively, a changed file
    # would always collide with its own old copy.
    def candidate(self, text):
        path = os.path.join(self.dir.name, "candidate.tmp")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_candidate_replacing_its_old_copy_is_checked_with_the_other_files(self):
        self.write("10-a.yaml", RULE.format(port=22, duration="PT1H"))
        self.write("20-b.yaml", RULE.format(port=3389, duration="PT1H"))
        changed = self.candidate(RULE.format(port=22, duration="PT3H"))
        result = self.validate("--policy", changed, "--replaces", "10-a.yaml")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(f"is valid as {self.policies}/10-a.yaml: 2 port rules", result.stdout)

    def test_candidate_colliding_with_another_file_names_its_future_path(self):
        self.write("10-a.yaml", RULE.format(port=22, duration="PT1H"))
        self.write("20-b.yaml", RULE.format(port=3389, duration="PT1H"))
        clash = self.candidate(RULE.format(port=3389, duration="PT1H"))
        result = self.validate("--policy", clash, "--replaces", "10-a.yaml")
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"{self.policies}/20-b.yaml:2:", result.stderr)
        self.assertIn(f"overlaps the rule for 3389/tcp at {self.policies}/10-a.yaml:2:", result.stderr)
        new_file = self.validate("--policy", clash, "--replaces", "30-new.yaml")
        self.assertEqual(new_file.returncode, 1)
        self.assertIn(f"{self.policies}/30-new.yaml:2:", new_file.stderr)

    def test_candidate_errors_and_ignored_names(self):
        self.write("10-a.yaml", RULE.format(port=22, duration="PT1H"))
        broken = self.candidate("ports:\n  - number: 70000\n")
        result = self.validate("--policy", broken, "--replaces", "10-a.yaml")
        self.assertEqual(result.returncode, 1)
        self.assertIn(f"{self.policies}/10-a.yaml:2:13:", result.stderr)
        for name in ("10-a.conf", ".10-a.yaml", "sub/10-a.yaml"):
            ignored = self.validate("--policy", self.candidate(RULE.format(port=22, duration="PT1H")),
                                    "--replaces", name)
            self.assertEqual(ignored.returncode, 1, name)
            self.assertIn("would be ignored", ignored.stderr)


RULE = """ports:
  - number: {port}
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: {duration}
"""


if __name__ == "__main__":
    unittest.main()
