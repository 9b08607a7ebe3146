#include "jitd/daemon/schedule.hpp"

#include <algorithm>

namespace jitd::daemon {

bool Coalescer::add() {
  if (timer_.armed()) return false;
  timer_.arm(window_);
  return true;
}

std::chrono::milliseconds housekeeping_delay(std::optional<core::Deadline> next_expiry,
                                             core::Deadline now) {
  if (!next_expiry) return housekeeping_interval;
  return std::clamp(*next_expiry - now, std::chrono::milliseconds(1), housekeeping_interval);
}

}  // namespace jitd::daemon
