#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "jitd/core/range_index.hpp"
#include "range_test_support.hpp"

namespace jitd::core {
namespace {

using namespace range_test;

// The kernel's view of the changes: keys removed, and elements added with their end.
struct Applied {
  std::vector<ElementKey> removed;
  std::vector<TimedRange> added;
};

Applied applied(const RangeChanges& changes, Deadline now) {
  const auto elements = changes.to_elements(now);
  Applied result{elements.remove, {}};
  for (const auto& element : elements.add)
    result.added.push_back({element.key, now + element.timeout});
  std::sort(result.removed.begin(), result.removed.end());
  std::sort(result.added.begin(), result.added.end());
  return result;
}

// ---------------------------------------------------------------- focused cases

TEST(CoreRangeIndex, EmptyIndex) {
  RangeIndex index;
  EXPECT_TRUE(index.elements().empty());
  EXPECT_EQ(index.coverage_count(), 0U);
  EXPECT_EQ(index.element_count(), 0U);
  RangeChanges changes;
  EXPECT_TRUE(changes.empty());
  EXPECT_TRUE(changes.to_elements(t0).empty());
}

TEST(CoreRangeIndex, SingleAdd) {
  RangeIndex index;
  RangeChanges changes;
  index.add(timed("10.0.0.7", ssh, 1h), changes);
  EXPECT_RANGES(index.elements(), {timed("10.0.0.7", ssh, 1h)});
  EXPECT_EQ(index.coverage_count(), 1U);
  EXPECT_EQ(index.element_count(), 1U);
  EXPECT_FALSE(changes.empty());
  const auto elements = changes.to_elements(t0 + 10min);
  EXPECT_TRUE(elements.remove.empty());
  EXPECT_EQ(elements.add, (std::vector<TimedElement>{{timed("10.0.0.7", ssh, 0h).key, 50min}}));
}

TEST(CoreRangeIndex, OverlappingGrantsWithDifferentEndsSplitIntoThree) {
  RangeIndex index;
  RangeChanges first;
  index.add(timed("10.0.0.0/24", ssh, 1h), first);
  RangeChanges second;
  index.add(timed("10.0.0.77", ssh, 2h), second);
  const std::vector<TimedRange> expected = {
      span(Family::ipv4, ip4(10, 0, 0, 0), ip4(10, 0, 0, 76), ssh, 1h),
      span(Family::ipv4, ip4(10, 0, 0, 77), ip4(10, 0, 0, 77), ssh, 2h),
      span(Family::ipv4, ip4(10, 0, 0, 78), ip4(10, 0, 0, 255), ssh, 1h)};
  EXPECT_RANGES(index.elements(), expected);
  const auto kernel = applied(second, t0);
  EXPECT_EQ(kernel.removed, std::vector<ElementKey>{timed("10.0.0.0/24", ssh, 0h).key});
  EXPECT_RANGES(kernel.added, expected);

  // A host ending earlier inside the network changes nothing.
  RangeChanges third;
  index.add(timed("10.0.0.5", ssh, 30min), third);
  EXPECT_TRUE(third.empty());
  EXPECT_RANGES(index.elements(), expected);
  EXPECT_EQ(index.coverage_count(), 3U);
}

TEST(CoreRangeIndex, TouchingSameEndMergesAcrossAnAdd) {
  RangeIndex index;
  RangeChanges changes;
  index.add(span(Family::ipv4, 10, 19, ssh, 1h), changes);
  index.add(span(Family::ipv4, 21, 30, ssh, 1h), changes);
  index.add(span(Family::ipv4, 31, 31, ssh, 2h), changes);  // touching, other end: apart
  EXPECT_EQ(index.element_count(), 3U);
  RangeChanges bridge;
  index.add(span(Family::ipv4, 20, 20, ssh, 1h), bridge);
  EXPECT_RANGES(index.elements(),
                {span(Family::ipv4, 10, 30, ssh, 1h), span(Family::ipv4, 31, 31, ssh, 2h)});
  const auto kernel = applied(bridge, t0);
  EXPECT_EQ(kernel.removed, (std::vector<ElementKey>{span(Family::ipv4, 10, 19, ssh, 0h).key,
                                                     span(Family::ipv4, 21, 30, ssh, 0h).key}));
  EXPECT_RANGES(kernel.added, {span(Family::ipv4, 10, 30, ssh, 1h)});
}

TEST(CoreRangeIndex, RemoveMergesAndSplits) {
  RangeIndex index;
  RangeChanges setup;
  index.add(timed("10.0.0.0/24", ssh, 1h), setup);
  index.add(timed("10.0.0.77", ssh, 2h), setup);
  EXPECT_EQ(index.element_count(), 3U);

  // Removing the host merges the network back into one element.
  RangeChanges merge;
  ASSERT_TRUE(index.remove(timed("10.0.0.77", ssh, 2h), merge));
  EXPECT_RANGES(index.elements(), {timed("10.0.0.0/24", ssh, 1h)});
  const auto merged = applied(merge, t0);
  EXPECT_EQ(merged.removed.size(), 3U);
  EXPECT_RANGES(merged.added, {timed("10.0.0.0/24", ssh, 1h)});

  // Removing the network under two halves with the same end splits nothing but leaves a gap.
  index.add(span(Family::ipv4, ip4(10, 0, 0, 0), ip4(10, 0, 0, 99), ssh, 1h), setup);
  index.add(span(Family::ipv4, ip4(10, 0, 0, 101), ip4(10, 0, 0, 255), ssh, 1h), setup);
  EXPECT_RANGES(index.elements(), {timed("10.0.0.0/24", ssh, 1h)});
  RangeChanges split;
  ASSERT_TRUE(index.remove(timed("10.0.0.0/24", ssh, 1h), split));
  const std::vector<TimedRange> halves = {
      span(Family::ipv4, ip4(10, 0, 0, 0), ip4(10, 0, 0, 99), ssh, 1h),
      span(Family::ipv4, ip4(10, 0, 0, 101), ip4(10, 0, 0, 255), ssh, 1h)};
  EXPECT_RANGES(index.elements(), halves);
  const auto kernel = applied(split, t0);
  EXPECT_EQ(kernel.removed, std::vector<ElementKey>{timed("10.0.0.0/24", ssh, 0h).key});
  EXPECT_RANGES(kernel.added, halves);

  // Removing coverage that was nowhere the latest end changes no element.
  index.add(timed("10.0.0.50", ssh, 30min), setup);
  RangeChanges none;
  ASSERT_TRUE(index.remove(timed("10.0.0.50", ssh, 30min), none));
  EXPECT_TRUE(none.empty());
  EXPECT_RANGES(index.elements(), halves);
}

TEST(CoreRangeIndex, DuplicateCoverageIsAMultiset) {
  RangeIndex index;
  RangeChanges first;
  index.add(timed("10.0.0.7", ssh, 1h), first);
  RangeChanges second;
  index.add(timed("10.0.0.7", ssh, 1h), second);
  EXPECT_TRUE(second.empty());
  EXPECT_EQ(index.coverage_count(), 2U);
  EXPECT_EQ(index.element_count(), 1U);

  RangeChanges one;
  ASSERT_TRUE(index.remove(timed("10.0.0.7", ssh, 1h), one));
  EXPECT_TRUE(one.empty());  // the other instance still holds the element
  EXPECT_RANGES(index.elements(), {timed("10.0.0.7", ssh, 1h)});
  RangeChanges two;
  ASSERT_TRUE(index.remove(timed("10.0.0.7", ssh, 1h), two));
  EXPECT_TRUE(index.elements().empty());
  EXPECT_EQ(two.to_elements(t0).remove, std::vector<ElementKey>{timed("10.0.0.7", ssh, 0h).key});
  RangeChanges three;
  EXPECT_FALSE(index.remove(timed("10.0.0.7", ssh, 1h), three));
  EXPECT_TRUE(three.empty());
  EXPECT_EQ(index.coverage_count(), 0U);
}

TEST(CoreRangeIndex, Ipv4EdgesAtZeroAndMax) {
  RangeIndex index;
  RangeChanges changes;
  const std::vector<TimedRange> coverage = {
      timed("0.0.0.0/0", ssh, 1h), timed("255.255.255.255", ssh, 2h), timed("0.0.0.0", ssh, 3h)};
  for (const auto& range : coverage) index.add(range, changes);
  EXPECT_RANGES(index.elements(),
                {span(Family::ipv4, 0, 0, ssh, 3h), span(Family::ipv4, 1, v4_max - 1, ssh, 1h),
                 span(Family::ipv4, v4_max, v4_max, ssh, 2h)});
  ASSERT_TRUE(index.remove(coverage[0], changes));
  EXPECT_RANGES(index.elements(),
                {span(Family::ipv4, 0, 0, ssh, 3h), span(Family::ipv4, v4_max, v4_max, ssh, 2h)});
  index.add(timed("0.0.0.0/0", ssh, 2h), changes);  // merges with the top host
  EXPECT_RANGES(index.elements(),
                {span(Family::ipv4, 0, 0, ssh, 3h), span(Family::ipv4, 1, v4_max, ssh, 2h)});
  index.add(timed("0.0.0.0/0", ssh, 3h), changes);  // swallows both hosts
  EXPECT_RANGES(index.elements(), {span(Family::ipv4, 0, v4_max, ssh, 3h)});
  index.add(timed("128.0.0.0/1", ssh, 3h), changes);
  ASSERT_TRUE(index.remove(timed("0.0.0.0/0", ssh, 3h), changes));
  EXPECT_RANGES(index.elements(), {span(Family::ipv4, 0, 0, ssh, 3h),
                                   span(Family::ipv4, 1, ip4(127, 255, 255, 255), ssh, 2h),
                                   span(Family::ipv4, ip4(128, 0, 0, 0), v4_max, ssh, 3h)});
  ASSERT_TRUE(index.remove(timed("0.0.0.0/0", ssh, 2h), changes));
  EXPECT_RANGES(index.elements(), {span(Family::ipv4, 0, 0, ssh, 3h),
                                   span(Family::ipv4, ip4(128, 0, 0, 0), v4_max, ssh, 3h)});
  ASSERT_TRUE(index.remove(timed("128.0.0.0/1", ssh, 3h), changes));
  EXPECT_RANGES(index.elements(),
                {span(Family::ipv4, 0, 0, ssh, 3h), span(Family::ipv4, v4_max, v4_max, ssh, 2h)});
}

TEST(CoreRangeIndex, Ipv6WholeSpaceAndAllOnes) {
  RangeIndex index;
  RangeChanges changes;
  index.add(timed("::/0", ssh, 1h), changes);
  EXPECT_RANGES(index.elements(), {span(Family::ipv6, 0, v6_max, ssh, 1h)});
  index.add(timed("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ssh, 2h), changes);
  index.add(timed("::", ssh, 2h), changes);
  EXPECT_RANGES(index.elements(),
                {span(Family::ipv6, 0, 0, ssh, 2h), span(Family::ipv6, 1, v6_max - 1, ssh, 1h),
                 span(Family::ipv6, v6_max, v6_max, ssh, 2h)});
  index.add(timed("::/0", ssh, 2h), changes);
  EXPECT_RANGES(index.elements(), {span(Family::ipv6, 0, v6_max, ssh, 2h)});
  ASSERT_TRUE(index.remove(timed("::/0", ssh, 2h), changes));
  ASSERT_TRUE(index.remove(timed("::/0", ssh, 1h), changes));
  EXPECT_RANGES(index.elements(),
                {span(Family::ipv6, 0, 0, ssh, 2h), span(Family::ipv6, v6_max, v6_max, ssh, 2h)});
  ASSERT_TRUE(index.remove(timed("::", ssh, 2h), changes));
  ASSERT_TRUE(index.remove(timed("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ssh, 2h), changes));
  EXPECT_TRUE(index.elements().empty());
  EXPECT_TRUE(changes.empty());  // everything added in this batch was removed again
}

TEST(CoreRangeIndex, PortsProtocolsAndFamiliesAreIndependent) {
  RangeIndex index;
  RangeChanges changes;
  index.add(timed("0.0.0.0/0", ssh, 1h), changes);
  index.add(timed("::/96", ssh, 2h), changes);  // the same numbers, another family
  index.add(timed("10.0.0.7", https, 3h), changes);
  index.add(timed("10.0.0.7", udp22, 4h), changes);
  index.add(timed("10.0.0.7", ssh, 30min), changes);
  EXPECT_RANGES(index.elements(),
                derive_disjoint({timed("0.0.0.0/0", ssh, 1h), timed("::/96", ssh, 2h),
                                 timed("10.0.0.7", https, 3h), timed("10.0.0.7", udp22, 4h)}));
  EXPECT_EQ(index.element_count(), 4U);
  RangeChanges removal;
  ASSERT_TRUE(index.remove(timed("10.0.0.7", https, 3h), removal));
  EXPECT_EQ(removal.to_elements(t0).remove,
            std::vector<ElementKey>{timed("10.0.0.7", https, 0h).key});
  EXPECT_TRUE(removal.to_elements(t0).add.empty());
}

TEST(CoreRangeIndex, RemoveOfAbsentCoverageReturnsFalse) {
  RangeIndex index;
  RangeChanges changes;
  EXPECT_FALSE(index.remove(timed("10.0.0.7", ssh, 1h), changes));  // empty index
  index.add(timed("10.0.0.0/24", ssh, 1h), changes);
  const auto before = index.elements();
  RangeChanges none;
  EXPECT_FALSE(index.remove(timed("10.0.0.0/24", ssh, 2h), none));    // other end
  EXPECT_FALSE(index.remove(timed("10.0.0.0/25", ssh, 1h), none));    // other width
  EXPECT_FALSE(index.remove(timed("10.0.1.0/24", ssh, 1h), none));    // other first
  EXPECT_FALSE(index.remove(timed("10.0.0.0/24", https, 1h), none));  // other port
  EXPECT_FALSE(index.remove(timed("10.0.0.0/24", udp22, 1h), none));  // other protocol
  EXPECT_FALSE(index.remove(timed("::/24", ssh, 1h), none));          // other family
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(index.elements(), before);
  EXPECT_EQ(index.coverage_count(), 1U);
}

TEST(CoreRangeIndex, ChangesCancelWithinABatch) {
  const auto element = timed("10.0.0.7", ssh, 1h);
  RangeChanges removed_then_added;
  removed_then_added.removed(element);
  removed_then_added.added(element);
  EXPECT_TRUE(removed_then_added.empty());
  RangeChanges added_then_removed;
  added_then_removed.added(element);
  added_then_removed.removed(element);
  EXPECT_TRUE(added_then_removed.empty());

  // Same key, other end: both stay, the removal first.
  RangeChanges moved;
  moved.removed(element);
  moved.added(timed("10.0.0.7", ssh, 2h));
  const auto elements = moved.to_elements(t0 + 30min);
  EXPECT_EQ(elements.remove, std::vector<ElementKey>{element.key});
  EXPECT_EQ(elements.add, (std::vector<TimedElement>{{element.key, 90min}}));
  // Once the old one ended the kernel no longer holds it; once both ended, nothing to do.
  EXPECT_TRUE(moved.to_elements(t0 + 1h).remove.empty());
  EXPECT_EQ(moved.to_elements(t0 + 1h).add.size(), 1U);
  EXPECT_TRUE(moved.to_elements(t0 + 2h).empty());
}

TEST(CoreRangeIndex, BatchOfGrantsIsOneTransaction) {
  RangeIndex index;
  RangeChanges setup;
  index.add(timed("10.0.0.0/24", ssh, 1h), setup);
  RangeChanges batch;
  index.add(timed("10.0.0.77", ssh, 2h), batch);  // splits the network
  index.add(timed("10.0.0.78", ssh, 2h), batch);  // widens the middle
  ASSERT_TRUE(index.remove(timed("10.0.0.77", ssh, 2h), batch));
  ASSERT_TRUE(index.remove(timed("10.0.0.78", ssh, 2h), batch));  // back to the start
  EXPECT_TRUE(batch.empty());
  index.add(timed("10.0.0.200", ssh, 3h), batch);
  const auto kernel = applied(batch, t0);
  EXPECT_EQ(kernel.removed, std::vector<ElementKey>{timed("10.0.0.0/24", ssh, 0h).key});
  EXPECT_RANGES(kernel.added, index.elements());
}

TEST(CoreRangeIndex, ForgetEndedDropsWhatEndedWithoutChanges) {
  RangeIndex index;
  RangeChanges changes;
  index.add(timed("10.0.0.0/24", ssh, 2h), changes);
  index.add(timed("10.0.0.77", ssh, 1h), changes);  // absorbed
  index.add(timed("10.0.1.0/24", ssh, 1h), changes);
  index.add(timed("10.0.1.5", ssh, 3h), changes);
  index.add(timed("fd00::1", https, 1h), changes);
  index.forget_ended(t0 + 1h);
  EXPECT_EQ(index.coverage_count(), 2U);
  EXPECT_RANGES(index.elements(),
                derive_disjoint({timed("10.0.0.0/24", ssh, 2h), timed("10.0.1.5", ssh, 3h)}));
  // The host ended: removing it now fails; its network still removes normally.
  RangeChanges after;
  EXPECT_FALSE(index.remove(timed("10.0.0.77", ssh, 1h), after));
  ASSERT_TRUE(index.remove(timed("10.0.0.0/24", ssh, 2h), after));
  EXPECT_EQ(after.to_elements(t0 + 1h).remove,
            std::vector<ElementKey>{timed("10.0.0.0/24", ssh, 0h).key});
  index.forget_ended(t0 + 3h);
  EXPECT_TRUE(index.elements().empty());
  EXPECT_EQ(index.coverage_count(), 0U);
  EXPECT_EQ(index.element_count(), 0U);
}

TEST(CoreRangeIndex, AssignReplacesEverything) {
  RangeIndex index;
  RangeChanges changes;
  index.add(timed("192.168.0.0/16", https, 1h), changes);
  const std::vector<TimedRange> coverage = {timed("10.0.0.0/24", ssh, 1h),
                                            timed("10.0.0.77", ssh, 2h), timed("::/0", ssh, 1h),
                                            timed("10.0.0.77", ssh, 2h)};
  index.assign(coverage);
  EXPECT_EQ(index.elements(), derive_disjoint(coverage));
  EXPECT_EQ(index.coverage_count(), 4U);
  EXPECT_EQ(index.element_count(), 4U);
  RangeChanges after;
  ASSERT_TRUE(index.remove(timed("10.0.0.77", ssh, 2h), after));
  EXPECT_TRUE(after.empty());
  ASSERT_TRUE(index.remove(timed("10.0.0.77", ssh, 2h), after));
  EXPECT_RANGES(index.elements(), {timed("10.0.0.0/24", ssh, 1h), timed("::/0", ssh, 1h)});
  index.assign({});
  EXPECT_TRUE(index.elements().empty());
  EXPECT_EQ(index.coverage_count(), 0U);
}

// ---------------------------------------------------------------- property tests

// The kernel as an interval set per (family, port): removing an absent key or adding an
// element that is present or overlaps one is refused, as nftables would.
class KernelModel {
 public:
  // The kernel times elements out by itself.
  void expire(Deadline now) {
    std::erase_if(held_, [now](const auto& entry) { return entry.second.second <= now; });
  }

  void apply(const ElementChanges& changes, Deadline now) {
    for (const auto& key : changes.remove) {
      const auto it = held_.find(slot(key));
      ASSERT_TRUE(it != held_.end() && it->second.first == key.source.last)
          << "removing an element the kernel does not hold: "
          << describe(TimedRange{key, Deadline{}});
      held_.erase(it);
    }
    for (const auto& element : changes.add) {
      ASSERT_GT(element.timeout, Milliseconds{0});
      const auto& key = element.key;
      const auto next = held_.lower_bound(slot(key));
      const auto describe_added = describe(TimedRange{key, now + element.timeout});
      if (next != held_.end() && same_group(next->first, key)) {
        ASSERT_GT(std::get<2>(next->first), key.source.last) << "overlap adding " << describe_added;
      }
      if (next != held_.begin()) {
        const auto previous = std::prev(next);
        if (same_group(previous->first, key)) {
          ASSERT_LT(previous->second.first, key.source.first)
              << "overlap adding " << describe_added;
        }
      }
      held_.emplace(slot(key), std::pair{key.source.last, now + element.timeout});
    }
  }

  [[nodiscard]] std::vector<TimedRange> held() const {
    std::vector<TimedRange> out;
    for (const auto& [slot, value] : held_) {
      const auto& [family, port, first] = slot;
      out.push_back({ElementKey{AddressRange{family, first, value.first}, port}, value.second});
    }
    std::sort(out.begin(), out.end(), by_group);
    return out;
  }

  // derive_disjoint's order: by family, port, then first address.
  static bool by_group(const TimedRange& a, const TimedRange& b) {
    return std::tuple{a.key.source.family, a.key.port, a.key.source.first} <
           std::tuple{b.key.source.family, b.key.port, b.key.source.first};
  }

 private:
  using Slot = std::tuple<Family, PortKey, AddressValue>;
  static Slot slot(const ElementKey& key) {
    return {key.source.family, key.port, key.source.first};
  }
  static bool same_group(const Slot& slot, const ElementKey& key) {
    return std::get<0>(slot) == key.source.family && std::get<1>(slot) == key.port;
  }
  std::map<Slot, std::pair<AddressValue, Deadline>> held_;  // → (last, end)
};

std::vector<TimedRange> live(const std::vector<TimedRange>& ranges, Deadline now) {
  std::vector<TimedRange> out;
  for (const auto& range : ranges) {
    if (range.end > now) out.push_back(range);
  }
  return out;
}

class RandomCoverage {
 public:
  explicit RandomCoverage(std::uint32_t seed) : random_(seed) {}

  std::mt19937& random() { return random_; }

  int below(int n) { return std::uniform_int_distribution<int>(0, n - 1)(random_); }

  // Mostly hosts in a small window (so they overlap and touch), some short ranges, aligned
  // prefixes, wide ranges and the family's edges; ends drawn from a coarse grid so that
  // equal ends are common.
  TimedRange next(Deadline now) {
    const PortKey ports[] = {ssh, https, udp22};
    const Family family = below(4) == 0 ? Family::ipv6 : Family::ipv4;
    const AddressValue max = family == Family::ipv4 ? v4_max : v6_max;
    const AddressValue base =
        family == Family::ipv4 ? ip4(10, 0, 0, 0) : AddressValue{0xfd00} << 112;
    const auto in_window = [&] { return base + static_cast<AddressValue>(below(96)); };
    AddressValue first = 0, last = 0;
    const int shape = below(100);
    if (shape < 50) {
      first = last = in_window();
    } else if (shape < 70) {
      first = in_window();
      last = first + static_cast<AddressValue>(below(8));
    } else if (shape < 80) {
      const unsigned bits = 2 + static_cast<unsigned>(below(5));  // 4 to 64 addresses
      first = (in_window() >> bits) << bits;
      last = first + (AddressValue{1} << bits) - 1;
    } else if (shape < 88) {
      first = base - static_cast<AddressValue>(below(200));
      last = base + 100 + static_cast<AddressValue>(below(200));
    } else if (shape < 92) {
      first = 0;
      last = below(2) == 0 ? max : base + static_cast<AddressValue>(below(96));
    } else if (shape < 96) {
      first = below(2) == 0 ? 0 : base + static_cast<AddressValue>(below(96));
      last = max;
    } else {
      first = last = below(2) == 0 ? 0 : max;
    }
    // Ends on a 10-minute grid ahead of now; now and then one that already ended.
    const auto grid = now - Milliseconds(now.time_since_epoch().count() % 600'000);
    const auto end = below(50) == 0 ? now - Milliseconds(below(2) * 60'000)
                                    : grid + Milliseconds((1 + below(8)) * 600'000);
    return {ElementKey{AddressRange{family, first, last}, ports[below(3)]}, end};
  }

 private:
  std::mt19937 random_;
};

// Random adds, removes, batches, clock steps and forget_ended; after every step the index
// equals derive_disjoint over the model multiset, and the step's changes turn the kernel
// model into exactly the index's live elements.
void run_property(std::uint32_t seed, int steps, bool start_with_assign) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  RandomCoverage random(seed);
  RangeIndex index;
  KernelModel kernel;
  std::vector<TimedRange> model;
  Deadline now = t0;
  if (start_with_assign) {
    for (int i = 0; i < 40; ++i) model.push_back(random.next(now));
    index.assign(model);
    ElementChanges install;
    for (const auto& element : timed_elements(index.elements(), now))
      install.add.push_back(element);
    kernel.apply(install, now);
  }
  const auto remove_one = [&](RangeChanges& changes) {
    if (model.empty()) return;
    const auto at = static_cast<std::size_t>(random.below(static_cast<int>(model.size())));
    ASSERT_TRUE(index.remove(model[at], changes)) << describe(model[at]);
    model.erase(model.begin() + static_cast<std::ptrdiff_t>(at));
  };
  int batches = 0, forgets = 0, removes = 0;
  for (int step = 0; step < steps; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    RangeChanges changes;
    const int action = random.below(100);
    // Fewer adds than removes once the model is large, so it hovers around 60 ranges.
    const int add_share = model.size() > 60 ? 35 : 55;
    if (action < add_share) {
      const auto range = random.next(now);
      index.add(range, changes);
      model.push_back(range);
    } else if (action < 80) {
      remove_one(changes);
      ++removes;
    } else if (action < 88) {
      const int count = 2 + random.below(5);
      for (int i = 0; i < count; ++i) {
        if (random.below(2) == 0 && !model.empty()) {
          remove_one(changes);
        } else if (random.below(4) == 0 && !model.empty()) {
          // Re-add a copy of existing coverage, or add and take back within the batch.
          const auto copy =
              model[static_cast<std::size_t>(random.below(static_cast<int>(model.size())))];
          index.add(copy, changes);
          model.push_back(copy);
        } else {
          const auto range = random.next(now);
          index.add(range, changes);
          if (random.below(3) == 0) {
            ASSERT_TRUE(index.remove(range, changes));
          } else {
            model.push_back(range);
          }
        }
      }
      ++batches;
    } else if (action < 94) {
      now += Milliseconds(random.below(25) * 60'000 + random.below(1000));
    } else {
      now += Milliseconds(random.below(25) * 60'000);
      index.forget_ended(now);
      std::erase_if(model, [now](const TimedRange& range) { return range.end <= now; });
      ++forgets;
    }
    if (::testing::Test::HasFatalFailure()) return;

    const auto elements = index.elements();
    ASSERT_EQ(elements, derive_disjoint(model))
        << "index:" << describe(elements) << "\nmodel:" << describe(model);
    ASSERT_EQ(index.coverage_count(), model.size());
    ASSERT_EQ(index.element_count(), elements.size());

    kernel.expire(now);
    kernel.apply(changes.to_elements(now), now);
    if (::testing::Test::HasFatalFailure()) return;
    auto expected = live(elements, now);
    std::sort(expected.begin(), expected.end(), KernelModel::by_group);
    ASSERT_EQ(kernel.held(), expected)
        << "kernel:" << describe(kernel.held()) << "\nindex:" << describe(expected);
  }
  EXPECT_GT(batches, steps / 20);
  EXPECT_GT(forgets, steps / 40);
  EXPECT_GT(removes, steps / 10);
}

TEST(CoreRangeIndex, PropertyMatchesDeriveDisjointAndKernel) {
  for (const std::uint32_t seed : {1U, 7U, 42U, 2026U, 424242U}) {
    run_property(seed, 3000, false);
    if (HasFatalFailure()) return;
  }
}

TEST(CoreRangeIndex, PropertyAfterAssign) {
  for (const std::uint32_t seed : {3U, 99U, 31337U}) {
    run_property(seed, 2000, true);
    if (HasFatalFailure()) return;
  }
}

// ---------------------------------------------------------------- scale

TEST(CoreRangeIndex, HundredThousandHostsAddAndRemove) {
  std::mt19937 random(5);
  std::vector<TimedRange> coverage;
  for (unsigned i = 0; i < 100'000; ++i) {
    // Hosts in 10.0.0.0/8, two of every three addresses, ends from a few values: some
    // neighbours merge, some do not.
    coverage.push_back(span(Family::ipv4, ip4(10, 0, 0, 0) + 3 * AddressValue{i} / 2,
                            ip4(10, 0, 0, 0) + 3 * AddressValue{i} / 2, ssh,
                            Milliseconds((1 + random() % 4) * 600'000)));
  }
  RangeIndex index;
  RangeChanges added;
  for (const auto& range : coverage) index.add(range, added);
  EXPECT_EQ(index.coverage_count(), coverage.size());
  EXPECT_EQ(index.elements(), derive_disjoint(coverage));
  EXPECT_EQ(added.to_elements(t0).add.size(), index.element_count());

  std::shuffle(coverage.begin(), coverage.end(), random);
  RangeChanges removed;
  for (const auto& range : coverage) ASSERT_TRUE(index.remove(range, removed));
  EXPECT_EQ(index.coverage_count(), 0U);
  EXPECT_EQ(index.element_count(), 0U);
  EXPECT_TRUE(index.elements().empty());
}

}  // namespace
}  // namespace jitd::core

namespace jitd::core {
namespace {

// An expiry storm is forgotten in passes; between passes the ended entries that linger never
// reach the kernel, and the live elements are what a from-scratch derivation gives.
TEST(CoreRangeIndexPasses, ForgetInPassesKeepsTheLiveElementsExact) {
  const Deadline t0{std::chrono::hours(1)};
  const PortKey ssh{Protocol::tcp, 22};
  const auto host = [&](AddressValue address, Deadline end) {
    return TimedRange{ElementKey{AddressRange{Family::ipv4, address, address}, ssh}, end};
  };
  RangeIndex index;
  RangeChanges ignored;
  std::vector<TimedRange> live;
  for (AddressValue i = 0; i < 1000; ++i) index.add(host(0x0a000000 + 2 * i, t0), ignored);
  for (AddressValue i = 0; i < 50; ++i) {
    live.push_back(host(0x0b000000 + 2 * i, t0 + std::chrono::hours(1)));
    index.add(live.back(), ignored);
  }
  const auto now = t0;
  const auto live_elements = [&] {
    auto elements = index.elements();
    std::erase_if(elements, [&](const TimedRange& element) { return element.end <= now; });
    return elements;
  };
  int passes = 0;
  while (index.forget_ended(now, 100)) {
    ++passes;
    EXPECT_EQ(live_elements(), derive_disjoint(live)) << "after pass " << passes;
    ASSERT_TRUE(index.earliest_end().has_value());
    EXPECT_LE(*index.earliest_end(), now);
    // A grant between passes, over an address whose ended element may still linger.
    RangeChanges changes;
    const auto again =
        host(0x0a000000 + 2 * static_cast<AddressValue>(passes), now + std::chrono::minutes(5));
    index.add(again, changes);
    live.push_back(again);
    const auto elements = changes.to_elements(now);
    EXPECT_TRUE(elements.remove.empty()) << "an ended element was removed from the kernel";
    ASSERT_EQ(elements.add.size(), 1U);
    EXPECT_EQ(elements.add[0].key, again.key);
  }
  EXPECT_GE(passes, 9);
  EXPECT_EQ(index.elements(), derive_disjoint(live));
  EXPECT_EQ(index.coverage_count(), live.size());
  EXPECT_GT(*index.earliest_end(), now);
}

}  // namespace
}  // namespace jitd::core
