// Recommendations from fake listener lists: which listeners are management services reachable
// beyond loopback and unprotected, which rules nothing listens under, and the snippet's text.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "jitd/config/config.hpp"
#include "jitd/core/recommend.hpp"

namespace jitd::core {
namespace {

using namespace std::chrono_literals;

constexpr AddressValue v4_mapped = AddressValue{0xffff} << 32;

Listener tcp4(std::uint16_t port, std::uint32_t address = 0) {
  return {Protocol::tcp, port, Family::ipv4, address, false};
}
Listener tcp6(std::uint16_t port, AddressValue address = 0, bool v6_only = true) {
  return {Protocol::tcp, port, Family::ipv6, address, v6_only};
}
Listener udp4(std::uint16_t port, std::uint32_t address = 0) {
  return {Protocol::udp, port, Family::ipv4, address, false};
}

constexpr std::uint32_t localhost = 0x7f000001;       // 127.0.0.1
constexpr std::uint32_t other_loopback = 0x7f000035;  // 127.0.0.53
constexpr std::uint32_t lan = 0x0a000005;             // 10.0.0.5

PortRule rule(std::uint16_t port, ProtocolSpec protocol, int line = 0) {
  PortRule r;
  r.port = {port, protocol};
  r.any_source = true;
  r.max_duration = 3h;
  r.origin = {"/etc/jitd/policies.d/10-management.yaml", line, 5};
  return r;
}

Policy ssh_only() {
  Policy policy;
  policy.rules = {rule(22, ProtocolSpec::tcp, 3)};
  return policy;
}

std::vector<PortKey> ports_of(const std::vector<UnprotectedService>& services) {
  std::vector<PortKey> ports;
  for (const auto& service : services) ports.push_back(service.port);
  return ports;
}

TEST(CoreRecommend, TheListIsSortedWithoutDuplicatesAndNamesEveryService) {
  const auto& services = management_services();
  ASSERT_FALSE(services.empty());
  for (std::size_t i = 1; i < services.size(); ++i) {
    EXPECT_LT(services[i - 1].port, services[i].port) << services[i].name;
  }
  for (const auto& service : services) EXPECT_FALSE(service.name.empty());
  EXPECT_EQ(management_service({Protocol::tcp, 5432}), "postgresql");
  EXPECT_EQ(management_service({Protocol::udp, 161}), "snmp");
  EXPECT_EQ(management_service({Protocol::tcp, 161}), "");  // snmp is udp
  EXPECT_EQ(management_service({Protocol::tcp, 8081}), "");
}

TEST(CoreRecommend, AddressesAsSsShowsThem) {
  EXPECT_EQ(listener_address(tcp4(22)), "0.0.0.0");
  EXPECT_EQ(listener_address(tcp4(22, localhost)), "127.0.0.1");
  EXPECT_EQ(listener_address(tcp6(22)), "::");
  EXPECT_EQ(listener_address(tcp6(22, 0, false)), "*");  // dual-stack: IPv4 too
  EXPECT_EQ(listener_address(tcp6(22, 1)), "::1");
  EXPECT_EQ(listener_address(tcp6(22, v4_mapped | localhost, false)), "127.0.0.1");
  EXPECT_EQ(listener_address(tcp6(22, v4_mapped, false)), "0.0.0.0");
}

TEST(CoreRecommend, LoopbackIsAll127AndIpv6LoopbackAndTheirMappedForms) {
  EXPECT_TRUE(loopback_only(tcp4(22, localhost)));
  EXPECT_TRUE(loopback_only(tcp4(22, other_loopback)));
  EXPECT_TRUE(loopback_only(tcp6(22, 1)));
  EXPECT_TRUE(loopback_only(tcp6(22, v4_mapped | localhost, false)));
  EXPECT_FALSE(loopback_only(tcp4(22)));
  EXPECT_FALSE(loopback_only(tcp4(22, lan)));
  EXPECT_FALSE(loopback_only(tcp6(22)));
  EXPECT_FALSE(loopback_only(tcp6(22, 0, false)));
  EXPECT_FALSE(loopback_only(tcp6(22, v4_mapped)));              // ::ffff:0.0.0.0
  EXPECT_FALSE(loopback_only(tcp6(22, AddressValue{1} << 64)));  // ::1:0:0:0, not ::1
}

TEST(CoreRecommend, UnprotectedManagementServicesBeyondLoopbackAreRecommended) {
  const auto found = recommend(ssh_only(), {
                                               tcp4(22),               // protected
                                               tcp4(5432),             // postgresql, wildcard
                                               tcp4(6379, localhost),  // redis, loopback only
                                               tcp4(3306, lan),        // mysql, one address
                                               tcp6(27017, 0, false),  // mongodb, dual-stack
                                               tcp4(8081),             // not in the list
                                               udp4(161),              // snmp
                                               udp4(53),               // not in the list
                                               tcp6(11211, v4_mapped | localhost, false),
                                           });
  EXPECT_EQ(ports_of(found.unprotected), (std::vector<PortKey>{{Protocol::tcp, 3306},
                                                               {Protocol::tcp, 5432},
                                                               {Protocol::tcp, 27017},
                                                               {Protocol::udp, 161}}));
  EXPECT_EQ(found.unprotected[0].service, "mysql");
  EXPECT_EQ(found.unprotected[0].addresses, std::vector<std::string>{"10.0.0.5"});
  EXPECT_EQ(found.unprotected[2].addresses, std::vector<std::string>{"*"});
  EXPECT_TRUE(found.unused_protected.empty());
}

TEST(CoreRecommend, AServiceOnLoopbackAndBeyondListsEveryAddress) {
  const auto found = recommend(
      Policy{}, {tcp4(5432, localhost), tcp6(5432), tcp4(5432, localhost), tcp6(5432, 1)});
  ASSERT_EQ(found.unprotected.size(), 1u);
  EXPECT_EQ(found.unprotected[0].addresses, (std::vector<std::string>{"127.0.0.1", "::", "::1"}));
}

TEST(CoreRecommend, AnyProtocolRuleProtectsBothAndIsUsedByEither) {
  Policy policy;
  policy.rules = {rule(3389, ProtocolSpec::any, 7), rule(161, ProtocolSpec::udp, 9)};
  const auto found = recommend(policy, {udp4(3389), tcp4(161)});
  EXPECT_TRUE(found.unprotected.empty());  // 161/tcp is not snmp
  ASSERT_EQ(found.unused_protected.size(), 1u);
  EXPECT_EQ(found.unused_protected[0].port, (PortSpec{161, ProtocolSpec::udp}));
  EXPECT_EQ(found.unused_protected[0].service, "snmp");
}

TEST(CoreRecommend, RulesNothingListensUnderBeyondLoopbackAreReportedWithTheirOrigin) {
  Policy policy = ssh_only();
  policy.rules.push_back(rule(6379, ProtocolSpec::tcp, 9));
  policy.rules.push_back(rule(8443, ProtocolSpec::tcp, 12));
  const auto found =
      recommend(policy, {tcp4(6379, localhost), tcp6(6379, 1), tcp4(8443, lan), udp4(22)});
  ASSERT_EQ(found.unused_protected.size(), 2u);
  EXPECT_EQ(found.unused_protected[0].port, (PortSpec{22, ProtocolSpec::tcp}));
  EXPECT_EQ(found.unused_protected[0].service, "ssh");
  EXPECT_TRUE(found.unused_protected[0].addresses.empty());  // 22/udp does not count
  EXPECT_EQ(found.unused_protected[0].origin.line, 3);
  EXPECT_EQ(found.unused_protected[1].port, (PortSpec{6379, ProtocolSpec::tcp}));
  EXPECT_EQ(found.unused_protected[1].addresses, (std::vector<std::string>{"127.0.0.1", "::1"}));
}

TEST(CoreRecommend, NothingToRecommendHasNoSnippet) {
  const auto found = recommend(ssh_only(), {tcp4(22), tcp6(22), tcp4(6379, localhost)});
  EXPECT_TRUE(found.unprotected.empty());
  EXPECT_TRUE(found.unused_protected.empty());
  EXPECT_EQ(found.snippet, "");
}

TEST(CoreRecommend, TheSnippetIsAValidPolicyFileThatProtectsWhatWasRecommended) {
  const std::vector<Listener> listeners{tcp4(22), tcp4(5432), udp4(161), udp4(3389),
                                        tcp6(3389, 0, false)};
  const auto found = recommend(ssh_only(), listeners);
  ASSERT_EQ(found.unprotected.size(), 4u);
  EXPECT_NE(found.snippet.find("  - number: 5432  # postgresql\n    protocol: tcp\n"),
            std::string::npos)
      << found.snippet;

  const auto parsed = config::parse_policy_text(found.snippet, "recommended.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.errors.front().to_string() << "\n" << found.snippet;
  ASSERT_EQ(parsed.value.rules.size(), 4u);
  for (const auto& parsed_rule : parsed.value.rules) {
    EXPECT_TRUE(parsed_rule.any_source);
    EXPECT_EQ(parsed_rule.max_duration, Milliseconds(3h));
    EXPECT_EQ(parsed_rule.min_request_length_v4, 24u);
    EXPECT_EQ(parsed_rule.min_request_length_v6, 56u);
  }
  Policy merged = ssh_only();
  merged.rules.insert(merged.rules.end(), parsed.value.rules.begin(), parsed.value.rules.end());
  std::vector<config::Diagnostic> errors;
  config::check_merged_policy(merged, errors);
  EXPECT_TRUE(errors.empty()) << errors.front().to_string();
  const auto after = recommend(merged, listeners);
  EXPECT_TRUE(after.unprotected.empty());
  EXPECT_TRUE(after.unused_protected.empty());
}

}  // namespace
}  // namespace jitd::core
