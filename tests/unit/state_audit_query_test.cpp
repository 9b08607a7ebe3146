// Reading the audit log back: filters by time and user, pages with a cursor, bounded.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "jitd/state/audit_log.hpp"
#include "state_test_files.hpp"

namespace jitd::state {
namespace {

using namespace std::chrono_literals;

const core::TimePoint t0{std::chrono::sys_days{std::chrono::year{2026} / 11 / 30}};

core::AuditEvent event(std::string user, core::TimePoint when, std::string grant_id) {
  core::AuditEvent audit;
  audit.time = when;
  audit.event = "request";
  audit.outcome = "granted";
  audit.user = std::move(user);
  audit.grant_id = std::move(grant_id);
  return audit;
}

std::vector<std::string> grant_ids(const std::vector<std::string>& records) {
  std::vector<std::string> ids;
  for (const auto& record : records) {
    ids.push_back(nlohmann::json::parse(record).value("grantId", std::string("?")));
  }
  return ids;
}

class AuditQueryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = AuditLog::open(dir.file("audit.jsonl"));
    ASSERT_TRUE(opened.has_value()) << opened.error().message;
    log = std::move(*opened);
    log->record(event("alice", t0, "a1"));
    log->record(event("bob", t0 + 1h, "b1"));
    log->record(event("alice", t0 + 2h, "a2"));
    log->record(event("alice", t0 + 3h, "a3"));
  }

  core::AuditPage read_ok(const core::AuditQuery& query) {
    auto page = log->read(query);
    EXPECT_TRUE(page.has_value()) << page.error().message;
    return page ? *page : core::AuditPage{};
  }

  test::TempDir dir;
  std::unique_ptr<AuditLog> log;
};

TEST_F(AuditQueryTest, FiltersByUserAndTime) {
  core::AuditQuery query;
  query.user = "alice";
  query.since = t0 + 1h;
  query.until = t0 + 3h;
  const auto page = read_ok(query);
  EXPECT_EQ(grant_ids(page.records), std::vector<std::string>{"a2"});
  EXPECT_TRUE(page.next.empty());
}

TEST_F(AuditQueryTest, FiltersByPortAndEvent) {
  auto ssh = event("carol", t0 + 4h, "c1");
  ssh.ports = {{22, core::ProtocolSpec::tcp}, {3389, core::ProtocolSpec::udp}};
  log->record(ssh);
  auto rdp = event("carol", t0 + 5h, "c2");
  rdp.event = "revoke";
  rdp.ports = {{3389, core::ProtocolSpec::tcp}};
  log->record(rdp);
  auto reload = event("jitd", t0 + 6h, "");
  reload.event = "reload";
  log->record(reload);

  core::AuditQuery query;
  query.port = 3389;
  EXPECT_EQ(grant_ids(read_ok(query).records), (std::vector<std::string>{"c1", "c2"}))
      << "any of a record's ports, whatever its protocol";
  query.events = {"revoke", "reload"};
  EXPECT_EQ(grant_ids(read_ok(query).records), std::vector<std::string>{"c2"});
  query.port.reset();
  EXPECT_EQ(grant_ids(read_ok(query).records), (std::vector<std::string>{"c2", "?"}));
  query.port = 23;
  query.events.clear();
  EXPECT_TRUE(read_ok(query).records.empty());
}

TEST_F(AuditQueryTest, PagesFollowTheCursorToTheEnd) {
  core::AuditQuery query;
  query.limit = 3;
  const auto first = read_ok(query);
  EXPECT_EQ(grant_ids(first.records), (std::vector<std::string>{"a1", "b1", "a2"}));
  ASSERT_FALSE(first.next.empty());
  query.cursor = first.next;
  const auto second = read_ok(query);
  EXPECT_EQ(grant_ids(second.records), std::vector<std::string>{"a3"});
  EXPECT_TRUE(second.next.empty());
}

TEST_F(AuditQueryTest, CursorThatIsNotOneIsRefused) {
  core::AuditQuery query;
  for (const auto* cursor : {"12", "x:1", "1:2:3"}) {
    query.cursor = cursor;
    const auto page = log->read(query);
    ASSERT_FALSE(page.has_value()) << cursor;
    EXPECT_EQ(page.error().code, core::ErrorCode::invalid_request);
    EXPECT_NE(page.error().message.find("cursor:"), std::string::npos) << page.error().message;
  }
}

TEST_F(AuditQueryTest, CursorOfAFileNoLongerThereStartsAtTheOldestRecord) {
  core::AuditQuery query;
  query.cursor = "1:99999999";  // a rotated file pruned since
  EXPECT_EQ(grant_ids(read_ok(query).records), (std::vector<std::string>{"a1", "b1", "a2", "a3"}));
}

TEST(AuditMatchLines, StopsAtTheLimitAndSkipsWhatIsNotARecord) {
  core::AuditQuery query;
  query.limit = 2;
  const std::string text =
      "not json\n{\"user\":\"a\",\"grantId\":\"1\"}\n[]\n{\"user\":\"b\",\"grantId\":\"2\"}\n"
      "{\"user\":\"c\",\"grantId\":\"3\"}\n{\"half";
  const auto found = match_audit_lines(text, query);
  EXPECT_EQ(grant_ids(found.records), (std::vector<std::string>{"1", "2"}));
  EXPECT_EQ(text.substr(found.consumed), "{\"user\":\"c\",\"grantId\":\"3\"}\n{\"half");
  query.limit = 10;
  const auto rest = match_audit_lines(text.substr(found.consumed), query);
  EXPECT_EQ(grant_ids(rest.records), std::vector<std::string>{"3"});
  EXPECT_EQ(text.substr(found.consumed + rest.consumed), "{\"half") << "a torn line is left";
}

}  // namespace
}  // namespace jitd::state
