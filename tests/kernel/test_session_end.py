"""Issue 11: a port rule with terminateSessionsOnEnd ends the grant's live sessions when the
grant ends (revoke, expiry, or an end that passed while jitd was down): no payload passes in
either direction later than 1 s after the end. Sessions on a port without the key, and sessions
still covered by another live grant, keep passing data.

The sessions are real TCP connections between the client namespace and a server in the server
namespace whose both ends the test drives (lifecycle_support): a line sent each way every 0.1 s
shows when data stopped passing in each direction."""
import time
import unittest

from lab import CLIENT_A, SERVER4, Lab, LabTest, parse_utc, sleep_until
from lifecycle_support import Sessions, watch

POLICY = """
ports:
  - number: 22
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
    terminateSessionsOnEnd: true
  - number: 3389
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
"""

CUT_WITHIN = 1.0  # seconds after the end, issue 11


class SessionEnd(LabTest):
    def setUp(self):
        # The lab's echo server stays off 22 and 3389: the session server holds them.
        self.lab = Lab(self, POLICY, tcp_ports=(53, 8080))
        self.lab.start_jitd()
        self.sessions = Sessions(self.lab, (22, 3389))

    def open_both(self, source=CLIENT_A):
        ssh = self.sessions.open(SERVER4, 22, source)
        rdp = self.sessions.open(SERVER4, 3389, source)
        for session in (ssh, rdp):
            self.assertEqual(session.round_trip(), (True, True),
                             f"session on {session.port} does not pass data before the end")
        return ssh, rdp

    def assert_cut(self, report, end, what):
        """Nothing that passed was sent later than CUT_WITHIN after `end` (report times are
        relative to `end`), in either direction; and data did stop passing."""
        last = report["last_delivered"]
        for direction, label in (("up", "client to server"), ("down", "server to client")):
            self.assertTrue(last[direction] is None or last[direction] <= CUT_WITHIN,
                            f"{what}: data sent {last[direction]} s after the end still passed "
                            f"{label} (allowed: {CUT_WITHIN} s); {report}")
        late = [tag for tag, sent in report["lost"] if sent > CUT_WITHIN]
        self.assertTrue(late, f"{what}: nothing was lost after the end: {report}")
        print(f"\n{what}: last data passed {last} s after the end", flush=True)

    def assert_kept(self, report, what):
        self.assertEqual(report["lost"], [], f"{what}: the session lost data: {report}")

    def test_revoke_cuts_the_session_on_22_only(self):
        lab = self.lab
        ssh_grant = lab.grant(CLIENT_A, ports=((22, "tcp"),), duration="PT5M")
        rdp_grant = lab.grant(CLIENT_A, ports=((3389, "tcp"),), duration="PT5M")
        ssh, rdp = self.open_both()
        end = time.time()  # before the request: the bound is measured from no later than the end
        status, revoked = lab.api("DELETE", f"/v1/grants/{ssh_grant['id']}")
        self.assertEqual(status, 200, revoked)
        reports = watch([ssh, rdp], end, end + 2.5)
        self.assert_cut(reports[id(ssh)], end, "revoke, port 22")
        self.assert_kept(reports[id(rdp)], "revoke of the 22 grant, port 3389")
        self.assertEqual(rdp.round_trip(), (True, True))
        self.assertFalse(self.sessions.can_connect(SERVER4, 22, CLIENT_A))
        # The 3389 grant is still live and its session unaffected; revoking it keeps the session
        # (no terminateSessionsOnEnd there), as Azure does.
        status, _ = lab.api("DELETE", f"/v1/grants/{rdp_grant['id']}")
        self.assertEqual(status, 200)
        reports = watch([rdp], time.time(), time.time() + 2.0)
        self.assert_kept(reports[id(rdp)], "revoke of the 3389 grant, port 3389")

    def test_expiry_cuts_the_session_on_22_only(self):
        lab = self.lab
        ssh_grant = lab.grant(CLIENT_A, ports=((22, "tcp"),), duration="PT2S")
        lab.grant(CLIENT_A, ports=((3389, "tcp"),), duration="PT2S")
        ssh, rdp = self.open_both()
        end = parse_utc(ssh_grant["endTimeUtc"])
        self.assertGreater(end, time.time(), "the grant ended before the sessions were up")
        # Watching starts before the end: the 22 session must pass data until then.
        reports = watch([ssh, rdp], end, end + 2.5)
        self.assert_cut(reports[id(ssh)], end, "expiry, port 22")
        self.assertIsNotNone(reports[id(ssh)]["last_delivered"]["up"],
                             f"the 22 session passed nothing before its end: {reports[id(ssh)]}")
        self.assert_kept(reports[id(rdp)], "expiry, port 3389")
        status, ended = lab.api("GET", f"/v1/grants/{ssh_grant['id']}")
        self.assertEqual(status, 200, ended)
        self.assertEqual((ended["status"], ended["statusReason"]), ("Revoked", "Expired"))

    def test_session_covered_by_another_live_grant_is_kept(self):
        lab = self.lab
        first = lab.grant(CLIENT_A, ports=((22, "tcp"),), duration="PT5M")
        wider = lab.grant("10.77.0.0/24", ports=((22, "tcp"),), duration="PT5M")
        ssh = self.sessions.open(SERVER4, 22, CLIENT_A)
        self.assertEqual(ssh.round_trip(), (True, True))
        status, _ = lab.api("DELETE", f"/v1/grants/{first['id']}")
        self.assertEqual(status, 200)
        reports = watch([ssh], time.time(), time.time() + 2.5)
        self.assert_kept(reports[id(ssh)], "revoke of one of two grants covering the source")
        self.assertTrue(self.sessions.can_connect(SERVER4, 22, CLIENT_A))
        # The last grant covering it ends: now the session goes.
        end = time.time()
        status, _ = lab.api("DELETE", f"/v1/grants/{wider['id']}")
        self.assertEqual(status, 200)
        reports = watch([ssh], end, end + 2.5)
        self.assert_cut(reports[id(ssh)], end, "revoke of the last covering grant, port 22")

    def test_grant_that_ended_while_jitd_was_down_is_cut_at_its_start(self):
        lab = self.lab
        ssh_grant = lab.grant(CLIENT_A, ports=((22, "tcp"),), duration="PT3S")
        lab.grant(CLIENT_A, ports=((3389, "tcp"),), duration="PT3S")
        ssh, rdp = self.open_both()
        lab.kill_jitd(9)
        sleep_until(parse_utc(ssh_grant["endTimeUtc"]) + 1.0)
        # Nobody cut them while jitd was down: established flows outlive the element.
        self.assertEqual(ssh.round_trip(), (True, True), "22 session cut while jitd was down")
        self.assertEqual(rdp.round_trip(), (True, True), "3389 session cut while jitd was down")
        started = time.time()
        lab.start_jitd()
        answering = time.time()
        print(f"\njitd answered {answering - started:.3f} s after its start", flush=True)
        reports = watch([ssh, rdp], answering, answering + 2.5)
        self.assert_cut(reports[id(ssh)], answering, "end while jitd was down, port 22, at start")
        self.assert_kept(reports[id(rdp)], "end while jitd was down, port 3389, at start")
        self.assertFalse(self.sessions.can_connect(SERVER4, 22, CLIENT_A))


if __name__ == "__main__":
    unittest.main()
