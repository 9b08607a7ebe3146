#pragma once
// Other firewalls on the hooks jitd shares. jitd's accept for a granted client is final only in
// its own table: a drop or reject in any other base chain on a hook that sees traffic to the host
// still blocks the client. And an accept elsewhere no longer admits anyone to a protected port,
// because jitd's drop wins. inspect_firewall reads the whole ruleset over netlink and names both.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/error.hpp"
#include "jitd/core/policy.hpp"

namespace jitd::nft {

// The table name jitd uses unless its configuration names another (nftTable).
inline constexpr std::string_view default_table = "jitd";

struct FirewallConflict {
  enum class Kind {
    drops,    // may drop or reject traffic jitd grants
    accepts,  // admits clients to a protected port, which jitd's drop now refuses
  };
  Kind kind = Kind::drops;
  // Proven from the rule's expressions; false when some match could not be judged (the rule
  // says what) or the rule is only reached through a jump.
  bool certain = false;
  std::string family;  // "ip", "ip6", "inet", "netdev"
  std::string table;
  std::string chain;         // where the rule is: a regular chain when reached through a jump
  std::string hook;          // of the base chain: "prerouting", "input", "ingress"
  int priority = 0;          // of the base chain
  std::uint64_t handle = 0;  // the rule's handle; 0 for a chain's policy
  std::vector<core::PortKey> ports;  // the protected ports affected, sorted
  std::string rule;                  // e.g. "tcp dport 22 drop", "policy drop"
  std::string advice;                // what to do about it
};

struct FirewallReport {
  std::vector<FirewallConflict> conflicts;
  // Tables of the legacy (non-nftables) iptables in this network namespace, e.g.
  // "iptables filter": their rules are invisible over nftables netlink.
  std::vector<std::string> legacy_iptables_tables;
  std::vector<std::string> notes;
};

// Reads every table, chain, rule and the sets they look up in, in the caller's network
// namespace, skipping jitd's own tables (inet <own_table> and inet jitd_conntrack).
[[nodiscard]] core::Result<FirewallReport> inspect_firewall(
    const std::vector<core::PortKey>& protected_ports, std::string_view own_table = default_table);

}  // namespace jitd::nft
