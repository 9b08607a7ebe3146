// Roles: read, request, administer; their defaults; and what a refusal says.
#include <gtest/gtest.h>

#include "jitd/core/roles.hpp"

namespace jitd::core {
namespace {

const Caller root{0, 0, "root", true, {}};
const Caller member{1000, 1000, "alice", true, {}};        // in the socket's group
const Caller outsider{1001, 1001, "bob", false, {}};       // reached a 0666 socket
const Caller dba{1002, 1002, "carol", false, {5432, 27}};  // supplementary groups
const Caller unknown{unknown_uid, 0, "unknown", false, {}};

Principals users(std::vector<std::string> names, std::vector<std::uint32_t> uids) {
  return Principals{std::move(names), {}, std::move(uids), {}};
}

Principals groups(std::vector<std::string> names, std::vector<std::uint32_t> gids) {
  return Principals{{}, std::move(names), {}, std::move(gids)};
}

TEST(CoreRoles, DefaultsEveryoneReadsTheSocketGroupRequestsRootAdministers) {
  const Roles roles;
  EXPECT_TRUE(roles.grants(outsider, Right::read));
  EXPECT_FALSE(roles.grants(outsider, Right::request));
  EXPECT_TRUE(roles.grants(member, Right::request));
  EXPECT_FALSE(roles.grants(member, Right::administer));
  EXPECT_TRUE(roles.grants(root, Right::administer));
}

TEST(CoreRoles, ConfiguredRequestersReplaceTheSocketGroup) {
  Roles roles;
  roles.requesters = groups({"dba"}, {5432});
  EXPECT_TRUE(roles.grants(dba, Right::request)) << "supplementary groups count";
  EXPECT_FALSE(roles.grants(member, Right::request));
  EXPECT_TRUE(roles.grants(root, Right::request)) << "root is always an administrator";
}

TEST(CoreRoles, ConfiguredReadersShutOthersOut) {
  Roles roles;
  roles.readers = users({"bob"}, {1001});
  EXPECT_TRUE(roles.grants(outsider, Right::read));
  EXPECT_FALSE(roles.grants(dba, Right::read));
  EXPECT_TRUE(roles.grants(member, Right::read)) << "a requester may read";
  EXPECT_FALSE(roles.grants(outsider, Right::request));
}

TEST(CoreRoles, AdministratorsHoldEveryRight) {
  Roles roles;
  roles.readers = users({"bob"}, {1001});
  roles.requesters = users({"bob"}, {1001});
  roles.administrators = groups({"dba"}, {27});
  for (const auto right : {Right::read, Right::request, Right::administer}) {
    EXPECT_TRUE(roles.grants(dba, right)) << to_string(right);
  }
  EXPECT_FALSE(roles.grants(outsider, Right::administer));
}

TEST(CoreRoles, CallerWithoutCredentialsHasNoRight) {
  const Roles roles;
  for (const auto right : {Right::read, Right::request, Right::administer}) {
    EXPECT_FALSE(roles.grants(unknown, right)) << to_string(right);
  }
}

TEST(CoreRoles, RefusalNamesTheCallerTheRightAndWhoHoldsIt) {
  Roles roles;
  roles.administrators = Principals{{"ops"}, {"wheel", "adm"}, {1500}, {10, 4}};
  EXPECT_EQ(roles.refusal(member, Right::administer, "reload the policy"),
            "user alice (uid 1000) may not reload the policy: that needs the administer right "
            "(roles.administrators: users ops; groups wheel, adm)");
  EXPECT_EQ(Roles{}.refusal(outsider, Right::request, "request access"),
            "user bob (uid 1001) may not request access: that needs the request right "
            "(roles.requesters: the socket's group)");
}

}  // namespace
}  // namespace jitd::core
