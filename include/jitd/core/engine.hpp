#pragma once
// The AccessEngine decides: it authorises and validates requests against the policy,
// computes end times, keeps every grant as its own record, journals every change before
// the kernel sees it, and drives the backend with the disjoint ranges derived from the
// live grants. Enforcement and expiry run on the boot clock (Deadline); UTC is for people.
//
// Requests are group-committed: submit() validates and writes the journal record, commit()
// syncs the journal once and changes the kernel in one transaction for every request
// submitted since, then answers each. A change costs in proportion to what it touches
// (RangeIndex), not to how many grants are live.
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "jitd/core/audit.hpp"
#include "jitd/core/backend.hpp"
#include "jitd/core/clock.hpp"
#include "jitd/core/error.hpp"
#include "jitd/core/grant.hpp"
#include "jitd/core/history.hpp"
#include "jitd/core/journal.hpp"
#include "jitd/core/policy.hpp"
#include "jitd/core/range_index.hpp"
#include "jitd/core/ranges.hpp"
#include "jitd/core/sessions.hpp"

namespace jitd::core {

using IdGenerator = std::function<std::string()>;
// Answers one submitted request: the grant, or why it was refused or failed.
using GrantCallback = std::function<void(Result<Grant>)>;
// Answers requests submitted together: every grant, or the first reason one failed.
using GrantsCallback = std::function<void(Result<std::vector<Grant>>)>;

// How far a grant's end moves: by a length, or to a time.
struct Extension {
  std::optional<Milliseconds> by;
  std::optional<TimePoint> until;
};

// How far ahead a start may be scheduled: a request is a need of the near future.
inline constexpr Milliseconds max_schedule_ahead = std::chrono::days(30);

struct RestoreReport {
  std::size_t restored = 0;  // live again, with their remaining time
  std::size_t expired = 0;   // ended while jitd was not running
};

struct PolicyChange {
  std::size_t revoked = 0;   // no port of theirs is still allowed
  std::size_t narrowed = 0;  // lost some ports
  std::size_t clamped = 0;   // now end at start + the new maximum
};

// What retry_pending() could not fix yet; both are retried again on the next call.
struct RetryOutcome {
  std::optional<Error> journal;  // an end record the journal still refuses
  std::optional<Error> kernel;   // the re-install the kernel still refuses
};

class AccessEngine {
 public:
  AccessEngine(Backend& backend, Journal& journal, AuditSink& audit, const Clock& clock,
               IdGenerator new_id, Policy policy);

  // Before install(): the journal's live grants. A deadline from another boot is rebuilt
  // from the UTC end time; grants that ended while jitd was down are audited as expired.
  // The current policy is applied to them as a reload would.
  RestoreReport restore(std::vector<JournalEntry> entries, std::string_view boot_id);
  // Where ended grants are kept for people (optional), and what ends the sessions of grants on
  // ports with terminateSessionsOnEnd (optional: without it sessions outlive the grant).
  void set_history(GrantHistory* history) { history_ = history; }
  void set_session_cutter(SessionCutter* cutter) { cutter_ = cutter; }
  // Replaces jitd's whole table, atomically, with the policy and every live grant.
  [[nodiscard]] Result<void> install();
  // submit() + commit(): one request, answered on return.
  [[nodiscard]] Result<Grant> request(const Caller& caller, const GrantRequest& request);
  // Validates and authorises the request and writes its journal record. A refusal is answered
  // at once; an accepted request waits for the next commit(), which answers it.
  void submit(const Caller& caller, const GrantRequest& request, GrantCallback done);
  // Several requests as one (an Azure initiate whose ports name different sources or ends):
  // all are checked before any is journaled, so a refusal refuses them all.
  void submit(const Caller& caller, const std::vector<GrantRequest>& requests,
              GrantsCallback done);
  // One journal sync and one kernel transaction for every request submitted since the last
  // commit; each is answered only after its record is on disk and its element in the kernel.
  // A sync failure fails the whole batch; a kernel refusal is retried request by request, so
  // only the request at fault fails. Every other change commits first, so order is kept.
  void commit();
  [[nodiscard]] bool has_pending() const { return !pending_.empty(); }
  // Ends a live grant, or withdraws a pending one.
  [[nodiscard]] Result<Grant> revoke(const Caller& caller, std::string_view id);
  // Moves a live grant's end later (its requestor or an administrator), within the maximum of
  // its ports' rules counted from its start (extendFrom: start) or from now (extendFrom: now).
  [[nodiscard]] Result<Grant> extend(const Caller& caller, std::string_view id,
                                     const Extension& extension);
  // An approver's decision on a request that waits for one; never the requestor's own.
  [[nodiscard]] Result<Grant> approve(const Caller& caller, std::string_view id,
                                      const std::string& note);
  [[nodiscard]] Result<Grant> deny(const Caller& caller, std::string_view id,
                                   const std::string& note);
  // A new, valid policy: grants it no longer allows are revoked, narrowed or clamped
  // (journaled first), and the new ruleset replaces the old in one transaction.
  [[nodiscard]] Result<PolicyChange> replace_policy(Policy policy);
  // Another tool changed our table: audit it and put everything back.
  [[nodiscard]] Result<void> repair(std::string_view what);
  // Reads the table back and compares it with what jitd put there (grant timeouts within a
  // second or two: they count down). For when events about the table were lost: a large
  // install of jitd's own overruns the monitor's queue, and re-installing blindly would
  // overrun it again, for ever.
  [[nodiscard]] Result<bool> kernel_intact();
  // Re-writes end records the journal refused, and re-installs when an earlier kernel
  // transaction failed after its journal record. Neither waits for the other: a full disk
  // must not keep a revoke the kernel refused in force.
  [[nodiscard]] RetryOutcome retry_pending();
  // Audits a call refused before it reached the engine (a body that does not parse, a reload
  // the caller may not make), so every refusal leaves a trace. `event`: "request", "reload".
  void audit_refused_call(const Caller& caller, std::string event, const Error& error);
  // Records grants whose end has passed as expired (the kernel already enforced it), at most
  // a few hundred per call, in one journal sync; next_expiry() is then still due when more are.
  // Also starts scheduled grants whose time has come and ends requests nobody approved in time.
  void expire_due();

  // Live grants by (start, id).
  [[nodiscard]] std::vector<Grant> active_grants() const;
  // Requests waiting for an approver or for their start time, by (requested, id).
  [[nodiscard]] std::vector<Grant> pending_grants() const;
  // A live or pending grant, or an ended one the history still holds.
  [[nodiscard]] Result<std::optional<Grant>> find_grant(std::string_view id) const;
  [[nodiscard]] const GrantHistory* history() const { return history_; }
  [[nodiscard]] std::optional<Deadline> next_expiry() const;
  [[nodiscard]] const Policy& policy() const { return policy_; }
  [[nodiscard]] bool kernel_pending() const { return kernel_pending_; }
  [[nodiscard]] bool journal_pending() const { return !unjournaled_ends_.empty(); }
  [[nodiscard]] EnforcementSpec enforcement_spec(Deadline now) const;

 private:
  struct PendingRequest {
    Caller caller;
    GrantRequest request;
    Grant grant;
    GrantCallback done;
  };
  struct Ending {
    Grant grant;
    GrantStatus status;
    std::string reason;
    std::optional<Caller> by;  // who ended it, when a person did
    std::string note = {};     // the person's words, for the audit log
  };
  // Approval's two outcomes share one path: who may decide, and the self-approval rule.
  [[nodiscard]] Result<Grant> decide(const Caller& caller, std::string_view id, bool approve,
                                     const std::string& note);
  struct PendingEnd {
    std::string id;
    GrantStatus status;
    std::string reason;
  };

  [[nodiscard]] Result<void> validate(const GrantRequest& request, Milliseconds duration) const;
  // Checks and authorises one request and builds its grant (without an id): live at once,
  // or pending for an approver or its start time.
  [[nodiscard]] Result<Grant> prepare(const Caller& caller, const GrantRequest& request) const;
  // The longest the rules of these ports allow (a request without a duration gets it).
  [[nodiscard]] Milliseconds longest_for(const std::vector<PortSpec>& ports) const;
  // The shortest approvalTimeout among these ports' rules that require approval; none: no
  // approval needed.
  [[nodiscard]] std::optional<Milliseconds> approval_timeout_for(
      const std::vector<PortSpec>& ports) const;
  [[nodiscard]] std::string new_grant_id() const;
  // A pending grant whose time came: starts it (scheduled), or ends it (approval expired).
  void start_waiting(Grant grant, const std::optional<Caller>& approver);
  // Ends the sessions of grants that ended, on ports whose rules ask for it, once the kernel
  // no longer admits them; kept until then (an install that failed, a restart before install).
  void cut_sessions();
  // A port rule may narrow who may request it (requesters:); administrators are not narrowed.
  [[nodiscard]] Result<void> authorise_ports(const Caller& caller,
                                             const GrantRequest& request) const;
  [[nodiscard]] EnforcementSpec spec_with(const std::vector<TimedRange>& grants,
                                          Deadline now) const;
  [[nodiscard]] Result<void> install_index(Deadline now);
  // The index's changes into the kernel (a whole table while the kernel may differ).
  [[nodiscard]] Result<void> apply(const RangeChanges& changes, Deadline now);
  void add_coverage(const Grant& grant, RangeChanges& changes);
  void remove_coverage(const Grant& grant, RangeChanges& changes);
  // The kernel refused the batch's transaction: each request alone, so only the one at fault
  // fails. Returns each request's outcome.
  std::vector<std::optional<Error>> apply_one_by_one(const std::vector<PendingRequest>& batch);
  void activate(Grant grant);
  Grant deactivate(std::map<std::string, Grant, std::less<>>::iterator found);
  PolicyChange apply_policy_to_grants();
  // Writes end records and syncs them once; the ones not on disk are kept for retry_pending().
  // Returns, for each, why its record is not yet on disk (nothing when it is).
  std::vector<std::optional<Error>> journal_ends(const std::vector<PendingEnd>& ends);
  // journal_ends() for grants that are no longer (or never were) in active_, then audits each.
  // Returns them as ended, as the history keeps them.
  std::vector<Grant> end_grants(std::vector<Ending> endings);
  void answer_refused(PendingRequest& pending, Error error);
  [[nodiscard]] AuditEvent refusal_event(const Caller& caller, std::string event,
                                         const Error& error) const;
  void audit_refusal(const Caller& caller, const GrantRequest* request, const Error& error);
  void audit_grant(const std::string& event, const std::string& outcome, const Grant& grant,
                   const std::string& reason = {}, const Caller* by = nullptr);

  Backend& backend_;
  Journal& journal_;
  AuditSink& audit_;
  const Clock& clock_;
  IdGenerator new_id_;
  Policy policy_;
  std::map<std::string, Grant, std::less<>> active_;
  std::set<std::pair<Deadline, std::string>> by_deadline_;  // active_, soonest end first
  // The disjoint ranges of the live grants: what the kernel holds unless kernel_pending_.
  RangeIndex index_;
  bool kernel_pending_ = false;               // the kernel may differ from index_: install again
  bool installed_ = false;                    // install() succeeded: index_ is what the kernel got
  std::vector<PendingRequest> pending_;       // submitted, waiting for commit()
  std::vector<PendingEnd> unjournaled_ends_;  // ends the journal refused; retried
  std::map<std::string, Grant, std::less<>> waiting_;  // pending: approval or start time
  std::vector<Grant> uncut_;                           // ended grants whose sessions may go
  GrantHistory* history_ = nullptr;
  SessionCutter* cutter_ = nullptr;
};

}  // namespace jitd::core
