"""jitd as systemd runs it: readiness, the watchdog, socket activation and the socket's life.

A socket jitd made is removed when it stops, so its presence says nothing about readiness;
READY=1 on NOTIFY_SOCKET does, and it comes only once the table is in the kernel and the
socket listens. Under socket activation the socket belongs to jitd.socket: jitd serves on the
descriptor systemd passed, never removes the file, and a request made while jitd restarts
waits in the socket's queue.
"""
import os
import signal
import socket
import stat
import subprocess
import threading
import time
import unittest

from lab import CLIENT_A, JITD, SERVER4, LabTest, UnixHTTPConnection


def listening_socket(path, mode=0o660):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, mode)
    listener.listen(16)
    return listener


class NotifyListener:
    """A NOTIFY_SOCKET like systemd's: records each datagram, and what the kernel held when
    READY=1 arrived."""

    def __init__(self, lab):
        self.lab = lab
        self.path = os.path.join(lab.dir, "notify.sock")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.socket.settimeout(0.2)
        self.messages = []
        self.at_ready = None
        self.done = False
        self.thread = threading.Thread(target=self._receive, daemon=True)
        self.thread.start()

    def _receive(self):
        while not self.done:
            try:
                message = self.socket.recv(4096).decode()
            except socket.timeout:
                continue
            self.messages.append((time.monotonic(), message))
            if "READY=1" in message.split("\n") and self.at_ready is None:
                # Frozen while it is looked at: nothing jitd does after READY=1 counts.
                os.kill(self.lab.jitd.pid, signal.SIGSTOP)
                try:
                    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    listening = probe.connect_ex(self.lab.socket) == 0
                    probe.close()
                    self.at_ready = {"table": self.lab.table_present(), "listening": listening}
                finally:
                    os.kill(self.lab.jitd.pid, signal.SIGCONT)

    def stop(self):
        self.done = True
        self.thread.join(timeout=2)
        self.socket.close()


class Service(LabTest):
    def test_sigterm_removes_the_socket_jitd_made(self):
        lab = self.lab
        lab.start_jitd()
        self.assertTrue(stat.S_ISSOCK(os.lstat(lab.socket).st_mode))
        lab.kill_jitd(15)
        self.assertEqual(lab.jitd.returncode, 0, lab.log())
        self.assertFalse(os.path.lexists(lab.socket), "socket left behind after SIGTERM")
        self.assertTrue(lab.table_present(), "the table must outlive the daemon")

    def test_a_second_jitd_on_the_same_socket_is_refused_while_the_first_serves(self):
        lab = self.lab
        lab.start_jitd()
        # Another state directory, so the journal's lock does not stop it first.
        with open(lab.config) as f:
            config = f.read().replace(f"stateDirectory: {lab.dir}/state",
                                      f"stateDirectory: {lab.dir}/state2")
        second_config = os.path.join(lab.dir, "second.yaml")
        with open(second_config, "w") as f:
            f.write(config)
        second = subprocess.run(["ip", "netns", "exec", lab.server_ns, JITD, "--config", second_config],
                                capture_output=True, text=True, timeout=20)
        self.assertNotEqual(second.returncode, 0)
        self.assertIn("is in use", second.stdout + second.stderr)
        self.assertEqual(lab.api("GET", "/v1/policy")[0], 200, "the first jitd lost its socket")
        lab.grant(CLIENT_A, duration="PT1M")
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))

    def test_socket_activation_keeps_the_socket_and_queues_requests_over_a_restart(self):
        lab = self.lab
        listener = listening_socket(lab.socket)
        self.addCleanup(listener.close)
        lab.start_jitd(activation=listener)
        self.assertIn("socket activation", lab.log())
        lab.grant(CLIENT_A, duration="PT1M")
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))

        lab.kill_jitd(15)
        self.assertEqual(lab.jitd.returncode, 0, lab.log())
        self.assertTrue(stat.S_ISSOCK(os.lstat(lab.socket).st_mode),
                        "jitd removed the socket jitd.socket owns")
        # Asked while no jitd runs: the connection waits in the socket's queue.
        waiting = UnixHTTPConnection(lab.socket, timeout=15)
        self.addCleanup(waiting.close)
        waiting.request("GET", "/v1/grants")
        lab.start_jitd(activation=listener)
        response = waiting.getresponse()
        self.assertEqual(response.status, 200)
        self.assertIn(CLIENT_A, response.read().decode())

    def test_activation_socket_at_another_path_is_served_and_the_mismatch_reported(self):
        # Protection first: refusing the socket would leave the ports open at boot.
        lab = self.lab
        other = os.path.join(lab.dir, "other.sock")
        listener = listening_socket(other)
        self.addCleanup(listener.close)
        configured = lab.socket
        lab.socket = other  # where start_jitd looks for the API
        lab.start_jitd(activation=listener)
        self.assertIn(f"listens on '{other}', but socketPath is {configured}", lab.log())
        self.assertTrue(lab.table_present())
        self.assertFalse(os.path.lexists(configured))
        lab.grant(CLIENT_A, duration="PT1M")
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))

    def test_ready_comes_after_the_table_and_the_watchdog_is_served(self):
        lab = self.lab
        notify = NotifyListener(lab)
        self.addCleanup(notify.stop)
        lab.start_jitd(env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "300000"})
        lab.wait_for(lambda: notify.at_ready is not None, timeout=5)
        self.assertEqual(notify.at_ready, {"table": True, "listening": True})
        time.sleep(1.2)
        pings = [t for t, m in notify.messages if "WATCHDOG=1" in m.split("\n")]
        self.assertGreaterEqual(len(pings), 4, notify.messages)  # every 150 ms or so
        lab.kill_jitd(15)
        lab.wait_for(lambda: any("STOPPING=1" in m for _, m in notify.messages), timeout=3)
        self.assertTrue(any("STOPPING=1" in m for _, m in notify.messages), notify.messages)


if __name__ == "__main__":
    unittest.main()
