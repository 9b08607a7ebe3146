// strict_json::parse: keys given twice in one object are refused, exactly or ignoring case;
// the same key in different objects is not a duplicate.
#include <gtest/gtest.h>

#include "jitd/strict_json/strict_json.hpp"

namespace jitd::strict_json {
namespace {

TEST(StrictJson, ParsesJsonWithUniqueKeys) {
  const auto document =
      parse(R"({"a": 1, "A": 2, "b": {"a": 3}, "c": [{"a": 4}, {"a": 5}]})", Keys::exact);
  ASSERT_TRUE(document.has_value());
  EXPECT_EQ((*document)["A"], 2);
  EXPECT_EQ((*document)["c"][1]["a"], 5);
}

TEST(StrictJson, RefusesTheFirstKeyGivenTwiceInOneObject) {
  const auto refused = parse(R"({"x": {"b": 1, "a": 1, "a": 2}, "b": 1, "b": 2})", Keys::exact);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().duplicate, "a");
}

TEST(StrictJson, IgnoringCaseRefusesKeysThatDifferOnlyInCase) {
  const auto refused = parse(R"({"number": 22, "Number": 23})", Keys::ignore_case);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().duplicate, "Number");  // as written the second time
  EXPECT_TRUE(parse(R"({"number": 22, "Number": 23})", Keys::exact).has_value());
}

TEST(StrictJson, RefusesTextThatIsNoJson) {
  for (const auto* text : {"", "{", R"({"a": 1,})", "{} {}"}) {
    const auto refused = parse(text, Keys::exact);
    ASSERT_FALSE(refused.has_value()) << text;
    EXPECT_FALSE(refused.error().duplicate.has_value()) << text;
  }
}

}  // namespace
}  // namespace jitd::strict_json
