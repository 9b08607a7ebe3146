// roles: and per-port requesters: in policy files; names resolved to ids when loading.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "jitd/config/config.hpp"

namespace jitd::config {
namespace {

std::vector<std::string> errors_of(const Loaded<core::Policy>& loaded) {
  std::vector<std::string> lines;
  for (const auto& error : loaded.errors) lines.push_back(error.to_string());
  return lines;
}

// Users and groups that every Debian system has (base-passwd).
constexpr const char* roles_policy = R"(roles:
  readers: {users: [daemon]}
  requesters: {users: [nobody], groups: [nogroup]}
  administrators: {groups: [root]}
ports:
  - number: 5432
    protocol: tcp
    allowedSourceAddressPrefixes: ["*"]
    maxRequestAccessDuration: PT1H
    requesters: {groups: [daemon]}
)";

TEST(ConfigRoles, NamesAreResolvedToIds) {
  const auto loaded = parse_policy_text(roles_policy, "a.yaml");
  ASSERT_EQ(errors_of(loaded), std::vector<std::string>{});
  const auto& roles = loaded.value.roles;
  ASSERT_TRUE(roles.readers && roles.requesters && roles.administrators);
  EXPECT_EQ(roles.readers->users, std::vector<std::string>{"daemon"});
  EXPECT_EQ(roles.readers->uids, std::vector<std::uint32_t>{1});
  EXPECT_EQ(roles.requesters->uids, std::vector<std::uint32_t>{65534});
  EXPECT_EQ(roles.requesters->gids, std::vector<std::uint32_t>{65534});
  EXPECT_EQ(roles.administrators->gids, std::vector<std::uint32_t>{0});
  ASSERT_EQ(loaded.value.rules.size(), 1U);
  ASSERT_TRUE(loaded.value.rules[0].requesters.has_value());
  EXPECT_EQ(loaded.value.rules[0].requesters->gids, std::vector<std::uint32_t>{1});
}

TEST(ConfigRoles, AbsentRolesKeepTheirDefaults) {
  const auto loaded = parse_policy_text("ports: []\n", "a.yaml");
  ASSERT_EQ(errors_of(loaded), std::vector<std::string>{});
  EXPECT_FALSE(loaded.value.roles.readers || loaded.value.roles.requesters ||
               loaded.value.roles.administrators);
}

TEST(ConfigRoles, UnknownUserOrGroupIsAnErrorWhereItIsNamed) {
  const auto loaded = parse_policy_text(
      "roles:\n  requesters: {users: [no-such-user-jitd], groups: [no-such-group-jitd]}\n",
      "a.yaml");
  EXPECT_EQ(errors_of(loaded),
            (std::vector<std::string>{"a.yaml:2:24: no user 'no-such-user-jitd'",
                                      "a.yaml:2:53: no group 'no-such-group-jitd'"}));
}

TEST(ConfigRoles, EmptyRoleAndUnknownKeysAreRefused) {
  const auto loaded =
      parse_policy_text("roles:\n  administrators: {}\n  operators: {users: [root]}\n", "a.yaml");
  const auto errors = errors_of(loaded);
  ASSERT_EQ(errors.size(), 2U) << ::testing::PrintToString(errors);
  EXPECT_EQ(errors[0], "a.yaml:2:19: 'administrators' names no user and no group");
  EXPECT_NE(errors[1].find("a.yaml:3:3: unknown key 'operators' in roles"), std::string::npos)
      << errors[1];
}

TEST(ConfigRoles, RoleWithoutAValueNamesNobodyAtItsKey) {
  EXPECT_EQ(errors_of(parse_policy_text("roles:\n  readers:\nports: []\n", "a.yaml")),
            std::vector<std::string>{"a.yaml:2:3: 'readers' names no user and no group"});
}

}  // namespace
}  // namespace jitd::config
