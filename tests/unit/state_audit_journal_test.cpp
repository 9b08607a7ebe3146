// Audit events to the systemd journal: the fields, the priority, and failures counted.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <string>
#include <vector>

#include "jitd/state/audit_journal.hpp"

namespace jitd::state {
namespace {

using Fields = std::vector<std::string>;

core::AuditEvent granted() {
  core::AuditEvent event;
  event.time = core::TimePoint{std::chrono::sys_days{std::chrono::year{2026} / 11 / 30}};
  event.event = "request";
  event.outcome = "granted";
  event.grant_id = "3f2a9c1d0b7e4a56";
  event.uid = 1000;
  event.user = "alice";
  event.source = "10.0.3.2";
  event.ports = {{22, core::ProtocolSpec::tcp}, {3389, core::ProtocolSpec::tcp}};
  event.justification = "ticket OPS-42";
  event.end_time = "2026-11-30T03:00:00.000Z";
  return event;
}

TEST(AuditJournalFields, EveryFieldOfAGrant) {
  EXPECT_EQ(journal_fields(granted()),
            (Fields{"MESSAGE=request granted: alice (uid 1000), 22/tcp 3389/tcp from 10.0.3.2 "
                    "until 2026-11-30T03:00:00.000Z, grant 3f2a9c1d0b7e4a56",
                    "PRIORITY=6", "SYSLOG_IDENTIFIER=jitd", "JITD_EVENT=request",
                    "JITD_OUTCOME=granted", "JITD_GRANT_ID=3f2a9c1d0b7e4a56",
                    "JITD_SOURCE=10.0.3.2", "JITD_PORTS=22/tcp 3389/tcp", "JITD_USER=alice",
                    "JITD_UID=1000", "JITD_END_TIME=2026-11-30T03:00:00.000Z",
                    "JITD_JUSTIFICATION=ticket OPS-42", "JITD_TIME=2026-11-30T00:00:00Z"}));
}

TEST(AuditJournalFields, EmptyFieldsAreLeftOutAndTheMessageIsOneLine) {
  core::AuditEvent refused;
  refused.event = "request";
  refused.outcome = "refused";
  refused.uid = 1001;
  refused.user = "mallory";
  refused.reason = "port 23 is not in the policy\nforged line";
  refused.code = "PortNotInPolicy";
  const auto fields = journal_fields(refused);
  EXPECT_EQ(
      fields.front(),
      "MESSAGE=request refused: mallory (uid 1001): port 23 is not in the policy\\nforged line");
  EXPECT_EQ(fields[1], "PRIORITY=4");
  for (const auto* absent : {"JITD_GRANT_ID=", "JITD_SOURCE=", "JITD_PORTS=", "JITD_END_TIME="}) {
    for (const auto& field : fields) EXPECT_NE(field.rfind(absent, 0), 0u) << field;
  }
  EXPECT_NE(std::find(fields.begin(), fields.end(), "JITD_CODE=PortNotInPolicy"), fields.end());
  // The field itself keeps the text: journalctl -o json shows it as it was.
  EXPECT_NE(std::find(fields.begin(), fields.end(),
                      "JITD_REASON=port 23 is not in the policy\nforged line"),
            fields.end());
}

TEST(AuditJournalFields, PriorityFollowsTheOutcome) {
  auto event = granted();
  event.outcome = "failed";
  EXPECT_EQ(journal_fields(event)[1], "PRIORITY=3");
  event.event = "tamper";
  event.outcome = "restored";
  EXPECT_EQ(journal_fields(event)[1], "PRIORITY=4");
  event.event = "expire";
  event.outcome = "expired";
  EXPECT_EQ(journal_fields(event)[1], "PRIORITY=6");
}

TEST(AuditJournal, SendsEachEventAndCountsFailures) {
  std::vector<Fields> sent;
  int result = 0;
  AuditJournal journal([&](const Fields& fields) {
    sent.push_back(fields);
    return result;
  });
  journal.record(granted());
  EXPECT_EQ(sent.size(), 1u);
  EXPECT_EQ(journal.failures(), 0u);
  result = -EAGAIN;
  journal.record(granted());
  journal.record(granted());
  EXPECT_EQ(journal.failures(), 2u);
  result = 0;
  journal.record(granted());
  EXPECT_EQ(sent.size(), 4u) << "every event is tried, failing or not";
  EXPECT_EQ(journal.failures(), 2u);
}

}  // namespace
}  // namespace jitd::state
