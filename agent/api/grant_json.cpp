#include "grant_json.hpp"

#include <algorithm>

#include "jitd/core/text.hpp"

namespace jitd::api {

using nlohmann::json;

namespace {

json person_json(const core::Requestor& person) {
  return {{"name", person.name}, {"uid", person.uid}};
}

// Who may decide on the grant's ports under the policy in force ("users alice; groups ops").
std::string approvers_text(const core::Grant& grant, const core::Policy& policy) {
  std::vector<std::string> described;
  for (const auto& port : grant.ports) {
    for (const auto protocol : core::expand(port.protocol)) {
      const auto* rule = policy.find_rule(port.number, protocol);
      if (rule == nullptr || !rule->approval_required) continue;
      auto text = rule->approvers.describe();
      if (std::find(described.begin(), described.end(), text) == described.end()) {
        described.push_back(std::move(text));
      }
    }
  }
  return described.empty() ? "nobody (the policy in force requires no approval)"
                           : core::join(described, "; and ");
}

}  // namespace

json port_json(const core::PortSpec& port) {
  return {{"number", port.number}, {"protocol", core::to_string(port.protocol)}};
}

json grant_json(const core::Grant& grant, const GrantView& view) {
  const auto status = core::to_string(grant.status);
  const auto reason = grant.status_reason.empty() ? std::string(core::reason::user_requested)
                                                  : grant.status_reason;
  const auto source = grant.source.to_string();
  const auto end = core::format_utc(grant.end);
  json ports = json::array();
  for (const auto& port : grant.ports) {
    auto entry = port_json(port);
    entry["status"] = status;
    entry["statusReason"] = reason;
    // Azure's response carries them per port; one grant has one source and one end.
    entry["allowedSourceAddressPrefix"] = source;
    entry["endTimeUtc"] = end;
    ports.push_back(std::move(entry));
  }
  const auto remaining =
      grant.status == core::GrantStatus::initiated
          ? std::chrono::ceil<std::chrono::seconds>(core::remaining(grant, view.boot_now)).count()
          : 0;
  json body{{"id", grant.id},
            {"requestor", person_json(grant.requestor)},
            {"allowedSourceAddressPrefix", source},
            {"ports", std::move(ports)},
            {"requestedTimeUtc", core::format_utc(grant.requested)},
            {"startTimeUtc", core::format_utc(grant.start)},
            {"endTimeUtc", end},
            {"justification", grant.justification},
            {"status", status},
            {"statusReason", reason},
            {"remainingSeconds", remaining}};
  if (grant.needs_approval || grant.decided_by) {
    json approval{{"required", true}, {"approvers", approvers_text(grant, view.policy)}};
    if (grant.decided_by) approval["decidedBy"] = person_json(*grant.decided_by);
    if (grant.needs_approval && grant.wait_until) {
      approval["expiresTimeUtc"] = core::format_utc(
          view.utc_now + std::chrono::duration_cast<core::Milliseconds>(*grant.wait_until -
                                                                        view.boot_now));
    }
    body["approval"] = std::move(approval);
  }
  if (grant.ended_by) body["endedBy"] = person_json(*grant.ended_by);
  if (grant.ended) body["endedTimeUtc"] = core::format_utc(*grant.ended);
  return body;
}

}  // namespace jitd::api
