#pragma once
// The AccessEngine decides: it authorises and validates requests against the policy,
// computes end times, keeps every grant as its own record, and drives the backend
// with the disjoint ranges derived from the live grants.
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/audit.hpp"
#include "jitd/core/backend.hpp"
#include "jitd/core/clock.hpp"
#include "jitd/core/error.hpp"
#include "jitd/core/grant.hpp"
#include "jitd/core/policy.hpp"
#include "jitd/core/ranges.hpp"

namespace jitd::core {

using IdGenerator = std::function<std::string()>;

class AccessEngine {
 public:
  AccessEngine(Backend& backend, AuditSink& audit, const Clock& clock, IdGenerator new_id,
               Policy policy);

  // Installs the policy (protected ports, permanent allow-list) and the live grants.
  [[nodiscard]] Result<void> install();
  [[nodiscard]] Result<Grant> request(const Caller& caller, const GrantRequest& request);
  [[nodiscard]] Result<Grant> revoke(const Caller& caller, std::string_view id);
  // Audits a request the API could not even parse, so every refusal leaves a trace.
  void audit_malformed_request(const Caller& caller, const Error& error);
  // Records grants whose end has passed as expired; the kernel already enforced it.
  void expire_due();

  [[nodiscard]] std::vector<Grant> active_grants() const;
  [[nodiscard]] std::optional<TimePoint> next_expiry() const;
  [[nodiscard]] const Policy& policy() const { return policy_; }
  [[nodiscard]] EnforcementSpec enforcement_spec(TimePoint now) const;

 private:
  [[nodiscard]] Result<std::vector<PortKey>> validate(const GrantRequest& request,
                                                      Milliseconds duration) const;
  [[nodiscard]] std::vector<TimedRange> desired_ranges(const Grant* extra,
                                                       const std::string* without) const;
  [[nodiscard]] Result<void> converge(std::vector<TimedRange> desired, TimePoint now);
  void audit_refusal(const Caller& caller, const GrantRequest* request, const Error& error);

  Backend& backend_;
  AuditSink& audit_;
  const Clock& clock_;
  IdGenerator new_id_;
  Policy policy_;
  std::map<std::string, Grant, std::less<>> active_;
  std::vector<TimedRange> kernel_ranges_;  // what the kernel holds, as last applied
};

}  // namespace jitd::core
