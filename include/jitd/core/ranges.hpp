#pragma once
// Grants overlap; kernel interval-set elements must not. These pure functions turn
// the live grants into disjoint ranges, each ending at the latest end among the
// grants covering it, and compute the element changes between two such states.
#include <vector>

#include "jitd/core/backend.hpp"
#include "jitd/core/clock.hpp"

namespace jitd::core {

struct TimedRange {
  ElementKey key;
  Deadline end;
  auto operator<=>(const TimedRange&) const = default;
};

// A range of one (family, protocol, port)'s addresses with one end.
struct Segment {
  AddressValue first = 0;
  AddressValue last = 0;
  Deadline end;
  auto operator<=>(const Segment&) const = default;
};

// The family's last address (the sweep's upper bound).
[[nodiscard]] AddressValue family_max(Family family);

// The sweep under both derive_disjoint() and RangeIndex: over one group's (possibly
// overlapping) segments, the maximal runs of the latest end covering each address, sorted.
[[nodiscard]] std::vector<Segment> latest_end_runs(const std::vector<Segment>& segments,
                                                   AddressValue max);

// Disjoint, sorted ranges per (family, protocol, port); touching ranges with the
// same end are merged into one.
[[nodiscard]] std::vector<TimedRange> derive_disjoint(std::vector<TimedRange> coverage);

// Changes that turn `current` (what the kernel holds) into `desired`. Ranges of
// `current` that ended by `now` are already gone from the kernel and are not removed;
// ranges of `desired` that end by `now` are not added.
[[nodiscard]] ElementChanges diff_ranges(const std::vector<TimedRange>& current,
                                         const std::vector<TimedRange>& desired, Deadline now);

// The timed elements to install for `ranges` at `now` (ended ones left out).
[[nodiscard]] std::vector<TimedElement> timed_elements(const std::vector<TimedRange>& ranges,
                                                       Deadline now);

}  // namespace jitd::core
