"""The eBPF backend's own behaviour: what nftables gets from its table and the kernel's netfilter
events, the eBPF backend gets from pins, tc/XDP attachments and link events. Runs with
JITD_TEST_BACKEND=ebpf (tests/kernel/CMakeLists.txt registers it at tc and at XDP).

Every check reads the kernel with bpftool, tc and ip (never through jitd) and proves blocking
with real connections between the lab's namespaces."""
import json
import os
import shutil
import subprocess
import time
import unittest

from lab import (ATTACH, BACKEND, CLIENT_A, CLIENT_B, JITD, NETPEER, SERVER4, Lab, LabTest, run)

ebpf_only = unittest.skipIf(BACKEND != "ebpf", "eBPF backend only (JITD_TEST_BACKEND=ebpf)")


def pinned_ids(lab):
    """Map name -> kernel map id of every pinned map: equal ids mean the same maps."""
    ids = {}
    for name in sorted(os.listdir(lab.pin_dir)):
        path = os.path.join(lab.pin_dir, name)
        shown = run("bpftool", "-j", "map", "show", "pinned", path, check=False)
        if shown.returncode == 0:
            ids[name] = json.loads(shown.stdout)["id"]
    return ids


def detach(lab, interface):
    """Removes jitd's program from an interface the way an admin or another tool would."""
    if ATTACH == "xdp":
        for mode in ("xdp", "xdpgeneric", "xdpdrv"):
            lab.ns(lab.server_ns, "ip", "link", "set", "dev", interface, mode, "off", check=False)
    else:
        lab.ns(lab.server_ns, "tc", "filter", "del", "dev", interface, "ingress")


@ebpf_only
class Tamper(LabTest):
    def test_detached_program_is_attached_again(self):
        lab = self.lab
        lab.start_jitd()
        lab.grant(CLIENT_A)
        self.assertTrue(lab.bpf_attached())
        detach(lab, lab.server_if)
        took = lab.wait_for(lab.bpf_attached, timeout=2.0)
        self.assertIsNotNone(took, f"not re-attached within 2 s: {lab.log()}")
        print(f"re-attached after {took * 1000:.0f} ms", flush=True)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        self.assertIn("tamper", [line["event"] for line in lab.audit()])

    def test_flushed_ruleset_gets_the_conntrack_table_back(self):
        # `nft flush ruleset` (what a restart of nftables.service does) deletes the table that
        # keeps conntrack active; without it, sessions opened from then on would not outlive
        # their grant.
        lab = self.lab
        lab.start_jitd()
        lab.grant(CLIENT_A, duration="PT3S")

        def table():
            return lab.ns(lab.server_ns, "nft", "list", "table", "inet", "jitd_conntrack",
                          check=False).returncode == 0
        self.assertTrue(table())
        lab.ns(lab.server_ns, "nft", "flush", "ruleset")
        took = lab.wait_for(table, timeout=2.0)
        self.assertIsNotNone(took, f"conntrack table not restored within 2 s: {lab.log()}")
        print(f"conntrack table restored after {took * 1000:.0f} ms", flush=True)
        # A session opened now is tracked, and outlives its grant.
        held = lab.hold(SERVER4, 22, CLIENT_A)
        self.assertTrue(held.connected)
        self.assertEqual(held.send("before"), "before")
        time.sleep(3.5)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))  # the grant is over
        self.assertEqual(held.send("after"), "after")

    def test_unpinned_map_is_pinned_again_with_its_grants(self):
        lab = self.lab
        lab.start_jitd()
        lab.grant(CLIENT_A)
        before = pinned_ids(lab)
        os.unlink(os.path.join(lab.pin_dir, "grants4"))
        took = lab.wait_for(lambda: os.path.exists(os.path.join(lab.pin_dir, "grants4")), timeout=2.0)
        self.assertIsNotNone(took, f"grants4 not pinned again within 2 s: {lab.log()}")
        self.assertEqual(pinned_ids(lab), before)  # the same maps: nothing was lost
        self.assertEqual(len(lab.grant_elements(4)), 1)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))


@ebpf_only
class Lifetime(LabTest):
    def test_program_and_grants_outlive_jitd_and_a_restart_reuses_them(self):
        lab = self.lab
        lab.start_jitd()
        lab.grant(CLIENT_A, duration="PT10M")
        before = pinned_ids(lab)
        self.assertTrue({"protected_ports", "grants4", "grants6", "allow4", "allow6", "counters",
                         "would_block"} <= set(before), before)
        lab.kill_jitd(9)
        # No daemon: the kernel alone still enforces, and the grant still admits.
        self.assertTrue(lab.bpf_attached())
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        lab.start_jitd()
        self.assertEqual(pinned_ids(lab), before)  # maps reused, not re-created
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))

    def test_switching_attach_points_leaves_one_program(self):
        lab = self.lab
        lab.start_jitd()
        lab.kill_jitd(15)
        other = "tc" if ATTACH == "xdp" else "xdp"
        lab.set_config("attach", other)
        lab.start_jitd()
        (link,) = json.loads(lab.ns(lab.server_ns, "ip", "-j", "link", "show", "dev",
                                    lab.server_if).stdout)
        tc = lab.ns(lab.server_ns, "tc", "filter", "show", "dev", lab.server_if, "ingress").stdout
        self.assertEqual(("xdp" in link, "jitd" in tc), (other == "xdp", other == "tc"), (link, tc))
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))

    def test_uninstall_leaves_nothing(self):
        lab = self.lab
        lab.start_jitd()
        lab.kill_jitd(15)
        self.assertTrue(lab.table_present())
        removed = lab.ns(lab.server_ns, JITD, "--config", lab.config, "--uninstall", check=False)
        self.assertEqual(removed.returncode, 0, removed.stderr + removed.stdout)
        self.assertFalse(lab.bpf_attached())
        self.assertFalse(os.path.exists(lab.pin_dir))
        tables = lab.ns(lab.server_ns, "nft", "list", "tables").stdout
        self.assertNotIn("jitd", tables)
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_B))

    def test_loopback_is_never_attached(self):
        lab = self.lab
        lab.start_jitd()
        filters = lab.ns(lab.server_ns, "tc", "filter", "show", "dev", "lo", "ingress", check=False)
        self.assertEqual(filters.stdout.strip(), "")
        (link,) = json.loads(lab.ns(lab.server_ns, "ip", "-j", "link", "show", "dev", "lo").stdout)
        self.assertNotIn("xdp", link)
        self.assertTrue(lab.connect("127.0.0.1", 22, from_server=True))


@ebpf_only
class Interfaces(LabTest):
    def add_link(self, name, server_address, client_address):
        lab = self.lab
        peer = name + "c"
        lab.ns(lab.server_ns, "ip", "link", "add", name, "type", "veth", "peer", "name", peer,
               "netns", lab.client_ns)
        lab.ns(lab.server_ns, "ip", "addr", "add", f"{server_address}/24", "dev", name)
        lab.ns(lab.client_ns, "ip", "addr", "add", f"{client_address}/24", "dev", peer)
        lab.ns(lab.server_ns, "ip", "link", "set", name, "up")
        lab.ns(lab.client_ns, "ip", "link", "set", peer, "up")

    def test_interface_that_appears_later_is_protected_and_one_that_goes_is_forgotten(self):
        lab = self.lab
        lab.start_jitd()
        self.add_link("hotplug0", "10.79.0.1", "10.79.0.2")
        # The link event attaches the program; until then the port may be open, so wait for
        # the attachment as the kernel shows it, then prove it with connections.
        def attached():
            if ATTACH == "xdp":
                (link,) = json.loads(lab.ns(lab.server_ns, "ip", "-j", "link", "show", "dev",
                                            "hotplug0").stdout)
                return "xdp" in link
            return "jitd" in lab.ns(lab.server_ns, "tc", "filter", "show", "dev", "hotplug0",
                                    "ingress").stdout
        self.assertIsNotNone(lab.wait_for(attached, timeout=2.0), lab.log())
        self.assertFalse(lab.connect("10.79.0.1", 22, "10.79.0.2", timeout=0.5))
        self.assertTrue(lab.connect("10.79.0.1", 8080, "10.79.0.2"))
        lab.grant("10.79.0.2")
        self.assertTrue(lab.connect("10.79.0.1", 22, "10.79.0.2"))
        lab.ns(lab.server_ns, "ip", "link", "del", "hotplug0")
        self.assertIsNotNone(lab.wait_for(lambda: "hotplug0" in lab.log(), timeout=2.0))
        # jitd goes on serving and protecting its other interface.
        status, reply = lab.api("GET", "/v1/status")
        self.assertEqual(status, 200, reply)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))

    def test_forwarded_traffic_passes(self):
        # A namespace behind the server (a container, a VM's guest): the server routes between
        # the client and it. jitd judges only what is addressed to the server itself.
        lab = self.lab
        inner = lab.server_ns.replace("-s", "-i")
        run("ip", "netns", "add", inner)
        self.addCleanup(run, "ip", "netns", "del", inner, check=False)
        lab.ns(lab.server_ns, "ip", "link", "add", "inner0", "type", "veth", "peer", "name",
               "eth0", "netns", inner)
        lab.ns(lab.server_ns, "ip", "addr", "add", "10.78.0.1/24", "dev", "inner0")
        lab.ns(lab.server_ns, "ip", "link", "set", "inner0", "up")
        lab.ns(inner, "ip", "addr", "add", "10.78.0.2/24", "dev", "eth0")
        lab.ns(inner, "ip", "link", "set", "eth0", "up")
        lab.ns(inner, "ip", "link", "set", "lo", "up")
        lab.ns(inner, "ip", "route", "add", "default", "via", "10.78.0.1")
        lab.ns(lab.client_ns, "ip", "route", "add", "10.78.0.0/24", "via", SERVER4)
        lab.ns(lab.server_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        server = subprocess.Popen(["ip", "netns", "exec", inner, "python3", NETPEER, "serve",
                                   "--tcp", "22"], stdout=subprocess.PIPE, text=True)
        self.addCleanup(server.kill)
        self.assertEqual(server.stdout.readline().strip(), "ready")
        lab.start_jitd()
        self.assertIsNotNone(lab.wait_for(lambda: "inner0" in lab.log(), timeout=2.0), lab.log())
        # To the host itself: blocked. Through the host to the namespace behind it: passes,
        # in both directions, on both of the host's interfaces that carry it.
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        self.assertTrue(lab.connect("10.78.0.2", 22, CLIENT_A))
        self.assertTrue(lab.connect("10.78.0.2", 22, CLIENT_B))
        self.assertGreater(lab.drop_count(), 0)


@ebpf_only
class SwitchingBackends(LabTest):
    def nft_table_present(self):
        return self.lab.ns(self.lab.server_ns, "nft", "list", "table", "inet", "jitd",
                           check=False).returncode == 0

    def test_switch_keeps_grants_and_removes_the_other_backend(self):
        lab = self.lab
        # bpfFilesystem stays: with nftables it says where the eBPF backend's pins would be.
        ebpf_lines = ("backend", "attach")
        lab.remove_config(*ebpf_lines)  # nftables, the default
        lab.start_jitd()
        lab.grant(CLIENT_A, duration="PT10M")
        self.assertTrue(self.nft_table_present())
        lab.kill_jitd(15)

        for key, value in (("backend", "ebpf"), ("attach", ATTACH)):
            lab.set_config(key, value)
        lab.start_jitd()
        self.assertTrue(lab.bpf_attached())
        self.assertFalse(self.nft_table_present(), "two enforcements would stack")
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))  # the grant came along (journal)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))
        self.assertIn(("backend", "switched"), [(l["event"], l["outcome"]) for l in lab.audit()])
        lab.kill_jitd(15)

        lab.remove_config(*ebpf_lines)
        lab.start_jitd()
        self.assertTrue(self.nft_table_present())
        self.assertFalse(lab.bpf_attached())
        self.assertFalse(os.path.exists(lab.pin_dir))
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))


@ebpf_only
class StartupProbes(LabTest):
    def refused(self, env=None, prefix=()):
        lab = self.lab
        command = [*prefix, JITD, "--config", lab.config]
        done = lab.ns(lab.server_ns, *command, check=False) if not env else subprocess.run(
            ["ip", "netns", "exec", lab.server_ns, *command], capture_output=True, text=True,
            env={**os.environ, **env}, timeout=30)
        self.assertNotEqual(done.returncode, 0, done.stdout + done.stderr)
        # Nothing was changed: no program attached, no pins; the port is as open as before.
        self.assertFalse(lab.bpf_attached())
        self.assertFalse(os.path.exists(lab.pin_dir))
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A))
        return done.stdout + done.stderr

    def test_each_probe_failing_refuses_the_start_with_its_reason(self):
        reasons = {"btf": "BTF", "kfunc": "bpf_skb_ct_lookup", "ct_opts": "bpf_ct_opts",
                   "cap_bpf": "CAP_BPF", "bpffs": "bpffs"}
        for probe, reason in reasons.items():
            with self.subTest(probe=probe):
                said = self.refused(env={"JITD_EBPF_PROBE_FAIL": probe})
                self.assertIn(reason, said)
                self.assertIn("ebpf backend", said)

    def test_without_cap_bpf_the_start_is_refused(self):
        # Really without: the capabilities are gone from the bounding set before jitd runs.
        said = self.refused(prefix=("setpriv", "--bounding-set", "-bpf,-sys_admin,-perfmon", "--"))
        self.assertIn("CAP_BPF", said)

    def test_kfuncs_in_module_btf_without_cap_sys_admin_refuse_the_start(self):
        # Where conntrack is a module (Debian's kernels), the program names its kfuncs by a
        # file descriptor of nf_conntrack's BTF, which only CAP_SYS_ADMIN gets (probe.cpp).
        if shutil.which("modprobe"):
            run("modprobe", "-q", "nf_conntrack", check=False)
        if not os.path.exists("/sys/kernel/btf/nf_conntrack"):
            self.skipTest("conntrack is built into this kernel: its kfuncs are in vmlinux's BTF")
        said = self.refused(prefix=("setpriv", "--bounding-set", "-sys_admin", "--"))
        self.assertIn("CAP_SYS_ADMIN", said)
        self.assertIn("nf_conntrack", said)


if __name__ == "__main__":
    unittest.main()
