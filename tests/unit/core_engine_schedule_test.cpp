#include <gtest/gtest.h>

#include "engine_fixture.hpp"

namespace jitd::core {
namespace {

using namespace engine_fixture;

// ---------------------------------------------------------------- scheduled start

GrantRequest ask_from(TimePoint start, std::string_view source = "10.0.0.1",
                      Milliseconds duration = 1h) {
  auto request = ask({ssh}, source, duration);
  request.start_time = start;
  return request;
}

class CoreEngineScheduleTest : public CoreEngineTest {
 protected:
  // alice asks for 22/tcp from 10.0.0.1 for an hour, starting two hours from now.
  Grant scheduled() {
    auto grant = grant_ok(ask_from(t0 + 2h), alice);
    EXPECT_EQ(grant.status, GrantStatus::pending);
    return grant;
  }
};

TEST_F(CoreEngineScheduleTest, FutureStartWaitsWithNothingInTheKernel) {
  ASSERT_TRUE(engine.install().has_value());
  const auto grant = scheduled();
  EXPECT_EQ(grant.status_reason, reason::scheduled);
  EXPECT_FALSE(grant.needs_approval);
  EXPECT_EQ(grant.start, t0 + 2h);
  EXPECT_EQ(grant.end, t0 + 3h);
  EXPECT_EQ(grant.wait_until, b0 + 2h);
  EXPECT_TRUE(backend.applies.empty());
  EXPECT_TRUE(backend.live_elements().empty());
  EXPECT_TRUE(engine.active_grants().empty());
  EXPECT_EQ(ids_of(engine.pending_grants()), std::vector<std::string>{grant.id});
  EXPECT_EQ(engine.next_expiry(), b0 + 2h);
  ASSERT_EQ(journal.replay().size(), 1U);
  EXPECT_EQ(journal.replay()[0].grant.status, GrantStatus::pending);
}

TEST_F(CoreEngineScheduleTest, StartsAtItsTimeWithTheRightDeadline) {
  const auto grant = scheduled();
  clock.advance(2h - 1ms);
  engine.expire_due();
  EXPECT_TRUE(engine.active_grants().empty());
  EXPECT_TRUE(backend.live_elements().empty());
  clock.advance(1ms);
  engine.expire_due();
  EXPECT_TRUE(engine.pending_grants().empty());
  const auto active = engine.active_grants();
  ASSERT_EQ(active.size(), 1U);
  EXPECT_EQ(active[0].id, grant.id);
  EXPECT_EQ(active[0].status, GrantStatus::initiated);
  EXPECT_EQ(active[0].start, t0 + 2h);
  EXPECT_EQ(active[0].end, t0 + 3h);
  EXPECT_EQ(active[0].deadline, b0 + 3h);
  EXPECT_EQ(backend.applies.back().add,
            (std::vector<TimedElement>{{key("10.0.0.1", ssh_key), 1h}}));
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 3h);
  EXPECT_EQ(engine.next_expiry(), b0 + 3h);
  ASSERT_EQ(journal.replay().size(), 1U);
  EXPECT_EQ(journal.replay()[0].grant.status, GrantStatus::initiated);
  const auto starts = audit.named("start");
  ASSERT_EQ(starts.size(), 1U);
  EXPECT_EQ(starts[0].outcome, "granted");
  EXPECT_EQ(starts[0].grant_id, grant.id);
}

TEST_F(CoreEngineScheduleTest, ALateTimerDoesNotLengthenTheGrant) {
  (void)scheduled();
  clock.advance(2h + 5min);
  engine.expire_due();
  ASSERT_EQ(engine.active_grants().size(), 1U);
  EXPECT_EQ(engine.active_grants()[0].deadline, b0 + 3h);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 3h);
}

// Each start is journaled and synced on its own: many due at once start a batch per pass, and
// the engine says it has more due at once.
TEST_F(CoreEngineScheduleTest, ManyStartsDueAtOnceStartABatchAPass) {
  ASSERT_TRUE(engine.install().has_value());
  for (int i = 1; i <= 40; ++i) {
    auto request = ask({ssh}, "10.1.0." + std::to_string(i), 1h);
    request.start_time = t0 + 2h;
    (void)grant_ok(request, alice);
  }
  clock.advance(2h);
  std::vector<std::size_t> live;
  while (!engine.pending_grants().empty() && live.size() < 10) {
    ASSERT_LE(*engine.next_expiry(), clock.boot_now());
    engine.expire_due();
    live.push_back(engine.active_grants().size());
  }
  EXPECT_EQ(live, (std::vector<std::size_t>{16, 32, 40}));
}

TEST_F(CoreEngineScheduleTest, StartMoreThanMaxScheduleAheadIsRefused) {
  const auto error =
      refused(ask_from(t0 + max_schedule_ahead + 1s), ErrorCode::invalid_request, alice);
  EXPECT_NE(error.message.find("startTimeUtc"), std::string::npos) << error.message;
  EXPECT_EQ(grant_ok(ask_from(t0 + max_schedule_ahead), alice).status, GrantStatus::pending);
}

TEST_F(CoreEngineScheduleTest, StartInThePastStartsAtOnce) {
  const auto grant = grant_ok(ask_from(t0 - 1h), alice);
  EXPECT_EQ(grant.status, GrantStatus::initiated);
  EXPECT_EQ(grant.start, t0);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h);
}

TEST_F(CoreEngineScheduleTest, RestartKeepsTheSchedule) {
  const auto grant = scheduled();
  clock.advance(30min);
  auto restarted = restarted_engine();
  (void)restarted.restore(journal.replay(), journal.boot_id);
  ASSERT_TRUE(restarted.install().has_value());
  EXPECT_TRUE(backend.live_elements().empty());
  EXPECT_EQ(ids_of(restarted.pending_grants()), std::vector<std::string>{grant.id});
  EXPECT_EQ(restarted.next_expiry(), b0 + 2h);
  clock.advance(90min);
  restarted.expire_due();
  EXPECT_EQ(ids_of(restarted.active_grants()), std::vector<std::string>{grant.id});
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 3h);
}

TEST_F(CoreEngineScheduleTest, RebootKeepsTheUtcStart) {
  const auto grant = scheduled();
  clock.advance(30min);
  auto restarted = restarted_engine();
  (void)restarted.restore(journal.replay(), "another-boot");
  // 90 minutes were left until the UTC start.
  const auto start = clock.boot_now() + 90min;
  EXPECT_EQ(restarted.next_expiry(), start);
  clock.advance(90min);
  restarted.expire_due();
  ASSERT_EQ(restarted.active_grants().size(), 1U);
  EXPECT_EQ(restarted.active_grants()[0].deadline, start + 1h);
  EXPECT_EQ(restarted.active_grants()[0].id, grant.id);
}

TEST_F(CoreEngineScheduleTest, RevokeWithdrawsAScheduledGrant) {
  RecordingHistory history;
  engine.set_history(&history);
  const auto grant = scheduled();
  clock.advance(10min);
  auto withdrawn = engine.revoke(alice, grant.id);
  ASSERT_TRUE(withdrawn.has_value()) << withdrawn.error().message;
  EXPECT_EQ(withdrawn->status, GrantStatus::revoked);
  EXPECT_EQ(withdrawn->status_reason, reason::user_requested);
  EXPECT_EQ(withdrawn->ended, t0 + 10min);
  EXPECT_EQ(withdrawn->ended_by, (Requestor{alice.uid, alice.name}));
  EXPECT_TRUE(engine.pending_grants().empty());
  EXPECT_TRUE(journal.replay().empty());
  ASSERT_EQ(history.ended.size(), 1U);
  EXPECT_EQ(history.ended[0].status_reason, reason::user_requested);
  // Its time comes and goes without it.
  clock.advance(2h);
  engine.expire_due();
  EXPECT_TRUE(engine.active_grants().empty());
  EXPECT_TRUE(backend.applies.empty());
}

TEST_F(CoreEngineScheduleTest, AnotherRequesterMayNotWithdrawIt) {
  const auto grant = scheduled();
  auto result = engine.revoke(bob, grant.id);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::forbidden);
  EXPECT_EQ(ids_of(engine.pending_grants()), std::vector<std::string>{grant.id});
}

}  // namespace
}  // namespace jitd::core
