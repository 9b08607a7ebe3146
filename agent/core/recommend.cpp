#include "jitd/core/recommend.hpp"

#include <algorithm>
#include <map>

namespace jitd::core {
namespace {

constexpr AddressValue v4_mapped_tag = 0xffff;  // the 16 bits above an embedded IPv4 address
constexpr AddressValue ipv6_loopback = 1;

// The address a peer reaches: a v4-mapped bind on an IPv6 socket takes IPv4 only.
std::pair<Family, AddressValue> reached_address(const Listener& listener) {
  if (listener.family == Family::ipv6 && (listener.address >> 32) == v4_mapped_tag) {
    return {Family::ipv4, listener.address & 0xffffffffU};
  }
  return {listener.family, listener.address};
}

void sort_unique(std::vector<std::string>& texts) {
  std::sort(texts.begin(), texts.end());
  texts.erase(std::unique(texts.begin(), texts.end()), texts.end());
}

// One rule as the packaged example (packaging/policies.d/10-management.yaml) writes it.
std::string rule_text(const PortKey& port, std::string_view service) {
  return "  - number: " + std::to_string(port.port) + "  # " + std::string(service) +
         "\n    protocol: " + std::string(to_string(port.protocol)) +
         "\n    allowedSourceAddressPrefixes: [\"*\"]"
         "\n    maxRequestAccessDuration: PT3H"
         "\n    minRequestPrefixLengthV4: 24"
         "\n    minRequestPrefixLengthV6: 56\n";
}

std::string snippet_for(const std::vector<UnprotectedService>& unprotected) {
  if (unprotected.empty()) return {};
  std::string text =
      "# Management services that listen beyond loopback and no rule protects (jitctl "
      "recommend).\n"
      "# Check with `jitd --validate --policy FILE`, then move it into the policy directory.\n"
      "ports:\n";
  for (const auto& service : unprotected) text += rule_text(service.port, service.service);
  return text;
}

}  // namespace

const std::vector<ManagementService>& management_services() {
  // Remote shells and desktops, databases and caches, container and cluster control planes,
  // admin web UIs, and UDP management protocols: services that give control of the host or its
  // data and are commonly probed from the internet. Sorted by (protocol, port).
  static const std::vector<ManagementService> services = [] {
    std::vector<ManagementService> list{
        {{Protocol::tcp, 22}, "ssh"},
        {{Protocol::tcp, 23}, "telnet"},
        {{Protocol::tcp, 1433}, "mssql"},
        {{Protocol::tcp, 1521}, "oracle"},
        {{Protocol::tcp, 2375}, "docker"},
        {{Protocol::tcp, 2376}, "docker-tls"},
        {{Protocol::tcp, 2379}, "etcd"},
        {{Protocol::tcp, 2380}, "etcd-peer"},
        {{Protocol::tcp, 3306}, "mysql"},
        {{Protocol::tcp, 3389}, "rdp"},
        {{Protocol::tcp, 5432}, "postgresql"},
        {{Protocol::tcp, 5900}, "vnc"},
        {{Protocol::tcp, 5901}, "vnc"},
        {{Protocol::tcp, 5984}, "couchdb"},
        {{Protocol::tcp, 5985}, "winrm"},
        {{Protocol::tcp, 5986}, "winrm-https"},
        {{Protocol::tcp, 6379}, "redis"},
        {{Protocol::tcp, 6443}, "kubernetes-api"},
        {{Protocol::tcp, 9042}, "cassandra"},
        {{Protocol::tcp, 9090}, "cockpit"},
        {{Protocol::tcp, 9200}, "elasticsearch"},
        {{Protocol::tcp, 10000}, "webmin"},
        {{Protocol::tcp, 10250}, "kubelet"},
        {{Protocol::tcp, 11211}, "memcached"},
        {{Protocol::tcp, 15672}, "rabbitmq-management"},
        {{Protocol::tcp, 27017}, "mongodb"},
        {{Protocol::udp, 161}, "snmp"},
        {{Protocol::udp, 623}, "ipmi"},
        {{Protocol::udp, 3389}, "rdp"},
        {{Protocol::udp, 11211}, "memcached"},
    };
    std::sort(list.begin(), list.end(),
              [](const auto& a, const auto& b) { return a.port < b.port; });
    return list;
  }();
  return services;
}

std::string_view management_service(const PortKey& port) {
  const auto& services = management_services();
  const auto found = std::lower_bound(
      services.begin(), services.end(), port,
      [](const ManagementService& service, const PortKey& key) { return service.port < key; });
  return found != services.end() && found->port == port ? found->name : std::string_view();
}

std::string listener_address(const Listener& listener) {
  const auto [family, address] = reached_address(listener);
  if (family == Family::ipv6 && address == 0 && !listener.v6_only) return "*";
  return address_to_string(family, address);
}

bool loopback_only(const Listener& listener) {
  const auto [family, address] = reached_address(listener);
  return family == Family::ipv4 ? (address >> 24) == 127 : address == ipv6_loopback;
}

Recommendations recommend(const Policy& policy, const std::vector<Listener>& listeners) {
  std::map<PortKey, std::vector<const Listener*>> by_port;
  for (const auto& listener : listeners) {
    by_port[{listener.protocol, listener.port}].push_back(&listener);
  }
  const auto beyond_loopback = [](const std::vector<const Listener*>& on_port) {
    return std::any_of(on_port.begin(), on_port.end(),
                       [](const Listener* listener) { return !loopback_only(*listener); });
  };

  Recommendations result;
  for (const auto& [port, on_port] : by_port) {
    const auto service = management_service(port);
    if (service.empty() || policy.find_rule(port.port, port.protocol) != nullptr ||
        !beyond_loopback(on_port)) {
      continue;
    }
    UnprotectedService found{port, std::string(service), {}};
    for (const Listener* listener : on_port) found.addresses.push_back(listener_address(*listener));
    sort_unique(found.addresses);
    result.unprotected.push_back(std::move(found));
  }

  for (const auto& rule : policy.rules) {
    std::vector<const Listener*> on_rule;
    std::string service;
    for (const auto protocol : expand(rule.port.protocol)) {
      const PortKey key{protocol, rule.port.number};
      if (service.empty()) service = management_service(key);
      if (const auto found = by_port.find(key); found != by_port.end()) {
        on_rule.insert(on_rule.end(), found->second.begin(), found->second.end());
      }
    }
    if (beyond_loopback(on_rule)) continue;
    UnusedRule unused{rule.port, std::move(service), rule.origin, {}};
    for (const Listener* listener : on_rule)
      unused.addresses.push_back(listener_address(*listener));
    sort_unique(unused.addresses);
    result.unused_protected.push_back(std::move(unused));
  }

  result.snippet = snippet_for(result.unprotected);
  return result;
}

}  // namespace jitd::core
