#pragma once
// The grant journal: written durably before the kernel changes and before the caller
// hears back, so no live grant can lack its record.
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/error.hpp"
#include "jitd/core/grant.hpp"

namespace jitd::core {

// A live grant as the journal gave it back, with the boot its deadline belongs to.
struct JournalEntry {
  Grant grant;
  std::string boot_id;
};

class Journal {
 public:
  virtual ~Journal() = default;
  // The grant as it now stands (new, or changed by a policy reload). Durable on return.
  [[nodiscard]] virtual Result<void> record_grant(const Grant& grant) = 0;
  // The grant ended (revoked, expired, removed by policy, never applied). Durable on return.
  [[nodiscard]] virtual Result<void> record_end(const std::string& id, GrantStatus status,
                                                const std::string& reason) = 0;
};

}  // namespace jitd::core
