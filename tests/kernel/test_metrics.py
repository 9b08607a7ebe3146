"""Metrics: GET /metrics on the API socket and on metricsListen (loopback TCP in jitd's
namespace), checked by promtool and scraped by a real Prometheus server in the same namespace;
counters that never go backwards across a restart of jitd and a repair of its table."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.parse

from lab import BACKEND, CLIENT_A, CLIENT_B, SERVER4, LabTest, UnixHTTPConnection

METRICS_PORT = 9464
PROMETHEUS_PORT = 9090
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")

# Runs in jitd's namespace: GETs a loopback URL and prints [status, content type, body].
TCP_GET = """
import json, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as reply:
        print(json.dumps([reply.status, reply.headers["Content-Type"], reply.read().decode()]))
except urllib.error.HTTPError as error:
    print(json.dumps([error.code, error.headers["Content-Type"], error.read().decode()]))
"""


def samples(text):
    """{(name, labels text): value} of an exposition text."""
    found = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        found[(match.group(1), match.group(2) or "")] = float(match.group(3))
    return found


def require_program(test, name):
    if shutil.which(name) is None:
        message = f"missing program '{name}' (Debian package prometheus): run scripts/install-deps.sh"
        if os.environ.get("CI") == "true":
            test.fail(message)
        test.skipTest(message)


class Metrics(LabTest):
    extra_config = f"metricsListen: 127.0.0.1:{METRICS_PORT}\n"

    def setUp(self):
        super().setUp()
        require_program(self, "promtool")
        require_program(self, "prometheus")

    def scrape_socket(self):
        connection = UnixHTTPConnection(self.lab.socket)
        try:
            connection.request("GET", "/metrics")
            reply = connection.getresponse()
            body = reply.read().decode()
            self.assertEqual(reply.status, 200, body)
            self.assertEqual(reply.getheader("Content-Type"),
                             "text/plain; version=0.0.4; charset=utf-8")
            return body
        finally:
            connection.close()

    def get_in_namespace(self, url):
        result = self.lab.ns(self.lab.server_ns, "python3", "-c", TCP_GET, url)
        return json.loads(result.stdout)

    def scrape_tcp(self):
        status, content_type, body = self.get_in_namespace(
            f"http://127.0.0.1:{METRICS_PORT}/metrics")
        self.assertEqual(status, 200, body)
        self.assertEqual(content_type, "text/plain; version=0.0.4; charset=utf-8")
        return body

    def promtool_check(self, text):
        checked = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                                 capture_output=True)
        self.assertEqual(checked.returncode, 0, checked.stdout + checked.stderr)
        self.assertEqual(checked.stdout + checked.stderr, "")

    def counters(self):
        """Every counter kept across restarts, over TCP (the latency histogram and the kernel
        read failures are the process's own, as documented)."""
        per_process = ("jitd_api_request_duration_seconds", "jitd_kernel_read_failures_total")
        return {key: value for key, value in samples(self.scrape_tcp()).items()
                if key[0].endswith("_total") and not key[0].startswith(per_process)}

    def assert_not_backwards(self, before, after, when):
        for key, value in before.items():
            self.assertIn(key, after, f"{key} gone {when}")
            self.assertGreaterEqual(after[key], value, f"{key} went backwards {when}")

    def test_scrapes_promtool_and_prometheus(self):
        lab = self.lab
        lab.start_jitd()
        lab.grant(CLIENT_A)
        lab.grant(CLIENT_B, ports=((3389, "tcp"),))
        status, _ = lab.api("POST", "/v1/grants", {
            "ports": [{"number": 8080, "protocol": "tcp"}], "allowedSourceAddressPrefix": CLIENT_A,
            "duration": "PT5M", "justification": "not protected"})
        self.assertEqual(status, 400)
        for _ in range(2):
            self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_A, timeout=0.3))

        text = self.scrape_socket()
        self.promtool_check(text)
        found = samples(text)
        self.assertEqual(found[("jitd_grants_issued_total", "")], 2)
        self.assertEqual(
            found[("jitd_grant_requests_refused_total", '{reason="PortNotInPolicy"}')], 1)
        self.assertEqual(found[("jitd_live_grants", '{port="22",protocol="tcp"}')], 1)
        self.assertEqual(found[("jitd_live_grants", '{port="3389",protocol="tcp"}')], 1)
        self.assertGreaterEqual(
            found[("jitd_dropped_packets_total", '{port="3389",protocol="tcp"}')], 2)
        self.assertEqual(found[("jitd_dropped_packets_total", '{port="22",protocol="tcp"}')], 0)
        self.assertTrue(any(name == "jitd_build_info" and f'backend="{BACKEND}"' in labels
                            for name, labels in found), found)
        self.assertGreaterEqual(found[("jitd_api_request_duration_seconds_count",
                                       '{method="POST",route="/v1/grants",status="2xx"}')], 2)

        over_tcp = self.scrape_tcp()
        self.promtool_check(over_tcp)
        self.assertEqual(samples(over_tcp)[("jitd_grants_issued_total", "")], 2)
        # metricsListen serves /metrics and nothing else.
        status, _, _ = self.get_in_namespace(f"http://127.0.0.1:{METRICS_PORT}/v1/grants")
        self.assertEqual(status, 404)

        # A real Prometheus in jitd's namespace scrapes metricsListen every second.
        storage = tempfile.mkdtemp(prefix="prometheus-", dir=lab.dir)
        config = os.path.join(lab.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: jitd\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{METRICS_PORT}']\n")
        with open(os.path.join(lab.dir, "prometheus.log"), "w") as log:
            prometheus = subprocess.Popen(
                ["ip", "netns", "exec", lab.server_ns, "prometheus", f"--config.file={config}",
                 f"--storage.tsdb.path={storage}",
                 f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"],
                stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (prometheus.kill(), prometheus.wait()))

        def query(expression):
            status, _, body = self.get_in_namespace(
                f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query?"
                + urllib.parse.urlencode({"query": expression}))
            if status != 200:
                return None
            return json.loads(body)["data"]["result"]

        def issued():
            try:
                result = query("jitd_grants_issued_total")
            except (subprocess.CalledProcessError, ValueError):
                return None  # not listening yet
            return result[0]["value"][1] if result else None

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and issued() != "2":
            time.sleep(0.5)
        with open(os.path.join(lab.dir, "prometheus.log")) as f:
            self.assertEqual(issued(), "2", f.read()[-3000:])
        up = query('up{job="jitd"}')
        self.assertEqual(up[0]["value"][1], "1", up)
        live = query('jitd_live_grants{port="3389"}')
        self.assertEqual(live[0]["value"][1], "1", live)

    def test_counters_do_not_go_backwards_across_restart_and_repair(self):
        lab = self.lab
        lab.set_config("nftTableOwnership", "off")  # so that nft may delete the table below
        lab.start_jitd()
        lab.grant(CLIENT_B)
        for _ in range(3):
            self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.3))
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_B))
        before = self.counters()
        dropped = before[("jitd_dropped_packets_total", '{port="22",protocol="tcp"}')]
        self.assertGreaterEqual(dropped, 3)
        self.assertEqual(before[("jitd_grants_issued_total", "")], 1)

        lab.restart_jitd()
        after_restart = self.counters()
        self.assert_not_backwards(before, after_restart, "across a restart")
        self.assertEqual(after_restart[("jitd_grants_issued_total", "")], 1)
        dropped = after_restart[("jitd_dropped_packets_total", '{port="22",protocol="tcp"}')]
        self.repair_and_check(after_restart, dropped)

    def repair_and_check(self, before, dropped):
        lab = self.lab
        # Someone deletes the table (nftables: this file is not among the eBPF runs): jitd puts
        # it back, and its counters start at zero again.
        lab.ns(lab.server_ns, "nft", "delete", "table", "inet", "jitd")
        self.assertIsNotNone(lab.wait_for(
            lambda: any(line["event"] == "tamper" for line in lab.audit()), timeout=5))
        self.assertIsNotNone(lab.wait_for(lab.table_present, timeout=5))
        after_repair = self.counters()
        self.assert_not_backwards(before, after_repair, "across a table repair")
        self.assertEqual(after_repair[("jitd_tamper_repairs_total", '{outcome="restored"}')],
                         before[("jitd_tamper_repairs_total", '{outcome="restored"}')] + 1)
        # New drops count on top of the old ones.
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.3))
        latest = self.counters()
        self.assertGreater(latest[("jitd_dropped_packets_total", '{port="22",protocol="tcp"}')],
                           dropped)

    def test_status_shows_port_activity(self):
        lab = self.lab
        lab.start_jitd()
        lab.grant(CLIENT_A)
        lab.grant(CLIENT_B)
        status, reply = lab.api("GET", "/v1/status")
        self.assertEqual(status, 200, reply)
        ports = {(p["number"], p["protocol"]): p for p in reply["ports"]}
        self.assertEqual(ports[(22, "tcp")]["approvedLast7Days"], 2)
        self.assertEqual(ports[(22, "tcp")]["lastUser"], "root")
        self.assertEqual(ports[(3389, "tcp")]["approvedLast7Days"], 0)
        self.assertIsNone(ports[(3389, "tcp")]["lastUser"])
        # Persisted: a restarted jitd still knows.
        lab.restart_jitd()
        _, reply = lab.api("GET", "/v1/status")
        ports = {(p["number"], p["protocol"]): p for p in reply["ports"]}
        self.assertEqual(ports[(22, "tcp")]["approvedLast7Days"], 2)
        shown = lab.jitctl("status")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        row = next(line for line in shown.stdout.splitlines()
                   if line.startswith("22 ") and "root" in line)
        self.assertEqual(row.split()[:3], ["22", "tcp", "2"])


class MetricsListenRefused(LabTest):
    def test_non_loopback_address_is_refused_with_its_place(self):
        lab = self.lab
        lab.set_config("metricsListen", "0.0.0.0:9464")
        result = lab.ns(lab.server_ns, os.environ.get("JITD_BIN", "jitd"), "--config", lab.config,
                        check=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertRegex(result.stdout + result.stderr,
                         r"jitd\.yaml:\d+:\d+: .*0\.0\.0\.0:9464.* is not on loopback")


if __name__ == "__main__":
    unittest.main()
