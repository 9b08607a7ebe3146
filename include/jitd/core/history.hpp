#pragma once
// The history of grants that ended: kept apart from the journal, which a start replays, so a
// long history never slows a restart. Bounded by age (retention) and by size.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "jitd/core/clock.hpp"
#include "jitd/core/error.hpp"
#include "jitd/core/grant.hpp"

namespace jitd::core {

struct HistoryQuery {
  std::optional<TimePoint> since;  // grants that ended at or after
  std::string user;                // requestor name; empty: every user
  std::optional<std::uint16_t> port;
  std::size_t limit = 100;  // grants per page, at most max_history_page
  std::string cursor;       // where the previous page ended; empty: the newest
};

inline constexpr std::size_t max_history_page = 1000;

struct HistoryPage {
  std::vector<Grant> grants;  // newest end first
  std::string next;           // the cursor of the next (older) page; empty at the end
};

class GrantHistory {
 public:
  virtual ~GrantHistory() = default;
  // A grant that ended (status Revoked, ended set). Written on return; a failure is the
  // caller's to log: history is a record for people, enforcement never waits for it.
  [[nodiscard]] virtual Result<void> record(const Grant& ended) = 0;
  // The ended grant with this id, if the history still holds it.
  [[nodiscard]] virtual Result<std::optional<Grant>> find(const std::string& id) const = 0;
  [[nodiscard]] virtual Result<HistoryPage> query(const HistoryQuery& query) const = 0;
  // Drops what ended before now - retention, and the oldest beyond the size bound.
  [[nodiscard]] virtual Result<std::size_t> prune(TimePoint now) = 0;
};

}  // namespace jitd::core
