"""One thread owns the engine: the daemon has exactly one thread while it serves requests,
and a client that stalls mid-request does not hold up anyone else."""
import os
import socket
import threading
import time
import unittest

from lab import CLIENT_A, CLIENT_B, SERVER4, LabTest


def threads_of(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


class EventLoop(LabTest):
    def test_one_thread_while_serving_requests(self):
        lab = self.lab
        lab.start_jitd()
        pid = lab.jitd.pid
        with open(f"/proc/{pid}/comm") as comm:
            self.assertEqual(comm.read().strip(), "jitd")  # `ip netns exec` exec'd it in place
        counts = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                counts.append(threads_of(pid))
                time.sleep(0.001)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            workers = [threading.Thread(target=lambda: [lab.api("GET", "/v1/grants")
                                                        for _ in range(50)])
                       for _ in range(4)]
            for worker in workers:
                worker.start()
            for source in (CLIENT_A, CLIENT_B):
                lab.grant(source, duration="1m")
            for worker in workers:
                worker.join()
        finally:
            stop.set()
            sampler.join()
        self.assertGreater(len(counts), 10)
        self.assertEqual(set(counts), {1}, "jitd ran more than one thread while serving")
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))

    def test_stalled_clients_do_not_hold_up_the_loop(self):
        lab = self.lab
        lab.start_jitd()
        stalled = []
        for partial in (b"", b"POST /v1/grants HTTP/1.1\r\nHost: jitd\r\n",
                        b"POST /v1/grants HTTP/1.1\r\nHost: jitd\r\nContent-Length: 4096\r\n\r\n{"):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(lab.socket)
            client.sendall(partial)
            stalled.append(client)
        self.addCleanup(lambda: [client.close() for client in stalled])
        started = time.monotonic()
        granted = lab.grant(CLIENT_A, duration="1m")
        status, listed = lab.api("GET", "/v1/grants")
        took = time.monotonic() - started
        print(f"grant + list with 3 stalled clients: {took * 1000:.1f} ms")
        self.assertEqual(status, 200)
        self.assertEqual([grant["id"] for grant in listed["grants"]], [granted["id"]])
        # libmicrohttpd reads without blocking: a stall would cost its 10 s connection timeout.
        self.assertLess(took, 2.0)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))

    def test_stalled_connection_is_closed_by_the_loops_timer(self):
        """libmicrohttpd's inactivity timeout (10 s) fires from the loop's timer: no I/O wakes
        the loop for a silent connection."""
        lab = self.lab
        lab.start_jitd()
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(client.close)
        client.connect(lab.socket)
        client.sendall(b"GET /v1/gra")
        started = time.monotonic()
        client.settimeout(20)
        self.assertEqual(client.recv(1024), b"", "jitd answered a request it never got whole")
        took = time.monotonic() - started
        print(f"stalled connection closed after {took:.2f} s")
        self.assertGreater(took, 9.0)
        self.assertLess(took, 12.0)


if __name__ == "__main__":
    unittest.main()
