#include "jitd/core/ranges.hpp"

#include <algorithm>
#include <map>
#include <set>

namespace jitd::core {

namespace {

struct Group {
  Family family;
  PortKey port;
  auto operator<=>(const Group&) const = default;
};

}  // namespace

AddressValue family_max(Family family) {
  return family == Family::ipv4 ? AddressValue{0xffffffffU} : ~AddressValue{0};
}

// At each boundary the latest end among the segments covering the following stretch is read
// from a multiset of the ends open there.
std::vector<Segment> latest_end_runs(const std::vector<Segment>& segments, AddressValue max) {
  struct Event {
    AddressValue position;
    bool opens;
    Deadline end;
  };
  std::vector<Event> events;
  events.reserve(segments.size() * 2);
  for (const auto& segment : segments) {
    events.push_back({segment.first, true, segment.end});
    if (segment.last != max) events.push_back({segment.last + 1, false, segment.end});
  }
  std::sort(events.begin(), events.end(),
            [](const Event& a, const Event& b) { return a.position < b.position; });
  std::vector<Segment> out;
  std::multiset<Deadline> active;
  for (auto it = events.begin(); it != events.end();) {
    const AddressValue position = it->position;
    for (; it != events.end() && it->position == position; ++it) {
      if (it->opens) {
        active.insert(it->end);
      } else {
        active.erase(active.find(it->end));
      }
    }
    if (active.empty()) continue;
    const AddressValue last = it == events.end() ? max : it->position - 1;
    const Deadline end = *active.rbegin();
    if (!out.empty() && out.back().end == end && out.back().last + 1 == position) {
      out.back().last = last;  // touching segments with one end are one element
      continue;
    }
    out.push_back({position, last, end});
  }
  return out;
}

std::vector<TimedRange> derive_disjoint(std::vector<TimedRange> coverage) {
  std::map<Group, std::vector<Segment>> groups;
  for (const auto& range : coverage) {
    groups[Group{range.key.source.family, range.key.port}].push_back(
        {range.key.source.first, range.key.source.last, range.end});
  }
  std::vector<TimedRange> out;
  for (const auto& [group, segments] : groups) {
    for (const auto& run : latest_end_runs(segments, family_max(group.family))) {
      out.push_back(
          {ElementKey{AddressRange{group.family, run.first, run.last}, group.port}, run.end});
    }
  }
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
