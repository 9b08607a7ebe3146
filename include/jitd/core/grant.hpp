#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/clock.hpp"
#include "jitd/core/duration.hpp"
#include "jitd/core/error.hpp"
#include "jitd/core/policy.hpp"
#include "jitd/core/prefix.hpp"

namespace jitd::core {

struct Requestor {
  std::uint32_t uid = 0;
  std::string name;
  auto operator<=>(const Requestor&) const = default;
};

// Where a grant admits traffic from: one prefix, or "*", every address of both families
// (Azure's "*"; 0.0.0.0/0 alone is IPv4 only).
class SourceSpec {
 public:
  SourceSpec() = default;
  SourceSpec(Prefix prefix) : prefix_(prefix) {}  // NOLINT(google-explicit-constructor)
  [[nodiscard]] static SourceSpec any();
  // "*" or a prefix (Prefix::parse).
  [[nodiscard]] static Result<SourceSpec> parse(std::string_view text);

  [[nodiscard]] bool is_any() const { return any_; }
  // The prefix for one family; for "*", 0.0.0.0/0.
  [[nodiscard]] const Prefix& prefix() const { return prefix_; }
  // What the kernel matches: the prefix, or 0.0.0.0/0 and ::/0.
  [[nodiscard]] std::vector<Prefix> prefixes() const;
  [[nodiscard]] std::string to_string() const;

  auto operator<=>(const SourceSpec&) const = default;

 private:
  Prefix prefix_;
  bool any_ = false;
};

struct GrantRequest {
  std::vector<PortSpec> ports;
  SourceSpec source;
  // At most one of duration / end_time; neither means the longest the ports' rules allow.
  std::optional<Milliseconds> duration;
  std::optional<TimePoint> end_time;
  // When access should start; absent or past: at once.
  std::optional<TimePoint> start_time;
  std::string justification;
};

// Azure's per-port status words, and jitd's own for a request that waits (for an approver or
// for its start time). Azure has no "Expired" status: an ended grant is Revoked, and
// statusReason says why.
enum class GrantStatus : std::uint8_t { pending, initiated, revoked };
[[nodiscard]] std::string_view to_string(GrantStatus status);
// Also reads "Expired", the status word journals written before the Azure mapping hold.
[[nodiscard]] std::optional<GrantStatus> parse_grant_status(std::string_view text);

// statusReason values. Azure's own first; then jitd's, for what Azure has no word for.
namespace reason {
inline constexpr std::string_view expired = "Expired";
inline constexpr std::string_view user_requested = "UserRequested";
inline constexpr std::string_view newer_request = "NewerRequestInitiated";
inline constexpr std::string_view policy_changed = "PolicyChanged";
inline constexpr std::string_view kernel_refused = "KernelRefused";
inline constexpr std::string_view journal_failed = "JournalFailed";
inline constexpr std::string_view awaiting_approval = "AwaitingApproval";
inline constexpr std::string_view scheduled = "Scheduled";
inline constexpr std::string_view denied = "Denied";
inline constexpr std::string_view approval_expired = "ApprovalExpired";
}  // namespace reason

struct Grant {
  std::string id;
  Requestor requestor;
  SourceSpec source;
  std::vector<PortSpec> ports;
  TimePoint requested;  // UTC, when it was asked for
  TimePoint start;      // UTC, for people; for a pending grant, when it would start
  TimePoint end;        // UTC, for people
  Deadline deadline;    // when access ends, on this boot's clock: what enforcement uses
  std::string justification;
  GrantStatus status = GrantStatus::initiated;
  std::string status_reason;  // reason:: values
  // A pending grant: until when an approver may act (approval), or when it starts (schedule),
  // on this boot's clock; its length is end - start.
  std::optional<Deadline> wait_until;
  bool needs_approval = false;          // still waits for an approver
  std::optional<Requestor> decided_by;  // who approved or denied it
  std::optional<Requestor> ended_by;    // who ended it, when a person did
  std::optional<TimePoint> ended;       // UTC, when it ended
};

// Time left until the kernel ends the grant's access; zero once it has.
[[nodiscard]] Milliseconds remaining(const Grant& grant, Deadline now);

}  // namespace jitd::core
