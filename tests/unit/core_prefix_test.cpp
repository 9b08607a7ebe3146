#include <gtest/gtest.h>

#include <string>

#include "jitd/core/prefix.hpp"

namespace jitd::core {
namespace {

Prefix parse_ok(std::string_view text) {
  auto parsed = Prefix::parse(text);
  EXPECT_TRUE(parsed.has_value()) << text << ": " << (parsed ? "" : parsed.error().message);
  return parsed ? *parsed : Prefix{};
}

void expect_refused(std::string_view text) {
  const auto parsed = Prefix::parse(text);
  ASSERT_FALSE(parsed.has_value()) << "'" << text << "' parsed as " << parsed->to_string();
  EXPECT_EQ(parsed.error().code, ErrorCode::invalid_argument) << text;
  EXPECT_FALSE(parsed.error().message.empty()) << text;
}

constexpr AddressValue v6(std::uint64_t high, std::uint64_t low) {
  return (AddressValue{high} << 64) | low;
}

TEST(CorePrefix, ParsesIpv4Network) {
  const auto prefix = parse_ok("10.1.2.0/24");
  EXPECT_EQ(prefix.family(), Family::ipv4);
  EXPECT_EQ(prefix.length(), 24U);
  EXPECT_EQ(prefix.address(), AddressValue{0x0A010200});
  EXPECT_EQ(prefix.to_string(), "10.1.2.0/24");
}

TEST(CorePrefix, ParsesBareIpv4AddressAsHost) {
  const auto prefix = parse_ok("203.0.113.7");
  EXPECT_EQ(prefix.family(), Family::ipv4);
  EXPECT_EQ(prefix.length(), 32U);
  EXPECT_EQ(prefix.address(), AddressValue{0xCB007107});
  EXPECT_EQ(prefix.to_string(), "203.0.113.7");
}

TEST(CorePrefix, Ipv4Slash32PrintsAsBareAddress) {
  const auto prefix = parse_ok("203.0.113.7/32");
  EXPECT_EQ(prefix.length(), 32U);
  EXPECT_EQ(prefix.to_string(), "203.0.113.7");
  EXPECT_EQ(prefix, parse_ok("203.0.113.7"));
}

TEST(CorePrefix, ParsesIpv6Network) {
  const auto prefix = parse_ok("2001:db8::/32");
  EXPECT_EQ(prefix.family(), Family::ipv6);
  EXPECT_EQ(prefix.length(), 32U);
  EXPECT_EQ(prefix.address(), v6(0x20010db800000000ULL, 0));
  EXPECT_EQ(prefix.to_string(), "2001:db8::/32");
}

TEST(CorePrefix, ParsesBareIpv6AddressAsHost) {
  const auto prefix = parse_ok("2001:db8::1");
  EXPECT_EQ(prefix.family(), Family::ipv6);
  EXPECT_EQ(prefix.length(), 128U);
  EXPECT_EQ(prefix.address(), v6(0x20010db800000000ULL, 1));
  EXPECT_EQ(prefix.to_string(), "2001:db8::1");
}

TEST(CorePrefix, Ipv6Slash128PrintsAsBareAddress) {
  EXPECT_EQ(parse_ok("fd00::1/128").to_string(), "fd00::1");
}

TEST(CorePrefix, Ipv6ToStringIsCanonical) {
  // Leading zeros dropped, the longest zero run compressed, lower case.
  EXPECT_EQ(parse_ok("2001:0DB8:0000:0000:0000:0000:0000:0001").to_string(), "2001:db8::1");
  EXPECT_EQ(parse_ok("FD00:0:0:0::/64").to_string(), "fd00::/64");
}

TEST(CorePrefix, LengthZeroIsTheWholeFamily) {
  const auto any4 = parse_ok("0.0.0.0/0");
  EXPECT_EQ(any4.family(), Family::ipv4);
  EXPECT_EQ(any4.length(), 0U);
  EXPECT_EQ(any4.to_string(), "0.0.0.0/0");
  EXPECT_EQ(any4.address(), AddressValue{0});

  const auto any6 = parse_ok("::/0");
  EXPECT_EQ(any6.family(), Family::ipv6);
  EXPECT_EQ(any6.length(), 0U);
  EXPECT_EQ(any6.to_string(), "::/0");
  EXPECT_EQ(any6.address(), AddressValue{0});
}

TEST(CorePrefix, NonzeroAddressWithLengthZeroHasHostBits) {
  expect_refused("10.0.0.0/0");
  expect_refused("2001:db8::/0");
}

TEST(CorePrefix, RefusesLengthsOutOfRange) {
  expect_refused("10.0.0.0/33");
  expect_refused("10.0.0.0/-1");
  expect_refused("10.0.0.0/");
  expect_refused("10.0.0.0/abc");
  expect_refused("10.0.0.0/24x");
  expect_refused("10.0.0.0/ 24");
  expect_refused("10.0.0.0/+24");
  expect_refused("10.0.0.0/24/8");
  expect_refused("10.0.0.0/4294967320");  // wraps to 24 if read into 32 bits
  expect_refused("2001:db8::/129");
  expect_refused("2001:db8::/-1");
  expect_refused("2001:db8::/");
  expect_refused("2001:db8::/abc");
}

TEST(CorePrefix, ErrorForBadLengthNamesTheValidRange) {
  const auto v4 = Prefix::parse("10.0.0.0/33");
  ASSERT_FALSE(v4.has_value());
  EXPECT_NE(v4.error().message.find("0..32"), std::string::npos) << v4.error().message;
  const auto v6 = Prefix::parse("fd00::/200");
  ASSERT_FALSE(v6.has_value());
  EXPECT_NE(v6.error().message.find("0..128"), std::string::npos) << v6.error().message;
}

TEST(CorePrefix, RefusesGarbage) {
  expect_refused("");
  expect_refused("/");
  expect_refused("/24");
  expect_refused("hello");
  expect_refused("10.0.0");
  expect_refused("10.0.0.256");
  expect_refused("10.0.0.0.0");
  expect_refused(" 10.0.0.1");
  expect_refused("10.0.0.1 ");
  expect_refused("2001:db8:::1");
  expect_refused("2001:db8::g");
  expect_refused("1:2:3:4:5:6:7:8:9");
  expect_refused("fe80::1%eth0");
}

TEST(CorePrefix, HostBitsRefusedWithNetworkSuggestion) {
  const auto v4 = Prefix::parse("10.0.0.1/24");
  ASSERT_FALSE(v4.has_value());
  EXPECT_EQ(v4.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(v4.error().message.find("host bits"), std::string::npos) << v4.error().message;
  EXPECT_NE(v4.error().message.find("10.0.0.0/24"), std::string::npos) << v4.error().message;

  const auto v6 = Prefix::parse("2001:db8::1/64");
  ASSERT_FALSE(v6.has_value());
  EXPECT_NE(v6.error().message.find("2001:db8::/64"), std::string::npos) << v6.error().message;

  const auto odd = Prefix::parse("192.168.1.130/25");
  ASSERT_FALSE(odd.has_value());
  EXPECT_NE(odd.error().message.find("192.168.1.128/25"), std::string::npos)
      << odd.error().message;
}

TEST(CorePrefix, HostBitInLastPositionRefused) {
  expect_refused("10.0.0.1/31");
  expect_refused("fd00::1/127");
  EXPECT_EQ(parse_ok("10.0.0.2/31").to_string(), "10.0.0.2/31");
  EXPECT_EQ(parse_ok("fd00::2/127").to_string(), "fd00::2/127");
}

TEST(CorePrefix, ContainsNestedPrefixes) {
  const auto net16 = parse_ok("10.1.0.0/16");
  const auto net24 = parse_ok("10.1.2.0/24");
  const auto host = parse_ok("10.1.2.3");
  EXPECT_TRUE(net16.contains(net24));
  EXPECT_TRUE(net16.contains(host));
  EXPECT_TRUE(net24.contains(host));
  EXPECT_FALSE(net24.contains(net16));
  EXPECT_FALSE(host.contains(net24));
}

TEST(CorePrefix, ContainsEqualPrefix) {
  EXPECT_TRUE(parse_ok("10.1.2.0/24").contains(parse_ok("10.1.2.0/24")));
  EXPECT_TRUE(parse_ok("10.1.2.3").contains(parse_ok("10.1.2.3")));
  EXPECT_TRUE(parse_ok("fd00::/8").contains(parse_ok("fd00::/8")));
}

TEST(CorePrefix, ContainsDisjointPrefixesIsFalse) {
  EXPECT_FALSE(parse_ok("10.1.2.0/24").contains(parse_ok("10.1.3.0/24")));
  EXPECT_FALSE(parse_ok("10.1.2.0/24").contains(parse_ok("10.1.3.1")));
  EXPECT_FALSE(parse_ok("10.1.2.0/25").contains(parse_ok("10.1.2.128/25")));
  EXPECT_FALSE(parse_ok("10.1.2.0/25").contains(parse_ok("10.1.2.128")));
  EXPECT_TRUE(parse_ok("10.1.2.0/25").contains(parse_ok("10.1.2.127")));
  EXPECT_FALSE(parse_ok("2001:db8::/32").contains(parse_ok("2001:db9::1")));
}

TEST(CorePrefix, ContainsNeverCrossesFamilies) {
  EXPECT_FALSE(parse_ok("0.0.0.0/0").contains(parse_ok("::1")));
  EXPECT_FALSE(parse_ok("::/0").contains(parse_ok("10.0.0.1")));
  // ::10.0.0.1 (IPv4-compatible, not v4-mapped) is an IPv6 address.
  EXPECT_FALSE(parse_ok("10.0.0.0/8").contains(parse_ok("::10.0.0.1")));
  EXPECT_FALSE(parse_ok("::/96").contains(parse_ok("0.0.0.1")));
}

TEST(CorePrefix, FullPrefixesContainEverythingOfTheirFamily) {
  EXPECT_TRUE(parse_ok("0.0.0.0/0").contains(parse_ok("255.255.255.255")));
  EXPECT_TRUE(parse_ok("0.0.0.0/0").contains(parse_ok("0.0.0.0")));
  EXPECT_TRUE(parse_ok("0.0.0.0/0").contains(parse_ok("128.0.0.0/1")));
  EXPECT_TRUE(parse_ok("::/0").contains(parse_ok("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_TRUE(parse_ok("::/0").contains(parse_ok("8000::/1")));
}

TEST(CorePrefix, RangeOfIpv4Prefixes) {
  const auto net = parse_ok("192.168.1.0/24").range();
  EXPECT_EQ(net.family, Family::ipv4);
  EXPECT_EQ(net.first, AddressValue{0xC0A80100});
  EXPECT_EQ(net.last, AddressValue{0xC0A801FF});

  const auto host = parse_ok("192.168.1.7").range();
  EXPECT_EQ(host.first, AddressValue{0xC0A80107});
  EXPECT_EQ(host.last, AddressValue{0xC0A80107});

  const auto all = parse_ok("0.0.0.0/0").range();
  EXPECT_EQ(all.family, Family::ipv4);
  EXPECT_EQ(all.first, AddressValue{0});
  EXPECT_EQ(all.last, AddressValue{0xFFFFFFFFU});  // not beyond 32 bits

  const auto upper = parse_ok("128.0.0.0/1").range();
  EXPECT_EQ(upper.first, AddressValue{0x80000000U});
  EXPECT_EQ(upper.last, AddressValue{0xFFFFFFFFU});
}

TEST(CorePrefix, RangeOfIpv6Prefixes) {
  const auto net = parse_ok("2001:db8::/64").range();
  EXPECT_EQ(net.family, Family::ipv6);
  EXPECT_EQ(net.first, v6(0x20010db800000000ULL, 0));
  EXPECT_EQ(net.last, v6(0x20010db800000000ULL, ~std::uint64_t{0}));

  const auto host = parse_ok("2001:db8::5").range();
  EXPECT_EQ(host.first, v6(0x20010db800000000ULL, 5));
  EXPECT_EQ(host.last, host.first);

  const auto all = parse_ok("::/0").range();
  EXPECT_EQ(all.family, Family::ipv6);
  EXPECT_EQ(all.first, AddressValue{0});
  EXPECT_EQ(all.last, ~AddressValue{0});

  const auto upper = parse_ok("8000::/1").range();
  EXPECT_EQ(upper.first, v6(0x8000000000000000ULL, 0));
  EXPECT_EQ(upper.last, ~AddressValue{0});
}

TEST(CorePrefix, AnyHasFullRange) {
  EXPECT_EQ(parse_ok("0.0.0.0/0").range().last, AddressValue{0xFFFFFFFFU});
  EXPECT_EQ(parse_ok("::/0").range().last, ~AddressValue{0});
  EXPECT_EQ(parse_ok("::/0").range().first, AddressValue{0});
}

TEST(CorePrefix, ToStringRoundTrips) {
  for (const auto* text : {"10.0.0.0/8", "10.1.2.3", "0.0.0.0/0", "255.255.255.255",
                           "192.168.0.0/31", "2001:db8::/32", "::/0", "::1", "fe80::/10",
                           "2001:db8:1:2:3:4:5:6", "::10.0.0.1"}) {
    const auto prefix = parse_ok(text);
    EXPECT_EQ(prefix.to_string(), text);
    EXPECT_EQ(parse_ok(prefix.to_string()), prefix) << text;
  }
}

TEST(CorePrefix, AddressHelpers) {
  EXPECT_EQ(address_bits(Family::ipv4), 32U);
  EXPECT_EQ(address_bits(Family::ipv6), 128U);
  EXPECT_EQ(address_to_string(Family::ipv4, 0x7F000001), "127.0.0.1");
  EXPECT_EQ(address_to_string(Family::ipv6, 1), "::1");
  EXPECT_EQ(address_to_string(Family::ipv6, ~AddressValue{0}),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
}

// The kernel matches an IPv4 client against IPv4 sets only, whatever notation named it: a
// v4-mapped source (a dual-stack sshd's SSH_CONNECTION) must become the IPv4 prefix it means.
TEST(CorePrefix, V4MappedAddressesAreIpv4) {
  const auto host = parse_ok("::ffff:10.0.0.2");
  EXPECT_EQ(host.family(), Family::ipv4);
  EXPECT_EQ(host, parse_ok("10.0.0.2"));
  EXPECT_EQ(host.to_string(), "10.0.0.2");
  EXPECT_EQ(parse_ok("::FFFF:a00:2/128"), parse_ok("10.0.0.2"));
  EXPECT_TRUE(parse_ok("10.0.0.0/8").contains(parse_ok("::ffff:10.0.0.1")));
}

TEST(CorePrefix, V4MappedPrefixesDropTheMappedNinetySixBits) {
  EXPECT_EQ(parse_ok("::ffff:10.0.0.0/120"), parse_ok("10.0.0.0/24"));
  EXPECT_EQ(parse_ok("::ffff:0.0.0.0/96"), parse_ok("0.0.0.0/0"));
  EXPECT_EQ(parse_ok("::ffff:0:0/96").family(), Family::ipv4);
}

TEST(CorePrefix, V4MappedPrefixShorterThan96Refused) {
  // It would reach beyond the mapped block into plain IPv6 space, which IPv4 cannot express.
  for (const auto* text : {"::ffff:0:0/95", "::ffff:0:0/80", "::ffff:10.0.0.0/0"}) {
    expect_refused(text);
    EXPECT_EQ(Prefix::parse(text).error().message,
              "'" + std::string(text) +
                  "' is an IPv4-mapped prefix shorter than /96, which reaches beyond IPv4; "
                  "write an IPv4 prefix (::ffff:0:0/96 is all of IPv4, 0.0.0.0/0)");
  }
}

TEST(CorePrefix, V4MappedHostBitsSuggestTheIpv4Network) {
  EXPECT_EQ(Prefix::parse("::ffff:10.0.0.1/120").error().message,
            "'::ffff:10.0.0.1/120' has host bits set; did you mean 10.0.0.0/24?");
}

TEST(CorePrefix, NearlyMappedAddressesStayIpv6) {
  // IPv4-compatible (::a.b.c.d) and ::fffe: addresses are not v4-mapped.
  EXPECT_EQ(parse_ok("::10.0.0.1").family(), Family::ipv6);
  EXPECT_EQ(parse_ok("::fffe:10.0.0.1").family(), Family::ipv6);
  EXPECT_EQ(parse_ok("::/80").family(), Family::ipv6);
  EXPECT_EQ(parse_ok("::1:ffff:0:0").family(), Family::ipv6);
}

TEST(CorePrefix, CoversEveryAddressLooksAtTheUnion) {
  const auto parse_all = [](std::initializer_list<std::string_view> texts) {
    std::vector<Prefix> prefixes;
    for (const auto text : texts) prefixes.push_back(parse_ok(text));
    return prefixes;
  };
  EXPECT_TRUE(covers_every_address(Family::ipv4, parse_all({"0.0.0.0/0"})));
  EXPECT_TRUE(covers_every_address(Family::ipv4, parse_all({"128.0.0.0/1", "0.0.0.0/1"})));
  EXPECT_TRUE(covers_every_address(
      Family::ipv4, parse_all({"0.0.0.0/2", "0.0.0.0/1", "10.0.0.0/8", "128.0.0.0/1"})));
  EXPECT_TRUE(covers_every_address(Family::ipv6, parse_all({"::/1", "8000::/1", "10.0.0.0/8"})));
  EXPECT_FALSE(covers_every_address(Family::ipv4, {}));
  EXPECT_FALSE(covers_every_address(Family::ipv4, parse_all({"0.0.0.0/1"})));
  EXPECT_FALSE(covers_every_address(Family::ipv4, parse_all({"0.0.0.0/1", "128.0.0.1/32"})));
  EXPECT_FALSE(covers_every_address(Family::ipv4,
                                    parse_all({"0.0.0.0/1", "128.0.0.0/2", "255.255.255.255"})));
  EXPECT_FALSE(covers_every_address(Family::ipv6, parse_all({"0.0.0.0/0", "8000::/1"})));
  EXPECT_FALSE(covers_every_address(Family::ipv6, parse_all({"::/1", "8000::/2"})));
}

}  // namespace
}  // namespace jitd::core
