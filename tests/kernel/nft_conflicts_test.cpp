// inspect_firewall against rulesets that `nft` loads in a private network namespace: which drops
// and accepts of other tables it names, with which certainty, and what it ignores.
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "jitd/nft/conflicts.hpp"
#include "kernel_test_support.hpp"

namespace {

using jitd::core::PortKey;
using jitd::core::Protocol;
using jitd::nft::FirewallConflict;
using jitd::nft::FirewallReport;
using jitd::nft::inspect_firewall;
using namespace jitd::test;  // run, feed, nft_objects, succeeded, skip_all

const PortKey ssh{Protocol::tcp, 22};
const PortKey rdp{Protocol::tcp, 3389};

class NftConflictsTest : public testing::Test {
 protected:
  void SetUp() override {
    if (skip_all()) GTEST_SKIP() << "no private network namespace (needs root or CAP_SYS_ADMIN)";
    ASSERT_EQ(run("nft flush ruleset").status, 0);
  }

  static void load(const std::string& ruleset) {
    ASSERT_EQ(feed("nft -f -", ruleset), 0) << ruleset;
  }

  // The handle of the chain's rule at `index`, as nft lists it.
  static std::uint64_t handle(const std::string& chain, std::size_t index) {
    const auto rules = nft_objects("chain " + chain, "rule");
    EXPECT_LT(index, rules.size());
    return index < rules.size() ? rules[index].at("handle").get<std::uint64_t>() : 0;
  }

  static FirewallReport inspect(const std::vector<PortKey>& ports = {ssh}) {
    auto report = inspect_firewall(ports);
    EXPECT_TRUE(succeeded(report));
    return report ? *report : FirewallReport{};
  }

  // An input chain of table ip t with these rules.
  static std::string input_chain(const std::string& rules, const std::string& policy = "accept") {
    return "table ip t {\n  chain input {\n    type filter hook input priority 0; policy " +
           policy + ";\n" + rules + "\n  }\n}\n";
  }
};

TEST_F(NftConflictsTest, DropOfAProtectedPortIsCertain) {
  load(input_chain("tcp dport 22 drop"));
  const FirewallReport report = inspect();
  ASSERT_EQ(report.conflicts.size(), 1U);
  const FirewallConflict& conflict = report.conflicts[0];
  const std::uint64_t rule = handle("ip t input", 0);
  EXPECT_EQ(conflict.kind, FirewallConflict::Kind::drops);
  EXPECT_TRUE(conflict.certain);
  EXPECT_EQ(conflict.family, "ip");
  EXPECT_EQ(conflict.table, "t");
  EXPECT_EQ(conflict.chain, "input");
  EXPECT_EQ(conflict.hook, "input");
  EXPECT_EQ(conflict.priority, 0);
  EXPECT_EQ(conflict.handle, rule);
  EXPECT_EQ(conflict.ports, std::vector<PortKey>{ssh});
  EXPECT_EQ(conflict.rule, "tcp dport 22 drop");
  EXPECT_EQ(conflict.advice,
            "let the protected ports through here and leave the choice of sources to jitd, whose "
            "table still drops every source without a grant: nft insert rule ip t input position " +
                std::to_string(rule) + " tcp dport 22 accept");
  EXPECT_TRUE(report.notes.empty());
}

TEST_F(NftConflictsTest, DropOfAnotherPortIsNoConflict) {
  load(input_chain("tcp dport 80 drop\nudp dport 22 drop\nmeta l4proto udp drop"));
  EXPECT_TRUE(inspect().conflicts.empty());
}

TEST_F(NftConflictsTest, RejectOfASetOfPorts) {
  load(input_chain("tcp dport { 22, 3389 } reject"));
  const FirewallReport report = inspect({ssh, rdp, {Protocol::tcp, 443}});
  ASSERT_EQ(report.conflicts.size(), 1U);
  const FirewallConflict& conflict = report.conflicts[0];
  EXPECT_EQ(conflict.kind, FirewallConflict::Kind::drops);
  EXPECT_TRUE(conflict.certain);
  EXPECT_EQ(conflict.handle, handle("ip t input", 0));
  EXPECT_EQ(conflict.ports, (std::vector<PortKey>{ssh, rdp}));
  EXPECT_EQ(conflict.rule, "tcp dport { 22, 3389 } reject");
  EXPECT_NE(conflict.advice.find("tcp dport { 22, 3389 } accept"), std::string::npos)
      << conflict.advice;
}

TEST_F(NftConflictsTest, DropOfARangeOfPorts) {
  load(input_chain("tcp dport 20-30 drop\ntcp dport 100-200 drop"));
  const FirewallReport report = inspect();
  ASSERT_EQ(report.conflicts.size(), 1U);
  EXPECT_TRUE(report.conflicts[0].certain);
  EXPECT_EQ(report.conflicts[0].handle, handle("ip t input", 0));
  EXPECT_EQ(report.conflicts[0].rule, "tcp dport 20-30 drop");
}

TEST_F(NftConflictsTest, IntervalSetOfPorts) {
  load(input_chain("tcp dport { 10-20, 3000-4000 } drop\ntcp dport { 1-21, 23-100 } drop"));
  const FirewallReport report = inspect({ssh, rdp});
  ASSERT_EQ(report.conflicts.size(), 1U);
  EXPECT_EQ(report.conflicts[0].ports, std::vector<PortKey>{rdp});
  EXPECT_EQ(report.conflicts[0].rule, "tcp dport { 10-20, 3000-4000 } drop");
}

TEST_F(NftConflictsTest, PolicyDropIsCertain) {
  load(input_chain("", "drop"));
  const FirewallReport report = inspect();
  ASSERT_EQ(report.conflicts.size(), 1U);
  const FirewallConflict& conflict = report.conflicts[0];
  EXPECT_EQ(conflict.kind, FirewallConflict::Kind::drops);
  EXPECT_TRUE(conflict.certain);
  EXPECT_EQ(conflict.handle, 0U);
  EXPECT_EQ(conflict.ports, std::vector<PortKey>{ssh});
  EXPECT_EQ(conflict.rule, "policy drop");
  EXPECT_EQ(conflict.advice,
            "let the protected ports through here and leave the choice of sources to jitd, whose "
            "table still drops every source without a grant: nft add rule ip t input tcp dport 22 "
            "accept");
}

TEST_F(NftConflictsTest, PolicyDropBehindAnAcceptOfThePortIsAnAccept) {
  // The usual host firewall: loopback, established, ssh open, the rest dropped.
  load(
      input_chain("iif lo accept\nct state established,related accept\nct state invalid drop\n"
                  "tcp dport 22 accept",
                  "drop"));
  const FirewallReport report = inspect({ssh, rdp});
  ASSERT_EQ(report.conflicts.size(), 2U);
  const FirewallConflict& accept = report.conflicts[0];
  EXPECT_EQ(accept.kind, FirewallConflict::Kind::accepts);
  EXPECT_TRUE(accept.certain);
  EXPECT_EQ(accept.handle, handle("ip t input", 3));
  EXPECT_EQ(accept.ports, std::vector<PortKey>{ssh});
  EXPECT_EQ(accept.rule, "tcp dport 22 accept");
  EXPECT_EQ(accept.advice,
            "jitd's table drops every source without a grant or an allow-list entry on 22/tcp, so "
            "this rule no longer admits anyone there: nothing to change if every client is to "
            "request access; otherwise list the clients in permanentAllowList");
  const FirewallConflict& policy = report.conflicts[1];
  EXPECT_EQ(policy.kind, FirewallConflict::Kind::drops);
  EXPECT_TRUE(policy.certain);
  EXPECT_EQ(policy.handle, 0U);
  EXPECT_EQ(policy.ports, std::vector<PortKey>{rdp});
}

TEST_F(NftConflictsTest, PolicyDropBehindAnUnjudgedAcceptIsPossible) {
  load(input_chain("iifname \"eth7\" accept", "drop"));
  const FirewallReport report = inspect();
  ASSERT_EQ(report.conflicts.size(), 1U);
  EXPECT_FALSE(report.conflicts[0].certain);
  EXPECT_EQ(report.conflicts[0].rule, "policy drop (rule handle " +
                                          std::to_string(handle("ip t input", 0)) +
                                          " in input may accept it first)");
}

TEST_F(NftConflictsTest, AcceptOfSourcesSuggestsAnAllowListEntry) {
  load(input_chain("ip saddr 10.0.0.0/8 tcp dport 22 accept"));
  const FirewallReport report = inspect();
  ASSERT_EQ(report.conflicts.size(), 1U);
  const FirewallConflict& conflict = report.conflicts[0];
  const std::uint64_t rule = handle("ip t input", 0);
  EXPECT_EQ(conflict.kind, FirewallConflict::Kind::accepts);
  EXPECT_TRUE(conflict.certain);
  EXPECT_EQ(conflict.handle, rule);
  EXPECT_EQ(conflict.ports, std::vector<PortKey>{ssh});
  EXPECT_EQ(conflict.rule, "ip saddr 10.0.0.0/8 tcp dport 22 accept");
  EXPECT_EQ(conflict.advice,
            "jitd's table drops every source without a grant or an allow-list entry on 22/tcp, so "
            "this rule no longer admits anyone there; to keep admitting its clients, add to a "
            "policy file:\n"
            "permanentAllowList:\n"
            "  - sourceAddressPrefixes: [\"10.0.0.0/8\"]\n"
            "    ports:\n"
            "      - number: 22\n"
            "        protocol: tcp\n"
            "    description: \"was ip t input handle " +
                std::to_string(rule) + "\"\n");
}

TEST_F(NftConflictsTest, SourcesOfAnInetRuleAndOfAnAnonymousSet) {
  load(
      "table inet t {\n  chain input {\n    type filter hook input priority 0;\n"
      "    ip6 saddr 2001:db8::/32 tcp dport 22 accept\n"
      "    ip saddr { 192.0.2.0/24, 198.51.100.7 } tcp dport 22 accept\n  }\n}\n");
  const FirewallReport report = inspect();
  ASSERT_EQ(report.conflicts.size(), 2U);
  EXPECT_EQ(report.conflicts[0].rule, "ip6 saddr 2001:db8::/32 tcp dport 22 accept");
  EXPECT_NE(report.conflicts[0].advice.find("sourceAddressPrefixes: [\"2001:db8::/32\"]"),
            std::string::npos)
      << report.conflicts[0].advice;
  EXPECT_EQ(report.conflicts[1].rule,
            "ip saddr { 192.0.2.0/24, 198.51.100.7 } tcp dport 22 accept");
  EXPECT_NE(report.conflicts[1].advice.find(
                "sourceAddressPrefixes: [\"192.0.2.0/24\", \"198.51.100.7\"]"),
            std::string::npos)
      << report.conflicts[1].advice;
}

TEST_F(NftConflictsTest, DropOfInvalidPacketsIsNoConflict) {
  load(input_chain("ct state invalid drop\niif lo drop"));
  EXPECT_TRUE(inspect().conflicts.empty());
}

TEST_F(NftConflictsTest, UnjudgedMatchMakesADropPossible) {
  load(input_chain("iifname \"eth7\" tcp dport 22 drop"));
  const FirewallReport report = inspect();
  ASSERT_EQ(report.conflicts.size(), 1U);
  EXPECT_FALSE(report.conflicts[0].certain);
  EXPECT_EQ(report.conflicts[0].rule, "iifname \"eth7\" tcp dport 22 drop (not judged: iifname)");
}

TEST_F(NftConflictsTest, DropInAJumpedToChainIsPossible) {
  load(
      "table ip t {\n  chain sub {\n    tcp dport 22 drop\n    tcp dport 80 drop\n  }\n"
      "  chain input {\n    type filter hook input priority 0;\n    jump sub\n  }\n}\n");
  const FirewallReport report = inspect();
  ASSERT_EQ(report.conflicts.size(), 1U);
  const FirewallConflict& conflict = report.conflicts[0];
  EXPECT_EQ(conflict.kind, FirewallConflict::Kind::drops);
  EXPECT_FALSE(conflict.certain);
  EXPECT_EQ(conflict.chain, "sub");
  EXPECT_EQ(conflict.hook, "input");
  EXPECT_EQ(conflict.handle, handle("ip t sub", 0));
  EXPECT_EQ(conflict.ports, std::vector<PortKey>{ssh});
  EXPECT_EQ(conflict.rule, "tcp dport 22 drop (reached through jump from input handle " +
                               std::to_string(handle("ip t input", 0)) + ")");
}

TEST_F(NftConflictsTest, JitdsOwnTablesAreIgnored) {
  load(
      "table inet jitd {\n  chain input {\n    type filter hook input priority -10;\n"
      "    tcp dport 22 drop\n  }\n}\n"
      "table inet jitd_conntrack {\n  chain input {\n    type filter hook input priority 0; "
      "policy drop;\n  }\n}\n");
  EXPECT_TRUE(inspect().conflicts.empty());
}

TEST_F(NftConflictsTest, OutputAndForwardHooksAreIgnored) {
  load(
      "table ip t {\n  chain output {\n    type filter hook output priority 0; policy drop;\n"
      "    tcp dport 22 drop\n  }\n  chain forward {\n    type filter hook forward priority 0; "
      "policy drop;\n  }\n}\n");
  EXPECT_TRUE(inspect().conflicts.empty());
}

TEST_F(NftConflictsTest, PreroutingAndNetdevIngressAreInspected) {
  ASSERT_EQ(run("ip link add jitdc0 type veth peer name jitdc1").status, 0);
  load(
      "table ip t {\n  chain pre {\n    type filter hook prerouting priority -150;\n"
      "    tcp dport 22 drop\n  }\n}\n"
      "table netdev n {\n  chain in {\n    type filter hook ingress device jitdc0 priority 0;\n"
      "    tcp dport 22 drop\n  }\n}\n");
  const FirewallReport report = inspect();
  ASSERT_EQ(run("ip link del jitdc0").status, 0);
  ASSERT_EQ(report.conflicts.size(), 2U);
  for (const auto& conflict : report.conflicts) {
    EXPECT_TRUE(conflict.certain) << conflict.rule;
    EXPECT_EQ(conflict.rule, "tcp dport 22 drop");
  }
  const bool pre_first = report.conflicts[0].family == "ip";
  const FirewallConflict& pre = report.conflicts[pre_first ? 0 : 1];
  const FirewallConflict& ingress = report.conflicts[pre_first ? 1 : 0];
  EXPECT_EQ(pre.hook, "prerouting");
  EXPECT_EQ(pre.priority, -150);
  EXPECT_EQ(ingress.family, "netdev");
  EXPECT_EQ(ingress.hook, "ingress");
}

TEST_F(NftConflictsTest, VerdictMapIsJudgedPerVerdict) {
  load(input_chain("tcp dport vmap { 22 : drop, 80 : accept, 3389 : accept }"));
  const FirewallReport report = inspect({ssh, rdp});
  ASSERT_EQ(report.conflicts.size(), 2U);
  EXPECT_EQ(report.conflicts[0].kind, FirewallConflict::Kind::drops);
  EXPECT_EQ(report.conflicts[0].ports, std::vector<PortKey>{ssh});
  EXPECT_EQ(report.conflicts[0].rule, "tcp dport vmap { 22 } drop");
  EXPECT_EQ(report.conflicts[1].kind, FirewallConflict::Kind::accepts);
  EXPECT_EQ(report.conflicts[1].ports, std::vector<PortKey>{rdp});
}

// iptables-nft keeps its rules in nftables tables (ip filter INPUT): they are judged like any.
TEST_F(NftConflictsTest, IptablesNftStyleTable) {
  load(
      "table ip filter {\n  chain INPUT {\n    type filter hook input priority filter; "
      "policy accept;\n    ip protocol tcp tcp dport 22 counter drop\n  }\n}\n");
  const FirewallReport report = inspect();
  ASSERT_EQ(report.conflicts.size(), 1U);
  EXPECT_TRUE(report.conflicts[0].certain);
  EXPECT_EQ(report.conflicts[0].table, "filter");
  EXPECT_EQ(report.conflicts[0].chain, "INPUT");
  EXPECT_EQ(report.conflicts[0].rule, "tcp dport 22 drop");
}

TEST_F(NftConflictsTest, IptablesNftRules) {
  if (run("command -v iptables-nft").status != 0) {
    if (running_under_ci()) FAIL() << "iptables-nft missing (Debian package iptables)";
    GTEST_SKIP() << "iptables-nft missing (Debian package iptables)";
  }
  ASSERT_EQ(run("iptables-nft -w -A INPUT -p tcp --dport 22 -j DROP").status, 0);
  ASSERT_EQ(run("iptables-nft -w -A INPUT -p tcp -m multiport --dports 3389,23 -j REJECT").status,
            0);
  const FirewallReport report = inspect({ssh, rdp});
  ASSERT_EQ(report.conflicts.size(), 2U);
  EXPECT_TRUE(report.conflicts[0].certain);
  EXPECT_EQ(report.conflicts[0].rule, "tcp dport 22 drop");
  // xtables matches are opaque to netlink readers.
  EXPECT_FALSE(report.conflicts[1].certain);
  // 22 was dropped by the rule before.
  EXPECT_EQ(report.conflicts[1].ports, std::vector<PortKey>{rdp});
  EXPECT_EQ(report.conflicts[1].rule,
            "meta l4proto tcp xt match multiport reject (not judged: xt match multiport)");
}

// Legacy tables stay for the namespace's life, so this is the only test that makes them.
TEST_F(NftConflictsTest, LegacyIptablesTablesAreNamed) {
  if (run("command -v iptables-legacy").status != 0) {
    if (running_under_ci()) FAIL() << "iptables-legacy missing (Debian package iptables)";
    GTEST_SKIP() << "iptables-legacy missing (Debian package iptables)";
  }
  EXPECT_TRUE(inspect().legacy_iptables_tables.empty());
  ASSERT_EQ(run("iptables-legacy -w -A INPUT -p tcp --dport 22 -j DROP").status, 0);
  const FirewallReport report = inspect();
  EXPECT_TRUE(report.conflicts.empty());
  EXPECT_EQ(report.legacy_iptables_tables, std::vector<std::string>{"iptables filter"});
  ASSERT_EQ(report.notes.size(), 1U);
  EXPECT_NE(report.notes[0].find("jitd cannot judge"), std::string::npos) << report.notes[0];
}

}  // namespace

int main(int argc, char** argv) { return jitd::test::run_in_private_network_namespace(argc, argv); }
