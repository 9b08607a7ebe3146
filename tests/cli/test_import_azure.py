"""`jitctl import-azure`: Azure's just-in-time policies as jitd policy files, checked by the real
`jitd --validate`. No root, no kernel, no jitd running."""
import os
import subprocess
import tempfile
import unittest

JITCTL = os.environ.get("JITCTL_BIN", "jitctl")
JITD = os.environ.get("JITD_BIN", "jitd")
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unit", "golden", "azure")

# (input, --vm, expected YAML, port rules, warnings on stderr)
IMPORTS = [
    ("policy_get.json", None, "policy_get.yaml", 3, 2),
    ("policy_put.json", None, "policy_put.yaml", 1, 0),
    ("policy_list.json", "db02", "policy_list_db02.yaml", 2, 0),
    ("policy_list.json", "WEB01", "policy_list_web01.yaml", 1, 0),
    ("powershell.json", None, "powershell.yaml", 2, 0),
    ("powershell_get.json", None, "powershell_get.yaml", 2, 1),
]


class ImportAzure(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.policies = os.path.join(self.dir.name, "policies.d")
        os.mkdir(self.policies)
        self.config = os.path.join(self.dir.name, "jitd.yaml")
        with open(self.config, "w") as f:
            f.write(f"policyDirectory: {self.policies}\nstateDirectory: {self.dir.name}/state\n")

    def jitctl(self, *args, stdin=None):
        return subprocess.run([JITCTL, "import-azure", *args], capture_output=True, text=True,
                              input=stdin)

    def validate(self):
        return subprocess.run([JITD, "--config", self.config, "--validate"], capture_output=True,
                              text=True)

    def write(self, text):
        path = os.path.join(self.dir.name, "azure.json")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_golden_files_import_and_validate(self):
        for source, vm, expected, rules, warnings in IMPORTS:
            with self.subTest(source=source, vm=vm):
                out = os.path.join(self.policies, "10-azure.yaml")
                args = [os.path.join(GOLDEN, source), "-o", out] + (["--vm", vm] if vm else [])
                result = self.jitctl(*args)
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(result.stdout, "")
                self.assertEqual(result.stderr.count("jitctl: warning: "), warnings, result.stderr)
                with open(out) as f, open(os.path.join(GOLDEN, expected)) as g:
                    self.assertEqual(f.read(), g.read())
                checked = self.validate()
                self.assertEqual(checked.returncode, 0, checked.stderr)
                self.assertIn(f"{rules} port rule", checked.stdout)

    def test_stdout_and_stdin(self):
        with open(os.path.join(GOLDEN, "policy_put.json")) as f:
            result = self.jitctl("-", stdin=f.read())
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(os.path.join(GOLDEN, "policy_put.yaml")) as g:
            self.assertEqual(result.stdout, g.read())

    def test_output_replaces_an_existing_file(self):
        out = os.path.join(self.policies, "10-azure.yaml")
        with open(out, "w") as f:
            f.write("ports: []\n")
        result = self.jitctl(os.path.join(GOLDEN, "policy_put.json"), "-o", out)
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(out) as f:
            self.assertIn("number: 22", f.read())
        self.assertEqual(os.listdir(self.policies), ["10-azure.yaml"])  # no temporary left

    def test_several_vms_need_a_choice(self):
        result = self.jitctl(os.path.join(GOLDEN, "policy_list.json"))
        self.assertEqual(result.returncode, 1)
        self.assertIn("the file holds 2 virtual machines (web01, DB02)", result.stderr)
        self.assertIn("--vm NAME", result.stderr)
        result = self.jitctl(os.path.join(GOLDEN, "policy_list.json"), "--vm", "web03")
        self.assertEqual(result.returncode, 1)
        self.assertIn("no virtual machine named 'web03'", result.stderr)

    def test_errors_write_nothing(self):
        out = os.path.join(self.policies, "10-azure.yaml")
        vm = ('{"id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/'
              'virtualMachines/web01", "ports": [%s]}')
        cases = [
            (vm % '{"number": 22, "protocol": "ICMP", "allowedSourceAddressPrefix": "*",'
                  ' "maxRequestAccessDuration": "PT3H"}',
             "ports[0].protocol: 'ICMP' is not a protocol jitd protects"),
            (vm % '{"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "*",'
                  ' "maxRequestAccessDuration": "PT25H"}',
             "ports[0].maxRequestAccessDuration: 'PT25H' is longer than PT24H"),
            (vm % '{"number": 22, "protocol": "TCP", "allowedSourceAddressPrefix": "10.0.0.1/8",'
                  ' "maxRequestAccessDuration": "PT3H"}',
             "did you mean 10.0.0.0/8"),
            ("{\"value\": 3}", "value: must be an array, not number"),
            ("not json", "file: not valid JSON"),
        ]
        for text, message in cases:
            with self.subTest(message=message):
                path = self.write(text)
                result = self.jitctl(path, "-o", out)
                self.assertEqual(result.returncode, 1)
                self.assertEqual(result.stdout, "")
                self.assertTrue(result.stderr.startswith(f"jitctl: {path}: "), result.stderr)
                self.assertIn(message, result.stderr)
                self.assertFalse(os.path.exists(out))

    def test_missing_file(self):
        result = self.jitctl(os.path.join(self.dir.name, "nope.json"))
        self.assertEqual(result.returncode, 1)
        self.assertIn("nope.json: cannot open: No such file or directory", result.stderr)


if __name__ == "__main__":
    unittest.main()
