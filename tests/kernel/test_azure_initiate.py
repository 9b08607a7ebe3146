"""Azure's initiate (issue 11): POST /v1/initiate takes the body of Azure's
jitNetworkAccessPolicies/initiate (the goldens in tests/unit/golden/azure/, with this host's name
as the VM and the lab's ports and sources) and answers 202 in Azure's JitNetworkAccessRequest
shape; each port's allowedSourceAddressPrefix and endTimeUtc/duration is what the kernel
enforces. A VM id naming another VM is 404 and changes nothing.

jitd runs in the lab's network namespace but shares the UTS namespace: its host name is
socket.gethostname()."""
import copy
import json
import os
import socket
import time
import unittest

from lab import CLIENT6, CLIENT_A, CLIENT_B, CLIENT_C, SERVER4, SERVER6, LabTest, parse_utc, sleep_until, utc

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unit", "golden", "azure")


def golden(name):
    with open(os.path.join(GOLDEN, name)) as f:
        return json.load(f)


def with_vm(body, name):
    """The golden body with its VM's name (the ARM id's last segment) replaced by `name`."""
    body = copy.deepcopy(body)
    vm = body["virtualMachines"][0]
    vm["id"] = vm["id"].rsplit("/", 1)[0] + "/" + name
    return body


def port_keys(reply):
    return {tuple(sorted(p)) for vm in reply["virtualMachines"] for p in vm["ports"]}


class AzureInitiate(LabTest):
    def assert_azure_shape(self, reply, expected_golden, vm_id):
        """Azure's JitNetworkAccessRequest: the keys of the golden response, the VM id as sent."""
        self.assertEqual(set(reply), set(expected_golden), reply)
        self.assertEqual([vm["id"] for vm in reply["virtualMachines"]], [vm_id], reply)
        self.assertEqual(port_keys(reply), port_keys(expected_golden), reply)
        self.assertEqual(reply["requestor"], "root", reply)
        parse_utc(reply["startTimeUtc"])

    def ports_by_number(self, reply):
        ports = {}
        for port in reply["virtualMachines"][0]["ports"]:
            ports.setdefault(port["number"], []).append(port)
        return ports

    def test_initiate_with_per_port_sources_and_ends(self):
        lab = self.lab
        lab.start_jitd()
        host = socket.gethostname()
        # initiate_duration's shape (several ports, per-port source and duration, one
        # justification), on the lab's ports: 22 and 53 from A until an endTimeUtc, 3389 from B
        # for a duration.
        body = with_vm(golden("initiate_duration.request.json"), host)
        first_end = float(int(time.time()) + 4)
        body["virtualMachines"][0]["ports"] = [
            {"number": 22, "allowedSourceAddressPrefix": CLIENT_A, "endTimeUtc": utc(first_end, 0)},
            {"number": 3389, "allowedSourceAddressPrefix": CLIENT_B, "duration": "PT9S"},
            {"number": 53, "allowedSourceAddressPrefix": CLIENT_A, "endTimeUtc": utc(first_end, 0)},
        ]
        asked = time.time()
        status, reply = lab.api("POST", "/v1/initiate", body)
        self.assertEqual(status, 202, reply)
        self.assert_azure_shape(reply, golden("initiate_duration.response.json"),
                                body["virtualMachines"][0]["id"])
        self.assertEqual(reply["justification"], body["justification"])
        ports = self.ports_by_number(reply)
        self.assertEqual(set(ports), {22, 53, 3389}, reply)
        for port in (p for group in ports.values() for p in group):
            self.assertEqual((port["status"], port["statusReason"]), ("Initiated", "UserRequested"),
                             port)
        self.assertEqual([(p["protocol"], p["allowedSourceAddressPrefix"]) for p in ports[22]],
                         [("tcp", CLIENT_A)])
        self.assertEqual(parse_utc(ports[22][0]["endTimeUtc"]), first_end)
        self.assertEqual({p["allowedSourceAddressPrefix"] for p in ports[53]}, {CLIENT_A}, ports[53])
        self.assertEqual({parse_utc(p["endTimeUtc"]) for p in ports[53]}, {first_end}, ports[53])
        (rdp,) = ports[3389]
        self.assertEqual(rdp["allowedSourceAddressPrefix"], CLIENT_B)
        second_end = parse_utc(rdp["endTimeUtc"])
        self.assertAlmostEqual(second_end, asked + 9, delta=1.0)
        # Same source and end: one grant; another source: another grant.
        self.assertEqual(ports[22][0]["jitdGrantId"], ports[53][0]["jitdGrantId"], reply)
        self.assertNotEqual(ports[22][0]["jitdGrantId"], rdp["jitdGrantId"], reply)
        status, shown = lab.api("GET", f"/v1/grants/{rdp['jitdGrantId']}")
        self.assertEqual((status, shown["justification"]), (200, body["justification"]), shown)

        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        self.assertTrue(lab.connect(SERVER4, 53, CLIENT_A))
        self.assertTrue(lab.connect(SERVER4, 53, CLIENT_A, kind="udp"))
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_B))
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5), "22 open to 3389's source")
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_A, timeout=0.5), "3389 open to 22's source")
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_C, timeout=0.5))
        sleep_until(first_end - 1.0)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.9), "closed before endTimeUtc")
        sleep_until(first_end + 1.0)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5), "open after endTimeUtc")
        self.assertFalse(lab.connect(SERVER4, 53, CLIENT_A, kind="udp", timeout=0.5))
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_B), "the other port's end is later")
        sleep_until(second_end + 1.0)
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_B, timeout=0.5), "open after its duration")
        self.assertEqual(lab.grant_set_elements(4), [])

    def test_initiate_end_time_golden_with_bare_and_uppercase_names(self):
        lab = self.lab
        lab.start_jitd()
        host = socket.gethostname()
        end = float(int(time.time()) + 5) + 0.25
        sent = golden("initiate_end_time.request.json")
        vms = {"arm id, first label upper-case": with_vm(sent, host.split(".")[0].upper()),
               "bare host name": with_vm(sent, host)}
        vms["bare host name"]["virtualMachines"][0]["id"] = host
        sources = {"arm id, first label upper-case": CLIENT_A, "bare host name": CLIENT_B}
        for label, body in vms.items():
            with self.subTest(vm=label):
                port = body["virtualMachines"][0]["ports"][0]
                port["allowedSourceAddressPrefix"] = sources[label]
                # Azure's seven fraction digits; jitd keeps milliseconds.
                port["endTimeUtc"] = utc(end, 6).replace("Z", "7Z")
                status, reply = lab.api("POST", "/v1/initiate", body)
                self.assertEqual(status, 202, reply)
                self.assert_azure_shape(reply, golden("initiate_end_time.response.json"),
                                        body["virtualMachines"][0]["id"])
                (answered,) = reply["virtualMachines"][0]["ports"]
                self.assertEqual((answered["number"], answered["protocol"],
                                  answered["allowedSourceAddressPrefix"]),
                                 (3389, "tcp", sources[label]), reply)
                self.assertEqual(answered["endTimeUtc"], utc(end, 3), reply)
        for source in sources.values():
            self.assertTrue(lab.connect(SERVER4, 3389, source))
            self.assertFalse(lab.connect(SERVER4, 22, source, timeout=0.5))
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_C, timeout=0.5))
        sleep_until(end - 1.0)
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_A, timeout=0.9))
        sleep_until(end + 1.0)
        for source in sources.values():
            self.assertFalse(lab.connect(SERVER4, 3389, source, timeout=0.5))

    def test_initiate_any_source_opens_both_families(self):
        lab = self.lab
        lab.start_jitd()
        body = with_vm(golden("initiate_duration.request.json"), socket.gethostname())
        body["virtualMachines"][0]["ports"] = [
            {"number": 22, "allowedSourceAddressPrefix": "*", "duration": "PT5M"}]
        status, reply = lab.api("POST", "/v1/initiate", body)
        self.assertEqual(status, 202, reply)
        (port,) = reply["virtualMachines"][0]["ports"]
        self.assertEqual((port["number"], port["allowedSourceAddressPrefix"], port["status"]),
                         (22, "*", "Initiated"), reply)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_C))
        self.assertTrue(lab.connect(SERVER6, 22, CLIENT6))
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_A, timeout=0.5))
        # 3389's rule does not allow "*": refused, nothing opened.
        before = lab.kernel_state()
        body["virtualMachines"][0]["ports"] = [
            {"number": 3389, "allowedSourceAddressPrefix": "*", "duration": "PT5M"}]
        status, reply = lab.api("POST", "/v1/initiate", body)
        self.assertEqual(status // 100, 4, reply)
        self.assertEqual(lab.kernel_state(), before)
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_A, timeout=0.5))

    def test_initiate_for_another_vm_is_not_found(self):
        lab = self.lab
        lab.start_jitd()
        host = socket.gethostname()
        before = lab.kernel_state()
        for other in ("not-" + host, host + "x", "db02"):
            if other.lower() in (host.lower(), host.split(".")[0].lower()):
                continue
            with self.subTest(vm=other):
                body = with_vm(golden("initiate_end_time.request.json"), other)
                port = body["virtualMachines"][0]["ports"][0]
                port["allowedSourceAddressPrefix"] = CLIENT_A
                port["endTimeUtc"] = utc(time.time() + 60)
                status, reply = lab.api("POST", "/v1/initiate", body)
                self.assertEqual(status, 404, reply)
                self.assertEqual(reply["error"]["code"], "NotFound", reply)
                self.assertIn(other, reply["error"]["message"])
        self.assertEqual(lab.kernel_state(), before, "a request for another VM changed the kernel")
        self.assertEqual(lab.api("GET", "/v1/grants")[1]["grants"], [])
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_A, timeout=0.5))


if __name__ == "__main__":
    unittest.main()
