#include <gtest/gtest.h>

#include "engine_fixture.hpp"

namespace jitd::core {
namespace {

using namespace engine_fixture;

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

TEST_F(CoreEngineTest, RestoreOnTheSameBootKeepsTheJournaledDeadline) {
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

TEST_F(CoreEngineTest, RestoreAfterARebootRebuildsTheDeadlineFromTheUtcEnd) {
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

TEST_F(CoreEngineTest, RestoreAfterARebootNeverRestoresMoreThanTheGrantLength) {
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

TEST_F(CoreEngineTest, RestoreAuditsAndJournalsGrantsThatEndedWhileDown) {
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
    EXPECT_EQ(ends[i].status, GrantStatus::revoked);
    EXPECT_EQ(ends[i].reason, "Expired");
  }
  EXPECT_TRUE(journal.recorded(Kind::grant).empty());
  EXPECT_EQ(ids_of(journal.replay()), std::vector<std::string>{"r4"});

  ASSERT_TRUE(engine.install().has_value());
  EXPECT_EQ(backend.installs.back().grants,
            (std::vector<TimedElement>{{key("10.0.0.4", ssh_key), 1h}}));
}

TEST_F(CoreEngineTest, RestoredGrantsAreInstalledWithTheirRemainingTime) {
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

TEST_F(CoreEngineTest, RestoreAppliesTheCurrentPolicy) {
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

}  // namespace
}  // namespace jitd::core
