// GET /v1/recommendations against the real engine and a fake listener source.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fake_backend.hpp"
#include "jitd/api/router.hpp"

namespace {

using namespace jitd;
using nlohmann::json;

core::Policy ssh_policy() {
  core::PortRule ssh;
  ssh.port = {22, core::ProtocolSpec::tcp};
  ssh.any_source = true;
  ssh.max_duration = std::chrono::hours(3);
  ssh.origin = {"/etc/jitd/policies.d/10-management.yaml", 3, 5};
  core::Policy policy;
  policy.rules = {ssh};
  policy.roles.readers = core::Principals{{"auditor"}, {}, {1000}, {}};
  return policy;
}

class RecommendRouteTest : public ::testing::Test, protected test::FakeEngine {
 protected:
  RecommendRouteTest() : FakeEngine(ssh_policy()) {}
  api::Router router{engine, clock, [](const core::Caller&) { return api::ReloadOutcome{}; }};
  core::Caller auditor{1000, 1000, "auditor", false, {}};
  core::Caller nobody{65534, 65534, "nobody", false, {}};
  int reads = 0;

  void listen_on(std::vector<core::Listener> listeners) {
    router.set_listener_source([this, listeners]() -> core::Result<std::vector<core::Listener>> {
      ++reads;
      return listeners;
    });
  }

  std::pair<unsigned, json> get(const core::Caller& caller) {
    const auto response = router.handle(caller, "GET", "/v1/recommendations", "");
    return {response.status, json::parse(response.body)};
  }
};

TEST_F(RecommendRouteTest, AnswersUnprotectedUnusedAndTheSnippet) {
  listen_on({{core::Protocol::tcp, 5432, core::Family::ipv4, 0, false},
             {core::Protocol::tcp, 6379, core::Family::ipv4, 0x7f000001, false}});
  const auto [status, body] = get(auditor);
  ASSERT_EQ(status, 200u) << body;
  EXPECT_EQ(body["unprotected"],
            json::parse(R"([{"port":5432,"protocol":"tcp","service":"postgresql",
                             "addresses":["0.0.0.0"]}])"));
  EXPECT_EQ(body["unusedProtected"],
            json::parse(R"([{"port":22,"protocol":"tcp","service":"ssh","addresses":[],
                             "origin":"/etc/jitd/policies.d/10-management.yaml:3:5"}])"));
  EXPECT_NE(body["snippet"].get<std::string>().find("number: 5432"), std::string::npos);
  EXPECT_EQ(reads, 1);
}

TEST_F(RecommendRouteTest, NeedsTheReadRight) {
  listen_on({});
  const auto [status, body] = get(nobody);
  EXPECT_EQ(status, 403u) << body;
  EXPECT_EQ(reads, 0);
}

TEST_F(RecommendRouteTest, GetOnly) {
  listen_on({});
  EXPECT_EQ(router.handle(auditor, "POST", "/v1/recommendations", "").status, 405u);
}

TEST_F(RecommendRouteTest, WithoutASourceOrWhenItFailsTheErrorSaysSo) {
  auto [status, body] = get(auditor);
  EXPECT_EQ(status, 404u);
  EXPECT_EQ(body["error"]["message"], "this jitd cannot list listening sockets");
  router.set_listener_source([]() -> core::Result<std::vector<core::Listener>> {
    return tl::unexpected(
        core::Error{core::ErrorCode::kernel, "dump tcp sockets (sock_diag): Permission denied"});
  });
  std::tie(status, body) = get(auditor);
  EXPECT_EQ(status, 500u);
  EXPECT_EQ(body["error"]["message"], "dump tcp sockets (sock_diag): Permission denied");
}

}  // namespace
