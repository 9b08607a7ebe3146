#include "jitd/core/range_index.hpp"

#include <algorithm>
#include <iterator>
#include <limits>
#include <utility>

namespace jitd::core {

// ---------------------------------------------------------------- RangeChanges

void RangeChanges::removed(const TimedRange& element) {
  if (added_.erase(element) == 0) removed_.insert(element);
}

void RangeChanges::added(const TimedRange& element) {
  if (removed_.erase(element) == 0) added_.insert(element);
}

ElementChanges RangeChanges::to_elements(Deadline now) const {
  ElementChanges changes;
  for (const auto& element : removed_) {
    if (element.end > now) changes.remove.push_back(element.key);
  }
  for (const auto& element : added_) {
    if (element.end > now) changes.add.push_back({element.key, element.end - now});
  }
  return changes;
}

bool RangeChanges::empty() const { return removed_.empty() && added_.empty(); }

// ---------------------------------------------------------------- RangeIndex

std::vector<RangeIndex::Piece> RangeIndex::overlapping(const GroupState& state, AddressValue lo,
                                                       AddressValue hi) {
  std::vector<Piece> out;
  auto it = state.elements.upper_bound(lo);
  if (it != state.elements.begin() && std::prev(it)->second.last >= lo) --it;
  for (; it != state.elements.end() && it->first <= hi; ++it) {
    out.push_back({it->first, it->second.last, it->second.end});
  }
  return out;
}

void RangeIndex::replace_elements(const Group& group, GroupState& state,
                                  const std::vector<Piece>& old_elements,
                                  const std::vector<Piece>& new_elements, RangeChanges& changes) {
  const auto timed = [&](const Piece& piece) {
    return TimedRange{ElementKey{AddressRange{group.family, piece.first, piece.last}, group.port},
                      piece.end};
  };
  // Both are sorted and disjoint, so ordering by first address orders them completely.
  std::vector<Piece> gone, fresh;
  std::set_difference(old_elements.begin(), old_elements.end(), new_elements.begin(),
                      new_elements.end(), std::back_inserter(gone));
  std::set_difference(new_elements.begin(), new_elements.end(), old_elements.begin(),
                      old_elements.end(), std::back_inserter(fresh));
  // Erase first: a new element may start where an old one did.
  for (const auto& piece : gone) {
    state.elements.erase(piece.first);
    elements_by_end_.erase(ByEnd{piece.end, group, piece.first, piece.last});
    changes.removed(timed(piece));
  }
  for (const auto& piece : fresh) {
    state.elements.emplace(piece.first, Span{piece.last, piece.end});
    elements_by_end_.insert(ByEnd{piece.end, group, piece.first, piece.last});
    changes.added(timed(piece));
  }
}

void RangeIndex::drop_if_empty(const Group& group) {
  const auto it = groups_.find(group);
  if (it != groups_.end() && it->second.coverage.empty() && it->second.elements.empty()) {
    groups_.erase(it);
  }
}

void RangeIndex::add(const TimedRange& coverage, RangeChanges& changes) {
  const Group group{coverage.key.source.family, coverage.key.port};
  const AddressValue max = family_max(group.family);
  const AddressValue first = coverage.key.source.first;
  const AddressValue last = coverage.key.source.last;
  auto& state = groups_[group];
  state.coverage[last - first].emplace(first, coverage.end);
  coverage_by_end_.insert(ByEnd{coverage.end, group, first, last});

  // The new end is max(old end, coverage.end) inside the source and unchanged outside; the
  // neighbours one address either side are included as they may now merge.
  const auto old_elements =
      overlapping(state, first == 0 ? first : first - 1, last == max ? last : last + 1);
  auto pieces = old_elements;
  pieces.push_back({first, last, coverage.end});
  replace_elements(group, state, old_elements, latest_end_runs(pieces, max), changes);
}

bool RangeIndex::remove(const TimedRange& coverage, RangeChanges& changes) {
  const Group group{coverage.key.source.family, coverage.key.port};
  const AddressValue max = family_max(group.family);
  const AddressValue first = coverage.key.source.first;
  const AddressValue last = coverage.key.source.last;
  const auto group_it = groups_.find(group);
  if (group_it == groups_.end() || first > last) return false;
  auto& state = group_it->second;
  const auto bucket = state.coverage.find(last - first);
  if (bucket == state.coverage.end()) return false;
  const auto instance = bucket->second.find({first, coverage.end});
  if (instance == bucket->second.end()) return false;
  bucket->second.erase(instance);
  if (bucket->second.empty()) state.coverage.erase(bucket);
  coverage_by_end_.erase(coverage_by_end_.find(ByEnd{coverage.end, group, first, last}));

  // Inside the source the old end was at least coverage.end. Where it was later, another
  // coverage holds it and nothing changes; only where it was equal (the dirty parts) is the
  // end re-read from the remaining coverage. Outside the source nothing changes.
  const auto old_elements =
      overlapping(state, first == 0 ? first : first - 1, last == max ? last : last + 1);
  std::vector<Piece> pieces;
  bool dirty = false;
  AddressValue dirty_first = 0, dirty_last = 0;
  for (const auto& element : old_elements) {
    if (element.first < first) {
      pieces.push_back({element.first, std::min(element.last, first - 1), element.end});
    }
    if (element.last > last) {
      pieces.push_back({std::max(element.first, last + 1), element.last, element.end});
    }
    const AddressValue inner_first = std::max(element.first, first);
    const AddressValue inner_last = std::min(element.last, last);
    if (inner_first > inner_last) continue;
    if (element.end != coverage.end) {
      pieces.push_back({inner_first, inner_last, element.end});
    } else if (!dirty) {
      dirty = true;
      dirty_first = inner_first;
      dirty_last = inner_last;
    } else {
      dirty_last = inner_last;
    }
  }
  if (dirty) {
    // Coverage of width w overlapping [dirty_first, dirty_last] starts in
    // [dirty_first - w, dirty_last]: every range visited overlaps.
    for (const auto& [width, ranges] : state.coverage) {
      const AddressValue from = dirty_first >= width ? dirty_first - width : 0;
      for (auto it = ranges.lower_bound({from, Deadline::min()});
           it != ranges.end() && it->first <= dirty_last; ++it) {
        pieces.push_back({std::max(it->first, dirty_first), std::min(it->first + width, dirty_last),
                          it->second});
      }
    }
    replace_elements(group, state, old_elements, latest_end_runs(pieces, max), changes);
  }
  drop_if_empty(group);
  return true;
}

void RangeIndex::assign(const std::vector<TimedRange>& coverage) {
  groups_.clear();
  coverage_by_end_.clear();
  elements_by_end_.clear();
  for (const auto& range : coverage) {
    const Group group{range.key.source.family, range.key.port};
    const auto& source = range.key.source;
    groups_[group].coverage[source.last - source.first].emplace(source.first, range.end);
    coverage_by_end_.insert(ByEnd{range.end, group, source.first, source.last});
  }
  for (const auto& element : derive_disjoint(coverage)) {
    const Group group{element.key.source.family, element.key.port};
    const auto& source = element.key.source;
    groups_[group].elements.emplace_hint(groups_[group].elements.end(), source.first,
                                         Span{source.last, element.end});
    elements_by_end_.insert(ByEnd{element.end, group, source.first, source.last});
  }
}

void RangeIndex::forget_ended(Deadline now) {
  while (forget_ended(now, std::numeric_limits<std::size_t>::max())) {
  }
}

std::optional<Deadline> RangeIndex::earliest_end() const {
  std::optional<Deadline> earliest;
  if (!coverage_by_end_.empty()) earliest = coverage_by_end_.begin()->end;
  if (!elements_by_end_.empty() && (!earliest || elements_by_end_.begin()->end < *earliest)) {
    earliest = elements_by_end_.begin()->end;
  }
  return earliest;
}

bool RangeIndex::forget_ended(Deadline now, std::size_t limit) {
  std::set<Group> touched;
  std::size_t taken = 0;
  for (auto it = coverage_by_end_.begin();
       it != coverage_by_end_.end() && it->end <= now && taken < limit;
       it = coverage_by_end_.erase(it), ++taken) {
    auto& state = groups_.at(it->group);
    const auto bucket = state.coverage.find(it->last - it->first);
    bucket->second.erase(bucket->second.find({it->first, it->end}));
    if (bucket->second.empty()) state.coverage.erase(bucket);
    touched.insert(it->group);
  }
  taken = 0;
  for (auto it = elements_by_end_.begin();
       it != elements_by_end_.end() && it->end <= now && taken < limit;
       it = elements_by_end_.erase(it), ++taken) {
    groups_.at(it->group).elements.erase(it->first);
    touched.insert(it->group);
  }
  for (const auto& group : touched) drop_if_empty(group);
  const auto next = earliest_end();
  return next && *next <= now;
}

std::vector<TimedRange> RangeIndex::elements() const {
  std::vector<TimedRange> out;
  out.reserve(elements_by_end_.size());
  for (const auto& [group, state] : groups_) {
    for (const auto& [first, span] : state.elements) {
      out.push_back(
          {ElementKey{AddressRange{group.family, first, span.last}, group.port}, span.end});
    }
  }
  return out;
}

std::size_t RangeIndex::coverage_count() const { return coverage_by_end_.size(); }

std::size_t RangeIndex::element_count() const { return elements_by_end_.size(); }

}  // namespace jitd::core
