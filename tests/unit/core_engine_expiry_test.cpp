#include <gtest/gtest.h>

#include "engine_fixture.hpp"

namespace jitd::core {
namespace {

using namespace engine_fixture;

// ---------------------------------------------------------------- expiry

TEST_F(CoreEngineTest, ExpireDueRecordsAndForgetsEndedGrantsWithoutKernelCalls) {
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

TEST_F(CoreEngineTest, ExpireDueHandlesSeveralGrantsAtOnce) {
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

TEST_F(CoreEngineTest, RequestAfterExpiryDoesNotRemoveEndedElements) {
  grant_ok(ask({ssh}, "10.0.0.0/24", 1h));
  clock.advance(2h);
  engine.expire_due();
  grant_ok(ask({ssh}, "10.0.0.0/24", 1h));
  EXPECT_TRUE(backend.applies.back().remove.empty());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 3h);
}

TEST_F(CoreEngineTest, RequestAfterUnrecordedExpiryDoesNotRemoveEndedElements) {
  // expire_due has not run yet, but the kernel already dropped the element.
  grant_ok(ask({ssh}, "10.0.0.0/24", 1h));
  clock.advance(1h);
  grant_ok(ask({ssh}, "10.0.0.7", 1h));
  EXPECT_TRUE(backend.applies.back().remove.empty());
  EXPECT_EQ(backend.applies.back().add,
            (std::vector<TimedElement>{{key("10.0.0.7", ssh_key), 1h}}));
  EXPECT_EQ(kernel_end("10.0.0.8", ssh_key), std::nullopt);
}

TEST_F(CoreEngineTest, RevokeOfEndedButUnexpiredGrantIsNotFoundAndNeedsNoKernelChange) {
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
  EXPECT_EQ(journal.calls.back().status, GrantStatus::revoked);
}

TEST_F(CoreEngineTest, NextExpiryIsEarliestEnd) {
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

TEST_F(CoreEngineTest, ActiveGrantsSortedByStart) {
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

class CoreEngineIdsTest : public CoreEngineTest {};

TEST_F(CoreEngineIdsTest, ActiveGrantsOrderDoesNotFollowIdOrder) {
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

// ---------------------------------------------------------------- boot clock

TEST_F(CoreEngineTest, WallClockJumpForwardDoesNotEndAGrantEarly) {
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

TEST_F(CoreEngineTest, WallClockJumpBackwardDoesNotExtendAGrant) {
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

}  // namespace
}  // namespace jitd::core
