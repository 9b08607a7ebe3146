#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "jitd/state/journal_format.hpp"
#include "state_journal_sample.hpp"
#include "test_grants.hpp"

namespace jitd::state {
namespace {

using namespace test;

// The replay of `text`, named as FileJournal names grants.journal; a refusal fails the test.
TextReplay replay_ok(const std::string& text) {
  auto replay = replay_journal(text, "grants.journal");
  EXPECT_TRUE(replay.has_value()) << (replay ? "" : replay.error().message);
  return replay ? std::move(*replay) : TextReplay{};
}

TEST(JournalFormat, RecordFormatIsCrcSpaceCompactJson) {
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

TEST(JournalFormat, MissingOrGarbledHeaderKeepsTheRecords) {
  const auto sample = sample_journal();
  const auto expected = replay_model(sample.ops);
  const auto records = sample.text.substr(journal_header.size());
  for (const auto& head :
       {std::string(""), std::string("jitd-journal x\n"), std::string("jitd-journal \n"),
        std::string("jitd-journal 0\n"), std::string("jitd-jou\xf2nal 1\n")}) {
    const auto replay = replay_ok(head + records);
    expect_live(replay.live, expected, "header '" + head + "'");
    EXPECT_EQ(replay.records, sample.ops.size());
    EXPECT_EQ(replay.dropped.size(), 1u) << head;
  }
}

TEST(JournalFormat, IntactJsonWithBadFieldsIsDropped) {
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
    const auto replay = replay_ok(journal_header + journal_line(valid_grant) + journal_line(json));
    EXPECT_EQ(ids_of(replay.live), std::vector<std::string>{"g-good"}) << json;
    EXPECT_EQ(replay.records, 1u) << json;
    ASSERT_EQ(replay.dropped.size(), 1u) << json;
    EXPECT_NE(replay.dropped[0].find(why), std::string::npos) << json << " → " << replay.dropped[0];
  }
}

// Every possible crash point: the sample cut at each byte.
TEST(JournalFormat, TruncationAtEveryByteKeepsTheCompleteRecords) {
  const auto sample = sample_journal();
  for (std::size_t size = 0; size <= sample.text.size(); ++size) {
    const auto replay = replay_ok(sample.text.substr(0, size));
    expect_cut_replay(sample, size, replay, "grants.journal", compacted_journal(replay.live_lines));
  }
}

// Every bit of one record, its newline included.
TEST(JournalFormat, BitFlipInOneRecordDropsOnlyThatRecord) {
  const auto sample = sample_journal();
  const auto bits = 8 * (sample.starts[flip_victim + 1] - sample.starts[flip_victim]);
  for (std::size_t flip = 0; flip < bits; ++flip) {
    expect_flip_replay(sample, flip, replay_ok(flip_in_victim(sample, flip)));
  }
}

TEST(JournalFormat, RefusesANewerFormatVersion) {
  for (const auto* head : {"jitd-journal 2\n", "jitd-journal 99999999999999999999999\n"}) {
    const auto replay = replay_journal(head, "grants.journal");
    ASSERT_FALSE(replay.has_value()) << head;
    EXPECT_NE(replay.error().message.find("newer than version 1"), std::string::npos)
        << replay.error().message;
  }
}

}  // namespace
}  // namespace jitd::state
