#pragma once
// derive_disjoint() kept up to date incrementally. Recomputing the disjoint elements of
// every live grant on each change costs n log n in the live grants; this index touches only
// the elements next to the changed coverage, so a grant or revoke stays cheap at 100,000
// live grants. It relies on the derivation being canonical: per (family, protocol, port)
// the end at an address is the latest end among the coverage holding it, and elements are
// the maximal runs of one end, so any part of the result can be recomputed locally.
#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "jitd/core/backend.hpp"
#include "jitd/core/clock.hpp"
#include "jitd/core/prefix.hpp"
#include "jitd/core/ranges.hpp"

namespace jitd::core {

// Net element changes accumulated over several add()/remove() calls, so a batch of grants
// is one kernel transaction. An element removed and then re-added identically cancels out;
// one added and then removed within the batch cancels out.
class RangeChanges {
 public:
  void removed(const TimedRange& element);  // called by RangeIndex
  void added(const TimedRange& element);
  // Kernel changes at `now`: removals of elements that were in the kernel (end > now; an
  // ended one is already gone from the kernel), additions with their timeout end - now
  // (ended ones left out). Removals come first and may name a key that is added again with
  // another end.
  [[nodiscard]] ElementChanges to_elements(Deadline now) const;
  [[nodiscard]] bool empty() const;

 private:
  std::set<TimedRange> removed_;  // held before the batch, gone after it
  std::set<TimedRange> added_;    // not held before the batch, held after it
};

class RangeIndex {
 public:
  // Coverage of one grant for one port: source range + port, ending at `end`. Equal coverage
  // may be added more than once (two grants with the same source, port and end); it is a
  // multiset. The source must be well formed: first <= last <= the family's last address.
  // Cost: O(log n + k log k), k = elements overlapping the source or touching it.
  void add(const TimedRange& coverage, RangeChanges& changes);
  // Removes one instance previously added (must exist; returns false and changes nothing
  // otherwise). Cost: O(log n + k log k) when the coverage was nowhere the latest end; else
  // also O(W log n + K log K) to re-read the coverage under the parts where it was: K =
  // coverage overlapping them, W = distinct source widths in the group (at most 33 for IPv4
  // prefixes, 129 for IPv6; arbitrary ranges could make W up to n).
  bool remove(const TimedRange& coverage, RangeChanges& changes);
  // Replaces everything (the engine rebuilds at start and at a policy reload). O(n log n).
  void assign(const std::vector<TimedRange>& coverage);
  // Drops coverage and elements that ended by `now`: the kernel dropped them itself, so this
  // produces no changes. An element ends by `now` exactly when all coverage holding it does,
  // and dropping coverage never merges elements, so the rest is unchanged.
  // Cost: O(m log n), m = coverage and elements that ended.
  void forget_ended(Deadline now);
  // The same, at most `limit` coverage entries and `limit` elements per call, so an expiry
  // storm is forgotten in passes. Between passes ended entries linger; they never reach the
  // kernel (RangeChanges leaves ended elements out) and the next pass takes them. Returns
  // whether ended entries remain.
  bool forget_ended(Deadline now, std::size_t limit);
  // The earliest end among coverage and elements (what forget_ended() takes next).
  [[nodiscard]] std::optional<Deadline> earliest_end() const;
  // The disjoint elements, equal to derive_disjoint(all coverage added and not
  // removed/forgotten), sorted like derive_disjoint's output. O(number of elements).
  [[nodiscard]] std::vector<TimedRange> elements() const;
  [[nodiscard]] std::size_t coverage_count() const;
  [[nodiscard]] std::size_t element_count() const;

 private:
  struct Group {
    Family family = Family::ipv4;
    PortKey port;
    auto operator<=>(const Group&) const = default;
  };
  struct Span {  // an element's last address and end, keyed by its first address
    AddressValue last = 0;
    Deadline end;
  };
  struct GroupState {
    // Coverage bucketed by width (last - first), each bucket ordered by (first, end): all
    // ranges of width w overlapping [a, b] have first in [a - w, b], so a bucket answers an
    // overlap query exactly, with no range scanned that does not overlap.
    std::map<AddressValue, std::multiset<std::pair<AddressValue, Deadline>>> coverage;
    std::map<AddressValue, Span> elements;
  };
  // Ordered by end first, so what ended by `now` is a prefix.
  struct ByEnd {
    Deadline end;
    Group group;
    AddressValue first = 0;
    AddressValue last = 0;
    auto operator<=>(const ByEnd&) const = default;
  };

  using Piece = Segment;  // a range of one group's addresses with one end
  // The elements overlapping [lo, hi], sorted.
  [[nodiscard]] static std::vector<Piece> overlapping(const GroupState& state, AddressValue lo,
                                                      AddressValue hi);
  // Swaps `old_elements` (taken from the group) for `new_elements`, reporting only those
  // that differ.
  void replace_elements(const Group& group, GroupState& state,
                        const std::vector<Piece>& old_elements,
                        const std::vector<Piece>& new_elements, RangeChanges& changes);
  void drop_if_empty(const Group& group);

  std::map<Group, GroupState> groups_;
  std::multiset<ByEnd> coverage_by_end_;
  std::set<ByEnd> elements_by_end_;
};

}  // namespace jitd::core
