#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "jitd/core/clock.hpp"

namespace jitd::core {
namespace {

using namespace std::chrono;
using namespace std::chrono_literals;

TimePoint at(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0, int ms = 0) {
  return TimePoint{sys_days{year{y} / month{mo} / day{d}} + hours{h} + minutes{mi} + seconds{s} +
                   milliseconds{ms}};
}

TimePoint parse_ok(std::string_view text) {
  auto parsed = parse_utc(text);
  EXPECT_TRUE(parsed.has_value()) << text << ": " << (parsed ? "" : parsed.error().message);
  return parsed ? *parsed : TimePoint{};
}

void expect_refused(std::string_view text) {
  const auto parsed = parse_utc(text);
  ASSERT_FALSE(parsed.has_value()) << "'" << text << "' parsed as " << format_utc(*parsed);
  EXPECT_EQ(parsed.error().code, ErrorCode::invalid_argument) << text;
  EXPECT_FALSE(parsed.error().message.empty()) << text;
}

TEST(CoreClock, FormatUtcWithoutMilliseconds) {
  EXPECT_EQ(format_utc(at(2026, 11, 24, 3, 30, 0)), "2026-11-24T03:30:00Z");
  EXPECT_EQ(format_utc(TimePoint{}), "1970-01-01T00:00:00Z");
  EXPECT_EQ(format_utc(at(1999, 12, 31, 23, 59, 59)), "1999-12-31T23:59:59Z");
  EXPECT_EQ(format_utc(at(2024, 2, 29, 12, 0, 0)), "2024-02-29T12:00:00Z");
}

TEST(CoreClock, FormatUtcWithMilliseconds) {
  EXPECT_EQ(format_utc(at(2026, 11, 24, 3, 30, 0, 125)), "2026-11-24T03:30:00.125Z");
  EXPECT_EQ(format_utc(at(2026, 11, 24, 3, 30, 0, 5)), "2026-11-24T03:30:00.005Z");
  EXPECT_EQ(format_utc(at(2026, 11, 24, 3, 30, 0, 500)), "2026-11-24T03:30:00.500Z");
  EXPECT_EQ(format_utc(at(2026, 11, 24, 23, 59, 59, 999)), "2026-11-24T23:59:59.999Z");
}

TEST(CoreClock, ParseUtcBasic) {
  EXPECT_EQ(parse_ok("2026-11-24T03:30:00Z"), at(2026, 11, 24, 3, 30, 0));
  EXPECT_EQ(parse_ok("1970-01-01T00:00:00Z"), TimePoint{});
  EXPECT_EQ(parse_ok("2024-02-29T23:59:59Z"), at(2024, 2, 29, 23, 59, 59));
}

TEST(CoreClock, ParseUtcAcceptedVariants) {
  const auto expected = at(2026, 11, 24, 3, 30, 0);
  EXPECT_EQ(parse_ok("2026-11-24T03:30:00+00:00"), expected);
  EXPECT_EQ(parse_ok("2026-11-24t03:30:00z"), expected);
  EXPECT_EQ(parse_ok("2026-11-24 03:30:00Z"), expected);
}

TEST(CoreClock, ParseUtcFractionalSeconds) {
  EXPECT_EQ(parse_ok("2026-11-24T03:30:00.125Z"), at(2026, 11, 24, 3, 30, 0, 125));
  EXPECT_EQ(parse_ok("2026-11-24T03:30:00.5Z"), at(2026, 11, 24, 3, 30, 0, 500));
  EXPECT_EQ(parse_ok("2026-11-24T03:30:00.05Z"), at(2026, 11, 24, 3, 30, 0, 50));
  // Digits beyond milliseconds are dropped (truncated), not an error.
  EXPECT_EQ(parse_ok("2026-11-24T03:30:00.123456789Z"), at(2026, 11, 24, 3, 30, 0, 123));
  EXPECT_EQ(parse_ok("2026-11-24T03:30:00.250+00:00"), at(2026, 11, 24, 3, 30, 0, 250));
}

TEST(CoreClock, FormatParseRoundTrip) {
  for (const auto when : {at(2026, 11, 24, 3, 30, 0), at(2026, 11, 24, 3, 30, 0, 125),
                          at(2000, 1, 1), at(2038, 1, 19, 3, 14, 8, 1), TimePoint{}}) {
    EXPECT_EQ(parse_ok(format_utc(when)), when) << format_utc(when);
  }
}

TEST(CoreClock, ParseUtcRefusesBadDates) {
  expect_refused("2026-13-01T00:00:00Z");
  expect_refused("2026-00-01T00:00:00Z");
  expect_refused("2026-11-00T00:00:00Z");
  expect_refused("2026-11-31T00:00:00Z");
  expect_refused("2026-02-29T00:00:00Z");  // not a leap year
  expect_refused("2026-1-24T00:00:00Z");
  expect_refused("26-11-24T00:00:00Z");
  expect_refused("2026/11/24T00:00:00Z");
}

TEST(CoreClock, ParseUtcRefusesBadTimes) {
  expect_refused("2026-11-24T25:00:00Z");
  expect_refused("2026-11-24T24:00:00Z");
  expect_refused("2026-11-24T23:60:00Z");
  expect_refused("2026-11-24T23:59:60Z");
  expect_refused("2026-11-24T3:30:00Z");
  expect_refused("2026-11-24T03:30Z");
  expect_refused("2026-11-24T03:30:00.Z");
  expect_refused("2026-11-24T03-30-00Z");
}

TEST(CoreClock, ParseUtcRefusesSignedFields) {
  expect_refused("2026-11-24T-1:00:00Z");
  expect_refused("2026-11-24T03:-5:00Z");
  expect_refused("2026-11-24T03:30:-1Z");
  expect_refused("2026--1-24T03:30:00Z");
  expect_refused("-001-11-24T03:30:00Z");
  expect_refused("+026-11-24T03:30:00Z");
}

TEST(CoreClock, ParseUtcRefusesMissingOrOtherZones) {
  expect_refused("2026-11-24T03:30:00");
  expect_refused("2026-11-24T03:30:00.125");
  expect_refused("2026-11-24T03:30:00+01:00");
  expect_refused("2026-11-24T03:30:00-00:00");
  expect_refused("2026-11-24T03:30:00-05:00");
  expect_refused("2026-11-24T03:30:00+0000");
  expect_refused("2026-11-24T03:30:00ZZ");
  expect_refused("2026-11-24T03:30:00Z ");
  expect_refused("2026-11-24T03:30:00 UTC");
}

TEST(CoreClock, ParseUtcRefusesGarbage) {
  expect_refused("");
  expect_refused("now");
  expect_refused("2026-11-24");
  expect_refused("2026-11-24T");
  expect_refused("1764000000");
}

TEST(CoreClock, FakeClockAdvancesOnlyWhenTold) {
  FakeClock clock(at(2026, 1, 1));
  EXPECT_EQ(clock.now(), at(2026, 1, 1));
  EXPECT_EQ(clock.now(), at(2026, 1, 1));
  clock.advance(90min);
  EXPECT_EQ(clock.now(), at(2026, 1, 1, 1, 30));
  clock.advance(1ms);
  EXPECT_EQ(format_utc(clock.now()), "2026-01-01T01:30:00.001Z");
}

}  // namespace
}  // namespace jitd::core
