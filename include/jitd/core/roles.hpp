#pragma once
// Who may do what, like Azure's three permission sets: read (policy, grants, audit),
// request (grants, and revoking one's own), administer (revoke anyone's, reload the policy).
// The caller's identity comes from the kernel (SO_PEERCRED, SO_PEERGROUPS), never from a
// request; the policy's user and group names are resolved to ids when it loads, so checking
// a right needs no name-service lookup.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace jitd::core {

// A caller whose credentials could not be read: outside every role.
inline constexpr std::uint32_t unknown_uid = UINT32_MAX;

// Who is asking, as the kernel recorded it for the connection.
struct Caller {
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::string name;
  bool in_socket_group = false;       // root, or a member of the socket's group
  std::vector<std::uint32_t> groups;  // supplementary groups
};

enum class Right : std::uint8_t { read, request, administer };
[[nodiscard]] std::string_view to_string(Right right);

// Users and groups a policy names, with their ids.
struct Principals {
  std::vector<std::string> users;
  std::vector<std::string> groups;
  std::vector<std::uint32_t> uids;  // resolved when the policy loads
  std::vector<std::uint32_t> gids;

  [[nodiscard]] bool includes(const Caller& caller) const;
  [[nodiscard]] std::string describe() const;  // "users alice; groups dba, ops"
};

// A role that is not configured falls back to its default: readers are everyone who can
// reach the socket, requesters the socket's group, administrators root alone. root is
// always an administrator, and every role includes the ones above it.
struct Roles {
  std::optional<Principals> readers;
  std::optional<Principals> requesters;
  std::optional<Principals> administrators;

  [[nodiscard]] bool grants(const Caller& caller, Right right) const;
  // Why `caller` may not `action`: "user bob (uid 1001) may not revoke another user's grant:
  // that needs the administer right (roles.administrators: root)".
  [[nodiscard]] std::string refusal(const Caller& caller, Right right,
                                    std::string_view action) const;
};

}  // namespace jitd::core
