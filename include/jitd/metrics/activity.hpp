#pragma once
// What jitd counts for metrics and status, kept monotonic across reloads, repairs and restarts:
// the engine's decisions (from its audit events) and the kernel's counters per protected port
// (which restart at zero whenever the table or maps are re-created: each carries an offset).
// Pure logic, persisted as JSON by the caller; the time comes with each call.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "jitd/core/audit.hpp"
#include "jitd/core/backend.hpp"
#include "jitd/core/clock.hpp"
#include "jitd/core/error.hpp"
#include "jitd/core/policy.hpp"

namespace jitd::metrics {

// One kernel counter made monotonic: a raw value below the last one seen means the kernel's
// counter was re-created, so everything counted before it is carried in `offset`.
struct CarriedCounter {
  std::uint64_t last_raw = 0;
  std::uint64_t offset = 0;
  [[nodiscard]] std::uint64_t total() const { return offset + last_raw; }
  // Returns whether the total moved.
  bool observe(std::uint64_t raw);
};

struct KernelTotals {
  CarriedCounter dropped_packets;
  CarriedCounter dropped_connections;
  CarriedCounter admitted_connections;
  CarriedCounter would_drop_packets;
};

// Per protected (protocol, port).
struct PortActivity {
  std::map<std::int64_t, std::uint64_t> issued_by_day;  // UTC days since the epoch → grants
  std::string last_user;                                // of the last grant issued for it
  std::optional<core::TimePoint> last_access;  // the reading that saw a new admitted connection
  KernelTotals kernel;
};

// The engine's decisions, counted. Refusals are by error code (PortNotInPolicy, Forbidden, …);
// failures (a journal or kernel error) by the event that failed and its code.
struct DecisionTotals {
  std::uint64_t issued = 0;            // grants that went live (at request, or at a later start)
  std::uint64_t expired = 0;           // grants that reached their end
  std::uint64_t revoked = 0;           // grants ended before it (by a user, a reload, an error)
  std::uint64_t denied = 0;            // requests an approver refused
  std::uint64_t approvals_lapsed = 0;  // requests nobody approved in time
  std::map<std::string, std::uint64_t> refused;                           // by code
  std::map<std::pair<std::string, std::string>, std::uint64_t> failures;  // by (event, code)
  std::map<std::string, std::uint64_t> tamper;  // repairs by outcome: restored, failed
};

// How many days of issued grants each port keeps: a week for status, and today.
inline constexpr int activity_days = 8;

// Fed by the daemon's audit fanout (every event the engine and the daemon audit) and by
// readings of the kernel's counters.
class Activity final : public core::AuditSink {
 public:
  void record(const core::AuditEvent& event) override;
  // One reading of the kernel's counters at `now`. Ports absent from the reading keep their
  // totals (a port dropped from the policy and added back continues where it was).
  void observe_kernel(const std::vector<core::PortCounters>& counters, core::TimePoint now);

  [[nodiscard]] const DecisionTotals& decisions() const { return decisions_; }
  [[nodiscard]] const std::map<core::PortKey, PortActivity>& ports() const { return ports_; }
  // Grants issued for `port` on the last `days` UTC days, today included.
  [[nodiscard]] std::uint64_t issued_in_last_days(const core::PortKey& port, core::TimePoint now,
                                                  int days = 7) const;

  // Changed since the last take_dirty(): worth saving.
  [[nodiscard]] bool dirty() const { return dirty_; }
  bool take_dirty() { return std::exchange(dirty_, false); }

  [[nodiscard]] nlohmann::json to_json() const;
  // A saved state; an error names what in it is not what to_json() writes.
  [[nodiscard]] static core::Result<Activity> from_json(const nlohmann::json& saved);

 private:
  void count_issued(const core::AuditEvent& event);

  DecisionTotals decisions_;
  std::map<core::PortKey, PortActivity> ports_;
  bool dirty_ = false;
};

}  // namespace jitd::metrics
