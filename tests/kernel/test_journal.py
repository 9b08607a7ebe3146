"""A damaged journal: jitd starts, keeps every intact record, drops and audits the rest.

Records are "<crc32 8 hex> <json>\\n" after the header "jitd-journal 1". A record cut short
(a crash mid-append) or with a flipped bit fails its check and is dropped; the grant it
described is then unknown to jitd, so its kernel element goes with the table replaced at start.
"""
import os
import unittest

from lab import CLIENT_A, CLIENT_B, CLIENT_C, SERVER4, LabTest


class Journal(LabTest):
    def two_grants_then_stop(self):
        lab = self.lab
        lab.start_jitd()
        first = lab.grant(CLIENT_A, duration="5m")
        second = lab.grant(CLIENT_C, ports=((3389, "tcp"),), duration="5m")
        lab.kill_jitd(15)
        with open(lab.journal_path, "rb") as f:
            lines = f.read().splitlines(keepends=True)
        self.assertEqual(lines[0], b"jitd-journal 1\n")
        self.assertEqual(len(lines), 3, lines)
        self.assertIn(first["id"].encode(), lines[1])
        self.assertIn(second["id"].encode(), lines[2])
        return first, second, lines

    def grant_keys(self):
        return {(str(e["first"]), e["protocol"], e["port"]) for e in self.lab.grant_elements(4)}

    def damaged_audits(self):
        return [l for l in self.lab.audit() if (l["event"], l["outcome"]) == ("journal", "damaged")]

    def test_torn_last_record_is_dropped(self):
        lab = self.lab
        first, second, lines = self.two_grants_then_stop()
        # A crash in the middle of appending the last record.
        with open(lab.journal_path, "r+b") as f:
            f.truncate(len(lines[0]) + len(lines[1]) + len(lines[2]) // 2)
        lab.start_jitd()
        self.assertTrue(lab.connect(SERVER4, 22, CLIENT_A), "the intact record's grant was lost")
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_B, timeout=0.5))
        self.assertEqual(self.grant_keys(), {(CLIENT_A, "tcp", 22)})
        self.assertFalse(lab.connect(SERVER4, 3389, CLIENT_C, timeout=0.5))
        self.assertEqual([g["id"] for g in lab.api("GET", "/v1/grants")[1]["grants"]], [first["id"]])
        damaged = self.damaged_audits()
        self.assertEqual(len(damaged), 1, lab.audit())
        print(f"audit: {damaged[0]['reason']}")
        self.assertIn("journal damaged", lab.log())
        # The torn tail is gone from the file: a new record does not glue onto it, and the
        # next start finds nothing damaged.
        third = lab.grant(CLIENT_C, ports=((3389, "tcp"),), duration="5m")
        lab.restart_jitd()
        self.assertEqual(len(self.damaged_audits()), 1, lab.audit())
        self.assertEqual(sorted(g["id"] for g in lab.api("GET", "/v1/grants")[1]["grants"]),
                         sorted([first["id"], third["id"]]))

    def test_flipped_bit_in_first_record_drops_only_that_record(self):
        lab = self.lab
        first, second, lines = self.two_grants_then_stop()
        middle = len(lines[0]) + len(lines[1]) // 2
        with open(lab.journal_path, "r+b") as f:
            f.seek(middle)
            byte = f.read(1)[0]
            flipped = byte ^ 0x04
            self.assertNotIn(flipped, b"\n")
            f.seek(middle)
            f.write(bytes([flipped]))
        self.assertEqual(os.path.getsize(lab.journal_path), sum(map(len, lines)))
        lab.start_jitd()
        self.assertEqual(self.grant_keys(), {(CLIENT_C, "tcp", 3389)})
        self.assertFalse(lab.connect(SERVER4, 22, CLIENT_A, timeout=0.5), "damaged record's grant kept")
        self.assertTrue(lab.connect(SERVER4, 3389, CLIENT_C), "the intact record's grant was lost")
        self.assertEqual([g["id"] for g in lab.api("GET", "/v1/grants")[1]["grants"]], [second["id"]])
        damaged = self.damaged_audits()
        self.assertEqual(len(damaged), 1, lab.audit())
        print(f"audit: {damaged[0]['reason']}")


if __name__ == "__main__":
    unittest.main()
