"""The caller is who the kernel says (SO_PEERCRED): the socket group may act, others cannot connect."""
import os
import unittest

from lab import CLIENT_A, SERVER4, LabTest


class Identity(LabTest):
    socket_group = "nogroup"

    def test_group_member_may_grant_and_is_recorded(self):
        lab = self.lab
        os.chmod(lab.dir, 0o755)  # let an unprivileged user reach the socket's directory
        lab.start_jitd()
        socket_mode = os.stat(lab.socket).st_mode & 0o777
        self.assertEqual(socket_mode, 0o660)
        granted = lab.jitctl("grant", "--port", "22", "--source", CLIENT_A, "--duration", "5m",
                             "--json", as_user=("nobody", "nogroup"))
        self.assertEqual(granted.returncode, 0, granted.stderr)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        line = next(l for l in lab.audit() if l["outcome"] == "granted")
        self.assertEqual(line["user"], "nobody")
        self.assertEqual(line["uid"], 65534)

    def test_outsider_cannot_reach_the_socket(self):
        lab = self.lab
        os.chmod(lab.dir, 0o755)
        lab.start_jitd()
        refused = lab.jitctl("grant", "--port", "22", "--source", CLIENT_A, "--duration", "5m",
                             as_user=("nobody", "nobody" if _group_exists("nobody") else "daemon"))
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("cannot reach jitd", refused.stderr)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))

    def test_ssh_session_source_default(self):
        lab = self.lab
        lab.start_jitd()
        granted = lab.jitctl("grant", "--port", "22", "--duration", "5m", "--json",
                             env={"SSH_CONNECTION": f"{CLIENT_A} 50022 {SERVER4} 22"})
        self.assertEqual(granted.returncode, 0, granted.stderr)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        outside_ssh = lab.jitctl("grant", "--port", "22", "--duration", "5m", env={"SSH_CONNECTION": ""})
        self.assertNotEqual(outside_ssh.returncode, 0)
        self.assertIn("--source", outside_ssh.stderr)


def _group_exists(name):
    import grp
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


if __name__ == "__main__":
    unittest.main()
