// Group commit: requests submitted together share one journal sync and one kernel
// transaction; none is answered before both; one request's failure never fails another's.
#include <gtest/gtest.h>

#include "engine_fixture.hpp"

namespace jitd::core {
namespace {

using namespace engine_fixture;

// The outcomes of submitted requests, by submission order, as their callbacks deliver them.
struct Answers {
  std::vector<std::optional<Result<Grant>>> outcomes;

  GrantCallback slot() {
    outcomes.emplace_back();
    return [this, index = outcomes.size() - 1](Result<Grant> outcome) {
      outcomes[index] = std::move(outcome);
    };
  }
  [[nodiscard]] std::size_t answered() const {
    return static_cast<std::size_t>(std::count_if(
        outcomes.begin(), outcomes.end(), [](const auto& outcome) { return outcome.has_value(); }));
  }
};

TEST_F(CoreEngineTest, SubmittedRequestsShareOneSyncAndOneTransaction) {
  trace();
  Answers answers;
  for (const auto* source : {"10.0.0.1", "10.0.0.3", "10.0.0.5"}) {
    engine.submit(admin, ask({ssh}, source, 1h), answers.slot());
  }
  EXPECT_EQ(answers.answered(), 0U) << "answered before its record was synced";
  EXPECT_TRUE(engine.has_pending());
  EXPECT_EQ(journal.syncs, 0U);
  EXPECT_TRUE(backend.applies.empty());

  engine.commit();
  EXPECT_FALSE(engine.has_pending());
  ASSERT_EQ(answers.answered(), 3U);
  for (const auto& outcome : answers.outcomes) {
    EXPECT_TRUE(outcome->has_value()) << outcome->error().message;
  }
  EXPECT_EQ(calls_to(log, {"journal.", "backend."}),
            (std::vector<std::string>{"journal.grant g1", "journal.grant g2", "journal.grant g3",
                                      "journal.sync", "backend.apply"}));
  ASSERT_EQ(backend.applies.size(), 1U);
  EXPECT_EQ(backend.applies[0].add.size(), 3U);
  EXPECT_EQ(engine.active_grants().size(), 3U);
  EXPECT_EQ(audit.named("request").size(), 3U);
  for (const auto* source : {"10.0.0.1", "10.0.0.3", "10.0.0.5"}) {
    EXPECT_EQ(kernel_end(source, ssh_key), b0 + 1h) << source;
  }
}

TEST_F(CoreEngineTest, SyncFailureFailsExactlyTheRequestsOfThatBatch) {
  const auto before = grant_ok(ask({ssh}, "10.0.0.9", 1h));
  Answers answers;
  engine.submit(admin, ask({ssh}, "10.0.0.1", 1h), answers.slot());
  engine.submit(admin, ask({ssh}, "10.0.0.3", 1h), answers.slot());
  journal.fail_next(EIO);  // the batch's sync
  engine.commit();
  ASSERT_EQ(answers.answered(), 2U);
  for (const auto& outcome : answers.outcomes) {
    ASSERT_FALSE(outcome->has_value());
    EXPECT_EQ(outcome->error().code, ErrorCode::io);
    EXPECT_EQ(outcome->error().sys_errno, EIO);
  }
  // Their records are closed, so no restart applies a grant its caller was refused.
  EXPECT_EQ(ids_of(journal.replay()), std::vector<std::string>{before.id});
  const auto ends = journal.recorded(Kind::end);
  ASSERT_EQ(ends.size(), 2U);
  EXPECT_EQ(ends[0].reason, "JournalFailed");
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
  EXPECT_EQ(kernel_end("10.0.0.3", ssh_key), std::nullopt);
  EXPECT_EQ(ids_of(engine.active_grants()), std::vector<std::string>{before.id});
  EXPECT_EQ(audit.named("request").back().outcome, "failed");
  // The next batch is not affected.
  grant_ok(ask({ssh}, "10.0.0.5", 1h));
}

TEST_F(CoreEngineTest, KernelRefusalOfABatchFailsOnlyTheRequestAtFault) {
  trace();
  backend.refused_source = prefix("10.0.0.3").range();
  Answers answers;
  for (const auto* source : {"10.0.0.1", "10.0.0.3", "10.0.0.5"}) {
    engine.submit(admin, ask({ssh}, source, 1h), answers.slot());
  }
  engine.commit();
  ASSERT_EQ(answers.answered(), 3U);
  EXPECT_TRUE(answers.outcomes[0]->has_value());
  ASSERT_FALSE(answers.outcomes[1]->has_value());
  EXPECT_EQ(answers.outcomes[1]->error().code, ErrorCode::kernel);
  EXPECT_TRUE(answers.outcomes[2]->has_value());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h);
  EXPECT_EQ(kernel_end("10.0.0.3", ssh_key), std::nullopt);
  EXPECT_EQ(kernel_end("10.0.0.5", ssh_key), b0 + 1h);
  EXPECT_EQ(ids_of(engine.active_grants()), (std::vector<std::string>{"g1", "g3"}));
  EXPECT_EQ(ids_of(journal.replay()), (std::vector<std::string>{"g1", "g3"}));
  const auto ends = journal.recorded(Kind::end);
  ASSERT_EQ(ends.size(), 1U);
  EXPECT_EQ(ends[0].id, "g2");
  EXPECT_EQ(ends[0].reason, "KernelRefused");
  // Only one sync for the three records, and one for the end record.
  EXPECT_EQ(journal.syncs, 2U);
  backend.refused_source.reset();
  grant_ok(ask({ssh}, "10.0.0.7", 1h));
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h);
  EXPECT_EQ(kernel_end("10.0.0.7", ssh_key), b0 + 1h);
}

TEST_F(CoreEngineTest, ARevokeCommitsTheRequestsSubmittedBeforeIt) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  Answers answers;
  engine.submit(admin, ask({ssh}, "10.0.0.3", 1h), answers.slot());
  ASSERT_TRUE(engine.revoke(admin, grant.id).has_value());
  ASSERT_EQ(answers.answered(), 1U);
  EXPECT_TRUE(answers.outcomes[0]->has_value());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
  EXPECT_EQ(kernel_end("10.0.0.3", ssh_key), b0 + 1h);
}

TEST_F(CoreEngineTest, AnExpiryStormSharesOneSync) {
  for (int i = 0; i < 50; ++i) {
    grant_ok(ask({ssh}, "10.0.1." + std::to_string(2 * i), 10min));
  }
  const auto syncs_before = journal.syncs;
  clock.advance(10min);
  engine.expire_due();
  EXPECT_EQ(journal.syncs, syncs_before + 1);
  EXPECT_EQ(audit.named("expire").size(), 50U);
  EXPECT_TRUE(engine.active_grants().empty());
  EXPECT_EQ(engine.next_expiry(), std::nullopt);
  EXPECT_TRUE(journal.replay().empty());
}

TEST_F(CoreEngineTest, AnExpiryStormIsRecordedInPassesWithRequestsServedBetween) {
  constexpr int storm = 1200;
  for (int i = 0; i < storm; ++i) {
    grant_ok(
        ask({ssh}, "10.1." + std::to_string(i / 100) + "." + std::to_string(2 * (i % 100)), 10min));
  }
  clock.advance(10min);
  const auto syncs_before = journal.syncs;
  engine.expire_due();
  const auto first_pass = audit.named("expire").size();
  EXPECT_GT(first_pass, 0U);
  EXPECT_LT(first_pass, static_cast<std::size_t>(storm))
      << "one pass held the loop for the whole storm";
  ASSERT_TRUE(engine.next_expiry().has_value());
  EXPECT_LE(*engine.next_expiry(), clock.boot_now()) << "the rest must still be due";
  grant_ok(ask({ssh}, "10.2.0.1", 1h));  // served between two passes
  int passes = 1;
  while (engine.next_expiry() && *engine.next_expiry() <= clock.boot_now()) {
    engine.expire_due();
    ASSERT_LT(++passes, storm) << "expiry makes no progress";
  }
  EXPECT_EQ(audit.named("expire").size(), static_cast<std::size_t>(storm));
  EXPECT_EQ(journal.syncs - syncs_before, static_cast<std::size_t>(passes) + 1);  // + the grant
  EXPECT_EQ(ids_of(engine.active_grants()).size(), 1U);
  EXPECT_EQ(journal.replay().size(), 1U);
}

}  // namespace
}  // namespace jitd::core
