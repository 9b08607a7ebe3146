#include <gtest/gtest.h>

#include "engine_fixture.hpp"

namespace jitd::core {
namespace {

using namespace engine_fixture;

// ---------------------------------------------------------------- journal first

TEST_F(CoreEngineTest, RequestJournalsTheGrantBeforeTheKernelApply) {
  trace();
  clock.advance(3s);
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  // The record is synced before the kernel sees the grant.
  EXPECT_EQ(log.calls, (std::vector<std::string>{"journal.grant g1", "journal.sync",
                                                 "backend.apply", "audit.request granted"}));
  ASSERT_EQ(journal.calls.size(), 1U);
  EXPECT_EQ(journal.calls[0].kind, Kind::grant);
  expect_same_grant(journal.calls[0].grant, grant);
  EXPECT_EQ(journal.calls[0].grant.deadline, b0 + 3s + 1h);
  const auto replay = journal.replay();
  ASSERT_EQ(replay.size(), 1U);
  expect_same_grant(replay[0].grant, grant);
  EXPECT_EQ(replay[0].boot_id, "boot-a");
}

TEST_F(CoreEngineTest, JournalFailureFailsRequestAndAppliesNothing) {
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

TEST_F(CoreEngineTest, KernelFailureAfterJournalingEndsTheRecord) {
  trace();
  backend.fail_next_apply(ENOBUFS);
  const auto result = engine.request(admin, ask({ssh, https}, "10.0.0.1", 1h));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, ErrorCode::kernel);
  EXPECT_EQ(result.error().sys_errno, ENOBUFS);
  EXPECT_EQ(log.calls, (std::vector<std::string>{"journal.grant g1", "journal.sync",
                                                 "backend.apply",
                                                 "journal.end g1 Revoked KernelRefused",
                                                 "journal.sync", "audit.request failed"}));
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

TEST_F(CoreEngineTest, RevokeJournalsTheEndBeforeTheKernelApply) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  trace();
  clock.advance(5min);
  const auto revoked = engine.revoke(admin, grant.id);
  ASSERT_TRUE(revoked.has_value()) << revoked.error().message;
  EXPECT_EQ(calls_to(log, {"journal.", "backend."}),
            (std::vector<std::string>{"journal.end g1 Revoked UserRequested", "journal.sync",
                                      "backend.apply"}));
  EXPECT_EQ(calls_to(log, {"audit."}), std::vector<std::string>{"audit.revoke revoked"});
  EXPECT_TRUE(journal.replay().empty());
  EXPECT_FALSE(engine.kernel_pending());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
}

TEST_F(CoreEngineTest, RevokeGoesAheadWhenTheJournalFailsAndAuditsIt) {
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

TEST_F(CoreEngineTest, JournalEndRetryKeepsGoingWhileTheJournalFails) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  journal.fail_next();
  ASSERT_TRUE(engine.revoke(admin, grant.id).has_value());
  journal.fail_next();
  EXPECT_TRUE(engine.retry_pending().journal.has_value());
  EXPECT_TRUE(engine.journal_pending());
  retry_all_pending();
  EXPECT_TRUE(journal.replay().empty());
}

TEST_F(CoreEngineTest, RetryReinstallsARefusedRevokeWhileTheJournalStillFails) {
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

TEST_F(CoreEngineTest, RetryReportsJournalAndKernelRefusalsApart) {
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

TEST_F(CoreEngineTest, ExpireDueJournalsEachEnd) {
  const auto first = grant_ok(ask({ssh}, "10.0.0.1", 10min));
  const auto second = grant_ok(ask({ssh}, "10.0.0.2", 1h));
  clock.advance(10min);
  engine.expire_due();
  const auto ends = journal.recorded(Kind::end);
  ASSERT_EQ(ends.size(), 1U);
  EXPECT_EQ(ends[0].id, first.id);
  EXPECT_EQ(ends[0].status, GrantStatus::revoked);
  EXPECT_EQ(ends[0].reason, "Expired");
  EXPECT_EQ(ids_of(journal.replay()), std::vector<std::string>{second.id});
}

}  // namespace
}  // namespace jitd::core
