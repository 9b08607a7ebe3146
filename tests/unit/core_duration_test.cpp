#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "jitd/core/duration.hpp"

namespace jitd::core {
namespace {

using namespace std::chrono_literals;

Milliseconds parse_ok(std::string_view text) {
  auto parsed = parse_duration(text);
  EXPECT_TRUE(parsed.has_value()) << text << ": " << (parsed ? "" : parsed.error().message);
  return parsed ? *parsed : Milliseconds{-1};
}

void expect_refused(std::string_view text) {
  const auto parsed = parse_duration(text);
  ASSERT_FALSE(parsed.has_value()) << "'" << text << "' parsed as " << parsed->count() << " ms";
  EXPECT_EQ(parsed.error().code, ErrorCode::invalid_argument) << text;
  EXPECT_FALSE(parsed.error().message.empty()) << text;
}

TEST(CoreDuration, IsoTimeComponents) {
  EXPECT_EQ(parse_ok("PT3H"), 3h);
  EXPECT_EQ(parse_ok("PT30M"), 30min);
  EXPECT_EQ(parse_ok("PT45S"), 45s);
  EXPECT_EQ(parse_ok("PT1H30M"), 90min);
  EXPECT_EQ(parse_ok("PT1H30M15S"), 1h + 30min + 15s);
  EXPECT_EQ(parse_ok("PT1H15S"), 1h + 15s);
  EXPECT_EQ(parse_ok("PT0H5M"), 5min);
  EXPECT_EQ(parse_ok("PT90M"), 90min);
}

TEST(CoreDuration, IsoDateComponents) {
  EXPECT_EQ(parse_ok("P1D"), 24h);
  EXPECT_EQ(parse_ok("P2D"), 48h);
  EXPECT_EQ(parse_ok("P1W"), 7 * 24h);
  EXPECT_EQ(parse_ok("P1W2D"), 9 * 24h);
  EXPECT_EQ(parse_ok("P1DT2H"), 26h);
  EXPECT_EQ(parse_ok("P1DT1H1M1S"), 24h + 1h + 1min + 1s);
}

TEST(CoreDuration, IsoFractions) {
  EXPECT_EQ(parse_ok("PT0.5S"), 500ms);
  EXPECT_EQ(parse_ok("PT45.5S"), 45500ms);
  EXPECT_EQ(parse_ok("PT0.001S"), 1ms);
  EXPECT_EQ(parse_ok("PT1.5H"), 90min);
  EXPECT_EQ(parse_ok("PT0.5M"), 30s);
  EXPECT_EQ(parse_ok("P0.5D"), 12h);
  EXPECT_EQ(parse_ok("PT0,5S"), 500ms);  // ISO 8601 allows a decimal comma
}

TEST(CoreDuration, Shorthand) {
  EXPECT_EQ(parse_ok("3h"), 3h);
  EXPECT_EQ(parse_ok("30m"), 30min);
  EXPECT_EQ(parse_ok("45s"), 45s);
  EXPECT_EQ(parse_ok("1h30m"), 90min);
  EXPECT_EQ(parse_ok("1h30m15s"), 1h + 30min + 15s);
  EXPECT_EQ(parse_ok("1d"), 24h);
  EXPECT_EQ(parse_ok("1d12h"), 36h);
  EXPECT_EQ(parse_ok("1.5h"), 90min);
  EXPECT_EQ(parse_ok("0.5s"), 500ms);
}

TEST(CoreDuration, CaseInsensitive) {
  EXPECT_EQ(parse_ok("pt3h"), 3h);
  EXPECT_EQ(parse_ok("Pt1h30M"), 90min);
  EXPECT_EQ(parse_ok("p1d"), 24h);
  EXPECT_EQ(parse_ok("p1dt2h"), 26h);
  EXPECT_EQ(parse_ok("3H"), 3h);
  EXPECT_EQ(parse_ok("1H30M"), 90min);
}

TEST(CoreDuration, RefusesEmptyAndBareDesignators) {
  expect_refused("");
  expect_refused("P");
  expect_refused("PT");
  expect_refused("p");
  expect_refused("P1DT");
  expect_refused("T3H");
}

TEST(CoreDuration, RefusesUnknownUnitsAndMissingNumbers) {
  expect_refused("3x");
  expect_refused("h");
  expect_refused("3");
  expect_refused("PT3");
  expect_refused("PT3H30");
  expect_refused("P1Y");
  expect_refused("P1M");   // months are not fixed lengths
  expect_refused("PT1D");  // days belong before T
  expect_refused("P3H");   // hours belong after T
  expect_refused("3hours");
  expect_refused("3 h");
  expect_refused(" 3h");
  expect_refused("3h ");
  expect_refused("PT.S");
  expect_refused("PT1.2.3S");
  expect_refused("PT1e3S");
  expect_refused("abc");
}

TEST(CoreDuration, RefusesMisorderedOrRepeatedUnits) {
  expect_refused("PT30M1H");
  expect_refused("PT1H1H");
  expect_refused("30m1h");
  expect_refused("1s1m");
  expect_refused("P1D1W");
}

TEST(CoreDuration, RefusesZeroAndNegative) {
  expect_refused("-5m");
  expect_refused("-PT5M");
  expect_refused("PT-5M");
  expect_refused("0s");
  expect_refused("0h0m");
  expect_refused("PT0S");
  expect_refused("P0D");
  expect_refused("PT0H0M0S");
  expect_refused("PT0.0001S");  // rounds to zero milliseconds
}

TEST(CoreDuration, RefusesAbsurdlyLong) {
  expect_refused("99999999999999999999h");
  expect_refused("P99999999999999999999D");
  // Each part under the bound, the sum over it (found by fuzzing: it printed as
  // "PT407999808H", which does not parse).
  expect_refused("P999999W9999999D");
  expect_refused("P11574074DT1H46M41S");  // 10^15 ms + 1 s, in parts
}

TEST(CoreDuration, ErrorMessageQuotesTheInput) {
  const auto parsed = parse_duration("3x");
  ASSERT_FALSE(parsed.has_value());
  EXPECT_NE(parsed.error().message.find("'3x'"), std::string::npos) << parsed.error().message;
}

TEST(CoreDuration, FormatWholeUnits) {
  EXPECT_EQ(format_duration(3h), "PT3H");
  EXPECT_EQ(format_duration(30min), "PT30M");
  EXPECT_EQ(format_duration(45s), "PT45S");
  EXPECT_EQ(format_duration(90min), "PT1H30M");
  EXPECT_EQ(format_duration(1h + 1s), "PT1H1S");
  EXPECT_EQ(format_duration(24h), "PT24H");
  EXPECT_EQ(format_duration(26h + 5min + 7s), "PT26H5M7S");
}

TEST(CoreDuration, FormatFractions) {
  EXPECT_EQ(format_duration(500ms), "PT0.5S");
  EXPECT_EQ(format_duration(1ms), "PT0.001S");
  EXPECT_EQ(format_duration(1500ms), "PT1.5S");
  EXPECT_EQ(format_duration(45250ms), "PT45.25S");
  EXPECT_EQ(format_duration(1min + 10ms), "PT1M0.01S");
}

TEST(CoreDuration, FormatZeroAndNegative) {
  EXPECT_EQ(format_duration(0ms), "PT0S");
  EXPECT_EQ(format_duration(-5s), "PT0S");
}

TEST(CoreDuration, FormatParseRoundTrip) {
  for (const Milliseconds value :
       {Milliseconds{1}, Milliseconds{999}, Milliseconds{1000}, Milliseconds{59'999},
        Milliseconds{60'000}, Milliseconds{3'599'999}, Milliseconds{3'600'000},
        Milliseconds{5'400'000}, Milliseconds{86'400'000}, Milliseconds{86'400'001},
        Milliseconds{123'456'789}}) {
    const auto text = format_duration(value);
    EXPECT_EQ(parse_ok(text), value) << text;
  }
  for (const auto* text : {"PT3H", "PT1H30M", "PT0.5S", "PT45S", "PT1H0.25S", "PT2M3S"}) {
    EXPECT_EQ(format_duration(parse_ok(text)), text);
  }
  EXPECT_EQ(format_duration(parse_ok("1h30m")), "PT1H30M");
  EXPECT_EQ(format_duration(parse_ok("P1D")), "PT24H");
}

}  // namespace
}  // namespace jitd::core
