"""Roles: readers, requesters, administrators, and a port narrowed to one group. Every refusal
is a 403 naming the missing right, audited, and changes nothing in the kernel. Callers are real
uids (setpriv), identified by the kernel (SO_PEERCRED), all in the socket's group."""
import os
import unittest

from lab import CLIENT_A, CLIENT_B, DEFAULT_POLICY, SERVER4, LabTest

ROLES_POLICY = DEFAULT_POLICY + """
  - number: 8080
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
    requesters: {users: [bin]}
roles:
  readers: {users: [daemon]}
  requesters: {users: [nobody, bin]}
  administrators: {users: [sys]}
"""

class Roles(LabTest):
    policy = ROLES_POLICY
    socket_group = "nogroup"

    def setUp(self):
        super().setUp()
        os.chmod(self.lab.dir, 0o755)  # unprivileged callers reach the socket's directory
        self.lab.start_jitd()

    def call(self, user, method, path, body=None, group="nogroup"):
        return self.lab.api_as(user, method, path, body, group)

    def grant_body(self, source, port=22):
        return {"ports": [{"number": port, "protocol": "tcp"}],
                "allowedSourceAddressPrefix": source, "duration": "PT5M",
                "justification": "roles test"}

    def assert_refused(self, user, method, path, body, right):
        before = self.lab.kernel_state()
        status, reply = self.call(user, method, path, body)
        self.assertEqual(status, 403, reply)
        self.assertIn(f"needs the {right} right", reply["error"]["message"])
        self.assertEqual(self.lab.kernel_state(), before, "a refused call changed the kernel")
        last = self.lab.audit()[-1]
        self.assertEqual((last["user"], last["outcome"]), (user, "refused"), last)

    def test_uid_outside_every_role_may_do_nothing(self):
        granted = self.lab.grant(CLIENT_A)
        self.assert_refused("games", "GET", "/v1/grants", None, "read")
        self.assert_refused("games", "POST", "/v1/grants", self.grant_body(CLIENT_B), "request")
        self.assert_refused("games", "DELETE", f"/v1/grants/{granted['id']}", None, "request")
        self.assert_refused("games", "POST", "/v1/policy/reload", None, "administer")
        self.assertFalse(self.lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))

    def test_reader_reads_but_may_not_request(self):
        status, reply = self.call("daemon", "GET", "/v1/grants")
        self.assertEqual((status, reply), (200, {"grants": []}))
        status, policy = self.call("daemon", "GET", "/v1/policy")
        self.assertEqual(status, 200, policy)
        self.assertEqual(policy["roles"]["readers"], {"users": ["daemon"], "groups": []})
        self.assertEqual(policy["ports"][-1]["requesters"], {"users": ["bin"], "groups": []})
        self.lab.grant(CLIENT_A)
        status, page = self.call("daemon", "GET", "/v1/audit?user=root&since=PT1H&limit=1")
        self.assertEqual(status, 200, page)
        self.assertEqual([(r["event"], r["user"]) for r in page["records"]], [("request", "root")])
        self.assertNotIn("next", page)
        self.assert_refused("games", "GET", "/v1/audit", None, "read")
        self.assert_refused("daemon", "POST", "/v1/grants", self.grant_body(CLIENT_B), "request")

    def test_requester_revokes_own_grant_not_another_users(self):
        status, own = self.call("nobody", "POST", "/v1/grants", self.grant_body(CLIENT_B))
        self.assertEqual(status, 201, own)
        self.assertTrue(self.lab.connect(SERVER4, 22, CLIENT_B))
        others = self.lab.grant(CLIENT_A)
        self.assert_refused("nobody", "DELETE", f"/v1/grants/{others['id']}", None, "administer")
        self.assertTrue(self.lab.connect(SERVER4, 22, CLIENT_A))
        self.assert_refused("nobody", "POST", "/v1/policy/reload", None, "administer")
        status, _ = self.call("nobody", "DELETE", f"/v1/grants/{own['id']}")
        self.assertEqual(status, 200)
        self.assertFalse(self.lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))

    def test_administrator_revokes_anyones_grant_and_reloads(self):
        _, own = self.call("nobody", "POST", "/v1/grants", self.grant_body(CLIENT_B))
        self.assertEqual(self.call("sys", "DELETE", f"/v1/grants/{own['id']}")[0], 200)
        self.assertFalse(self.lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))
        self.assertEqual(self.call("sys", "POST", "/v1/policy/reload")[0], 200)

    def test_port_narrowed_to_one_user_refuses_other_requesters(self):
        before = self.lab.kernel_state()
        status, reply = self.call("nobody", "POST", "/v1/grants", self.grant_body(CLIENT_B, 8080))
        self.assertEqual(status, 403, reply)
        self.assertIn("only users bin", reply["error"]["message"])
        self.assertEqual(self.lab.kernel_state(), before)
        self.assertEqual(self.lab.audit()[-1]["outcome"], "refused")
        status, reply = self.call("bin", "POST", "/v1/grants", self.grant_body(CLIENT_B, 8080))
        self.assertEqual(status, 201, reply)
        self.assertTrue(self.lab.connect(SERVER4, 8080, CLIENT_B))


class OpenSocket(Roles):
    """socketMode 0666: anyone may connect, and the roles alone decide."""
    socket_group = ""
    extra_config = "socketMode: '0666'\n"

    def test_anyone_connects_and_the_roles_decide(self):
        self.assertEqual(os.stat(self.lab.socket).st_mode & 0o777, 0o666)
        status, reply = self.call("daemon", "GET", "/v1/grants", group="daemon")
        self.assertEqual((status, reply), (200, {"grants": []}))
        before = self.lab.kernel_state()
        status, reply = self.call("games", "POST", "/v1/grants", self.grant_body(CLIENT_B),
                                  group="games")
        self.assertEqual(status, 403, reply)
        self.assertIn("needs the request right", reply["error"]["message"])
        status, reply = self.call("nobody", "POST", "/v1/grants", self.grant_body(CLIENT_B),
                                  group="nogroup")
        self.assertEqual(status, 201, reply)
        self.assertNotEqual(self.lab.kernel_state(), before)


if __name__ == "__main__":
    unittest.main()
