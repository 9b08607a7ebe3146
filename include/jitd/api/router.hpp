#pragma once
// HTTP routes → engine calls, without any socket: unit-testable with a fake backend.
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "jitd/core/audit.hpp"
#include "jitd/core/backend.hpp"
#include "jitd/core/clock.hpp"
#include "jitd/core/engine.hpp"
#include "jitd/core/grant.hpp"

namespace jitd::api {

struct Response {
  unsigned status = 200;
  std::string body;  // JSON
};

// Parses a POST /v1/grants body; errors name the offending field.
[[nodiscard]] core::Result<core::GrantRequest> parse_grant_request(std::string_view body);

// What a policy reload did: applied (with its effect on grants) or refused with every
// error as "file:line:col: message", the old policy staying in force.
struct ReloadOutcome {
  bool applied = false;
  std::vector<std::string> errors;
  core::PolicyChange change;
  bool previous_in_force = true;  // false: the new policy is in force, not yet in the kernel
};
// Provided by the daemon, which reads the policy directory.
using PolicyReloader = std::function<ReloadOutcome(const core::Caller& caller)>;

// Where the policy in force came from, for GET /v1/policy ("source").
struct PolicyStatus {
  bool last_valid_copy = false;          // the files are invalid: jitd enforces its saved copy
  std::string saved_utc;                 // when that copy was saved
  std::vector<std::string> file_errors;  // why the files on disk are not in force; empty: they are
};

// The kernel side as GET /v1/status shows it; read from the backend on each call.
struct EnforcementStatus {
  std::string backend;     // "nftables" or "ebpf"
  std::string where;       // "table inet jitd", "tc ingress on eth0"
  std::string protection;  // how it resists other tools
  std::vector<std::pair<std::string, std::string>> features;  // what the start-up probe chose
  core::Result<std::vector<core::PortDrops>> dropped = std::vector<core::PortDrops>{};
};
using StatusReader = std::function<EnforcementStatus()>;

// The query string's arguments, decoded, in the order given.
using QueryArguments = std::vector<std::pair<std::string, std::string>>;

class Router {
 public:
  // Runs on the daemon's event loop, the engine's only thread. Without `audit`, GET
  // /v1/audit answers that there is no audit log to read.
  // Without `status`, GET /v1/status shows the engine's side only.
  Router(core::AccessEngine& engine, const core::Clock& clock, PolicyReloader reload,
         const core::AuditReader* audit = nullptr, const PolicyStatus* policy_status = nullptr,
         StatusReader status = nullptr)
      : engine_(engine),
        clock_(clock),
        reload_(std::move(reload)),
        audit_(audit),
        policy_status_(policy_status),
        status_(std::move(status)) {}

  [[nodiscard]] Response handle(const core::Caller& caller, std::string_view method,
                                std::string_view path, std::string_view body,
                                const QueryArguments& query = {}) const;
  // As handle(), but a grant request is only submitted to the engine: `respond` is called once
  // the engine's next commit() decided it (group commit). Every other call, and a request
  // refused before it reaches the engine, is answered before this returns.
  void handle_async(const core::Caller& caller, std::string_view method, std::string_view path,
                    std::string_view body, const QueryArguments& query,
                    std::function<void(Response)> respond) const;

 private:
  // A 403 naming the missing right, audited as `event`, when the caller lacks it.
  [[nodiscard]] std::optional<Response> refuse_without(const core::Caller& caller,
                                                       core::Right right, const char* event,
                                                       std::string_view action) const;
  [[nodiscard]] Response list_grants(const core::Caller& caller) const;
  [[nodiscard]] Response create_grant(const core::Caller& caller, std::string_view body) const;
  [[nodiscard]] Response grant_response(const core::Result<core::Grant>& grant) const;
  [[nodiscard]] Response revoke_grant(const core::Caller& caller, std::string_view id) const;
  [[nodiscard]] Response show_policy(const core::Caller& caller) const;
  [[nodiscard]] Response show_status(const core::Caller& caller) const;
  [[nodiscard]] Response reload_policy(const core::Caller& caller) const;
  [[nodiscard]] Response read_audit(const core::Caller& caller, const QueryArguments& query) const;
  // Audits a call refused before it reached the engine and answers its error.
  [[nodiscard]] Response refuse(const core::Caller& caller, std::string event,
                                const core::Error& error) const;

  core::AccessEngine& engine_;
  const core::Clock& clock_;
  PolicyReloader reload_;
  const core::AuditReader* audit_;
  const PolicyStatus* policy_status_;
  StatusReader status_;
};

}  // namespace jitd::api
