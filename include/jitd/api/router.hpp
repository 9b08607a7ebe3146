#pragma once
// HTTP routes → engine calls, without any socket: unit-testable with a fake backend.
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
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
#include "jitd/core/recommend.hpp"

namespace jitd::api {

struct Response {
  unsigned status = 200;
  std::string body;  // JSON, unless content_type says otherwise
  std::string content_type = "application/json";
};

// Parses a POST /v1/grants body into one request per distinct (source, duration or end): the
// body's own, and those of ports that give their own allowedSourceAddressPrefix, duration or
// endTimeUtc. Errors name the offending field.
[[nodiscard]] core::Result<std::vector<core::GrantRequest>> parse_grant_requests(
    std::string_view body);

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
  core::Result<std::vector<core::PortCounters>> counters = std::vector<core::PortCounters>{};
  core::Result<std::vector<core::WouldBlock>> would_block = std::vector<core::WouldBlock>{};
};

// GET /v1/status lists at most this many would-be-blocked sources, those with most packets.
inline constexpr std::size_t status_would_block_limit = 100;
using StatusReader = std::function<EnforcementStatus()>;

// Other firewalls' rules that defeat jitd's (GET /v1/doctor, and warnings in grant replies).
struct FirewallAdvisor {
  // The doctor report: {"conflicts": [...], "legacyIptablesTables": [...], "notes": [...]},
  // read from the kernel now.
  std::function<core::Result<nlohmann::json>()> report;
  // One line per rule that may drop traffic to these ports, e.g. for a new grant; may answer
  // from a recent reading of the ruleset.
  std::function<std::vector<std::string>(const std::vector<core::PortSpec>&)> warnings;
};

// The host's listening sockets (GET /v1/recommendations), read from the kernel on each call.
using ListenerSource = std::function<core::Result<std::vector<core::Listener>>()>;
// What GET /v1/status shows of a protected port's use, kept by the daemon's metrics.
struct PortActivity {
  std::uint64_t approved_last_7_days = 0;      // grants issued for it, today and 6 days before
  std::optional<core::TimePoint> last_access;  // a new connection a grant admitted, seen then
  std::string last_user;                       // of its last grant; empty: none seen
};
// Read once per status request, for every port.
using ActivityReader = std::function<std::map<core::PortKey, PortActivity>()>;
// GET /metrics: the exposition text, with its content type.
using MetricsReader = std::function<Response()>;

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

  // Without it, GET /v1/doctor answers that jitd cannot inspect other firewalls here, and grant
  // replies carry no warnings.
  void set_firewall_advisor(FirewallAdvisor advisor) { firewall_ = std::move(advisor); }
  // Without it, GET /v1/recommendations answers that jitd cannot list listening sockets here.
  void set_listener_source(ListenerSource source) { listeners_ = std::move(source); }
  // The host's name: POST /v1/initiate serves requests for this VM only. Empty: every VM id
  // is refused.
  void set_host_name(std::string name) { host_name_ = std::move(name); }
  // Adds `name` to GET /v1/status, filled by `section` at each call (e.g. "webhooks"): modules
  // the API does not know show their state without the router depending on them.
  void add_status_section(std::string name, std::function<nlohmann::json()> section) {
    status_sections_.emplace_back(std::move(name), std::move(section));
  }
  // Without it, status shows no port activity. (approvedLast7Days, lastAccessUtc, lastUser.)
  void set_activity_reader(ActivityReader reader) { activity_ = std::move(reader); }
  // Without it, GET /metrics is not a route.
  void set_metrics_reader(MetricsReader reader) { metrics_ = std::move(reader); }

  [[nodiscard]] Response handle(const core::Caller& caller, std::string_view method,
                                std::string_view path, std::string_view body,
                                const QueryArguments& query = {}) const;
  // As handle(), but a grant request (POST /v1/grants, POST /v1/initiate) is only submitted to
  // the engine: `respond` is called once the engine's next commit() decided it (group commit).
  // Every other call, and a request refused before it reaches the engine, is answered before
  // this returns.
  void handle_async(const core::Caller& caller, std::string_view method, std::string_view path,
                    std::string_view body, const QueryArguments& query,
                    std::function<void(Response)> respond) const;

 private:
  // A 403 naming the missing right, audited as `event`, when the caller lacks it.
  [[nodiscard]] std::optional<Response> refuse_without(const core::Caller& caller,
                                                       core::Right right, const char* event,
                                                       std::string_view action) const;
  [[nodiscard]] Response list_grants(const core::Caller& caller,
                                     const QueryArguments& arguments) const;
  [[nodiscard]] Response show_grant(const core::Caller& caller, std::string_view id) const;
  // POST /v1/grants and /v1/initiate: parsed, submitted as one batch, answered by `respond`.
  void create_grants(const core::Caller& caller, std::string_view body,
                     std::function<void(Response)> respond) const;
  void initiate(const core::Caller& caller, std::string_view body,
                std::function<void(Response)> respond) const;
  // POST /v1/grants/{id}/<action>: extend, approve, deny.
  [[nodiscard]] Response act_on_grant(const core::Caller& caller, std::string_view id,
                                      std::string_view action, std::string_view body) const;
  [[nodiscard]] Response revoke_grant(const core::Caller& caller, std::string_view id) const;
  // Other firewalls' rules that may drop the grant's ports, each also logged.
  [[nodiscard]] std::vector<std::string> warnings_for(const core::Grant& grant) const;
  // The reply to requests that created grants (201, or 202 when one waits), with warnings.
  [[nodiscard]] Response created(const std::vector<core::Grant>& grants) const;
  [[nodiscard]] Response show_doctor(const core::Caller& caller) const;
  [[nodiscard]] Response show_policy(const core::Caller& caller) const;
  [[nodiscard]] Response show_recommendations(const core::Caller& caller) const;
  [[nodiscard]] Response show_status(const core::Caller& caller) const;
  [[nodiscard]] Response show_metrics(const core::Caller& caller) const;
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
  FirewallAdvisor firewall_;
  ListenerSource listeners_;
  std::string host_name_;
  std::vector<std::pair<std::string, std::function<nlohmann::json()>>> status_sections_;
  ActivityReader activity_;
  MetricsReader metrics_;
};

}  // namespace jitd::api
