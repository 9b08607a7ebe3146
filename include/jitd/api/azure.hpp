#pragma once
// Azure's just-in-time initiate call (Microsoft.Security jitNetworkAccessPolicies/initiate,
// api-version 2020-01-01), read and answered as pure functions, so that a request written for
// Azure (by a script, a runbook, the SDKs) opens the same ports on a host running jitd.
// The route (POST /v1/initiate) is wired in the router; docs/azure.md describes both ends.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/error.hpp"
#include "jitd/core/grant.hpp"
#include "jitd/core/policy.hpp"

namespace jitd::api {

// An initiate body: the one VM it names, and what it asks for, as jitd grant requests.
struct AzureInitiate {
  // virtualMachines[0].id as given.
  std::string vm_id;
  // The VM's name: the last segment of an ARM id
  // /subscriptions/<s>/resourceGroups/<g>/providers/Microsoft.Compute/virtualMachines/<name>,
  // or the id itself when it is a bare name (no '/'). See vm_names_host.
  std::string vm_name;
  // The ports, grouped into one request per (allowedSourceAddressPrefix, duration or
  // endTimeUtc), in the order each group first appears; every request carries the body's
  // justification. Azure's ports name no protocol, so each PortSpec has ProtocolSpec::any,
  // meaning "whatever the policy protects on this number": resolve_protocols makes them
  // concrete before they go to the engine.
  std::vector<core::GrantRequest> requests;
};

// Reads an initiate body:
//   {"virtualMachines": [{"id": "...", "ports": [{"number": 22,
//      "allowedSourceAddressPrefix": "203.0.113.7" | "*",
//      "endTimeUtc": "2026-11-24T18:00:00Z" | "duration": "PT1H"}]}],
//    "justification": "..."}
// Exactly one VM (a host is one VM); one port number once; allowedSourceAddressPrefix required
// (Azure would take the caller's address, which a Unix socket does not have); at most one of
// endTimeUtc and duration (jitd's addition), neither meaning the longest the rule allows.
// Unknown fields and keys given twice are refused; errors name the field's path
// ("virtualMachines[0].ports[1].number: ...").
[[nodiscard]] core::Result<AzureInitiate> parse_azure_initiate(std::string_view body);

// Whether an initiate's vm_name names this host: equal, ignoring case (Azure's VM names and
// DNS names both ignore it), to `host_name` or to its first label ("vm1" names
// "vm1.internal.cloudapp.net"). The caller decides what to do with a request for another VM.
[[nodiscard]] bool vm_names_host(std::string_view vm_name, std::string_view host_name);

// `requests` with every ProtocolSpec::any port replaced by the port specs of the policy's rules
// for that number, in policy order: 22 becomes 22/tcp under a tcp rule, 22/* under a "*" rule,
// 53/tcp and 53/udp under two rules. Ports with a concrete protocol are kept as they are. A
// number no rule protects is a port_not_in_policy error naming it.
[[nodiscard]] core::Result<std::vector<core::GrantRequest>> resolve_protocols(
    const core::Policy& policy, std::vector<core::GrantRequest> requests);

// Azure's reply to initiate (JitNetworkAccessRequest) for the grants one initiate produced, in
// order: {"virtualMachines": [{"id": vm_id, "ports": [{"number", "allowedSourceAddressPrefix",
// "endTimeUtc", "status", "statusReason", and jitd's own "protocol" and "jitdGrantId"}]}],
// "startTimeUtc", "requestor", "justification"} with every port of every grant. The start,
// requestor and justification are the first grant's (one initiate has one of each).
[[nodiscard]] nlohmann::json azure_initiate_response(const std::vector<core::Grant>& grants,
                                                     std::string_view vm_id);

}  // namespace jitd::api
