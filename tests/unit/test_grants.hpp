#pragma once
// Helpers shared by the unit tests that build and compare grants: a prefix parser that fails
// the test on bad input, the ids of journal entries, and a field-by-field grant comparison.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/grant.hpp"
#include "jitd/core/journal.hpp"
#include "jitd/core/prefix.hpp"

namespace jitd::test {

// `text` parsed as a prefix; a failed parse fails the test and gives an empty prefix.
inline core::Prefix prefix(std::string_view text) {
  auto parsed = core::Prefix::parse(text);
  EXPECT_TRUE(parsed.has_value()) << text;
  return parsed ? *parsed : core::Prefix{};
}

// The grant ids of `entries`, in order.
inline std::vector<std::string> ids_of(const std::vector<core::JournalEntry>& entries) {
  std::vector<std::string> ids;
  ids.reserve(entries.size());
  for (const auto& entry : entries) ids.push_back(entry.grant.id);
  return ids;
}

// Expects `actual` to equal `expected` field by field, the status reason aside.
inline void expect_same_grant(const core::Grant& actual, const core::Grant& expected) {
  EXPECT_EQ(actual.id, expected.id);
  EXPECT_EQ(actual.requestor.uid, expected.requestor.uid);
  EXPECT_EQ(actual.requestor.name, expected.requestor.name);
  EXPECT_EQ(actual.source, expected.source) << actual.source.to_string();
  EXPECT_EQ(actual.ports, expected.ports);
  EXPECT_EQ(actual.start, expected.start);
  EXPECT_EQ(actual.end, expected.end);
  EXPECT_EQ(actual.deadline, expected.deadline);
  EXPECT_EQ(actual.justification, expected.justification);
  EXPECT_EQ(actual.status, expected.status);
}

}  // namespace jitd::test
