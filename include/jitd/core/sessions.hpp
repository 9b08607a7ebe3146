#pragma once
// Ending the sessions of a grant that ended, for port rules with terminateSessionsOnEnd.
// The kernel ends access at the grant's end; sessions already established outlive it unless
// their conntrack entries are deleted (then the deny rule drops their next packet) and their
// local sockets destroyed (so both ends notice at once instead of timing out).
#include <cstddef>
#include <string>
#include <vector>

#include "jitd/core/error.hpp"
#include "jitd/core/policy.hpp"
#include "jitd/core/prefix.hpp"

namespace jitd::core {

// The sessions to end on one (protocol, port): those whose remote address lies in `sources`
// and in none of `keep` (addresses another live grant or the permanent allow-list still
// admits to this port).
struct SessionCut {
  PortKey port;
  std::vector<AddressRange> sources;
  std::vector<AddressRange> keep;
};

struct CutReport {
  std::size_t flows = 0;    // conntrack entries deleted
  std::size_t sockets = 0;  // local sockets destroyed
  // The kernel cannot destroy sockets (no CONFIG_INET_DIAG_DESTROY): the flows were still cut,
  // so their next packet is dropped, but the local sockets only notice when they time out.
  bool sockets_unsupported = false;
  std::size_t failed = 0;   // entries or sockets the kernel refused to remove
  std::string first_error;  // the first refusal, empty when none
};

class SessionCutter {
 public:
  virtual ~SessionCutter() = default;
  [[nodiscard]] virtual Result<CutReport> cut(const std::vector<SessionCut>& cuts) = 0;
};

}  // namespace jitd::core
