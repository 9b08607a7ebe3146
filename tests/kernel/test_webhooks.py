"""Webhooks: a receiver on loopback inside jitd's own namespace gets grant, revoke and refusal
events, HMAC-SHA256 signed with the webhook's secret; a failing receiver gets a bounded number
of attempts with growing gaps; a receiver that never answers does not slow a grant; and the
failures show in GET /v1/status."""
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import unittest

from lab import CLIENT_A, CLIENT_B, LabTest, UnixHTTPConnection

SECRET = "kernel-test-secret"
PORT = 8765

# A webhook receiver: one JSON line per request (path, headers, body, arrival time) to the file
# argv[1]. /ok answers 200, /fail 500, /hang never answers.
RECEIVER = r"""
import http.server, json, sys, time
out = open(sys.argv[1], "a")
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        out.write(json.dumps({"path": self.path, "headers": dict(self.headers), "body": body,
                              "time": time.monotonic()}) + "\n")
        out.flush()
        if self.path == "/hang":
            time.sleep(60)
            return
        status = 500 if self.path == "/fail" else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
"""


def verify(secret, headers, body, max_age=300):
    """What a receiver does: recompute the signature over timestamp + "." + body and compare
    in constant time; refuse old timestamps (replays)."""
    timestamp = headers["X-Jitd-Timestamp"]
    if abs(time.time() - int(timestamp)) > max_age:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest("sha256=" + expected, headers["X-Jitd-Signature"])


class Webhooks(LabTest):
    def start(self, *webhooks):
        """webhooks: (path, extra YAML lines) each; the receiver runs in jitd's namespace."""
        lab = self.lab
        self.received_path = os.path.join(lab.dir, "received.jsonl")
        secret_file = os.path.join(lab.dir, "webhook.secret")
        with open(os.open(secret_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(SECRET + "\n")
        receiver = subprocess.Popen(["ip", "netns", "exec", lab.server_ns, sys.executable, "-c",
                                     RECEIVER, self.received_path, str(PORT)],
                                    stdout=subprocess.PIPE, text=True)
        lab.holders.append(receiver)
        self.assertEqual(receiver.stdout.readline().strip(), "ready")
        with open(lab.config, "a") as f:
            f.write("webhooks:\n")
            for path, extra in webhooks:
                f.write(f"  - url: http://127.0.0.1:{PORT}{path}\n    secretFile: {secret_file}\n")
                for line in extra:
                    f.write(f"    {line}\n")
        lab.start_jitd()

    def received(self, path=None):
        if not os.path.exists(self.received_path):
            return []
        with open(self.received_path) as f:
            requests = [json.loads(line) for line in f]
        return [r for r in requests if path is None or r["path"] == path]

    def wait_received(self, count, path=None, timeout=5.0):
        self.assertIsNotNone(self.lab.wait_for(lambda: len(self.received(path)) >= count,
                                               timeout=timeout),
                             f"expected {count} request(s): {self.received(path)}")
        return self.received(path)

    def webhook_status(self):
        status, reply = self.lab.api("GET", "/v1/status")
        self.assertEqual(status, 200, reply)
        return reply["webhooks"]

    def test_signed_events_for_grant_revoke_and_refusal(self):
        self.start(("/ok", []))
        lab = self.lab
        granted = lab.jitctl("grant", "--port", "22", "--source", CLIENT_A, "--duration", "5m",
                             "--reason", "webhook test", "--json")
        self.assertEqual(granted.returncode, 0, granted.stderr)
        grant_id = json.loads(granted.stdout)["id"]
        [request] = self.wait_received(1)
        headers, body = request["headers"], request["body"]
        self.assertTrue(verify(SECRET, headers, body), request)
        self.assertEqual(headers["X-Jitd-Event"], "grant")
        self.assertEqual(headers["Content-Type"], "application/json")
        event = json.loads(body)
        self.assertEqual((event["event"], event["outcome"], event["grantId"], event["source"]),
                         ("grant", "granted", grant_id, CLIENT_A))
        self.assertEqual(event["ports"], [{"number": 22, "protocol": "tcp"}])
        self.assertEqual(event["deliveryId"], headers["X-Jitd-Delivery"])
        self.assertEqual(event["user"], "root")
        self.assertTrue(event["endTimeUtc"])
        # A receiver that checks the signature refuses a changed body, a wrong secret, and an
        # old timestamp.
        self.assertFalse(verify(SECRET, headers, body.replace(CLIENT_A, CLIENT_B)))
        self.assertFalse(verify("wrong", headers, body))
        self.assertFalse(verify(SECRET, {**headers, "X-Jitd-Timestamp": "1000000000"}, body))

        revoked = lab.jitctl("revoke", grant_id)
        self.assertEqual(revoked.returncode, 0, revoked.stderr)
        refused = lab.jitctl("grant", "--port", "4444", "--source", CLIENT_A, "--duration", "5m")
        self.assertNotEqual(refused.returncode, 0)
        requests = self.wait_received(3)
        events = [json.loads(r["body"]) for r in requests]
        self.assertEqual([(e["event"], e["outcome"]) for e in events],
                         [("grant", "granted"), ("revoke", "revoked"), ("refusal", "refused")])
        self.assertTrue(all(verify(SECRET, r["headers"], r["body"]) for r in requests))
        self.assertEqual(events[1]["grantId"], grant_id)
        self.assertEqual(events[2]["code"], "PortNotInPolicy")
        self.assertEqual(len({e["deliveryId"] for e in events}), 3)
        [webhook] = self.webhook_status()
        self.assertEqual(webhook["url"], f"http://127.0.0.1:{PORT}/ok")
        self.assertEqual((webhook["delivered"], webhook["failedAttempts"], webhook["givenUp"],
                          webhook["queued"]), (3, 0, 0, 0), webhook)
        self.assertIsNotNone(webhook["lastSuccessTime"])

    def test_failing_receiver_gets_bounded_attempts_with_growing_gaps(self):
        self.start(("/fail", ["maxAttempts: 3", "events: [grant]"]))
        lab = self.lab
        lab.grant(CLIENT_A)
        attempts = self.wait_received(3, timeout=8)
        self.assertEqual(len({a["headers"]["X-Jitd-Delivery"] for a in attempts}), 1,
                         "every attempt is the same delivery")
        self.assertTrue(all(verify(SECRET, a["headers"], a["body"]) for a in attempts))
        gaps = [b["time"] - a["time"] for a, b in zip(attempts, attempts[1:])]
        self.assertGreaterEqual(gaps[0], 0.9, gaps)
        self.assertGreaterEqual(gaps[1], 1.9, gaps)
        self.assertGreater(gaps[1], gaps[0], gaps)
        time.sleep(4.5)  # the next gap would be 4 s: there is no fourth attempt
        self.assertEqual(len(self.received()), 3)
        [webhook] = self.webhook_status()
        self.assertEqual((webhook["delivered"], webhook["failedAttempts"], webhook["givenUp"],
                          webhook["queued"]), (0, 3, 1, 0), webhook)
        self.assertEqual(webhook["lastError"], "HTTP 500")
        self.assertIsNotNone(webhook["lastErrorTime"])
        self.assertIsNone(webhook["lastSuccessTime"])
        shown = lab.jitctl("status")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertIn(f"webhook http://127.0.0.1:{PORT}/fail: 0 delivered, 1 given up", shown.stdout)
        self.assertIn("HTTP 500", shown.stdout)
        # The same counts as series on GET /metrics, for alerting on a failing receiver.
        connection = UnixHTTPConnection(lab.socket)
        try:
            connection.request("GET", "/metrics")
            metrics = connection.getresponse().read().decode()
        finally:
            connection.close()
        url = f'url="http://127.0.0.1:{PORT}/fail"'
        self.assertIn(f'jitd_webhook_deliveries_total{{{url},outcome="given_up"}} 1\n', metrics)
        self.assertIn(f'jitd_webhook_deliveries_total{{{url},outcome="delivered"}} 0\n', metrics)
        self.assertIn(f'jitd_webhook_failed_attempts_total{{{url}}} 3\n', metrics)

    def test_hanging_receiver_does_not_delay_grants(self):
        self.start(("/hang", ["timeout: 1s", "maxAttempts: 2"]))
        lab = self.lab
        slowest = 0.0
        for source in (CLIENT_A, CLIENT_B, CLIENT_A, CLIENT_B, CLIENT_A):
            began = time.monotonic()
            lab.grant(source, duration="PT5M")
            slowest = max(slowest, time.monotonic() - began)
        self.wait_received(1)
        began = time.monotonic()
        lab.grant(CLIENT_B, duration="PT5M")
        slowest = max(slowest, time.monotonic() - began)
        self.assertLess(slowest, 0.5, "a grant waited for the webhook")
        # The attempt in flight times out after 1 s and shows as a failure, the rest wait.
        self.assertIsNotNone(lab.wait_for(lambda: self.webhook_status()[0]["failedAttempts"] >= 1,
                                          timeout=4))
        [webhook] = self.webhook_status()
        self.assertIn("timed out", webhook["lastError"])
        self.assertEqual(webhook["delivered"], 0)
        self.assertGreaterEqual(webhook["queued"], 5, webhook)
        # jitd stops at once with deliveries pending, and says how many it did not send.
        began = time.monotonic()
        lab.kill_jitd(15)
        self.assertLess(time.monotonic() - began, 2)
        self.assertIn("not sent: jitd is stopping", lab.log())


if __name__ == "__main__":
    unittest.main()
