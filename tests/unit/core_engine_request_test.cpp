#include <gtest/gtest.h>

#include "engine_fixture.hpp"

namespace jitd::core {
namespace {

using namespace engine_fixture;

// ---------------------------------------------------------------- granting

TEST_F(CoreEngineTest, GrantWithDuration) {
  clock.advance(7s);
  const auto grant = grant_ok(ask({ssh}, "203.0.113.7", 1h));
  EXPECT_EQ(grant.id, "g1");
  EXPECT_EQ(grant.requestor.uid, 0U);
  EXPECT_EQ(grant.requestor.name, "root");
  EXPECT_EQ(grant.source, prefix("203.0.113.7"));
  EXPECT_EQ(grant.ports, std::vector<PortSpec>{ssh});
  EXPECT_EQ(grant.start, t0 + 7s);
  EXPECT_EQ(grant.end, t0 + 7s + 1h);
  EXPECT_EQ(grant.deadline, b0 + 7s + 1h);
  EXPECT_EQ(grant.justification, "ticket OPS-1");
  EXPECT_EQ(grant.status, GrantStatus::initiated);

  ASSERT_EQ(backend.applies.size(), 1U);
  EXPECT_TRUE(backend.applies[0].remove.empty());
  EXPECT_EQ(backend.applies[0].add,
            (std::vector<TimedElement>{{key("203.0.113.7", ssh_key), 1h}}));
  EXPECT_EQ(kernel_end("203.0.113.7", ssh_key), b0 + 7s + 1h);
  EXPECT_EQ(kernel_end("203.0.113.8", ssh_key), std::nullopt);

  ASSERT_EQ(audit.events.size(), 1U);
  const auto& event = audit.events[0];
  EXPECT_EQ(event.event, "request");
  EXPECT_EQ(event.outcome, "granted");
  EXPECT_EQ(event.grant_id, "g1");
  EXPECT_EQ(event.time, t0 + 7s);
  EXPECT_EQ(event.uid, 0U);
  EXPECT_EQ(event.user, "root");
  EXPECT_EQ(event.source, "203.0.113.7");
  EXPECT_EQ(event.ports, std::vector<PortSpec>{ssh});
  EXPECT_EQ(event.justification, "ticket OPS-1");
  EXPECT_EQ(event.end_time, "2026-11-24T01:00:07Z");

  const auto active = engine.active_grants();
  ASSERT_EQ(active.size(), 1U);
  EXPECT_EQ(active[0].id, "g1");
  EXPECT_EQ(engine.next_expiry(), b0 + 7s + 1h);
}

TEST_F(CoreEngineTest, GrantWithEndTime) {
  clock.advance(10min + 250ms);
  const auto grant = grant_ok(ask({ssh}, "2001:db8::5", std::nullopt, t0 + 2h));
  EXPECT_EQ(grant.start, t0 + 10min + 250ms);
  EXPECT_EQ(grant.end, t0 + 2h);
  ASSERT_EQ(backend.applies.size(), 1U);
  EXPECT_EQ(backend.applies[0].add,
            (std::vector<TimedElement>{{key("2001:db8::5", ssh_key), 110min - 250ms}}));
  EXPECT_EQ(audit.events.back().end_time, "2026-11-24T02:00:00Z");
}

TEST_F(CoreEngineTest, GrantExactlyAtMaxDuration) {
  const auto grant = grant_ok(ask({https}, "10.0.0.9", 1h));
  EXPECT_EQ(grant.end, t0 + 1h);
  const auto by_end = grant_ok(ask({https}, "10.0.0.10", std::nullopt, t0 + 1h));
  EXPECT_EQ(by_end.end, t0 + 1h);
}

TEST_F(CoreEngineTest, GrantForAnyProtocolCoversTcpAndUdp) {
  grant_ok(ask({dns}, "198.51.100.0/24", 30min));
  ASSERT_EQ(backend.applies.size(), 1U);
  std::vector<TimedElement> added = backend.applies[0].add;
  std::sort(added.begin(), added.end());
  EXPECT_EQ(added, (std::vector<TimedElement>{{key("198.51.100.0/24", dns_tcp), 30min},
                                             {key("198.51.100.0/24", dns_udp), 30min}}));
}

TEST_F(CoreEngineTest, MultiPortGrantIsOneTransaction) {
  const auto grant =
      grant_ok(ask({ssh, PortSpec{53, ProtocolSpec::udp}, https}, "10.0.0.0/28", 45min));
  EXPECT_EQ(grant.ports.size(), 3U);
  ASSERT_EQ(backend.applies.size(), 1U);
  EXPECT_EQ(backend.applies[0].add.size(), 3U);
  EXPECT_EQ(kernel_end("10.0.0.15", ssh_key), b0 + 45min);
  EXPECT_EQ(kernel_end("10.0.0.15", dns_udp), b0 + 45min);
  EXPECT_EQ(kernel_end("10.0.0.15", https_key), b0 + 45min);
  EXPECT_EQ(kernel_end("10.0.0.15", dns_tcp), std::nullopt);
  EXPECT_EQ(kernel_end("10.0.0.16", ssh_key), std::nullopt);
}

TEST_F(CoreEngineTest, SourceStrictlyInsideAllowedPrefixAccepted) {
  grant_ok(ask({https}, "10.0.0.0/25", 10min));
  grant_ok(ask({https}, "10.0.0.77", 10min));
  grant_ok(ask({https}, "10.0.0.255", 10min));
  grant_ok(ask({https}, "fd00::5", 10min));
  grant_ok(ask({https}, "fd00::/96", 10min));
  grant_ok(ask({https}, "10.0.0.0/24", 10min));  // equal to the allowed prefix
  EXPECT_EQ(engine.active_grants().size(), 6U);
}

// ---------------------------------------------------------------- refusals

TEST_F(CoreEngineTest, RefusesPortNotInPolicy) {
  const auto error = refused(ask({PortSpec{23, ProtocolSpec::tcp}}, "10.0.0.1", 10min),
                             ErrorCode::port_not_in_policy);
  EXPECT_NE(error.message.find("23/tcp"), std::string::npos) << error.message;
}

TEST_F(CoreEngineTest, RefusesUdpOnTcpRule) {
  const auto error = refused(ask({PortSpec{22, ProtocolSpec::udp}}, "10.0.0.1", 10min),
                             ErrorCode::port_not_in_policy);
  EXPECT_NE(error.message.find("22/udp"), std::string::npos) << error.message;
}

TEST_F(CoreEngineTest, RefusesAnyProtocolOnTcpOnlyRule) {
  refused(ask({PortSpec{22, ProtocolSpec::any}}, "10.0.0.1", 10min),
          ErrorCode::port_not_in_policy);
}

TEST_F(CoreEngineTest, RefusesSourceOutsideAllowedPrefixes) {
  refused(ask({https}, "10.0.1.5", 10min), ErrorCode::source_not_allowed);
  refused(ask({https}, "10.0.0.0/16", 10min), ErrorCode::source_not_allowed);  // wider
  refused(ask({https}, "10.0.0.0/23", 10min), ErrorCode::source_not_allowed);
  refused(ask({https}, "0.0.0.0/0", 10min), ErrorCode::source_not_allowed);
  refused(ask({https}, "fd00:0:0:1::1", 10min), ErrorCode::source_not_allowed);
  refused(ask({https}, "fd00::/48", 10min), ErrorCode::source_not_allowed);
  const auto error = refused(ask({https}, "192.0.2.1", 10min), ErrorCode::source_not_allowed);
  EXPECT_NE(error.message.find("192.0.2.1"), std::string::npos) << error.message;
}

TEST_F(CoreEngineTest, RefusesDurationOverMaxWithoutShortening) {
  const auto error = refused(ask({https}, "10.0.0.1", 1h + 1s), ErrorCode::duration_too_long);
  EXPECT_NE(error.message.find("PT1H"), std::string::npos) << error.message;
  refused(ask({ssh}, "10.0.0.1", 3h + 1ms), ErrorCode::duration_too_long);
  refused(ask({https}, "10.0.0.1", std::nullopt, t0 + 1h + 1ms), ErrorCode::duration_too_long);
  // The longest of several ports does not lift a shorter port's limit.
  refused(ask({ssh, https}, "10.0.0.1", 2h), ErrorCode::duration_too_long);
  EXPECT_TRUE(engine.active_grants().empty());
}

TEST_F(CoreEngineTest, RefusesEndTimeNotInFuture) {
  clock.advance(1h);
  refused(ask({ssh}, "10.0.0.1", std::nullopt, t0 + 1h - 1s), ErrorCode::end_time_in_past);
  refused(ask({ssh}, "10.0.0.1", std::nullopt, t0 + 1h), ErrorCode::end_time_in_past);
  refused(ask({ssh}, "10.0.0.1", std::nullopt, t0), ErrorCode::end_time_in_past);
}

TEST_F(CoreEngineTest, RefusesBothDurationAndEndTime) {
  refused(ask({ssh}, "10.0.0.1", 10min, t0 + 10min), ErrorCode::invalid_request);
}

// As Azure's portal: a request that names no length gets the longest its ports allow (the
// shortest maximum among them).
TEST_F(CoreEngineTest, RequestWithoutDurationGetsTheRulesMaximum) {
  EXPECT_EQ(grant_ok(ask({ssh}, "10.0.0.1", std::nullopt)).end, t0 + 3h);
  EXPECT_EQ(grant_ok(ask({ssh, https}, "10.0.0.2", std::nullopt)).end, t0 + 1h);
}


TEST_F(CoreEngineTest, RefusesNonPositiveDuration) {
  refused(ask({ssh}, "10.0.0.1", 0ms), ErrorCode::invalid_argument);
  refused(ask({ssh}, "10.0.0.1", -5min), ErrorCode::invalid_argument);
}

TEST_F(CoreEngineTest, RefusesDuplicatePort) {
  refused(ask({ssh, ssh}, "10.0.0.1", 10min), ErrorCode::invalid_request);
  refused(ask({dns, PortSpec{53, ProtocolSpec::udp}}, "10.0.0.1", 10min),
          ErrorCode::invalid_request);
  refused(ask({PortSpec{53, ProtocolSpec::tcp}, dns}, "10.0.0.1", 10min),
          ErrorCode::invalid_request);
}

TEST_F(CoreEngineTest, RefusesEmptyPortList) {
  refused(ask({}, "10.0.0.1", 10min), ErrorCode::invalid_request);
}

TEST_F(CoreEngineTest, RefusesCallerWithoutMayManage) {
  const auto error = refused(ask({ssh}, "10.0.0.1", 10min), ErrorCode::forbidden, mallory);
  EXPECT_NE(error.message.find("mallory"), std::string::npos) << error.message;
}

TEST_F(CoreEngineTest, MultiPortRequestIsAllOrNothing) {
  refused(ask({ssh, PortSpec{23, ProtocolSpec::tcp}}, "10.0.0.1", 10min),
          ErrorCode::port_not_in_policy);
  refused(ask({ssh, https}, "192.0.2.1", 10min), ErrorCode::source_not_allowed);
  refused(ask({dns, PortSpec{22, ProtocolSpec::udp}}, "10.0.0.1", 10min),
          ErrorCode::port_not_in_policy);
  EXPECT_TRUE(backend.applies.empty());
  EXPECT_TRUE(backend.live_elements().empty());
}

TEST_F(CoreEngineTest, RefusalLeavesExistingGrantsAlone) {
  grant_ok(ask({ssh}, "10.0.0.1", 1h));
  refused(ask({ssh}, "10.0.0.1", 4h), ErrorCode::duration_too_long);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h);
  EXPECT_EQ(engine.active_grants().size(), 1U);
}

// ---------------------------------------------------------------- backend failures

TEST_F(CoreEngineTest, BackendFailureFailsRequestAndStoresNothing) {
  backend.fail_next_apply(ENOBUFS);
  const auto result = engine.request(admin, ask({ssh}, "10.0.0.1", 1h));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::kernel);
  EXPECT_EQ(result.error().sys_errno, ENOBUFS);
  EXPECT_EQ(backend.applies.size(), 1U);
  EXPECT_TRUE(engine.active_grants().empty());
  EXPECT_EQ(engine.next_expiry(), std::nullopt);
  ASSERT_EQ(audit.events.size(), 1U);
  EXPECT_EQ(audit.events[0].event, "request");
  EXPECT_EQ(audit.events[0].outcome, "failed");
  EXPECT_NE(audit.events[0].reason.find("injected failure"), std::string::npos);

  // The failed apply may still have committed: the next request replaces the whole table,
  // which holds only what the engine knows is live.
  const auto later = grant_ok(ask({ssh}, "10.0.0.1", 30min));
  EXPECT_EQ(backend.applies.size(), 1U);
  ASSERT_EQ(backend.installs.size(), 1U);
  EXPECT_EQ(backend.installs[0].grants,
            (std::vector<TimedElement>{{key("10.0.0.1", ssh_key), 30min}}));
  EXPECT_FALSE(engine.kernel_pending());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 30min);
  EXPECT_EQ(engine.active_grants().size(), 1U);
  EXPECT_EQ(audit.events.back().outcome, "granted");
  EXPECT_EQ(audit.events.back().grant_id, later.id);
}

TEST_F(CoreEngineTest, BackendFailureKeepsPreviousKernelStateInMind) {
  grant_ok(ask({ssh}, "10.0.0.0/24", 1h));
  backend.fail_next_apply();
  ASSERT_FALSE(engine.request(admin, ask({ssh}, "10.0.0.7", 2h)).has_value());
  EXPECT_EQ(kernel_end("10.0.0.7", ssh_key), b0 + 1h);
  // The retry replaces the whole table, so it need not know what the failed apply left.
  grant_ok(ask({ssh}, "10.0.0.7", 2h));
  EXPECT_EQ(backend.applies.size(), 2U);
  ASSERT_EQ(backend.installs.size(), 1U);
  EXPECT_EQ(backend.installs[0].grants,
            (std::vector<TimedElement>{
                {key(Family::ipv4, ip4(10, 0, 0, 0), ip4(10, 0, 0, 6), ssh_key), 1h},
                {key("10.0.0.7", ssh_key), 2h},
                {key(Family::ipv4, ip4(10, 0, 0, 8), ip4(10, 0, 0, 255), ssh_key), 1h}}));
  EXPECT_EQ(kernel_end("10.0.0.7", ssh_key), b0 + 2h);
  EXPECT_EQ(kernel_end("10.0.0.8", ssh_key), b0 + 1h);
}

TEST_F(CoreEngineTest, BackendFailureOnRevokeEndsGrantAndLeavesKernelPending) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  const auto other = grant_ok(ask({https}, "10.0.0.2", 1h));
  EXPECT_FALSE(engine.kernel_pending());
  backend.fail_next_apply(EPERM);
  const auto result = engine.revoke(admin, grant.id);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::kernel);
  EXPECT_EQ(result.error().sys_errno, EPERM);
  EXPECT_NE(result.error().message.find(grant.id), std::string::npos) << result.error().message;
  EXPECT_NE(result.error().message.find("injected failure"), std::string::npos);

  // The end is journaled, so the grant is over for the engine even though the kernel
  // still holds its element until the retry.
  ASSERT_EQ(journal.recorded(FakeJournal::Call::Kind::end).size(), 1U);
  EXPECT_EQ(journal.recorded(FakeJournal::Call::Kind::end)[0].id, grant.id);
  ASSERT_EQ(engine.active_grants().size(), 1U);
  EXPECT_EQ(engine.active_grants()[0].id, other.id);
  EXPECT_EQ(engine.next_expiry(), other.deadline);
  EXPECT_TRUE(engine.kernel_pending());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h);
  EXPECT_EQ(audit.events.back().event, "revoke");
  EXPECT_EQ(audit.events.back().outcome, "revoked");
  EXPECT_EQ(audit.events.back().grant_id, grant.id);

  // A second revoke finds nothing; the daemon's retry puts the kernel right.
  EXPECT_EQ(engine.revoke(admin, grant.id).error().code, ErrorCode::not_found);
  clock.advance(10min);
  const auto installs_before = backend.installs.size();
  retry_all_pending();
  EXPECT_FALSE(engine.kernel_pending());
  ASSERT_EQ(backend.installs.size(), installs_before + 1);
  EXPECT_EQ(backend.installs.back().grants,
            (std::vector<TimedElement>{{key("10.0.0.2", https_key), 50min}}));
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
  EXPECT_EQ(kernel_end("10.0.0.2", https_key), other.deadline);

  // Nothing pending any more: a retry is a no-op.
  retry_all_pending();
  EXPECT_EQ(backend.installs.size(), installs_before + 1);
}

// ---------------------------------------------------------------- overlapping grants

TEST_F(CoreEngineTest, LaterGrantExtendsKernelElement) {
  const auto early = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  clock.advance(5min);
  const auto late = grant_ok(ask({ssh}, "10.0.0.1", 2h), alice);  // another requester's
  ASSERT_EQ(backend.applies.size(), 2U);
  EXPECT_EQ(backend.applies[1].remove, std::vector<ElementKey>{key("10.0.0.1", ssh_key)});
  EXPECT_EQ(backend.applies[1].add, (std::vector<TimedElement>{{key("10.0.0.1", ssh_key), 2h}}));
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 5min + 2h);
  EXPECT_EQ(engine.active_grants().size(), 2U);
  EXPECT_EQ(engine.next_expiry(), early.deadline);
  EXPECT_NE(early.id, late.id);
}

TEST_F(CoreEngineTest, ShorterGrantInsideLongerOneNeedsNoKernelChange) {
  grant_ok(ask({ssh}, "10.0.0.1", 2h));
  const auto inner = grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
  EXPECT_EQ(backend.applies.size(), 1U);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 2h);
  EXPECT_EQ(engine.active_grants().size(), 2U);
  EXPECT_EQ(audit.events.back().outcome, "granted");
  EXPECT_EQ(audit.events.back().grant_id, inner.id);
}

TEST_F(CoreEngineTest, RevokingLaterGrantRestoresEarlierEnd) {
  const auto early = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  const auto late = grant_ok(ask({ssh}, "10.0.0.1", 2h), alice);  // her own: she may revoke it
  clock.advance(10min);
  const auto revoked = engine.revoke(alice, late.id);
  ASSERT_TRUE(revoked.has_value()) << revoked.error().message;
  EXPECT_EQ(revoked->id, late.id);
  EXPECT_EQ(revoked->status, GrantStatus::revoked);
  EXPECT_EQ(revoked->status_reason, "UserRequested");
  ASSERT_EQ(backend.applies.size(), 3U);
  EXPECT_EQ(backend.applies[2].remove, std::vector<ElementKey>{key("10.0.0.1", ssh_key)});
  EXPECT_EQ(backend.applies[2].add, (std::vector<TimedElement>{{key("10.0.0.1", ssh_key), 50min}}));
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), early.deadline);

  const auto active = engine.active_grants();
  ASSERT_EQ(active.size(), 1U);
  EXPECT_EQ(active[0].id, early.id);

  const auto& event = audit.events.back();
  EXPECT_EQ(event.event, "revoke");
  EXPECT_EQ(event.outcome, "revoked");
  EXPECT_EQ(event.grant_id, late.id);
  EXPECT_EQ(event.uid, alice.uid);  // who revoked
  EXPECT_EQ(event.user, "alice");
  EXPECT_EQ(event.reason, "UserRequested");
  EXPECT_EQ(event.time, t0 + 10min);

  // Revoking the remaining grant removes the element.
  ASSERT_TRUE(engine.revoke(admin, early.id).has_value());
  EXPECT_EQ(backend.applies.back().remove, std::vector<ElementKey>{key("10.0.0.1", ssh_key)});
  EXPECT_TRUE(backend.applies.back().add.empty());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
  EXPECT_TRUE(engine.active_grants().empty());
  EXPECT_EQ(engine.next_expiry(), std::nullopt);
}

TEST_F(CoreEngineTest, RevokingEarlierGrantKeepsLaterInForce) {
  const auto early = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  const auto late = grant_ok(ask({ssh}, "10.0.0.1", 2h), alice);
  const auto applies_before = backend.applies.size();
  ASSERT_TRUE(engine.revoke(admin, early.id).has_value());
  EXPECT_EQ(backend.applies.size(), applies_before);  // the kernel element is unchanged
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), late.deadline);
  ASSERT_EQ(engine.active_grants().size(), 1U);
  EXPECT_EQ(engine.active_grants()[0].id, late.id);
  EXPECT_EQ(engine.next_expiry(), late.deadline);
  // The kernel still lets it through after the revoked grant's end.
  clock.advance(90min);
  engine.expire_due();
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), late.deadline);
}

TEST_F(CoreEngineTest, HostGrantInsideNetworkGrant) {
  const auto network = grant_ok(ask({https}, "10.0.0.0/24", 30min));
  const auto host = grant_ok(ask({https}, "10.0.0.77", 1h));
  ASSERT_EQ(backend.applies.size(), 2U);
  EXPECT_EQ(backend.applies[1].remove, std::vector<ElementKey>{key("10.0.0.0/24", https_key)});
  std::vector<TimedElement> added = backend.applies[1].add;
  std::sort(added.begin(), added.end());
  EXPECT_EQ(added, (std::vector<TimedElement>{
                       {key(Family::ipv4, ip4(10, 0, 0, 0), ip4(10, 0, 0, 76), https_key), 30min},
                       {key("10.0.0.77", https_key), 1h},
                       {key(Family::ipv4, ip4(10, 0, 0, 78), ip4(10, 0, 0, 255), https_key),
                        30min}}));
  EXPECT_EQ(kernel_end("10.0.0.76", https_key), network.deadline);
  EXPECT_EQ(kernel_end("10.0.0.77", https_key), host.deadline);
  EXPECT_EQ(kernel_end("10.0.0.78", https_key), network.deadline);

  // After the network grant ends, only the host stays; no transaction is needed for it.
  clock.advance(30min);
  engine.expire_due();
  EXPECT_EQ(backend.applies.size(), 2U);
  EXPECT_EQ(kernel_end("10.0.0.76", https_key), std::nullopt);
  EXPECT_EQ(kernel_end("10.0.0.77", https_key), host.deadline);

  // Revoking the host after that removes only its element.
  ASSERT_TRUE(engine.revoke(admin, host.id).has_value());
  EXPECT_EQ(backend.applies.back().remove, std::vector<ElementKey>{key("10.0.0.77", https_key)});
  EXPECT_TRUE(backend.applies.back().add.empty());
}

TEST_F(CoreEngineTest, RevokingNetworkGrantKeepsHostGrant) {
  const auto network = grant_ok(ask({https}, "10.0.0.0/24", 1h));
  const auto host = grant_ok(ask({https}, "10.0.0.77", 30min));
  EXPECT_EQ(backend.applies.size(), 1U);  // the host grant was already covered
  ASSERT_TRUE(engine.revoke(admin, network.id).has_value());
  EXPECT_EQ(backend.applies.back().remove, std::vector<ElementKey>{key("10.0.0.0/24", https_key)});
  EXPECT_EQ(backend.applies.back().add,
            (std::vector<TimedElement>{{key("10.0.0.77", https_key), 30min}}));
  EXPECT_EQ(kernel_end("10.0.0.77", https_key), host.deadline);
  EXPECT_EQ(kernel_end("10.0.0.78", https_key), std::nullopt);
}

TEST_F(CoreEngineTest, GrantsForOtherPortsAndFamiliesDoNotInteract) {
  grant_ok(ask({ssh}, "10.0.0.1", 1h));
  grant_ok(ask({https}, "10.0.0.1", 30min));
  grant_ok(ask({ssh}, "::10.0.0.1", 2h));  // same low 32 bits, IPv6
  for (const auto& changes : backend.applies) EXPECT_TRUE(changes.remove.empty());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h);
  EXPECT_EQ(kernel_end("10.0.0.1", https_key), b0 + 30min);
  EXPECT_EQ(kernel_end("::10.0.0.1", ssh_key), b0 + 2h);
}

// ---------------------------------------------------------------- revoke

TEST_F(CoreEngineTest, RevokeUnknownIdIsNotFound) {
  grant_ok(ask({ssh}, "10.0.0.1", 1h));
  const auto applies_before = backend.applies.size();
  const auto result = engine.revoke(admin, "nope");
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::not_found);
  EXPECT_NE(result.error().message.find("nope"), std::string::npos);
  EXPECT_EQ(backend.applies.size(), applies_before);
  EXPECT_EQ(engine.active_grants().size(), 1U);
}

TEST_F(CoreEngineTest, RevokeTwiceIsNotFound) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  ASSERT_TRUE(engine.revoke(admin, grant.id).has_value());
  const auto again = engine.revoke(admin, grant.id);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, ErrorCode::not_found);
}

TEST_F(CoreEngineTest, RevokeByCallerWithoutMayManageIsForbidden) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  const auto applies_before = backend.applies.size();
  const auto result = engine.revoke(mallory, grant.id);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::forbidden);
  EXPECT_EQ(backend.applies.size(), applies_before);
  EXPECT_EQ(engine.active_grants().size(), 1U);
  ASSERT_FALSE(audit.events.empty());
  EXPECT_EQ(audit.events.back().event, "revoke");
  EXPECT_EQ(audit.events.back().outcome, "refused");
  EXPECT_EQ(audit.events.back().grant_id, grant.id);
  EXPECT_EQ(audit.events.back().uid, mallory.uid);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h);
}

// ---------------------------------------------------------------- v4-mapped sources

// The kernel sees an IPv4 client's packets as IPv4: a grant for ::ffff:10.0.0.5 must land in
// the IPv4 set, and the IPv4 allowed prefix must cover it.
TEST_F(CoreEngineTest, V4MappedSourceIsGrantedAsIpv4) {
  const auto grant = grant_ok(ask({https}, "::ffff:10.0.0.5", 10min));
  EXPECT_EQ(grant.source, prefix("10.0.0.5"));
  EXPECT_EQ(kernel_end("10.0.0.5", https_key), b0 + 10min);
  EXPECT_EQ(audit.events.back().source, "10.0.0.5");
}

// ---------------------------------------------------------------- request width limits

class CoreEngineWidthLimitTest : public CoreEngineTest {
 protected:
  CoreEngineWidthLimitTest() : CoreEngineTest(limited_policy()) {}

  // default_policy() with 22/tcp ("*") limited to /24 and /56 per request, 443/tcp
  // (10.0.0.0/24) to /28.
  static Policy limited_policy() {
    auto policy = default_policy();
    policy.rules[0].min_request_length_v4 = 24;
    policy.rules[0].min_request_length_v6 = 56;
    policy.rules[1].min_request_length_v4 = 28;
    return policy;
  }
};

TEST_F(CoreEngineWidthLimitTest, RequestsUpToTheLimitAreGranted) {
  grant_ok(ask({ssh}, "203.0.113.0/24", 10min));
  grant_ok(ask({ssh}, "203.0.113.7", 10min));
  grant_ok(ask({ssh}, "2001:db8:0:100::/56", 10min));
  grant_ok(ask({dns}, "0.0.0.0/0", 10min));  // no limit on 53: Azure's "Any"
}

TEST_F(CoreEngineWidthLimitTest, WiderRequestIsRefusedNamingTheLimitAndThePort) {
  auto error = refused(ask({ssh}, "0.0.0.0/0", 10min), ErrorCode::source_not_allowed);
  EXPECT_EQ(error.message,
            "allowedSourceAddressPrefix: 0.0.0.0/0 is wider than port 22/tcp allows in one "
            "request: IPv4 prefixes must be /24 or longer");
  error = refused(ask({ssh}, "2001:db8::/48", 10min), ErrorCode::source_not_allowed);
  EXPECT_EQ(error.message,
            "allowedSourceAddressPrefix: 2001:db8::/48 is wider than port 22/tcp allows in one "
            "request: IPv6 prefixes must be /56 or longer");
  // All or nothing: the unlimited port in the same request is not granted either.
  refused(ask({dns, ssh}, "203.0.112.0/23", 10min), ErrorCode::source_not_allowed);
}

TEST_F(CoreEngineWidthLimitTest, SourceOutsideTheAllowedPrefixesIsNamedAsSuch) {
  // A source outside the allowed prefixes is refused as such, whatever its width.
  auto error = refused(ask({https}, "0.0.0.0/0", 10min), ErrorCode::source_not_allowed);
  EXPECT_EQ(error.message,
            "allowedSourceAddressPrefix: 0.0.0.0/0 is not inside the allowed sources of port "
            "443/tcp");
  error = refused(ask({https}, "10.0.0.0/24", 10min), ErrorCode::source_not_allowed);
  EXPECT_NE(error.message.find("/28 or longer"), std::string::npos) << error.message;
}

TEST_F(CoreEngineTest, ReloadWithAWidthLimitRevokesWiderGrants) {
  grant_ok(ask({ssh}, "0.0.0.0/0", 1h));  // no limit yet: Azure's "Any"
  const auto narrow = grant_ok(ask({ssh}, "203.0.113.0/24", 1h));
  auto policy = default_policy();
  policy.rules[0].min_request_length_v4 = 24;
  const auto change = engine.replace_policy(policy);
  ASSERT_TRUE(change.has_value()) << change.error().message;
  EXPECT_EQ(change->revoked, 1U);
  EXPECT_EQ(ids_of(engine.active_grants()), std::vector<std::string>{narrow.id});
  EXPECT_EQ(kernel_end("198.51.100.1", ssh_key), std::nullopt);
  EXPECT_EQ(kernel_end("203.0.113.1", ssh_key), b0 + 1h);
}

}  // namespace
}  // namespace jitd::core
