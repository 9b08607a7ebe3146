#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include "jitd/core/error.hpp"
#include "jitd/core/policy.hpp"
#include "test_grants.hpp"

namespace jitd::core {
namespace {

using namespace std::chrono_literals;
using test::prefix;

PortRule rule(std::uint16_t port, ProtocolSpec protocol, std::vector<Prefix> sources = {},
              Milliseconds max = 3h) {
  PortRule r;
  r.port = {port, protocol};
  r.any_source = sources.empty();
  r.allowed_sources = std::move(sources);
  r.max_duration = max;
  return r;
}

TEST(CorePolicy, ParseProtocol) {
  EXPECT_EQ(parse_protocol("tcp").value(), ProtocolSpec::tcp);
  EXPECT_EQ(parse_protocol("TCP").value(), ProtocolSpec::tcp);
  EXPECT_EQ(parse_protocol("udp").value(), ProtocolSpec::udp);
  EXPECT_EQ(parse_protocol("UDP").value(), ProtocolSpec::udp);
  EXPECT_EQ(parse_protocol("*").value(), ProtocolSpec::any);
  for (const auto* bad : {"", "icmp", "any", "tcp ", "**"}) {
    const auto parsed = parse_protocol(bad);
    ASSERT_FALSE(parsed.has_value()) << bad;
    EXPECT_EQ(parsed.error().code, ErrorCode::invalid_argument);
  }
}

TEST(CorePolicy, ExpandAndCovers) {
  EXPECT_EQ(expand(ProtocolSpec::tcp), std::vector<Protocol>{Protocol::tcp});
  EXPECT_EQ(expand(ProtocolSpec::udp), std::vector<Protocol>{Protocol::udp});
  EXPECT_EQ(expand(ProtocolSpec::any), (std::vector<Protocol>{Protocol::tcp, Protocol::udp}));
  EXPECT_TRUE(covers(ProtocolSpec::any, ProtocolSpec::tcp));
  EXPECT_TRUE(covers(ProtocolSpec::any, ProtocolSpec::udp));
  EXPECT_TRUE(covers(ProtocolSpec::any, ProtocolSpec::any));
  EXPECT_TRUE(covers(ProtocolSpec::tcp, ProtocolSpec::tcp));
  EXPECT_FALSE(covers(ProtocolSpec::tcp, ProtocolSpec::udp));
  EXPECT_FALSE(covers(ProtocolSpec::tcp, ProtocolSpec::any));
  EXPECT_FALSE(covers(ProtocolSpec::udp, ProtocolSpec::any));
}

TEST(CorePolicy, KernelProtocolNumbers) {
  EXPECT_EQ(static_cast<int>(Protocol::tcp), 6);
  EXPECT_EQ(static_cast<int>(Protocol::udp), 17);
}

TEST(CorePolicy, TextForms) {
  EXPECT_EQ(to_string(PortSpec{22, ProtocolSpec::tcp}), "22/tcp");
  EXPECT_EQ(to_string(PortSpec{53, ProtocolSpec::any}), "53/*");
  EXPECT_EQ(to_string(PortSpec{51820, ProtocolSpec::udp}), "51820/udp");
  EXPECT_EQ(to_string(Protocol::udp), "udp");
  EXPECT_EQ((SourceLocation{"/etc/jitd/policy.yaml", 12, 5}.to_string()),
            "/etc/jitd/policy.yaml:12:5");
  EXPECT_EQ((SourceLocation{"/etc/jitd/policy.yaml", 0, 0}.to_string()), "/etc/jitd/policy.yaml");
}

TEST(CorePolicy, FindRuleMatchesPortAndProtocol) {
  Policy policy;
  policy.rules = {rule(22, ProtocolSpec::tcp), rule(53, ProtocolSpec::any),
                  rule(51820, ProtocolSpec::udp)};
  ASSERT_NE(policy.find_rule(22, Protocol::tcp), nullptr);
  EXPECT_EQ(policy.find_rule(22, Protocol::tcp)->port.number, 22);
  EXPECT_EQ(policy.find_rule(22, Protocol::udp), nullptr);
  EXPECT_EQ(policy.find_rule(53, Protocol::tcp), &policy.rules[1]);
  EXPECT_EQ(policy.find_rule(53, Protocol::udp), &policy.rules[1]);
  EXPECT_EQ(policy.find_rule(51820, Protocol::udp), &policy.rules[2]);
  EXPECT_EQ(policy.find_rule(51820, Protocol::tcp), nullptr);
  EXPECT_EQ(policy.find_rule(23, Protocol::tcp), nullptr);
  EXPECT_EQ(Policy{}.find_rule(22, Protocol::tcp), nullptr);
}

TEST(CorePolicy, FindRuleDistinguishesSplitProtocolRules) {
  Policy policy;
  policy.rules = {rule(53, ProtocolSpec::udp, {}, 1h), rule(53, ProtocolSpec::tcp, {}, 2h)};
  ASSERT_NE(policy.find_rule(53, Protocol::udp), nullptr);
  ASSERT_NE(policy.find_rule(53, Protocol::tcp), nullptr);
  EXPECT_EQ(policy.find_rule(53, Protocol::udp)->max_duration, 1h);
  EXPECT_EQ(policy.find_rule(53, Protocol::tcp)->max_duration, 2h);
}

TEST(CorePolicy, ProtectedPortsSortedUniqueAndExpanded) {
  Policy policy;
  policy.rules = {rule(443, ProtocolSpec::tcp), rule(53, ProtocolSpec::any),
                  rule(22, ProtocolSpec::tcp), rule(53, ProtocolSpec::udp),
                  rule(22, ProtocolSpec::tcp)};
  const std::vector<PortKey> expected = {{Protocol::tcp, 22},
                                         {Protocol::tcp, 53},
                                         {Protocol::tcp, 443},
                                         {Protocol::udp, 53}};
  EXPECT_EQ(policy.protected_ports(), expected);
  EXPECT_TRUE(Policy{}.protected_ports().empty());
}

TEST(CorePolicy, AllowsSource) {
  const auto any = rule(22, ProtocolSpec::tcp);
  EXPECT_TRUE(any.allows_source(prefix("0.0.0.0/0")));
  EXPECT_TRUE(any.allows_source(prefix("::/0")));
  EXPECT_TRUE(any.allows_source(prefix("203.0.113.9")));

  const auto limited = rule(22, ProtocolSpec::tcp, {prefix("10.0.0.0/8"), prefix("fd00::/8")});
  EXPECT_TRUE(limited.allows_source(prefix("10.0.0.0/8")));
  EXPECT_TRUE(limited.allows_source(prefix("10.20.0.0/16")));
  EXPECT_TRUE(limited.allows_source(prefix("10.1.2.3")));
  EXPECT_TRUE(limited.allows_source(prefix("fd12::1")));
  EXPECT_FALSE(limited.allows_source(prefix("0.0.0.0/0")));
  EXPECT_FALSE(limited.allows_source(prefix("8.0.0.0/6")));  // covers 10/8 but is wider
  EXPECT_FALSE(limited.allows_source(prefix("11.0.0.1")));
  EXPECT_FALSE(limited.allows_source(prefix("fe80::1")));
  EXPECT_TRUE(limited.allows_source(prefix("::ffff:10.0.0.1")));  // parsed as 10.0.0.1

  PortRule nothing = rule(22, ProtocolSpec::tcp, {prefix("10.0.0.0/8")});
  nothing.allowed_sources.clear();
  EXPECT_FALSE(nothing.allows_source(prefix("10.0.0.1")));
}

TEST(CorePolicy, ErrorCodesHaveStableText) {
  EXPECT_EQ(to_string(ErrorCode::invalid_request), "InvalidRequest");
  EXPECT_EQ(to_string(ErrorCode::port_not_in_policy), "PortNotInPolicy");
  EXPECT_EQ(to_string(ErrorCode::source_not_allowed), "SourceNotAllowed");
  EXPECT_EQ(to_string(ErrorCode::duration_too_long), "DurationTooLong");
  EXPECT_EQ(to_string(ErrorCode::end_time_in_past), "EndTimeInPast");
  EXPECT_EQ(to_string(ErrorCode::forbidden), "Forbidden");
  EXPECT_EQ(to_string(ErrorCode::not_found), "NotFound");
  EXPECT_EQ(to_string(ErrorCode::kernel), "KernelError");
}

TEST(CorePolicy, AllowsSourceNoWiderThanTheRequestLimit) {
  auto any = rule(22, ProtocolSpec::tcp);
  EXPECT_EQ(any.min_request_length(Family::ipv4), 0u);  // Azure's "Any"
  any.min_request_length_v4 = 24;
  any.min_request_length_v6 = 56;
  EXPECT_EQ(any.min_request_length(Family::ipv4), 24u);
  EXPECT_EQ(any.min_request_length(Family::ipv6), 56u);
  EXPECT_TRUE(any.allows_source(prefix("203.0.113.0/24")));
  EXPECT_TRUE(any.allows_source(prefix("203.0.113.7")));
  EXPECT_TRUE(any.allows_source(prefix("2001:db8:0:100::/56")));
  EXPECT_FALSE(any.allows_source(prefix("203.0.112.0/23")));
  EXPECT_FALSE(any.allows_source(prefix("0.0.0.0/0")));
  EXPECT_FALSE(any.allows_source(prefix("2001:db8::/55")));
  EXPECT_FALSE(any.allows_source(prefix("::/0")));
  EXPECT_TRUE(any.covers_source(prefix("0.0.0.0/0")));  // inside "*", only too wide

  auto limited = rule(22, ProtocolSpec::tcp, {prefix("10.0.0.0/8")});
  limited.min_request_length_v4 = 16;
  EXPECT_TRUE(limited.allows_source(prefix("10.1.0.0/16")));
  EXPECT_FALSE(limited.allows_source(prefix("10.0.0.0/8")));
  EXPECT_TRUE(limited.covers_source(prefix("10.0.0.0/8")));
  EXPECT_FALSE(limited.covers_source(prefix("11.0.0.0/16")));
}

}  // namespace
}  // namespace jitd::core
