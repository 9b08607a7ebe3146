"""The permanent allow-list: listed sources reach their ports without a grant, in the same table."""
import unittest

from lab import CLIENT6, CLIENT_A, CLIENT_B, DEFAULT_POLICY, SERVER4, SERVER6, LabTest

POLICY = DEFAULT_POLICY + """
permanentAllowList:
  - sourceAddressPrefixes: ["10.77.0.2", "fd00:77::2"]
    ports: [{number: 22, protocol: tcp}]
    description: bastion
  - sourceAddressPrefixes: ["10.77.0.0/30"]
    description: config management, every protected port
"""


class AllowList(LabTest):
    policy = POLICY

    def test_listed_sources_pass_others_do_not(self):
        lab = self.lab
        lab.start_jitd()
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        self.assertTrue(lab.connect(SERVER6, 22, CLIENT6))
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_A))  # inside 10.77.0.0/30
        self.assertTrue(lab.connect(SERVER4, 53, CLIENT_B, kind="udp"))  # .3 is in the /30
        self.assertFalse(lab.connect(SERVER4, 22, "10.77.0.4", timeout=0.5))
        # Overlapping entries (10.77.0.2 in both) became disjoint kernel elements.
        elements = lab.set_elements("allow4")
        self.assertTrue(elements)
        status, policy = lab.api("GET", "/v1/policy")
        self.assertEqual(status, 200)
        self.assertEqual(policy["permanentAllowList"][0]["description"], "bastion")
        self.assertEqual(policy["permanentAllowList"][0]["sourceAddressPrefixes"],
                         [CLIENT_A, CLIENT6])
        self.assertEqual(policy["permanentAllowList"][1]["ports"], [])


if __name__ == "__main__":
    unittest.main()
