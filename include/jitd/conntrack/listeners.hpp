#pragma once
// The namespace's listening sockets, from sock_diag: what `jitctl recommend` compares with
// the policy.
#include <vector>

#include "jitd/core/error.hpp"
#include "jitd/core/recommend.hpp"

namespace jitd::conntrack {

// TCP sockets in LISTEN and bound, unconnected UDP sockets, IPv4 and IPv6, of the calling
// thread's network namespace. Opens one sock_diag socket and closes it before it returns.
[[nodiscard]] core::Result<std::vector<core::Listener>> list_listeners();

}  // namespace jitd::conntrack
