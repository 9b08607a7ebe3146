#include "jitd/core/ranges.hpp"

#include <algorithm>
#include <map>
#include <set>

namespace jitd::core {

namespace {

AddressValue family_max(Family family) {
  return family == Family::ipv4 ? AddressValue{0xffffffffU} : ~AddressValue{0};
}

struct Group {
  Family family;
  PortKey port;
  auto operator<=>(const Group&) const = default;
};

// A sweep over one (family, port): at each boundary the latest end among the ranges
// covering the following segment is read from a multiset of active ends.
void sweep(const Group& group, const std::vector<const TimedRange*>& ranges,
           std::vector<TimedRange>& out) {
  std::multimap<AddressValue, std::pair<bool, Deadline>> events;  // position → (opens, end)
  for (const auto* range : ranges) {
    events.emplace(range->key.source.first, std::pair{true, range->end});
    if (range->key.source.last != family_max(group.family)) {
      events.emplace(range->key.source.last + 1, std::pair{false, range->end});
    }
  }
  std::multiset<Deadline> active;
  for (auto it = events.begin(); it != events.end();) {
    const AddressValue position = it->first;
    for (; it != events.end() && it->first == position; ++it) {
      if (it->second.first) {
        active.insert(it->second.second);
      } else {
        active.erase(active.find(it->second.second));
      }
    }
    if (active.empty()) continue;
    const AddressValue last = it == events.end() ? family_max(group.family) : it->first - 1;
    const Deadline end = *active.rbegin();
    if (!out.empty() && out.back().key.port == group.port &&
        out.back().key.source.family == group.family && out.back().end == end &&
        out.back().key.source.last + 1 == position) {
      out.back().key.source.last = last;  // touching segments with one end are one element
      continue;
    }
    out.push_back({ElementKey{AddressRange{group.family, position, last}, group.port}, end});
  }
}

}  // namespace

std::vector<TimedRange> derive_disjoint(std::vector<TimedRange> coverage) {
  std::map<Group, std::vector<const TimedRange*>> groups;
  for (const auto& range : coverage) {
    groups[Group{range.key.source.family, range.key.port}].push_back(&range);
  }
  std::vector<TimedRange> out;
  for (const auto& [group, ranges] : groups) sweep(group, ranges, out);
  return out;
}

ElementChanges diff_ranges(const std::vector<TimedRange>& current,
                           const std::vector<TimedRange>& desired, Deadline now) {
  const auto live = [now](const std::vector<TimedRange>& ranges) {
    std::set<TimedRange> result;
    for (const auto& range : ranges) {
      if (range.end > now) result.insert(range);
    }
    return result;
  };
  const auto current_live = live(current);
  const auto desired_live = live(desired);
  ElementChanges changes;
  for (const auto& range : current_live) {
    if (!desired_live.contains(range)) changes.remove.push_back(range.key);
  }
  for (const auto& range : desired_live) {
    if (!current_live.contains(range)) changes.add.push_back({range.key, range.end - now});
  }
  return changes;
}

std::vector<TimedElement> timed_elements(const std::vector<TimedRange>& ranges, Deadline now) {
  std::vector<TimedElement> elements;
  for (const auto& range : ranges) {
    if (range.end > now) elements.push_back({range.key, range.end - now});
  }
  return elements;
}

}  // namespace jitd::core
