#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "jitd/core/ranges.hpp"
#include "range_test_support.hpp"

namespace jitd::core {
namespace {

using namespace range_test;

// ---------------------------------------------------------------- derive_disjoint

TEST(CoreRanges, EmptyInputGivesEmptyOutput) { EXPECT_TRUE(derive_disjoint({}).empty()); }

TEST(CoreRanges, SingleRangeIsKept) {
  EXPECT_RANGES(derive_disjoint({timed("10.0.0.0/24", ssh, 1h)}), {timed("10.0.0.0/24", ssh, 1h)});
}

TEST(CoreRanges, HostInsideNetworkWithLaterEndSplitsNetwork) {
  const auto derived =
      derive_disjoint({timed("10.0.0.0/24", ssh, 1h), timed("10.0.0.77", ssh, 2h)});
  EXPECT_RANGES(derived, {span(Family::ipv4, ip4(10, 0, 0, 0), ip4(10, 0, 0, 76), ssh, 1h),
                          span(Family::ipv4, ip4(10, 0, 0, 77), ip4(10, 0, 0, 77), ssh, 2h),
                          span(Family::ipv4, ip4(10, 0, 0, 78), ip4(10, 0, 0, 255), ssh, 1h)});
}

TEST(CoreRanges, HostInsideNetworkWithEarlierEndIsAbsorbed) {
  const auto derived =
      derive_disjoint({timed("10.0.0.0/24", ssh, 2h), timed("10.0.0.77", ssh, 1h)});
  EXPECT_RANGES(derived, {timed("10.0.0.0/24", ssh, 2h)});
}

TEST(CoreRanges, HostInsideNetworkWithEqualEndIsAbsorbed) {
  const auto derived =
      derive_disjoint({timed("10.0.0.77", ssh, 1h), timed("10.0.0.0/24", ssh, 1h)});
  EXPECT_RANGES(derived, {timed("10.0.0.0/24", ssh, 1h)});
}

TEST(CoreRanges, HostAtNetworkEdgesWithLaterEnd) {
  EXPECT_RANGES(derive_disjoint({timed("10.0.0.0/24", ssh, 1h), timed("10.0.0.0", ssh, 2h)}),
                {timed("10.0.0.0", ssh, 2h),
                 span(Family::ipv4, ip4(10, 0, 0, 1), ip4(10, 0, 0, 255), ssh, 1h)});
  EXPECT_RANGES(derive_disjoint({timed("10.0.0.0/24", ssh, 1h), timed("10.0.0.255", ssh, 2h)}),
                {span(Family::ipv4, ip4(10, 0, 0, 0), ip4(10, 0, 0, 254), ssh, 1h),
                 timed("10.0.0.255", ssh, 2h)});
}

TEST(CoreRanges, ThreeLevelsOfNesting) {
  const auto derived =
      derive_disjoint({timed("10.0.0.0/16", ssh, 1h), timed("10.0.1.0/24", ssh, 3h),
                       timed("10.0.1.10", ssh, 2h), timed("10.0.1.20", ssh, 4h)});
  EXPECT_RANGES(derived, {span(Family::ipv4, ip4(10, 0, 0, 0), ip4(10, 0, 0, 255), ssh, 1h),
                          span(Family::ipv4, ip4(10, 0, 1, 0), ip4(10, 0, 1, 19), ssh, 3h),
                          span(Family::ipv4, ip4(10, 0, 1, 20), ip4(10, 0, 1, 20), ssh, 4h),
                          span(Family::ipv4, ip4(10, 0, 1, 21), ip4(10, 0, 1, 255), ssh, 3h),
                          span(Family::ipv4, ip4(10, 0, 2, 0), ip4(10, 0, 255, 255), ssh, 1h)});
}

TEST(CoreRanges, PartialOverlapLaterRangeEndsLater) {
  const auto derived = derive_disjoint(
      {span(Family::ipv4, 100, 200, ssh, 1h), span(Family::ipv4, 150, 300, ssh, 2h)});
  EXPECT_RANGES(derived,
                {span(Family::ipv4, 100, 149, ssh, 1h), span(Family::ipv4, 150, 300, ssh, 2h)});
}

TEST(CoreRanges, PartialOverlapEarlierRangeEndsLater) {
  const auto derived = derive_disjoint(
      {span(Family::ipv4, 150, 300, ssh, 1h), span(Family::ipv4, 100, 200, ssh, 2h)});
  EXPECT_RANGES(derived,
                {span(Family::ipv4, 100, 200, ssh, 2h), span(Family::ipv4, 201, 300, ssh, 1h)});
}

TEST(CoreRanges, PartialOverlapEqualEndsBecomeOneRange) {
  const auto derived = derive_disjoint(
      {span(Family::ipv4, 100, 200, ssh, 1h), span(Family::ipv4, 150, 300, ssh, 1h)});
  EXPECT_RANGES(derived, {span(Family::ipv4, 100, 300, ssh, 1h)});
}

TEST(CoreRanges, OverlapSharingOneAddress) {
  const auto derived = derive_disjoint(
      {span(Family::ipv4, 100, 200, ssh, 1h), span(Family::ipv4, 200, 300, ssh, 2h)});
  EXPECT_RANGES(derived,
                {span(Family::ipv4, 100, 199, ssh, 1h), span(Family::ipv4, 200, 300, ssh, 2h)});
}

TEST(CoreRanges, IdenticalRangesTakeTheLatestEnd) {
  const auto derived =
      derive_disjoint({timed("10.0.0.0/24", ssh, 1h), timed("10.0.0.0/24", ssh, 3h),
                       timed("10.0.0.0/24", ssh, 2h)});
  EXPECT_RANGES(derived, {timed("10.0.0.0/24", ssh, 3h)});
}

TEST(CoreRanges, ExactDuplicatesCollapse) {
  const auto derived = derive_disjoint({timed("10.0.0.5", ssh, 1h), timed("10.0.0.5", ssh, 1h)});
  EXPECT_RANGES(derived, {timed("10.0.0.5", ssh, 1h)});
}

TEST(CoreRanges, AdjacentRangesWithEqualEndsMerge) {
  const auto derived =
      derive_disjoint({timed("10.0.0.128/25", ssh, 1h), timed("10.0.0.0/25", ssh, 1h)});
  EXPECT_RANGES(derived, {timed("10.0.0.0/24", ssh, 1h)});
}

TEST(CoreRanges, ChainOfAdjacentHostsWithEqualEndsMerges) {
  std::vector<TimedRange> hosts;
  for (unsigned i = 0; i < 8; ++i) hosts.push_back(span(Family::ipv4, 16 + i, 16 + i, ssh, 1h));
  std::reverse(hosts.begin(), hosts.end());
  EXPECT_RANGES(derive_disjoint(hosts), {span(Family::ipv4, 16, 23, ssh, 1h)});
}

TEST(CoreRanges, AdjacentRangesWithDifferentEndsStayApart) {
  const auto derived =
      derive_disjoint({timed("10.0.0.0/25", ssh, 1h), timed("10.0.0.128/25", ssh, 2h)});
  EXPECT_RANGES(derived, {timed("10.0.0.0/25", ssh, 1h), timed("10.0.0.128/25", ssh, 2h)});
}

TEST(CoreRanges, RangesWithAGapDoNotMerge) {
  const auto derived =
      derive_disjoint({timed("10.0.0.0/25", ssh, 1h), timed("10.0.1.0/25", ssh, 1h)});
  EXPECT_RANGES(derived, {timed("10.0.0.0/25", ssh, 1h), timed("10.0.1.0/25", ssh, 1h)});
  // One address apart is still a gap.
  EXPECT_RANGES(
      derive_disjoint({span(Family::ipv4, 10, 19, ssh, 1h), span(Family::ipv4, 21, 30, ssh, 1h)}),
      {span(Family::ipv4, 10, 19, ssh, 1h), span(Family::ipv4, 21, 30, ssh, 1h)});
}

TEST(CoreRanges, InnerRangesNotEndingLaterDoNotSplit) {
  // Inner ranges ending at the same time or earlier do not cut the outer one.
  EXPECT_RANGES(
      derive_disjoint({span(Family::ipv4, 100, 300, ssh, 1h), span(Family::ipv4, 150, 160, ssh, 1h),
                       span(Family::ipv4, 155, 158, ssh, 30min)}),
      {span(Family::ipv4, 100, 300, ssh, 1h)});
}

TEST(CoreRanges, FamiliesKeptApart) {
  // ::/96 and 0.0.0.0/0 cover the same numbers but are different address families.
  const auto derived = derive_disjoint(
      {timed("0.0.0.0/0", ssh, 1h), timed("::/96", ssh, 1h), timed("::5", ssh, 2h)});
  EXPECT_RANGES(derived,
                {span(Family::ipv4, 0, v4_max, ssh, 1h), span(Family::ipv6, 0, 4, ssh, 1h),
                 span(Family::ipv6, 5, 5, ssh, 2h), span(Family::ipv6, 6, v4_max, ssh, 1h)});
}

TEST(CoreRanges, PortsAndProtocolsKeptApart) {
  const auto derived = derive_disjoint(
      {timed("10.0.0.0/24", ssh, 1h), timed("10.0.0.7", https, 2h), timed("10.0.0.0/25", udp22, 3h),
       timed("10.0.0.128/25", ssh, 1h), timed("10.0.0.7", udp22, 4h)});
  std::vector<TimedRange> ssh_ranges, https_ranges, udp_ranges;
  for (const auto& range : derived) {
    if (range.key.port == ssh) ssh_ranges.push_back(range);
    if (range.key.port == https) https_ranges.push_back(range);
    if (range.key.port == udp22) udp_ranges.push_back(range);
  }
  EXPECT_EQ(derived.size(), ssh_ranges.size() + https_ranges.size() + udp_ranges.size());
  EXPECT_RANGES(ssh_ranges, {timed("10.0.0.0/24", ssh, 1h)});
  EXPECT_RANGES(https_ranges, {timed("10.0.0.7", https, 2h)});
  EXPECT_RANGES(udp_ranges, {span(Family::ipv4, ip4(10, 0, 0, 0), ip4(10, 0, 0, 6), udp22, 3h),
                             timed("10.0.0.7", udp22, 4h),
                             span(Family::ipv4, ip4(10, 0, 0, 8), ip4(10, 0, 0, 127), udp22, 3h)});
}

TEST(CoreRanges, GroupsComeOutContiguous) {
  // Interleaved input: each (family, port) group must come out as one sorted block.
  const auto derived = derive_disjoint({timed("10.0.0.9", ssh, 1h), timed("fd00::1", ssh, 1h),
                                        timed("10.0.0.1", https, 1h), timed("10.0.0.1", ssh, 1h),
                                        timed("fd00::9", https, 1h), timed("fd00::3", ssh, 1h)});
  ASSERT_EQ(derived.size(), 6U);
  std::set<std::pair<Family, PortKey>> finished;
  for (std::size_t i = 0; i < derived.size(); ++i) {
    const std::pair group{derived[i].key.source.family, derived[i].key.port};
    EXPECT_FALSE(finished.contains(group)) << "group split at " << i << describe(derived);
    if (i + 1 < derived.size()) {
      const std::pair next{derived[i + 1].key.source.family, derived[i + 1].key.port};
      if (next != group) {
        finished.insert(group);
      } else {
        EXPECT_LT(derived[i].key.source.last, derived[i + 1].key.source.first);
      }
    }
  }
}

TEST(CoreRanges, FullIpv4RangeWithNestedPrefix) {
  const auto derived = derive_disjoint({timed("0.0.0.0/0", ssh, 1h), timed("10.0.0.0/8", ssh, 2h)});
  EXPECT_RANGES(
      derived, {span(Family::ipv4, 0, ip4(9, 255, 255, 255), ssh, 1h), timed("10.0.0.0/8", ssh, 2h),
                span(Family::ipv4, ip4(11, 0, 0, 0), v4_max, ssh, 1h)});
}

TEST(CoreRanges, FullIpv4RangeWithTopAndBottomHosts) {
  const auto derived = derive_disjoint(
      {timed("255.255.255.255", ssh, 2h), timed("0.0.0.0/0", ssh, 1h), timed("0.0.0.0", ssh, 3h)});
  EXPECT_RANGES(derived,
                {span(Family::ipv4, 0, 0, ssh, 3h), span(Family::ipv4, 1, v4_max - 1, ssh, 1h),
                 span(Family::ipv4, v4_max, v4_max, ssh, 2h)});
}

TEST(CoreRanges, FullIpv6RangeAloneAndWithTopHost) {
  EXPECT_RANGES(derive_disjoint({timed("::/0", ssh, 1h)}),
                {span(Family::ipv6, 0, v6_max, ssh, 1h)});
  EXPECT_RANGES(derive_disjoint({timed("::/0", ssh, 1h), timed("::/0", ssh, 2h)}),
                {span(Family::ipv6, 0, v6_max, ssh, 2h)});
  const auto derived = derive_disjoint(
      {timed("::/0", ssh, 1h), timed("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ssh, 2h)});
  EXPECT_RANGES(derived, {span(Family::ipv6, 0, v6_max - 1, ssh, 1h),
                          span(Family::ipv6, v6_max, v6_max, ssh, 2h)});
}

TEST(CoreRanges, FullIpv6RangeWithTopHalfEndingLater) {
  const auto derived =
      derive_disjoint({timed("8000::/1", ssh, 2h), timed("::/0", ssh, 1h), timed("::/1", ssh, 1h)});
  EXPECT_RANGES(derived, {span(Family::ipv6, 0, v6_max >> 1, ssh, 1h),
                          span(Family::ipv6, (v6_max >> 1) + 1, v6_max, ssh, 2h)});
}

TEST(CoreRanges, TopRangesWithEqualEndMergeAtFamilyMax) {
  EXPECT_RANGES(derive_disjoint({timed("128.0.0.0/1", ssh, 1h), timed("0.0.0.0/1", ssh, 1h)}),
                {span(Family::ipv4, 0, v4_max, ssh, 1h)});
  EXPECT_RANGES(derive_disjoint({timed("8000::/1", ssh, 1h), timed("::/1", ssh, 1h)}),
                {span(Family::ipv6, 0, v6_max, ssh, 1h)});
}

TEST(CoreRanges, ResultDoesNotDependOnInputOrder) {
  std::vector<TimedRange> input = {timed("10.0.0.0/16", ssh, 1h), timed("10.0.1.0/24", ssh, 3h),
                                   timed("10.0.1.10", ssh, 2h),   timed("10.0.1.20", ssh, 4h),
                                   timed("fd00::/64", ssh, 1h),   timed("fd00::1", https, 5h),
                                   timed("0.0.0.0/0", https, 1h), timed("10.0.0.0/8", https, 1h)};
  const auto reference = derive_disjoint(input);
  std::mt19937 random(7);
  for (int i = 0; i < 20; ++i) {
    std::shuffle(input.begin(), input.end(), random);
    EXPECT_EQ(derive_disjoint(input), reference);
  }
}

TEST(CoreRanges, DerivationIsIdempotent) {
  const auto once = derive_disjoint({timed("10.0.0.0/16", ssh, 1h), timed("10.0.1.0/24", ssh, 3h),
                                     timed("10.0.1.10", ssh, 2h), timed("::/0", ssh, 1h)});
  EXPECT_EQ(derive_disjoint(once), once);
}

// A brute-force reference over pseudo-random inputs. Addresses are drawn from a small
// window near a base (so ranges overlap often), plus some that reach the family's ends.
struct PropertyCase {
  std::vector<TimedRange> raw;
  std::vector<AddressValue> samples_v4;
  std::vector<AddressValue> samples_v6;
};

PropertyCase random_case(std::mt19937_64& random) {
  const PortKey ports[] = {ssh, https, udp22};
  const AddressValue bases[] = {ip4(10, 0, 0, 0), AddressValue{0xfd00} << 112};
  PropertyCase result;
  const int count = std::uniform_int_distribution<int>(1, 12)(random);
  for (int i = 0; i < count; ++i) {
    const auto family = random() % 2 == 0 ? Family::ipv4 : Family::ipv6;
    const AddressValue max = family == Family::ipv4 ? v4_max : v6_max;
    const AddressValue base = bases[family == Family::ipv4 ? 0 : 1];
    const auto port = ports[random() % 3];
    const auto end = Milliseconds(std::uniform_int_distribution<int>(1, 4)(random) * 600'000);
    AddressValue first = 0, last = 0;
    switch (random() % 8) {
      case 0:
        first = 0;
        last = max;
        break;  // whole family
      case 1:
        first = base + random() % 64;
        last = max;
        break;  // to the top
      case 2:
        first = 0;
        last = base + random() % 64;
        break;                                           // from the bottom
      case 3: first = last = max - random() % 3; break;  // top hosts
      case 4: {                                          // aligned prefix
        const unsigned bits = random() % 6;
        first = base + ((random() % 64) & ~((1U << bits) - 1));
        last = first + (AddressValue{1} << bits) - 1;
        break;
      }
      default: {  // arbitrary span
        first = base + random() % 64;
        last = first + random() % 24;
        break;
      }
    }
    result.raw.push_back(span(family, first, last, port, end));
  }
  for (const auto& range : result.raw) {
    auto& samples = range.key.source.family == Family::ipv4 ? result.samples_v4 : result.samples_v6;
    const AddressValue max = range.key.source.family == Family::ipv4 ? v4_max : v6_max;
    for (const AddressValue edge : {range.key.source.first, range.key.source.last}) {
      samples.push_back(edge);
      if (edge > 0) samples.push_back(edge - 1);
      if (edge < max) samples.push_back(edge + 1);
    }
  }
  for (AddressValue offset = 0; offset < 100; ++offset) {
    result.samples_v4.push_back(bases[0] + offset);
    result.samples_v6.push_back(bases[1] + offset);
  }
  for (const AddressValue edge : {AddressValue{0}, AddressValue{1}, v4_max - 1, v4_max}) {
    result.samples_v4.push_back(edge);
  }
  for (const AddressValue edge : {AddressValue{0}, AddressValue{1}, v6_max - 1, v6_max}) {
    result.samples_v6.push_back(edge);
  }
  return result;
}

std::optional<Deadline> reference_end(const std::vector<TimedRange>& ranges, Family family,
                                      PortKey port, AddressValue address) {
  std::optional<Deadline> end;
  for (const auto& range : ranges) {
    if (range.key.source.family == family && range.key.port == port &&
        range.key.source.first <= address && address <= range.key.source.last) {
      end = end ? std::max(*end, range.end) : range.end;
    }
  }
  return end;
}

std::optional<Deadline> derived_end(const std::vector<TimedRange>& derived, Family family,
                                    PortKey port, AddressValue address, int& holders) {
  std::optional<Deadline> end;
  holders = 0;
  for (const auto& range : derived) {
    if (range.key.source.family == family && range.key.port == port &&
        range.key.source.first <= address && address <= range.key.source.last) {
      end = range.end;
      ++holders;
    }
  }
  return end;
}

TEST(CoreRanges, PropertyDerivedEndIsMaxOverRawRanges) {
  std::mt19937_64 random(20261124);
  const PortKey ports[] = {ssh, https, udp22};
  for (int iteration = 0; iteration < 400; ++iteration) {
    const auto input = random_case(random);
    const auto derived = derive_disjoint(input.raw);
    SCOPED_TRACE("iteration " + std::to_string(iteration) + " input:" + describe(input.raw) +
                 "\nderived:" + describe(derived));

    // Pointwise: each sample address ends at the latest end of the raw ranges holding it,
    // and lies in at most one derived element.
    for (const auto family : {Family::ipv4, Family::ipv6}) {
      const auto& samples = family == Family::ipv4 ? input.samples_v4 : input.samples_v6;
      for (const auto port : ports) {
        for (const auto address : samples) {
          int holders = 0;
          const auto actual = derived_end(derived, family, port, address, holders);
          ASSERT_LE(holders, 1) << address_to_string(family, address);
          ASSERT_EQ(actual, reference_end(input.raw, family, port, address))
              << address_to_string(family, address) << " " << to_string(port.protocol) << "/"
              << port.port;
        }
      }
    }

    // Structure: well-formed, inside the family, each group one block, sorted, disjoint,
    // and touching neighbours with the same end merged.
    std::set<std::pair<Family, PortKey>> seen_groups;
    for (std::size_t i = 0; i < derived.size(); ++i) {
      const auto& range = derived[i];
      const AddressValue max = range.key.source.family == Family::ipv4 ? v4_max : v6_max;
      ASSERT_LE(range.key.source.first, range.key.source.last);
      ASSERT_LE(range.key.source.last, max);
      const std::pair group{range.key.source.family, range.key.port};
      const bool continues = i > 0 && derived[i - 1].key.source.family == group.first &&
                             derived[i - 1].key.port == group.second;
      if (!continues) {
        ASSERT_TRUE(seen_groups.insert(group).second) << "group split at " << i;
        continue;
      }
      const auto& previous = derived[i - 1];
      ASSERT_LT(previous.key.source.last, range.key.source.first) << "overlap or unsorted at " << i;
      if (previous.key.source.last + 1 == range.key.source.first) {
        ASSERT_NE(previous.end, range.end) << "touching elements with one end not merged at " << i;
      }
    }
    // Every derived element is covered by some raw range at its edges.
    for (const auto& range : derived) {
      for (const auto edge : {range.key.source.first, range.key.source.last}) {
        ASSERT_EQ(reference_end(input.raw, range.key.source.family, range.key.port, edge),
                  range.end);
      }
    }
  }
}

// ---------------------------------------------------------------- diff_ranges

TEST(CoreRanges, DiffOfEqualStatesIsEmpty) {
  const auto state = derive_disjoint({timed("10.0.0.0/24", ssh, 1h), timed("10.0.0.7", ssh, 2h)});
  EXPECT_TRUE(diff_ranges(state, state, t0).empty());
  EXPECT_TRUE(diff_ranges({}, {}, t0).empty());
}

TEST(CoreRanges, DiffAddsNewRangesWithRemainingTime) {
  const auto now = t0 + 10min;
  const auto changes = diff_ranges({}, {timed("10.0.0.7", ssh, 1h)}, now);
  EXPECT_TRUE(changes.remove.empty());
  ASSERT_EQ(changes.add.size(), 1U);
  EXPECT_EQ(changes.add[0].key, timed("10.0.0.7", ssh, 1h).key);
  EXPECT_EQ(changes.add[0].timeout, 50min);
}

TEST(CoreRanges, DiffRemovesRangesNoLongerDesired) {
  const auto changes = diff_ranges({timed("10.0.0.7", ssh, 1h), timed("10.0.0.8", ssh, 1h)},
                                   {timed("10.0.0.8", ssh, 1h)}, t0);
  EXPECT_TRUE(changes.add.empty());
  EXPECT_EQ(changes.remove, std::vector<ElementKey>{timed("10.0.0.7", ssh, 1h).key});
}

TEST(CoreRanges, DiffChangedEndRemovesAndReAddsSameKey) {
  const auto now = t0 + 5min;
  const auto changes =
      diff_ranges({timed("10.0.0.0/24", ssh, 1h)}, {timed("10.0.0.0/24", ssh, 2h)}, now);
  const auto key = timed("10.0.0.0/24", ssh, 1h).key;
  EXPECT_EQ(changes.remove, std::vector<ElementKey>{key});
  EXPECT_EQ(changes.add, (std::vector<TimedElement>{{key, 2h - 5min}}));

  // Shortening works the same way.
  const auto shorter =
      diff_ranges({timed("10.0.0.0/24", ssh, 2h)}, {timed("10.0.0.0/24", ssh, 1h)}, now);
  EXPECT_EQ(shorter.remove, std::vector<ElementKey>{key});
  EXPECT_EQ(shorter.add, (std::vector<TimedElement>{{key, 1h - 5min}}));
}

TEST(CoreRanges, DiffSplitRange) {
  const auto current = derive_disjoint({timed("10.0.0.0/24", ssh, 1h)});
  const auto desired =
      derive_disjoint({timed("10.0.0.0/24", ssh, 1h), timed("10.0.0.77", ssh, 2h)});
  const auto changes = diff_ranges(current, desired, t0);
  EXPECT_EQ(changes.remove, std::vector<ElementKey>{timed("10.0.0.0/24", ssh, 1h).key});
  EXPECT_EQ(changes.add,
            (std::vector<TimedElement>{
                {span(Family::ipv4, ip4(10, 0, 0, 0), ip4(10, 0, 0, 76), ssh, 0h).key, 1h},
                {timed("10.0.0.77", ssh, 0h).key, 2h},
                {span(Family::ipv4, ip4(10, 0, 0, 78), ip4(10, 0, 0, 255), ssh, 0h).key, 1h}}));
}

TEST(CoreRanges, DiffDoesNotRemoveRangesAlreadyEnded) {
  // The kernel dropped them itself; removing would fail with ENOENT.
  const auto ended = timed("10.0.0.7", ssh, 1h);
  EXPECT_TRUE(diff_ranges({ended}, {}, t0 + 1h).empty());                // ended exactly now
  EXPECT_TRUE(diff_ranges({ended}, {}, t0 + 2h).empty());                // ended earlier
  EXPECT_EQ(diff_ranges({ended}, {}, t0 + 1h - 1ms).remove.size(), 1U);  // still live
}

TEST(CoreRanges, DiffDoesNotAddRangesAlreadyEnded) {
  const auto ended = timed("10.0.0.7", ssh, 1h);
  EXPECT_TRUE(diff_ranges({}, {ended}, t0 + 1h).empty());
  EXPECT_TRUE(diff_ranges({}, {ended}, t0 + 3h).empty());
  const auto live = diff_ranges({}, {ended}, t0 + 1h - 1ms);
  ASSERT_EQ(live.add.size(), 1U);
  EXPECT_EQ(live.add[0].timeout, 1ms);
}

TEST(CoreRanges, DiffReAddsKeyWhoseOldElementEnded) {
  // Same key, the old element timed out in the kernel: add only, nothing to remove.
  const auto changes =
      diff_ranges({timed("10.0.0.7", ssh, 1h)}, {timed("10.0.0.7", ssh, 3h)}, t0 + 2h);
  EXPECT_TRUE(changes.remove.empty());
  EXPECT_EQ(changes.add, (std::vector<TimedElement>{{timed("10.0.0.7", ssh, 0h).key, 1h}}));
}

TEST(CoreRanges, DiffMixed) {
  const auto now = t0 + 30min;
  const std::vector<TimedRange> current = {
      timed("10.0.0.1", ssh, 1h),     // kept
      timed("10.0.0.2", ssh, 1h),     // removed
      timed("10.0.0.3", ssh, 20min),  // ended, silently forgotten
      timed("10.0.0.4", ssh, 1h),     // end moves
      timed("10.0.0.1", https, 1h)};  // removed: other port
  const std::vector<TimedRange> desired = {timed("10.0.0.1", ssh, 1h), timed("10.0.0.4", ssh, 2h),
                                           timed("10.0.0.5", ssh, 25min),
                                           timed("10.0.0.6", ssh, 45min)};
  const auto changes = diff_ranges(current, desired, now);
  std::set<ElementKey> removed(changes.remove.begin(), changes.remove.end());
  EXPECT_EQ(removed.size(), changes.remove.size());
  EXPECT_EQ(removed,
            (std::set<ElementKey>{timed("10.0.0.2", ssh, 0h).key, timed("10.0.0.4", ssh, 0h).key,
                                  timed("10.0.0.1", https, 0h).key}));
  std::map<ElementKey, Milliseconds> added;
  for (const auto& element : changes.add) added[element.key] = element.timeout;
  EXPECT_EQ(added.size(), changes.add.size());
  EXPECT_EQ(added, (std::map<ElementKey, Milliseconds>{{timed("10.0.0.4", ssh, 0h).key, 90min},
                                                       {timed("10.0.0.6", ssh, 0h).key, 15min}}));
}

// Applying the diff to a model of the kernel must be accepted (remove only what is held,
// add only what does not overlap what remains) and must leave exactly the live desired state.
TEST(CoreRanges, PropertyDiffTurnsKernelIntoDesired) {
  std::mt19937_64 random(99);
  for (int iteration = 0; iteration < 300; ++iteration) {
    auto before = random_case(random).raw;
    auto after = before;
    after.erase(std::remove_if(after.begin(), after.end(),
                               [&](const TimedRange&) { return random() % 3 == 0; }),
                after.end());
    for (auto& extra : random_case(random).raw) {
      if (random() % 2 == 0) after.push_back(extra);
    }
    const auto current = derive_disjoint(before);
    const auto desired = derive_disjoint(after);
    const auto now = t0 + Milliseconds(std::uniform_int_distribution<int>(0, 45)(random) * 60'000);
    SCOPED_TRACE("iteration " + std::to_string(iteration) + " now " + boot_time(now) +
                 "\ncurrent:" + describe(current) + "\ndesired:" + describe(desired));

    std::map<ElementKey, Deadline> kernel;
    for (const auto& element : timed_elements(current, now)) {
      kernel[element.key] = now + element.timeout;
    }
    const auto changes = diff_ranges(current, desired, now);
    for (const auto& key : changes.remove) ASSERT_EQ(kernel.erase(key), 1U);
    for (const auto& element : changes.add) {
      ASSERT_GT(element.timeout, Milliseconds{0});
      for (const auto& [held, end] : kernel) {
        ASSERT_FALSE(held.port == element.key.port &&
                     held.source.family == element.key.source.family &&
                     held.source.first <= element.key.source.last &&
                     element.key.source.first <= held.source.last);
      }
      kernel[element.key] = now + element.timeout;
    }
    std::map<ElementKey, Deadline> expected;
    for (const auto& range : desired) {
      if (range.end > now) expected[range.key] = range.end;
    }
    ASSERT_EQ(kernel, expected);
  }
}

// ---------------------------------------------------------------- timed_elements

TEST(CoreRanges, TimedElementsLeaveOutEndedAndCountFromNow) {
  const auto now = t0 + 1h;
  const auto elements =
      timed_elements({timed("10.0.0.1", ssh, 30min), timed("10.0.0.2", ssh, 1h),
                      timed("10.0.0.3", ssh, 90min), timed("fd00::/64", https, 3h)},
                     now);
  EXPECT_EQ(elements, (std::vector<TimedElement>{{timed("10.0.0.3", ssh, 0h).key, 30min},
                                                 {timed("fd00::/64", https, 0h).key, 2h}}));
  EXPECT_TRUE(timed_elements({}, now).empty());
}

}  // namespace
}  // namespace jitd::core
