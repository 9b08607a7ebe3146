#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "jitd/core/failpoint.hpp"
#include "jitd/state/file_journal.hpp"
#include "state_journal_sample.hpp"
#include "state_test_files.hpp"
#include "test_grants.hpp"

namespace jitd::state {
namespace {

using namespace std::chrono_literals;
using namespace test;
namespace fs = std::filesystem;

std::unique_ptr<FileJournal> open_ok(const fs::path& path, JournalReplay& replay,
                                     const std::string& boot_id = "boot-a") {
  auto journal = FileJournal::open(path, boot_id, replay);
  EXPECT_TRUE(journal.has_value()) << (journal ? "" : journal.error().message);
  return journal ? std::move(*journal) : nullptr;
}

TEST(FileJournal, CreatesMissingJournalWithHeader) {
  TempDir dir;
  JournalReplay replay;
  auto journal = open_ok(dir.file("grants.journal"), replay);
  ASSERT_TRUE(journal);
  EXPECT_EQ(read_text(dir.file("grants.journal")), journal_header);
  EXPECT_TRUE(replay.live.empty());
  EXPECT_TRUE(replay.dropped.empty());
  EXPECT_EQ(replay.records, 0u);
  EXPECT_FALSE(fs::exists(dir.file("grants.journal.tmp")));
}

// The file holds the header and the format's record lines, exactly; the format tests
// replay this text without the file.
TEST(FileJournal, AppendsTheFormatsRecordLines) {
  TempDir dir;
  const auto sample = sample_journal();
  const auto path = dir.file("grants.journal");
  JournalReplay replay;
  auto journal = open_ok(path, replay);
  ASSERT_TRUE(journal);
  for (const auto& op : sample.ops) {
    const auto recorded =
        op.end ? journal->record_end(op.grant.id, core::GrantStatus::revoked, "UserRequested")
               : journal->record_grant(op.grant);
    EXPECT_TRUE(recorded.has_value());
  }
  EXPECT_EQ(read_text(path), sample.text);
}

TEST(FileJournal, RoundTripKeepsEveryField) {
  TempDir dir;
  const auto path = dir.file("grants.journal");
  auto v6 = make_grant("g-1", "2001:db8::/32", {ssh, dns, syslog},
                       "Zugriff für Wartung — 数据库 🔧 \"quoted\"\n\ttabbed");
  v6.requestor = {4294967295u, "Łukasz"};
  v6.deadline = core::Deadline{123456789012ms};
  v6.status_reason = "UserRequested";
  auto v4 = make_grant("g-2", "198.51.100.0/24", {https});
  v4.start = t0;
  v4.end = t0 + 30min + 1ms;
  v4.deadline = core::Deadline{0ms};
  v4.status = core::GrantStatus::revoked;
  {
    JournalReplay replay;
    auto journal = open_ok(path, replay, "boot-a");
    ASSERT_TRUE(journal);
    ASSERT_TRUE(journal->record_grant(v6).has_value());
    ASSERT_TRUE(journal->record_grant(v4).has_value());
  }
  JournalReplay replay;
  auto reopened = open_ok(path, replay, "boot-b");
  ASSERT_TRUE(reopened);
  EXPECT_TRUE(replay.dropped.empty());
  EXPECT_EQ(replay.records, 2u);
  ASSERT_EQ(replay.live.size(), 2u);
  expect_same(replay.live[0].grant, v6);
  expect_same(replay.live[1].grant, v4);
  // The deadline belongs to the boot that recorded it, not to the one reading it.
  EXPECT_EQ(replay.live[0].boot_id, "boot-a");
  EXPECT_EQ(replay.live[1].boot_id, "boot-a");
}

TEST(FileJournal, InvalidUtf8IsReplacedNotFatal) {
  TempDir dir;
  const auto path = dir.file("grants.journal");
  {
    JournalReplay replay;
    auto journal = open_ok(path, replay);
    ASSERT_TRUE(journal);
    ASSERT_TRUE(
        journal->record_grant(make_grant("g-1", "10.0.0.1", {ssh}, "bad \xff byte")).has_value());
  }
  JournalReplay replay;
  auto reopened = open_ok(path, replay);
  EXPECT_TRUE(replay.dropped.empty());
  ASSERT_EQ(replay.live.size(), 1u);
  EXPECT_EQ(replay.live[0].grant.justification, "bad \xEF\xBF\xBD byte");
}

TEST(FileJournal, EndRemovesAndUpsertReplacesInPlace) {
  TempDir dir;
  const auto path = dir.file("grants.journal");
  auto a = make_grant("g-a", "10.0.0.1", {ssh});
  auto b = make_grant("g-b", "10.0.0.2", {ssh});
  auto c = make_grant("g-c", "10.0.0.3", {ssh});
  auto a2 = a;
  a2.ports = {ssh, https};
  a2.status_reason = "PolicyChanged";
  {
    JournalReplay replay;
    auto journal = open_ok(path, replay);
    ASSERT_TRUE(journal);
    ASSERT_TRUE(journal->record_grant(a).has_value());
    ASSERT_TRUE(journal->record_grant(b).has_value());
    ASSERT_TRUE(journal->record_grant(c).has_value());
    ASSERT_TRUE(journal->record_end("g-b", core::GrantStatus::revoked, "Expired").has_value());
    ASSERT_TRUE(journal->record_grant(a2).has_value());
    // An end for a grant the journal never saw is harmless.
    ASSERT_TRUE(journal->record_end("g-x", core::GrantStatus::revoked, "x").has_value());
  }
  JournalReplay replay;
  auto reopened = open_ok(path, replay);
  EXPECT_TRUE(replay.dropped.empty());
  EXPECT_EQ(replay.records, 6u);
  EXPECT_EQ(ids_of(replay.live), (std::vector<std::string>{"g-a", "g-c"}));
  ASSERT_EQ(replay.live.size(), 2u);
  expect_same(replay.live[0].grant, a2);
}

// A clean journal with little dead weight is opened as it is (no rewrite at every start);
// compaction keeps exactly the live lines, found at the places the replay gave.
TEST(FileJournal, CleanJournalIsKeptAtOpenAndCompactionKeepsExactlyTheLiveLines) {
  TempDir dir;
  const auto path = dir.file("grants.journal");
  auto a = make_grant("g-a", "10.0.0.1", {ssh});
  auto b = make_grant("g-b", "10.0.0.2", {ssh});
  auto c = make_grant("g-c", "10.0.0.3", {ssh});
  auto a2 = a;
  a2.justification = "extended";
  {
    JournalReplay replay;
    auto journal = open_ok(path, replay, "boot-1");
    ASSERT_TRUE(journal);
    ASSERT_TRUE(journal->record_grant(c).has_value());
    ASSERT_TRUE(journal->record_grant(a).has_value());
    ASSERT_TRUE(journal->record_grant(b).has_value());
    ASSERT_TRUE(
        journal->record_end("g-b", core::GrantStatus::revoked, "UserRequested").has_value());
    ASSERT_TRUE(journal->record_grant(a2).has_value());
  }
  const auto before = read_text(path);
  struct stat original {};
  ASSERT_EQ(stat(path.c_str(), &original), 0);
  JournalReplay replay;
  auto reopened = open_ok(path, replay, "boot-2");
  ASSERT_TRUE(reopened);
  EXPECT_EQ(ids_of(replay.live), (std::vector<std::string>{"g-c", "g-a"}));
  struct stat opened {};
  ASSERT_EQ(stat(path.c_str(), &opened), 0);
  EXPECT_EQ(opened.st_ino, original.st_ino) << "a clean journal was rewritten at open";
  EXPECT_EQ(read_text(path), before);
  ASSERT_TRUE(reopened->compact().has_value());
  // Kept lines are the original records, boot id included; the order is by id.
  EXPECT_EQ(read_text(path), journal_header + journal_line(grant_to_json(a2, "boot-1")) +
                                 journal_line(grant_to_json(c, "boot-1")));

  // The reopened journal appends to the compacted file.
  ASSERT_TRUE(reopened->record_end("g-c", core::GrantStatus::revoked, "Expired").has_value());
  reopened.reset();
  JournalReplay again;
  auto third = open_ok(path, again);
  EXPECT_EQ(ids_of(again.live), (std::vector<std::string>{"g-a"}));
  ASSERT_TRUE(third->compact().has_value());
  EXPECT_EQ(read_text(path), journal_header + journal_line(grant_to_json(a2, "boot-1")));
}

TEST(FileJournal, CompactsAsEndedRecordsPileUp) {
  TempDir dir;
  const auto path = dir.file("grants.journal");
  const auto keeper = make_grant("g-keep", "10.0.0.1", {ssh});
  JournalReplay replay;
  auto journal = open_ok(path, replay);
  ASSERT_TRUE(journal);
  ASSERT_TRUE(journal->record_grant(keeper).has_value());
  constexpr int rounds = 300;
  for (int i = 0; i < rounds; ++i) {
    const auto id = "g-" + std::to_string(i);
    ASSERT_TRUE(journal->record_grant(make_grant(id, "10.0.0.2", {ssh})).has_value());
    ASSERT_TRUE(journal->record_end(id, core::GrantStatus::revoked, "Expired").has_value());
  }
  // Due since the 257th end (more than 256 ends and more than twice the one live grant); the
  // daemon's housekeeping calls it.
  const auto piled = read_text(path);
  EXPECT_EQ(std::count(piled.begin(), piled.end(), '\n'), 1 + 1 + 2 * rounds);
  ASSERT_TRUE(journal->compaction_due());
  ASSERT_TRUE(journal->compact().has_value());
  EXPECT_FALSE(journal->compaction_due());
  const auto text = read_text(path);
  EXPECT_EQ(text, journal_header + journal_line(grant_to_json(keeper, "boot-a")));
  // Appends after the compaction reach the new file, and a later compaction reads them back.
  const auto last = make_grant("g-last", "10.0.0.3", {https});
  ASSERT_TRUE(journal->record_grant(last).has_value());
  for (int i = 0; i < rounds; ++i) {
    const auto id = "h-" + std::to_string(i);
    ASSERT_TRUE(journal->record_grant(make_grant(id, "10.0.0.2", {ssh})).has_value());
    ASSERT_TRUE(journal->record_end(id, core::GrantStatus::revoked, "Expired").has_value());
  }
  ASSERT_TRUE(journal->compact().has_value());
  journal.reset();

  JournalReplay reopened_replay;
  auto reopened = open_ok(path, reopened_replay);
  EXPECT_TRUE(reopened_replay.dropped.empty());
  EXPECT_EQ(ids_of(reopened_replay.live), (std::vector<std::string>{"g-keep", "g-last"}));
  EXPECT_EQ(reopened_replay.records, 2u);
}

// Many live records are read back in one read of the whole file, few one by one: both give
// the same compacted journal.
TEST(FileJournal, CompactionWithManyLiveRecordsKeepsThemAll) {
  TempDir dir;
  const auto path = dir.file("grants.journal");
  JournalReplay replay;
  auto journal = open_ok(path, replay);
  ASSERT_TRUE(journal);
  constexpr int live = 5000;
  std::vector<std::string> kept;
  for (int i = 0; i < 3 * live + 300; ++i) {
    const auto id = "g-" + std::to_string(100000 + i);
    ASSERT_TRUE(journal->record_grant(make_grant(id, "10.0.0.2", {ssh})).has_value());
    if (i % 3 == 0 && static_cast<int>(kept.size()) < live) {
      kept.push_back(id);
    } else {
      ASSERT_TRUE(journal->record_end(id, core::GrantStatus::revoked, "Expired").has_value());
    }
  }
  ASSERT_TRUE(journal->compaction_due());
  ASSERT_TRUE(journal->compact().has_value());
  journal.reset();
  JournalReplay reopened_replay;
  auto reopened = open_ok(path, reopened_replay);
  EXPECT_TRUE(reopened_replay.dropped.empty());
  EXPECT_EQ(ids_of(reopened_replay.live), kept);
  EXPECT_EQ(reopened_replay.records, kept.size());
}

TEST(FileJournal, RefusesNewerFormatAndLeavesItAlone) {
  TempDir dir;
  const auto path = dir.file("grants.journal");
  const auto text =
      "jitd-journal 2\n" + journal_line(grant_to_json(make_grant("g-1", "10.0.0.1", {ssh}), "b"));
  write_text(path, text);
  JournalReplay replay;
  const auto journal = FileJournal::open(path, "boot-a", replay);
  ASSERT_FALSE(journal.has_value());
  EXPECT_EQ(journal.error().code, core::ErrorCode::io);
  const auto& message = journal.error().message;
  EXPECT_NE(message.find(path.string()), std::string::npos) << message;
  EXPECT_NE(message.find("version 2"), std::string::npos) << message;
  EXPECT_NE(message.find("version 1"), std::string::npos) << message;
  EXPECT_EQ(read_text(path), text);

  write_text(path, "jitd-journal 99999999999999999999999\n");
  EXPECT_FALSE(FileJournal::open(path, "boot-a", replay).has_value());
}

TEST(FileJournal, UnreadableJournalFailsTheOpen) {
  TempDir dir;
  const auto path = dir.file("grants.journal");
  fs::create_directory(path);
  JournalReplay replay;
  const auto journal = FileJournal::open(path, "boot-a", replay);
  ASSERT_FALSE(journal.has_value());
  EXPECT_EQ(journal.error().code, core::ErrorCode::io);
  EXPECT_NE(journal.error().message.find(path.string()), std::string::npos);
}

// One crash point on disk; JournalFormat sweeps every byte on text.
TEST(FileJournal, TruncationInsideARecordKeepsTheCompleteRecords) {
  TempDir dir;
  const auto sample = sample_journal();
  const auto size = sample.starts[4] + 10;
  const auto path = dir.file("grants.journal");
  write_text(path, sample.text.substr(0, size));
  JournalReplay replay;
  auto journal = open_ok(path, replay, "boot-b");
  ASSERT_TRUE(journal);
  expect_cut_replay(sample, size, replay, "grants.journal", read_text(path));
}

// One flipped bit on disk; JournalFormat flips every bit of the record on text.
TEST(FileJournal, BitFlipInOneRecordDropsOnlyThatRecord) {
  TempDir dir;
  const auto sample = sample_journal();
  constexpr std::size_t flip = 8 * 20 + 3;
  const auto path = dir.file("grants.journal");
  write_text(path, flip_in_victim(sample, flip));
  JournalReplay replay;
  auto journal = open_ok(path, replay, "boot-b");
  ASSERT_TRUE(journal);
  expect_flip_replay(sample, flip, replay);
}

TEST(FileJournal, ReportsWhereAndWhy) {
  TempDir dir;
  const auto sample = sample_journal();
  auto text = sample.text;
  text[sample.starts[3] + 20] ^= 0x01;
  const auto path = dir.file("grants.journal");
  write_text(path, text);
  JournalReplay replay;
  auto journal = open_ok(path, replay);
  ASSERT_EQ(replay.dropped.size(), 1u);
  EXPECT_EQ(replay.dropped[0], "grants.journal: bytes " + std::to_string(sample.starts[3]) + "-" +
                                   std::to_string(sample.starts[4] - 1) +
                                   " (line 5): CRC mismatch, record dropped");
}

TEST(FileJournal, GarbageAppendedIsDroppedAndCutOff) {
  TempDir dir;
  const auto sample = sample_journal();
  const auto expected = replay_model(sample.ops);
  const auto path = dir.file("grants.journal");
  for (const auto& garbage :
       {std::string("\0\0\0\0\0\0", 6), std::string("garbage\n"), std::string("\xff\xfe{]\n\n"),
        std::string("deadbeef {\"type\":\"end\",\"id\":\"g-b\"}\n")}) {
    write_text(path, sample.text + garbage);
    JournalReplay replay;
    auto journal = open_ok(path, replay);
    ASSERT_TRUE(journal);
    expect_live(replay.live, expected, "garbage " + garbage);
    EXPECT_FALSE(replay.dropped.empty());
    // The garbage is gone, so the next record starts on a clean line.
    const auto next = make_grant("g-next", "10.0.0.9", {ssh});
    ASSERT_TRUE(journal->record_grant(next).has_value());
    journal.reset();
    JournalReplay reread;
    auto again = open_ok(path, reread);
    EXPECT_TRUE(reread.dropped.empty());
    EXPECT_EQ(reread.live.size(), expected.size() + 1);
  }
}

TEST(FileJournal, FileThatIsNotAJournal) {
  TempDir dir;
  const auto path = dir.file("grants.journal");
  write_text(path, "root:x:0:0:root:/root:/bin/bash\n{\"type\":\"grant\"}\n\x01\x02\x03");
  JournalReplay replay;
  auto journal = open_ok(path, replay);
  ASSERT_TRUE(journal);
  EXPECT_TRUE(replay.live.empty());
  EXPECT_EQ(replay.records, 0u);
  EXPECT_GE(replay.dropped.size(), 3u);
  EXPECT_NE(replay.dropped[0].find("header"), std::string::npos) << replay.dropped[0];
  // What is left is a valid, empty journal.
  EXPECT_EQ(read_text(path), journal_header);
}

TEST(FileJournal, EndWithAnyStatusWordEndsTheGrant) {
  TempDir dir;
  const auto path = dir.file("grants.journal");
  {
    JournalReplay replay;
    auto journal = open_ok(path, replay);
    ASSERT_TRUE(journal->record_grant(make_grant("g-1", "10.0.0.1", {ssh})).has_value());
    // "Never applied" may be recorded with the status the grant still had.
    ASSERT_TRUE(journal->record_end("g-1", core::GrantStatus::initiated, "NotApplied").has_value());
  }
  JournalReplay replay;
  auto journal = open_ok(path, replay);
  EXPECT_TRUE(replay.live.empty());
  EXPECT_TRUE(replay.dropped.empty());
}

TEST(FileJournal, RefusesAGrantThatWouldNotReadBack) {
  TempDir dir;
  const auto path = dir.file("grants.journal");
  JournalReplay replay;
  auto journal = open_ok(path, replay);
  auto no_ports = make_grant("g-1", "10.0.0.1", {});
  const auto recorded = journal->record_grant(no_ports);
  ASSERT_FALSE(recorded.has_value());
  EXPECT_EQ(recorded.error().code, core::ErrorCode::invalid_argument);
  EXPECT_NE(recorded.error().message.find("grant.ports"), std::string::npos);
  EXPECT_EQ(read_text(path), journal_header);
}

// Failpoints: the handler sees half a record on disk, then the whole record, synced.
std::vector<std::string> failpoints_seen;
std::string journal_at_mid_record;
fs::path failpoint_journal;

void recording_handler(std::string_view name) {
  failpoints_seen.emplace_back(name);
  if (name == "journal_mid_record") journal_at_mid_record = read_text(failpoint_journal);
}

TEST(FileJournal, FailpointsSeeHalfARecordThenTheWholeOne) {
  TempDir dir;
  failpoint_journal = dir.file("grants.journal");
  failpoints_seen.clear();
  JournalReplay replay;
  auto journal = open_ok(failpoint_journal, replay);
  const auto grant = make_grant("g-1", "10.0.0.1", {ssh});
  const auto line = journal_line(grant_to_json(grant, "boot-a"));

  core::set_failpoint_handler(recording_handler);
  ASSERT_TRUE(core::failpoints_enabled());
  const auto recorded = journal->record_grant(grant);
  const auto synced = journal->sync();
  core::set_failpoint_handler(nullptr);
  ASSERT_FALSE(core::failpoints_enabled());
  ASSERT_TRUE(recorded.has_value());
  ASSERT_TRUE(synced.has_value());

  EXPECT_EQ(failpoints_seen,
            (std::vector<std::string>{"journal_mid_record", "after_journal_sync"}));
  EXPECT_EQ(journal_at_mid_record, journal_header + line.substr(0, line.size() / 2));
  EXPECT_EQ(read_text(failpoint_journal), journal_header + line);

  // A crash at the mid-record failpoint leaves a torn tail: dropped, reported, cut off.
  const auto crashed = dir.file("crashed.journal");
  write_text(crashed, journal_at_mid_record);
  JournalReplay crash_replay;
  auto after_crash = open_ok(crashed, crash_replay);
  EXPECT_TRUE(crash_replay.live.empty());
  ASSERT_EQ(crash_replay.dropped.size(), 1u);
  EXPECT_NE(crash_replay.dropped[0].find("torn record"), std::string::npos);
  EXPECT_EQ(read_text(crashed), journal_header);
}

// A file size limit turns the append into a short write: reported, and the fragment is
// taken back so the record the caller was told failed never comes back.
TEST(FileJournal, ShortWriteIsReportedAndTakenBack) {
  TempDir dir;
  const auto path = dir.file("grants.journal");
  JournalReplay replay;
  auto journal = open_ok(path, replay);
  ASSERT_TRUE(journal->record_grant(make_grant("g-1", "10.0.0.1", {ssh})).has_value());
  const auto before = read_text(path);

  core::Result<void> recorded;
  core::Result<void> full;
  {
    test::FileSizeLimit limit;
    limit.set(before.size() + 40);
    recorded = journal->record_grant(make_grant("g-2", "10.0.0.2", {ssh}));
    limit.set(before.size());
    full = journal->record_grant(make_grant("g-3", "10.0.0.3", {ssh}));
  }

  ASSERT_FALSE(recorded.has_value());
  EXPECT_EQ(recorded.error().code, core::ErrorCode::io);
  EXPECT_NE(recorded.error().message.find("short write"), std::string::npos)
      << recorded.error().message;
  EXPECT_NE(recorded.error().message.find(path.string()), std::string::npos);
  ASSERT_FALSE(full.has_value());
  EXPECT_EQ(full.error().sys_errno, EFBIG) << full.error().message;
  EXPECT_EQ(read_text(path), before);

  ASSERT_TRUE(journal->record_grant(make_grant("g-4", "10.0.0.4", {ssh})).has_value());
  journal.reset();
  JournalReplay reread;
  auto reopened = open_ok(path, reread);
  EXPECT_TRUE(reread.dropped.empty());
  EXPECT_EQ(ids_of(reread.live), (std::vector<std::string>{"g-1", "g-4"}));
}

TEST(FileJournal, KeepsACopyOfADamagedJournal) {
  TempDir dir;
  const auto sample = sample_journal();
  const auto path = dir.file("grants.journal");
  const auto damaged = sample.text + "garbage\n";
  write_text(path, damaged);
  JournalReplay replay;
  auto journal = open_ok(path, replay);
  ASSERT_TRUE(journal);
  ASSERT_FALSE(replay.dropped.empty());
  EXPECT_EQ(replay.damaged_copy, dir.file("grants.journal.damaged"));
  EXPECT_EQ(read_text(replay.damaged_copy), damaged);
  journal.reset();
  JournalReplay clean;
  auto reopened = open_ok(path, clean);
  EXPECT_TRUE(clean.damaged_copy.empty());
}

TEST(FileJournal, SecondWriterIsRefusedWhileTheFirstHoldsIt) {
  TempDir dir;
  const auto path = dir.file("grants.journal");
  JournalReplay first_replay;
  auto first = open_ok(path, first_replay);
  ASSERT_TRUE(first);
  JournalReplay second_replay;
  auto second = FileJournal::open(path, "boot", second_replay);
  ASSERT_FALSE(second.has_value());
  EXPECT_NE(second.error().message.find("another jitd"), std::string::npos)
      << second.error().message;
  first.reset();
  auto third = FileJournal::open(path, "boot", second_replay);
  EXPECT_TRUE(third.has_value());
}

}  // namespace
}  // namespace jitd::state
