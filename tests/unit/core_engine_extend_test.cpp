#include <gtest/gtest.h>

#include <cerrno>
#include <utility>

#include "engine_fixture.hpp"

namespace jitd::core {
namespace {

using namespace engine_fixture;

// ---------------------------------------------------------------- extend

// Expects `result` to be refused with `code`, with nothing changed: the grant keeps its end in
// the engine, the journal and the kernel, and the audit log got a refused "extend" line.
class CoreEngineExtendTest : public CoreEngineTest {
 protected:
  using CoreEngineTest::CoreEngineTest;

  Error extend_refused(const Caller& caller, std::string_view id, const Extension& extension,
                       ErrorCode code) {
    const auto journal_calls = journal.calls.size();
    const auto applies = backend.applies.size();
    const auto events = audit.events.size();
    const auto live = engine.active_grants();
    auto result = engine.extend(caller, id, extension);
    EXPECT_FALSE(result.has_value()) << "extended to " << (result ? format_utc(result->end) : "");
    if (result) return Error{};
    EXPECT_EQ(result.error().code, code) << result.error().message;
    EXPECT_EQ(journal.calls.size(), journal_calls) << "a refusal reached the journal";
    EXPECT_EQ(backend.applies.size(), applies) << "a refusal reached the kernel";
    const auto after = engine.active_grants();
    EXPECT_EQ(after.size(), live.size());
    for (std::size_t i = 0; i < std::min(after.size(), live.size()); ++i) {
      expect_same_grant(after[i], live[i]);
    }
    EXPECT_EQ(audit.events.size(), events + 1);
    if (audit.events.size() == events + 1) {
      const auto& event = audit.events.back();
      EXPECT_EQ(event.event, "extend");
      EXPECT_EQ(event.outcome, "refused");
      EXPECT_EQ(event.grant_id, id);
      EXPECT_EQ(event.uid, caller.uid);
      EXPECT_NE(event.reason.find(result.error().message), std::string::npos) << event.reason;
    }
    return result.error();
  }

  Grant extended(const Caller& caller, std::string_view id, const Extension& extension) {
    auto result = engine.extend(caller, id, extension);
    EXPECT_TRUE(result.has_value()) << (result ? "" : result.error().message);
    return result ? *result : Grant{};
  }
};

TEST_F(CoreEngineExtendTest, ExtendByMovesTheEndInEngineJournalAndKernelInOneApply) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
  clock.advance(10min);
  const auto applies = backend.applies.size();
  const auto longer = extended(alice, grant.id, {30min, std::nullopt});
  EXPECT_EQ(longer.id, grant.id);
  EXPECT_EQ(longer.start, t0);
  EXPECT_EQ(longer.end, t0 + 90min);
  EXPECT_EQ(longer.deadline, b0 + 90min);
  ASSERT_EQ(engine.active_grants().size(), 1U);
  expect_same_grant(engine.active_grants()[0], longer);
  EXPECT_EQ(engine.next_expiry(), b0 + 90min);

  // One transaction: the old element out, the new one in with the time left to the new end.
  ASSERT_EQ(backend.applies.size(), applies + 1);
  EXPECT_EQ(backend.applies.back().remove, std::vector<ElementKey>{key("10.0.0.1", ssh_key)});
  EXPECT_EQ(backend.applies.back().add,
            (std::vector<TimedElement>{{key("10.0.0.1", ssh_key), 80min}}));
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 90min);

  const auto records = journal.recorded(Kind::grant);
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.back().grant.end, t0 + 90min);
  EXPECT_EQ(records.back().grant.deadline, b0 + 90min);
  ASSERT_EQ(journal.replay().size(), 1U);
  EXPECT_EQ(journal.replay()[0].grant.end, t0 + 90min);

  const auto events = audit.named("extend");
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(events[0].outcome, "extended");
  EXPECT_EQ(events[0].grant_id, grant.id);
  EXPECT_EQ(events[0].user, "alice");
  EXPECT_EQ(events[0].end_time, format_utc(t0 + 90min));
  EXPECT_NE(events[0].reason.find(format_utc(t0 + 1h)), std::string::npos) << events[0].reason;

  // The kernel ends it at the new deadline, not the old one.
  clock.advance(50min);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 90min);
  clock.advance(30min);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
}

TEST_F(CoreEngineExtendTest, ExtendUntilSetsTheEnd) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
  const auto longer = extended(alice, grant.id, {std::nullopt, t0 + 2h + 30s});
  EXPECT_EQ(longer.end, t0 + 2h + 30s);
  EXPECT_EQ(longer.deadline, b0 + 2h + 30s);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 2h + 30s);
}

TEST_F(CoreEngineExtendTest, JournalRecordIsSyncedBeforeTheKernelChanges) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
  trace();
  (void)extended(alice, grant.id, {30min, std::nullopt});
  EXPECT_EQ(calls_to(log, {"journal.", "backend."}),
            (std::vector<std::string>{"journal.grant g1", "journal.sync", "backend.apply"}));
}

TEST_F(CoreEngineExtendTest, AJournalThatRefusesLeavesTheGrantAndKernelAsTheyWere) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
  journal.fail_next();
  const auto applies = backend.applies.size();
  auto result = engine.extend(alice, grant.id, {30min, std::nullopt});
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::io);
  EXPECT_EQ(backend.applies.size(), applies);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h);
  ASSERT_EQ(engine.active_grants().size(), 1U);
  EXPECT_EQ(engine.active_grants()[0].end, t0 + 1h);
}

TEST_F(CoreEngineExtendTest, AdministratorExtendsAnotherUsersGrant) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
  const auto longer = extended(admin, grant.id, {1h, std::nullopt});
  EXPECT_EQ(longer.end, t0 + 2h);
  EXPECT_EQ(longer.requestor.name, "alice");
  const auto events = audit.named("extend");
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(events[0].uid, admin.uid);  // who acted
  EXPECT_EQ(events[0].user, "root");
}

TEST_F(CoreEngineExtendTest, AnotherRequesterMayNotExtendTheGrant) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
  const auto error = extend_refused(bob, grant.id, {30min, std::nullopt}, ErrorCode::forbidden);
  EXPECT_NE(error.message.find("alice"), std::string::npos) << error.message;
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h);
}

TEST_F(CoreEngineExtendTest, CallerWithoutTheRequestRightMayNotExtend) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
  (void)extend_refused(mallory, grant.id, {30min, std::nullopt}, ErrorCode::forbidden);
}

TEST_F(CoreEngineExtendTest, UnknownEndedAndRevokedGrantsAreNotFound) {
  (void)extend_refused(alice, "nope", {30min, std::nullopt}, ErrorCode::not_found);

  const auto expiring = grant_ok(ask({ssh}, "10.0.0.1", 10min), alice);
  clock.advance(10min);  // ended, not yet recorded as expired
  (void)extend_refused(alice, expiring.id, {30min, std::nullopt}, ErrorCode::not_found);
  engine.expire_due();
  (void)extend_refused(alice, expiring.id, {30min, std::nullopt}, ErrorCode::not_found);

  const auto revoked = grant_ok(ask({ssh}, "10.0.0.2", 1h), alice);
  ASSERT_TRUE(engine.revoke(alice, revoked.id).has_value());
  (void)extend_refused(alice, revoked.id, {30min, std::nullopt}, ErrorCode::not_found);
}

TEST_F(CoreEngineExtendTest, ExtensionMustMoveTheEndLaterAndNameOneOfByAndUntil) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
  (void)extend_refused(alice, grant.id, {std::nullopt, std::nullopt}, ErrorCode::invalid_request);
  (void)extend_refused(alice, grant.id, {1h, t0 + 2h}, ErrorCode::invalid_request);
  (void)extend_refused(alice, grant.id, {0ms, std::nullopt}, ErrorCode::invalid_argument);
  const auto error =
      extend_refused(alice, grant.id, {std::nullopt, t0 + 1h}, ErrorCode::invalid_request);
  EXPECT_NE(error.message.find("revoke"), std::string::npos) << error.message;
}

TEST_F(CoreEngineExtendTest, ExtendFromStartBoundsTheEndByTheMaximumFromTheGrantsStart) {
  // 22/tcp: at most 3h. An hour into a 2h grant, the end may reach t0 + 3h and no further.
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 2h), alice);
  clock.advance(1h);
  const auto error =
      extend_refused(alice, grant.id, {std::nullopt, t0 + 3h + 1s}, ErrorCode::duration_too_long);
  EXPECT_NE(error.message.find("extendFrom: start"), std::string::npos) << error.message;
  EXPECT_NE(error.message.find(format_utc(t0 + 3h)), std::string::npos) << error.message;
  EXPECT_EQ(extended(alice, grant.id, {std::nullopt, t0 + 3h}).end, t0 + 3h);
  // The maximum is reached: no further extension, however small.
  (void)extend_refused(alice, grant.id, {1s, std::nullopt}, ErrorCode::duration_too_long);
}

TEST_F(CoreEngineExtendTest, TheShortestRuleOfTheGrantsPortsBoundsTheEnd) {
  // 22/tcp allows 3h, 443/tcp 1h: the grant on both may reach t0 + 1h only.
  const auto grant = grant_ok(ask({ssh, https}, "10.0.0.1", 30min), alice);
  const auto error =
      extend_refused(alice, grant.id, {31min, std::nullopt}, ErrorCode::duration_too_long);
  EXPECT_NE(error.message.find("443/tcp"), std::string::npos) << error.message;
  EXPECT_EQ(extended(alice, grant.id, {30min, std::nullopt}).end, t0 + 1h);
}

// A journal whose disk takes the records it is given and then fails the next sync.
class FailingSyncJournal final : public Journal {
 public:
  explicit FailingSyncJournal(Journal& disk) : disk_(disk) {}
  Result<void> record_grant(const Grant& grant) override { return disk_.record_grant(grant); }
  Result<void> record_end(const std::string& id, GrantStatus status,
                          const std::string& reason) override {
    return disk_.record_end(id, status, reason);
  }
  Result<void> sync() override {
    if (std::exchange(fail_sync, false)) return fail(ErrorCode::io, "journal: sync failed", EIO);
    return disk_.sync();
  }
  bool fail_sync = false;

 private:
  Journal& disk_;
};

TEST_F(CoreEngineExtendTest, AnExtensionWhoseSyncFailsDoesNotComeBackAfterARestart) {
  FailingSyncJournal failing{journal};
  AccessEngine over_failing(
      backend, failing, audit, clock, [this] { return next_id(); }, engine.policy());
  const auto grant = over_failing.request(alice, ask({ssh}, "10.0.0.1", 1h));
  ASSERT_TRUE(grant.has_value());
  failing.fail_sync = true;
  auto result = over_failing.extend(alice, grant->id, {30min, std::nullopt});
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::io);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h);
  // What a restart would replay: the end that was answered, not the refused one.
  ASSERT_EQ(journal.replay().size(), 1U);
  EXPECT_EQ(journal.replay()[0].grant.end, t0 + 1h);
  EXPECT_EQ(journal.replay()[0].grant.deadline, b0 + 1h);
}

// 22/tcp with extendFrom: now, up to 3h.
Policy extend_from_now_policy() {
  auto policy = default_policy();
  policy.rules[0].extend_from = PortRule::ExtendFrom::now;
  return policy;
}

class CoreEngineExtendFromNowTest : public CoreEngineExtendTest {
 protected:
  CoreEngineExtendFromNowTest() : CoreEngineExtendTest(extend_from_now_policy()) {}
};

TEST_F(CoreEngineExtendFromNowTest, ExtendFromNowBoundsTheEndByTheMaximumFromNow) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 2h), alice);
  clock.advance(90min);
  // Past t0 + 3h (the bound from its start), within now + 3h.
  const auto error = extend_refused(alice, grant.id, {std::nullopt, t0 + 90min + 3h + 1s},
                                    ErrorCode::duration_too_long);
  EXPECT_NE(error.message.find("counted from now (extendFrom: now)"), std::string::npos)
      << error.message;
  EXPECT_NE(error.message.find(format_utc(t0 + 90min + 3h)), std::string::npos) << error.message;
  const auto longer = extended(alice, grant.id, {std::nullopt, t0 + 90min + 3h});
  EXPECT_EQ(longer.end, t0 + 90min + 3h);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 90min + 3h);
}

}  // namespace
}  // namespace jitd::core
