#pragma once
// The effective policy: which (protocol, port) pairs are protected, who may ever be
// granted, for how long, and which sources always pass (the permanent allow-list).
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/duration.hpp"
#include "jitd/core/error.hpp"
#include "jitd/core/prefix.hpp"
#include "jitd/core/roles.hpp"

namespace jitd::core {

// Kernel protocol numbers, so the value goes to nftables as is.
enum class Protocol : std::uint8_t { tcp = 6, udp = 17 };

// What a policy rule or a request names: one protocol or both ("*").
enum class ProtocolSpec : std::uint8_t { tcp, udp, any };

[[nodiscard]] std::string_view to_string(Protocol protocol);
[[nodiscard]] std::string_view to_string(ProtocolSpec spec);
[[nodiscard]] Result<ProtocolSpec> parse_protocol(std::string_view text);
[[nodiscard]] std::vector<Protocol> expand(ProtocolSpec spec);
[[nodiscard]] bool covers(ProtocolSpec outer, ProtocolSpec inner);

// One (protocol, port) pair as the kernel matches it.
struct PortKey {
  Protocol protocol = Protocol::tcp;
  std::uint16_t port = 0;
  auto operator<=>(const PortKey&) const = default;
};

// A port as policies and requests name it.
struct PortSpec {
  std::uint16_t number = 0;
  ProtocolSpec protocol = ProtocolSpec::tcp;
  auto operator<=>(const PortSpec&) const = default;
};

[[nodiscard]] std::string to_string(const PortSpec& port);  // "22/tcp", "53/*"

// Where a policy item came from, for file:line:col messages.
struct SourceLocation {
  std::string file;
  int line = 0;    // 1-based, 0 when unknown
  int column = 0;  // 1-based
  [[nodiscard]] std::string to_string() const;
};

// What a protected port does with what neither a grant nor the allow-list admits: `enforce`
// drops it; `audit` (a rollout without lock-out) accepts it, counting it and remembering its
// source, so an admin sees who enforcing would lock out before it does.
enum class Mode : std::uint8_t { enforce, audit };

[[nodiscard]] std::string_view to_string(Mode mode);

struct PortRule {
  PortSpec port;
  bool any_source = false;              // "*": every address, v4 and v6
  std::vector<Prefix> allowed_sources;  // when !any_source
  Milliseconds max_duration{0};
  // The shortest prefix one request may name, per family (24: at most 256 addresses). 0 is no
  // limit, as in Azure, where a "*" rule may be requested as "Any". "*" must not mean that
  // one careless request opens the port to the whole internet.
  unsigned min_request_length_v4 = 0;
  unsigned min_request_length_v6 = 0;
  std::optional<Principals> requesters;  // narrows who may request this port
  // When a grant on this port ends, its established sessions end too (conntrack entries
  // deleted, local sockets destroyed). By default they outlive the grant, as in Azure.
  bool terminate_sessions_on_end = false;
  // Requests wait for one of the approvers (approval: required); the requester never counts.
  bool approval_required = false;
  Principals approvers;
  Milliseconds approval_timeout{std::chrono::hours(1)};  // a request nobody decides expires
  // Where an extension's maximum counts from. The grant's start by default: extending never
  // yields a grant longer than one request could have asked for. `now` lets a session be
  // kept open by repeated extensions, each bounded, each audited.
  enum class ExtendFrom : std::uint8_t { start, now } extend_from = ExtendFrom::start;
  // The rule's own `mode:`; without one, the policy's default_mode.
  std::optional<Mode> mode;
  SourceLocation origin;

  [[nodiscard]] unsigned min_request_length(Family family) const;
  // Inside the allowed sources, whatever its width.
  [[nodiscard]] bool covers_source(const Prefix& source) const;
  // What one grant may name: covered, and no wider than the limit of its family.
  [[nodiscard]] bool allows_source(const Prefix& source) const;
};

struct PermanentAllow {
  std::vector<Prefix> sources;
  std::vector<PortSpec> ports;  // empty: every protected port
  std::string description;
  SourceLocation origin;
};

struct Policy {
  std::vector<PortRule> rules;
  std::vector<PermanentAllow> permanent_allow;
  Roles roles;
  // A policy file's top-level `mode:`, for every rule (of every file) that sets none; where
  // it was set (line 0: nowhere), so a second file setting another value can be refused.
  Mode default_mode = Mode::enforce;
  SourceLocation default_mode_origin;

  // The rule that protects this (port, protocol) pair, if any.
  [[nodiscard]] const PortRule* find_rule(std::uint16_t port, Protocol protocol) const;
  // Every protected (protocol, port), sorted, without duplicates.
  [[nodiscard]] std::vector<PortKey> protected_ports() const;
  [[nodiscard]] Mode mode_of(const PortRule& rule) const;
  // Of protected_ports(), those in `mode: audit`, sorted.
  [[nodiscard]] std::vector<PortKey> audited_ports() const;
};

// The longest grant jitd accepts at all, whatever a policy says (Azure's limit too).
inline constexpr Milliseconds max_policy_duration = std::chrono::hours(24);

}  // namespace jitd::core
