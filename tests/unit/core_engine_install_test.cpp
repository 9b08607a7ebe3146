#include <gtest/gtest.h>

#include "engine_fixture.hpp"

namespace jitd::core {
namespace {

using namespace engine_fixture;

// ---------------------------------------------------------------- install

Policy install_policy() {
  Policy policy = default_policy();
  policy.rules[1].any_source = true;  // 443 from anywhere, to keep the allow-list simple
  PermanentAllow office;
  office.sources = {prefix("10.0.0.0/8")};
  office.ports = {ssh};
  PermanentAllow vpn;  // overlaps the office entry on 22/tcp
  vpn.sources = {prefix("10.1.0.0/16"), prefix("172.16.0.0/12")};
  vpn.ports = {ssh};
  PermanentAllow bastion_a;  // no ports: every protected port
  bastion_a.sources = {prefix("192.168.0.0/24")};
  PermanentAllow bastion_b;  // adjacent to bastion_a with the same ports
  bastion_b.sources = {prefix("192.168.1.0/24")};
  PermanentAllow resolvers;
  resolvers.sources = {prefix("fd00::/8")};
  resolvers.ports = {dns};
  policy.permanent_allow = {office, vpn, bastion_a, bastion_b, resolvers};
  return policy;
}

class CoreEngineInstallTest : public CoreEngineTest {
 protected:
  CoreEngineInstallTest() : CoreEngineTest(install_policy()) {}
};

TEST_F(CoreEngineInstallTest, InstallPassesProtectedPortsAndMergedAllowList) {
  ASSERT_TRUE(engine.install().has_value());
  ASSERT_EQ(backend.installs.size(), 1U);
  const auto& spec = backend.installs[0];
  EXPECT_EQ(spec.protected_ports, (std::vector<PortKey>{ssh_key, dns_tcp, https_key, dns_udp}));
  const std::vector<ElementKey> expected = {
      key("10.0.0.0/8", ssh_key),       key("172.16.0.0/12", ssh_key),
      key("192.168.0.0/23", ssh_key),   key("192.168.0.0/23", dns_tcp),
      key("192.168.0.0/23", https_key), key("192.168.0.0/23", dns_udp),
      key("fd00::/8", dns_tcp),         key("fd00::/8", dns_udp)};
  EXPECT_EQ(spec.permanent, expected);
  EXPECT_TRUE(spec.grants.empty());
  EXPECT_TRUE(backend.applies.empty());
}

TEST_F(CoreEngineInstallTest, InstallDropsAllowListPortsThePolicyDoesNotProtect) {
  Policy policy = install_policy();
  PermanentAllow extra;
  extra.sources = {prefix("198.51.100.0/24")};
  extra.ports = {PortSpec{22, ProtocolSpec::any}, PortSpec{8080, ProtocolSpec::tcp}};
  policy.permanent_allow = {extra};
  AccessEngine custom(
      backend, journal, audit, clock, [] { return std::string("x"); }, policy);
  ASSERT_TRUE(custom.install().has_value());
  EXPECT_EQ(backend.installs.back().permanent,
            (std::vector<ElementKey>{key("198.51.100.0/24", ssh_key)}));
}

TEST_F(CoreEngineInstallTest, InstallWithoutAllowList) {
  AccessEngine custom(
      backend, journal, audit, clock, [] { return std::string("x"); }, default_policy());
  ASSERT_TRUE(custom.install().has_value());
  EXPECT_TRUE(backend.installs.back().permanent.empty());
  EXPECT_EQ(backend.installs.back().protected_ports,
            (std::vector<PortKey>{ssh_key, dns_tcp, https_key, dns_udp}));
}

TEST_F(CoreEngineInstallTest, InstallCarriesLiveGrantsWithRemainingTime) {
  ASSERT_TRUE(engine.install().has_value());
  grant_ok(ask({ssh}, "203.0.113.0/24", 1h));
  grant_ok(ask({ssh}, "203.0.113.9", 2h));
  clock.advance(15min);
  ASSERT_TRUE(engine.install().has_value());
  const auto& spec = backend.installs.back();
  EXPECT_EQ(spec.grants,
            (std::vector<TimedElement>{
                {key(Family::ipv4, ip4(203, 0, 113, 0), ip4(203, 0, 113, 8), ssh_key), 45min},
                {key("203.0.113.9", ssh_key), 105min},
                {key(Family::ipv4, ip4(203, 0, 113, 10), ip4(203, 0, 113, 255), ssh_key), 45min}}));
  EXPECT_EQ(spec.permanent.size(), 8U);

  // Once the network grant has ended, a new install carries only the host.
  clock.advance(1h);
  ASSERT_TRUE(engine.install().has_value());
  EXPECT_EQ(backend.installs.back().grants,
            (std::vector<TimedElement>{{key("203.0.113.9", ssh_key), 45min}}));

  // And requests after the install start from what the install put in the kernel.
  grant_ok(ask({ssh}, "203.0.113.9", 2h));
  EXPECT_EQ(backend.applies.back().remove, std::vector<ElementKey>{key("203.0.113.9", ssh_key)});
  EXPECT_EQ(kernel_end("203.0.113.9", ssh_key), b0 + 75min + 2h);
}

TEST_F(CoreEngineInstallTest, EnforcementSpecMatchesInstall) {
  grant_ok(ask({dns}, "10.9.0.0/16", 1h));
  ASSERT_TRUE(engine.install().has_value());
  const auto spec = engine.enforcement_spec(clock.boot_now());
  EXPECT_EQ(spec.protected_ports, backend.installs.back().protected_ports);
  EXPECT_EQ(spec.permanent, backend.installs.back().permanent);
  EXPECT_EQ(spec.grants, backend.installs.back().grants);
  EXPECT_EQ(spec.grants.size(), 2U);
}

// ---------------------------------------------------------------- repair

TEST_F(CoreEngineTest, RepairAuditsTamperAndReinstallsLiveGrants) {
  const auto shell = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  const auto resolver = grant_ok(ask({dns}, "10.0.0.2", 2h));
  ASSERT_TRUE(backend.uninstall().has_value());  // someone flushed jitd's table
  clock.advance(10min);
  const auto journal_before = journal.calls.size();
  const auto applies_before = backend.applies.size();
  const auto repaired = engine.repair("table inet jitd deleted by another tool");
  ASSERT_TRUE(repaired.has_value()) << repaired.error().message;

  const auto& event = audit.events.back();
  EXPECT_EQ(event.event, "tamper");
  EXPECT_EQ(event.outcome, "restored");
  EXPECT_EQ(event.reason, "table inet jitd deleted by another tool");
  EXPECT_EQ(event.user, "jitd");
  EXPECT_EQ(event.time, t0 + 10min);
  EXPECT_EQ(audit.named("tamper").size(), 1U);

  ASSERT_EQ(backend.installs.size(), 1U);
  EXPECT_EQ(backend.installs[0].protected_ports,
            (std::vector<PortKey>{ssh_key, dns_tcp, https_key, dns_udp}));
  EXPECT_EQ(backend.installs[0].grants,
            (std::vector<TimedElement>{{key("10.0.0.1", ssh_key), 50min},
                                       {key("10.0.0.2", dns_tcp), 110min},
                                       {key("10.0.0.2", dns_udp), 110min}}));
  EXPECT_EQ(backend.applies.size(), applies_before);
  EXPECT_EQ(journal.calls.size(), journal_before);
  EXPECT_FALSE(engine.kernel_pending());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), shell.deadline);
  EXPECT_EQ(kernel_end("10.0.0.2", dns_udp), resolver.deadline);
  EXPECT_EQ(engine.active_grants().size(), 2U);
}

TEST_F(CoreEngineTest, FailedRepairIsAuditedAndLeftPending) {
  const auto shell = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  ASSERT_TRUE(backend.uninstall().has_value());
  backend.fail_next_install(EPERM);
  const auto repaired = engine.repair("rule jitd-drop deleted");
  ASSERT_FALSE(repaired.has_value());
  EXPECT_EQ(repaired.error().code, ErrorCode::kernel);
  const auto& event = audit.events.back();
  EXPECT_EQ(event.event, "tamper");
  EXPECT_EQ(event.outcome, "failed");
  EXPECT_EQ(event.reason.rfind("rule jitd-drop deleted", 0), 0U) << event.reason;
  EXPECT_NE(event.reason.find("injected install failure"), std::string::npos) << event.reason;
  EXPECT_TRUE(engine.kernel_pending());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);

  clock.advance(1min);
  retry_all_pending();
  EXPECT_FALSE(engine.kernel_pending());
  EXPECT_EQ(backend.installs.back().grants,
            (std::vector<TimedElement>{{key("10.0.0.1", ssh_key), 59min}}));
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), shell.deadline);
}

TEST_F(CoreEngineTest, RequestAfterFailedRepairInstallsTheWholeTable) {
  const auto network = grant_ok(ask({ssh}, "10.0.0.0/24", 1h));
  ASSERT_TRUE(backend.uninstall().has_value());  // someone flushed jitd's table
  backend.fail_next_install(EPERM);
  ASSERT_FALSE(engine.repair("table inet jitd deleted by another tool").has_value());

  // The kernel holds nothing, whatever the engine last tried to install.
  const auto host = grant_ok(ask({ssh}, "10.0.0.7", 30min));
  EXPECT_EQ(kernel_end("10.0.0.7", ssh_key), network.deadline);
  EXPECT_EQ(kernel_end("10.0.0.8", ssh_key), network.deadline);
  EXPECT_FALSE(engine.kernel_pending());
  EXPECT_EQ(ids_of(engine.active_grants()), (std::vector<std::string>{network.id, host.id}));
}

TEST_F(CoreEngineTest, RevokeAfterFailedRepairInstallsTheWholeTable) {
  const auto shell = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  const auto other = grant_ok(ask({ssh}, "10.0.0.2", 1h));
  ASSERT_TRUE(backend.uninstall().has_value());
  backend.fail_next_install(EPERM);
  ASSERT_FALSE(engine.repair("table inet jitd deleted by another tool").has_value());

  const auto revoked = engine.revoke(admin, shell.id);
  ASSERT_TRUE(revoked.has_value()) << revoked.error().message;
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
  EXPECT_EQ(kernel_end("10.0.0.2", ssh_key), other.deadline);
  EXPECT_FALSE(engine.kernel_pending());
}

// Lost ruleset events are checked by reading the table back, not by a blind re-install.
TEST_F(CoreEngineTest, KernelIntactComparesTheTableReadBack) {
  const auto shell = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  grant_ok(ask({ssh}, "10.0.0.0/24", 30min));
  ASSERT_TRUE(engine.install().has_value());
  clock.advance(10min);  // timeouts counted down alike in both
  auto intact = engine.kernel_intact();
  ASSERT_TRUE(intact.has_value()) << intact.error().message;
  EXPECT_TRUE(*intact);

  // Someone took one element out while the events were lost.
  ASSERT_TRUE(backend.apply(ElementChanges{{key("10.0.0.1", ssh_key)}, {}}).has_value());
  intact = engine.kernel_intact();
  ASSERT_TRUE(intact.has_value());
  EXPECT_FALSE(*intact);
  ASSERT_TRUE(engine.repair("events lost (ENOBUFS); the table read back differs").has_value());
  EXPECT_TRUE(*engine.kernel_intact());

  // ... or gave it a longer timeout.
  ASSERT_TRUE(
      backend.apply(ElementChanges{{key("10.0.0.1", ssh_key)}, {{key("10.0.0.1", ssh_key), 3h}}})
          .has_value());
  EXPECT_FALSE(*engine.kernel_intact());

  // ... or switched a port to audit mode, which lets every source through.
  ASSERT_TRUE(engine.install().has_value());
  ASSERT_TRUE(*engine.kernel_intact());
  backend.installs.back().audited_ports.push_back(ssh_key);
  EXPECT_FALSE(*engine.kernel_intact());

  // ... or deleted the table.
  ASSERT_TRUE(engine.install().has_value());
  ASSERT_TRUE(backend.uninstall().has_value());
  EXPECT_FALSE(*engine.kernel_intact());
  EXPECT_EQ(shell.id, "g1");
}

}  // namespace
}  // namespace jitd::core
