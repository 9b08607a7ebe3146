"""The kernel's counters per protected port, as GET /v1/status shows them, moved by real TCP
connections between the lab's namespaces: blocked attempts count as dropped packets and dropped
connections on their port only; a connection a grant admits counts as an admitted connection
on its port; the permanent allow-list's connections are not grant accesses and are not counted.
Numbers come from the status API only, so the test holds for either backend."""
import unittest

from lab import CLIENT_A, CLIENT_B, CLIENT_C, DEFAULT_POLICY, SERVER4, LabTest

COUNTERS = ("droppedPackets", "droppedConnections", "admittedConnections", "wouldDropPackets")


def port_counters(lab):
    status, reply = lab.api("GET", "/v1/status")
    lab.test.assertEqual(status, 200, reply)
    lab.test.assertEqual(reply["errors"], [], reply)
    return {(p["number"], p["protocol"]): p for p in reply["ports"]}


class OperatorCounters(LabTest):
    # CLIENT_C always passes to 22: an allow-list connection, not a grant access.
    policy = DEFAULT_POLICY + """
permanentAllowList:
  - sourceAddressPrefix: 10.77.0.4
    ports:
      - number: 22
        protocol: tcp
"""

    def test_blocked_and_admitted_connections_count_on_their_port_only(self):
        lab = self.lab
        lab.start_jitd()
        ports = port_counters(lab)
        for key, port in ports.items():
            self.assertEqual(port["mode"], "enforce", port)
            for name in COUNTERS:
                self.assertEqual(port[name], 0, (key, port))

        # Each blocked attempt opens a connection (its SYN is conntrack-new); within 0.3 s no
        # SYN is retransmitted (the first retransmission waits a second), so one packet each.
        attempts = 3
        for _ in range(attempts):
            self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.3))
        ports = port_counters(lab)
        ssh = ports[(22, "tcp")]
        self.assertGreaterEqual(ssh["droppedConnections"], attempts, ssh)
        self.assertGreaterEqual(ssh["droppedPackets"], ssh["droppedConnections"], ssh)
        self.assertEqual(ssh["admittedConnections"], 0, ssh)
        self.assertEqual(ssh["wouldDropPackets"], 0, ssh)
        for key, port in ports.items():
            if key != (22, "tcp"):
                for name in COUNTERS:
                    self.assertEqual(port[name], 0, (key, port))
        dropped = ssh["droppedConnections"]

        # The allow-list passes and counts nowhere.
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_C))
        ssh = port_counters(lab)[(22, "tcp")]
        self.assertEqual(ssh["admittedConnections"], 0, ssh)
        self.assertEqual(ssh["droppedConnections"], dropped, ssh)

        # Each connection a grant admits counts once, however many packets it carries; on the
        # granted port only.
        lab.grant(CLIENT_B, ports=((22, "tcp"), (3389, "tcp")))
        for _ in range(2):
            self.assertTrue(lab.connect(SERVER4, 22, CLIENT_B))
        ports = port_counters(lab)
        ssh = ports[(22, "tcp")]
        self.assertEqual(ssh["admittedConnections"], 2, ssh)
        self.assertEqual(ssh["droppedConnections"], dropped, ssh)
        self.assertEqual(ports[(3389, "tcp")]["admittedConnections"], 0, ports)

        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_B))
        rdp = port_counters(lab)[(3389, "tcp")]
        self.assertEqual(rdp["admittedConnections"], 1, rdp)
        self.assertEqual(rdp["droppedConnections"], 0, rdp)

        # The ungranted client is still refused, and counted again.
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_A, timeout=0.3))
        rdp = port_counters(lab)[(3389, "tcp")]
        self.assertGreaterEqual(rdp["droppedConnections"], 1, rdp)

        shown = lab.jitctl("status")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertIn("DROPPED CONNS", shown.stdout)
        row = next(line for line in shown.stdout.splitlines() if line.startswith("22 "))
        ssh = port_counters(lab)[(22, "tcp")]
        self.assertEqual(row.split()[:8],
                         ["22", "tcp", "enforce", "1", str(ssh["droppedPackets"]),
                          str(ssh["droppedConnections"]), "2", "0"])


if __name__ == "__main__":
    unittest.main()
