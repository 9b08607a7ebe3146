"""Audit log rotation under load (issue 12): with a tiny auditMaxBytes, grants and refusals
from several threads at once make jitd rotate audit.jsonl many times; every record is in
exactly one file, whole (each line parses, each file ends in a newline), none is lost, and
GET /v1/audit pages through all of them in order, also from a cursor taken before the
rotations. With auditRotation: external, jitd follows renames done under load (logrotate
without copytruncate) and loses nothing either.
"""
import json
import os
import threading
import unittest

from lab import LabTest

THREADS = 4
REQUESTS_PER_THREAD = 60  # each thread: grants and refusals, alternating


class Load:
    """Requests from several threads at once; what jitd answered."""

    def __init__(self, lab):
        self.lab = lab
        self.granted, self.refused, self.errors = [], 0, []
        self.lock = threading.Lock()

    def worker(self, number):
        for i in range(REQUESTS_PER_THREAD):
            source = f"10.99.{number}.{i + 1}"
            # 3389 admits 10.77.0.0/24 only: a refusal, recorded like a grant.
            port = 22 if i % 2 == 0 else 3389
            body = {"ports": [{"number": port, "protocol": "tcp"}],
                    "allowedSourceAddressPrefix": source, "duration": "PT10M",
                    "justification": f"load {number}/{i}, " + "x" * 40}
            try:
                status, reply = self.lab.api("POST", "/v1/grants", body)
            except OSError as error:
                with self.lock:
                    self.errors.append(repr(error))
                continue
            with self.lock:
                if status == 201:
                    self.granted.append(reply["id"])
                elif port == 3389 and 400 <= status < 500:
                    self.refused += 1
                else:
                    self.errors.append((status, reply))

    def run(self, during=None):
        threads = [threading.Thread(target=self.worker, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        if during is not None:
            during()
        for thread in threads:
            thread.join(timeout=120)
        return self


class AuditFiles:
    """Every record of every audit file in the state directory, checked whole."""

    def __init__(self, test, state, order):
        self.records = []
        self.files = []
        for name in order(os.listdir(state)):
            path = os.path.join(state, name)
            with open(path, "rb") as f:
                text = f.read()
            self.files.append(name)
            if text:
                test.assertTrue(text.endswith(b"\n"), f"{name} ends inside a record")
            for number, line in enumerate(text.splitlines(), 1):
                try:
                    self.records.append(json.loads(line))
                except ValueError:
                    test.fail(f"{name}:{number} is not a whole record: {line[:200]!r}")


def jitd_order(names):
    """audit.jsonl.<n> oldest first (<n> ascending), then audit.jsonl."""
    rotated = sorted((n for n in names if n.startswith("audit.jsonl.")),
                     key=lambda n: int(n.rsplit(".", 1)[1]))
    return rotated + ["audit.jsonl"]


class AuditRotation(LabTest):
    extra_config = "auditMaxBytes: 4096\n"

    def requests(self, records):
        return [r for r in records if r.get("event") == "request"]

    def test_rotation_under_load_loses_and_splits_nothing(self):
        self.lab.start_jitd()
        self.lab.grant("10.98.0.1")
        status, first = self.lab.api("GET", "/v1/audit?limit=1")
        self.assertEqual(status, 200, first)
        self.assertIn("next", first, first)
        load = Load(self.lab).run()
        self.assertEqual(load.errors, [])
        self.assertEqual(len(load.granted) + load.refused, THREADS * REQUESTS_PER_THREAD)

        state = os.path.join(self.lab.dir, "state")
        files = AuditFiles(self, state, jitd_order)
        self.assertGreaterEqual(len(files.files), 10, f"rotated too little: {files.files}")
        for name in files.files:
            # Rotation happens between records: a file passes the bound by one record at most.
            self.assertLess(os.path.getsize(os.path.join(state, name)), 4096 + 4096, name)
        requests = self.requests(files.records)
        granted = [r["grantId"] for r in requests if r["outcome"] == "granted"]
        self.assertEqual(sorted(granted[1:]), sorted(load.granted), "each grant recorded once")
        self.assertEqual(sum(r["outcome"] == "refused" for r in requests), load.refused)

        # The API reads across the files, in the order they were written.
        paged, sizes = self.lab.api_pages("/v1/audit?limit=7", key="records")
        self.assertEqual(paged, files.records)
        self.assertGreater(len(sizes), 10)
        # A cursor into the file that was current before the rotations still leads on.
        rest, cursor = [], first["next"]
        while cursor:
            status, page = self.lab.api("GET", f"/v1/audit?limit=50&cursor={cursor}")
            self.assertEqual(status, 200, page)
            rest += page["records"]
            cursor = page.get("next")
        self.assertEqual(rest, files.records[1:])
        # Filters apply across the files too.
        refusals, _ = self.lab.api_pages("/v1/audit?event=request&port=3389", key="records")
        self.assertEqual(len(refusals), load.refused)
        self.assertTrue(all(r["outcome"] == "refused" for r in refusals))

        # A restarted jitd finds the rotated files and reads them all.
        self.lab.restart_jitd()
        again, _ = self.lab.api_pages("/v1/audit?limit=1000", key="records")
        self.assertEqual(again[:len(files.records)], files.records)

    def test_external_rotation_is_followed_under_load(self):
        self.lab.set_config("auditRotation", "external")
        self.lab.start_jitd()
        state = os.path.join(self.lab.dir, "state")
        renamed = []

        def current_size():
            try:
                return os.path.getsize(os.path.join(state, "audit.jsonl"))
            except FileNotFoundError:  # renamed, and no record since
                return 0

        def rotate_like_logrotate():
            # Renames while requests are written: jitd writes on to the renamed file until its
            # next record sees the rename, then to a new audit.jsonl; nothing is copied or cut.
            for n in (1, 2, 3):
                self.assertIsNotNone(self.lab.wait_for(lambda: current_size() > 4096, timeout=20),
                                     f"audit.jsonl did not grow (rename {n})")
                name = f"audit.jsonl-{n}"
                os.rename(os.path.join(state, "audit.jsonl"), os.path.join(state, name))
                renamed.append(name)

        load = Load(self.lab).run(during=rotate_like_logrotate)
        self.assertEqual(load.errors, [])
        self.assertEqual(len(renamed), 3)
        files = AuditFiles(self, state, lambda names: renamed + ["audit.jsonl"])
        self.assertFalse([n for n in os.listdir(state) if n.startswith("audit.jsonl.")],
                         "jitd itself does not rotate")
        requests = self.requests(files.records)
        granted = [r["grantId"] for r in requests if r["outcome"] == "granted"]
        self.assertEqual(sorted(granted), sorted(load.granted))
        self.assertEqual(sum(r["outcome"] == "refused" for r in requests), load.refused)
        # The current file holds what came after the last rename.
        current, _ = self.lab.api_pages("/v1/audit?limit=1000", key="records")
        with open(os.path.join(state, "audit.jsonl")) as f:
            self.assertEqual(current, [json.loads(line) for line in f])


if __name__ == "__main__":
    unittest.main()
