#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "jitd/core/failpoint.hpp"
#include "jitd/state/file_journal.hpp"
#include "state_test_files.hpp"
#include "test_grants.hpp"

namespace jitd::state {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using test::ids_of;
using test::prefix;
using test::read_text;
using test::TempDir;
using test::write_text;

const std::string header = "jitd-journal 1\n";

const core::TimePoint t0 =
    core::TimePoint{std::chrono::sys_days{std::chrono::year{2026} / 11 / 24}};

core::Grant make_grant(std::string id, std::string_view source, std::vector<core::PortSpec> ports,
                       std::string justification = "ticket OPS-1") {
  core::Grant grant;
  grant.id = std::move(id);
  grant.requestor = {1000, "alice"};
  grant.source = prefix(source);
  grant.ports = std::move(ports);
  grant.start = t0 + 125ms;
  grant.end = t0 + 3h + 125ms;
  grant.deadline = core::Deadline{3h + 7s + 42ms};
  grant.justification = std::move(justification);
  grant.status_reason = "";
  return grant;
}

// expect_same_grant, and the status reason too, which the journal keeps.
void expect_same(const core::Grant& actual, const core::Grant& expected) {
  test::expect_same_grant(actual, expected);
  EXPECT_EQ(actual.status_reason, expected.status_reason);
}

std::unique_ptr<FileJournal> open_ok(const fs::path& path, JournalReplay& replay,
                                     const std::string& boot_id = "boot-a") {
  auto journal = FileJournal::open(path, boot_id, replay);
  EXPECT_TRUE(journal.has_value()) << (journal ? "" : journal.error().message);
  return journal ? std::move(*journal) : nullptr;
}

const core::PortSpec ssh{22, core::ProtocolSpec::tcp};
const core::PortSpec https{443, core::ProtocolSpec::tcp};
const core::PortSpec dns{53, core::ProtocolSpec::any};
const core::PortSpec syslog{514, core::ProtocolSpec::udp};

// One journal operation, and the live set a replay of a prefix of them must give.
struct Op {
  core::Grant grant;  // for an end, only the id counts
  bool end = false;
};

std::vector<core::Grant> replay_model(const std::vector<Op>& ops,
                                      const std::set<std::size_t>& skipped = {}) {
  std::vector<std::optional<core::Grant>> order;
  std::map<std::string, std::size_t> position;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (skipped.contains(i)) continue;
    const auto& op = ops[i];
    const auto it = position.find(op.grant.id);
    if (op.end) {
      if (it != position.end()) {
        order[it->second].reset();
        position.erase(it);
      }
    } else if (it != position.end()) {
      order[it->second] = op.grant;
    } else {
      position[op.grant.id] = order.size();
      order.push_back(op.grant);
    }
  }
  std::vector<core::Grant> live;
  for (const auto& grant : order) {
    if (grant) live.push_back(*grant);
  }
  return live;
}

void expect_live(const std::vector<core::JournalEntry>& actual,
                 const std::vector<core::Grant>& expected, const std::string& context) {
  SCOPED_TRACE(context);
  ASSERT_EQ(actual.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    expect_same(actual[i].grant, expected[i]);
    EXPECT_EQ(actual[i].boot_id, "boot-a");
  }
}

// Six records (grants, an upsert, ends) appended to a fresh journal, never reopened.
struct SampleJournal {
  std::vector<Op> ops;
  std::string text;                 // header + one line per op
  std::vector<std::size_t> starts;  // where each op's line starts in `text`
};

SampleJournal build_sample(const TempDir& dir) {
  SampleJournal sample;
  auto a = make_grant("g-a", "203.0.113.7", {ssh});
  auto b = make_grant("g-b", "2001:db8:42::/48", {ssh, dns, syslog}, "Wartung für Ärztin – 🔧");
  auto c = make_grant("g-c", "10.0.0.0/24", {https});
  auto b2 = b;
  b2.status_reason = "PolicyChanged";
  b2.ports = {ssh};
  sample.ops = {{a}, {b}, {a, true}, {c}, {b2}, {c, true}};

  const auto path = dir.file("sample.journal");
  JournalReplay replay;
  auto journal = open_ok(path, replay);
  for (const auto& op : sample.ops) {
    sample.starts.push_back(read_text(path).size());
    const auto recorded =
        op.end ? journal->record_end(op.grant.id, core::GrantStatus::revoked, "UserRequested")
               : journal->record_grant(op.grant);
    EXPECT_TRUE(recorded.has_value());
  }
  sample.text = read_text(path);
  return sample;
}

// The compacted file a replay of `text`'s complete lines must leave: header + the latest
// line of each live grant, by id.
std::string expected_compaction(const std::string& text, const std::vector<Op>& ops,
                                const std::vector<std::size_t>& starts,
                                const std::vector<core::Grant>& live) {
  std::map<std::string, std::string> lines;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const auto end = text.find('\n', starts[i]);
    if (end == std::string::npos) break;
    if (!ops[i].end) lines[ops[i].grant.id] = text.substr(starts[i], end + 1 - starts[i]);
  }
  std::string expected = header;
  std::set<std::string> live_ids;
  for (const auto& grant : live) live_ids.insert(grant.id);
  for (const auto& [id, line] : lines) {
    if (live_ids.contains(id)) expected += line;
  }
  return expected;
}

TEST(FileJournal, CreatesMissingJournalWithHeader) {
  TempDir dir;
  JournalReplay replay;
  auto journal = open_ok(dir.file("grants.journal"), replay);
  ASSERT_TRUE(journal);
  EXPECT_EQ(read_text(dir.file("grants.journal")), header);
  EXPECT_TRUE(replay.live.empty());
  EXPECT_TRUE(replay.dropped.empty());
  EXPECT_EQ(replay.records, 0u);
  EXPECT_FALSE(fs::exists(dir.file("grants.journal.tmp")));
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
  v4.status = core::GrantStatus::expired;
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

TEST(FileJournal, RecordFormatIsCrcSpaceCompactJson) {
  const auto grant = make_grant("g-1", "fd00::/64", {dns}, "OPS-1");
  const auto json = grant_to_json(grant, "boot-a");
  EXPECT_EQ(json.find(' '), std::string::npos) << json;  // no whitespace of our own
  EXPECT_NE(json.find("\"source\":\"fd00::/64\""), std::string::npos) << json;
  EXPECT_NE(json.find("{\"number\":53,\"protocol\":\"*\"}"), std::string::npos) << json;
  EXPECT_NE(json.find("\"startTimeUtc\":\"2026-11-24T00:00:00.125Z\""), std::string::npos);
  EXPECT_NE(json.find("\"deadlineMs\":10807042"), std::string::npos) << json;
  EXPECT_NE(json.find("\"bootId\":\"boot-a\""), std::string::npos) << json;
  EXPECT_EQ(journal_line("{}"), "a3a6bf43 {}\n");  // zlib.crc32(b"{}")
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
    ASSERT_TRUE(journal->record_end("g-b", core::GrantStatus::expired, "Expired").has_value());
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

TEST(FileJournal, CompactionAtOpenKeepsExactlyTheLiveLines) {
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
  JournalReplay replay;
  auto reopened = open_ok(path, replay, "boot-2");
  ASSERT_TRUE(reopened);
  EXPECT_EQ(ids_of(replay.live), (std::vector<std::string>{"g-c", "g-a"}));
  // Kept lines are the original records, boot id included; the order is by id.
  EXPECT_EQ(read_text(path), header + journal_line(grant_to_json(a2, "boot-1")) +
                                 journal_line(grant_to_json(c, "boot-1")));

  // The reopened journal appends to the compacted file.
  ASSERT_TRUE(reopened->record_end("g-c", core::GrantStatus::expired, "Expired").has_value());
  reopened.reset();
  JournalReplay again;
  auto third = open_ok(path, again);
  EXPECT_EQ(ids_of(again.live), (std::vector<std::string>{"g-a"}));
  EXPECT_EQ(read_text(path), header + journal_line(grant_to_json(a2, "boot-1")));
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
    ASSERT_TRUE(journal->record_end(id, core::GrantStatus::expired, "Expired").has_value());
  }
  // Compacted at the 257th end (more than 256 ends and more than twice the one live grant);
  // 43 grant + end pairs came after, and must have reached the new file.
  const auto text = read_text(path);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1 + 1 + 2 * (rounds - 257));
  const auto last = make_grant("g-last", "10.0.0.3", {https});
  ASSERT_TRUE(journal->record_grant(last).has_value());
  journal.reset();

  JournalReplay reopened_replay;
  auto reopened = open_ok(path, reopened_replay);
  EXPECT_TRUE(reopened_replay.dropped.empty());
  EXPECT_EQ(ids_of(reopened_replay.live), (std::vector<std::string>{"g-keep", "g-last"}));
  EXPECT_EQ(reopened_replay.records, 1u + 2 * (rounds - 257) + 1);
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

// Runs check(case, worker) for cases 0..count-1 on a few threads: every open syncs twice,
// and on a real disk the sync latency, not the work, would make the sweeps below slow.
void sweep(std::size_t count, const std::function<void(std::size_t, unsigned)>& check) {
  constexpr unsigned workers = 8;
  std::atomic<std::size_t> next{0};
  std::vector<std::thread> threads;
  for (unsigned worker = 0; worker < workers; ++worker) {
    threads.emplace_back([&, worker] {
      for (auto index = next++; index < count; index = next++) check(index, worker);
    });
  }
  for (auto& thread : threads) thread.join();
}

// Every possible crash point: a copy cut at each byte must open, keep exactly the complete
// records before the cut, and report damage exactly when the cut is inside a line.
TEST(FileJournal, TruncationAtEveryByteKeepsTheCompleteRecords) {
  TempDir dir;
  const auto sample = build_sample(dir);
  sweep(sample.text.size() + 1, [&](std::size_t size, unsigned worker) {
    const auto cut = sample.text.substr(0, size);
    const auto context = "cut at byte " + std::to_string(size);
    const auto path = dir.file("cut" + std::to_string(worker) + ".journal");
    write_text(path, cut);

    JournalReplay replay;
    auto journal = FileJournal::open(path, "boot-b", replay);
    if (!journal) {
      ADD_FAILURE() << context << ": " << journal.error().message;
      return;
    }
    std::size_t complete = 0;
    while (complete < sample.ops.size() && sample.text.find('\n', sample.starts[complete]) < size) {
      ++complete;
    }
    const std::vector<Op> fitting(sample.ops.begin(), sample.ops.begin() + complete);
    const auto expected = replay_model(fitting);
    expect_live(replay.live, expected, context);
    EXPECT_EQ(replay.records, complete) << context;

    const bool at_boundary = size == 0 || cut.back() == '\n';
    EXPECT_EQ(replay.dropped.empty(), at_boundary) << context;
    for (const auto& line : replay.dropped) {
      EXPECT_TRUE(line.starts_with(path.filename().string() + ": ")) << line;
    }
    EXPECT_EQ(read_text(path), expected_compaction(sample.text, fitting, sample.starts, expected))
        << context;
  });
}

// CRC32 catches every single-bit error: flipping any bit of one record (its newline
// included) loses that record and no other.
TEST(FileJournal, BitFlipInOneRecordDropsOnlyThatRecord) {
  TempDir dir;
  const auto sample = build_sample(dir);
  constexpr std::size_t victim = 2;  // "end g-a": losing it brings g-a back, visibly
  const auto expected = replay_model(sample.ops, {victim});
  const auto first = sample.starts[victim];
  const auto bits = 8 * (sample.starts[victim + 1] - first);
  sweep(bits, [&](std::size_t flip, unsigned worker) {
    auto text = sample.text;
    text[first + flip / 8] = static_cast<char>(text[first + flip / 8] ^ (1 << (flip % 8)));
    const auto context =
        "byte " + std::to_string(first + flip / 8) + " bit " + std::to_string(flip % 8);
    const auto path = dir.file("flipped" + std::to_string(worker) + ".journal");
    write_text(path, text);

    JournalReplay replay;
    auto journal = FileJournal::open(path, "boot-b", replay);
    if (!journal) {
      ADD_FAILURE() << context << ": " << journal.error().message;
      return;
    }
    expect_live(replay.live, expected, context);
    EXPECT_EQ(replay.records, sample.ops.size() - 1) << context;
    ASSERT_FALSE(replay.dropped.empty()) << context;
    EXPECT_NE(replay.dropped[0].find("(line 4)"), std::string::npos)
        << context << ": " << replay.dropped[0];
  });
}

TEST(FileJournal, ReportsWhereAndWhy) {
  TempDir dir;
  const auto sample = build_sample(dir);
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
  const auto sample = build_sample(dir);
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
  EXPECT_EQ(read_text(path), header);
}

TEST(FileJournal, MissingOrGarbledHeaderKeepsTheRecords) {
  TempDir dir;
  const auto sample = build_sample(dir);
  const auto expected = replay_model(sample.ops);
  const auto records = sample.text.substr(header.size());
  const auto path = dir.file("grants.journal");
  for (const auto& head :
       {std::string(""), std::string("jitd-journal x\n"), std::string("jitd-journal \n"),
        std::string("jitd-journal 0\n"), std::string("jitd-jou\xf2nal 1\n")}) {
    write_text(path, head + records);
    JournalReplay replay;
    auto journal = open_ok(path, replay);
    expect_live(replay.live, expected, "header '" + head + "'");
    EXPECT_EQ(replay.records, sample.ops.size());
    EXPECT_EQ(replay.dropped.size(), 1u) << head;
  }
}

TEST(FileJournal, IntactJsonWithBadFieldsIsDropped) {
  TempDir dir;
  const auto path = dir.file("grants.journal");
  const auto good = make_grant("g-good", "10.0.0.1", {ssh});
  const auto valid_grant = grant_to_json(good, "boot-a");
  // Variants of a valid grant record, each with one field wrong; all with a valid CRC.
  const auto with = [&](const std::string& from, const std::string& to) {
    auto json = valid_grant;
    const auto at = json.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    json.replace(at, from.size(), to);
    const auto id_at = json.find("\"g-good\"");
    json.replace(id_at, 8, "\"g-bad\"");
    return json;
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[1,2]", "not a record"},
      {"{\"type\":\"grant\"", "bad JSON"},
      {"{\"type\":\"other\",\"id\":\"g-bad\"}", "'type'"},
      {"{\"type\":\"end\",\"id\":\"\",\"status\":\"Revoked\",\"reason\":\"\"}", "'id'"},
      {"{\"type\":\"end\",\"id\":\"g-good\",\"status\":\"Gone\",\"reason\":\"\"}", "'status'"},
      {"{\"type\":\"end\",\"id\":\"g-good\",\"status\":\"Revoked\"}", "'reason'"},
      {with("\"ports\":[{\"number\":22,\"protocol\":\"tcp\"}]", "\"ports\":[]"), "'grant.ports'"},
      {with("\"number\":22", "\"number\":0"), "'grant.ports'"},
      {with("\"number\":22", "\"number\":65536"), "'grant.ports'"},
      {with("\"number\":22", "\"number\":22.5"), "'grant.ports'"},
      {with("\"protocol\":\"tcp\"", "\"protocol\":\"icmp\""), "'grant.ports'"},
      {with("\"source\":\"10.0.0.1\"", "\"source\":\"10.0.0.1/8\""), "'grant.source'"},
      {with("\"source\":\"10.0.0.1\"", "\"source\":7"), "'grant.source'"},
      {with("\"uid\":1000", "\"uid\":-1"), "'grant.requestor.uid'"},
      {with("\"uid\":1000", "\"uid\":4294967296"), "'grant.requestor.uid'"},
      {with("\"name\":\"alice\"", "\"name\":null"), "'grant.requestor.name'"},
      {with("\"deadlineMs\":10807042", "\"deadlineMs\":-5"), "'grant.deadlineMs'"},
      {with("\"deadlineMs\":10807042", "\"deadlineMs\":\"10807042\""), "'grant.deadlineMs'"},
      {with("\"deadlineMs\":10807042", "\"deadlineMs\":18446744073709551615"),
       "'grant.deadlineMs'"},
      {with("2026-11-24T00:00:00.125Z", "2026-13-24T00:00:00Z"), "'grant.startTimeUtc'"},
      {with("\"status\":\"Initiated\"", "\"status\":\"initiated\""), "'grant.status'"},
      {with("\"statusReason\":\"\"", "\"statusReason\":false"), "'grant.statusReason'"},
      {with("\"justification\":\"ticket OPS-1\",", ""), "'grant.justification'"},
      {with(",\"bootId\":\"boot-a\"", ""), "'bootId'"},
      {with("\"grant\":{", "\"grant\":[{") + "]", "bad JSON"},
  };
  for (const auto& [json, why] : cases) {
    write_text(path, header + journal_line(valid_grant) + journal_line(json));
    JournalReplay replay;
    auto journal = open_ok(path, replay);
    EXPECT_EQ(ids_of(replay.live), std::vector<std::string>{"g-good"}) << json;
    EXPECT_EQ(replay.records, 1u) << json;
    ASSERT_EQ(replay.dropped.size(), 1u) << json;
    EXPECT_NE(replay.dropped[0].find(why), std::string::npos) << json << " → " << replay.dropped[0];
  }
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
  EXPECT_EQ(read_text(path), header);
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
  core::set_failpoint_handler(nullptr);
  ASSERT_FALSE(core::failpoints_enabled());
  ASSERT_TRUE(recorded.has_value());

  EXPECT_EQ(failpoints_seen,
            (std::vector<std::string>{"journal_mid_record", "after_journal_sync"}));
  EXPECT_EQ(journal_at_mid_record, header + line.substr(0, line.size() / 2));
  EXPECT_EQ(read_text(failpoint_journal), header + line);

  // A crash at the mid-record failpoint leaves a torn tail: dropped, reported, cut off.
  const auto crashed = dir.file("crashed.journal");
  write_text(crashed, journal_at_mid_record);
  JournalReplay crash_replay;
  auto after_crash = open_ok(crashed, crash_replay);
  EXPECT_TRUE(crash_replay.live.empty());
  ASSERT_EQ(crash_replay.dropped.size(), 1u);
  EXPECT_NE(crash_replay.dropped[0].find("torn record"), std::string::npos);
  EXPECT_EQ(read_text(crashed), header);
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
  const auto sample = build_sample(dir);
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
