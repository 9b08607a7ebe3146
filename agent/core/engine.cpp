#include "jitd/core/engine.hpp"

#include <algorithm>

#include "jitd/core/failpoint.hpp"

namespace jitd::core {

namespace {

constexpr const char* policy_changed = "PolicyChanged";
// Ends recorded per expire_due() call: an expiry storm (100,000 grants ending in one second)
// is recorded in passes that share one sync each, with requests served in between. The kernel
// enforced every end already; only the records wait.
constexpr std::size_t expiry_batch = 128;

std::string describe_error(const Error& error) {
  return std::string(to_string(error.code)) + ": " + error.message;
}

// The part of `port` whose protocols the policy still protects for `source`.
std::optional<PortSpec> still_allowed(const Policy& policy, const PortSpec& port,
                                      const SourceSpec& source) {
  std::vector<Protocol> kept;
  for (const auto protocol : expand(port.protocol)) {
    const auto* rule = policy.find_rule(port.number, protocol);
    const auto prefixes = source.prefixes();
    if (rule != nullptr && std::all_of(prefixes.begin(), prefixes.end(), [rule](const Prefix& p) {
          return rule->allows_source(p);
        })) {
      kept.push_back(protocol);
    }
  }
  if (kept.empty()) return std::nullopt;
  if (kept.size() == expand(port.protocol).size()) return port;
  return PortSpec{port.number,
                  kept.front() == Protocol::tcp ? ProtocolSpec::tcp : ProtocolSpec::udp};
}

// The shortest maximum among the rules that cover the grant's ports.
Milliseconds longest_allowed(const Policy& policy, const Grant& grant) {
  Milliseconds longest = max_policy_duration;
  for (const auto& port : grant.ports) {
    for (const auto protocol : expand(port.protocol)) {
      if (const auto* rule = policy.find_rule(port.number, protocol)) {
        longest = std::min(longest, rule->max_duration);
      }
    }
  }
  return longest;
}

// Calls `each` with the grant's coverage: its source for every (protocol, port) it names,
// ending at its deadline.
template <class Each>
void for_each_coverage(const Grant& grant, Each each) {
  for (const auto& port : grant.ports) {
    for (const auto protocol : expand(port.protocol)) {
      for (const auto& prefix : grant.source.prefixes()) {
        each(
            TimedRange{ElementKey{prefix.range(), PortKey{protocol, port.number}}, grant.deadline});
      }
    }
  }
}

}  // namespace

AccessEngine::AccessEngine(Backend& backend, Journal& journal, AuditSink& audit, const Clock& clock,
                           IdGenerator new_id, Policy policy)
    : backend_(backend),
      journal_(journal),
      audit_(audit),
      clock_(clock),
      new_id_(std::move(new_id)),
      policy_(std::move(policy)) {}

EnforcementSpec AccessEngine::enforcement_spec(Deadline now) const {
  return spec_with(index_.elements(), now);
}

EnforcementSpec AccessEngine::spec_with(const std::vector<TimedRange>& grants, Deadline now) const {
  EnforcementSpec spec;
  spec.protected_ports = policy_.protected_ports();
  // The allow-list goes through the same disjoint derivation: entries may overlap.
  std::vector<TimedRange> permanent;
  for (const auto& entry : policy_.permanent_allow) {
    std::vector<PortKey> ports;
    if (entry.ports.empty()) {
      ports = spec.protected_ports;
    } else {
      for (const auto& port : entry.ports) {
        for (const auto protocol : expand(port.protocol)) {
          if (policy_.find_rule(port.number, protocol)) ports.push_back({protocol, port.number});
        }
      }
    }
    for (const auto& source : entry.sources) {
      for (const auto& port : ports) {
        permanent.push_back({ElementKey{source.range(), port}, Deadline::max()});
      }
    }
  }
  for (const auto& range : derive_disjoint(std::move(permanent))) {
    spec.permanent.push_back(range.key);
  }
  spec.grants = timed_elements(grants, now);
  return spec;
}

void AccessEngine::activate(Grant grant) {
  by_deadline_.emplace(grant.deadline, grant.id);
  auto id = grant.id;
  active_.insert_or_assign(std::move(id), std::move(grant));
}

Grant AccessEngine::deactivate(std::map<std::string, Grant, std::less<>>::iterator found) {
  by_deadline_.erase({found->second.deadline, found->first});
  Grant grant = std::move(found->second);
  active_.erase(found);
  return grant;
}

void AccessEngine::add_coverage(const Grant& grant, RangeChanges& changes) {
  for_each_coverage(grant, [&](const TimedRange& coverage) { index_.add(coverage, changes); });
}

void AccessEngine::remove_coverage(const Grant& grant, RangeChanges& changes) {
  for_each_coverage(grant,
                    [&](const TimedRange& coverage) { (void)index_.remove(coverage, changes); });
}

RestoreReport AccessEngine::restore(std::vector<JournalEntry> entries, std::string_view boot_id) {
  RestoreReport report;
  std::vector<std::string> restored;
  std::vector<Ending> ended;
  const auto now = clock_.boot_now();
  for (auto& entry : entries) {
    auto& grant = entry.grant;
    if (entry.boot_id != boot_id) {
      // The machine rebooted: the old boot clock means nothing, the UTC end still does. A wall
      // clock not yet synced after boot may be far behind, so never restore more than the
      // grant's own length.
      grant.deadline = now + std::min(grant.end - clock_.now(), grant.end - grant.start);
    }
    if (grant.deadline <= now) {
      ++report.expired;
      ended.push_back(
          {std::move(grant), GrantStatus::revoked, std::string(reason::expired), std::nullopt});
      continue;
    }
    restored.push_back(grant.id);
    if (const auto found = active_.find(grant.id); found != active_.end()) deactivate(found);
    activate(std::move(grant));
  }
  end_grants(std::move(ended));
  apply_policy_to_grants();
  // A grant the policy revoked is not live again.
  report.restored = static_cast<std::size_t>(std::count_if(
      restored.begin(), restored.end(), [this](const auto& id) { return active_.contains(id); }));
  return report;
}

Result<void> AccessEngine::install() {
  commit();
  std::vector<TimedRange> coverage;
  for (const auto& [id, grant] : active_) {
    for_each_coverage(grant, [&](const TimedRange& range) { coverage.push_back(range); });
  }
  index_.assign(coverage);
  return install_index(clock_.boot_now());
}

Result<void> AccessEngine::install_index(Deadline now) {
  auto installed = backend_.install(spec_with(index_.elements(), now));
  // A refused table says nothing about what the kernel holds: changes wait for the next install.
  kernel_pending_ = !installed.has_value();
  return installed;
}

Result<void> AccessEngine::apply(const RangeChanges& changes, Deadline now) {
  // After a failed change the kernel may hold anything: only a whole table is sure to fit.
  if (kernel_pending_) return install_index(now);
  const auto elements = changes.to_elements(now);
  if (elements.empty()) return {};
  auto applied = backend_.apply(elements);
  // An error read after the batch was sent may hide a commit: re-install what we know.
  if (!applied) kernel_pending_ = true;
  return applied;
}

std::vector<std::optional<Error>> AccessEngine::journal_ends(const std::vector<PendingEnd>& ends) {
  std::vector<std::optional<Error>> failures(ends.size());
  if (ends.empty()) return failures;
  std::optional<Error> failed;
  std::size_t written = 0;
  // In order, up to the first refusal: a journal that refuses one end refuses the next too.
  for (; written < ends.size(); ++written) {
    const auto& end = ends[written];
    auto recorded = journal_.record_end(end.id, end.status, end.reason);
    if (!recorded) {
      failed = recorded.error();
      break;
    }
  }
  if (!failed) {
    if (auto synced = journal_.sync(); !synced) {
      failed = synced.error();
      written = 0;  // none of them can be counted on
    }
  }
  // Until an end is on disk a restart would bring the grant back: keep retrying it.
  for (std::size_t i = written; i < ends.size(); ++i) {
    failures[i] = failed;
    unjournaled_ends_.push_back(ends[i]);
  }
  return failures;
}

RetryOutcome AccessEngine::retry_pending() {
  commit();
  RetryOutcome outcome;
  auto ends = std::exchange(unjournaled_ends_, {});
  const auto failures = journal_ends(ends);
  if (const auto failed = std::find_if(failures.begin(), failures.end(),
                                       [](const auto& failure) { return failure.has_value(); });
      failed != failures.end()) {
    outcome.journal = **failed;
  }
  if (kernel_pending_) {
    if (auto installed = install(); !installed) outcome.kernel = installed.error();
  }
  return outcome;
}

Result<bool> AccessEngine::kernel_intact() {
  commit();
  if (kernel_pending_) return false;
  auto kernel = backend_.snapshot();
  if (!kernel) return tl::unexpected(kernel.error());
  auto expected = enforcement_spec(clock_.boot_now());
  if (!kernel->installed) return false;
  const auto sorted = [](auto items) {
    std::sort(items.begin(), items.end());
    return items;
  };
  if (sorted(kernel->protected_ports) != sorted(expected.protected_ports) ||
      sorted(kernel->permanent) != sorted(expected.permanent)) {
    return false;
  }
  // Timeouts count down between the two reads, and an element about to end may be in one
  // and not the other: those are left out of the comparison.
  constexpr Milliseconds slack{2000};
  const auto lasting = [slack](std::vector<TimedElement> grants) {
    std::erase_if(grants,
                  [slack](const TimedElement& element) { return element.timeout <= slack; });
    std::sort(grants.begin(), grants.end());
    return grants;
  };
  const auto held = lasting(std::move(kernel->grants));
  const auto wanted = lasting(std::move(expected.grants));
  return std::equal(held.begin(), held.end(), wanted.begin(), wanted.end(),
                    [slack](const TimedElement& a, const TimedElement& b) {
                      const auto apart =
                          a.timeout > b.timeout ? a.timeout - b.timeout : b.timeout - a.timeout;
                      return a.key == b.key && apart <= slack;
                    });
}

Result<void> AccessEngine::repair(std::string_view what) {
  AuditEvent event;
  event.time = clock_.now();
  event.event = "tamper";
  event.user = "jitd";
  event.reason = std::string(what);
  auto installed = install();
  event.outcome = installed ? "restored" : "failed";
  if (!installed) event.reason += "; restore failed: " + installed.error().message;
  audit_.record(event);
  return installed;
}

Result<void> AccessEngine::validate(const GrantRequest& request, Milliseconds duration) const {
  if (request.ports.empty()) {
    return fail(ErrorCode::invalid_request, "ports: at least one port is required");
  }
  std::vector<PortKey> keys;
  for (std::size_t i = 0; i < request.ports.size(); ++i) {
    const auto& port = request.ports[i];
    const auto field = "ports[" + std::to_string(i) + "]";
    for (const auto protocol : expand(port.protocol)) {
      const PortKey key{protocol, port.number};
      if (std::find(keys.begin(), keys.end(), key) != keys.end()) {
        return fail(ErrorCode::invalid_request,
                    field + ": " + to_string(port) + " is requested twice");
      }
      keys.push_back(key);
      const auto* rule = policy_.find_rule(port.number, protocol);
      if (rule == nullptr) {
        return fail(ErrorCode::port_not_in_policy, field + ": " + std::to_string(port.number) +
                                                       "/" + std::string(to_string(protocol)) +
                                                       " is not a port the policy protects");
      }
      if (!rule->allows_source(request.source.prefix())) {
        const auto family = request.source.prefix().family();
        return fail(
            ErrorCode::source_not_allowed,
            "allowedSourceAddressPrefix: " + request.source.to_string() +
                (rule->covers_source(request.source.prefix())
                     ? " is wider than port " + to_string(rule->port) + " allows in one request: " +
                           std::string(to_string(family)) + " prefixes must be /" +
                           std::to_string(rule->min_request_length(family)) + " or longer"
                     : " is not inside the allowed sources of port " + to_string(rule->port)));
      }
      if (duration > rule->max_duration) {
        return fail(ErrorCode::duration_too_long,
                    std::string(request.end_time ? "endTimeUtc" : "duration") + ": " +
                        format_duration(duration) + " exceeds the maximum " +
                        format_duration(rule->max_duration) + " of port " + to_string(rule->port));
      }
    }
  }
  return {};
}

Result<void> AccessEngine::authorise_ports(const Caller& caller,
                                           const GrantRequest& request) const {
  if (policy_.roles.grants(caller, Right::administer)) return {};
  for (std::size_t i = 0; i < request.ports.size(); ++i) {
    for (const auto protocol : expand(request.ports[i].protocol)) {
      const auto* rule = policy_.find_rule(request.ports[i].number, protocol);
      if (rule == nullptr || !rule->requesters || rule->requesters->includes(caller)) continue;
      return fail(ErrorCode::forbidden,
                  "ports[" + std::to_string(i) + "]: user " + caller.name + " (uid " +
                      std::to_string(caller.uid) + ") may not request " + to_string(rule->port) +
                      ": the policy lets only " + rule->requesters->describe() + " request it");
    }
  }
  return {};
}

AuditEvent AccessEngine::refusal_event(const Caller& caller, std::string event,
                                       const Error& error) const {
  AuditEvent audit;
  audit.time = clock_.now();
  audit.event = std::move(event);
  audit.outcome =
      error.code == ErrorCode::kernel || error.code == ErrorCode::io ? "failed" : "refused";
  audit.uid = caller.uid;
  audit.user = caller.name;
  audit.reason = describe_error(error);
  return audit;
}

void AccessEngine::audit_refusal(const Caller& caller, const GrantRequest* request,
                                 const Error& error) {
  auto event = refusal_event(caller, "request", error);
  if (request != nullptr) {
    event.source = request->source.to_string();
    event.ports = request->ports;
    event.justification = request->justification;
  }
  audit_.record(event);
}

void AccessEngine::audit_grant(const std::string& event, const std::string& outcome,
                               const Grant& grant, const std::string& reason, const Caller* by) {
  AuditEvent audit;
  audit.time = clock_.now();
  audit.event = event;
  audit.outcome = outcome;
  audit.grant_id = grant.id;
  audit.uid = by ? by->uid : grant.requestor.uid;  // who acted, when not the requestor
  audit.user = by ? by->name : grant.requestor.name;
  audit.source = grant.source.to_string();
  audit.ports = grant.ports;
  audit.justification = grant.justification;
  audit.end_time = format_utc(grant.end);
  audit.reason = reason;
  audit_.record(audit);
}

// Journals (one sync) and audits the ends of grants that are no longer (or never were) in
// active_.
void AccessEngine::end_grants(std::vector<Ending> endings) {
  std::vector<PendingEnd> ends;
  ends.reserve(endings.size());
  for (const auto& ending : endings) {
    ends.push_back({ending.grant.id, ending.status, ending.reason});
  }
  const auto failures = journal_ends(ends);
  for (std::size_t i = 0; i < endings.size(); ++i) {
    auto& [grant, status, reason, by] = endings[i];
    grant.status = status;
    grant.status_reason = reason;
    std::string audit_reason = reason;
    if (failures[i]) audit_reason += "; journal: " + failures[i]->message + " (retrying)";
    const bool expired = reason == reason::expired;
    audit_grant(expired ? "expire" : "revoke", expired ? "expired" : "revoked", grant, audit_reason,
                by ? &*by : nullptr);
  }
}

void AccessEngine::audit_refused_call(const Caller& caller, std::string event, const Error& error) {
  audit_.record(refusal_event(caller, std::move(event), error));
}

Result<Grant> AccessEngine::request(const Caller& caller, const GrantRequest& request) {
  std::optional<Result<Grant>> outcome;
  submit(caller, request, [&outcome](Result<Grant> granted) { outcome = std::move(granted); });
  commit();
  return std::move(*outcome);
}

void AccessEngine::submit(const Caller& caller, const GrantRequest& request, GrantCallback done) {
  const auto wall_now = clock_.now();
  const auto now = clock_.boot_now();
  const auto refuse = [&](Error error) {
    audit_refusal(caller, &request, error);
    done(tl::unexpected(std::move(error)));
  };
  if (!policy_.roles.grants(caller, Right::request)) {
    return refuse(
        {ErrorCode::forbidden, policy_.roles.refusal(caller, Right::request, "request access")});
  }
  if (request.duration.has_value() == request.end_time.has_value()) {
    return refuse({ErrorCode::invalid_request, "give exactly one of duration and endTimeUtc"});
  }
  if (request.end_time && *request.end_time <= wall_now) {
    return refuse({ErrorCode::end_time_in_past,
                   "endTimeUtc: " + format_utc(*request.end_time) + " is not in the future"});
  }
  const Milliseconds duration = request.duration ? *request.duration : *request.end_time - wall_now;
  if (duration <= Milliseconds{0}) {
    return refuse({ErrorCode::invalid_argument, "duration: must be longer than zero"});
  }
  if (auto valid = validate(request, duration); !valid) return refuse(valid.error());
  if (auto allowed = authorise_ports(caller, request); !allowed) return refuse(allowed.error());

  Grant grant;
  const auto taken = [this](const std::string& id) {
    return active_.contains(id) ||
           std::any_of(pending_.begin(), pending_.end(),
                       [&id](const PendingRequest& pending) { return pending.grant.id == id; });
  };
  do {
    grant.id = new_id_();
  } while (taken(grant.id));  // an id names exactly one grant
  grant.requestor = {caller.uid, caller.name};
  grant.source = request.source;
  grant.ports = request.ports;
  grant.start = wall_now;
  grant.end = wall_now + duration;
  grant.deadline = now + duration;
  grant.justification = request.justification;
  // Journal first: once synced, a crash re-applies the grant at the next start.
  if (auto journaled = journal_.record_grant(grant); !journaled) return refuse(journaled.error());
  pending_.push_back({caller, request, std::move(grant), std::move(done)});
}

void AccessEngine::answer_refused(PendingRequest& pending, Error error) {
  audit_refusal(pending.caller, &pending.request, error);
  pending.done(tl::unexpected(std::move(error)));
}

std::vector<std::optional<Error>> AccessEngine::apply_one_by_one(
    const std::vector<PendingRequest>& batch) {
  std::vector<std::optional<Error>> outcomes(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    RangeChanges changes;
    add_coverage(batch[i].grant, changes);
    if (auto applied = apply(changes, clock_.boot_now()); !applied) {
      RangeChanges undone;
      remove_coverage(batch[i].grant, undone);
      kernel_pending_ = true;
      outcomes[i] = applied.error();
    }
  }
  return outcomes;
}

void AccessEngine::commit() {
  if (pending_.empty()) return;
  auto batch = std::exchange(pending_, {});
  if (auto synced = journal_.sync(); !synced) {
    // None of the batch's records can be counted on: close them, so no restart applies one.
    std::vector<PendingEnd> ends;
    for (const auto& pending : batch) {
      ends.push_back({pending.grant.id, GrantStatus::revoked, "JournalFailed"});
    }
    journal_ends(ends);
    for (auto& pending : batch) answer_refused(pending, synced.error());
    return;
  }
  // Timeouts count from now, not from before the journal's sync: the kernel starts them at
  // commit, so a slow disk must not stretch a grant past its deadline.
  RangeChanges changes;
  for (const auto& pending : batch) add_coverage(pending.grant, changes);
  std::vector<std::optional<Error>> outcomes(batch.size());
  if (auto applied = apply(changes, clock_.boot_now()); !applied) {
    RangeChanges undone;
    for (const auto& pending : batch) remove_coverage(pending.grant, undone);
    kernel_pending_ = true;
    if (batch.size() == 1) {
      outcomes.front() = applied.error();
    } else {
      outcomes = apply_one_by_one(batch);
    }
  }
  if (std::any_of(outcomes.begin(), outcomes.end(), [](const auto& error) { return !error; })) {
    failpoint("after_kernel_ack");
  }
  // Never applied: close the records so no restart applies them (the deadline bounds them).
  std::vector<PendingEnd> never_applied;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (outcomes[i])
      never_applied.push_back({batch[i].grant.id, GrantStatus::revoked, "KernelRefused"});
  }
  journal_ends(never_applied);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto& pending = batch[i];
    if (outcomes[i]) {
      answer_refused(pending, std::move(*outcomes[i]));
      continue;
    }
    activate(pending.grant);
    audit_grant("request", "granted", pending.grant);
    pending.done(std::move(pending.grant));
  }
}

Result<Grant> AccessEngine::revoke(const Caller& caller, std::string_view id) {
  commit();
  const auto now = clock_.boot_now();
  const auto refuse = [&](Error error) -> Result<Grant> {
    auto event = refusal_event(caller, "revoke", error);
    event.grant_id = std::string(id);
    audit_.record(event);
    return tl::unexpected(std::move(error));
  };
  if (!policy_.roles.grants(caller, Right::request)) {
    return refuse(
        {ErrorCode::forbidden, policy_.roles.refusal(caller, Right::request, "revoke access")});
  }
  const auto found = active_.find(id);
  if (found == active_.end() || found->second.deadline <= now) {
    return refuse({ErrorCode::not_found, "no active grant with id '" + std::string(id) + "'"});
  }
  // A requester may end their own grants; ending someone else's is an administrator's call.
  if (found->second.requestor.uid != caller.uid &&
      !policy_.roles.grants(caller, Right::administer)) {
    return refuse(
        {ErrorCode::forbidden, policy_.roles.refusal(caller, Right::administer,
                                                     "revoke grant " + found->second.id + " of " +
                                                         found->second.requestor.name)});
  }
  // Journal first: once recorded, no restart can bring the grant back.
  Grant grant = deactivate(found);
  RangeChanges changes;
  remove_coverage(grant, changes);
  end_grants({{grant, GrantStatus::revoked, "UserRequested", caller}});
  grant.status = GrantStatus::revoked;
  grant.status_reason = "UserRequested";
  if (auto applied = apply(changes, clock_.boot_now()); !applied) {
    return tl::unexpected(Error{applied.error().code,
                                "revoke of " + grant.id +
                                    " is recorded, but the kernel refused the change (retrying): " +
                                    applied.error().message,
                                applied.error().sys_errno});
  }
  failpoint("after_kernel_ack");
  return grant;
}

PolicyChange AccessEngine::apply_policy_to_grants() {
  PolicyChange change;
  std::vector<Ending> revoked;
  std::vector<Grant> changed;
  for (auto it = active_.begin(); it != active_.end();) {
    Grant& grant = it->second;
    std::vector<PortSpec> kept;
    for (const auto& port : grant.ports) {
      if (auto allowed = still_allowed(policy_, port, grant.source)) kept.push_back(*allowed);
    }
    const auto next = std::next(it);
    if (kept.empty()) {
      ++change.revoked;
      revoked.push_back({deactivate(it), GrantStatus::revoked, policy_changed, std::nullopt});
      it = next;
      continue;
    }
    const bool narrowed = kept != grant.ports;
    const auto latest_end = grant.start + longest_allowed(policy_, grant);
    const bool clamped = grant.end > latest_end;
    if (!narrowed && !clamped) {
      it = next;
      continue;
    }
    Grant updated = deactivate(it);
    it = next;
    if (narrowed) updated.ports = std::move(kept);
    if (clamped) {
      const auto cut = updated.end - latest_end;
      updated.end -= cut;
      updated.deadline -= cut;
    }
    // Each grant counts once, by what became of it: one the clamp ends is revoked.
    if (updated.deadline <= clock_.boot_now()) {
      ++change.revoked;
      revoked.push_back({std::move(updated), GrantStatus::revoked, policy_changed, std::nullopt});
      continue;
    }
    if (narrowed) ++change.narrowed;
    if (clamped) ++change.clamped;
    updated.status_reason = policy_changed;
    changed.push_back(updated);
    activate(std::move(updated));
  }
  end_grants(std::move(revoked));
  // Narrower than the journaled versions: a replay that misses one restores the wider grant
  // and the same policy narrows it again, so enforcement is not loosened.
  std::optional<Error> failed;
  for (const auto& grant : changed) {
    if (auto journaled = journal_.record_grant(grant); !journaled && !failed) {
      failed = journaled.error();
    }
  }
  if (!changed.empty() && !failed) {
    if (auto synced = journal_.sync(); !synced) failed = synced.error();
  }
  for (const auto& grant : changed) {
    if (failed) audit_grant("policy", "failed", grant, "journal: " + failed->message);
    audit_grant("policy", "narrowed", grant, policy_changed);
  }
  return change;
}

Result<PolicyChange> AccessEngine::replace_policy(Policy policy) {
  commit();
  policy_ = std::move(policy);
  const auto change = apply_policy_to_grants();
  if (auto installed = install(); !installed) return tl::unexpected(installed.error());
  return change;
}

void AccessEngine::expire_due() {
  commit();
  const auto now = clock_.boot_now();
  std::vector<Ending> expired;
  while (!by_deadline_.empty() && by_deadline_.begin()->first <= now &&
         expired.size() < expiry_batch) {
    const auto found = active_.find(by_deadline_.begin()->second);
    expired.push_back(
        {deactivate(found), GrantStatus::revoked, std::string(reason::expired), std::nullopt});
  }
  // The kernel dropped the ended elements itself; forget them without a transaction, in passes
  // like the records.
  index_.forget_ended(now, 8 * expiry_batch);
  end_grants(std::move(expired));
}

std::vector<Grant> AccessEngine::active_grants() const {
  std::vector<Grant> grants;
  const auto now = clock_.boot_now();
  for (const auto& [id, grant] : active_) {
    if (grant.deadline > now) grants.push_back(grant);
  }
  std::sort(grants.begin(), grants.end(),
            [](const Grant& a, const Grant& b) { return a.start < b.start; });
  return grants;
}

std::optional<Deadline> AccessEngine::next_expiry() const {
  // Ended index entries are due work too, though the kernel needs nothing from them.
  std::optional<Deadline> next = index_.earliest_end();
  if (!by_deadline_.empty() && (!next || by_deadline_.begin()->first < *next)) {
    next = by_deadline_.begin()->first;
  }
  return next;
}

}  // namespace jitd::core
