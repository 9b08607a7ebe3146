"""History (issue 11): ended grants stay readable, with status, reason, who ended them and when.

GET /v1/grants?state=ended|all lists them (ended: newest end first; all: active, pending, then
ended), GET /v1/grants/{id} shows one in any state, the filters user/port/since and the paging
(limit, next → cursor) apply to them, and the history outlives a restart, a kill -9 and grants
that end while jitd is down. historyRetention prunes at start what ended longer ago.
"""
import json
import os
import time
import unittest
import urllib.parse

from lab import CLIENT_A, CLIENT_B, CLIENT_C, DEFAULT_POLICY, SERVER4, LabTest, parse_utc, sleep_until, utc

TIME_FIELDS = ("requestedTimeUtc", "startTimeUtc", "endTimeUtc", "endedTimeUtc")


def ids(grants):
    return [g["id"] for g in grants]


def query(path, **params):
    return path + "?" + urllib.parse.urlencode(params)


class History(LabTest):
    def ended(self, **params):
        status, reply = self.lab.api("GET", query("/v1/grants", state="ended", **params))
        self.assertEqual(status, 200, reply)
        return reply["grants"]

    def assert_expired(self, grant, expected):
        self.assertEqual((grant["id"], grant["status"], grant["statusReason"]),
                         (expected["id"], "Revoked", "Expired"), grant)
        self.assertNotIn("endedBy", grant)
        self.assertIn("endedTimeUtc", grant)
        # Expiry is the kernel's: the record ends at endTimeUtc (recorded within moments of it).
        self.assertAlmostEqual(parse_utc(grant["endedTimeUtc"]), parse_utc(expected["endTimeUtc"]),
                               delta=2.0)
        self.assertEqual(grant["endTimeUtc"], expected["endTimeUtc"])
        self.assertEqual(grant["allowedSourceAddressPrefix"], expected["allowedSourceAddressPrefix"])
        for port in grant["ports"]:
            self.assertEqual((port["status"], port["statusReason"]), ("Revoked", "Expired"), grant)

    def assert_revoked(self, grant, expected, revoked_at):
        self.assertEqual((grant["id"], grant["status"], grant["statusReason"]),
                         (expected["id"], "Revoked", "UserRequested"), grant)
        self.assertEqual(grant.get("endedBy"), {"name": "root", "uid": 0}, grant)
        self.assertAlmostEqual(parse_utc(grant["endedTimeUtc"]), revoked_at, delta=2.0)
        for port in grant["ports"]:
            self.assertEqual((port["status"], port["statusReason"]), ("Revoked", "UserRequested"),
                             grant)

    def test_ended_grants_are_listed_shown_filtered_paged_and_survive_restarts(self):
        lab = self.lab
        lab.start_jitd()
        expiring = lab.grant(CLIENT_A, duration="PT2S")
        revoked = lab.grant(CLIENT_B, ports=((3389, "tcp"),), duration="PT5M")
        live = lab.grant(CLIENT_C, duration="PT5M")
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_B))
        status, reply = lab.api("DELETE", f"/v1/grants/{revoked['id']}")
        self.assertEqual(status, 200, reply)
        revoked_at = time.time()
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_B, timeout=0.5))
        # Nothing ended yet but the revoked one.
        self.assertEqual(ids(self.ended()), [revoked["id"]])
        sleep_until(parse_utc(expiring["endTimeUtc"]) + 0.5)
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5))
        self.assertIsNotNone(lab.wait_for(lambda: len(self.ended()) == 2, timeout=3),
                             f"the expiry is not in the history: {self.ended()}")

        def check_history(when):
            with self.subTest(when=when):
                ended = self.ended()
                self.assertEqual(ids(ended), [expiring["id"], revoked["id"]], "newest end first")
                self.assert_expired(ended[0], expiring)
                self.assert_revoked(ended[1], revoked, revoked_at)
                status, shown = lab.api("GET", f"/v1/grants/{expiring['id']}")
                self.assertEqual(status, 200, shown)
                self.assert_expired(shown, expiring)
                status, shown = lab.api("GET", f"/v1/grants/{revoked['id']}")
                self.assertEqual(status, 200, shown)
                self.assert_revoked(shown, revoked, revoked_at)
                self.assertEqual(shown["justification"], "kernel test")
                self.assertEqual(shown["requestor"], {"name": "root", "uid": 0})
                status, shown = lab.api("GET", f"/v1/grants/{live['id']}")
                self.assertEqual(status, 200, shown)
                self.assertEqual((shown["status"], shown["statusReason"]),
                                 ("Initiated", "UserRequested"), shown)
                self.assertNotIn("endedTimeUtc", shown)
                status, missing = lab.api("GET", "/v1/grants/00000000deadbeef")
                self.assertEqual(status, 404, missing)
                self.assertEqual(missing["error"]["code"], "NotFound", missing)

                status, everything = lab.api("GET", "/v1/grants?state=all")
                self.assertEqual(status, 200, everything)
                self.assertEqual(ids(everything["grants"]),
                                 [live["id"], expiring["id"], revoked["id"]], "active, then ended")
                status, active = lab.api("GET", "/v1/grants")
                self.assertEqual(ids(active["grants"]), [live["id"]], "default state is active")

                # Filters.
                self.assertEqual(ids(self.ended(user="root")), [expiring["id"], revoked["id"]])
                self.assertEqual(self.ended(user="nobody"), [])
                self.assertEqual(ids(self.ended(port=3389)), [revoked["id"]])
                self.assertEqual(ids(self.ended(port=22)), [expiring["id"]])
                self.assertEqual(self.ended(port=53), [])
                self.assertEqual(ids(self.ended(since="PT1H")), [expiring["id"], revoked["id"]])
                self.assertEqual(ids(self.ended(since=utc(time.time() - 3600))),
                                 [expiring["id"], revoked["id"]])
                between = (revoked_at + parse_utc(ended[0]["endedTimeUtc"])) / 2
                self.assertEqual(ids(self.ended(since=utc(between))), [expiring["id"]])
                self.assertEqual(self.ended(since=utc(time.time() + 60)), [])
                status, everything = lab.api("GET", query("/v1/grants", state="all", port=22))
                self.assertEqual(status, 200, everything)
                self.assertEqual(ids(everything["grants"]), [live["id"], expiring["id"]])

                # Paging: one grant a page, `next` until the last.
                grants, sizes = lab.api_pages("/v1/grants?state=ended&limit=1")
                self.assertEqual(ids(grants), [expiring["id"], revoked["id"]])
                self.assertEqual(sizes[:2], [1, 1], sizes)
                grants, sizes = lab.api_pages("/v1/grants?state=all&limit=1")
                self.assertEqual(ids(grants), [live["id"], expiring["id"], revoked["id"]])
                self.assertLessEqual(max(sizes), 1, sizes)
                for bad in ("limit=0", "limit=1001", "state=bogus", "cursor=nonsense&state=ended"):
                    status, reply = lab.api("GET", "/v1/grants?" + bad)
                    self.assertEqual(status, 400, (bad, reply))

                # jitctl against the real jitd.
                shown = lab.jitctl("show", expiring["id"])
                self.assertEqual(shown.returncode, 0, shown.stderr)
                self.assertIn("Revoked (Expired)", shown.stdout)
                self.assertIn(CLIENT_A, shown.stdout)
                shown = lab.jitctl("show", revoked["id"])
                self.assertEqual(shown.returncode, 0, shown.stderr)
                self.assertIn("Revoked (UserRequested)", shown.stdout)
                self.assertRegex(shown.stdout, r"ended by:\s+root \(uid 0\)")
                shown = lab.jitctl("show", revoked["id"], "--json")
                self.assertEqual(shown.returncode, 0, shown.stderr)
                self.assert_revoked(json.loads(shown.stdout), revoked, revoked_at)
                missing = lab.jitctl("show", "00000000deadbeef")
                self.assertNotEqual(missing.returncode, 0)
                listed = lab.jitctl("list", "--all", "--since", "7d")
                self.assertEqual(listed.returncode, 0, listed.stderr)
                for grant in (live, expiring, revoked):
                    self.assertIn(grant["id"], listed.stdout)
                listed = lab.jitctl("list", "--all", "--since", "7d", "--json")
                self.assertEqual(listed.returncode, 0, listed.stderr)
                self.assertEqual(ids(json.loads(listed.stdout)["grants"]),
                                 [live["id"], expiring["id"], revoked["id"]])
                listed = lab.jitctl("list", "--ended", "--port", "3389", "--json")
                self.assertEqual(listed.returncode, 0, listed.stderr)
                self.assertEqual(ids(json.loads(listed.stdout)["grants"]), [revoked["id"]])

        check_history("running")
        lab.restart_jitd()
        check_history("after a restart (SIGTERM)")
        lab.kill_jitd(9)
        lab.start_jitd()
        check_history("after kill -9")

    def test_grants_ending_around_a_kill_are_in_the_history(self):
        lab = self.lab
        lab.start_jitd()
        revoked = lab.grant(CLIENT_A, duration="PT5M")
        while_down = lab.grant(CLIENT_B, duration="PT2S")
        status, reply = lab.api("DELETE", f"/v1/grants/{revoked['id']}")
        self.assertEqual(status, 200, reply)
        revoked_at = time.time()
        # Killed right after the revoke answered: the record must not be lost with the process.
        lab.kill_jitd(9)
        sleep_until(parse_utc(while_down["endTimeUtc"]) + 0.5)
        lab.start_jitd()
        ended = self.ended()
        self.assertEqual(sorted(ids(ended)), sorted([revoked["id"], while_down["id"]]), ended)
        by_id = {g["id"]: g for g in ended}
        self.assert_revoked(by_id[revoked["id"]], revoked, revoked_at)
        self.assert_expired(by_id[while_down["id"]], while_down)
        status, shown = lab.api("GET", f"/v1/grants/{while_down['id']}")
        self.assertEqual(status, 200, shown)
        self.assert_expired(shown, while_down)
        # Recorded once: another start adds nothing.
        lab.restart_jitd()
        self.assertEqual(sorted(ids(self.ended())), sorted([revoked["id"], while_down["id"]]))

    def test_grant_ended_by_a_policy_change_is_in_the_history(self):
        lab = self.lab
        lab.start_jitd()
        grant = lab.grant(CLIENT_A, ports=((3389, "tcp"),), duration="PT5M")
        kept = lab.grant(CLIENT_B, duration="PT5M")
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_A))
        # The policy no longer names 3389: its grant ends.
        lab.write_policy(DEFAULT_POLICY.replace(
            '  - number: 3389\n    protocol: tcp\n'
            '    allowedSourceAddressPrefixes: ["10.77.0.0/24", "fd00:77::/64"]\n'
            '    maxRequestAccessDuration: 10m\n', ''))
        status, reply = lab.api("POST", "/v1/policy/reload")
        self.assertEqual(status, 200, reply)
        self.assertIsNotNone(lab.wait_for(lambda: ids(self.ended()) == [grant["id"]], timeout=2),
                             self.ended())
        (ended,) = self.ended()
        self.assertEqual((ended["status"], ended["statusReason"]), ("Revoked", "PolicyChanged"),
                         ended)
        self.assertNotIn("endedBy", ended)
        self.assertIn("endedTimeUtc", ended)
        self.assertEqual(ids(lab.api("GET", "/v1/grants")[1]["grants"]), [kept["id"]])
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_B))
        lab.restart_jitd()
        self.assertEqual(ids(self.ended()), [grant["id"]])


class Retention(LabTest):
    def test_history_retention_prunes_at_start(self):
        lab = self.lab
        lab.set_config("historyRetention", "P1D")
        lab.start_jitd()
        grants = [lab.grant(source, duration="PT5M") for source in (CLIENT_A, CLIENT_B, CLIENT_C)]
        for grant in grants:
            status, reply = lab.api("DELETE", f"/v1/grants/{grant['id']}")
            self.assertEqual(status, 200, reply)
        old, recent, new = (g["id"] for g in grants)
        self.assertEqual(ids(self.ended()), [new, recent, old])
        lab.kill_jitd(15)

        # Age the history as if the first grant ended two days ago and the second 20 hours ago
        # (records stay in the order they ended, oldest first).
        ages = {old: 2 * 86400, recent: 20 * 3600}

        def age(record):
            back = ages.get(record.get("id"))
            if back is None:
                return None
            for field in TIME_FIELDS:
                if field in record:
                    record[field] = utc(parse_utc(record[field]) - back)
            return record
        aged = lab.rewrite_history(age)
        self.assertEqual(aged, 2, "expected one JSON record a line, with id and endedTimeUtc, in "
                                  f"{lab.history_files()} (has the history format changed?)")
        # Pruning drops whole sealed segments (history.jsonl.<n>, a larger n newer), never lines
        # of one: the oldest record goes into a sealed segment of its own, as if the active one
        # had filled up after it.
        active = os.path.join(lab.dir, "state", "history.jsonl")
        with open(active) as f:
            lines = f.read().splitlines(keepends=True)
        with open(active + ".1", "w") as f:
            f.writelines(l for l in lines if old in l)
        with open(active, "w") as f:
            f.writelines(l for l in lines if old not in l)
        self.assertIn(old, lab.history_text())

        lab.start_jitd()
        ended = self.ended()
        self.assertEqual(ids(ended), [new, recent], "P1D keeps what ended within a day")
        self.assertAlmostEqual(parse_utc(ended[1]["endedTimeUtc"]), time.time() - 20 * 3600,
                               delta=60)
        self.assertEqual(lab.api("GET", f"/v1/grants/{old}")[0], 404)
        self.assertEqual(lab.api("GET", f"/v1/grants/{recent}")[0], 200)
        self.assertNotIn(old, lab.history_text(), "the pruned record is still on disk")
        # since reaches back no further than the retention kept.
        self.assertEqual(ids(self.ended(since="P7D")), [new, recent])
        self.assertEqual(ids(self.ended(since="PT1H")), [new])
        # The pruned history still takes records.
        fresh = lab.grant(CLIENT_A, duration="PT5M")
        self.assertEqual(lab.api("DELETE", f"/v1/grants/{fresh['id']}")[0], 200)
        self.assertEqual(ids(self.ended()), [fresh["id"], new, recent])
        lab.restart_jitd()
        self.assertEqual(ids(self.ended()), [fresh["id"], new, recent])

    ended = History.ended

    def test_history_max_bytes_drops_the_oldest_at_start(self):
        lab = self.lab
        limit = 1048576
        lab.set_config("historyMaxBytes", str(limit))
        lab.start_jitd()
        grants = [lab.grant(source, duration="PT5M") for source in (CLIENT_A, CLIENT_B)]
        for grant in grants:
            self.assertEqual(lab.api("DELETE", f"/v1/grants/{grant['id']}")[0], 200)
        lab.kill_jitd(15)
        # Older records before them: copies of the first with ids of their own, 1.5 MiB in all,
        # in sealed segments of 256 KiB (history.jsonl.<n>, a larger n newer) as jitd seals them.
        active = os.path.join(lab.dir, "state", "history.jsonl")
        with open(active) as f:
            lines = f.read().splitlines()
        (template,) = [json.loads(l) for l in lines if grants[0]["id"] in l]
        copies, segment, number = [], [], 0
        size = sum(len(l) + 1 for l in lines)

        def seal():
            nonlocal segment, number
            number += 1
            with open(f"{active}.{number}", "w") as f:
                f.write("".join(l + "\n" for l in segment))
            segment = []
        while size < limit * 3 // 2:
            record = dict(template, id=f"{len(copies):016x}")
            copies.append(json.dumps(record, separators=(",", ":")))
            segment.append(copies[-1])
            size += len(copies[-1]) + 1
            if sum(len(l) + 1 for l in segment) >= 256 * 1024:
                seal()
        if segment:
            seal()
        self.assertGreater(sum(os.path.getsize(p) for p in lab.history_files()), limit)

        lab.start_jitd()
        self.assertLessEqual(sum(os.path.getsize(p) for p in lab.history_files()), limit)
        ended, sizes = lab.api_pages("/v1/grants?state=ended&limit=1000")
        kept = ids(ended)
        self.assertEqual(kept[:2], [grants[1]["id"], grants[0]["id"]], "the newest must stay")
        self.assertGreater(len(kept), 100, sizes)
        self.assertLess(len(kept), len(copies) + 2)
        self.assertEqual(len(set(kept)), len(kept), "a record listed twice")
        # The oldest went, the newest copies stayed, in order.
        self.assertEqual(kept[2:], [f"{n:016x}" for n in reversed(range(len(copies)))][:len(kept) - 2])
        self.assertEqual(lab.api("GET", "/v1/grants/0000000000000000")[0], 404)
        self.assertEqual(lab.api("GET", f"/v1/grants/{len(copies) - 1:016x}")[0], 200)


if __name__ == "__main__":
    unittest.main()
