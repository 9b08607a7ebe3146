#include "queries.hpp"

#include <algorithm>
#include <charconv>
#include <string_view>
#include <vector>

#include "jitd/core/history.hpp"
#include "jitd/core/text.hpp"

namespace jitd::api::queries {

namespace {

using core::ErrorCode;

// A point in time: RFC 3339 UTC, or a duration back from now ("7d" is not ISO; "P7D", "168h").
core::Result<core::TimePoint> parse_time(std::string_view name, std::string_view text,
                                         core::TimePoint now) {
  if (auto absolute = core::parse_utc(text)) return *absolute;
  if (auto back = core::parse_duration(text)) return now - *back;
  return core::fail(ErrorCode::invalid_request,
                    std::string(name) + ": " + core::excerpt(text) +
                        " is neither a UTC time (2026-11-30T08:00:00Z) nor a duration back "
                        "from now (PT24H, 30m)");
}

core::Result<std::uint64_t> parse_number(std::string_view name, std::string_view text,
                                         std::uint64_t low, std::uint64_t high) {
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || value < low || value > high) {
    return core::fail(ErrorCode::invalid_request, std::string(name) + ": must be a number from " +
                                                      std::to_string(low) + " to " +
                                                      std::to_string(high));
  }
  return value;
}

// Walks the arguments once each, refusing repeats of all but `repeatable`; `take` handles one
// and returns false for a name it does not know.
template <typename Take>
core::Result<void> each_argument(const QueryArguments& arguments, std::string_view expected,
                                 Take take, std::string_view repeatable = {}) {
  std::vector<std::string_view> seen;
  for (const auto& [name, value] : arguments) {
    if (name != repeatable && std::find(seen.begin(), seen.end(), name) != seen.end()) {
      return core::fail(ErrorCode::invalid_request, core::excerpt(name) + ": given more than once");
    }
    seen.push_back(name);
    auto taken = take(name, value);
    if (!taken) return tl::unexpected(taken.error());
    if (!*taken) {
      return core::fail(
          ErrorCode::invalid_request,
          core::excerpt(name) + ": unknown argument; expected " + std::string(expected));
    }
  }
  return {};
}

// `event=` names, comma-separated, each one jitd writes: a misspelt name would otherwise
// match nothing, and an empty answer would look like "it never happened".
core::Result<void> add_events(std::string_view text, std::vector<std::string>& events) {
  for (std::size_t start = 0; start <= text.size();) {
    const auto comma = std::min(text.find(',', start), text.size());
    const auto name = text.substr(start, comma - start);
    start = comma + 1;
    if (std::find(core::audit_event_names.begin(), core::audit_event_names.end(), name) ==
        core::audit_event_names.end()) {
      return core::fail(ErrorCode::invalid_request,
                        "event: '" + core::excerpt(name) +
                            "' is not an audit event; expected one of " +
                            core::join(core::audit_event_names));
    }
    if (std::find(events.begin(), events.end(), name) == events.end()) events.emplace_back(name);
  }
  return {};
}

core::Result<std::uint16_t> parse_port(std::string_view name, std::string_view text) {
  auto port = parse_number(name, text, 1, 65535);
  if (!port) return tl::unexpected(port.error());
  return static_cast<std::uint16_t>(*port);
}

}  // namespace

core::Result<core::AuditQuery> parse_audit_query(const QueryArguments& arguments,
                                                 core::TimePoint now) {
  core::AuditQuery query;
  auto parsed = each_argument(
      arguments, "since, until, user, port, event, limit, cursor",
      [&](const std::string& name, const std::string& value) -> core::Result<bool> {
        if (name == "since" || name == "until") {
          auto when = parse_time(name, value, now);
          if (!when) return tl::unexpected(when.error());
          (name == "since" ? query.since : query.until) = *when;
        } else if (name == "user") {
          query.user = value;
        } else if (name == "port") {
          auto port = parse_port(name, value);
          if (!port) return tl::unexpected(port.error());
          query.port = *port;
        } else if (name == "event") {
          if (auto added = add_events(value, query.events); !added) {
            return tl::unexpected(added.error());
          }
        } else if (name == "cursor") {
          query.cursor = value;
        } else if (name == "limit") {
          auto limit = parse_number(name, value, 1, core::max_audit_page);
          if (!limit) return tl::unexpected(limit.error());
          query.limit = *limit;
        } else {
          return false;
        }
        return true;
      },
      "event");
  if (!parsed) return tl::unexpected(parsed.error());
  return query;
}

core::Result<GrantQuery> parse_grant_query(const QueryArguments& arguments, core::TimePoint now) {
  GrantQuery query;
  auto parsed = each_argument(
      arguments, "state, since, user, port, limit, cursor",
      [&](const std::string& name, const std::string& value) -> core::Result<bool> {
        if (name == "state") {
          const bool all = value == "all";
          if (!all && value != "active" && value != "pending" && value != "ended") {
            return core::fail(ErrorCode::invalid_request,
                              "state: " + core::excerpt(value) +
                                  " is not a state; expected active, pending, ended or all");
          }
          query.live = all || value == "active";
          query.pending = all || value == "pending";
          query.ended = all || value == "ended";
        } else if (name == "since") {
          auto when = parse_time(name, value, now);
          if (!when) return tl::unexpected(when.error());
          query.since = *when;
        } else if (name == "user") {
          query.user = value;
        } else if (name == "port") {
          auto port = parse_port(name, value);
          if (!port) return tl::unexpected(port.error());
          query.port = *port;
        } else if (name == "limit") {
          auto limit = parse_number(name, value, 1, core::max_history_page);
          if (!limit) return tl::unexpected(limit.error());
          query.limit = *limit;
        } else if (name == "cursor") {
          query.cursor = value;
        } else {
          return false;
        }
        return true;
      });
  if (!parsed) return tl::unexpected(parsed.error());
  return query;
}

}  // namespace jitd::api::queries
