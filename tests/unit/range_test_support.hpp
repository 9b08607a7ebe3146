#pragma once
// Shared by the tests of the disjoint derivation (core_ranges_test) and of its incremental form
// (core_range_index_test): ports, addresses, ranges on the boot clock, and EXPECT_RANGES, which
// prints both lists readably when they differ.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/prefix.hpp"
#include "jitd/core/ranges.hpp"

namespace jitd::core::range_test {

using namespace std::chrono_literals;

// Ranges end on the boot clock; any origin will do.
inline const Deadline t0 = Deadline{std::chrono::hours(5)};
inline constexpr PortKey ssh{Protocol::tcp, 22};
inline constexpr PortKey https{Protocol::tcp, 443};
inline constexpr PortKey udp22{Protocol::udp, 22};  // same number as ssh, other protocol

inline constexpr AddressValue v4_max = 0xFFFFFFFFU;
inline constexpr AddressValue v6_max = ~AddressValue{0};

constexpr AddressValue ip4(unsigned a, unsigned b, unsigned c, unsigned d) {
  return (AddressValue{a} << 24) | (AddressValue{b} << 16) | (AddressValue{c} << 8) | d;
}

inline AddressRange cidr(std::string_view text) {
  auto parsed = Prefix::parse(text);
  EXPECT_TRUE(parsed.has_value()) << text;
  return parsed ? parsed->range() : AddressRange{};
}

inline TimedRange timed(std::string_view prefix, PortKey port, Milliseconds end_after) {
  return {ElementKey{cidr(prefix), port}, t0 + end_after};
}

inline TimedRange span(Family family, AddressValue first, AddressValue last, PortKey port,
                       Milliseconds end_after) {
  return {ElementKey{AddressRange{family, first, last}, port}, t0 + end_after};
}

inline std::string boot_time(Deadline when) {
  return "boot+" + std::to_string(when.time_since_epoch().count()) + "ms";
}

inline std::string describe(const TimedRange& range) {
  return address_to_string(range.key.source.family, range.key.source.first) + "-" +
         address_to_string(range.key.source.family, range.key.source.last) + " " +
         std::string(to_string(range.key.port.protocol)) + "/" +
         std::to_string(range.key.port.port) + " until " + boot_time(range.end);
}

inline std::string describe(const std::vector<TimedRange>& ranges) {
  std::string text;
  for (const auto& range : ranges) text += "\n  " + describe(range);
  return text;
}

}  // namespace jitd::core::range_test

#define EXPECT_RANGES(actual, ...)                                               \
  do {                                                                           \
    const std::vector<::jitd::core::TimedRange>& expected_ranges = __VA_ARGS__;  \
    const auto& actual_ranges = (actual);                                        \
    EXPECT_EQ(actual_ranges, expected_ranges)                                    \
        << "actual:" << ::jitd::core::range_test::describe(actual_ranges)        \
        << "\nexpected:" << ::jitd::core::range_test::describe(expected_ranges); \
  } while (false)
