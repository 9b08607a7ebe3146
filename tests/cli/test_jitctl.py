"""jitctl against a stand-in jitd that answers odd replies. No root, no kernel.

jitctl must name what is wrong with a reply and exit non-zero, never crash on it."""
import http.server
import json
import os
import socketserver
import subprocess
import tempfile
import threading
import unittest

JITCTL = os.environ.get("JITCTL_BIN", "jitctl")

GRANT = {
    "id": "g-1", "requestor": {"name": "alice", "uid": 1000},
    "allowedSourceAddressPrefix": "192.0.2.7/32",
    "ports": [{"number": 22, "protocol": "tcp", "status": "Active", "statusReason": "UserRequested"}],
    "startTimeUtc": "2030-01-01T10:00:00Z", "endTimeUtc": "2030-01-01T10:30:00Z",
    "justification": "deploy", "status": "Active", "statusReason": "UserRequested",
    "remainingSeconds": 1800,
}
POLICY = {
    "ports": [{"number": 22, "protocol": "tcp", "allowedSourceAddressPrefixes": ["192.0.2.0/24"],
               "maxRequestAccessDuration": "PT3H"}],
    "permanentAllowList": [{"sourceAddressPrefixes": ["198.51.100.0/24"], "ports": [],
                            "description": "bastion"}],
}


def without(document, key):
    return {k: v for k, v in document.items() if k != key}


class StandInJitd(socketserver.UnixStreamServer):
    """Answers every request with the status and raw body a test sets."""
    status = 200
    body = "{}"


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length", 0))
        self.server.received = self.rfile.read(length)
        payload = self.server.body.encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = answer

    # The default log line reads client_address[0], which a Unix socket does not have.
    def log_message(self, *args):
        pass


class Jitctl(unittest.TestCase):
    def setUp(self):
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.socket = os.path.join(directory.name, "jitd.sock")
        self.server = StandInJitd(self.socket, Handler)
        self.addCleanup(self.server.server_close)
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(thread.join)
        self.addCleanup(self.server.shutdown)

    def run_jitctl(self, command, status, body):
        self.server.status = status
        self.server.body = body if isinstance(body, str) else json.dumps(body)
        arguments = {
            "list": ["list"],
            "grant": ["grant", "-p", "22", "--source", "192.0.2.7", "-d", "30m"],
            "revoke": ["revoke", "g-1"],
            "policy": ["policy"],
        }[command]
        return subprocess.run([JITCTL, "--socket", self.socket, *arguments],
                              capture_output=True, text=True, timeout=30)

    def assert_unexpected(self, command, status, body, problem):
        result = self.run_jitctl(command, status, body)
        # A negative code is a signal; 134/139 are abort/segfault seen through a shell.
        self.assertGreater(result.returncode, 0, f"exit status {result.returncode}: {result.stderr}")
        self.assertNotIn(result.returncode, (134, 139), result.stderr)
        self.assertIn("unexpected reply from jitd", result.stderr)
        self.assertIn(problem, result.stderr)
        self.assertEqual(result.stdout, "")

    def test_well_formed_replies_are_printed(self):
        for command, status, body, shown in [
            ("list", 200, {"grants": [GRANT]}, "alice"),
            ("grant", 201, GRANT, "granted g-1"),
            ("revoke", 200, GRANT, "revoked g-1"),
            ("policy", 200, POLICY, "always allowed: 198.51.100.0/24"),
        ]:
            with self.subTest(command=command):
                result = self.run_jitctl(command, status, body)
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertIn(shown, result.stdout)

    def test_reason_that_is_not_utf8_is_sent_not_a_crash(self):
        """A Latin-1 terminal's 'café' is not UTF-8: jitctl sends it with U+FFFD, never aborts."""
        self.server.status, self.server.body = 201, json.dumps(GRANT)
        result = subprocess.run([JITCTL, "--socket", self.socket, "grant", "-p", "22", "--source",
                                 "192.0.2.7", "-d", "30m", "-r", b"caf\xe9"],
                                capture_output=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(self.server.received)["justification"], "caf\ufffd")

    def test_text_from_jitd_cannot_forge_rows_or_reach_the_terminal(self):
        """A requester's justification (and any other text) is shown with its controls escaped:
        no forged table row, no escape sequence, no C1 CSI (U+009B) for the admin's terminal."""
        hostile = "ok\n" + "f" * 17 + " 0.0.0.0/0\t\x1b[2J\x7f\u009b31m\r"
        shown = "ok\\n" + "f" * 17 + " 0.0.0.0/0\\t\\x1b[2J\\x7f\\u009b31m\\r"
        grant = {**GRANT, "justification": hostile, "id": "g-1" + hostile,
                 "requestor": {"name": hostile, "uid": 1000}}
        for command, status, body, stream, lines in [
            ("list", 200, {"grants": [grant]}, "stdout", 2),
            ("grant", 201, grant, "stdout", 1),
            ("revoke", 200, grant, "stdout", 1),
            ("policy", 200, {**POLICY, "permanentAllowList": [
                {**POLICY["permanentAllowList"][0], "description": hostile}]}, "stdout", 3),
            ("revoke", 400, {"error": {"code": "InvalidRequest" + hostile, "message": hostile}},
             "stderr", 1),
        ]:
            with self.subTest(command=command, status=status):
                result = self.run_jitctl(command, status, body)
                output = getattr(result, stream)
                self.assertIn(shown, output)
                self.assertEqual(output.count("\n"), lines, output)
                controls = [c for c in output if c != "\n" and (ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f)]
                self.assertEqual(controls, [], output)

    def test_well_formed_error_is_reported(self):
        result = self.run_jitctl("revoke", 404, {"error": {"code": "NotFound", "message": "no grant g-1"}})
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(result.stderr, "jitctl: no grant g-1 (NotFound)\n")

    def assert_all_unexpected(self, cases):
        for command, status, body, problem in cases:
            with self.subTest(command=command, problem=problem):
                self.assert_unexpected(command, status, body, problem)

    def test_missing_field(self):
        rule = without(POLICY["ports"][0], "allowedSourceAddressPrefixes")
        self.assert_all_unexpected([
            ("list", 200, {"grants": [without(GRANT, "endTimeUtc")]}, "grants[0].endTimeUtc missing"),
            ("list", 200, {"grants": [without(GRANT, "requestor")]}, "grants[0].requestor missing"),
            ("list", 200, {}, "grants missing"),
            ("grant", 201, without(GRANT, "ports"), "ports missing"),
            ("revoke", 200, {}, "id missing"),
            ("policy", 200, {**POLICY, "ports": [rule]}, "ports[0].allowedSourceAddressPrefixes missing"),
        ])

    def test_wrong_type(self):
        rule = {**POLICY["ports"][0], "allowedSourceAddressPrefixes": ["192.0.2.0/24", 7]}
        self.assert_all_unexpected([
            ("list", 200, [], "reply is not an object"),
            ("list", 200, {"grants": [{**GRANT, "requestor": "alice"}]},
             "grants[0].requestor is not an object"),
            ("list", 200, {"grants": [GRANT, 7]}, "grants[1] is not an object"),
            ("grant", 201, {**GRANT, "remainingSeconds": "soon"}, "remainingSeconds is not an integer"),
            ("revoke", 200, {**GRANT, "id": 1}, "id is not a string"),
            ("policy", 200, {**POLICY, "ports": [rule]},
             "ports[0].allowedSourceAddressPrefixes[1] is not a string"),
        ])

    def test_body_not_json(self):
        self.assert_all_unexpected([(command, 200, "<html>proxy error</html>", "body is not JSON")
                                    for command in ("list", "grant", "revoke", "policy")])

    def test_error_reply_without_the_expected_shape(self):
        self.assert_all_unexpected([
            ("grant", 403, {"error": "forbidden"}, "error is not an object"),
            ("revoke", 500, [], "reply is not an object"),
            ("list", 502, {}, "error missing"),
            ("policy", 400, {"error": {"code": "InvalidRequest"}}, "error.message missing"),
        ])

if __name__ == "__main__":
    unittest.main()
