#include "jitd/config/azure_import.hpp"

#include <algorithm>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <utility>

#include "jitd/core/azure_id.hpp"
#include "jitd/core/duration.hpp"
#include "jitd/core/policy.hpp"
#include "jitd/core/prefix.hpp"
#include "jitd/core/text.hpp"
#include "jitd/strict_json/strict_json.hpp"

namespace jitd::config {

namespace {

using core::ErrorCode;
using nlohmann::json;

// Messages of core parsers quote the value: bounded, so a huge value is no huge message.
constexpr std::size_t max_quoted_message = 256;

tl::unexpected<core::Error> refuse(const std::string& path, const std::string& why) {
  return core::fail(ErrorCode::invalid_argument, path + ": " + why);
}

std::string member_path(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

std::string item_path(const std::string& parent, std::size_t index) {
  return parent + "[" + std::to_string(index) + "]";
}

// Azure and PowerShell read keys ignoring case ("Number" is "number"), so two keys that differ
// only in case would be one field given twice: refused, whichever the file meant.
core::Result<json> parse_json(std::string_view text) {
  auto document = strict_json::parse(text, strict_json::Keys::ignore_case);
  if (document) return std::move(*document);
  if (!document.error().duplicate) return refuse("file", "not valid JSON");
  return refuse(core::excerpt(*document.error().duplicate),
                "key given twice in one object (Azure's keys ignore case)");
}

// The member `key` of `object`, ignoring case; nullptr when absent or null (PowerShell writes
// every property, unset ones as null).
const json* find(const json& object, std::string_view key) {
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (core::equal_ignoring_case(it.key(), key)) return it->is_null() ? nullptr : &*it;
  }
  return nullptr;
}

std::string type_error(const std::string& path, const char* expected, const json& value) {
  return path + ": must be " + expected + ", not " + value.type_name();
}

bool is_known(std::string_view key, std::initializer_list<std::string_view> known) {
  return std::any_of(known.begin(), known.end(),
                     [&](std::string_view name) { return core::equal_ignoring_case(key, name); });
}

struct Rule {
  core::PortSpec port;
  bool any_source = false;
  std::vector<core::Prefix> sources;
  core::Milliseconds max_duration{0};
  std::string path;
};

// One VM of the file, and the policy holding it (nullptr for PowerShell's bare VM list).
struct Machine {
  const json* value;
  std::string path;
  const json* policy;
  std::string policy_path;
  std::string id;
  std::string name;
};

class Importer {
 public:
  core::Result<ImportedPolicy> run(std::string_view text, std::string_view vm_name) {
    auto document = parse_json(text);
    if (!document) return tl::unexpected(document.error());
    if (auto found = collect(*document); !found) return tl::unexpected(found.error());
    auto chosen = choose(vm_name);
    if (!chosen) return tl::unexpected(chosen.error());
    if (chosen->policy != nullptr) warn_about_policy(*chosen->policy, chosen->policy_path);
    auto rules = read_machine(*chosen);
    if (!rules) return tl::unexpected(rules.error());
    return ImportedPolicy{emit(*chosen, *rules), std::move(warnings_), chosen->id};
  }

 private:
  void warn(const std::string& path, const std::string& why) {
    warnings_.push_back(path + ": " + why);
  }

  // Outside port rules a field jitd does not know cannot widen access: it is named, not fatal,
  // so a newer Azure API version's additions do not stop an import.
  void warn_unknown(const json& object, const std::string& path,
                    std::initializer_list<std::string_view> known) {
    for (const auto& [key, value] : object.items()) {
      if (!is_known(key, known)) {
        warn(member_path(path, core::excerpt(key)), "unknown field, not imported");
      }
    }
  }

  // --- Finding the VMs ---------------------------------------------------------------------

  core::Result<void> collect(const json& root) {
    if (root.is_array()) return collect_machines(root, "", nullptr, "");
    if (!root.is_object()) return refuse("file", not_a_policy);
    if (const auto* list = find(root, "value")) {
      if (!list->is_array()) {
        return core::fail(ErrorCode::invalid_argument, type_error("value", "an array", *list));
      }
      for (std::size_t i = 0; i < list->size(); ++i) {
        if (auto found = collect_policy((*list)[i], item_path("value", i)); !found) return found;
      }
      return {};
    }
    if (find(root, "properties") != nullptr || find(root, "virtualMachines") != nullptr) {
      return collect_policy(root, "");
    }
    if (find(root, "ports") != nullptr) {
      machines_.push_back({&root, "", nullptr, "", {}, {}});
      return {};
    }
    return refuse("file", not_a_policy);
  }

  // The REST shape keeps the VMs under "properties"; PowerShell's object has them at the top.
  core::Result<void> collect_policy(const json& policy, const std::string& path) {
    if (!policy.is_object()) return refuse(path, type_error(path, "an object", policy));
    const json* holder = &policy;
    std::string holder_path = path;
    if (const auto* properties = find(policy, "properties")) {
      holder_path = member_path(path, "properties");
      if (!properties->is_object()) {
        return core::fail(ErrorCode::invalid_argument,
                          type_error(holder_path, "an object", *properties));
      }
      holder = properties;
    }
    const auto machines_path = member_path(holder_path, "virtualMachines");
    const auto* machines = find(*holder, "virtualMachines");
    if (machines == nullptr) return refuse(machines_path, "required");
    return collect_machines(*machines, machines_path, &policy, path);
  }

  core::Result<void> collect_machines(const json& list, const std::string& path, const json* policy,
                                      const std::string& policy_path) {
    if (!list.is_array()) {
      return core::fail(ErrorCode::invalid_argument, type_error(path, "an array", list));
    }
    for (std::size_t i = 0; i < list.size(); ++i) {
      machines_.push_back({&list[i], item_path(path, i), policy, policy_path, {}, {}});
    }
    return {};
  }

  core::Result<void> name_machine(Machine& machine) {
    const auto& path = machine.path;
    if (!machine.value->is_object()) {
      return core::fail(ErrorCode::invalid_argument,
                        type_error(path.empty() ? "file" : path, "an object", *machine.value));
    }
    const auto id_path = member_path(path, "id");
    const auto* id = find(*machine.value, "id");
    if (id == nullptr) return refuse(id_path, "required (the VM's ARM id)");
    if (!id->is_string()) {
      return core::fail(ErrorCode::invalid_argument, type_error(id_path, "a string", *id));
    }
    machine.id = id->get<std::string>();
    auto name = core::azure_vm_name(machine.id);
    if (!name) {
      return refuse(id_path, "'" + core::excerpt(machine.id, core::max_quoted_azure_id) +
                                 "' is not a virtual machine's id; expected " +
                                 std::string(core::azure_vm_id_form));
    }
    machine.name = std::move(*name);
    return {};
  }

  core::Result<Machine> choose(std::string_view vm_name) {
    if (machines_.empty()) return refuse("virtualMachines", "the file names no virtual machine");
    std::vector<std::string> names;
    for (auto& machine : machines_) {
      if (auto named = name_machine(machine); !named) return tl::unexpected(named.error());
      names.push_back(core::escaped(machine.name));
    }
    if (vm_name.empty()) {
      if (machines_.size() == 1) return machines_.front();
      return refuse("virtualMachines",
                    "the file holds " + std::to_string(machines_.size()) + " virtual machines (" +
                        core::join(names) +
                        "); a host enforces the rules of one: pick it by name (--vm NAME)");
    }
    std::vector<const Machine*> matching;
    for (const auto& machine : machines_) {
      if (core::same_vm_name(machine.name, vm_name)) matching.push_back(&machine);
    }
    if (matching.empty()) {
      return refuse("virtualMachines", "no virtual machine named '" + core::excerpt(vm_name) +
                                           "'; the file holds: " + core::join(names));
    }
    if (matching.size() > 1) {
      std::vector<std::string> ids;
      for (const auto* machine : matching) ids.push_back(core::escaped(machine->id));
      return refuse("virtualMachines", std::to_string(matching.size()) +
                                           " virtual machines are named '" +
                                           core::excerpt(vm_name) + "': " + core::join(ids));
    }
    return *matching.front();
  }

  void warn_about_policy(const json& policy, const std::string& path) {
    warn_unknown(
        policy, path,
        {"id", "name", "type", "kind", "location", "etag", "tags", "systemData",
         "resourceGroupName", "properties", "virtualMachines", "requests", "provisioningState"});
    const json* holder = &policy;
    std::string holder_path = path;
    if (const auto* properties = find(policy, "properties")) {
      holder = properties;
      holder_path = member_path(path, "properties");
      warn_unknown(*properties, holder_path, {"virtualMachines", "requests", "provisioningState"});
    }
    const auto* requests = find(*holder, "requests");
    if (requests != nullptr && requests->is_array() && !requests->empty()) {
      warn(member_path(holder_path, "requests"),
           std::to_string(requests->size()) +
               " not imported: Azure's past and live grants are history, not policy");
    }
  }

  // --- Reading the rules -------------------------------------------------------------------

  core::Result<std::vector<Rule>> read_machine(const Machine& machine) {
    const auto& path = machine.path;
    warn_unknown(*machine.value, path, {"id", "ports", "publicIpAddress"});
    if (find(*machine.value, "publicIpAddress") != nullptr) {
      warn(member_path(path, "publicIpAddress"),
           "the Azure Firewall in front of this VM is not imported: jitd guards the host's own "
           "ports; the firewall's rules stay in Azure");
    }
    const auto ports_path = member_path(path, "ports");
    const auto* ports = find(*machine.value, "ports");
    if (ports == nullptr) return refuse(ports_path, "required");
    if (!ports->is_array()) {
      return core::fail(ErrorCode::invalid_argument, type_error(ports_path, "an array", *ports));
    }
    if (ports->empty()) warn(ports_path, "empty: the imported policy protects nothing");
    std::vector<Rule> rules;
    for (std::size_t i = 0; i < ports->size(); ++i) {
      auto rule = read_rule((*ports)[i], item_path(ports_path, i));
      if (!rule) return tl::unexpected(rule.error());
      // jitd protects each (port, protocol) with one rule: 22/tcp and 22/* would overlap.
      for (const auto& earlier : rules) {
        if (earlier.port.number == rule->port.number &&
            (core::covers(earlier.port.protocol, rule->port.protocol) ||
             core::covers(rule->port.protocol, earlier.port.protocol))) {
          return refuse(rule->path, core::to_string(rule->port) + " overlaps " +
                                        core::to_string(earlier.port) + " at " + earlier.path +
                                        "; jitd protects each port and protocol with one rule");
        }
      }
      rules.push_back(std::move(*rule));
    }
    return rules;
  }

  // A field of a port rule decides who gets in: one jitd does not know is an error, for
  // leaving it out might let in more than Azure did.
  core::Result<Rule> read_rule(const json& entry, const std::string& path) {
    if (!entry.is_object()) {
      return core::fail(ErrorCode::invalid_argument, type_error(path, "an object", entry));
    }
    for (const auto& [key, value] : entry.items()) {
      if (!is_known(key, {"number", "protocol", "allowedSourceAddressPrefix",
                          "allowedSourceAddressPrefixes", "maxRequestAccessDuration", "mappedPort",
                          "toPort"})) {
        return refuse(member_path(path, core::excerpt(key)),
                      "unknown field of a port rule; expected number, protocol, "
                      "allowedSourceAddressPrefix(es), maxRequestAccessDuration");
      }
    }
    for (const auto* forwarding : {"mappedPort", "toPort"}) {
      if (find(entry, forwarding) != nullptr) {
        warn(member_path(path, forwarding),
             "port forwarding happens in Azure Firewall, not on the host; the rule protects "
             "the host's own port");
      }
    }
    Rule rule;
    rule.path = path;
    auto number = read_number(entry, path);
    if (!number) return tl::unexpected(number.error());
    auto protocol = read_protocol(entry, path);
    if (!protocol) return tl::unexpected(protocol.error());
    rule.port = {*number, *protocol};
    if (auto sources = read_sources(entry, path, rule); !sources) {
      return tl::unexpected(sources.error());
    }
    auto duration = read_duration(entry, path);
    if (!duration) return tl::unexpected(duration.error());
    rule.max_duration = *duration;
    return rule;
  }

  static core::Result<std::uint16_t> read_number(const json& entry, const std::string& path) {
    const auto at = member_path(path, "number");
    const auto* number = find(entry, "number");
    if (number == nullptr) return refuse(at, "required");
    if (!number->is_number_integer()) {
      return core::fail(ErrorCode::invalid_argument, type_error(at, "an integer", *number));
    }
    const auto value = number->get<std::int64_t>();
    if (value < 1 || value > 65535) {
      return refuse(at, std::to_string(value) + " is not a port (1-65535)");
    }
    return static_cast<std::uint16_t>(value);
  }

  static core::Result<core::ProtocolSpec> read_protocol(const json& entry,
                                                        const std::string& path) {
    const auto at = member_path(path, "protocol");
    const auto* protocol = find(entry, "protocol");
    if (protocol == nullptr) return refuse(at, "required (TCP, UDP or *)");
    if (!protocol->is_string()) {
      return core::fail(ErrorCode::invalid_argument, type_error(at, "a string", *protocol));
    }
    const auto text = protocol->get<std::string>();
    for (const auto spec :
         {core::ProtocolSpec::tcp, core::ProtocolSpec::udp, core::ProtocolSpec::any}) {
      if (core::equal_ignoring_case(text, core::to_string(spec))) return spec;
    }
    return refuse(at, "'" + core::excerpt(text) +
                          "' is not a protocol jitd protects; expected TCP, UDP or *");
  }

  // allowedSourceAddressPrefix is a string in the REST API and a list in PowerShell's
  // hashtables; allowedSourceAddressPrefixes is a list in both.
  core::Result<void> read_sources(const json& entry, const std::string& path, Rule& rule) {
    std::vector<std::pair<const json*, std::string>> items;
    std::string given;  // the path of the key the prefixes came from
    const auto add = [&](const char* key) -> core::Result<bool> {
      const auto at = member_path(path, key);
      const auto* value = find(entry, key);
      if (value == nullptr) return false;
      if (!value->empty()) given = at;
      if (value->is_string()) {
        items.emplace_back(value, at);
      } else if (value->is_array()) {
        for (std::size_t i = 0; i < value->size(); ++i) {
          items.emplace_back(&(*value)[i], item_path(at, i));
        }
      } else {
        return core::fail(ErrorCode::invalid_argument,
                          type_error(at, "a string or an array of strings", *value));
      }
      return !value->empty();
    };
    const auto single = add("allowedSourceAddressPrefix");
    if (!single) return tl::unexpected(single.error());
    const auto several = add("allowedSourceAddressPrefixes");
    if (!several) return tl::unexpected(several.error());
    if (*single && *several) {
      return refuse(member_path(path, "allowedSourceAddressPrefixes"),
                    "give one of allowedSourceAddressPrefix and allowedSourceAddressPrefixes");
    }
    if (items.empty()) {
      return refuse(member_path(path, "allowedSourceAddressPrefix"),
                    "required: the sources that may request access ('*' for any address)");
    }
    for (const auto& [item, at] : items) {
      if (!item->is_string()) {
        return core::fail(ErrorCode::invalid_argument, type_error(at, "a string", *item));
      }
      const auto text = item->get<std::string>();
      if (text == "*") {
        rule.any_source = true;
        continue;
      }
      auto prefix = core::Prefix::parse(text);
      if (!prefix) {
        // Service tags (Internet, VirtualNetwork, AzureCloud.WestEurope) are Azure's address
        // sets; a host cannot know which addresses they stand for.
        const bool tag = !text.empty() && std::isalpha(static_cast<unsigned char>(text[0])) &&
                         text.find(':') == std::string::npos;
        return refuse(at, core::excerpt(prefix.error().message, max_quoted_message) +
                              (tag ? "; Azure service tags have no meaning on a host: name "
                                     "the addresses"
                                   : ""));
      }
      rule.sources.push_back(*prefix);
    }
    if (rule.any_source && items.size() > 1) {
      warn(given, "'*' already allows every address; the other prefixes are left out");
      rule.sources.clear();
    }
    return {};
  }

  static core::Result<core::Milliseconds> read_duration(const json& entry,
                                                        const std::string& path) {
    const auto at = member_path(path, "maxRequestAccessDuration");
    const auto* duration = find(entry, "maxRequestAccessDuration");
    if (duration == nullptr) return refuse(at, "required (an ISO 8601 duration like PT3H)");
    if (!duration->is_string()) {
      return core::fail(ErrorCode::invalid_argument, type_error(at, "a string", *duration));
    }
    const auto text = duration->get<std::string>();
    auto parsed = core::parse_duration(text);
    if (!parsed) return refuse(at, core::excerpt(parsed.error().message, max_quoted_message));
    if (*parsed > core::max_policy_duration) {
      return refuse(at, "'" + core::excerpt(text) + "' is longer than " +
                            core::format_duration(core::max_policy_duration) +
                            ", the longest access jitd grants");
    }
    return *parsed;
  }

  // --- Writing the policy file -------------------------------------------------------------

  // Every value written is one jitd produced (numbers, protocol words, canonical prefixes and
  // durations); text from the file appears only in comments, escaped onto one line.
  std::string emit(const Machine& machine, const std::vector<Rule>& rules) const {
    std::string yaml =
        "# Imported by jitctl import-azure from Azure's just-in-time policy for\n#   " +
        core::escaped(machine.id) + "\n";
    if (!warnings_.empty()) {
      yaml += "# Not imported:\n";
      for (const auto& warning : warnings_) yaml += "#   " + core::escaped(warning) + "\n";
    }
    if (rules.empty()) return yaml + "ports: []\n";
    yaml += "ports:\n";
    for (const auto& rule : rules) {
      yaml += "  - number: " + std::to_string(rule.port.number) + "\n";
      yaml += "    protocol: " + quoted(core::to_string(rule.port.protocol)) + "\n";
      if (rule.any_source || rule.sources.size() == 1) {
        yaml += "    allowedSourceAddressPrefix: " +
                quoted(rule.any_source ? "*" : rule.sources.front().to_string()) + "\n";
      } else {
        std::vector<std::string> prefixes;
        for (const auto& prefix : rule.sources) prefixes.push_back(quoted(prefix.to_string()));
        yaml += "    allowedSourceAddressPrefixes: [" + core::join(prefixes) + "]\n";
      }
      yaml += "    maxRequestAccessDuration: " + core::format_duration(rule.max_duration) + "\n";
    }
    return yaml;
  }

  // Quoted where YAML needs it: "*" alone is an alias; prefixes are quoted for a uniform look.
  static std::string quoted(std::string_view text) {
    return text == "tcp" || text == "udp" ? std::string(text) : "\"" + std::string(text) + "\"";
  }

  static constexpr const char* not_a_policy =
      "not an Azure just-in-time policy; expected a policy ({\"properties\": "
      "{\"virtualMachines\": [...]}}), a list of them ({\"value\": [...]}) or PowerShell's "
      "virtual machines ([{\"id\": ..., \"ports\": [...]}])";

  std::vector<Machine> machines_;
  std::vector<std::string> warnings_;
};

}  // namespace

core::Result<ImportedPolicy> import_azure_policy(std::string_view json, std::string_view vm_name) {
  return Importer().run(json, vm_name);
}

}  // namespace jitd::config
