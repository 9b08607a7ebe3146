// Caller text made safe to echo, log and print on a terminal.
#include <gtest/gtest.h>

#include <string>

#include "jitd/core/text.hpp"

namespace jitd::core {
namespace {

TEST(Escaped, KeepsPrintableTextIncludingUtf8) {
  EXPECT_EQ(escaped("INC-1 café → 東京 \\ ok"), "INC-1 café → 東京 \\ ok");
}

TEST(Escaped, EscapesC0AndDel) {
  EXPECT_EQ(escaped("a\nb\rc\td"), "a\\nb\\rc\\td");
  EXPECT_EQ(escaped(std::string("\x1b[2J\x7f\0z", 7)), "\\x1b[2J\\x7f\\x00z");
}

TEST(Escaped, EscapesC1InUtf8) {
  EXPECT_EQ(escaped("x\xc2\x9b"
                    "31mx\xc2\x85"),
            "x\\u009b31mx\\u0085");
}

TEST(Escaped, EscapesBytesThatAreNotUtf8) {
  EXPECT_EQ(escaped("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(escaped("\xc0\x8a"), "\\xc0\\x8a");                    // overlong newline
  EXPECT_EQ(escaped("\xed\xa0\x80"), "\\xed\\xa0\\x80");           // surrogate
  EXPECT_EQ(escaped("ab\xe6\x9d"), "ab\\xe6\\x9d");                // cut short
  EXPECT_EQ(escaped("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
}

TEST(Excerpt, BoundsByCharactersAndMarksTheCut) {
  EXPECT_EQ(excerpt("short"), "short");
  EXPECT_EQ(excerpt(std::string(32, 'a')), std::string(32, 'a'));
  EXPECT_EQ(excerpt(std::string(120 * 1024, 'a')), std::string(32, 'a') + "…");
  EXPECT_EQ(excerpt("\n\n\n\n", 2), "\\n\\n…");
  EXPECT_EQ(excerpt("東京都", 2), "東京…");
}

}  // namespace
}  // namespace jitd::core
