#include <gtest/gtest.h>

#include "engine_fixture.hpp"

namespace jitd::core {
namespace {

using namespace engine_fixture;

// ---------------------------------------------------------------- session cuts

// 22/tcp ends sessions when a grant ends, and 192.168.0.0/24 may always reach it; 443/tcp
// keeps sessions (the default).
Policy cutting_policy() {
  auto policy = default_policy();
  policy.rules[0].terminate_sessions_on_end = true;
  PermanentAllow office;
  office.sources = {prefix("192.168.0.0/24")};
  office.ports = {ssh};
  policy.permanent_allow = {office};
  return policy;
}

AddressRange range(std::string_view source) { return prefix(source).range(); }

class CoreEngineSessionsTest : public CoreEngineTest {
 protected:
  CoreEngineSessionsTest() : CoreEngineTest(cutting_policy()) {
    engine.set_session_cutter(&cutter);
    EXPECT_TRUE(engine.install().has_value());
  }

  // The one cut of the one call the cutter got.
  SessionCut only_cut() {
    EXPECT_EQ(cutter.calls.size(), 1U);
    if (cutter.calls.size() != 1) return {};
    EXPECT_EQ(cutter.calls[0].cuts.size(), 1U);
    return cutter.calls[0].cuts.empty() ? SessionCut{} : cutter.calls[0].cuts[0];
  }

  RecordingCutter cutter{backend};
};

TEST_F(CoreEngineSessionsTest, RevokeCutsOnceTheKernelNoLongerAdmitsTheGrant) {
  const auto ended = grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
  (void)grant_ok(ask({ssh}, "10.0.0.2", 1h), bob);
  (void)grant_ok(ask({https}, "10.0.0.3", 1h), bob);  // another port: not kept on 22
  ASSERT_TRUE(engine.revoke(alice, ended.id).has_value());
  const auto cut = only_cut();
  EXPECT_EQ(cut.port, ssh_key);
  EXPECT_EQ(cut.sources, std::vector<AddressRange>{range("10.0.0.1")});
  EXPECT_EQ(cut.keep, (std::vector<AddressRange>{range("10.0.0.2"), range("192.168.0.0/24")}));
  ASSERT_EQ(cutter.calls.size(), 1U);
  EXPECT_FALSE(cutter.calls[0].kernel.contains(key("10.0.0.1", ssh_key)));
  EXPECT_TRUE(cutter.calls[0].kernel.contains(key("10.0.0.2", ssh_key)));
  const auto events = audit.named("sessions");
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(events[0].outcome, "ended");
  EXPECT_EQ(events[0].grant_id, ended.id);
}

TEST_F(CoreEngineSessionsTest, ExpiryCuts) {
  const auto ended = grant_ok(ask({ssh}, "10.0.0.1", 10min), alice);
  clock.advance(10min);
  engine.expire_due();
  const auto cut = only_cut();
  EXPECT_EQ(cut.sources, std::vector<AddressRange>{range("10.0.0.1")});
  EXPECT_EQ(cut.keep, std::vector<AddressRange>{range("192.168.0.0/24")});
  EXPECT_EQ(audit.named("sessions").at(0).grant_id, ended.id);
}

TEST_F(CoreEngineSessionsTest, AGrantStartingAsAnotherEndsKeepsItsSessions) {
  (void)grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
  auto next = ask({ssh}, "10.0.0.1", 1h);
  next.start_time = t0 + 1h;
  const auto following = grant_ok(next, alice);
  clock.advance(1h);
  engine.expire_due();
  EXPECT_EQ(ids_of(engine.active_grants()), std::vector<std::string>{following.id});
  const auto cut = only_cut();
  EXPECT_EQ(cut.sources, std::vector<AddressRange>{range("10.0.0.1")});
  EXPECT_EQ(cut.keep, (std::vector<AddressRange>{range("10.0.0.1"), range("192.168.0.0/24")}));
}

TEST_F(CoreEngineSessionsTest, OnlyPortsWithTheFlagAreCut) {
  const auto https_only = grant_ok(ask({https}, "10.0.0.1", 1h), alice);
  ASSERT_TRUE(engine.revoke(alice, https_only.id).has_value());
  EXPECT_TRUE(cutter.calls.empty());
  EXPECT_TRUE(audit.named("sessions").empty());

  const auto both = grant_ok(ask({ssh, https}, "10.0.0.1", 1h), alice);
  ASSERT_TRUE(engine.revoke(alice, both.id).has_value());
  EXPECT_EQ(only_cut().port, ssh_key);
}

TEST_F(CoreEngineSessionsTest, NothingIsCutWhileTheKernelMayStillAdmitTheGrant) {
  const auto ended = grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
  backend.fail_next_apply();
  EXPECT_FALSE(engine.revoke(alice, ended.id).has_value());  // recorded, kernel refused
  EXPECT_TRUE(cutter.calls.empty());
  retry_all_pending();
  ASSERT_EQ(cutter.calls.size(), 1U);
  EXPECT_FALSE(cutter.calls[0].kernel.contains(key("10.0.0.1", ssh_key)));
}

TEST_F(CoreEngineSessionsTest, GrantsThatEndedWhileDownAreCutAfterInstallNotBefore) {
  // 10.0.0.0/24 ends while jitd is down; 10.0.0.5, inside it, is still live.
  (void)grant_ok(ask({ssh}, "10.0.0.0/24", 10min), alice);
  const auto live = grant_ok(ask({ssh}, "10.0.0.5", 1h), bob);
  clock.advance(20min);
  RecordingCutter after_restart{backend};
  auto restarted = restarted_engine();
  restarted.set_session_cutter(&after_restart);
  const auto installs = backend.installs.size();
  EXPECT_EQ(restarted.restore(journal.replay(), journal.boot_id).expired, 1U);
  // Before install the engine does not know what the kernel holds: a cut now would not keep
  // the live grant's address.
  restarted.expire_due();
  EXPECT_TRUE(after_restart.calls.empty());
  ASSERT_TRUE(restarted.install().has_value());
  ASSERT_EQ(after_restart.calls.size(), 1U);
  EXPECT_EQ(after_restart.calls[0].installs, installs + 1);
  ASSERT_EQ(after_restart.calls[0].cuts.size(), 1U);
  const auto& cut = after_restart.calls[0].cuts[0];
  EXPECT_EQ(cut.sources, std::vector<AddressRange>{range("10.0.0.0/24")});
  EXPECT_EQ(cut.keep, (std::vector<AddressRange>{range("10.0.0.5"), range("192.168.0.0/24")}));
  EXPECT_EQ(ids_of(restarted.active_grants()), std::vector<std::string>{live.id});
}

// ---------------------------------------------------------------- history

class CoreEngineHistoryTest : public CoreEngineTest {
 protected:
  CoreEngineHistoryTest() { engine.set_history(&history); }

  RecordingHistory history;
};

TEST_F(CoreEngineHistoryTest, RevokedGrantIsKeptWithWhoEndedItAndWhen) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
  clock.advance(5min);
  auto revoked = engine.revoke(admin, grant.id);
  ASSERT_TRUE(revoked.has_value());
  ASSERT_EQ(history.ended.size(), 1U);
  const auto& kept = history.ended[0];
  EXPECT_EQ(kept.id, grant.id);
  EXPECT_EQ(kept.status, GrantStatus::revoked);
  EXPECT_EQ(kept.status_reason, reason::user_requested);
  EXPECT_EQ(kept.ended, t0 + 5min);
  EXPECT_EQ(kept.ended_by, (Requestor{admin.uid, admin.name}));
  EXPECT_EQ(kept.requestor, (Requestor{alice.uid, alice.name}));
  EXPECT_EQ(kept.end, t0 + 1h);  // what it was granted
  // revoke answers what the history keeps.
  EXPECT_EQ(revoked->ended, kept.ended);
  EXPECT_EQ(revoked->ended_by, kept.ended_by);
}

TEST_F(CoreEngineHistoryTest, ExpiredGrantIsKeptWithoutAPersonWhoEndedIt) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 10min), alice);
  clock.advance(10min + 3s);
  engine.expire_due();
  ASSERT_EQ(history.ended.size(), 1U);
  EXPECT_EQ(history.ended[0].id, grant.id);
  EXPECT_EQ(history.ended[0].status, GrantStatus::revoked);
  EXPECT_EQ(history.ended[0].status_reason, reason::expired);
  EXPECT_EQ(history.ended[0].ended, t0 + 10min + 3s);
  EXPECT_FALSE(history.ended[0].ended_by.has_value());
}

TEST_F(CoreEngineHistoryTest, FindGrantFindsLivePendingAndEndedGrants) {
  const auto live = grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
  auto later = ask({ssh}, "10.0.0.2", 1h);
  later.start_time = t0 + 1h;
  const auto pending = grant_ok(later, alice);
  const auto ended = grant_ok(ask({ssh}, "10.0.0.3", 1h), alice);
  ASSERT_TRUE(engine.revoke(alice, ended.id).has_value());

  const auto status_of = [this](const std::string& id) -> std::optional<GrantStatus> {
    const auto found = engine.find_grant(id);
    EXPECT_TRUE(found.has_value());
    if (!found || !*found) return std::nullopt;
    EXPECT_EQ((*found)->id, id);
    return (*found)->status;
  };
  EXPECT_EQ(status_of(live.id), GrantStatus::initiated);
  EXPECT_EQ(status_of(pending.id), GrantStatus::pending);
  EXPECT_EQ(status_of(ended.id), GrantStatus::revoked);
  EXPECT_EQ(status_of("nope"), std::nullopt);

  engine.set_history(nullptr);  // without a history, ended grants are gone
  EXPECT_EQ(status_of(ended.id), std::nullopt);
  EXPECT_EQ(status_of(live.id), GrantStatus::initiated);
}

}  // namespace
}  // namespace jitd::core
