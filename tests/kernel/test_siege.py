"""One local user's flood of idle and slow-drip API connections locks no one else out (issue 7,
#6): jitd accepts every connection, keeps a few per uid and closes the rest at once, ends a
connection that drips a byte at a time at its deadline, and its memory stays bounded."""
import grp
import os
import resource
import socket
import time
import unittest

from lab import CLIENT_A, SERVER4, LabTest

IDLE, DRIP = 1000, 1000
DRIP_INTERVAL = 2.0
CONNECT_BUDGET = 5.0  # seconds the siege spends getting its connections in
DEADLINE = 15.0  # jitd's connection deadline (ServerLimits::connection_deadline)
SIEGE_USER, SIEGE_GROUP = 65534, "nogroup"  # nobody, in the socket's group


def siege(path, report):
    """In a forked child: opens IDLE silent and DRIP dripping connections as nobody, reports
    "<connected> <refused>" on `report`, then drips a byte on each every DRIP_INTERVAL s."""
    # Root may raise the hard limit; nobody could not, and 2000 sockets need more than 1024.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(hard, 4 * (IDLE + DRIP))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
    os.setgroups([])
    os.setgid(grp.getgrnam(SIEGE_GROUP).gr_gid)
    os.setuid(SIEGE_USER)
    connected, refused = [], 0
    give_up = time.monotonic() + CONNECT_BUDGET
    for _ in range(IDLE + DRIP):
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        while True:
            try:
                client.connect(path)
                connected.append(client)
                break
            except BlockingIOError:  # the listen queue is full: wait for jitd to take some
                if time.monotonic() > give_up:
                    refused += 1
                    client.close()
                    break
                time.sleep(0.001)
    os.write(report, f"{len(connected)} {refused}\n".encode())
    dripping = connected[1::2]  # every other one (IDLE == DRIP): jitd keeps a few of each
    request = b"POST /v1/grants HTTP/1.1\r\nHost: jitd\r\nX-Drip: " + b"a" * 100000
    for offset in range(len(request)):
        for client in dripping:
            try:
                client.send(request[offset:offset + 1])
            except OSError:
                pass  # closed by jitd
        time.sleep(DRIP_INTERVAL)


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        line = next(l for l in status if l.startswith("VmRSS:"))
    return int(line.split()[1])


def open_sockets(pid):
    fd_dir = f"/proc/{pid}/fd"
    count = 0
    for name in os.listdir(fd_dir):
        try:
            count += os.readlink(os.path.join(fd_dir, name)).startswith("socket:")
        except FileNotFoundError:
            pass
    return count


def max_open_files(pid):
    with open(f"/proc/{pid}/limits") as limits:
        line = next(l for l in limits if l.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return soft, hard


class Siege(LabTest):
    socket_group = SIEGE_GROUP

    def test_flood_by_one_user_does_not_lock_out_a_grant(self):
        lab = self.lab
        os.chmod(lab.dir, 0o755)  # let nobody reach the socket's directory
        # jitd starts with systemd's default soft limit, 1024, and is to raise it itself.
        limits = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, limits[0]), limits[1]))
        try:
            lab.start_jitd()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
        pid = lab.jitd.pid
        sockets_before, rss_before = open_sockets(pid), vm_rss_kib(pid)

        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:
            try:
                os.close(read_end)
                siege(lab.socket, write_end)
            finally:
                os._exit(0)
        os.close(write_end)
        self.addCleanup(lambda: (os.kill(child, 9), os.waitpid(child, 0)))
        with os.fdopen(read_end) as report:
            connected, refused = map(int, report.readline().split())
        time.sleep(DRIP_INTERVAL)  # a drip round: the flood is in and dripping

        started = time.monotonic()
        try:
            lab.grant(CLIENT_A, duration="5m")
            outcome = "granted"
        except OSError as error:
            outcome = f"failed: {error!r}"
        took = time.monotonic() - started
        rss, held = vm_rss_kib(pid), open_sockets(pid) - sockets_before
        print(f"siege by uid {SIEGE_USER}: {connected} connected, {refused} refused by the kernel; "
              f"jitd holds {held} of them; root's grant: {outcome} in {took * 1000:.0f} ms; "
              f"VmRSS {rss_before} KiB before, {rss} KiB under siege")
        self.assertEqual(outcome, "granted")
        self.assertLess(took, 2.0)
        self.assertLess(rss, 64 * 1024)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))

        # The dripping connections restart libmicrohttpd's inactivity timeout with every byte:
        # only jitd's deadline (from accept) closes them.
        closed_after = lab.wait_for(lambda: open_sockets(pid) <= sockets_before,
                                    timeout=DEADLINE + 3, interval=0.2)
        print(f"siege connections all closed {closed_after} s after the grant")
        self.assertIsNotNone(closed_after, f"{open_sockets(pid) - sockets_before} still open")
        soft, hard = max_open_files(pid)
        self.assertEqual(soft, hard, "jitd did not raise its open file limit")


if __name__ == "__main__":
    unittest.main()
