#include "jitd/core/policy.hpp"

#include <algorithm>

namespace jitd::core {

std::string_view to_string(Protocol protocol) { return protocol == Protocol::tcp ? "tcp" : "udp"; }

std::string_view to_string(ProtocolSpec spec) {
  switch (spec) {
    case ProtocolSpec::tcp: return "tcp";
    case ProtocolSpec::udp: return "udp";
    case ProtocolSpec::any: return "*";
  }
  return "?";
}

Result<ProtocolSpec> parse_protocol(std::string_view text) {
  if (text == "tcp" || text == "TCP") return ProtocolSpec::tcp;
  if (text == "udp" || text == "UDP") return ProtocolSpec::udp;
  if (text == "*") return ProtocolSpec::any;
  return fail(ErrorCode::invalid_argument,
              "'" + std::string(text) + "' is not a protocol; expected tcp, udp or *");
}

std::vector<Protocol> expand(ProtocolSpec spec) {
  switch (spec) {
    case ProtocolSpec::tcp: return {Protocol::tcp};
    case ProtocolSpec::udp: return {Protocol::udp};
    case ProtocolSpec::any: return {Protocol::tcp, Protocol::udp};
  }
  return {};
}

bool covers(ProtocolSpec outer, ProtocolSpec inner) {
  return outer == ProtocolSpec::any || outer == inner;
}

std::string to_string(const PortSpec& port) {
  return std::to_string(port.number) + "/" + std::string(to_string(port.protocol));
}

std::string SourceLocation::to_string() const {
  if (line == 0) return file;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

unsigned PortRule::min_request_length(Family family) const {
  return family == Family::ipv4 ? min_request_length_v4 : min_request_length_v6;
}

bool PortRule::covers_source(const Prefix& source) const {
  return any_source || std::any_of(allowed_sources.begin(), allowed_sources.end(),
                                   [&](const Prefix& allowed) { return allowed.contains(source); });
}

bool PortRule::allows_source(const Prefix& source) const {
  return covers_source(source) && source.length() >= min_request_length(source.family());
}

const PortRule* Policy::find_rule(std::uint16_t port, Protocol protocol) const {
  const auto spec = protocol == Protocol::tcp ? ProtocolSpec::tcp : ProtocolSpec::udp;
  for (const auto& rule : rules) {
    if (rule.port.number == port && covers(rule.port.protocol, spec)) return &rule;
  }
  return nullptr;
}

namespace {

template <class Keep>
std::vector<PortKey> ports_of(const std::vector<PortRule>& rules, Keep keep) {
  std::vector<PortKey> keys;
  for (const auto& rule : rules) {
    if (!keep(rule)) continue;
    for (const auto protocol : expand(rule.port.protocol))
      keys.push_back({protocol, rule.port.number});
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

}  // namespace

std::vector<PortKey> Policy::protected_ports() const {
  return ports_of(rules, [](const PortRule&) { return true; });
}

Mode Policy::mode_of(const PortRule& rule) const { return rule.mode.value_or(default_mode); }

std::vector<PortKey> Policy::audited_ports() const {
  return ports_of(rules, [this](const PortRule& rule) { return mode_of(rule) == Mode::audit; });
}

std::string_view to_string(Mode mode) { return mode == Mode::audit ? "audit" : "enforce"; }

}  // namespace jitd::core
