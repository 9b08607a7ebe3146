// GET /v1/audit: the read right, the query arguments, and the page as JSON.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fake_backend.hpp"
#include "jitd/api/router.hpp"

namespace jitd::api {
namespace {

using nlohmann::json;

class FakeAuditReader final : public core::AuditReader {
 public:
  mutable std::vector<core::AuditQuery> queries;
  core::AuditPage page{{R"({"event":"request","user":"alice"})"}, "7:123"};

  [[nodiscard]] core::Result<core::AuditPage> read(const core::AuditQuery& query) const override {
    queries.push_back(query);
    return page;
  }
};

class AuditRouteTest : public ::testing::Test, protected test::FakeEngine {
 protected:
  AuditRouteTest()
      : FakeEngine({}, core::TimePoint{std::chrono::sys_days{std::chrono::year{2026} / 11 / 30}}) {}
  FakeAuditReader reader;
  Router router{engine, clock, [](const core::Caller&) { return ReloadOutcome{}; }, &reader};
  core::Caller reader_caller{1000, 1000, "alice", false, {}};

  std::pair<unsigned, json> get(const QueryArguments& query, const core::Caller& caller) {
    const auto response = router.handle(caller, "GET", "/v1/audit", "", query);
    return {response.status, json::parse(response.body)};
  }
};

TEST_F(AuditRouteTest, PageWithItsCursor) {
  const auto [status, reply] = get({{"user", "alice"},
                                    {"since", "PT24H"},
                                    {"until", "2026-11-30T00:00:00Z"},
                                    {"limit", "50"},
                                    {"cursor", "7:1"}},
                                   reader_caller);
  EXPECT_EQ(status, 200u) << reply;
  EXPECT_EQ(reply["records"], json::array({{{"event", "request"}, {"user", "alice"}}}));
  EXPECT_EQ(reply["next"], "7:123");
  ASSERT_EQ(reader.queries.size(), 1u);
  const auto& query = reader.queries.front();
  EXPECT_EQ(query.user, "alice");
  EXPECT_EQ(query.since, clock.now() - std::chrono::hours(24));
  EXPECT_EQ(query.until, clock.now());
  EXPECT_EQ(query.limit, 50u);
  EXPECT_EQ(query.cursor, "7:1");
}

TEST_F(AuditRouteTest, PortAndEventsCommaSeparatedOrRepeated) {
  const auto [status, reply] =
      get({{"port", "22"}, {"event", "request,revoke"}, {"event", "expire"}, {"event", "request"}},
          reader_caller);
  EXPECT_EQ(status, 200u) << reply;
  ASSERT_EQ(reader.queries.size(), 1u);
  EXPECT_EQ(reader.queries.front().port, std::optional<std::uint16_t>(22));
  EXPECT_EQ(reader.queries.front().events,
            (std::vector<std::string>{"request", "revoke", "expire"}));
}

TEST_F(AuditRouteTest, BadArgumentsAreRefusedNamingThem) {
  for (const auto& [query, named] : std::vector<std::pair<QueryArguments, std::string>>{
           {{{"limit", "0"}}, "limit:"},
           {{{"limit", "1001"}}, "limit:"},
           {{{"since", "yesterday"}}, "since:"},
           {{{"user", "a"}, {"user", "b"}}, "user: given more than once"},
           {{{"grep", "x"}}, "grep: unknown argument"},
           {{{"port", "0"}}, "port: must be a number from 1 to 65535"},
           {{{"port", "ssh"}}, "port:"},
           {{{"port", "22"}, {"port", "23"}}, "port: given more than once"},
           {{{"event", "grant"}},
            "event: 'grant' is not an audit event; expected one of request, approve"},
           {{{"event", "request,"}}, "event: '' is not an audit event"}}) {
    const auto [status, reply] = get(query, reader_caller);
    EXPECT_EQ(status, 400u) << reply;
    EXPECT_NE(reply["error"]["message"].get<std::string>().find(named), std::string::npos) << reply;
  }
  EXPECT_TRUE(reader.queries.empty());
}

TEST_F(AuditRouteTest, CallerWithoutTheReadRightIsRefusedAndAudited) {
  core::Policy policy;
  policy.roles.readers = core::Principals{{"root"}, {}, {0}, {}};
  ASSERT_TRUE(engine.replace_policy(policy).has_value());
  const auto [status, reply] = get({}, reader_caller);
  EXPECT_EQ(status, 403u) << reply;
  EXPECT_TRUE(reader.queries.empty());
  ASSERT_FALSE(audit.events.empty());
  EXPECT_EQ(audit.events.back().event, "read");
  EXPECT_EQ(audit.events.back().outcome, "refused");
}

}  // namespace
}  // namespace jitd::api
