"""Issue 12: recommendations (Azure's "Recommended" tab, for one host). jitd lists the server
namespace's listening sockets with sock_diag and compares them with the policy: management
services reachable beyond loopback that no rule protects are recommended, with a policy
snippet that `jitd --validate` accepts; rules nothing listens under are reported. Checked
through GET /v1/recommendations and `jitctl recommend` (exit status 3 when there is something to
recommend, 0 when not)."""
import os
import unittest

from lab import JITD, SERVER4, Lab, run

SSH_ONLY = """
ports:
  - number: 22
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
"""

# Beyond loopback, in the list: recommended.
RECOMMENDED = {
    (5432, "tcp"): ("postgresql", ["0.0.0.0"]),
    (3306, "tcp"): ("mysql", [SERVER4]),
    (27017, "tcp"): ("mongodb", ["*"]),  # `::` without IPV6_V6ONLY: IPv4 too
    (161, "udp"): ("snmp", ["0.0.0.0"]),
}
LISTENERS = (
    "tcp,0.0.0.0,5432", f"tcp,{SERVER4},3306", "tcp,::,27017,dual", "udp,0.0.0.0,161",
    # Loopback only, in every form: never recommended.
    "tcp,127.0.0.1,6379", "tcp,::1,9200", "tcp,::ffff:127.0.0.1,11211,dual",
)


class Recommend(unittest.TestCase):
    def setUp(self):
        # The lab's echo server listens on 8081 only (0.0.0.0 and ::): a port not in the list.
        self.lab = Lab(self, SSH_ONLY, tcp_ports=(8081,), udp_ports=())
        self.lab.listen(*LISTENERS)
        self.lab.start_jitd()

    def recommendations(self):
        status, body = self.lab.api("GET", "/v1/recommendations")
        self.assertEqual(status, 200, body)
        return body

    def validate(self, snippet, *extra):
        path = os.path.join(self.lab.dir, "recommended.yaml")
        with open(path, "w") as f:
            f.write(snippet)
        return run(JITD, "--config", self.lab.config, "--validate", "--policy", path, *extra,
                   check=False)

    def test_unprotected_services_and_unused_rules_with_a_valid_snippet(self):
        body = self.recommendations()
        found = {(e["port"], e["protocol"]): (e["service"], e["addresses"])
                 for e in body["unprotected"]}
        self.assertEqual(found, RECOMMENDED, body)
        self.assertEqual(len(body["unprotected"]), len(RECOMMENDED), "each port once")
        (unused,) = body["unusedProtected"]
        self.assertEqual((unused["port"], unused["protocol"], unused["service"], unused["addresses"]),
                         (22, "tcp", "ssh", []), unused)
        self.assertIn("10-test.yaml:3:5", unused["origin"])

        result = self.lab.jitctl("recommend")
        self.assertEqual(result.returncode, 3, result.stdout + result.stderr)
        self.assertIn("5432/tcp (postgresql) listening on 0.0.0.0", result.stdout)
        self.assertIn("161/udp (snmp) listening on 0.0.0.0", result.stdout)
        self.assertIn("22/tcp (ssh): nothing listens", result.stdout)
        for absent in ("6379", "9200", "11211", "8081"):
            self.assertNotIn(absent, result.stdout)
        self.assertIn(body["snippet"], result.stdout)

        alone = self.validate(body["snippet"])
        self.assertEqual(alone.returncode, 0, alone.stdout + alone.stderr)
        self.assertIn("4 port rules", alone.stdout)
        beside = self.validate(body["snippet"], "--replaces", "20-recommended.yaml")
        self.assertEqual(beside.returncode, 0, beside.stdout + beside.stderr)

    def test_following_the_advice_leaves_nothing_to_recommend(self):
        snippet = self.recommendations()["snippet"]
        self.lab.write_policy(snippet, name="20-recommended.yaml")
        status, reply = self.lab.api("POST", "/v1/policy/reload")
        self.assertEqual(status, 200, reply)
        body = self.recommendations()
        self.assertEqual(body["unprotected"], [], body)
        self.assertEqual(body["snippet"], "", body)
        self.assertEqual(self.lab.jitctl("recommend").returncode, 3, "22 is still unused")

        self.lab.listen("tcp,::,22")  # IPv6 only; still beyond loopback
        result = self.lab.jitctl("recommend")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(result.stdout, "nothing to recommend\n")
        json_result = self.lab.jitctl("recommend", "--json")
        self.assertEqual(json_result.returncode, 0, json_result.stdout + json_result.stderr)


if __name__ == "__main__":
    unittest.main()
