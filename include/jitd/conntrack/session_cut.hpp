#pragma once
// Ending the sessions of a grant that ended: ctnetlink deletes their conntrack entries (so
// the deny rule drops their next packet) and sock_diag destroys their local TCP sockets (so
// the kernel resets them and both ends notice at once).
#include <vector>

#include "jitd/core/error.hpp"
#include "jitd/core/sessions.hpp"

namespace jitd::conntrack {

// Stateless: each cut() opens its netlink sockets (one ctnetlink, one sock_diag when a cut is
// for tcp) and closes them before it returns.
class SessionTerminator final : public core::SessionCutter {
 public:
  // For each cut, destroys the synchronized TCP sockets whose local port is the cut's port and
  // whose peer is selected, then deletes every conntrack entry (IPv4 and IPv6) whose original
  // tuple has the cut's protocol and destination port and a selected source; selected means
  // inside one of `sources` and inside none of `keep`. Sockets go first so the reset the
  // kernel sends still belongs to a tracked flow. Fails only when ctnetlink or sock_diag
  // cannot be reached at all; refusals of single entries or sockets are counted in the
  // report, a kernel without socket destruction is flagged there.
  [[nodiscard]] core::Result<core::CutReport> cut(
      const std::vector<core::SessionCut>& cuts) override;
};

}  // namespace jitd::conntrack
