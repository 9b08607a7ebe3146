#include "jitd/daemon/firewall_advice.hpp"

#include <algorithm>

#include "jitd/core/text.hpp"

namespace jitd::daemon {

using nlohmann::json;

namespace {

std::string_view kind_name(nft::FirewallConflict::Kind kind) {
  return kind == nft::FirewallConflict::Kind::drops ? "drops" : "accepts";
}

json ports_json(const std::vector<core::PortKey>& ports) {
  json list = json::array();
  for (const auto& port : ports) {
    list.push_back({{"number", port.port}, {"protocol", core::to_string(port.protocol)}});
  }
  return list;
}

bool affects(const nft::FirewallConflict& conflict, const std::vector<core::PortSpec>& ports) {
  return std::any_of(ports.begin(), ports.end(), [&](const core::PortSpec& spec) {
    const auto protocols = core::expand(spec.protocol);
    return std::any_of(conflict.ports.begin(), conflict.ports.end(), [&](const core::PortKey& key) {
      return key.port == spec.number &&
             std::find(protocols.begin(), protocols.end(), key.protocol) != protocols.end();
    });
  });
}

}  // namespace

json doctor_json(const nft::FirewallReport& report) {
  json conflicts = json::array();
  for (const auto& conflict : report.conflicts) {
    json entry{{"kind", kind_name(conflict.kind)},
               {"certain", conflict.certain},
               {"family", conflict.family},
               {"table", conflict.table},
               {"chain", conflict.chain},
               {"handle", conflict.handle},
               {"ports", ports_json(conflict.ports)},
               {"rule", conflict.rule},
               {"advice", conflict.advice}};
    // A rule in a regular chain (reached through a jump) has no hook or priority of its own.
    if (!conflict.hook.empty()) {
      entry["hook"] = conflict.hook;
      entry["priority"] = conflict.priority;
    }
    conflicts.push_back(std::move(entry));
  }
  return {{"conflicts", std::move(conflicts)},
          {"legacyIptablesTables", report.legacy_iptables_tables},
          {"notes", report.notes}};
}

core::Result<nft::FirewallReport> FirewallAdvice::inspect(
    const std::vector<core::PortKey>& protected_ports) {
  last_ = nft::inspect_firewall(protected_ports, own_table_);
  read_at_ = clock_.boot_now();
  return *last_;
}

std::vector<std::string> FirewallAdvice::warnings(const std::vector<core::PortKey>& protected_ports,
                                                  const std::vector<core::PortSpec>& ports) {
  if (!last_ || clock_.boot_now() - read_at_ >= max_age_) (void)inspect(protected_ports);
  if (!*last_) {
    return {"could not check other firewalls' rules for this port (" + last_->error().message +
            "); run `jitctl doctor`"};
  }
  std::vector<std::string> lines;
  for (const auto& conflict : (*last_)->conflicts) {
    if (conflict.kind != nft::FirewallConflict::Kind::drops || !affects(conflict, ports)) continue;
    lines.push_back(std::string(conflict.certain ? "a rule drops" : "a rule may drop") +
                    " this port before or after jitd admits it: family " + conflict.family +
                    ", table " + conflict.table + ", chain " + conflict.chain + ": " +
                    conflict.rule + "; " + conflict.advice);
  }
  if (!(*last_)->legacy_iptables_tables.empty() && !ports.empty()) {
    lines.push_back("legacy iptables tables are loaded (" +
                    core::join((*last_)->legacy_iptables_tables) +
                    "): jitd cannot see whether they drop this port; run `jitctl doctor`");
  }
  return lines;
}

}  // namespace jitd::daemon
