#pragma once
// Who is at the other end of a Unix socket, as the kernel recorded it at connect():
// SO_PEERCRED and SO_PEERGROUPS, never anything the request says.
#include <sys/types.h>

#include <optional>
#include <vector>

#include "jitd/core/error.hpp"
#include "jitd/core/grant.hpp"

namespace jitd::api {

// The peer's supplementary groups, in a buffer sized from the kernel's answer.
[[nodiscard]] core::Result<std::vector<gid_t>> peer_groups(int fd);

// The caller behind `fd`. It may manage (request, revoke, reload) when it is root or a
// member of `manage_group`; without credentials it may do nothing.
[[nodiscard]] core::Caller identify_peer(int fd, const std::optional<gid_t>& manage_group);

}  // namespace jitd::api
