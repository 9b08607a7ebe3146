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
import urllib.parse
from datetime import datetime, timedelta, timezone

JITCTL = os.environ.get("JITCTL_BIN", "jitctl")

GRANT = {
    "id": "g-1", "requestor": {"name": "alice", "uid": 1000},
    "allowedSourceAddressPrefix": "192.0.2.7/32",
    "ports": [{"number": 22, "protocol": "tcp", "status": "Initiated", "statusReason": "UserRequested",
               "allowedSourceAddressPrefix": "192.0.2.7/32", "endTimeUtc": "2030-01-01T10:30:00Z"}],
    "requestedTimeUtc": "2030-01-01T09:59:59Z",
    "startTimeUtc": "2030-01-01T10:00:00Z", "endTimeUtc": "2030-01-01T10:30:00Z",
    "justification": "deploy", "status": "Initiated", "statusReason": "UserRequested",
    "remainingSeconds": 1800,
}
AWAITING = {**GRANT, "status": "Pending", "statusReason": "AwaitingApproval", "remainingSeconds": 0,
            "approval": {"required": True, "approvers": "users alice; groups ops",
                         "expiresTimeUtc": "2030-01-01T11:00:00Z"}}
SCHEDULED = {**GRANT, "status": "Pending", "statusReason": "Scheduled", "remainingSeconds": 0}
ENDED = {**GRANT, "id": "g-2", "status": "Revoked", "statusReason": "Expired", "remainingSeconds": 0,
         "ports": [{**GRANT["ports"][0], "status": "Revoked", "statusReason": "Expired"}],
         "endedBy": {"name": "bob", "uid": 1001}, "endedTimeUtc": "2030-01-01T10:20:00Z",
         "approval": {"required": True, "approvers": "groups ops",
                      "decidedBy": {"name": "carol", "uid": 1002}},
         "warnings": ["source is wide"]}
CONFLICT = {"kind": "drops", "certain": True, "family": "ip", "table": "filter", "chain": "INPUT",
            "hook": "input", "priority": 0, "handle": 7, "ports": [{"number": 22, "protocol": "tcp"}],
            "rule": "tcp dport 22 drop", "advice": "delete it: nft delete rule ip filter INPUT handle 7"}
DOCTOR = {"conflicts": [CONFLICT], "legacyIptablesTables": ["filter"], "notes": ["checked 3 tables"]}
SNIPPET = ("# Management services ...\nports:\n  - number: 5432  # postgresql\n    protocol: tcp\n")
RECOMMEND = {
    "unprotected": [{"port": 5432, "protocol": "tcp", "service": "postgresql",
                     "addresses": ["0.0.0.0", "::"]}],
    "unusedProtected": [{"port": 22, "protocol": "tcp", "service": "ssh", "addresses": [],
                         "origin": "/etc/jitd/policies.d/10-management.yaml:5:5"},
                        {"port": 8443, "protocol": "*", "service": "", "addresses": ["127.0.0.1"],
                         "origin": "/etc/jitd/policies.d/20-web.yaml:3:5"}],
    "snippet": SNIPPET,
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
    """Answers with the replies a test scripts, one per request in order, or else every request
    with the status and raw body a test sets. Keeps what it was asked."""
    status = 200
    body = "{}"

    def __init__(self, *args):
        super().__init__(*args)
        self.script = []
        self.requests = []


class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length", 0))
        self.server.received = self.rfile.read(length)
        self.server.requests.append((self.command, self.path, self.server.received))
        status, body = self.server.script.pop(0) if self.server.script else (self.server.status,
                                                                           self.server.body)
        payload = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = answer

    # The default log line reads client_address[0], which a Unix socket does not have.
    def log_message(self, *args):
        pass


class StandInTest(unittest.TestCase):
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

    def jitctl(self, *arguments, replies=()):
        """jitctl with `arguments`, the stand-in answering `replies` ((status, body), ...) in order."""
        self.server.script = list(replies)
        self.server.requests.clear()
        return subprocess.run([JITCTL, "--socket", self.socket, *arguments],
                              capture_output=True, text=True, timeout=30)

    def sent(self):
        """(method, path, body) of each request jitctl made; the body as JSON, None when empty."""
        return [(method, path, json.loads(body) if body else None)
                for method, path, body in self.server.requests]

    def assert_refused_before_asking(self, arguments, message):
        result = self.jitctl(*arguments)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(message, result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertEqual(self.sent(), [])

    def assert_unusable(self, arguments, replies, problem):
        result = self.jitctl(*arguments, replies=replies)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("unexpected reply from jitd", result.stderr)
        self.assertIn(problem, result.stderr)
        self.assertEqual(result.stdout, "")


class Jitctl(StandInTest):
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


GRANT_ARGUMENTS = ["grant", "--source", "192.0.2.7"]


class Grant(StandInTest):
    def test_duration_and_start_are_checked_and_sent_in_iso_8601(self):
        result = self.jitctl(*GRANT_ARGUMENTS, "-p", "22", "-d", "1d12h", "--start",
                             "2030-01-01T09:00:00Z", "-r", "deploy", replies=[(201, GRANT)])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.sent(), [("POST", "/v1/grants", {
            "ports": [{"number": 22, "protocol": "tcp"}], "allowedSourceAddressPrefix": "192.0.2.7",
            "justification": "deploy", "duration": "P1DT12H", "startTimeUtc": "2030-01-01T09:00:00Z"})])
        self.assertEqual(result.stdout,
                         "granted g-1: 192.0.2.7/32 → 22/tcp until 2030-01-01T10:30:00Z (30m 0s)\n")

    def test_start_from_now(self):
        for start in ("+10m", "in 10m"):
            with self.subTest(start=start):
                before = datetime.now(timezone.utc)
                result = self.jitctl(*GRANT_ARGUMENTS, "-p", "22", "--start", start,
                                     replies=[(202, SCHEDULED)])
                self.assertEqual(result.returncode, 0, result.stderr)
                sent = datetime.fromisoformat(self.sent()[0][2]["startTimeUtc"].replace("Z", "+00:00"))
                self.assertLessEqual(abs(sent - before - timedelta(minutes=10)), timedelta(seconds=5))

    def test_without_duration_the_daemon_chooses_and_its_end_is_printed(self):
        result = self.jitctl(*GRANT_ARGUMENTS, "-p", "22", replies=[(201, GRANT)])
        self.assertEqual(result.returncode, 0, result.stderr)
        body = self.sent()[0][2]
        self.assertNotIn("duration", body)
        self.assertNotIn("endTimeUtc", body)
        self.assertIn("until 2030-01-01T10:30:00Z", result.stdout)

    def test_without_port_asks_for_ssh_when_the_policy_protects_it(self):
        for protocol in ("tcp", "*"):
            with self.subTest(protocol=protocol):
                policy = {"ports": [{"number": 3389, "protocol": "tcp"},
                                    {"number": 22, "protocol": protocol}]}
                result = self.jitctl(*GRANT_ARGUMENTS, "-d", "30m",
                                     replies=[(200, policy), (201, GRANT)])
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertIn("no --port given: asking for 22/tcp, which the policy protects",
                              result.stderr)
                sent = self.sent()
                self.assertEqual([(method, path) for method, path, _ in sent],
                                 [("GET", "/v1/policy"), ("POST", "/v1/grants")])
                self.assertEqual(sent[1][2]["ports"], [{"number": 22, "protocol": "tcp"}])
                self.assertEqual(sent[1][2]["duration"], "PT30M")

    def test_without_port_is_refused_when_the_policy_does_not_protect_ssh(self):
        for policy, message in [
            ({"ports": [{"number": 3389, "protocol": "tcp"}, {"number": 22, "protocol": "udp"}]},
             "give --port, one of: 3389/tcp, 22/udp"),
            ({"ports": []}, "the policy protects no port"),
        ]:
            with self.subTest(message=message):
                result = self.jitctl(*GRANT_ARGUMENTS, replies=[(200, policy)])
                self.assertEqual(result.returncode, 1, result.stderr)
                self.assertIn(message, result.stderr)
                self.assertEqual([path for _, path, _ in self.sent()], ["/v1/policy"])

    def test_policy_reply_without_the_expected_shape(self):
        self.assert_unusable(GRANT_ARGUMENTS, [(200, {"ports": [{"number": "22", "protocol": "tcp"}]})],
                             "ports[0].number is not an integer")

    def test_warnings_go_to_stderr(self):
        result = self.jitctl(*GRANT_ARGUMENTS, "-p", "22",
                             replies=[(201, {**GRANT, "warnings": ["wide\x1b[2J", "second"]})])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stderr, "warning: wide\\x1b[2J\nwarning: second\n")
        self.assertIn("granted g-1", result.stdout)

    def test_pending_says_what_it_waits_for_and_succeeds(self):
        for reply, shown in [
            (AWAITING, "pending g-1: 192.0.2.7/32 → 22/tcp; waits for approval by users alice; "
                       "groups ops (the request lapses 2030-01-01T11:00:00Z)\n"),
            (SCHEDULED, "pending g-1: 192.0.2.7/32 → 22/tcp; waits for its start, "
                        "2030-01-01T10:00:00Z, then open until 2030-01-01T10:30:00Z\n"),
        ]:
            with self.subTest(reason=reply["statusReason"]):
                result = self.jitctl(*GRANT_ARGUMENTS, "-p", "22", replies=[(202, reply)])
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(result.stdout, shown)

    def test_a_split_request_prints_each_grant(self):
        second = {**GRANT, "id": "g-2", "ports": [{**GRANT["ports"][0], "number": 3389}]}
        result = self.jitctl(*GRANT_ARGUMENTS, "-p", "22", "-p", "3389",
                             replies=[(201, {"grants": [GRANT, second]})])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual([line.split(":")[0] for line in result.stdout.splitlines()],
                         ["granted g-1", "granted g-2"])
        self.assertIn("3389/tcp", result.stdout)

    def test_odd_replies(self):
        for reply, problem in [
            (without(AWAITING, "approval"), "approval missing"),
            ({**AWAITING, "approval": {"required": True}}, "approval.approvers missing"),
            ({**GRANT, "warnings": "wide"}, "warnings is not an array"),
            ({**GRANT, "warnings": [1]}, "warnings[0] is not a string"),
            ({"grants": [GRANT, {}]}, "grants[1].status missing"),
            (without(GRANT, "status"), "status missing"),
        ]:
            with self.subTest(problem=problem):
                self.assert_unusable([*GRANT_ARGUMENTS, "-p", "22"], [(201, reply)], problem)

    def test_bad_arguments_are_refused_before_asking(self):
        for arguments, message in [
            (["-p", "22", "-d", "soon"], "--duration: 'soon' is not a valid duration"),
            (["-p", "22", "--start", "tomorrow"], "--start: 'tomorrow' is not a UTC time"),
            (["-p", "22", "--start", "+5x"], "--start: '5x' is not a valid duration"),
            (["-p", "22", "--end-time", "2030-01-01 10:00"], "--end-time: '2030-01-01 10:00' is not"),
            (["-p", "22", "-d", "30m", "--end-time", "2030-01-01T10:00:00Z"],
             "--duration excludes --end-time"),
            (["-p", "70000"], "'70000' is not PORT"),
        ]:
            with self.subTest(arguments=arguments):
                self.assert_refused_before_asking([*GRANT_ARGUMENTS, *arguments], message)


class Show(StandInTest):
    def test_every_field(self):
        result = self.jitctl("show", "g-2", replies=[(200, ENDED)])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.sent(), [("GET", "/v1/grants/g-2", None)])
        for line in ["id:             g-2", "status:         Revoked (Expired)",
                     "requestor:      alice (uid 1000)", "source:         192.0.2.7/32",
                     "  22/tcp    Revoked (Expired)", "from 192.0.2.7/32 until 2030-01-01T10:30:00Z",
                     "requested:      2030-01-01T09:59:59Z", "start:          2030-01-01T10:00:00Z",
                     "end:            2030-01-01T10:30:00Z", "remaining:      0s",
                     "justification:  deploy", "approval:       required",
                     "  approvers:    groups ops", "  decided by:   carol (uid 1002)",
                     "ended by:       bob (uid 1001)", "ended:          2030-01-01T10:20:00Z",
                     "warning:        source is wide"]:
            self.assertIn(line, result.stdout)

    def test_optional_fields_may_be_absent(self):
        result = self.jitctl("show", "g-1", replies=[(200, GRANT)])
        self.assertEqual(result.returncode, 0, result.stderr)
        for absent in ("approval", "ended", "warning"):
            self.assertNotIn(absent, result.stdout)

    def test_the_id_stays_one_path_segment(self):
        self.jitctl("show", "../policy?x=1", replies=[(200, GRANT)])
        self.assertEqual(self.sent()[0][1], "/v1/grants/..%2Fpolicy%3Fx%3D1")

    def test_unknown_grant(self):
        result = self.jitctl("show", "g-9", replies=[(404, {"error": {"code": "NotFound",
                                                                      "message": "no grant g-9"}})])
        self.assertEqual((result.returncode, result.stderr), (1, "jitctl: no grant g-9 (NotFound)\n"))

    def test_odd_replies(self):
        for reply, problem in [
            (without(ENDED, "requestedTimeUtc"), "requestedTimeUtc missing"),
            ({**ENDED, "ports": [without(ENDED["ports"][0], "endTimeUtc")]}, "ports[0].endTimeUtc missing"),
            ({**ENDED, "approval": {**ENDED["approval"], "required": "yes"}},
             "approval.required is not a boolean"),
            ({**ENDED, "endedBy": "bob"}, "endedBy is not an object"),
            ({**ENDED, "endedBy": {"name": "bob"}}, "endedBy.uid missing"),
            ([], "reply is not an object"),
        ]:
            with self.subTest(problem=problem):
                self.assert_unusable(["show", "g-2"], [(200, reply)], problem)

    def test_missing_id(self):
        self.assert_refused_before_asking(["show"], "id is required")


def page(*grants, next_cursor=None):
    return {"grants": list(grants), **({"next": next_cursor} if next_cursor else {})}


class List(StandInTest):
    def query(self, request):
        return urllib.parse.parse_qs(urllib.parse.urlsplit(request[1]).query)

    def test_active_by_default_without_status_columns(self):
        result = self.jitctl("list", replies=[(200, page(GRANT))])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.sent(), [("GET", "/v1/grants?state=active", None)])
        self.assertNotIn("STATUS", result.stdout)
        self.assertIn("alice", result.stdout)

    def test_filters_are_sent_and_status_shown(self):
        for flag, state in [("--all", "all"), ("--ended", "ended"), ("--pending", "pending")]:
            with self.subTest(flag=flag):
                result = self.jitctl("list", flag, "--since", "7d", "--user", "a b&c=d", "--port",
                                     "22", replies=[(200, page(ENDED))])
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(self.query(self.sent()[0]), {
                    "state": [state], "since": ["P7D"], "user": ["a b&c=d"], "port": ["22"]})
                header, row = result.stdout.splitlines()
                self.assertTrue(header.startswith("ID                STATUS     STATUS REASON"), header)
                self.assertTrue(row.startswith("g-2               Revoked    Expired"), row)

    def test_since_is_sent_in_iso_8601(self):
        for since, sent in [("12h", "PT12H"), ("30m", "PT30M"), ("P7D", "P7D"),
                            ("2030-01-01T00:00:00Z", "2030-01-01T00:00:00Z")]:
            with self.subTest(since=since):
                self.assertEqual(self.jitctl("list", "--all", "--since", since,
                                             replies=[(200, page())]).returncode, 0)
                self.assertEqual(self.query(self.sent()[0])["since"], [sent])

    def test_follows_next_to_the_end(self):
        second = {**ENDED, "id": "g-3"}
        result = self.jitctl("list", "--all", replies=[
            (200, page(GRANT, next_cursor="c/1")), (200, page(next_cursor="c2")), (200, page(second))])
        self.assertEqual(result.returncode, 0, result.stderr)
        cursors = [self.query(request).get("cursor") for request in self.sent()]
        self.assertEqual(cursors, [None, ["c/1"], ["c2"]])
        self.assertEqual([line.split()[0] for line in result.stdout.splitlines()[1:]], ["g-1", "g-3"])

    def test_limit_stops_early(self):
        result = self.jitctl("list", "--all", "--limit", "2", replies=[
            (200, page(GRANT, next_cursor="c1")), (200, page(ENDED, GRANT, next_cursor="c2"))])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual([self.query(request)["limit"] for request in self.sent()], [["2"], ["1"]])
        self.assertEqual(len(result.stdout.splitlines()), 3)

    def test_json_is_one_document_of_every_page(self):
        result = self.jitctl("list", "--all", "--json", replies=[
            (200, page(GRANT, next_cursor="c1")), (200, page(ENDED))])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout), {"grants": [GRANT, ENDED]})

    def test_odd_replies(self):
        for replies, problem in [
            ([(200, {**page(GRANT), "next": 7})], "next is not a string"),
            ([(200, page(GRANT, next_cursor="c1")), (200, page(next_cursor="c1"))],
             "next repeats an earlier cursor, 'c1'"),
            ([(200, page(GRANT, next_cursor="c1")), (200, {"grants": {}})], "grants is not an array"),
            ([(200, page(without(ENDED, "status")))], "grants[0].status missing"),
        ]:
            with self.subTest(problem=problem):
                self.assert_unusable(["list", "--all"], replies, problem)

    def test_bad_arguments_are_refused_before_asking(self):
        for arguments, message in [
            (["--all", "--ended"], "give at most one of --all, --ended, --pending"),
            (["--since", "last week"], "--since: 'last week' is neither a UTC time"),
            (["--port", "0"], "--port"),
            (["--port", "ssh"], "--port"),
            (["--limit", "0"], "--limit"),
        ]:
            with self.subTest(arguments=arguments):
                self.assert_refused_before_asking(["list", *arguments], message)


class Extend(StandInTest):
    def test_by_and_until(self):
        for arguments, body in [
            (["--by", "30m"], {"duration": "PT30M"}),
            (["--by", "PT1H"], {"duration": "PT1H"}),
            (["--until", "2030-01-01T12:00:00Z"], {"endTimeUtc": "2030-01-01T12:00:00Z"}),
        ]:
            with self.subTest(arguments=arguments):
                extended = {**GRANT, "endTimeUtc": "2030-01-01T12:00:00Z", "remainingSeconds": 7200}
                result = self.jitctl("extend", "g-1", *arguments, replies=[(200, extended)])
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(self.sent(), [("POST", "/v1/grants/g-1/extend", body)])
                self.assertEqual(result.stdout, "extended g-1: 192.0.2.7/32 → 22/tcp until "
                                                "2030-01-01T12:00:00Z (2h 0m 0s)\n")

    def test_bad_arguments_are_refused_before_asking(self):
        for arguments, message in [
            (["--by", "30m", "--until", "2030-01-01T12:00:00Z"], "give exactly one of --by"),
            ([], "give exactly one of --by DURATION, --until TIME"),
            (["--by", "half an hour"], "--by: 'half an hour' is not a valid duration"),
            (["--by", "-5m"], "--by"),
            (["--until", "noon"], "--until: 'noon' is not a UTC time"),
        ]:
            with self.subTest(arguments=arguments):
                self.assert_refused_before_asking(["extend", "g-1", *arguments], message)

    def test_odd_reply(self):
        self.assert_unusable(["extend", "g-1", "--by", "1h"], [(200, without(GRANT, "endTimeUtc"))],
                             "endTimeUtc missing")


class Decide(StandInTest):
    def test_approve_and_deny(self):
        denied = {**AWAITING, "status": "Revoked", "statusReason": "Denied",
                  "endedTimeUtc": "2030-01-01T10:05:00Z"}
        for arguments, reply, body, shown in [
            (["approve", "g-1"], GRANT, {}, "approved g-1: 192.0.2.7/32 → 22/tcp until "),
            (["approve", "g-1", "-j", "INC-7"], SCHEDULED, {"justification": "INC-7"},
             "approved g-1: 192.0.2.7/32 → 22/tcp; waits for its start"),
            (["deny", "g-1", "--justification", "no ticket"], denied, {"justification": "no ticket"},
             "denied g-1: 192.0.2.7/32 → 22/tcp; ended 2030-01-01T10:05:00Z (Denied)\n"),
        ]:
            with self.subTest(arguments=arguments):
                result = self.jitctl(*arguments, replies=[(200, reply)])
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(self.sent(), [("POST", f"/v1/grants/g-1/{arguments[0]}", body)])
                self.assertTrue(result.stdout.startswith(shown), result.stdout)

    def test_refusal_and_odd_reply(self):
        result = self.jitctl("approve", "g-1", replies=[
            (403, {"error": {"code": "Forbidden", "message": "approve: only groups ops"}})])
        self.assertEqual((result.returncode, result.stderr),
                         (1, "jitctl: approve: only groups ops (Forbidden)\n"))
        self.assert_unusable(["deny", "g-1"], [(200, {**GRANT, "id": None})], "id is not a string")


class Doctor(StandInTest):
    def test_conflicts_exit_3(self):
        possible = {**CONFLICT, "kind": "accepts", "certain": False, "priority": "filter - 10"}
        del possible["hook"]
        result = self.jitctl("doctor", replies=[(200, {**DOCTOR, "conflicts": [CONFLICT, possible]})])
        self.assertEqual(result.returncode, 3, result.stderr)
        self.assertEqual(self.sent(), [("GET", "/v1/doctor", None)])
        self.assertEqual(result.stdout, (
            "conflict 1 (certain): a rule drops 22/tcp: a grant may not open it\n"
            "  where:  family ip, table filter, chain INPUT, hook input, priority 0, handle 7\n"
            "  rule:   tcp dport 22 drop\n"
            "  advice: delete it: nft delete rule ip filter INPUT handle 7\n"
            "conflict 2 (possible): a rule accepts 22/tcp: jitd's drop now blocks its clients unless granted\n"
            "  where:  family ip, table filter, chain INPUT, priority filter - 10, handle 7\n"
            "  rule:   tcp dport 22 drop\n"
            "  advice: delete it: nft delete rule ip filter INPUT handle 7\n"
            "legacy iptables tables: filter\n"
            "note: checked 3 tables\n"))

    def test_advice_keeps_its_lines(self):
        advice = "add to a policy file:\npermanentAllowList:\n  - sourceAddressPrefixes: [\"10.0.0.4\"]"
        result = self.jitctl("doctor", replies=[(200, {**DOCTOR, "conflicts": [{**CONFLICT, "advice": advice}]})])
        self.assertEqual(result.returncode, 3, result.stderr)
        self.assertIn("  advice: add to a policy file:\n"
                      "          permanentAllowList:\n"
                      "            - sourceAddressPrefixes: [\"10.0.0.4\"]\n", result.stdout)

    def test_no_conflicts_exit_0(self):
        result = self.jitctl("doctor", replies=[
            (200, {"conflicts": [], "legacyIptablesTables": [], "notes": []})])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, "no conflicting rules found\nlegacy iptables tables: none\n")

    def test_json_keeps_the_exit_status(self):
        result = self.jitctl("doctor", "--json", replies=[(200, DOCTOR)])
        self.assertEqual(result.returncode, 3, result.stderr)
        self.assertEqual(json.loads(result.stdout), DOCTOR)

    def test_odd_replies(self):
        for reply, problem in [
            (without(DOCTOR, "conflicts"), "conflicts missing"),
            ({**DOCTOR, "conflicts": [{**CONFLICT, "certain": "yes"}]}, "conflicts[0].certain is not a boolean"),
            ({**DOCTOR, "conflicts": [without(CONFLICT, "handle")]}, "conflicts[0].handle missing"),
            ({**DOCTOR, "conflicts": [{**CONFLICT, "handle": [7]}]},
             "conflicts[0].handle is not an integer or a string"),
            ({**DOCTOR, "conflicts": [{**CONFLICT, "priority": 1.5}]},
             "conflicts[0].priority is not an integer or a string"),
            ({**DOCTOR, "notes": "none"}, "notes is not an array"),
            (without(DOCTOR, "legacyIptablesTables"), "legacyIptablesTables missing"),
        ]:
            with self.subTest(problem=problem):
                self.assert_unusable(["doctor"], [(200, reply)], problem)

    def test_error_is_a_refusal_not_a_finding(self):
        result = self.jitctl("doctor", replies=[(403, {"error": {"code": "Forbidden", "message": "no"}})])
        self.assertEqual(result.returncode, 1, result.stderr)


class Recommend(StandInTest):
    def test_findings_exit_3_with_the_snippet_as_it_came(self):
        result = self.jitctl("recommend", replies=[(200, RECOMMEND)])
        self.assertEqual(result.returncode, 3, result.stderr)
        self.assertEqual(self.sent(), [("GET", "/v1/recommendations", None)])
        self.assertEqual(result.stdout, (
            "management services reachable beyond loopback that no rule protects:\n"
            "  5432/tcp (postgresql) listening on 0.0.0.0, ::\n"
            "protected ports nothing listens on beyond loopback (stale rules?):\n"
            "  22/tcp (ssh): nothing listens; rule at /etc/jitd/policies.d/10-management.yaml:5:5\n"
            "  8443/*: loopback only (127.0.0.1); rule at /etc/jitd/policies.d/20-web.yaml:3:5\n"
            "policy snippet:\n" + SNIPPET))

    def test_unused_rules_alone_exit_3_without_a_snippet(self):
        reply = {**RECOMMEND, "unprotected": [], "snippet": ""}
        result = self.jitctl("recommend", replies=[(200, reply)])
        self.assertEqual(result.returncode, 3, result.stderr)
        self.assertNotIn("snippet", result.stdout)

    def test_nothing_to_recommend_exit_0(self):
        result = self.jitctl("recommend", replies=[
            (200, {"unprotected": [], "unusedProtected": [], "snippet": ""})])
        self.assertEqual((result.returncode, result.stdout), (0, "nothing to recommend\n"))

    def test_json_keeps_the_exit_status(self):
        result = self.jitctl("recommend", "--json", replies=[(200, RECOMMEND)])
        self.assertEqual(result.returncode, 3, result.stderr)
        self.assertEqual(json.loads(result.stdout), RECOMMEND)

    def test_odd_replies(self):
        for reply, problem in [
            (without(RECOMMEND, "unprotected"), "unprotected missing"),
            (without(RECOMMEND, "snippet"), "snippet missing"),
            ({**RECOMMEND, "unprotected": [{**RECOMMEND["unprotected"][0], "port": "5432"}]},
             "unprotected[0].port is not an integer"),
            ({**RECOMMEND, "unusedProtected": [without(RECOMMEND["unusedProtected"][0], "origin")]},
             "unusedProtected[0].origin missing"),
        ]:
            with self.subTest(problem=problem):
                self.assert_unusable(["recommend"], [(200, reply)], problem)

    def test_hostile_text_is_escaped(self):
        hostile = "ok\n\x1b[2J"
        reply = {**RECOMMEND, "unprotected": [{**RECOMMEND["unprotected"][0], "service": hostile}],
                 "snippet": "ports:\n  - number: 1 # \x1b[2J\n"}
        result = self.jitctl("recommend", replies=[(200, reply)])
        self.assertEqual(result.returncode, 3, result.stderr)
        self.assertNotIn("\x1b", result.stdout)
        self.assertIn("(ok\\n\\x1b[2J)", result.stdout)
        self.assertIn("  - number: 1 # \\x1b[2J\n", result.stdout)


class Escaping(StandInTest):
    """Text from jitd in the new commands' output is escaped as in the old ones."""
    HOSTILE = "ok\n\x1b[2J\u009b31m"
    SHOWN = "ok\\n\\x1b[2J\\u009b31m"

    def test_no_control_reaches_the_terminal(self):
        hostile = self.HOSTILE
        ended = {**ENDED, "justification": hostile, "endedBy": {"name": hostile, "uid": 1},
                 "warnings": [hostile], "approval": {"required": True, "approvers": hostile}}
        conflict = {**CONFLICT, "advice": hostile, "rule": hostile, "priority": hostile}
        for arguments, reply in [
            (["show", "g-2"], ended),
            (["list", "--ended"], page(ended)),
            (["grant", "--source", "192.0.2.7", "-p", "22"], {**AWAITING, "approval": ended["approval"]}),
            (["doctor"], {**DOCTOR, "conflicts": [conflict], "notes": [hostile]}),
        ]:
            with self.subTest(arguments=arguments):
                result = self.jitctl(*arguments, replies=[(200, reply)])
                self.assertIn(result.returncode, (0, 3), result.stderr)
                output = result.stdout + result.stderr
                self.assertIn(self.SHOWN, output)
                controls = [c for c in output if c != "\n" and (ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f)]
                self.assertEqual(controls, [], output)


class CommandLine(StandInTest):
    def test_a_bad_command_line_exits_1(self):
        for arguments in (["list", "--nope"], ["frobnicate"], []):
            with self.subTest(arguments=arguments):
                self.assert_refused_before_asking(arguments, "")


GOLDEN_AUDIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unit", "golden", "audit")


def records_page(*records, next_cursor=None):
    return {"records": list(records), **({"next": next_cursor} if next_cursor else {})}


class Audit(StandInTest):
    def query(self, request):
        return urllib.parse.parse_qs(urllib.parse.urlsplit(request[1]).query)

    def golden(self):
        with open(os.path.join(GOLDEN_AUDIT, "records.json")) as f:
            return json.load(f)

    def test_filters_are_sent_for_jitd_to_apply(self):
        result = self.jitctl("audit", "--since", "7d", "--until", "2030-01-01T00:00:00Z",
                             "--user", "a b", "--port", "22", "--event", "request,revoke",
                             "--event", "expire", replies=[(200, records_page())])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(self.query(self.sent()[0]), {
            "since": ["P7D"], "until": ["2030-01-01T00:00:00Z"], "user": ["a b"], "port": ["22"],
            "event": ["request,revoke", "expire"], "limit": ["1000"]})

    def test_csv_of_every_page_matches_the_golden_file(self):
        records = self.golden()
        self.server.script = [
            (200, records_page(*records[:2], next_cursor="c/1")),
            (200, records_page(next_cursor="c2")),  # a short page: little matched in 1 MiB
            (200, records_page(*records[2:]))]
        self.server.requests.clear()
        # Bytes, not text: the CRLF line ends are part of what is checked.
        result = subprocess.run([JITCTL, "--socket", self.socket, "audit", "--format", "csv"],
                                capture_output=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual([self.query(r).get("cursor") for r in self.sent()], [None, ["c/1"], ["c2"]])
        with open(os.path.join(GOLDEN_AUDIT, "records.csv"), "rb") as f:
            self.assertEqual(result.stdout, f.read())

    def test_json_is_one_array_and_limit_counts_records(self):
        records = self.golden()
        result = self.jitctl("audit", "--format", "json", "--limit", "3", replies=[
            (200, records_page(*records[:2], next_cursor="c1")),
            (200, records_page(*records[2:], next_cursor="c2"))])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual([self.query(r)["limit"] for r in self.sent()], [["3"], ["1"]])
        self.assertEqual(json.loads(result.stdout), records[:3])

    def test_table_by_default(self):
        result = self.jitctl("audit", replies=[(200, records_page(*self.golden()))])
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.splitlines()
        self.assertTrue(lines[0].startswith("TIME"), lines[0])
        self.assertEqual(len(lines), 6)

    def test_bad_arguments_are_refused_before_asking(self):
        for arguments, message in [
            (["--format", "xml"], "--format"), (["--port", "0"], "--port"),
            (["--since", "yesterday"], "--since: 'yesterday'"),
            (["--until", "soon"], "--until: 'soon'"), (["--limit", "0"], "--limit")]:
            with self.subTest(arguments=arguments):
                self.assert_refused_before_asking(["audit", *arguments], message)

    def test_odd_replies(self):
        for replies, problem in [
            ([(200, records_page({"event": "request"}, next_cursor="c1")),
              (200, records_page(next_cursor="c1"))], "next repeats an earlier cursor, 'c1'"),
            ([(200, {"records": {}})], "records is not an array"),
            ([(200, {})], "records missing")]:
            with self.subTest(problem=problem):
                self.assert_unusable(["audit"], replies, problem)

    def test_jitds_refusal_of_an_event_name_is_shown(self):
        refusal = {"error": {"code": "InvalidRequest",
                             "message": "event: 'grant' is not an audit event; expected one of request, ..."}}
        result = self.jitctl("audit", "--event", "grant", replies=[(400, refusal)])
        self.assertEqual(result.returncode, 1)
        self.assertIn("event: 'grant' is not an audit event", result.stderr)


if __name__ == "__main__":
    unittest.main()
