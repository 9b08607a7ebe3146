"""Issue 11: approvals. A port rule with `approval: required` makes a request wait (202,
Pending/AwaitingApproval) with the port still closed; an approver listed in the rule approves
(the grant's time starts then) or denies; nobody approves their own request; others may not
decide; a request nobody decides is revoked (ApprovalExpired) after approvalTimeout. Every
decision is audited. Callers are real uids (setpriv) in the socket's group."""
import os
import time
import unittest

from lab import CLIENT_A, CLIENT_B, SERVER4, LabTest, parse_utc

APPROVER, REQUESTOR, OUTSIDER = "bin", "nobody", "daemon"
APPROVAL_TIMEOUT = 3  # seconds

POLICY = """
ports:
  - number: 22
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
    approval: required
    approvers: {users: [bin]}
    approvalTimeout: PT3S
  - number: 3389
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
"""


class Approval(LabTest):
    policy = POLICY
    socket_group = "nogroup"

    def setUp(self):
        super().setUp()
        os.chmod(self.lab.dir, 0o755)
        self.lab.start_jitd()

    def request(self, user=REQUESTOR, source=CLIENT_A, duration="PT1M"):
        body = {"ports": [{"number": 22, "protocol": "tcp"}], "allowedSourceAddressPrefix": source,
                "duration": duration, "justification": "approval test"}
        status, reply = self.lab.api_as(user, "POST", "/v1/grants", body)
        self.assertEqual(status, 202, reply)
        self.assertEqual((reply["status"], reply["statusReason"]), ("Pending", "AwaitingApproval"),
                         reply)
        self.assertTrue(reply["approval"]["required"], reply)
        self.assertIn(APPROVER, reply["approval"]["approvers"])
        return reply

    def jitctl_as(self, user, *args):
        return self.lab.jitctl(*args, as_user=(user, "nogroup"))

    def grant(self, id):
        status, grant = self.lab.api("GET", f"/v1/grants/{id}")
        self.assertEqual(status, 200, grant)
        return grant

    def audit_events(self, id):
        return [(r["event"], r["outcome"], r["user"]) for r in self.lab.audit()
                if r.get("grantId") == id]

    def test_pending_until_approved_then_open_for_the_requested_length(self):
        lab = self.lab
        pending = self.request()
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        self.assertEqual(lab.grant_set_elements(4), [], "a pending request is in the kernel")
        self.assertEqual(self.grant(pending["id"])["status"], "Pending")
        time.sleep(1.5)  # an approval later than the request: the time starts at approval
        approving = time.time()
        approved = self.jitctl_as(APPROVER, "approve", pending["id"], "--json")
        self.assertEqual(approved.returncode, 0, approved.stderr + approved.stdout)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        grant = self.grant(pending["id"])
        self.assertEqual((grant["status"], grant["statusReason"]), ("Initiated", "UserRequested"))
        self.assertEqual(grant["approval"]["decidedBy"]["name"], APPROVER, grant)
        start, end = parse_utc(grant["startTimeUtc"]), parse_utc(grant["endTimeUtc"])
        self.assertAlmostEqual(end - start, 60, delta=0.01, msg=grant)
        self.assertGreaterEqual(start, approving - 0.05, f"time started before approval: {grant}")
        self.assertLessEqual(start, time.time(), grant)
        self.assertGreater(end, parse_utc(pending["endTimeUtc"]) + 1.0,
                           f"the end counts from the request, not the approval: {grant}")
        events = self.audit_events(pending["id"])
        self.assertIn(("approve", "approved", APPROVER), events)
        self.assertTrue(any(e[0] == "request" and e[2] == REQUESTOR for e in events), events)

    def test_denied_request_is_revoked_and_stays_closed(self):
        lab = self.lab
        pending = self.request()
        denied = self.jitctl_as(APPROVER, "deny", pending["id"], "-j", "not now")
        self.assertEqual(denied.returncode, 0, denied.stderr + denied.stdout)
        grant = self.grant(pending["id"])
        self.assertEqual((grant["status"], grant["statusReason"]), ("Revoked", "Denied"), grant)
        self.assertEqual(grant["endedBy"]["name"], APPROVER, grant)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        self.assertEqual(lab.grant_set_elements(4), [])
        status, reply = lab.api_as(APPROVER, "POST", f"/v1/grants/{pending['id']}/approve", {})
        self.assertIn(status, (400, 404), reply)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        events = self.audit_events(pending["id"])
        self.assertTrue(any(e[0] == "deny" and e[2] == APPROVER for e in events), events)
        self.assertTrue(any(e[0] == "request" and e[2] == REQUESTOR for e in events), events)

    def test_self_approval_is_refused(self):
        lab = self.lab
        own = self.request(user=APPROVER, source=CLIENT_B)  # an approver, asking for themself
        status, reply = lab.api_as(APPROVER, "POST", f"/v1/grants/{own['id']}/approve", {})
        self.assertEqual(status, 403, reply)
        refused = self.jitctl_as(APPROVER, "approve", own["id"])
        self.assertNotEqual(refused.returncode, 0, refused.stdout)
        self.assertEqual(self.grant(own["id"])["status"], "Pending")
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))
        last = lab.audit()[-1]
        self.assertEqual((last["event"], last["user"], last["outcome"]),
                         ("approve", APPROVER, "refused"), last)
        # The refusal says why, in docs/api.md's words (403, "may not approve or deny their own
        # request").
        self.assertIn("may not approve or deny their own request", reply["error"]["message"])
        self.assertIn("their own request", refused.stderr)

    def test_non_approver_may_not_decide(self):
        lab = self.lab
        pending = self.request()
        for verb in ("approve", "deny"):
            status, reply = lab.api_as(OUTSIDER, "POST", f"/v1/grants/{pending['id']}/{verb}", {})
            self.assertEqual(status, 403, reply)
            self.assertIn(APPROVER, reply["error"]["message"])  # names who may
        refused = self.jitctl_as(OUTSIDER, "approve", pending["id"])
        self.assertNotEqual(refused.returncode, 0, refused.stdout)
        self.assertEqual(self.grant(pending["id"])["status"], "Pending")
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        last = lab.audit()[-1]
        self.assertEqual((last["user"], last["outcome"]), (OUTSIDER, "refused"), last)

    def test_request_nobody_decides_expires(self):
        lab = self.lab
        requested = time.time()
        pending = self.request()
        self.assertIn("expiresTimeUtc", pending["approval"], pending)
        self.assertAlmostEqual(parse_utc(pending["approval"]["expiresTimeUtc"]),
                               requested + APPROVAL_TIMEOUT, delta=1.0, msg=pending)
        time.sleep(APPROVAL_TIMEOUT + 1.0)
        grant = self.grant(pending["id"])
        self.assertEqual((grant["status"], grant["statusReason"]), ("Revoked", "ApprovalExpired"),
                         grant)
        self.assertNotIn("endedBy", grant)  # nobody ended it
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        status, reply = lab.api_as(APPROVER, "POST", f"/v1/grants/{pending['id']}/approve", {})
        self.assertIn(status, (400, 404), reply)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        self.assertEqual(lab.grant_set_elements(4), [])

    def test_port_without_approval_is_granted_at_once(self):
        body = {"ports": [{"number": 3389, "protocol": "tcp"}], "allowedSourceAddressPrefix": CLIENT_A,
                "duration": "PT1M"}
        status, reply = self.lab.api_as(REQUESTOR, "POST", "/v1/grants", body)
        self.assertEqual(status, 201, reply)
        self.assertEqual(reply["status"], "Initiated")
        self.assertNotIn("approval", reply)
        self.assertTrue(self.lab.connect(SERVER4, 3389, CLIENT_A))


if __name__ == "__main__":
    unittest.main()
