#include "jitd/metrics/activity.hpp"

#include <chrono>

namespace jitd::metrics {

namespace {

using nlohmann::json;

constexpr int format_version = 1;

std::int64_t day_of(core::TimePoint time) {
  return std::chrono::floor<std::chrono::days>(time).time_since_epoch().count();
}

// The kernel counters by their names in the saved state, for both directions.
constexpr std::pair<const char*, CarriedCounter KernelTotals::*> kernel_fields[] = {
    {"droppedPackets", &KernelTotals::dropped_packets},
    {"droppedConnections", &KernelTotals::dropped_connections},
    {"admittedConnections", &KernelTotals::admitted_connections},
    {"wouldDropPackets", &KernelTotals::would_drop_packets},
};

core::Result<Activity> invalid(const std::string& what) {
  return core::fail(core::ErrorCode::invalid_argument, "metrics state: " + what);
}

}  // namespace

bool CarriedCounter::observe(std::uint64_t raw) {
  if (raw == last_raw) return false;
  if (raw < last_raw) offset += last_raw;  // re-created: it counts from zero again
  last_raw = raw;
  return true;
}

void Activity::record(const core::AuditEvent& event) {
  const auto& name = event.event;
  const auto& outcome = event.outcome;
  if (outcome == "granted" && (name == "request" || name == "start")) {
    count_issued(event);
  } else if (outcome == "refused" && name == "request") {
    ++decisions_.refused[event.code.empty() ? "Unknown" : event.code];
  } else if (name == "expire") {
    // A grant reaching its end, or a request that waited for an approver in vain.
    ++(outcome == "expired" ? decisions_.expired : decisions_.approvals_lapsed);
  } else if (name == "revoke" && outcome == "revoked") {
    ++decisions_.revoked;
  } else if (name == "deny" && outcome == "revoked") {
    ++decisions_.denied;
  } else if (name != "tamper" && outcome != "failed") {
    return;  // nothing counted
  }
  if (name == "tamper") ++decisions_.tamper[outcome];
  if (outcome == "failed") {
    ++decisions_.failures[{name, event.code.empty() ? "Unknown" : event.code}];
  }
  dirty_ = true;
}

void Activity::count_issued(const core::AuditEvent& event) {
  ++decisions_.issued;
  const auto day = day_of(event.time);
  for (const auto& spec : event.ports) {
    for (const auto protocol : core::expand(spec.protocol)) {
      auto& port = ports_[core::PortKey{protocol, spec.number}];
      ++port.issued_by_day[day];
      port.last_user = event.user;
      // Only the days status can still ask for are kept.
      std::erase_if(port.issued_by_day,
                    [day](const auto& entry) { return entry.first <= day - activity_days; });
    }
  }
}

void Activity::observe_kernel(const std::vector<core::PortCounters>& counters,
                              core::TimePoint now) {
  for (const auto& counted : counters) {
    auto& kernel = ports_[counted.port].kernel;
    const auto admitted_before = kernel.admitted_connections.total();
    bool moved = false;
    moved |= kernel.dropped_packets.observe(counted.dropped_packets);
    moved |= kernel.dropped_connections.observe(counted.dropped_connections);
    moved |= kernel.admitted_connections.observe(counted.admitted_connections);
    moved |= kernel.would_drop_packets.observe(counted.would_drop_packets);
    // A counter that restarted and then counted past its old value unseen looks like no
    // connection; the daemon reads right before and after each re-install to keep that rare.
    if (kernel.admitted_connections.total() > admitted_before) {
      ports_[counted.port].last_access = now;
    }
    dirty_ |= moved;
  }
}

std::uint64_t Activity::issued_in_last_days(const core::PortKey& port, core::TimePoint now,
                                            int days) const {
  const auto found = ports_.find(port);
  if (found == ports_.end()) return 0;
  const auto today = day_of(now);
  std::uint64_t issued = 0;
  for (const auto& [day, count] : found->second.issued_by_day) {
    if (day > today - days && day <= today) issued += count;
  }
  return issued;
}

json Activity::to_json() const {
  json failures = json::array();
  for (const auto& [key, count] : decisions_.failures) {
    failures.push_back({{"event", key.first}, {"code", key.second}, {"count", count}});
  }
  json ports = json::array();
  for (const auto& [key, port] : ports_) {
    json days = json::object();
    for (const auto& [day, count] : port.issued_by_day) days[std::to_string(day)] = count;
    json kernel = json::object();
    for (const auto& [name, field] : kernel_fields) {
      const auto& counter = port.kernel.*field;
      kernel[name] = {{"lastRaw", counter.last_raw}, {"offset", counter.offset}};
    }
    json entry{{"number", key.port},
               {"protocol", core::to_string(key.protocol)},
               {"issuedByDay", std::move(days)},
               {"lastUser", port.last_user},
               {"kernel", std::move(kernel)}};
    if (port.last_access) entry["lastAccessMs"] = port.last_access->time_since_epoch().count();
    ports.push_back(std::move(entry));
  }
  return {{"format", format_version},
          {"grants",
           {{"issued", decisions_.issued},
            {"expired", decisions_.expired},
            {"revoked", decisions_.revoked},
            {"denied", decisions_.denied},
            {"approvalsLapsed", decisions_.approvals_lapsed}}},
          {"refused", decisions_.refused},
          {"failures", std::move(failures)},
          {"tamper", decisions_.tamper},
          {"ports", std::move(ports)}};
}

core::Result<Activity> Activity::from_json(const json& saved) {
  // nlohmann's own errors (a missing key, a wrong type) say what was wrong well enough; the
  // format version is checked first so a newer jitd's file is named as such.
  if (!saved.is_object() || !saved.contains("format") || saved["format"] != format_version) {
    return invalid("not format " + std::to_string(format_version) + " of jitd's metrics state");
  }
  Activity activity;
  try {
    auto& decisions = activity.decisions_;
    const auto& grants = saved.at("grants");
    decisions.issued = grants.at("issued").get<std::uint64_t>();
    decisions.expired = grants.at("expired").get<std::uint64_t>();
    decisions.revoked = grants.at("revoked").get<std::uint64_t>();
    decisions.denied = grants.at("denied").get<std::uint64_t>();
    decisions.approvals_lapsed = grants.at("approvalsLapsed").get<std::uint64_t>();
    decisions.refused = saved.at("refused").get<std::map<std::string, std::uint64_t>>();
    decisions.tamper = saved.at("tamper").get<std::map<std::string, std::uint64_t>>();
    for (const auto& failure : saved.at("failures")) {
      decisions.failures[{failure.at("event").get<std::string>(),
                          failure.at("code").get<std::string>()}] =
          failure.at("count").get<std::uint64_t>();
    }
    for (const auto& entry : saved.at("ports")) {
      const auto protocol = entry.at("protocol").get<std::string>();
      const auto number = entry.at("number").get<std::uint16_t>();
      if (protocol != "tcp" && protocol != "udp") {
        return invalid("port " + std::to_string(number) + ": protocol '" + protocol +
                       "' is not tcp or udp");
      }
      auto& port = activity.ports_[core::PortKey{
          protocol == "tcp" ? core::Protocol::tcp : core::Protocol::udp, number}];
      for (const auto& [day, count] : entry.at("issuedByDay").items()) {
        port.issued_by_day[std::stoll(day)] = count.get<std::uint64_t>();
      }
      port.last_user = entry.at("lastUser").get<std::string>();
      if (entry.contains("lastAccessMs")) {
        port.last_access =
            core::TimePoint(std::chrono::milliseconds(entry["lastAccessMs"].get<std::int64_t>()));
      }
      for (const auto& [name, field] : kernel_fields) {
        const auto& counter = entry.at("kernel").at(name);
        (port.kernel.*field).last_raw = counter.at("lastRaw").get<std::uint64_t>();
        (port.kernel.*field).offset = counter.at("offset").get<std::uint64_t>();
      }
    }
  } catch (const std::exception& error) {
    // json errors, and std::stoll on a day that is not a number
    return invalid(error.what());
  }
  return activity;
}

}  // namespace jitd::metrics
