#include "jitd/core/engine.hpp"

#include <algorithm>
#include <set>

namespace jitd::core {

namespace {

std::string_view reason_for(GrantStatus status) {
  switch (status) {
    case GrantStatus::initiated: return "";
    case GrantStatus::revoked: return "UserRequested";
    case GrantStatus::expired: return "Expired";
  }
  return "";
}

AuditEvent grant_event(TimePoint now, std::string event, std::string outcome, const Grant& grant) {
  AuditEvent audit;
  audit.time = now;
  audit.event = std::move(event);
  audit.outcome = std::move(outcome);
  audit.grant_id = grant.id;
  audit.uid = grant.requestor.uid;
  audit.user = grant.requestor.name;
  audit.source = grant.source.to_string();
  audit.ports = grant.ports;
  audit.justification = grant.justification;
  audit.end_time = format_utc(grant.end);
  return audit;
}

}  // namespace

std::string_view to_string(GrantStatus status) {
  switch (status) {
    case GrantStatus::initiated: return "Initiated";
    case GrantStatus::revoked: return "Revoked";
    case GrantStatus::expired: return "Expired";
  }
  return "Unknown";
}

AccessEngine::AccessEngine(Backend& backend, AuditSink& audit, const Clock& clock,
                           IdGenerator new_id, Policy policy)
    : backend_(backend),
      audit_(audit),
      clock_(clock),
      new_id_(std::move(new_id)),
      policy_(std::move(policy)) {}

EnforcementSpec AccessEngine::enforcement_spec(TimePoint now) const {
  EnforcementSpec spec;
  spec.protected_ports = policy_.protected_ports();
  // The allow-list goes through the same disjoint derivation: entries may overlap.
  std::vector<TimedRange> permanent;
  for (const auto& entry : policy_.permanent_allow) {
    std::vector<PortKey> ports;
    if (entry.ports.empty()) {
      ports = spec.protected_ports;
    } else {
      for (const auto& port : entry.ports) {
        for (const auto protocol : expand(port.protocol)) {
          if (policy_.find_rule(port.number, protocol)) ports.push_back({protocol, port.number});
        }
      }
    }
    for (const auto& source : entry.sources) {
      for (const auto& port : ports) {
        permanent.push_back({ElementKey{source.range(), port}, TimePoint::max()});
      }
    }
  }
  for (const auto& range : derive_disjoint(std::move(permanent))) {
    spec.permanent.push_back(range.key);
  }
  spec.grants = timed_elements(kernel_ranges_, now);
  return spec;
}

Result<void> AccessEngine::install() {
  const auto now = clock_.now();
  kernel_ranges_ = desired_ranges(nullptr, nullptr);
  return backend_.install(enforcement_spec(now));
}

std::vector<TimedRange> AccessEngine::desired_ranges(const Grant* extra,
                                                     const std::string* without) const {
  std::vector<TimedRange> coverage;
  const auto add = [&](const Grant& grant) {
    for (const auto& port : grant.ports) {
      for (const auto protocol : expand(port.protocol)) {
        coverage.push_back(
            {ElementKey{grant.source.range(), PortKey{protocol, port.number}}, grant.end});
      }
    }
  };
  for (const auto& [id, grant] : active_) {
    if (without == nullptr || id != *without) add(grant);
  }
  if (extra != nullptr) add(*extra);
  return derive_disjoint(std::move(coverage));
}

Result<void> AccessEngine::converge(std::vector<TimedRange> desired, TimePoint now) {
  const auto changes = diff_ranges(kernel_ranges_, desired, now);
  if (!changes.empty()) {
    if (auto applied = backend_.apply(changes); !applied) return applied;
  }
  kernel_ranges_ = std::move(desired);
  return {};
}

Result<std::vector<PortKey>> AccessEngine::validate(const GrantRequest& request,
                                                    Milliseconds duration) const {
  if (request.ports.empty()) {
    return fail(ErrorCode::invalid_request, "ports: at least one port is required");
  }
  std::vector<PortKey> keys;
  for (std::size_t i = 0; i < request.ports.size(); ++i) {
    const auto& port = request.ports[i];
    const auto field = "ports[" + std::to_string(i) + "]";
    for (const auto protocol : expand(port.protocol)) {
      const PortKey key{protocol, port.number};
      if (std::find(keys.begin(), keys.end(), key) != keys.end()) {
        return fail(ErrorCode::invalid_request,
                    field + ": " + to_string(port) + " is requested twice");
      }
      keys.push_back(key);
      const auto* rule = policy_.find_rule(port.number, protocol);
      if (rule == nullptr) {
        return fail(ErrorCode::port_not_in_policy,
                    field + ": " + std::to_string(port.number) + "/" +
                        std::string(to_string(protocol)) + " is not a port the policy protects");
      }
      if (!rule->allows_source(request.source)) {
        return fail(ErrorCode::source_not_allowed,
                    "allowedSourceAddressPrefix: " + request.source.to_string() +
                        " is not inside the allowed sources of port " + to_string(rule->port));
      }
      if (duration > rule->max_duration) {
        return fail(ErrorCode::duration_too_long,
                    std::string(request.end_time ? "endTimeUtc" : "duration") + ": " +
                        format_duration(duration) + " exceeds the maximum " +
                        format_duration(rule->max_duration) + " of port " + to_string(rule->port));
      }
    }
  }
  return keys;
}

void AccessEngine::audit_refusal(const Caller& caller, const GrantRequest* request,
                                 const Error& error) {
  AuditEvent event;
  event.time = clock_.now();
  event.event = "request";
  event.outcome = error.code == ErrorCode::kernel ? "failed" : "refused";
  event.uid = caller.uid;
  event.user = caller.name;
  if (request != nullptr) {
    event.source = request->source.to_string();
    event.ports = request->ports;
    event.justification = request->justification;
  }
  event.reason = std::string(to_string(error.code)) + ": " + error.message;
  audit_.record(event);
}

void AccessEngine::audit_malformed_request(const Caller& caller, const Error& error) {
  audit_refusal(caller, nullptr, error);
}

Result<Grant> AccessEngine::request(const Caller& caller, const GrantRequest& request) {
  const auto now = clock_.now();
  const auto refuse = [&](Error error) -> Result<Grant> {
    audit_refusal(caller, &request, error);
    return tl::unexpected(std::move(error));
  };
  if (!caller.may_manage) {
    return refuse({ErrorCode::forbidden,
                   "user " + caller.name + " (uid " + std::to_string(caller.uid) +
                       ") may not request access"});
  }
  if (request.duration.has_value() == request.end_time.has_value()) {
    return refuse({ErrorCode::invalid_request, "give exactly one of duration and endTimeUtc"});
  }
  if (request.end_time && *request.end_time <= now) {
    return refuse({ErrorCode::end_time_in_past,
                   "endTimeUtc: " + format_utc(*request.end_time) + " is not in the future"});
  }
  const Milliseconds duration = request.duration ? *request.duration : *request.end_time - now;
  if (duration <= Milliseconds{0}) {
    return refuse({ErrorCode::invalid_argument, "duration: must be longer than zero"});
  }
  if (auto valid = validate(request, duration); !valid) return refuse(valid.error());

  Grant grant;
  do {
    grant.id = new_id_();
  } while (active_.contains(grant.id));  // an id names exactly one grant
  grant.requestor = {caller.uid, caller.name};
  grant.source = request.source;
  grant.ports = request.ports;
  grant.start = now;
  grant.end = now + duration;
  grant.justification = request.justification;
  if (auto applied = converge(desired_ranges(&grant, nullptr), now); !applied) {
    return refuse(applied.error());
  }
  active_.emplace(grant.id, grant);
  audit_.record(grant_event(now, "request", "granted", grant));
  return grant;
}

Result<Grant> AccessEngine::revoke(const Caller& caller, std::string_view id) {
  const auto now = clock_.now();
  const auto refuse = [&](Error error) -> Result<Grant> {
    AuditEvent event;
    event.time = now;
    event.event = "revoke";
    event.outcome = "refused";
    event.grant_id = std::string(id);
    event.uid = caller.uid;
    event.user = caller.name;
    event.reason = std::string(to_string(error.code)) + ": " + error.message;
    audit_.record(event);
    return tl::unexpected(std::move(error));
  };
  if (!caller.may_manage) {
    return refuse({ErrorCode::forbidden, "user " + caller.name + " (uid " +
                                             std::to_string(caller.uid) + ") may not revoke access"});
  }
  const auto found = active_.find(id);
  if (found == active_.end()) {
    return refuse({ErrorCode::not_found, "no active grant with id '" + std::string(id) + "'"});
  }
  if (auto applied = converge(desired_ranges(nullptr, &found->first), now); !applied) {
    auto failed = grant_event(now, "revoke", "failed", found->second);
    failed.reason = applied.error().message;
    audit_.record(failed);
    return tl::unexpected(applied.error());
  }
  Grant grant = std::move(found->second);
  active_.erase(found);
  grant.status = GrantStatus::revoked;
  grant.status_reason = std::string(reason_for(grant.status));
  auto event = grant_event(now, "revoke", "revoked", grant);
  event.uid = caller.uid;  // who revoked, not who asked
  event.user = caller.name;
  event.reason = grant.status_reason;
  audit_.record(event);
  return grant;
}

void AccessEngine::expire_due() {
  const auto now = clock_.now();
  for (auto it = active_.begin(); it != active_.end();) {
    if (it->second.end > now) {
      ++it;
      continue;
    }
    auto event = grant_event(now, "expire", "expired", it->second);
    event.reason = std::string(reason_for(GrantStatus::expired));
    audit_.record(event);
    it = active_.erase(it);
  }
  // The kernel dropped the ended elements itself; forget them without a transaction.
  std::erase_if(kernel_ranges_, [now](const TimedRange& range) { return range.end <= now; });
}

std::vector<Grant> AccessEngine::active_grants() const {
  std::vector<Grant> grants;
  const auto now = clock_.now();
  for (const auto& [id, grant] : active_) {
    if (grant.end > now) grants.push_back(grant);
  }
  std::sort(grants.begin(), grants.end(),
            [](const Grant& a, const Grant& b) { return a.start < b.start; });
  return grants;
}

std::optional<TimePoint> AccessEngine::next_expiry() const {
  std::optional<TimePoint> next;
  for (const auto& [id, grant] : active_) {
    if (!next || grant.end < *next) next = grant.end;
  }
  return next;
}

}  // namespace jitd::core
