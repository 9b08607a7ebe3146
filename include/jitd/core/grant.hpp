#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "jitd/core/clock.hpp"
#include "jitd/core/duration.hpp"
#include "jitd/core/policy.hpp"
#include "jitd/core/prefix.hpp"

namespace jitd::core {

struct Requestor {
  std::uint32_t uid = 0;
  std::string name;
};

struct GrantRequest {
  std::vector<PortSpec> ports;
  Prefix source;
  std::optional<Milliseconds> duration;  // exactly one of duration / end_time
  std::optional<TimePoint> end_time;
  std::string justification;
};

// Azure's per-port status words.
enum class GrantStatus : std::uint8_t { initiated, revoked, expired };
[[nodiscard]] std::string_view to_string(GrantStatus status);

struct Grant {
  std::string id;
  Requestor requestor;
  Prefix source;
  std::vector<PortSpec> ports;
  TimePoint start;    // UTC, for people
  TimePoint end;      // UTC, for people
  Deadline deadline;  // when access ends, on this boot's clock: what enforcement uses
  std::string justification;
  GrantStatus status = GrantStatus::initiated;
  std::string status_reason;  // "UserRequested", "Expired", "PolicyChanged", ...
};

// Time left until the kernel ends the grant's access; zero once it has.
[[nodiscard]] Milliseconds remaining(const Grant& grant, Deadline now);

}  // namespace jitd::core
