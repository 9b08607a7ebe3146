#include "jitd/api/azure.hpp"

#include <algorithm>
#include <array>

#include "jitd/core/azure_id.hpp"
#include "jitd/core/clock.hpp"
#include "jitd/core/text.hpp"
#include "json_fields.hpp"
#include "request_terms.hpp"

namespace jitd::api {

namespace {

using core::ErrorCode;
using fields::field;
using nlohmann::json;

// Refuses the first key of `object` not in `known`; `expected` lists them for people.
template <std::size_t N>
core::Result<void> refuse_unknown(const json& object, const std::array<std::string_view, N>& known,
                                  const std::string& where, std::string_view expected) {
  for (const auto& [key, value] : object.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return core::fail(
          ErrorCode::invalid_request,
          where + core::excerpt(key) + ": unknown field; expected " + std::string(expected));
    }
  }
  return {};
}

// `object[name]` of `type`, which must be there.
core::Result<const json*> required(const json& object, const char* name, json::value_t type,
                                   const std::string& where) {
  auto found = field(object, name, type, where);
  if (found && *found == nullptr) {
    return core::fail(ErrorCode::invalid_request, where + name + ": required");
  }
  return found;
}

// The name decides whether the request is for this host (vm_names_host).
core::Result<std::string> vm_name_of(const std::string& id, const std::string& where) {
  auto name = core::azure_vm_name(id);
  if (!name) {
    return core::fail(ErrorCode::invalid_request, where + ": '" +
                                                      core::excerpt(id, core::max_quoted_azure_id) +
                                                      "' is not a virtual machine's id; expected " +
                                                      std::string(core::azure_vm_id_form));
  }
  return std::move(*name);
}

// One port of the VM, as a request of its own; the caller groups them.
core::Result<core::GrantRequest> parse_port(const json& entry, const std::string& where) {
  if (!entry.is_object()) {
    return core::fail(ErrorCode::invalid_request,
                      where +
                          ": must be an object like {\"number\": 22, "
                          "\"allowedSourceAddressPrefix\": \"203.0.113.7\", "
                          "\"endTimeUtc\": \"...\"}");
  }
  static constexpr std::array<std::string_view, 4> known = {"number", "allowedSourceAddressPrefix",
                                                            "endTimeUtc", "duration"};
  const auto at = where + ".";
  if (auto refused = refuse_unknown(entry, known, at,
                                    "number, allowedSourceAddressPrefix, endTimeUtc or duration");
      !refused) {
    return tl::unexpected(refused.error());
  }
  const auto number = required(entry, "number", json::value_t::number_unsigned, at);
  if (!number) return tl::unexpected(number.error());
  const auto value = (*number)->get<std::int64_t>();
  if (value < 1 || value > 65535) {
    return core::fail(ErrorCode::invalid_request,
                      at + "number: " + std::to_string(value) + " is not a port (1-65535)");
  }
  core::GrantRequest request;
  // Resolved against the policy later (resolve_protocols): Azure's ports name no protocol.
  request.ports.push_back({static_cast<std::uint16_t>(value), core::ProtocolSpec::any});

  auto terms = terms::parse_terms(entry, at);
  if (!terms) return tl::unexpected(terms.error());
  if (!terms->source) {
    // Azure would take the address the call came from; over jitd's Unix socket there is none.
    return core::fail(ErrorCode::invalid_request,
                      at + "allowedSourceAddressPrefix: required; jitd cannot take the caller's "
                           "address as Azure does (the request comes over a local socket)");
  }
  request.source = *terms->source;
  request.duration = terms->duration;
  request.end_time = terms->end_time;
  return request;
}

}  // namespace

core::Result<AzureInitiate> parse_azure_initiate(std::string_view body) {
  const auto parsed = fields::parse_without_duplicate_keys(body);
  if (!parsed) return tl::unexpected(parsed.error());
  const json& document = *parsed;
  if (!document.is_object()) {
    return core::fail(ErrorCode::invalid_request, "body: must be a JSON object");
  }
  static constexpr std::array<std::string_view, 2> known = {"virtualMachines", "justification"};
  if (auto refused = refuse_unknown(document, known, "", "virtualMachines, justification");
      !refused) {
    return tl::unexpected(refused.error());
  }
  const auto machines = required(document, "virtualMachines", json::value_t::array, "");
  if (!machines) return tl::unexpected(machines.error());
  if ((*machines)->size() != 1) {
    return core::fail(ErrorCode::invalid_request,
                      "virtualMachines: " + std::to_string((*machines)->size()) +
                          " virtual machines given; jitd runs on one host and takes exactly one "
                          "(send each VM's request to its own host)");
  }
  const json& machine = (**machines)[0];
  const std::string where = "virtualMachines[0]";
  if (!machine.is_object()) {
    return core::fail(ErrorCode::invalid_request,
                      where + ": must be an object like {\"id\": \"...\", \"ports\": [...]}");
  }
  static constexpr std::array<std::string_view, 2> machine_keys = {"id", "ports"};
  if (auto refused = refuse_unknown(machine, machine_keys, where + ".", "id, ports"); !refused) {
    return tl::unexpected(refused.error());
  }
  AzureInitiate initiate;
  const auto id = required(machine, "id", json::value_t::string, where + ".");
  if (!id) return tl::unexpected(id.error());
  initiate.vm_id = (*id)->get<std::string>();
  auto name = vm_name_of(initiate.vm_id, where + ".id");
  if (!name) return tl::unexpected(name.error());
  initiate.vm_name = std::move(*name);

  const auto ports = required(machine, "ports", json::value_t::array, where + ".");
  if (!ports) return tl::unexpected(ports.error());
  if ((*ports)->empty()) {
    return core::fail(ErrorCode::invalid_request, where + ".ports: at least one port is required");
  }
  std::vector<std::uint16_t> numbers;
  for (std::size_t i = 0; i < (*ports)->size(); ++i) {
    const auto path = where + ".ports[" + std::to_string(i) + "]";
    auto port = parse_port((**ports)[i], path);
    if (!port) return tl::unexpected(port.error());
    const auto number = port->ports.front().number;
    if (const auto seen = std::find(numbers.begin(), numbers.end(), number);
        seen != numbers.end()) {
      return core::fail(ErrorCode::invalid_request,
                        path + ".number: port " + std::to_string(number) +
                            " is already listed at ports[" +
                            std::to_string(seen - numbers.begin()) + "]");
    }
    numbers.push_back(number);
    terms::add_grouped(initiate.requests, std::move(*port));
  }

  auto justification = fields::justification(document, "");
  if (!justification) return tl::unexpected(justification.error());
  for (auto& request : initiate.requests) request.justification = *justification;
  return initiate;
}

bool vm_names_host(std::string_view vm_name, std::string_view host_name) {
  return core::same_vm_name(vm_name, host_name) ||
         core::same_vm_name(vm_name, host_name.substr(0, host_name.find('.')));
}

core::Result<std::vector<core::GrantRequest>> resolve_protocols(
    const core::Policy& policy, std::vector<core::GrantRequest> requests) {
  for (auto& request : requests) {
    std::vector<core::PortSpec> resolved;
    for (const auto& port : request.ports) {
      if (port.protocol != core::ProtocolSpec::any) {
        resolved.push_back(port);
        continue;
      }
      const auto before = resolved.size();
      for (const auto& rule : policy.rules) {
        if (rule.port.number == port.number) resolved.push_back(rule.port);
      }
      if (resolved.size() == before) {
        return core::fail(ErrorCode::port_not_in_policy,
                          "virtualMachines[0].ports: port " + std::to_string(port.number) +
                              " is not a port the policy protects (neither tcp nor udp)");
      }
    }
    request.ports = std::move(resolved);
  }
  return requests;
}

json azure_initiate_response(const std::vector<core::Grant>& grants, std::string_view vm_id) {
  json ports = json::array();
  for (const auto& grant : grants) {
    const auto status = core::to_string(grant.status);
    const auto reason = grant.status_reason.empty() ? std::string(core::reason::user_requested)
                                                    : grant.status_reason;
    for (const auto& port : grant.ports) {
      ports.push_back({{"number", port.number},
                       {"protocol", core::to_string(port.protocol)},
                       {"allowedSourceAddressPrefix", grant.source.to_string()},
                       {"endTimeUtc", core::format_utc(grant.end)},
                       {"status", status},
                       {"statusReason", reason},
                       // Azure's request has no id; jitd's grant ids let the caller revoke.
                       {"jitdGrantId", grant.id}});
    }
  }
  json reply{{"virtualMachines",
              json::array({{{"id", std::string(vm_id)}, {"ports", std::move(ports)}}})}};
  if (!grants.empty()) {
    const auto& first = grants.front();
    reply["startTimeUtc"] = core::format_utc(first.start);
    reply["requestor"] = first.requestor.name;
    reply["justification"] = first.justification;
  }
  return reply;
}

}  // namespace jitd::api
