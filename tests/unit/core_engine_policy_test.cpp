#include <gtest/gtest.h>

#include "engine_fixture.hpp"

namespace jitd::core {
namespace {

using namespace engine_fixture;

// ---------------------------------------------------------------- replace_policy

Policy policy_without_https() {
  Policy policy;
  policy.rules = {rule(ssh, {}, 3h), rule(dns, {}, 2h)};
  return policy;
}

TEST_F(CoreEngineTest, ReplacePolicyRevokesGrantsForARemovedPort) {
  const auto web = grant_ok(ask({https}, "10.0.0.5", 1h));
  const auto shell = grant_ok(ask({ssh}, "10.0.0.6", 1h));
  clock.advance(10min);
  trace();
  const auto journal_before = journal.calls.size();
  const auto applies_before = backend.applies.size();
  const auto change = engine.replace_policy(policy_without_https());
  ASSERT_TRUE(change.has_value()) << change.error().message;
  EXPECT_EQ(change->revoked, 1U);
  EXPECT_EQ(change->narrowed, 0U);
  EXPECT_EQ(change->clamped, 0U);

  EXPECT_EQ(calls_to(log, {"journal.", "backend."}),
            (std::vector<std::string>{"journal.end g1 Revoked PolicyChanged", "journal.sync",
                                      "backend.install"}));
  ASSERT_EQ(journal.calls.size(), journal_before + 1);
  EXPECT_EQ(ids_of(journal.replay()), std::vector<std::string>{shell.id});
  const auto revokes = audit.named("revoke");
  ASSERT_EQ(revokes.size(), 1U);
  EXPECT_EQ(revokes[0].grant_id, web.id);
  EXPECT_EQ(revokes[0].outcome, "revoked");
  EXPECT_EQ(revokes[0].reason, "PolicyChanged");
  EXPECT_EQ(revokes[0].user, "root");
  EXPECT_EQ(revokes[0].time, t0 + 10min);

  EXPECT_EQ(backend.applies.size(), applies_before);
  ASSERT_EQ(backend.installs.size(), 1U);
  EXPECT_EQ(backend.installs[0].protected_ports,
            (std::vector<PortKey>{ssh_key, dns_tcp, dns_udp}));
  EXPECT_EQ(backend.installs[0].grants,
            (std::vector<TimedElement>{{key("10.0.0.6", ssh_key), 50min}}));
  EXPECT_EQ(kernel_end("10.0.0.5", https_key), std::nullopt);
  EXPECT_EQ(kernel_end("10.0.0.6", ssh_key), shell.deadline);
  EXPECT_EQ(ids_of(engine.active_grants()), std::vector<std::string>{shell.id});
  EXPECT_EQ(engine.policy().rules.size(), 2U);
  EXPECT_FALSE(engine.kernel_pending());
  // The new policy is the one requests are checked against.
  refused(ask({https}, "10.0.0.5", 10min), ErrorCode::port_not_in_policy);
}

TEST_F(CoreEngineTest, ReplacePolicyNarrowsMultiPortAndAnyProtocolGrants) {
  const auto both = grant_ok(ask({ssh, https}, "10.0.0.5", 1h));
  const auto resolver = grant_ok(ask({dns}, "198.51.100.0/24", 2h));
  const auto journal_before = journal.calls.size();
  const auto applies_before = backend.applies.size();
  Policy policy;
  policy.rules = {rule(ssh, {}, 3h), rule(PortSpec{53, ProtocolSpec::tcp}, {}, 2h)};
  const auto change = engine.replace_policy(policy);
  ASSERT_TRUE(change.has_value()) << change.error().message;
  EXPECT_EQ(change->revoked, 0U);
  EXPECT_EQ(change->narrowed, 2U);
  EXPECT_EQ(change->clamped, 0U);

  ASSERT_EQ(journal.calls.size(), journal_before + 2);
  const auto& narrowed_both = journal.calls[journal_before];
  EXPECT_EQ(narrowed_both.kind, Kind::grant);
  Grant expected = both;
  expected.ports = {ssh};
  expect_same_grant(narrowed_both.grant, expected);
  EXPECT_EQ(narrowed_both.grant.status_reason, "PolicyChanged");
  const auto& narrowed_resolver = journal.calls[journal_before + 1];
  EXPECT_EQ(narrowed_resolver.kind, Kind::grant);
  expected = resolver;
  expected.ports = {PortSpec{53, ProtocolSpec::tcp}};
  expect_same_grant(narrowed_resolver.grant, expected);
  const auto replay = journal.replay();
  ASSERT_EQ(replay.size(), 2U);
  EXPECT_EQ(replay[0].grant.ports, std::vector<PortSpec>{ssh});
  EXPECT_EQ(replay[1].grant.ports, (std::vector<PortSpec>{PortSpec{53, ProtocolSpec::tcp}}));

  const auto active = engine.active_grants();
  ASSERT_EQ(active.size(), 2U);
  EXPECT_EQ(active[0].ports, std::vector<PortSpec>{ssh});
  EXPECT_EQ(active[1].ports, (std::vector<PortSpec>{PortSpec{53, ProtocolSpec::tcp}}));
  EXPECT_TRUE(audit.named("revoke").empty());
  const auto policy_events = audit.named("policy");
  ASSERT_EQ(policy_events.size(), 2U);
  EXPECT_EQ(policy_events[0].grant_id, both.id);
  EXPECT_EQ(policy_events[0].outcome, "narrowed");
  EXPECT_EQ(policy_events[0].ports, std::vector<PortSpec>{ssh});

  EXPECT_EQ(backend.applies.size(), applies_before);
  ASSERT_EQ(backend.installs.size(), 1U);
  EXPECT_EQ(backend.installs[0].grants,
            (std::vector<TimedElement>{{key("10.0.0.5", ssh_key), 1h},
                                       {key("198.51.100.0/24", dns_tcp), 2h}}));
  EXPECT_EQ(kernel_end("10.0.0.5", https_key), std::nullopt);
  EXPECT_EQ(kernel_end("198.51.100.1", dns_udp), std::nullopt);
  EXPECT_EQ(kernel_end("198.51.100.1", dns_tcp), resolver.deadline);
}

TEST_F(CoreEngineTest, ReplacePolicyRevokesOrNarrowsWhenAllowedSourcesShrink) {
  const auto inside = grant_ok(ask({https}, "10.0.0.5", 1h));
  const auto v6 = grant_ok(ask({https}, "fd00::5", 1h));
  const auto network = grant_ok(ask({https}, "10.0.0.0/24", 1h));  // wider than the new /25
  const auto mixed = grant_ok(ask({ssh, https}, "10.0.0.200", 1h));
  const auto journal_before = journal.calls.size();
  Policy policy = default_policy();
  policy.rules[1].allowed_sources = {prefix("10.0.0.0/25")};
  const auto change = engine.replace_policy(policy);
  ASSERT_TRUE(change.has_value()) << change.error().message;
  EXPECT_EQ(change->revoked, 2U);
  EXPECT_EQ(change->narrowed, 1U);
  EXPECT_EQ(change->clamped, 0U);

  ASSERT_EQ(journal.calls.size(), journal_before + 3);
  EXPECT_EQ(journal.calls[journal_before].kind, Kind::end);
  EXPECT_EQ(journal.calls[journal_before].id, v6.id);
  EXPECT_EQ(journal.calls[journal_before].reason, "PolicyChanged");
  EXPECT_EQ(journal.calls[journal_before + 1].kind, Kind::end);
  EXPECT_EQ(journal.calls[journal_before + 1].id, network.id);
  EXPECT_EQ(journal.calls[journal_before + 2].kind, Kind::grant);
  EXPECT_EQ(journal.calls[journal_before + 2].grant.id, mixed.id);
  EXPECT_EQ(journal.calls[journal_before + 2].grant.ports, std::vector<PortSpec>{ssh});

  const auto active = engine.active_grants();
  EXPECT_EQ(ids_of(active), (std::vector<std::string>{inside.id, mixed.id}));
  expect_same_grant(active[0], inside);
  EXPECT_EQ(backend.installs.back().grants,
            (std::vector<TimedElement>{{key("10.0.0.200", ssh_key), 1h},
                                       {key("10.0.0.5", https_key), 1h}}));
  EXPECT_EQ(kernel_end("10.0.0.200", https_key), std::nullopt);
  EXPECT_EQ(kernel_end("10.0.0.7", https_key), std::nullopt);
  EXPECT_EQ(kernel_end("fd00::5", https_key), std::nullopt);
}

TEST_F(CoreEngineTest, ReplacePolicyClampsGrantsToAShorterMaximum) {
  const auto long_one = grant_ok(ask({ssh}, "10.0.0.1", 3h));
  const auto short_one = grant_ok(ask({ssh}, "10.0.0.2", 45min));
  clock.advance(30min);
  clock.jump_wall(7min);  // the clamp must move the deadline, not re-derive it from UTC
  const auto journal_before = journal.calls.size();
  Policy policy = default_policy();
  policy.rules[0].max_duration = 1h;
  const auto change = engine.replace_policy(policy);
  ASSERT_TRUE(change.has_value()) << change.error().message;
  EXPECT_EQ(change->revoked, 0U);
  EXPECT_EQ(change->narrowed, 0U);
  EXPECT_EQ(change->clamped, 1U);

  ASSERT_EQ(journal.calls.size(), journal_before + 1);
  const auto& clamped = journal.calls.back();
  EXPECT_EQ(clamped.kind, Kind::grant);
  Grant expected = long_one;
  expected.end = t0 + 1h;
  expected.deadline = b0 + 1h;
  expect_same_grant(clamped.grant, expected);
  EXPECT_EQ(long_one.deadline - clamped.grant.deadline, long_one.end - clamped.grant.end);

  const auto active = engine.active_grants();
  ASSERT_EQ(active.size(), 2U);
  expect_same_grant(active[0], expected);
  expect_same_grant(active[1], short_one);
  EXPECT_EQ(remaining(active[0], clock.boot_now()), 30min);
  EXPECT_EQ(engine.next_expiry(), short_one.deadline);
  const auto policy_events = audit.named("policy");
  ASSERT_EQ(policy_events.size(), 1U);
  EXPECT_EQ(policy_events[0].grant_id, long_one.id);
  EXPECT_EQ(policy_events[0].end_time, "2026-11-24T01:00:00Z");

  ASSERT_EQ(backend.installs.size(), 1U);
  EXPECT_EQ(backend.installs[0].grants,
            (std::vector<TimedElement>{{key("10.0.0.1", ssh_key), 30min},
                                       {key("10.0.0.2", ssh_key), 15min}}));
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h);
  clock.advance(30min);
  EXPECT_TRUE(engine.active_grants().empty());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
}

TEST_F(CoreEngineTest, ReplacePolicyRevokesAGrantTheClampWouldEndInThePast) {
  const auto oldest = grant_ok(ask({ssh}, "10.0.0.1", 3h));
  clock.advance(1h);
  const auto at_edge = grant_ok(ask({ssh}, "10.0.0.2", 3h));
  clock.advance(30min);
  const auto recent = grant_ok(ask({ssh}, "10.0.0.3", 3h));
  clock.advance(30min);  // now t0 + 2h: with a 1h maximum, at_edge would end exactly now
  const auto journal_before = journal.calls.size();
  Policy policy = default_policy();
  policy.rules[0].max_duration = 1h;
  const auto change = engine.replace_policy(policy);
  ASSERT_TRUE(change.has_value()) << change.error().message;
  EXPECT_EQ(change->revoked, 2U);
  EXPECT_EQ(change->narrowed, 0U);
  EXPECT_EQ(change->clamped, 1U) << "a revoked grant was also counted as clamped";

  ASSERT_EQ(journal.calls.size(), journal_before + 3);
  EXPECT_EQ(journal.calls[journal_before].kind, Kind::end);
  EXPECT_EQ(journal.calls[journal_before].id, oldest.id);
  EXPECT_EQ(journal.calls[journal_before].status, GrantStatus::revoked);
  EXPECT_EQ(journal.calls[journal_before].reason, "PolicyChanged");
  EXPECT_EQ(journal.calls[journal_before + 1].kind, Kind::end);
  EXPECT_EQ(journal.calls[journal_before + 1].id, at_edge.id);
  EXPECT_EQ(journal.calls[journal_before + 2].kind, Kind::grant);
  EXPECT_EQ(journal.calls[journal_before + 2].grant.id, recent.id);
  EXPECT_EQ(journal.calls[journal_before + 2].grant.end, t0 + 2h + 30min);

  const auto revokes = audit.named("revoke");
  ASSERT_EQ(revokes.size(), 2U);
  EXPECT_EQ(revokes[0].grant_id, oldest.id);
  EXPECT_EQ(revokes[0].reason, "PolicyChanged");
  EXPECT_EQ(revokes[1].grant_id, at_edge.id);
  EXPECT_TRUE(audit.named("expire").empty());
  EXPECT_EQ(ids_of(engine.active_grants()), std::vector<std::string>{recent.id});
  EXPECT_EQ(backend.installs.back().grants,
            (std::vector<TimedElement>{{key("10.0.0.3", ssh_key), 30min}}));
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
  EXPECT_EQ(kernel_end("10.0.0.2", ssh_key), std::nullopt);
}

TEST_F(CoreEngineTest, ReplacePolicyLeavesUnaffectedGrantsUntouched) {
  const auto shell = grant_ok(ask({ssh}, "10.0.0.1", 2h));
  const auto web = grant_ok(ask({https}, "10.0.0.5", 1h));
  const auto resolver = grant_ok(ask({dns}, "10.0.0.0/24", 30min));
  clock.advance(10min);
  trace();
  const auto journal_before = journal.calls.size();
  const auto events_before = audit.events.size();
  const auto applies_before = backend.applies.size();
  Policy policy = default_policy();  // only wider: a new port, a longer maximum, more sources
  policy.rules[0].max_duration = 4h;
  policy.rules[1].allowed_sources.push_back(prefix("10.1.0.0/16"));
  policy.rules.push_back(rule(PortSpec{8080, ProtocolSpec::tcp}, {}, 1h));
  const auto change = engine.replace_policy(policy);
  ASSERT_TRUE(change.has_value()) << change.error().message;
  EXPECT_EQ(change->revoked, 0U);
  EXPECT_EQ(change->narrowed, 0U);
  EXPECT_EQ(change->clamped, 0U);

  EXPECT_EQ(log.calls, std::vector<std::string>{"backend.install"});
  EXPECT_EQ(journal.calls.size(), journal_before);
  EXPECT_EQ(audit.events.size(), events_before);
  EXPECT_EQ(backend.applies.size(), applies_before);
  const auto active = engine.active_grants();
  ASSERT_EQ(active.size(), 3U);
  expect_same_grant(active[0], shell);
  expect_same_grant(active[1], web);
  expect_same_grant(active[2], resolver);
  ASSERT_EQ(backend.installs.size(), 1U);
  const auto& spec = backend.installs[0];
  EXPECT_NE(std::find(spec.protected_ports.begin(), spec.protected_ports.end(),
                      PortKey{Protocol::tcp, 8080}),
            spec.protected_ports.end());
  EXPECT_EQ(spec.grants.size(), 4U);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), shell.deadline);
  EXPECT_EQ(kernel_end("10.0.0.5", https_key), web.deadline);
  EXPECT_EQ(kernel_end("10.0.0.9", dns_udp), resolver.deadline);
}

TEST_F(CoreEngineTest, ReplacePolicyCountsEachGrantOnceWithOneInstallAndNoApply) {
  const auto both = grant_ok(ask({ssh, https}, "10.0.0.5", 1h));   // loses 443, clamped to 30m
  const auto resolver = grant_ok(ask({dns}, "10.0.0.0/24", 2h));   // 53 is gone: revoked
  const auto shell = grant_ok(ask({ssh}, "203.0.113.7", 20min));   // untouched
  const auto journal_before = journal.calls.size();
  const auto applies_before = backend.applies.size();
  Policy policy;
  policy.rules = {rule(ssh, {}, 30min)};
  const auto change = engine.replace_policy(policy);
  ASSERT_TRUE(change.has_value()) << change.error().message;
  EXPECT_EQ(change->revoked, 1U);
  EXPECT_EQ(change->narrowed, 1U);
  EXPECT_EQ(change->clamped, 1U);

  // One record per changed grant: the ends first, then the narrowed grants.
  ASSERT_EQ(journal.calls.size(), journal_before + 2);
  EXPECT_EQ(journal.calls[journal_before].kind, Kind::end);
  EXPECT_EQ(journal.calls[journal_before].id, resolver.id);
  const auto& changed = journal.calls[journal_before + 1];
  EXPECT_EQ(changed.kind, Kind::grant);
  EXPECT_EQ(changed.grant.id, both.id);
  EXPECT_EQ(changed.grant.ports, std::vector<PortSpec>{ssh});
  EXPECT_EQ(changed.grant.end, t0 + 30min);
  EXPECT_EQ(changed.grant.deadline, b0 + 30min);

  EXPECT_EQ(backend.applies.size(), applies_before);
  ASSERT_EQ(backend.installs.size(), 1U);
  EXPECT_EQ(backend.installs[0].protected_ports, std::vector<PortKey>{ssh_key});
  EXPECT_EQ(backend.installs[0].grants,
            (std::vector<TimedElement>{{key("10.0.0.5", ssh_key), 30min},
                                       {key("203.0.113.7", ssh_key), 20min}}));
  EXPECT_EQ(ids_of(engine.active_grants()), (std::vector<std::string>{both.id, shell.id}));
}
// A port's mode lives in the kernel's ruleset: switching it is a reload that re-installs, and
// leaves the grants as they were.
TEST_F(CoreEngineTest, ReplacePolicyInstallsAChangedModeAndKeepsTheGrants) {
  const auto shell = grant_ok(ask({ssh}, "10.0.0.5", 1h));
  Policy audited = engine.policy();
  audited.rules[0].mode = Mode::audit;
  auto change = engine.replace_policy(audited);
  ASSERT_TRUE(change.has_value()) << change.error().message;
  EXPECT_EQ(change->revoked + change->narrowed + change->clamped, 0U);
  ASSERT_EQ(backend.installs.size(), 1U);
  EXPECT_EQ(backend.installs[0].audited_ports, std::vector<PortKey>{ssh_key});
  EXPECT_EQ(backend.installs[0].grants,
            (std::vector<TimedElement>{{key("10.0.0.5", ssh_key), 1h}}));

  // Back to enforce, here by the default the rule no longer overrides.
  Policy enforced = engine.policy();
  enforced.rules[0].mode.reset();
  enforced.default_mode = Mode::enforce;
  change = engine.replace_policy(enforced);
  ASSERT_TRUE(change.has_value()) << change.error().message;
  ASSERT_EQ(backend.installs.size(), 2U);
  EXPECT_TRUE(backend.installs[1].audited_ports.empty());
  EXPECT_EQ(ids_of(engine.active_grants()), std::vector<std::string>{shell.id});

  // A policy-wide audit default reaches every port whose rule sets no mode of its own.
  Policy rollout = engine.policy();
  rollout.default_mode = Mode::audit;
  rollout.rules[0].mode = Mode::enforce;
  ASSERT_TRUE(engine.replace_policy(rollout).has_value());
  ASSERT_EQ(backend.installs.size(), 3U);
  auto expected = rollout.protected_ports();
  std::erase(expected, ssh_key);
  EXPECT_EQ(backend.installs[2].audited_ports, expected);
}


TEST_F(CoreEngineTest, ReplacePolicyInstallFailureLeavesTheKernelPending) {
  const auto shell = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  const auto web = grant_ok(ask({https}, "10.0.0.5", 1h));
  backend.fail_next_install(EPERM);
  const auto change = engine.replace_policy(policy_without_https());
  ASSERT_FALSE(change.has_value());
  EXPECT_EQ(change.error().code, ErrorCode::kernel);
  EXPECT_EQ(change.error().sys_errno, EPERM);
  EXPECT_TRUE(engine.kernel_pending());
  // The journal and the engine already follow the new policy; the kernel does not yet.
  EXPECT_EQ(engine.policy().rules.size(), 2U);
  EXPECT_EQ(ids_of(engine.active_grants()), std::vector<std::string>{shell.id});
  EXPECT_EQ(ids_of(journal.replay()), std::vector<std::string>{shell.id});
  EXPECT_EQ(kernel_end("10.0.0.5", https_key), web.deadline);

  retry_all_pending();
  EXPECT_FALSE(engine.kernel_pending());
  EXPECT_EQ(backend.installs.size(), 2U);
  EXPECT_EQ(kernel_end("10.0.0.5", https_key), std::nullopt);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), shell.deadline);
}

}  // namespace
}  // namespace jitd::core
