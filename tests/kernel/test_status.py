"""GET /v1/status and jitctl status: the backend in use, live grants, and packets dropped per
protected port, counted by the kernel (nftables: a counter per element of @protected; eBPF: the
per-port map) and moved by real blocked connections."""
import unittest

from lab import BACKEND, CLIENT_A, CLIENT_B, SERVER4, LabTest


def dropped(lab):
    status, reply = lab.api("GET", "/v1/status")
    lab.test.assertEqual(status, 200, reply)
    return reply, {(p["number"], p["protocol"]): p for p in reply["ports"]}


class Status(LabTest):
    def test_dropped_packets_per_port_and_live_grants(self):
        lab = self.lab
        lab.start_jitd()
        reply, ports = dropped(lab)
        self.assertEqual(reply["backend"], BACKEND)
        self.assertEqual(reply["errors"], [])
        self.assertEqual(reply["liveGrants"], 0)
        self.assertEqual(set(ports), {(22, "tcp"), (3389, "tcp"), (53, "tcp"), (53, "udp")})
        self.assertTrue(all(p["droppedPackets"] == 0 for p in ports.values()), ports)

        # Blocked SYNs (with their retransmissions) to 22 count on 22/tcp and nowhere else.
        for _ in range(3):
            self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.3))
        _, ports = dropped(lab)
        blocked = ports[(22, "tcp")]["droppedPackets"]
        self.assertGreaterEqual(blocked, 3, ports)
        self.assertTrue(all(p["droppedPackets"] == 0 for key, p in ports.items() if key != (22, "tcp")),
                        ports)
        self.assertFalse(lab.connect(SERVER4, 53, CLIENT_A, kind="udp", timeout=0.3))
        _, ports = dropped(lab)
        self.assertGreaterEqual(ports[(53, "udp")]["droppedPackets"], 1, ports)
        self.assertEqual(ports[(53, "tcp")]["droppedPackets"], 0, ports)

        # A granted connection passes and is not counted; the grant shows on its port.
        lab.grant(CLIENT_B)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_B))
        reply, ports = dropped(lab)
        self.assertEqual(reply["liveGrants"], 1)
        self.assertEqual(ports[(22, "tcp")]["liveGrants"], 1)
        self.assertEqual(ports[(3389, "tcp")]["liveGrants"], 0)
        self.assertEqual(ports[(22, "tcp")]["droppedPackets"], blocked)

        shown = lab.jitctl("status")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertIn(f"backend:     {BACKEND}", shown.stdout)
        row = next(line for line in shown.stdout.splitlines() if line.startswith("22 "))
        self.assertEqual(row.split()[:5], ["22", "tcp", "enforce", "1", str(blocked)])


if __name__ == "__main__":
    unittest.main()
