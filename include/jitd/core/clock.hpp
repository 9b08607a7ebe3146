#pragma once
// Time as the engine sees it. core/ never reads a clock itself: the daemon passes
// the system clock, tests pass a FakeClock.
#include <chrono>
#include <cstdint>
#include <string>

#include "jitd/core/error.hpp"

namespace jitd::core {

// Milliseconds since the Unix epoch, UTC: what people read.
using TimePoint = std::chrono::sys_time<std::chrono::milliseconds>;

// CLOCK_BOOTTIME in milliseconds: what schedules and enforces. It counts suspend and
// never jumps, so setting the wall clock neither extends nor cuts a grant.
struct BootClock {
  using rep = std::int64_t;
  using period = std::milli;
  using duration = std::chrono::milliseconds;
  using time_point = std::chrono::time_point<BootClock>;
  static constexpr bool is_steady = true;
};
using Deadline = BootClock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  [[nodiscard]] virtual TimePoint now() const = 0;
  [[nodiscard]] virtual Deadline boot_now() const = 0;
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(TimePoint start, Deadline boot_start = Deadline{std::chrono::hours(1)})
      : now_(start), boot_now_(boot_start) {}
  [[nodiscard]] TimePoint now() const override { return now_; }
  [[nodiscard]] Deadline boot_now() const override { return boot_now_; }
  // Time passes: both clocks move.
  void advance(std::chrono::milliseconds step) {
    now_ += step;
    boot_now_ += step;
  }
  // Someone sets the wall clock: only it moves.
  void jump_wall(std::chrono::milliseconds step) { now_ += step; }

 private:
  TimePoint now_;
  Deadline boot_now_;
};

// "2026-11-24T03:30:00.125Z" (milliseconds shown only when non-zero).
[[nodiscard]] std::string format_utc(TimePoint when);
// RFC 3339 / ISO 8601 UTC: "2026-11-24T03:30:00Z", fractional seconds and "+00:00" accepted.
[[nodiscard]] Result<TimePoint> parse_utc(std::string_view text);

}  // namespace jitd::core
