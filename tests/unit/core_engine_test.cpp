#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "fake_backend.hpp"
#include "jitd/core/engine.hpp"
#include "test_grants.hpp"

namespace jitd::core {
namespace {

using namespace std::chrono_literals;
using test::CallLog;
using test::FakeBackend;
using test::FakeJournal;
using test::RecordingAudit;
using test::expect_same_grant;
using test::ids_of;
using test::prefix;

const TimePoint t0 = TimePoint{std::chrono::sys_days{std::chrono::year{2026} / 11 / 24}};
// The boot clock at t0: unrelated to the wall clock, as on a real machine.
const Deadline b0 = Deadline{std::chrono::hours(5) + std::chrono::minutes(17)};

constexpr PortSpec ssh{22, ProtocolSpec::tcp};
constexpr PortSpec https{443, ProtocolSpec::tcp};
constexpr PortSpec dns{53, ProtocolSpec::any};
constexpr PortKey ssh_key{Protocol::tcp, 22};
constexpr PortKey https_key{Protocol::tcp, 443};
constexpr PortKey dns_tcp{Protocol::tcp, 53};
constexpr PortKey dns_udp{Protocol::udp, 53};

ElementKey key(std::string_view source, PortKey port) {
  return ElementKey{prefix(source).range(), port};
}

ElementKey key(Family family, AddressValue first, AddressValue last, PortKey port) {
  return ElementKey{AddressRange{family, first, last}, port};
}

constexpr AddressValue ip4(unsigned a, unsigned b, unsigned c, unsigned d) {
  return (AddressValue{a} << 24) | (AddressValue{b} << 16) | (AddressValue{c} << 8) | d;
}

PortRule rule(PortSpec port, std::vector<Prefix> sources, Milliseconds max) {
  PortRule r;
  r.port = port;
  r.any_source = sources.empty();
  r.allowed_sources = std::move(sources);
  r.max_duration = max;
  return r;
}

// 22/tcp from anywhere for up to 3h; 443/tcp from 10.0.0.0/24 and fd00::/64 for up to
// 1h; 53 (tcp and udp) from anywhere for up to 2h.
Policy default_policy() {
  Policy policy;
  policy.rules = {rule(ssh, {}, 3h),
                  rule(https, {prefix("10.0.0.0/24"), prefix("fd00::/64")}, 1h),
                  rule(dns, {}, 2h)};
  return policy;
}

GrantRequest ask(std::vector<PortSpec> ports, std::string_view source,
                 std::optional<Milliseconds> duration,
                 std::optional<TimePoint> end_time = std::nullopt) {
  GrantRequest request;
  request.ports = std::move(ports);
  request.source = prefix(source);
  request.duration = duration;
  request.end_time = end_time;
  request.justification = "ticket OPS-1";
  return request;
}

const Caller admin{0, 0, "root", true};
const Caller alice{1000, 1000, "alice", true};
const Caller mallory{1001, 1001, "mallory", false};

class core_engine : public ::testing::Test {
 protected:
  explicit core_engine(Policy policy = default_policy())
      : engine(backend, journal, audit, clock, [this] { return "g" + std::to_string(++ids); },
               std::move(policy)) {}

  void TearDown() override {
    for (const auto& violation : backend.violations) ADD_FAILURE() << "kernel model: " << violation;
  }

  Grant grant_ok(const GrantRequest& request, const Caller& caller = admin) {
    auto result = engine.request(caller, request);
    EXPECT_TRUE(result.has_value()) << (result ? "" : result.error().message);
    return result ? *result : Grant{};
  }

  // Requests, expects a refusal with `code`, and checks that nothing reached the kernel,
  // no grant was stored, and the audit log got a "refused" line with the reason.
  Error refused(const GrantRequest& request, ErrorCode code, const Caller& caller = admin) {
    const auto applies_before = backend.applies.size();
    const auto events_before = audit.events.size();
    const auto grants_before = engine.active_grants().size();
    const auto ids_before = ids;
    auto result = engine.request(caller, request);
    EXPECT_FALSE(result.has_value()) << "granted " << (result ? result->id : "");
    if (result) return Error{};
    EXPECT_EQ(result.error().code, code) << result.error().message;
    EXPECT_FALSE(result.error().message.empty());
    EXPECT_EQ(backend.applies.size(), applies_before) << "refusal reached the backend";
    EXPECT_EQ(engine.active_grants().size(), grants_before);
    EXPECT_EQ(ids, ids_before) << "an id was spent on a refusal";
    EXPECT_EQ(audit.events.size(), events_before + 1);
    if (audit.events.size() == events_before + 1) {
      const auto& event = audit.events.back();
      EXPECT_EQ(event.event, "request");
      EXPECT_EQ(event.outcome, "refused");
      EXPECT_EQ(event.time, clock.now());
      EXPECT_EQ(event.uid, caller.uid);
      EXPECT_EQ(event.user, caller.name);
      EXPECT_EQ(event.source, request.source.to_string());
      EXPECT_EQ(event.ports, request.ports);
      EXPECT_EQ(event.justification, request.justification);
      EXPECT_TRUE(event.grant_id.empty());
      EXPECT_NE(event.reason.find(std::string(to_string(code))), std::string::npos) << event.reason;
      EXPECT_NE(event.reason.find(result.error().message), std::string::npos) << event.reason;
    }
    return result.error();
  }

  std::optional<Deadline> kernel_end(std::string_view address, PortKey port) {
    const auto host = prefix(address);
    return backend.end_for(host.family(), host.address(), port);
  }

  // retry_pending(), expecting it to leave nothing for the next call.
  void retry_all_pending() {
    const auto outcome = engine.retry_pending();
    EXPECT_FALSE(outcome.journal.has_value()) << outcome.journal->message;
    EXPECT_FALSE(outcome.kernel.has_value()) << outcome.kernel->message;
  }

  // Sends every backend, journal and audit call to `log`, in the order they happen.
  void trace() {
    backend.log = &log;
    journal.log = &log;
    audit.log = &log;
  }

  CallLog log;
  FakeClock clock{t0, b0};
  FakeBackend backend{clock};
  FakeJournal journal;
  RecordingAudit audit;
  int ids = 0;
  AccessEngine engine;
};

// ---------------------------------------------------------------- granting

TEST_F(core_engine, grant_with_duration) {
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

TEST_F(core_engine, grant_with_end_time) {
  clock.advance(10min + 250ms);
  const auto grant = grant_ok(ask({ssh}, "2001:db8::5", std::nullopt, t0 + 2h));
  EXPECT_EQ(grant.start, t0 + 10min + 250ms);
  EXPECT_EQ(grant.end, t0 + 2h);
  ASSERT_EQ(backend.applies.size(), 1U);
  EXPECT_EQ(backend.applies[0].add,
            (std::vector<TimedElement>{{key("2001:db8::5", ssh_key), 110min - 250ms}}));
  EXPECT_EQ(audit.events.back().end_time, "2026-11-24T02:00:00Z");
}

TEST_F(core_engine, grant_exactly_at_max_duration) {
  const auto grant = grant_ok(ask({https}, "10.0.0.9", 1h));
  EXPECT_EQ(grant.end, t0 + 1h);
  const auto by_end = grant_ok(ask({https}, "10.0.0.10", std::nullopt, t0 + 1h));
  EXPECT_EQ(by_end.end, t0 + 1h);
}

TEST_F(core_engine, grant_for_any_protocol_covers_tcp_and_udp) {
  grant_ok(ask({dns}, "198.51.100.0/24", 30min));
  ASSERT_EQ(backend.applies.size(), 1U);
  std::vector<TimedElement> added = backend.applies[0].add;
  std::sort(added.begin(), added.end());
  EXPECT_EQ(added, (std::vector<TimedElement>{{key("198.51.100.0/24", dns_tcp), 30min},
                                             {key("198.51.100.0/24", dns_udp), 30min}}));
}

TEST_F(core_engine, multi_port_grant_is_one_transaction) {
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

TEST_F(core_engine, source_strictly_inside_allowed_prefix_accepted) {
  grant_ok(ask({https}, "10.0.0.0/25", 10min));
  grant_ok(ask({https}, "10.0.0.77", 10min));
  grant_ok(ask({https}, "10.0.0.255", 10min));
  grant_ok(ask({https}, "fd00::5", 10min));
  grant_ok(ask({https}, "fd00::/96", 10min));
  grant_ok(ask({https}, "10.0.0.0/24", 10min));  // equal to the allowed prefix
  EXPECT_EQ(engine.active_grants().size(), 6U);
}

// ---------------------------------------------------------------- refusals

TEST_F(core_engine, refuses_port_not_in_policy) {
  const auto error = refused(ask({PortSpec{23, ProtocolSpec::tcp}}, "10.0.0.1", 10min),
                             ErrorCode::port_not_in_policy);
  EXPECT_NE(error.message.find("23/tcp"), std::string::npos) << error.message;
}

TEST_F(core_engine, refuses_udp_on_tcp_rule) {
  const auto error = refused(ask({PortSpec{22, ProtocolSpec::udp}}, "10.0.0.1", 10min),
                             ErrorCode::port_not_in_policy);
  EXPECT_NE(error.message.find("22/udp"), std::string::npos) << error.message;
}

TEST_F(core_engine, refuses_any_protocol_on_tcp_only_rule) {
  refused(ask({PortSpec{22, ProtocolSpec::any}}, "10.0.0.1", 10min),
          ErrorCode::port_not_in_policy);
}

TEST_F(core_engine, refuses_source_outside_allowed_prefixes) {
  refused(ask({https}, "10.0.1.5", 10min), ErrorCode::source_not_allowed);
  refused(ask({https}, "10.0.0.0/16", 10min), ErrorCode::source_not_allowed);  // wider
  refused(ask({https}, "10.0.0.0/23", 10min), ErrorCode::source_not_allowed);
  refused(ask({https}, "0.0.0.0/0", 10min), ErrorCode::source_not_allowed);
  refused(ask({https}, "fd00:0:0:1::1", 10min), ErrorCode::source_not_allowed);
  refused(ask({https}, "fd00::/48", 10min), ErrorCode::source_not_allowed);
  refused(ask({https}, "::ffff:10.0.0.1", 10min), ErrorCode::source_not_allowed);
  const auto error = refused(ask({https}, "192.0.2.1", 10min), ErrorCode::source_not_allowed);
  EXPECT_NE(error.message.find("192.0.2.1"), std::string::npos) << error.message;
}

TEST_F(core_engine, refuses_duration_over_max_without_shortening) {
  const auto error = refused(ask({https}, "10.0.0.1", 1h + 1s), ErrorCode::duration_too_long);
  EXPECT_NE(error.message.find("PT1H"), std::string::npos) << error.message;
  refused(ask({ssh}, "10.0.0.1", 3h + 1ms), ErrorCode::duration_too_long);
  refused(ask({https}, "10.0.0.1", std::nullopt, t0 + 1h + 1ms), ErrorCode::duration_too_long);
  // The longest of several ports does not lift a shorter port's limit.
  refused(ask({ssh, https}, "10.0.0.1", 2h), ErrorCode::duration_too_long);
  EXPECT_TRUE(engine.active_grants().empty());
}

TEST_F(core_engine, refuses_end_time_not_in_future) {
  clock.advance(1h);
  refused(ask({ssh}, "10.0.0.1", std::nullopt, t0 + 1h - 1s), ErrorCode::end_time_in_past);
  refused(ask({ssh}, "10.0.0.1", std::nullopt, t0 + 1h), ErrorCode::end_time_in_past);
  refused(ask({ssh}, "10.0.0.1", std::nullopt, t0), ErrorCode::end_time_in_past);
}

TEST_F(core_engine, refuses_both_or_neither_of_duration_and_end_time) {
  refused(ask({ssh}, "10.0.0.1", 10min, t0 + 10min), ErrorCode::invalid_request);
  refused(ask({ssh}, "10.0.0.1", std::nullopt, std::nullopt), ErrorCode::invalid_request);
}

TEST_F(core_engine, refuses_non_positive_duration) {
  refused(ask({ssh}, "10.0.0.1", 0ms), ErrorCode::invalid_argument);
  refused(ask({ssh}, "10.0.0.1", -5min), ErrorCode::invalid_argument);
}

TEST_F(core_engine, refuses_duplicate_port) {
  refused(ask({ssh, ssh}, "10.0.0.1", 10min), ErrorCode::invalid_request);
  refused(ask({dns, PortSpec{53, ProtocolSpec::udp}}, "10.0.0.1", 10min),
          ErrorCode::invalid_request);
  refused(ask({PortSpec{53, ProtocolSpec::tcp}, dns}, "10.0.0.1", 10min),
          ErrorCode::invalid_request);
}

TEST_F(core_engine, refuses_empty_port_list) {
  refused(ask({}, "10.0.0.1", 10min), ErrorCode::invalid_request);
}

TEST_F(core_engine, refuses_caller_without_may_manage) {
  const auto error = refused(ask({ssh}, "10.0.0.1", 10min), ErrorCode::forbidden, mallory);
  EXPECT_NE(error.message.find("mallory"), std::string::npos) << error.message;
}

TEST_F(core_engine, multi_port_request_is_all_or_nothing) {
  refused(ask({ssh, PortSpec{23, ProtocolSpec::tcp}}, "10.0.0.1", 10min),
          ErrorCode::port_not_in_policy);
  refused(ask({ssh, https}, "192.0.2.1", 10min), ErrorCode::source_not_allowed);
  refused(ask({dns, PortSpec{22, ProtocolSpec::udp}}, "10.0.0.1", 10min),
          ErrorCode::port_not_in_policy);
  EXPECT_TRUE(backend.applies.empty());
  EXPECT_TRUE(backend.live_elements().empty());
}

TEST_F(core_engine, refusal_leaves_existing_grants_alone) {
  grant_ok(ask({ssh}, "10.0.0.1", 1h));
  refused(ask({ssh}, "10.0.0.1", 4h), ErrorCode::duration_too_long);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h);
  EXPECT_EQ(engine.active_grants().size(), 1U);
}

// ---------------------------------------------------------------- backend failures

TEST_F(core_engine, backend_failure_fails_request_and_stores_nothing) {
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

TEST_F(core_engine, backend_failure_keeps_previous_kernel_state_in_mind) {
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

TEST_F(core_engine, backend_failure_on_revoke_ends_grant_and_leaves_kernel_pending) {
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

TEST_F(core_engine, later_grant_extends_kernel_element) {
  const auto early = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  clock.advance(5min);
  const auto late = grant_ok(ask({ssh}, "10.0.0.1", 2h));
  ASSERT_EQ(backend.applies.size(), 2U);
  EXPECT_EQ(backend.applies[1].remove, std::vector<ElementKey>{key("10.0.0.1", ssh_key)});
  EXPECT_EQ(backend.applies[1].add, (std::vector<TimedElement>{{key("10.0.0.1", ssh_key), 2h}}));
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 5min + 2h);
  EXPECT_EQ(engine.active_grants().size(), 2U);
  EXPECT_EQ(engine.next_expiry(), early.deadline);
  EXPECT_NE(early.id, late.id);
}

TEST_F(core_engine, shorter_grant_inside_longer_one_needs_no_kernel_change) {
  grant_ok(ask({ssh}, "10.0.0.1", 2h));
  const auto inner = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  EXPECT_EQ(backend.applies.size(), 1U);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 2h);
  EXPECT_EQ(engine.active_grants().size(), 2U);
  EXPECT_EQ(audit.events.back().outcome, "granted");
  EXPECT_EQ(audit.events.back().grant_id, inner.id);
}

TEST_F(core_engine, revoking_later_grant_restores_earlier_end) {
  const auto early = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  const auto late = grant_ok(ask({ssh}, "10.0.0.1", 2h));
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

TEST_F(core_engine, revoking_earlier_grant_keeps_later_in_force) {
  const auto early = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  const auto late = grant_ok(ask({ssh}, "10.0.0.1", 2h));
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

TEST_F(core_engine, host_grant_inside_network_grant) {
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

TEST_F(core_engine, revoking_network_grant_keeps_host_grant) {
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

TEST_F(core_engine, grants_for_other_ports_and_families_do_not_interact) {
  grant_ok(ask({ssh}, "10.0.0.1", 1h));
  grant_ok(ask({https}, "10.0.0.1", 30min));
  grant_ok(ask({ssh}, "::ffff:10.0.0.1", 2h));
  for (const auto& changes : backend.applies) EXPECT_TRUE(changes.remove.empty());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h);
  EXPECT_EQ(kernel_end("10.0.0.1", https_key), b0 + 30min);
  EXPECT_EQ(kernel_end("::ffff:10.0.0.1", ssh_key), b0 + 2h);
}

// ---------------------------------------------------------------- revoke

TEST_F(core_engine, revoke_unknown_id_is_not_found) {
  grant_ok(ask({ssh}, "10.0.0.1", 1h));
  const auto applies_before = backend.applies.size();
  const auto result = engine.revoke(admin, "nope");
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::not_found);
  EXPECT_NE(result.error().message.find("nope"), std::string::npos);
  EXPECT_EQ(backend.applies.size(), applies_before);
  EXPECT_EQ(engine.active_grants().size(), 1U);
}

TEST_F(core_engine, revoke_twice_is_not_found) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  ASSERT_TRUE(engine.revoke(admin, grant.id).has_value());
  const auto again = engine.revoke(admin, grant.id);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, ErrorCode::not_found);
}

TEST_F(core_engine, revoke_by_caller_without_may_manage_is_forbidden) {
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

// ---------------------------------------------------------------- expiry

TEST_F(core_engine, expire_due_records_and_forgets_ended_grants_without_kernel_calls) {
  const auto first = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  const auto second = grant_ok(ask({dns}, "10.0.0.2", 2h));
  const auto applies_before = backend.applies.size();
  const auto events_before = audit.events.size();

  clock.advance(1h - 1ms);
  engine.expire_due();
  EXPECT_EQ(audit.events.size(), events_before);
  EXPECT_EQ(engine.active_grants().size(), 2U);

  clock.advance(1ms);
  EXPECT_EQ(engine.active_grants().size(), 1U);  // ended, even before expire_due runs
  engine.expire_due();
  EXPECT_EQ(backend.applies.size(), applies_before);
  ASSERT_EQ(audit.events.size(), events_before + 1);
  const auto& event = audit.events.back();
  EXPECT_EQ(event.event, "expire");
  EXPECT_EQ(event.outcome, "expired");
  EXPECT_EQ(event.grant_id, first.id);
  EXPECT_EQ(event.reason, "Expired");
  EXPECT_EQ(event.time, t0 + 1h);
  EXPECT_EQ(event.source, "10.0.0.1");
  EXPECT_EQ(event.end_time, "2026-11-24T01:00:00Z");
  ASSERT_EQ(engine.active_grants().size(), 1U);
  EXPECT_EQ(engine.active_grants()[0].id, second.id);
  EXPECT_EQ(engine.next_expiry(), second.deadline);
  EXPECT_EQ(engine.revoke(admin, first.id).error().code, ErrorCode::not_found);
  ASSERT_EQ(audit.events.size(), events_before + 2);  // the refused revoke is audited too
  EXPECT_EQ(audit.events.back().event, "revoke");
  EXPECT_EQ(audit.events.back().outcome, "refused");

  // A second run finds nothing new.
  engine.expire_due();
  EXPECT_EQ(audit.events.size(), events_before + 2);

  clock.advance(3h);
  engine.expire_due();
  EXPECT_EQ(backend.applies.size(), applies_before);
  EXPECT_EQ(audit.events.size(), events_before + 3);
  EXPECT_EQ(audit.events.back().grant_id, second.id);
  EXPECT_TRUE(engine.active_grants().empty());
  EXPECT_EQ(engine.next_expiry(), std::nullopt);
}

TEST_F(core_engine, expire_due_handles_several_grants_at_once) {
  grant_ok(ask({ssh}, "10.0.0.1", 10min));
  grant_ok(ask({ssh}, "10.0.0.2", 20min));
  grant_ok(ask({ssh}, "10.0.0.3", 3h));
  clock.advance(2h);
  engine.expire_due();
  std::vector<std::string> expired;
  for (const auto& event : audit.events) {
    if (event.event == "expire") expired.push_back(event.grant_id);
  }
  std::sort(expired.begin(), expired.end());
  EXPECT_EQ(expired, (std::vector<std::string>{"g1", "g2"}));
  EXPECT_EQ(engine.active_grants().size(), 1U);
}

TEST_F(core_engine, request_after_expiry_does_not_remove_ended_elements) {
  grant_ok(ask({ssh}, "10.0.0.0/24", 1h));
  clock.advance(2h);
  engine.expire_due();
  grant_ok(ask({ssh}, "10.0.0.0/24", 1h));
  EXPECT_TRUE(backend.applies.back().remove.empty());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 3h);
}

TEST_F(core_engine, request_after_unrecorded_expiry_does_not_remove_ended_elements) {
  // expire_due has not run yet, but the kernel already dropped the element.
  grant_ok(ask({ssh}, "10.0.0.0/24", 1h));
  clock.advance(1h);
  grant_ok(ask({ssh}, "10.0.0.7", 1h));
  EXPECT_TRUE(backend.applies.back().remove.empty());
  EXPECT_EQ(backend.applies.back().add,
            (std::vector<TimedElement>{{key("10.0.0.7", ssh_key), 1h}}));
  EXPECT_EQ(kernel_end("10.0.0.8", ssh_key), std::nullopt);
}

TEST_F(core_engine, revoke_of_ended_but_unexpired_grant_is_not_found_and_needs_no_kernel_change) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  clock.advance(1h + 1s);
  const auto applies_before = backend.applies.size();
  const auto journal_calls = journal.calls.size();
  const auto result = engine.revoke(admin, grant.id);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::not_found);
  EXPECT_EQ(backend.applies.size(), applies_before);
  EXPECT_EQ(journal.calls.size(), journal_calls);
  // expire_due still records it as expired, not revoked.
  engine.expire_due();
  ASSERT_EQ(audit.named("expire").size(), 1U);
  EXPECT_EQ(audit.named("expire")[0].grant_id, grant.id);
  ASSERT_EQ(journal.calls.size(), journal_calls + 1);
  EXPECT_EQ(journal.calls.back().status, GrantStatus::expired);
}

TEST_F(core_engine, next_expiry_is_earliest_end) {
  EXPECT_EQ(engine.next_expiry(), std::nullopt);
  grant_ok(ask({ssh}, "10.0.0.1", 2h));
  EXPECT_EQ(engine.next_expiry(), b0 + 2h);
  grant_ok(ask({ssh}, "10.0.0.2", 30min));
  EXPECT_EQ(engine.next_expiry(), b0 + 30min);
  grant_ok(ask({ssh}, "10.0.0.3", 1h));
  EXPECT_EQ(engine.next_expiry(), b0 + 30min);
  ASSERT_TRUE(engine.revoke(admin, "g2").has_value());
  EXPECT_EQ(engine.next_expiry(), b0 + 1h);
}

TEST_F(core_engine, active_grants_sorted_by_start) {
  grant_ok(ask({ssh}, "10.0.0.1", 2h));
  clock.advance(1min);
  grant_ok(ask({ssh}, "10.0.0.2", 2h));
  clock.advance(1min);
  grant_ok(ask({ssh}, "10.0.0.3", 2h));
  // Ids that sort differently from start times.
  const auto active = engine.active_grants();
  ASSERT_EQ(active.size(), 3U);
  EXPECT_EQ(active[0].start, t0);
  EXPECT_EQ(active[1].start, t0 + 1min);
  EXPECT_EQ(active[2].start, t0 + 2min);
}

class core_engine_ids : public core_engine {};

TEST_F(core_engine_ids, active_grants_order_does_not_follow_id_order) {
  std::vector<std::string> next_ids = {"zzz", "mmm", "aaa"};
  AccessEngine custom(backend, journal, audit, clock,
                      [&] {
                        auto id = next_ids.front();
                        next_ids.erase(next_ids.begin());
                        return id;
                      },
                      default_policy());
  for (const auto* source : {"10.0.0.1", "10.0.0.2", "10.0.0.3"}) {
    ASSERT_TRUE(custom.request(admin, ask({ssh}, source, 1h)).has_value());
    clock.advance(1s);
  }
  const auto active = custom.active_grants();
  ASSERT_EQ(active.size(), 3U);
  EXPECT_EQ(active[0].id, "zzz");
  EXPECT_EQ(active[1].id, "mmm");
  EXPECT_EQ(active[2].id, "aaa");
}

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

class core_engine_install : public core_engine {
 protected:
  core_engine_install() : core_engine(install_policy()) {}
};

TEST_F(core_engine_install, install_passes_protected_ports_and_merged_allow_list) {
  ASSERT_TRUE(engine.install().has_value());
  ASSERT_EQ(backend.installs.size(), 1U);
  const auto& spec = backend.installs[0];
  EXPECT_EQ(spec.protected_ports,
            (std::vector<PortKey>{ssh_key, dns_tcp, https_key, dns_udp}));
  const std::vector<ElementKey> expected = {
      key("10.0.0.0/8", ssh_key),      key("172.16.0.0/12", ssh_key),
      key("192.168.0.0/23", ssh_key),  key("192.168.0.0/23", dns_tcp),
      key("192.168.0.0/23", https_key), key("192.168.0.0/23", dns_udp),
      key("fd00::/8", dns_tcp),        key("fd00::/8", dns_udp)};
  EXPECT_EQ(spec.permanent, expected);
  EXPECT_TRUE(spec.grants.empty());
  EXPECT_TRUE(backend.applies.empty());
}

TEST_F(core_engine_install, install_drops_allow_list_ports_the_policy_does_not_protect) {
  Policy policy = install_policy();
  PermanentAllow extra;
  extra.sources = {prefix("198.51.100.0/24")};
  extra.ports = {PortSpec{22, ProtocolSpec::any}, PortSpec{8080, ProtocolSpec::tcp}};
  policy.permanent_allow = {extra};
  AccessEngine custom(backend, journal, audit, clock, [] { return std::string("x"); }, policy);
  ASSERT_TRUE(custom.install().has_value());
  EXPECT_EQ(backend.installs.back().permanent,
            (std::vector<ElementKey>{key("198.51.100.0/24", ssh_key)}));
}

TEST_F(core_engine_install, install_without_allow_list) {
  AccessEngine custom(backend, journal, audit, clock, [] { return std::string("x"); },
                      default_policy());
  ASSERT_TRUE(custom.install().has_value());
  EXPECT_TRUE(backend.installs.back().permanent.empty());
  EXPECT_EQ(backend.installs.back().protected_ports,
            (std::vector<PortKey>{ssh_key, dns_tcp, https_key, dns_udp}));
}

TEST_F(core_engine_install, install_carries_live_grants_with_remaining_time) {
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
                {key(Family::ipv4, ip4(203, 0, 113, 10), ip4(203, 0, 113, 255), ssh_key),
                 45min}}));
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

TEST_F(core_engine_install, enforcement_spec_matches_install) {
  grant_ok(ask({dns}, "10.9.0.0/16", 1h));
  ASSERT_TRUE(engine.install().has_value());
  const auto spec = engine.enforcement_spec(clock.boot_now());
  EXPECT_EQ(spec.protected_ports, backend.installs.back().protected_ports);
  EXPECT_EQ(spec.permanent, backend.installs.back().permanent);
  EXPECT_EQ(spec.grants, backend.installs.back().grants);
  EXPECT_EQ(spec.grants.size(), 2U);
}

// ---------------------------------------------------------------- journal first

using Kind = FakeJournal::Call::Kind;

// The calls in `log` that start with one of `prefixes`, in order.
std::vector<std::string> calls_to(const CallLog& log, std::vector<std::string_view> prefixes) {
  std::vector<std::string> found;
  for (const auto& call : log.calls) {
    for (const auto prefix : prefixes) {
      if (call.starts_with(prefix)) {
        found.push_back(call);
        break;
      }
    }
  }
  return found;
}

std::vector<std::string> ids_of(const std::vector<Grant>& grants) {
  std::vector<std::string> ids;
  for (const auto& grant : grants) ids.push_back(grant.id);
  return ids;
}

TEST_F(core_engine, request_journals_the_grant_before_the_kernel_apply) {
  trace();
  clock.advance(3s);
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  EXPECT_EQ(log.calls, (std::vector<std::string>{"journal.grant g1", "backend.apply",
                                                 "audit.request granted"}));
  ASSERT_EQ(journal.calls.size(), 1U);
  EXPECT_EQ(journal.calls[0].kind, Kind::grant);
  expect_same_grant(journal.calls[0].grant, grant);
  EXPECT_EQ(journal.calls[0].grant.deadline, b0 + 3s + 1h);
  const auto replay = journal.replay();
  ASSERT_EQ(replay.size(), 1U);
  expect_same_grant(replay[0].grant, grant);
  EXPECT_EQ(replay[0].boot_id, "boot-a");
}

TEST_F(core_engine, journal_failure_fails_request_and_applies_nothing) {
  journal.fail_next(ENOSPC);
  const auto result = engine.request(admin, ask({ssh}, "10.0.0.1", 1h));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::io);
  EXPECT_EQ(result.error().sys_errno, ENOSPC);
  EXPECT_TRUE(backend.applies.empty());
  EXPECT_TRUE(backend.installs.empty());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
  EXPECT_TRUE(engine.active_grants().empty());
  EXPECT_EQ(engine.next_expiry(), std::nullopt);
  EXPECT_FALSE(engine.kernel_pending());
  // Nothing was recorded, so nothing needs an end record either.
  ASSERT_EQ(journal.calls.size(), 1U);
  EXPECT_TRUE(journal.calls[0].failed);
  EXPECT_TRUE(journal.replay().empty());
  ASSERT_EQ(audit.events.size(), 1U);
  EXPECT_EQ(audit.events[0].event, "request");
  EXPECT_EQ(audit.events[0].outcome, "failed");
  EXPECT_TRUE(audit.events[0].grant_id.empty());
  EXPECT_EQ(audit.events[0].source, "10.0.0.1");
  EXPECT_NE(audit.events[0].reason.find("IoError"), std::string::npos) << audit.events[0].reason;
  EXPECT_NE(audit.events[0].reason.find("injected failure"), std::string::npos);

  // The journal recovers: the next request goes through, and the kernel never saw the first.
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 30min));
  ASSERT_EQ(backend.applies.size(), 1U);
  EXPECT_TRUE(backend.applies[0].remove.empty());
  EXPECT_EQ(backend.applies[0].add, (std::vector<TimedElement>{{key("10.0.0.1", ssh_key), 30min}}));
  EXPECT_EQ(ids_of(journal.replay()), std::vector<std::string>{grant.id});
}

TEST_F(core_engine, kernel_failure_after_journaling_ends_the_record) {
  trace();
  backend.fail_next_apply(ENOBUFS);
  const auto result = engine.request(admin, ask({ssh, https}, "10.0.0.1", 1h));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::kernel);
  EXPECT_EQ(result.error().sys_errno, ENOBUFS);
  EXPECT_EQ(log.calls, (std::vector<std::string>{"journal.grant g1", "backend.apply",
                                                 "journal.end g1 Revoked KernelRefused",
                                                 "audit.request failed"}));
  const auto ends = journal.recorded(Kind::end);
  ASSERT_EQ(ends.size(), 1U);
  EXPECT_EQ(ends[0].id, "g1");
  EXPECT_EQ(ends[0].status, GrantStatus::revoked);
  EXPECT_EQ(ends[0].reason, "KernelRefused");
  EXPECT_TRUE(journal.replay().empty()) << "a restart would apply a grant the caller was refused";
  EXPECT_TRUE(engine.active_grants().empty());
  EXPECT_EQ(engine.next_expiry(), std::nullopt);
  // An error may be read after the kernel committed, so the engine re-installs what it knows.
  EXPECT_TRUE(engine.kernel_pending());
  const auto installs_before = backend.installs.size();
  retry_all_pending();
  EXPECT_EQ(backend.installs.size(), installs_before + 1);
  EXPECT_TRUE(backend.installs.back().grants.empty());
  EXPECT_FALSE(engine.kernel_pending());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
  EXPECT_EQ(engine.revoke(admin, "g1").error().code, ErrorCode::not_found);
}

TEST_F(core_engine, revoke_journals_the_end_before_the_kernel_apply) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  trace();
  clock.advance(5min);
  const auto revoked = engine.revoke(alice, grant.id);
  ASSERT_TRUE(revoked.has_value()) << revoked.error().message;
  EXPECT_EQ(calls_to(log, {"journal.", "backend."}),
            (std::vector<std::string>{"journal.end g1 Revoked UserRequested", "backend.apply"}));
  EXPECT_EQ(calls_to(log, {"audit."}), std::vector<std::string>{"audit.revoke revoked"});
  EXPECT_TRUE(journal.replay().empty());
  EXPECT_FALSE(engine.kernel_pending());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
}

TEST_F(core_engine, revoke_goes_ahead_when_the_journal_fails_and_audits_it) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  journal.fail_next();
  const auto revoked = engine.revoke(admin, grant.id);
  ASSERT_TRUE(revoked.has_value()) << revoked.error().message;
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
  EXPECT_TRUE(engine.active_grants().empty());
  const auto& event = audit.events.back();
  EXPECT_EQ(event.event, "revoke");
  EXPECT_EQ(event.outcome, "revoked");
  EXPECT_EQ(event.reason.rfind("UserRequested", 0), 0U) << event.reason;
  EXPECT_NE(event.reason.find("injected failure"), std::string::npos) << event.reason;
  // Until the end record is on disk a restart would bring the grant back: it is retried.
  EXPECT_TRUE(engine.journal_pending());
  EXPECT_EQ(ids_of(journal.replay()), std::vector<std::string>{grant.id});
  retry_all_pending();
  EXPECT_FALSE(engine.journal_pending());
  EXPECT_TRUE(journal.replay().empty());
}

TEST_F(core_engine, journal_end_retry_keeps_going_while_the_journal_fails) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  journal.fail_next();
  ASSERT_TRUE(engine.revoke(admin, grant.id).has_value());
  journal.fail_next();
  EXPECT_TRUE(engine.retry_pending().journal.has_value());
  EXPECT_TRUE(engine.journal_pending());
  retry_all_pending();
  EXPECT_TRUE(journal.replay().empty());
}

TEST_F(core_engine, retry_reinstalls_a_refused_revoke_while_the_journal_still_fails) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  journal.fail_next(ENOSPC);
  backend.fail_next_apply(ENOBUFS);
  ASSERT_FALSE(engine.revoke(admin, grant.id).has_value());
  ASSERT_TRUE(engine.journal_pending());
  ASSERT_TRUE(engine.kernel_pending());

  // The disk is still full; the kernel works again. The revoke must not wait for the disk.
  journal.fail_next(ENOSPC);
  const auto installs_before = backend.installs.size();
  const auto outcome = engine.retry_pending();
  ASSERT_TRUE(outcome.journal.has_value());
  EXPECT_EQ(outcome.journal->code, ErrorCode::io);
  EXPECT_EQ(outcome.journal->sys_errno, ENOSPC);
  EXPECT_FALSE(outcome.kernel.has_value()) << outcome.kernel->message;
  EXPECT_EQ(backend.installs.size(), installs_before + 1);
  EXPECT_FALSE(engine.kernel_pending());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
  EXPECT_TRUE(engine.journal_pending());
}

TEST_F(core_engine, retry_reports_journal_and_kernel_refusals_apart) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  journal.fail_next(ENOSPC);
  backend.fail_next_apply(ENOBUFS);
  ASSERT_FALSE(engine.revoke(admin, grant.id).has_value());

  journal.fail_next(ENOSPC);
  backend.fail_next_install(EPERM);
  const auto outcome = engine.retry_pending();
  ASSERT_TRUE(outcome.journal.has_value());
  EXPECT_EQ(outcome.journal->code, ErrorCode::io);
  EXPECT_EQ(outcome.journal->sys_errno, ENOSPC);
  ASSERT_TRUE(outcome.kernel.has_value());
  EXPECT_EQ(outcome.kernel->code, ErrorCode::kernel);
  EXPECT_EQ(outcome.kernel->sys_errno, EPERM);
  EXPECT_TRUE(engine.journal_pending());
  EXPECT_TRUE(engine.kernel_pending());

  // Both are retried on the next call.
  retry_all_pending();
  EXPECT_FALSE(engine.journal_pending());
  EXPECT_FALSE(engine.kernel_pending());
  EXPECT_TRUE(journal.replay().empty());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
}

TEST_F(core_engine, expire_due_journals_each_end) {
  const auto first = grant_ok(ask({ssh}, "10.0.0.1", 10min));
  const auto second = grant_ok(ask({ssh}, "10.0.0.2", 1h));
  clock.advance(10min);
  engine.expire_due();
  const auto ends = journal.recorded(Kind::end);
  ASSERT_EQ(ends.size(), 1U);
  EXPECT_EQ(ends[0].id, first.id);
  EXPECT_EQ(ends[0].status, GrantStatus::expired);
  EXPECT_EQ(ends[0].reason, "Expired");
  EXPECT_EQ(ids_of(journal.replay()), std::vector<std::string>{second.id});
}

// ---------------------------------------------------------------- boot clock

TEST_F(core_engine, wall_clock_jump_forward_does_not_end_a_grant_early) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  clock.jump_wall(2h);  // the wall clock now says the grant's UTC end has passed
  engine.expire_due();
  EXPECT_EQ(ids_of(engine.active_grants()), std::vector<std::string>{grant.id});
  EXPECT_EQ(engine.next_expiry(), b0 + 1h);
  EXPECT_EQ(remaining(grant, clock.boot_now()), 1h);
  EXPECT_TRUE(audit.named("expire").empty());
  EXPECT_TRUE(journal.recorded(Kind::end).empty());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h);

  clock.advance(1h - 1ms);
  engine.expire_due();
  ASSERT_EQ(engine.active_grants().size(), 1U);
  EXPECT_EQ(remaining(engine.active_grants()[0], clock.boot_now()), 1ms);

  clock.advance(1ms);
  EXPECT_TRUE(engine.active_grants().empty());
  engine.expire_due();
  ASSERT_EQ(audit.named("expire").size(), 1U);
  EXPECT_EQ(audit.named("expire")[0].time, t0 + 3h);  // audit times stay wall-clock UTC
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
  EXPECT_EQ(engine.next_expiry(), std::nullopt);
}

TEST_F(core_engine, wall_clock_jump_backward_does_not_extend_a_grant) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  clock.advance(30min);
  clock.jump_wall(-2h);  // the wall clock now says the grant has 2h30m left
  EXPECT_EQ(remaining(engine.active_grants().at(0), clock.boot_now()), 30min);
  EXPECT_EQ(engine.next_expiry(), grant.deadline);

  clock.advance(30min);
  EXPECT_TRUE(engine.active_grants().empty());
  engine.expire_due();
  ASSERT_EQ(audit.named("expire").size(), 1U);
  EXPECT_EQ(audit.named("expire")[0].grant_id, grant.id);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);

  // A duration counts on the boot clock; an end time is read on the wall clock once.
  const auto by_duration = grant_ok(ask({ssh}, "10.0.0.2", 1h));
  EXPECT_EQ(by_duration.end, t0 - 1h + 1h);
  EXPECT_EQ(by_duration.deadline, b0 + 2h);
  const auto by_end = grant_ok(ask({ssh}, "10.0.0.3", std::nullopt, t0 - 1h + 20min));
  EXPECT_EQ(by_end.deadline, b0 + 1h + 20min);
  EXPECT_EQ(kernel_end("10.0.0.3", ssh_key), b0 + 1h + 20min);
}

// ---------------------------------------------------------------- restore

// A grant as a replay of the journal gives it back.
JournalEntry journaled(std::string id, std::vector<PortSpec> ports, std::string_view source,
                       TimePoint start, TimePoint end, Deadline deadline,
                       std::string boot_id = "boot-a") {
  JournalEntry entry;
  entry.grant.id = std::move(id);
  entry.grant.requestor = {1000, "alice"};
  entry.grant.source = prefix(source);
  entry.grant.ports = std::move(ports);
  entry.grant.start = start;
  entry.grant.end = end;
  entry.grant.deadline = deadline;
  entry.grant.justification = "ticket OPS-2";
  entry.boot_id = std::move(boot_id);
  return entry;
}

TEST_F(core_engine, restore_on_the_same_boot_keeps_the_journaled_deadline) {
  // The wall clock was stepped while jitd was down: UTC and boot clock disagree by 3s.
  const auto entry =
      journaled("r1", {ssh}, "10.0.0.1", t0 - 10min, t0 + 50min, b0 + 50min + 3s, "boot-a");
  journal.seed({entry});
  const auto report = engine.restore(journal.replay(), "boot-a");
  EXPECT_EQ(report.restored, 1U);
  EXPECT_EQ(report.expired, 0U);
  const auto active = engine.active_grants();
  ASSERT_EQ(active.size(), 1U);
  expect_same_grant(active[0], entry.grant);
  EXPECT_EQ(engine.next_expiry(), b0 + 50min + 3s);
  EXPECT_TRUE(journal.calls.empty());
  EXPECT_TRUE(audit.events.empty());
  EXPECT_TRUE(backend.applies.empty());  // install() follows restore()

  ASSERT_TRUE(engine.install().has_value());
  EXPECT_EQ(backend.installs.back().grants,
            (std::vector<TimedElement>{{key("10.0.0.1", ssh_key), 50min + 3s}}));
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 50min + 3s);
}

TEST_F(core_engine, restore_after_a_reboot_rebuilds_the_deadline_from_the_utc_end) {
  // Old-boot deadlines mean nothing now: the first one would look ended, the second live.
  journal.seed({journaled("r1", {ssh}, "10.0.0.1", t0 - 1h, t0 + 40min, Deadline{1min}, "old"),
                journaled("r2", {ssh}, "10.0.0.2", t0 - 2h, t0 - 1min, b0 + 10h, "old")});
  const auto report = engine.restore(journal.replay(), "boot-b");
  EXPECT_EQ(report.restored, 1U);
  EXPECT_EQ(report.expired, 1U);
  const auto active = engine.active_grants();
  ASSERT_EQ(active.size(), 1U);
  EXPECT_EQ(active[0].id, "r1");
  EXPECT_EQ(active[0].end, t0 + 40min);
  EXPECT_EQ(active[0].deadline, b0 + 40min);
  EXPECT_EQ(remaining(active[0], clock.boot_now()), 40min);
  EXPECT_EQ(engine.next_expiry(), b0 + 40min);
  ASSERT_TRUE(engine.install().has_value());
  EXPECT_EQ(backend.installs.back().grants,
            (std::vector<TimedElement>{{key("10.0.0.1", ssh_key), 40min}}));
  EXPECT_EQ(ids_of(journal.replay()), std::vector<std::string>{"r1"});
}

TEST_F(core_engine, restore_after_a_reboot_never_restores_more_than_the_grant_length) {
  // A wall clock that is far behind after boot (no RTC, not yet synced) must not turn a
  // 30-minute grant into days of access.
  journal.seed({journaled("r1", {ssh}, "10.0.0.1", t0 - 10min, t0 + 20min, Deadline{1min}, "old")});
  clock.jump_wall(-72h);
  const auto report = engine.restore(journal.replay(), "boot-b");
  EXPECT_EQ(report.restored, 1U);
  const auto active = engine.active_grants();
  ASSERT_EQ(active.size(), 1U);
  EXPECT_EQ(active[0].deadline, b0 + 30min);
  EXPECT_EQ(remaining(active[0], clock.boot_now()), 30min);
}

TEST_F(core_engine, restore_audits_and_journals_grants_that_ended_while_down) {
  journal.seed({journaled("r1", {ssh}, "10.0.0.1", t0 - 2h, t0 - 1min, b0 - 1min),
                journaled("r2", {dns}, "10.0.0.2", t0 - 1h, t0, b0),  // ends exactly now
                journaled("r3", {https}, "10.0.0.3", t0 - 1h, t0 - 5min, b0 + 1h, "old"),
                journaled("r4", {ssh}, "10.0.0.4", t0 - 1h, t0 + 1h, b0 + 1h)});
  const auto report = engine.restore(journal.replay(), "boot-a");
  EXPECT_EQ(report.restored, 1U);
  EXPECT_EQ(report.expired, 3U);
  EXPECT_EQ(ids_of(engine.active_grants()), std::vector<std::string>{"r4"});
  EXPECT_EQ(engine.next_expiry(), b0 + 1h);

  const auto expired = audit.named("expire");
  ASSERT_EQ(expired.size(), 3U);
  EXPECT_EQ(audit.events.size(), 3U);
  const std::vector<std::string> ended_ids = {"r1", "r2", "r3"};
  for (std::size_t i = 0; i < expired.size(); ++i) {
    EXPECT_EQ(expired[i].grant_id, ended_ids[i]);
    EXPECT_EQ(expired[i].outcome, "expired");
    EXPECT_EQ(expired[i].reason, "Expired");
    EXPECT_EQ(expired[i].time, t0);
    EXPECT_EQ(expired[i].user, "alice");
    EXPECT_EQ(expired[i].justification, "ticket OPS-2");
  }
  EXPECT_EQ(expired[0].end_time, "2026-11-23T23:59:00Z");
  EXPECT_EQ(expired[2].ports, std::vector<PortSpec>{https});

  const auto ends = journal.recorded(Kind::end);
  ASSERT_EQ(ends.size(), 3U);
  for (std::size_t i = 0; i < ends.size(); ++i) {
    EXPECT_EQ(ends[i].id, ended_ids[i]);
    EXPECT_EQ(ends[i].status, GrantStatus::expired);
    EXPECT_EQ(ends[i].reason, "Expired");
  }
  EXPECT_TRUE(journal.recorded(Kind::grant).empty());
  EXPECT_EQ(ids_of(journal.replay()), std::vector<std::string>{"r4"});

  ASSERT_TRUE(engine.install().has_value());
  EXPECT_EQ(backend.installs.back().grants,
            (std::vector<TimedElement>{{key("10.0.0.4", ssh_key), 1h}}));
}

TEST_F(core_engine, restored_grants_are_installed_with_their_remaining_time) {
  journal.seed({journaled("g1", {ssh}, "10.0.0.0/24", t0 - 10min, t0 + 30min, b0 + 30min),
                journaled("g2", {ssh}, "10.0.0.7", t0 - 10min, t0 + 2h, b0 + 2h)});
  ASSERT_EQ(engine.restore(journal.replay(), "boot-a").restored, 2U);
  ASSERT_TRUE(engine.install().has_value());
  ASSERT_EQ(backend.installs.size(), 1U);
  EXPECT_EQ(backend.installs[0].grants,
            (std::vector<TimedElement>{
                {key(Family::ipv4, ip4(10, 0, 0, 0), ip4(10, 0, 0, 6), ssh_key), 30min},
                {key("10.0.0.7", ssh_key), 2h},
                {key(Family::ipv4, ip4(10, 0, 0, 8), ip4(10, 0, 0, 255), ssh_key), 30min}}));
  EXPECT_EQ(kernel_end("10.0.0.9", ssh_key), b0 + 30min);
  EXPECT_EQ(kernel_end("10.0.0.7", ssh_key), b0 + 2h);

  // Later changes start from what the install put in the kernel, and ids stay unique.
  const auto grant = grant_ok(ask({ssh}, "10.0.0.9", 1h));
  EXPECT_EQ(grant.id, "g3");
  EXPECT_EQ(backend.applies.back().remove,
            (std::vector<ElementKey>{
                key(Family::ipv4, ip4(10, 0, 0, 8), ip4(10, 0, 0, 255), ssh_key)}));
  EXPECT_EQ(kernel_end("10.0.0.9", ssh_key), b0 + 1h);
  EXPECT_EQ(kernel_end("10.0.0.10", ssh_key), b0 + 30min);
  ASSERT_TRUE(engine.revoke(admin, "g2").has_value());
  EXPECT_EQ(kernel_end("10.0.0.7", ssh_key), b0 + 30min);
}

TEST_F(core_engine, restore_applies_the_current_policy) {
  constexpr PortSpec web_alt{8080, ProtocolSpec::tcp};  // no longer protected
  journal.seed({journaled("r1", {web_alt}, "10.0.0.1", t0 - 10min, t0 + 50min, b0 + 50min),
                journaled("r2", {ssh, web_alt}, "10.0.0.2", t0 - 10min, t0 + 50min, b0 + 50min),
                // 443 now allows 1h at most: ends 30 minutes from now instead of 90.
                journaled("r3", {https}, "10.0.0.3", t0 - 30min, t0 + 90min, b0 + 90min),
                journaled("r4", {ssh}, "10.0.0.4", t0 - 10min, t0 + 50min, b0 + 50min)});
  const auto report = engine.restore(journal.replay(), "boot-a");
  EXPECT_EQ(report.restored, 3U) << "a grant the policy revoked was counted as restored";
  EXPECT_EQ(report.expired, 0U);

  const auto revokes = audit.named("revoke");
  ASSERT_EQ(revokes.size(), 1U);
  EXPECT_EQ(revokes[0].grant_id, "r1");
  EXPECT_EQ(revokes[0].outcome, "revoked");
  EXPECT_EQ(revokes[0].reason, "PolicyChanged");

  ASSERT_EQ(journal.calls.size(), 3U);
  EXPECT_EQ(journal.calls[0].kind, Kind::end);
  EXPECT_EQ(journal.calls[0].id, "r1");
  EXPECT_EQ(journal.calls[0].status, GrantStatus::revoked);
  EXPECT_EQ(journal.calls[0].reason, "PolicyChanged");
  EXPECT_EQ(journal.calls[1].kind, Kind::grant);
  EXPECT_EQ(journal.calls[1].grant.id, "r2");
  EXPECT_EQ(journal.calls[1].grant.ports, std::vector<PortSpec>{ssh});
  EXPECT_EQ(journal.calls[2].kind, Kind::grant);
  EXPECT_EQ(journal.calls[2].grant.id, "r3");
  EXPECT_EQ(journal.calls[2].grant.end, t0 + 30min);
  EXPECT_EQ(journal.calls[2].grant.deadline, b0 + 30min);

  EXPECT_EQ(ids_of(engine.active_grants()), (std::vector<std::string>{"r3", "r2", "r4"}));
  EXPECT_EQ(ids_of(journal.replay()), (std::vector<std::string>{"r2", "r3", "r4"}));
  ASSERT_TRUE(engine.install().has_value());
  EXPECT_EQ(backend.installs.back().grants,
            (std::vector<TimedElement>{{key("10.0.0.2", ssh_key), 50min},
                                       {key("10.0.0.4", ssh_key), 50min},
                                       {key("10.0.0.3", https_key), 30min}}));
}

// ---------------------------------------------------------------- replace_policy

Policy policy_without_https() {
  Policy policy;
  policy.rules = {rule(ssh, {}, 3h), rule(dns, {}, 2h)};
  return policy;
}

TEST_F(core_engine, replace_policy_revokes_grants_for_a_removed_port) {
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
            (std::vector<std::string>{"journal.end g1 Revoked PolicyChanged", "backend.install"}));
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

TEST_F(core_engine, replace_policy_narrows_multi_port_and_any_protocol_grants) {
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

TEST_F(core_engine, replace_policy_revokes_or_narrows_when_allowed_sources_shrink) {
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

TEST_F(core_engine, replace_policy_clamps_grants_to_a_shorter_maximum) {
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

TEST_F(core_engine, replace_policy_revokes_a_grant_the_clamp_would_end_in_the_past) {
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

TEST_F(core_engine, replace_policy_leaves_unaffected_grants_untouched) {
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

TEST_F(core_engine, replace_policy_counts_each_grant_once_with_one_install_and_no_apply) {
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

  ASSERT_EQ(journal.calls.size(), journal_before + 2);  // one record per changed grant
  const auto& changed = journal.calls[journal_before];
  EXPECT_EQ(changed.kind, Kind::grant);
  EXPECT_EQ(changed.grant.id, both.id);
  EXPECT_EQ(changed.grant.ports, std::vector<PortSpec>{ssh});
  EXPECT_EQ(changed.grant.end, t0 + 30min);
  EXPECT_EQ(changed.grant.deadline, b0 + 30min);
  EXPECT_EQ(journal.calls[journal_before + 1].kind, Kind::end);
  EXPECT_EQ(journal.calls[journal_before + 1].id, resolver.id);

  EXPECT_EQ(backend.applies.size(), applies_before);
  ASSERT_EQ(backend.installs.size(), 1U);
  EXPECT_EQ(backend.installs[0].protected_ports, std::vector<PortKey>{ssh_key});
  EXPECT_EQ(backend.installs[0].grants,
            (std::vector<TimedElement>{{key("10.0.0.5", ssh_key), 30min},
                                       {key("203.0.113.7", ssh_key), 20min}}));
  EXPECT_EQ(ids_of(engine.active_grants()), (std::vector<std::string>{both.id, shell.id}));
}

TEST_F(core_engine, replace_policy_install_failure_leaves_the_kernel_pending) {
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

// ---------------------------------------------------------------- repair

TEST_F(core_engine, repair_audits_tamper_and_reinstalls_live_grants) {
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

TEST_F(core_engine, failed_repair_is_audited_and_left_pending) {
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

TEST_F(core_engine, request_after_failed_repair_installs_the_whole_table) {
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

TEST_F(core_engine, revoke_after_failed_repair_installs_the_whole_table) {
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

// ---------------------------------------------------------------- random walk

// Random requests, revokes, installs and clock steps against the kernel model. After
// every step the kernel must let each sample address through exactly until the latest
// end among the live grants covering it, and no transaction may be one a kernel refuses.
TEST_F(core_engine, property_kernel_matches_live_grants) {
  std::mt19937 random(424242);
  const std::vector<std::string> sources = {
      "10.0.0.0/24", "10.0.0.0/25", "10.0.0.77",   "10.0.0.128/26", "10.0.0.200", "10.0.0.0/30",
      "0.0.0.0/0",   "203.0.113.7", "fd00::/64",   "fd00::1",       "fd00::/126", "::/0"};
  const std::vector<std::vector<PortSpec>> port_sets = {
      {ssh}, {https}, {dns}, {PortSpec{53, ProtocolSpec::udp}}, {ssh, dns}, {ssh, https}};
  std::vector<Prefix> samples;
  for (unsigned i = 0; i < 256; i += 3) samples.push_back(prefix("10.0.0." + std::to_string(i)));
  for (const auto* text : {"10.0.0.76", "10.0.0.77", "10.0.0.78", "10.0.0.127", "10.0.0.128",
                           "10.0.0.191", "10.0.0.192", "10.0.0.255", "10.0.1.0", "0.0.0.0",
                           "255.255.255.255", "203.0.113.7", "fd00::", "fd00::1", "fd00::3",
                           "fd00::4", "fd00::ffff:ffff:ffff:ffff", "fd00:0:0:1::", "::",
                           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}) {
    samples.push_back(prefix(text));
  }
  const PortKey keys[] = {ssh_key, https_key, dns_tcp, dns_udp};

  int granted = 0, revoked = 0;
  for (int step = 0; step < 600; ++step) {
    const int action = static_cast<int>(random() % 10);
    if (action < 5) {
      const auto& source = sources[random() % sources.size()];
      const auto& ports = port_sets[random() % port_sets.size()];
      const auto duration = Milliseconds((1 + random() % 120) * 60'000);
      if (engine.request(admin, ask(ports, source, duration))) ++granted;
    } else if (action < 7) {
      const auto active = engine.active_grants();
      if (!active.empty()) {
        const auto& victim = active[random() % active.size()];
        ASSERT_TRUE(engine.revoke(admin, victim.id).has_value()) << "step " << step;
        ++revoked;
      }
    } else if (action < 9) {
      clock.advance(Milliseconds((random() % 40) * 60'000 + random() % 1000));
      if (random() % 2 == 0) engine.expire_due();
    } else {
      ASSERT_TRUE(engine.install().has_value()) << "step " << step;
    }
    ASSERT_TRUE(backend.violations.empty()) << "step " << step << ": " << backend.violations[0];

    const auto active = engine.active_grants();
    for (const auto& sample : samples) {
      for (const auto port : keys) {
        std::optional<Deadline> expected;
        for (const auto& grant : active) {
          if (!grant.source.contains(sample)) continue;
          for (const auto& spec : grant.ports) {
            if (spec.number != port.port) continue;
            for (const auto protocol : expand(spec.protocol)) {
              if (protocol != port.protocol) continue;
              expected = std::max(expected.value_or(grant.deadline), grant.deadline);
            }
          }
        }
        ASSERT_EQ(backend.end_for(sample.family(), sample.address(), port), expected)
            << "step " << step << " " << sample.to_string() << " " << to_string(port.protocol)
            << "/" << port.port;
      }
    }
  }
  EXPECT_GT(granted, 100);
  EXPECT_GT(revoked, 30);
}

}  // namespace
}  // namespace jitd::core
