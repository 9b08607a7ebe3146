"""`jitd --uninstall`: removing the table is an explicit, audited act, refused while jitd runs."""
import unittest

from lab import CLIENT_A, CLIENT_B, JITD, SERVER4, LabTest


class Uninstall(LabTest):
    def uninstall(self):
        return self.lab.ns(self.lab.server_ns, JITD, "--config", self.lab.config, "--uninstall",
                           check=False)

    def test_refused_while_running_then_removes_table_and_is_audited(self):
        lab = self.lab
        lab.start_jitd()
        lab.grant(CLIENT_A, duration="5m")
        running = self.uninstall()
        if "owned by jitd and persistent" in lab.log():
            # Linux 6.9+: the owned table cannot be removed by another process.
            self.assertNotEqual(running.returncode, 0)
            self.assertIn("another process owns table inet jitd", running.stderr + running.stdout)
        else:
            # Without ownership the running jitd sees a foreign delete and restores the table.
            self.assertIsNotNone(lab.wait_for(lab.table_present, timeout=2.0))
        self.assertTrue(lab.table_present())
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))
        lab.kill_jitd(15)
        removed = self.uninstall()
        self.assertEqual(removed.returncode, 0, removed.stderr + removed.stdout)
        self.assertFalse(lab.table_present())
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_B))  # protection is gone, on purpose
        self.assertIn(("uninstall", "ok"), [(l["event"], l["outcome"]) for l in lab.audit()])
        again = self.uninstall()
        self.assertEqual(again.returncode, 0, again.stderr)
        # The journal still holds the live grant: the next start brings back protection and it.
        lab.start_jitd()
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))


if __name__ == "__main__":
    unittest.main()
