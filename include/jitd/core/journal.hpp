#pragma once
// The grant journal: written and synced before the kernel changes and before the caller
// hears back, so no live grant can lack its record. Records are written one by one and made
// durable together by sync(): a batch of requests shares one sync (group commit).
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
  // The grant as it now stands (new, or changed by a policy reload). Written on return (it
  // survives a crash of jitd), durable once sync() returns.
  [[nodiscard]] virtual Result<void> record_grant(const Grant& grant) = 0;
  // The grant ended (revoked, expired, removed by policy, never applied). Written on return,
  // durable once sync() returns.
  [[nodiscard]] virtual Result<void> record_end(const std::string& id, GrantStatus status,
                                                const std::string& reason) = 0;
  // Makes every record written so far durable. On error, none of the records written since
  // the last successful sync may be counted on.
  [[nodiscard]] virtual Result<void> sync() = 0;
};

}  // namespace jitd::core
