#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "jitd/core/clock.hpp"
#include "jitd/core/policy.hpp"

namespace jitd::core {

// One line of the audit log: who asked, for what, why, and what happened.
struct AuditEvent {
  TimePoint time;
  std::string event;    // "request", "revoke", "expire", "start", "stop"
  std::string outcome;  // "granted", "refused", "failed", "revoked", "expired", "ok"
  std::string grant_id;
  std::uint32_t uid = 0;
  std::string user;
  std::string source;
  std::vector<PortSpec> ports;
  std::string justification;
  std::string end_time;  // UTC text, when a grant is involved
  std::string reason;    // refusal or failure message, status reason
};

class AuditSink {
 public:
  virtual ~AuditSink() = default;
  // Best effort by design of the caller: a failing audit disk is logged, never
  // turned into a lost or leaked grant.
  virtual void record(const AuditEvent& event) = 0;
};

}  // namespace jitd::core
