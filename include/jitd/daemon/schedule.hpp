#pragma once
// When the daemon acts on its own: bursts of events coalesced into one action, and the
// housekeeping pass. Pure logic over the Timer interface, unit-tested with a fake timer.
#include <chrono>
#include <optional>

#include "jitd/core/clock.hpp"
#include "jitd/daemon/event_loop.hpp"

namespace jitd::daemon {

// Housekeeping (expiry records, kernel and journal retries) runs at the next expiry, and at
// least this often.
inline constexpr std::chrono::milliseconds housekeeping_interval{1000};

// Turns a burst of events into one action: the first event arms the timer, the events that
// follow before it fires join that action. One foreign nft transaction sends many events;
// editors and fleet tools write a policy in several steps.
class Coalescer {
 public:
  Coalescer(Timer& timer, std::chrono::microseconds window) : timer_(timer), window_(window) {}
  // True for the first event of a burst (the caller notes what started it).
  bool add();

 private:
  Timer& timer_;
  std::chrono::microseconds window_;
};

// How long until the next housekeeping pass: the next expiry, clamped to [1 ms, interval].
[[nodiscard]] std::chrono::milliseconds housekeeping_delay(
    std::optional<core::Deadline> next_expiry, core::Deadline now);

}  // namespace jitd::daemon
