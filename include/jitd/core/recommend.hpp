#pragma once
// Recommendations for one host (Azure's "Recommended" tab): management services that listen
// beyond loopback and no rule protects, and rules that protect a port nothing listens on.
// Pure logic over a list of listening sockets; the daemon reads them with sock_diag.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/policy.hpp"
#include "jitd/core/prefix.hpp"

namespace jitd::core {

// A socket that waits for peers: a TCP socket in LISTEN, or a bound, unconnected UDP socket.
struct Listener {
  Protocol protocol = Protocol::tcp;
  std::uint16_t port = 0;
  Family family = Family::ipv4;  // the socket's own; an IPv6 socket may be bound v4-mapped
  AddressValue address = 0;      // the bound address, 0 for the wildcard
  bool v6_only = false;          // IPv6 sockets: IPV6_V6ONLY; off, `::` takes IPv4 too
  auto operator<=>(const Listener&) const = default;
};

// A port that looks like a management service.
struct ManagementService {
  PortKey port;
  std::string_view name;
};

// The documented list (docs/operations.md, "Recommendations"), sorted by protocol and port.
[[nodiscard]] const std::vector<ManagementService>& management_services();
// The service's name when `port` is in the list, else empty.
[[nodiscard]] std::string_view management_service(const PortKey& port);

// The bound address as `ss` shows it: "0.0.0.0", "127.0.0.1", "::", "::1"; a v4-mapped one as
// IPv4; a dual-stack wildcard (`::` without IPV6_V6ONLY) as "*".
[[nodiscard]] std::string listener_address(const Listener& listener);
// Bound to loopback only (127.0.0.0/8, ::1, or v4-mapped loopback): nobody else can reach it.
[[nodiscard]] bool loopback_only(const Listener& listener);

// A management service reachable beyond loopback that no rule protects.
struct UnprotectedService {
  PortKey port;
  std::string service;
  std::vector<std::string> addresses;  // every address it listens on, sorted
};

// A rule under which no port listens beyond loopback: maybe a stale rule.
struct UnusedRule {
  PortSpec port;
  std::string service;                 // the list's name for it, if any
  SourceLocation origin;               // where the rule is
  std::vector<std::string> addresses;  // the loopback addresses it listens on; empty: none
};

struct Recommendations {
  std::vector<UnprotectedService> unprotected;  // sorted by protocol and port
  std::vector<UnusedRule> unused_protected;     // in the policy's order
  // A policy file protecting every unprotected service (empty when there is none), in the
  // packaged example's terms: any source may ask, one request opens at most a /24 or a /56.
  std::string snippet;
};

[[nodiscard]] Recommendations recommend(const Policy& policy,
                                        const std::vector<Listener>& listeners);

}  // namespace jitd::core
