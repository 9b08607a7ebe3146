#include <gtest/gtest.h>

#include "engine_fixture.hpp"

namespace jitd::core {
namespace {

using namespace engine_fixture;

// ---------------------------------------------------------------- approval

const Requestor bob_requestor{bob.uid, bob.name};

// 22/tcp needs one of alice and bob to approve, within 30 minutes; the other ports do not.
Policy approval_policy() {
  auto policy = default_policy();
  auto& ssh_rule = policy.rules[0];
  ssh_rule.approval_required = true;
  ssh_rule.approvers.users = {"alice", "bob"};
  ssh_rule.approvers.uids = {alice.uid, bob.uid};
  ssh_rule.approval_timeout = 30min;
  return policy;
}

class CoreEngineApprovalTest : public CoreEngineTest {
 protected:
  CoreEngineApprovalTest() : CoreEngineTest(approval_policy()) {}

  // alice asks for 22/tcp from 10.0.0.1 for an hour: pending.
  Grant pending_request() {
    auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
    EXPECT_EQ(grant.status, GrantStatus::pending);
    return grant;
  }

  // Expects the decision refused with `code`, the request still waiting, the kernel unchanged
  // and the refusal audited.
  Error decision_refused(bool approve, const Caller& caller, std::string_view id, ErrorCode code) {
    const auto events = audit.events.size();
    const auto pending = engine.pending_grants().size();
    const auto kernel = backend.live_elements();
    auto result = approve ? engine.approve(caller, id, "ok") : engine.deny(caller, id, "no");
    EXPECT_FALSE(result.has_value()) << "decided " << (result ? result->id : "");
    if (result) return Error{};
    EXPECT_EQ(result.error().code, code) << result.error().message;
    EXPECT_EQ(engine.pending_grants().size(), pending);
    EXPECT_EQ(backend.live_elements(), kernel);
    EXPECT_EQ(audit.events.size(), events + 1);
    if (audit.events.size() == events + 1) {
      EXPECT_EQ(audit.events.back().event, approve ? "approve" : "deny");
      EXPECT_EQ(audit.events.back().outcome, "refused");
      EXPECT_EQ(audit.events.back().grant_id, id);
      EXPECT_EQ(audit.events.back().uid, caller.uid);
    }
    return result.error();
  }
};

TEST_F(CoreEngineApprovalTest, RequestWaitsForAnApproverWithNothingInTheKernel) {
  ASSERT_TRUE(engine.install().has_value());
  const auto grant = pending_request();
  EXPECT_EQ(grant.status_reason, reason::awaiting_approval);
  EXPECT_TRUE(grant.needs_approval);
  EXPECT_EQ(grant.wait_until, b0 + 30min);
  EXPECT_TRUE(backend.applies.empty());
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), std::nullopt);
  EXPECT_TRUE(engine.active_grants().empty());
  EXPECT_EQ(ids_of(engine.pending_grants()), std::vector<std::string>{grant.id});
  EXPECT_EQ(engine.next_expiry(), b0 + 30min);
  const auto found = engine.find_grant(grant.id);
  ASSERT_TRUE(found.has_value() && found->has_value());
  EXPECT_EQ((*found)->status, GrantStatus::pending);
  // On disk, so a restart keeps it waiting.
  ASSERT_EQ(journal.replay().size(), 1U);
  EXPECT_EQ(journal.replay()[0].grant.status, GrantStatus::pending);
  const auto events = audit.named("request");
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(events[0].outcome, "pending");
  EXPECT_EQ(events[0].reason, reason::awaiting_approval);
}

TEST_F(CoreEngineApprovalTest, PortsWithoutApprovalAreGrantedAtOnce) {
  const auto grant = grant_ok(ask({https}, "10.0.0.1", 1h), alice);
  EXPECT_EQ(grant.status, GrantStatus::initiated);
  EXPECT_EQ(kernel_end("10.0.0.1", https_key), b0 + 1h);
}

TEST_F(CoreEngineApprovalTest, ApprovalStartsTheGrantsTimeAtApproval) {
  const auto request = pending_request();
  clock.advance(20min);
  auto approved = engine.approve(bob, request.id, "looks fine");
  ASSERT_TRUE(approved.has_value()) << approved.error().message;
  EXPECT_EQ(approved->status, GrantStatus::initiated);
  EXPECT_FALSE(approved->needs_approval);
  EXPECT_EQ(approved->decided_by, bob_requestor);
  EXPECT_EQ(approved->start, t0 + 20min);
  EXPECT_EQ(approved->end, t0 + 20min + 1h);  // the full hour asked for
  EXPECT_EQ(approved->deadline, b0 + 20min + 1h);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 20min + 1h);
  EXPECT_TRUE(engine.pending_grants().empty());
  EXPECT_EQ(ids_of(engine.active_grants()), std::vector<std::string>{request.id});
  ASSERT_EQ(journal.replay().size(), 1U);
  EXPECT_EQ(journal.replay()[0].grant.status, GrantStatus::initiated);
  EXPECT_EQ(journal.replay()[0].grant.end, t0 + 20min + 1h);

  const auto decisions = audit.named("approve");
  ASSERT_EQ(decisions.size(), 1U);
  EXPECT_EQ(decisions[0].outcome, "approved");
  EXPECT_EQ(decisions[0].user, "bob");
  EXPECT_NE(decisions[0].reason.find("looks fine"), std::string::npos) << decisions[0].reason;
  const auto starts = audit.named("start");
  ASSERT_EQ(starts.size(), 1U);
  EXPECT_EQ(starts[0].outcome, "granted");
}

TEST_F(CoreEngineApprovalTest, DenyEndsTheRequestWithWhoDecided) {
  RecordingHistory history;
  engine.set_history(&history);
  const auto request = pending_request();
  clock.advance(5min);
  auto denied = engine.deny(bob, request.id, "not during the freeze");
  ASSERT_TRUE(denied.has_value()) << denied.error().message;
  EXPECT_EQ(denied->status, GrantStatus::revoked);
  EXPECT_EQ(denied->status_reason, reason::denied);
  EXPECT_EQ(denied->decided_by, bob_requestor);
  EXPECT_EQ(denied->ended_by, bob_requestor);
  EXPECT_EQ(denied->ended, t0 + 5min);
  EXPECT_TRUE(engine.pending_grants().empty());
  EXPECT_TRUE(engine.active_grants().empty());
  EXPECT_TRUE(backend.applies.empty());
  EXPECT_TRUE(journal.replay().empty());
  const auto ends = journal.recorded(Kind::end);
  ASSERT_EQ(ends.size(), 1U);
  EXPECT_EQ(ends[0].reason, reason::denied);

  // What the history keeps is what deny answered.
  ASSERT_EQ(history.ended.size(), 1U);
  EXPECT_EQ(history.ended[0].status_reason, reason::denied);
  EXPECT_EQ(history.ended[0].decided_by, bob_requestor);
  EXPECT_EQ(history.ended[0].ended_by, bob_requestor);
  const auto found = engine.find_grant(request.id);
  ASSERT_TRUE(found.has_value() && found->has_value());
  EXPECT_EQ((*found)->decided_by, bob_requestor);

  const auto events = audit.named("deny");
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(events[0].outcome, "revoked");
  EXPECT_EQ(events[0].user, "bob");
  EXPECT_NE(events[0].reason.find("not during the freeze"), std::string::npos) << events[0].reason;
}

TEST_F(CoreEngineApprovalTest, RequestorMayNotDecideTheirOwnRequestThoughAnApprover) {
  const auto request = pending_request();
  for (const bool approve : {true, false}) {
    const auto error = decision_refused(approve, alice, request.id, ErrorCode::forbidden);
    EXPECT_NE(error.message.find("their own request"), std::string::npos) << error.message;
  }
}

TEST_F(CoreEngineApprovalTest, OnlyApproversDecideNotEvenAnAdministrator) {
  const auto request = pending_request();
  for (const auto* caller : {&admin, &mallory}) {
    for (const bool approve : {true, false}) {
      const auto error = decision_refused(approve, *caller, request.id, ErrorCode::forbidden);
      EXPECT_NE(error.message.find("users alice, bob"), std::string::npos) << error.message;
    }
  }
}

TEST_F(CoreEngineApprovalTest, ApprovalTheJournalCannotRecordIsAnErrorNotAGrant) {
  RecordingHistory history;
  engine.set_history(&history);
  const auto request = pending_request();
  journal.fail_next();  // the record of the started grant
  auto approved = engine.approve(bob, request.id, "");
  ASSERT_FALSE(approved.has_value()) << "answered " << to_string(approved->status);
  EXPECT_EQ(approved.error().code, ErrorCode::io);
  EXPECT_TRUE(backend.live_elements().empty());
  EXPECT_TRUE(engine.active_grants().empty());
  EXPECT_TRUE(engine.pending_grants().empty());
  EXPECT_TRUE(journal.replay().empty());
  ASSERT_EQ(history.ended.size(), 1U);
  EXPECT_EQ(history.ended[0].status_reason, reason::journal_failed);
  EXPECT_EQ(history.ended[0].decided_by, bob_requestor);
}

TEST_F(CoreEngineApprovalTest, OnlyRequestsThatWaitForApprovalCanBeDecided) {
  (void)decision_refused(true, bob, "nope", ErrorCode::not_found);
  const auto live = grant_ok(ask({https}, "10.0.0.1", 1h), alice);
  (void)decision_refused(true, bob, live.id, ErrorCode::not_found);
  const auto request = pending_request();
  ASSERT_TRUE(engine.approve(bob, request.id, "").has_value());
  // Decided once: a second decision finds nothing waiting.
  (void)decision_refused(false, bob, request.id, ErrorCode::not_found);
}

TEST_F(CoreEngineApprovalTest, RequestNobodyDecidesExpiresAfterTheApprovalTimeout) {
  RecordingHistory history;
  engine.set_history(&history);
  const auto request = pending_request();
  clock.advance(30min - 1ms);
  engine.expire_due();
  EXPECT_EQ(engine.pending_grants().size(), 1U);
  clock.advance(1ms);
  engine.expire_due();
  EXPECT_TRUE(engine.pending_grants().empty());
  EXPECT_TRUE(engine.active_grants().empty());
  EXPECT_TRUE(backend.applies.empty());
  EXPECT_TRUE(journal.replay().empty());
  const auto ends = journal.recorded(Kind::end);
  ASSERT_EQ(ends.size(), 1U);
  EXPECT_EQ(ends[0].status, GrantStatus::revoked);
  EXPECT_EQ(ends[0].reason, reason::approval_expired);
  ASSERT_EQ(history.ended.size(), 1U);
  EXPECT_EQ(history.ended[0].status, GrantStatus::revoked);
  EXPECT_EQ(history.ended[0].status_reason, reason::approval_expired);
  EXPECT_EQ(history.ended[0].ended, t0 + 30min);
  EXPECT_FALSE(history.ended[0].ended_by.has_value());
  (void)decision_refused(true, bob, request.id, ErrorCode::not_found);
}

TEST_F(CoreEngineApprovalTest, ApprovedBeforeItsStartTheRequestWaitsForIt) {
  auto request = ask({ssh}, "10.0.0.1", 1h);
  request.start_time = t0 + 2h;
  const auto grant = grant_ok(request, alice);
  clock.advance(10min);
  auto approved = engine.approve(bob, grant.id, "");
  ASSERT_TRUE(approved.has_value()) << approved.error().message;
  EXPECT_EQ(approved->status, GrantStatus::pending);
  EXPECT_EQ(approved->status_reason, reason::scheduled);
  EXPECT_FALSE(approved->needs_approval);
  EXPECT_EQ(approved->decided_by, bob_requestor);
  EXPECT_TRUE(backend.live_elements().empty());
  EXPECT_EQ(engine.next_expiry(), b0 + 2h);
  // No longer subject to the approval timeout.
  clock.advance(1h);
  engine.expire_due();
  EXPECT_EQ(ids_of(engine.pending_grants()), std::vector<std::string>{grant.id});
  clock.advance(50min);
  engine.expire_due();
  EXPECT_EQ(ids_of(engine.active_grants()), std::vector<std::string>{grant.id});
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 3h);
}

TEST_F(CoreEngineApprovalTest, RestartKeepsTheRequestWaitingForItsApprover) {
  const auto request = pending_request();
  clock.advance(10min);
  auto restarted = restarted_engine();
  const auto report = restarted.restore(journal.replay(), journal.boot_id);
  EXPECT_EQ(report.restored, 0U);
  EXPECT_EQ(report.expired, 0U);
  ASSERT_TRUE(restarted.install().has_value());
  EXPECT_TRUE(backend.live_elements().empty());
  const auto pending = restarted.pending_grants();
  ASSERT_EQ(pending.size(), 1U);
  EXPECT_EQ(pending[0].id, request.id);
  EXPECT_TRUE(pending[0].needs_approval);
  EXPECT_EQ(restarted.next_expiry(), b0 + 30min);  // the same wait, not a fresh one

  auto approved = restarted.approve(bob, request.id, "");
  ASSERT_TRUE(approved.has_value()) << approved.error().message;
  EXPECT_EQ(approved->end, t0 + 10min + 1h);
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 10min + 1h);
}

TEST_F(CoreEngineApprovalTest, RebootKeepsAtMostTheApprovalTimeLeft) {
  (void)pending_request();
  clock.advance(10min);
  auto restarted = restarted_engine();
  (void)restarted.restore(journal.replay(), "another-boot");
  ASSERT_EQ(restarted.pending_grants().size(), 1U);
  // 20 of its 30 minutes were left, counted from the request's UTC time.
  EXPECT_EQ(restarted.next_expiry(), clock.boot_now() + 20min);
  clock.advance(20min);
  restarted.expire_due();
  EXPECT_TRUE(restarted.pending_grants().empty());
  ASSERT_FALSE(journal.recorded(Kind::end).empty());
  EXPECT_EQ(journal.recorded(Kind::end).back().reason, reason::approval_expired);
}

// One approval must not become open-ended access: on a port that needs an approver, only an
// administrator may extend.
TEST_F(CoreEngineApprovalTest, OnlyAnAdministratorExtendsAGrantThatNeededApproval) {
  const auto request = pending_request();
  ASSERT_TRUE(engine.approve(bob, request.id, "").has_value());
  auto own = engine.extend(alice, request.id, Extension{10min, std::nullopt});
  ASSERT_FALSE(own.has_value());
  EXPECT_EQ(own.error().code, ErrorCode::forbidden);
  EXPECT_NE(own.error().message.find("require approval"), std::string::npos)
      << own.error().message;
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h);
  auto by_admin = engine.extend(admin, request.id, Extension{10min, std::nullopt});
  ASSERT_TRUE(by_admin.has_value()) << by_admin.error().message;
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h + 10min);
}

// A request not yet in force ends when the new policy would not allow it as asked: here 443
// now needs an approver, so a scheduled request nobody approved must not start unapproved; a
// request longer than a new maximum ends too, rather than start longer than allowed.
TEST_F(CoreEngineApprovalTest, ReloadEndsPendingRequestsTheNewPolicyWouldNotAllowAsAsked) {
  ASSERT_TRUE(engine.install().has_value());
  auto scheduled = ask({https}, "10.0.0.7", 30min);
  scheduled.start_time = t0 + 1h;
  const auto unapproved = grant_ok(scheduled, alice);
  auto longer = ask({dns}, "10.0.0.8", 2h);
  longer.start_time = t0 + 1h;
  const auto too_long = grant_ok(longer, alice);
  auto fine = ask({dns}, "10.0.0.9", 20min);
  fine.start_time = t0 + 1h;
  const auto kept = grant_ok(fine, alice);

  auto policy = approval_policy();
  policy.rules[1].approval_required = true;
  policy.rules[1].approvers = policy.rules[0].approvers;
  policy.rules[2].max_duration = 1h;
  const auto change = engine.replace_policy(policy);
  ASSERT_TRUE(change.has_value()) << change.error().message;
  EXPECT_EQ(change->revoked, 2U);
  EXPECT_EQ(ids_of(engine.pending_grants()), std::vector<std::string>{kept.id});
  const auto ends = journal.recorded(Kind::end);
  ASSERT_EQ(ends.size(), 2U);
  for (const auto& end : ends) {
    EXPECT_TRUE(end.id == unapproved.id || end.id == too_long.id) << end.id;
    EXPECT_EQ(end.status, GrantStatus::revoked);
    EXPECT_EQ(end.reason, reason::policy_changed);
  }
  clock.advance(1h);
  engine.expire_due();
  EXPECT_EQ(ids_of(engine.active_grants()), std::vector<std::string>{kept.id});
}

// After a reboot with the wall clock far behind (an RTC not yet synced), a request waits no
// longer than its approval timeout, not the decades the clocks disagree by.
TEST_F(CoreEngineApprovalTest, RebootWithAClockFarBehindWaitsNoLongerThanTheTimeout) {
  (void)pending_request();
  auto restarted = restarted_engine();
  clock.jump_wall(-std::chrono::days(365 * 50));
  (void)restarted.restore(journal.replay(), "another-boot");
  ASSERT_EQ(restarted.pending_grants().size(), 1U);
  EXPECT_EQ(restarted.next_expiry(), clock.boot_now() + 30min);
}

}  // namespace
}  // namespace jitd::core
