#pragma once
// Adoption of TCP sessions that predate jitd's table. A session opened while no conntrack
// hooks existed in the namespace has no conntrack entry, so once the table's
// `ct state established` rule is live its next packet is a NEW mid-stream pickup and is
// dropped. Instead of accepting such pickups in general (blind ACKs would reach the stack),
// jitd gives each real session, as the socket table lists it, an ESTABLISHED entry.
#include <cstddef>
#include <string>
#include <vector>

#include "jitd/core/error.hpp"
#include "jitd/core/policy.hpp"

namespace jitd::conntrack {

struct AdoptedSessions {
  std::size_t adopted = 0;  // entries created, or already present
  std::size_t failed = 0;   // entries the kernel refused
  std::string first_error;  // the first refusal, empty when none
};

// Gives conntrack an ESTABLISHED entry for every established TCP session to one of
// `protected_ports` (tcp ones), so sessions that predate jitd's table survive its start.
// Fails only when the sockets cannot be listed or conntrack cannot be reached.
[[nodiscard]] core::Result<AdoptedSessions> adopt_established_sessions(
    const std::vector<core::PortKey>& protected_ports);

}  // namespace jitd::conntrack
