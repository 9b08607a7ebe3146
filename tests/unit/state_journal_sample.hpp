#pragma once
// Grants and a sample journal shared by the journal format and file tests, with what a
// replay of any damaged copy of the sample must give.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/journal.hpp"
#include "jitd/state/journal_format.hpp"
#include "test_grants.hpp"

namespace jitd::test {

inline const std::string journal_header = "jitd-journal 1\n";

inline const core::TimePoint t0 =
    core::TimePoint{std::chrono::sys_days{std::chrono::year{2026} / 11 / 24}};

inline const core::PortSpec ssh{22, core::ProtocolSpec::tcp};
inline const core::PortSpec https{443, core::ProtocolSpec::tcp};
inline const core::PortSpec dns{53, core::ProtocolSpec::any};
inline const core::PortSpec syslog{514, core::ProtocolSpec::udp};

inline core::Grant make_grant(std::string id, std::string_view source,
                              std::vector<core::PortSpec> ports,
                              std::string justification = "ticket OPS-1") {
  using namespace std::chrono_literals;
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
inline void expect_same(const core::Grant& actual, const core::Grant& expected) {
  expect_same_grant(actual, expected);
  EXPECT_EQ(actual.status_reason, expected.status_reason);
}

// One journal operation, and the live set a replay of a prefix of them must give.
struct Op {
  core::Grant grant;  // for an end, only the id counts
  bool end = false;
};

inline std::vector<core::Grant> replay_model(const std::vector<Op>& ops,
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

inline void expect_live(const std::vector<core::JournalEntry>& actual,
                        const std::vector<core::Grant>& expected, const std::string& context) {
  SCOPED_TRACE(context);
  ASSERT_EQ(actual.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    expect_same(actual[i].grant, expected[i]);
    EXPECT_EQ(actual[i].boot_id, "boot-a");
  }
}

// Six records (grants, an upsert, ends) after the header, as a journal appends them.
struct SampleJournal {
  std::vector<Op> ops;
  std::string text;                 // header + one line per op
  std::vector<std::size_t> starts;  // where each op's line starts in `text`
};

inline SampleJournal sample_journal() {
  SampleJournal sample;
  auto a = make_grant("g-a", "203.0.113.7", {ssh});
  auto b = make_grant("g-b", "2001:db8:42::/48", {ssh, dns, syslog}, "Wartung für Ärztin – 🔧");
  auto c = make_grant("g-c", "10.0.0.0/24", {https});
  auto b2 = b;
  b2.status_reason = "PolicyChanged";
  b2.ports = {ssh};
  sample.ops = {{a}, {b}, {a, true}, {c}, {b2}, {c, true}};

  sample.text = journal_header;
  for (const auto& op : sample.ops) {
    sample.starts.push_back(sample.text.size());
    if (op.end) {
      sample.text += state::end_record(op.grant.id, core::GrantStatus::revoked, "UserRequested");
    } else {
      const auto line = state::grant_record(op.grant, "boot-a");
      EXPECT_TRUE(line.has_value());
      if (line) sample.text += *line;
    }
  }
  return sample;
}

// The compacted file a replay of `text`'s complete lines must leave: header + the latest
// line of each live grant, by id.
inline std::string expected_compaction(const std::string& text, const std::vector<Op>& ops,
                                       const std::vector<std::size_t>& starts,
                                       const std::vector<core::Grant>& live) {
  std::map<std::string, std::string> lines;
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const auto end = text.find('\n', starts[i]);
    if (end == std::string::npos) break;
    if (!ops[i].end) lines[ops[i].grant.id] = text.substr(starts[i], end + 1 - starts[i]);
  }
  std::string expected = journal_header;
  std::set<std::string> live_ids;
  for (const auto& grant : live) live_ids.insert(grant.id);
  for (const auto& [id, line] : lines) {
    if (live_ids.contains(id)) expected += line;
  }
  return expected;
}

// A crash point: a replay (state::TextReplay or state::JournalReplay) of the sample cut to
// `size` bytes keeps exactly the complete records before the cut, reports damage exactly
// when the cut is inside a line, and compacts to `compacted`.
template <class Replay>
void expect_cut_replay(const SampleJournal& sample, std::size_t size, const Replay& replay,
                       const std::string& name, const std::string& compacted) {
  const auto context = "cut at byte " + std::to_string(size);
  std::size_t complete = 0;
  while (complete < sample.ops.size() && sample.text.find('\n', sample.starts[complete]) < size) {
    ++complete;
  }
  const std::vector<Op> fitting(sample.ops.begin(), sample.ops.begin() + complete);
  const auto expected = replay_model(fitting);
  expect_live(replay.live, expected, context);
  EXPECT_EQ(replay.records, complete) << context;

  const bool at_boundary = size == 0 || sample.text[size - 1] == '\n';
  EXPECT_EQ(replay.dropped.empty(), at_boundary) << context;
  for (const auto& line : replay.dropped) {
    EXPECT_TRUE(line.starts_with(name + ": ")) << line;
  }
  EXPECT_EQ(compacted, expected_compaction(sample.text, fitting, sample.starts, expected))
      << context;
}

// The sample's record that the bit flips hit: "end g-a", whose loss brings g-a back, visibly.
inline constexpr std::size_t flip_victim = 2;

// The sample with bit `flip` of the victim's line (its newline included) flipped.
inline std::string flip_in_victim(const SampleJournal& sample, std::size_t flip) {
  auto text = sample.text;
  const auto at = sample.starts[flip_victim] + flip / 8;
  text[at] = static_cast<char>(text[at] ^ (1 << (flip % 8)));
  return text;
}

// CRC32 catches every single-bit error: a replay of flip_in_victim(sample, flip) loses the
// victim and no other record.
template <class Replay>
void expect_flip_replay(const SampleJournal& sample, std::size_t flip, const Replay& replay) {
  const auto context = "byte " + std::to_string(sample.starts[flip_victim] + flip / 8) +
                       " bit " + std::to_string(flip % 8);
  expect_live(replay.live, replay_model(sample.ops, {flip_victim}), context);
  EXPECT_EQ(replay.records, sample.ops.size() - 1) << context;
  ASSERT_FALSE(replay.dropped.empty()) << context;
  EXPECT_NE(replay.dropped[0].find("(line 4)"), std::string::npos)
      << context << ": " << replay.dropped[0];
}

}  // namespace jitd::test
