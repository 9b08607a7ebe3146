// Who may request and revoke: roles and per-port requesters, refused with the missing right,
// audited, and without any kernel change.
#include <gtest/gtest.h>

#include "engine_fixture.hpp"

namespace jitd::core {
namespace {

using namespace engine_fixture;

const Caller carol{1002, 1002, "carol", true, {5432}};  // in the socket's group and in dba

Policy ssh_for_dba_only() {
  auto policy = default_policy();
  policy.rules.front().requesters = Principals{{}, {"dba"}, {}, {5432}};
  return policy;
}

TEST_F(CoreEngineTest, CallerOutsideEveryRoleMayNotRequest) {
  const auto error = refused(ask({ssh}, "10.0.0.1", 1h), ErrorCode::forbidden, mallory);
  EXPECT_NE(error.message.find("needs the request right"), std::string::npos) << error.message;
}

TEST_F(CoreEngineTest, RequesterRevokesOwnGrant) {
  const auto own = grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
  const auto revoked = engine.revoke(alice, own.id);
  ASSERT_TRUE(revoked.has_value()) << revoked.error().message;
  EXPECT_FALSE(kernel_end("10.0.0.1", ssh_key).has_value());
}

TEST_F(CoreEngineTest, RequesterMayNotRevokeAnotherUsersGrant) {
  const auto others = grant_ok(ask({ssh}, "10.0.0.1", 1h), admin);
  const auto applies = backend.applies.size();
  const auto revoked = engine.revoke(alice, others.id);
  ASSERT_FALSE(revoked.has_value());
  EXPECT_EQ(revoked.error().code, ErrorCode::forbidden);
  EXPECT_NE(revoked.error().message.find("needs the administer right"), std::string::npos)
      << revoked.error().message;
  EXPECT_EQ(backend.applies.size(), applies) << "a refused revoke reached the kernel";
  EXPECT_EQ(kernel_end("10.0.0.1", ssh_key), b0 + 1h);
  EXPECT_EQ(engine.active_grants().size(), 1U);
  const auto& event = audit.events.back();
  EXPECT_EQ(event.event, "revoke");
  EXPECT_EQ(event.outcome, "refused");
  EXPECT_EQ(event.user, "alice");
  EXPECT_EQ(event.grant_id, others.id);
}

TEST_F(CoreEngineTest, AdministratorRevokesAnyonesGrant) {
  const auto others = grant_ok(ask({ssh}, "10.0.0.1", 1h), alice);
  ASSERT_TRUE(engine.revoke(admin, others.id).has_value());
}

TEST_F(CoreEngineTest, RefusalToAnOutsiderDoesNotTellWhetherTheGrantExists) {
  const auto grant = grant_ok(ask({ssh}, "10.0.0.1", 1h));
  EXPECT_EQ(engine.revoke(mallory, grant.id).error().code, ErrorCode::forbidden);
  EXPECT_EQ(engine.revoke(mallory, "no-such-grant").error().code, ErrorCode::forbidden);
}

class CoreEngineNarrowedPortTest : public CoreEngineTest {
 protected:
  CoreEngineNarrowedPortTest() : CoreEngineTest(ssh_for_dba_only()) {}
};

TEST_F(CoreEngineNarrowedPortTest, PortNarrowedToAGroupRefusesOthers) {
  const auto error = refused(ask({https, ssh}, "10.0.0.1", 1h), ErrorCode::forbidden, alice);
  EXPECT_NE(error.message.find("ports[1]"), std::string::npos) << error.message;
  EXPECT_NE(error.message.find("only groups dba"), std::string::npos) << error.message;
}

TEST_F(CoreEngineNarrowedPortTest, MemberOfTheGroupAndAdministratorsMayRequestIt) {
  grant_ok(ask({ssh}, "10.0.0.1", 1h), carol);
  grant_ok(ask({ssh}, "10.0.0.2", 1h), admin);
  EXPECT_EQ(engine.active_grants().size(), 2U);
}

TEST_F(CoreEngineNarrowedPortTest, OtherPortsStayOpenToEveryRequester) {
  grant_ok(ask({https}, "10.0.0.1", 1h), alice);
}

}  // namespace
}  // namespace jitd::core
