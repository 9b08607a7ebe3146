"""Test 9: every refused request answers 4xx naming the field and leaves the kernel as it was."""
import unittest

from lab import CLIENT_A, LabTest

GOOD = {"ports": [{"number": 22, "protocol": "tcp"}], "allowedSourceAddressPrefix": CLIENT_A,
        "duration": "PT5M", "justification": "refusal test"}


def variant(**changes):
    body = dict(GOOD)
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


CASES = [
    ("port not in policy", variant(ports=[{"number": 2222, "protocol": "tcp"}]), "PortNotInPolicy", "ports[0]"),
    ("udp on a tcp rule", variant(ports=[{"number": 22, "protocol": "udp"}]), "PortNotInPolicy", "ports[0]"),
    ("source outside allowed", variant(ports=[{"number": 3389, "protocol": "tcp"}],
                                       allowedSourceAddressPrefix="192.0.2.1"), "SourceNotAllowed",
     "allowedSourceAddressPrefix"),
    ("range wider than allowed", variant(ports=[{"number": 3389, "protocol": "tcp"}],
                                         allowedSourceAddressPrefix="10.77.0.0/16"), "SourceNotAllowed",
     "allowedSourceAddressPrefix"),
    ("duration over max", variant(ports=[{"number": 3389, "protocol": "tcp"}], duration="PT11M"),
     "DurationTooLong", "duration"),
    ("end time in past", variant(duration=None, endTimeUtc="2020-01-01T00:00:00Z"), "EndTimeInPast",
     "endTimeUtc"),
    ("both duration and end", variant(endTimeUtc="2099-01-01T00:00:00Z"), "InvalidRequest", "duration"),
    ("bad duration", variant(duration="ten minutes"), "InvalidRequest", "duration"),
    ("zero duration", variant(duration="PT0S"), "InvalidRequest", "duration"),
    ("bad prefix", variant(allowedSourceAddressPrefix="10.77.0.300"), "InvalidRequest",
     "allowedSourceAddressPrefix"),
    ("host bits", variant(allowedSourceAddressPrefix="10.77.0.5/24"), "InvalidRequest",
     "allowedSourceAddressPrefix"),
    ("port as string", variant(ports=[{"number": "22", "protocol": "tcp"}]), "InvalidRequest", "ports[0].number"),
    ("port out of range", variant(ports=[{"number": 70000, "protocol": "tcp"}]), "InvalidRequest",
     "ports[0].number"),
    ("ports not a list", variant(ports="22"), "InvalidRequest", "ports"),
    ("no ports", variant(ports=[]), "InvalidRequest", "ports"),
    ("unknown field", variant(extra=1), "InvalidRequest", "extra"),
    ("multi-port, second bad", variant(ports=[{"number": 22, "protocol": "tcp"},
                                              {"number": 2222, "protocol": "tcp"}]), "PortNotInPolicy",
     "ports[1]"),
    ("malformed JSON", '{"ports": [', "InvalidRequest", "body"),
    ("not an object", "[1, 2]", "InvalidRequest", "body"),
]


class Refusals(LabTest):
    def test_each_refusal_changes_nothing_in_the_kernel(self):
        lab = self.lab
        lab.start_jitd()
        lab.grant("10.77.0.4", ports=((3389, "tcp"),), duration="PT5M")  # a live grant must stay
        before = lab.kernel_state()
        for name, body, code, field in CASES:
            with self.subTest(name):
                status, reply = lab.api("POST", "/v1/grants", body)
                self.assertGreaterEqual(status, 400, reply)
                self.assertLess(status, 500, reply)
                self.assertEqual(reply["error"]["code"], code, reply)
                self.assertTrue(reply["error"]["message"].startswith(field), reply)
                self.assertEqual(lab.kernel_state(), before)
        refused = [l for l in lab.audit() if l["outcome"] == "refused"]
        self.assertEqual(len(refused), len(CASES))
        self.assertEqual(len(lab.api("GET", "/v1/grants")[1]["grants"]), 1)
        self.assertFalse(lab.connect("10.77.0.1", 22, CLIENT_A, timeout=0.5))

    def test_unknown_routes_and_methods(self):
        lab = self.lab
        lab.start_jitd()
        self.assertEqual(lab.api("GET", "/v1/nothing")[0], 404)
        self.assertEqual(lab.api("PUT", "/v1/grants")[0], 405)
        self.assertEqual(lab.api("DELETE", "/v1/grants/0123456789abcdef")[0], 404)
        # Not a grant id at all (16 lowercase hex digits): refused before the engine.
        self.assertEqual(lab.api("DELETE", "/v1/grants/does-not-exist")[0], 400)
        status, reply = lab.api("POST", "/v1/grants", "x" * 70000)
        self.assertEqual(status, 413, reply)


if __name__ == "__main__":
    unittest.main()
