#pragma once
// Time as the engine sees it. core/ never reads a clock itself: the daemon passes
// the system clock, tests pass a FakeClock.
#include <chrono>
#include <cstdint>
#include <string>

#include "jitd/core/error.hpp"

namespace jitd::core {

// Milliseconds since the Unix epoch, UTC.
using TimePoint = std::chrono::sys_time<std::chrono::milliseconds>;

class Clock {
 public:
  virtual ~Clock() = default;
  [[nodiscard]] virtual TimePoint now() const = 0;
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(TimePoint start) : now_(start) {}
  [[nodiscard]] TimePoint now() const override { return now_; }
  void advance(std::chrono::milliseconds step) { now_ += step; }

 private:
  TimePoint now_;
};

// "2026-11-24T03:30:00.125Z" (milliseconds shown only when non-zero).
[[nodiscard]] std::string format_utc(TimePoint when);
// RFC 3339 / ISO 8601 UTC: "2026-11-24T03:30:00Z", fractional seconds and "+00:00" accepted.
[[nodiscard]] Result<TimePoint> parse_utc(std::string_view text);

}  // namespace jitd::core
