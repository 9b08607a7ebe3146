"""The files jitd opens and creates: nothing but root may steer them, nothing is followed
through a link, nothing it did not create is changed, and every check that can fail is made
before the table is installed (a start that failed after it would leave the ports closed with
no API to open them)."""
import os
import stat
import subprocess
import tempfile
import unittest

from lab import JITD, LabTest

SECRET = "root:$6$secrethash:19000:0:99999:7:::\nalice:$6$another:19000:0:99999:7:::\n"


class Files(LabTest):
    def validate(self, *extra):
        return subprocess.run([JITD, "--config", self.lab.config, "--validate", *extra],
                              capture_output=True, text=True)

    def refused_start(self, expected):
        """jitd exits without installing its table, and says why."""
        self.assertFalse(self.lab.start_jitd(may_exit=True))
        self.assertNotEqual(self.lab.jitd.returncode, 0)
        self.assertIn(expected, self.lab.log())
        self.assertFalse(self.lab.table_present())

    def secret_file(self):
        path = os.path.join(self.lab.dir, "shadow")
        with open(path, "w") as f:
            f.write(SECRET)
        return path

    # --- issue 7 defect 8: socket path longer than sun_path ---
    def test_too_long_socket_path_fails_validate_and_start_before_install(self):
        directory = os.path.join(self.lab.dir, "d" * 100)
        self.lab.set_config("socketPath", os.path.join(directory, "jitd.sock"))
        result = self.validate()
        self.assertEqual(result.returncode, 1, result.stdout)
        self.assertIn("is longer than 107 bytes", result.stderr)
        self.refused_start("is longer than 107 bytes")

    # --- defect 4: only a stale socket is removed ---
    def test_regular_file_at_socket_path_is_kept(self):
        with open(self.lab.socket, "w") as f:
            f.write("someone's data\n")
        self.refused_start("exists and is a regular file, not a socket")
        with open(self.lab.socket) as f:
            self.assertEqual(f.read(), "someone's data\n")

    def test_socket_path_that_is_a_symlink_is_kept(self):
        target = self.secret_file()
        os.symlink(target, self.lab.socket)
        self.refused_start("exists and is a symbolic link, not a socket")
        self.assertTrue(os.path.islink(self.lab.socket))

    def test_socket_is_born_0660_and_a_stale_socket_is_replaced(self):
        self.lab.start_jitd()
        self.lab.kill_jitd()  # SIGKILL leaves the socket behind
        self.lab.start_jitd()
        self.assertEqual(stat.S_IMODE(os.lstat(self.lab.socket).st_mode), 0o660)

    # --- defect 3: no chmod of directories jitd did not create, no symlinked directories ---
    def test_existing_socket_directory_keeps_its_mode(self):
        directory = os.path.join(self.lab.dir, "run")
        os.mkdir(directory, 0o700)
        self.lab.set_config("socketPath", os.path.join(directory, "jitd.sock"))
        self.lab.start_jitd()
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)

    def test_world_writable_socket_directory_is_refused_untouched(self):
        directory = os.path.join(self.lab.dir, "tmp")
        os.mkdir(directory)
        os.chmod(directory, 0o1777)
        self.lab.set_config("socketPath", os.path.join(directory, "jitd.sock"))
        self.refused_start("mode 1777 lets others change it (g+w, o+w)")
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o1777)

    def test_symlinked_state_directory_is_refused_and_its_target_untouched(self):
        target = os.path.join(self.lab.dir, "elsewhere")
        os.mkdir(target, 0o711)
        os.symlink(target, os.path.join(self.lab.dir, "state"))
        self.refused_start("is a symbolic link")
        self.assertEqual(stat.S_IMODE(os.stat(target).st_mode), 0o711)
        self.assertEqual(os.listdir(target), [])

    def test_new_state_directory_is_0750(self):
        self.lab.start_jitd()
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.lab.dir, "state")).st_mode),
                         0o750)

    # --- defect 5: audit log not followed, state directory owner and mode checked ---
    def test_audit_log_symlink_is_refused(self):
        target = self.secret_file()
        os.mkdir(os.path.join(self.lab.dir, "state"), 0o750)
        os.symlink(target, os.path.join(self.lab.dir, "state", "audit.jsonl"))
        self.refused_start("is a symbolic link")
        with open(target) as f:
            self.assertEqual(f.read(), SECRET)

    def test_group_writable_state_directory_is_refused(self):
        state = os.path.join(self.lab.dir, "state")
        os.mkdir(state)
        os.chmod(state, 0o770)
        self.refused_start("mode 0770 lets others change it (g+w)")

    def test_state_directory_owned_by_another_user_is_refused(self):
        state = os.path.join(self.lab.dir, "state")
        os.mkdir(state, 0o750)
        os.chown(state, 65534, 65534)
        self.refused_start("owned by uid 65534, not root")

    # --- defect 2: a policy file that is a link is refused by name; nothing leaks ---
    def test_policy_symlink_is_refused_without_leaking_its_target(self):
        self.lab.start_jitd()
        os.symlink(self.secret_file(), os.path.join(self.lab.dir, "policies.d", "x.yaml"))
        status, body = self.lab.api("POST", "/v1/policy/reload")
        text = repr(body)
        self.assertIn("x.yaml: cannot open: is a symbolic link", text)
        self.assertNotIn("secrethash", text)
        audit = repr(self.lab.audit())
        self.assertIn("is a symbolic link", audit)
        self.assertNotIn("secrethash", audit)

    # --- defect 11: StrictModes for policy files and the directory; --validate --policy ---
    def test_world_writable_policy_file_is_not_applied(self):
        self.lab.start_jitd()
        before = self.lab.api("GET", "/v1/policy")[1]
        path = os.path.join(self.lab.dir, "policies.d", "20-open.yaml")
        with open(path, "w") as f:
            f.write("ports:\n  - number: 8080\n    protocol: tcp\n"
                    "    allowedSourceAddressPrefixes: ['*']\n    maxRequestAccessDuration: PT1H\n")
        os.chmod(path, 0o666)
        status, body = self.lab.api("POST", "/v1/policy/reload")
        self.assertIn(f"{path}: refused: mode 0666 lets others change it (g+w, o+w)", repr(body))
        after = self.lab.api("GET", "/v1/policy")[1]
        self.assertTrue(any("mode 0666" in e for e in after.pop("source")["errors"]))
        before.pop("source")
        self.assertEqual(after, before)

    def test_world_writable_policy_directory_is_refused(self):
        os.chmod(os.path.join(self.lab.dir, "policies.d"), 0o777)
        result = self.validate()
        self.assertEqual(result.returncode, 1)
        self.assertIn("refused policy directory: mode 0777 lets others change it (g+w, o+w)",
                      result.stderr)

    def test_validate_a_candidate_file_checks_its_own_mode(self):
        with tempfile.TemporaryDirectory() as scratch:
            os.chmod(scratch, 0o1777)  # like /tmp: the candidate's directory does not count
            candidate = os.path.join(scratch, "candidate.yaml")
            with open(candidate, "w") as f:
                f.write("ports:\n  - number: 22\n    protocol: tcp\n"
                        "    allowedSourceAddressPrefixes: ['*']\n"
                        "    maxRequestAccessDuration: PT1H\n")
            os.chmod(candidate, 0o644)
            result = self.validate("--policy", candidate)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn("1 port rules", result.stdout)
            os.chmod(candidate, 0o646)
            result = self.validate("--policy", candidate)
            self.assertEqual(result.returncode, 1)
            self.assertIn(f"{candidate}: refused: mode 0646 lets others change it (o+w)",
                          result.stderr)


if __name__ == "__main__":
    unittest.main()
