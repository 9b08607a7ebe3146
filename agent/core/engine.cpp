#include "jitd/core/engine.hpp"

#include <algorithm>
#include <tuple>

#include "jitd/core/failpoint.hpp"

namespace jitd::core {

namespace {

constexpr const char* policy_changed = "PolicyChanged";
// Ends recorded per expire_due() call: an expiry storm (100,000 grants ending in one second)
// is recorded in passes that share one sync each, with requests served in between. The kernel
// enforced every end already; only the records wait.
constexpr std::size_t expiry_batch = 128;
// Scheduled starts and lapsed approvals per pass: each is journaled and synced on its own.
constexpr std::size_t start_batch = 16;

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
  spec.audited_ports = policy_.audited_ports();
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
    if (grant.status == GrantStatus::pending) {
      if (entry.boot_id != boot_id) {
        // Its wait on the old boot clock means nothing now: count again from UTC. A request
        // waiting for approval keeps the time it had left at most.
        const auto target =
            grant.needs_approval
                ? grant.requested + approval_timeout_for(grant.ports).value_or(Milliseconds{0})
                : grant.start;
        // A wall clock not yet synced after boot may be far behind: never wait longer than a
        // request may (its approval timeout, or how far ahead a start may be scheduled).
        const auto longest = grant.needs_approval
                                 ? approval_timeout_for(grant.ports).value_or(Milliseconds{0})
                                 : max_schedule_ahead;
        grant.wait_until = now + std::clamp(target - clock_.now(), Milliseconds{0}, longest);
      }
      waiting_.insert_or_assign(grant.id, std::move(grant));
      continue;
    }
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
  auto installed = install_index(clock_.boot_now());
  // Grants that ended while jitd was down, or while the kernel refused changes: their sessions
  // go once the table no longer admits them.
  if (installed) {
    installed_ = true;
    cut_sessions();
  }
  return installed;
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
      sorted(kernel->audited_ports) != sorted(expected.audited_ports) ||
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
  if (!installed) {
    event.reason += "; restore failed: " + installed.error().message;
    event.code = std::string(to_string(installed.error().code));
  }
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
      for (const auto& source : request.source.prefixes()) {
        if (rule->allows_source(source)) continue;
        const auto family = source.family();
        const auto named = request.source.is_any() ? std::string("* (every IPv4 and IPv6 address)")
                                                   : source.to_string();
        return fail(
            ErrorCode::source_not_allowed,
            "allowedSourceAddressPrefix: " + named +
                (rule->covers_source(source)
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
  audit.code = std::string(to_string(error.code));
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

// Journals (one sync), keeps in the history and audits the ends of grants that are no longer
// (or never were) in active_ or waiting_.
std::vector<Grant> AccessEngine::end_grants(std::vector<Ending> endings) {
  std::vector<PendingEnd> ends;
  ends.reserve(endings.size());
  for (const auto& ending : endings) {
    ends.push_back({ending.grant.id, ending.status, ending.reason});
  }
  const auto failures = journal_ends(ends);
  const auto wall_now = clock_.now();
  std::vector<Grant> ended;
  ended.reserve(endings.size());
  for (std::size_t i = 0; i < endings.size(); ++i) {
    auto& [grant, status, reason, by, note] = endings[i];
    const bool was_live = grant.status == GrantStatus::initiated;
    grant.status = status;
    grant.status_reason = reason;
    grant.ended = wall_now;
    if (by) grant.ended_by = Requestor{by->uid, by->name};
    std::string audit_reason = reason;
    if (!note.empty()) audit_reason += "; note: " + note;
    if (failures[i]) audit_reason += "; journal: " + failures[i]->message + " (retrying)";
    if (history_ != nullptr) {
      if (auto kept = history_->record(grant); !kept) {
        audit_reason += "; history: " + kept.error().message;
      }
    }
    const bool expired = reason == reason::expired;
    const auto* event = expired                              ? "expire"
                        : reason == reason::denied           ? "deny"
                        : reason == reason::approval_expired ? "expire"
                                                             : "revoke";
    audit_grant(event, expired ? "expired" : "revoked", grant, audit_reason, by ? &*by : nullptr);
    if (was_live) uncut_.push_back(grant);
    ended.push_back(std::move(grant));
  }
  return ended;
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

Milliseconds AccessEngine::longest_for(const std::vector<PortSpec>& ports) const {
  Milliseconds longest = max_policy_duration;
  for (const auto& port : ports) {
    for (const auto protocol : expand(port.protocol)) {
      if (const auto* rule = policy_.find_rule(port.number, protocol)) {
        longest = std::min(longest, rule->max_duration);
      }
    }
  }
  return longest;
}

std::optional<Milliseconds> AccessEngine::approval_timeout_for(
    const std::vector<PortSpec>& ports) const {
  std::optional<Milliseconds> timeout;
  for (const auto& port : ports) {
    for (const auto protocol : expand(port.protocol)) {
      const auto* rule = policy_.find_rule(port.number, protocol);
      if (rule != nullptr && rule->approval_required) {
        timeout = std::min(timeout.value_or(rule->approval_timeout), rule->approval_timeout);
      }
    }
  }
  return timeout;
}

Result<Grant> AccessEngine::prepare(const Caller& caller, const GrantRequest& request) const {
  const auto wall_now = clock_.now();
  const auto now = clock_.boot_now();
  if (request.duration && request.end_time) {
    return fail(ErrorCode::invalid_request, "give at most one of duration and endTimeUtc");
  }
  TimePoint start = wall_now;
  if (request.start_time && *request.start_time > wall_now) {
    if (*request.start_time - wall_now > max_schedule_ahead) {
      return fail(ErrorCode::invalid_request, "startTimeUtc: " + format_utc(*request.start_time) +
                                                  " is more than " +
                                                  format_duration(max_schedule_ahead) + " ahead");
    }
    start = *request.start_time;
  }
  if (request.end_time && *request.end_time <= start) {
    return fail(ErrorCode::end_time_in_past,
                "endTimeUtc: " + format_utc(*request.end_time) +
                    (start == wall_now ? " is not in the future"
                                       : " is not after startTimeUtc " + format_utc(start)));
  }
  // Azure's portal offers the rule's maximum (its default rule's 3 hours) when nothing is said.
  const Milliseconds duration = request.duration   ? *request.duration
                                : request.end_time ? *request.end_time - start
                                                   : longest_for(request.ports);
  if (duration <= Milliseconds{0}) {
    return fail(ErrorCode::invalid_argument, "duration: must be longer than zero");
  }
  if (auto valid = validate(request, duration); !valid) return tl::unexpected(valid.error());
  if (auto allowed = authorise_ports(caller, request); !allowed) {
    return tl::unexpected(allowed.error());
  }
  Grant grant;
  grant.requestor = {caller.uid, caller.name};
  grant.source = request.source;
  grant.ports = request.ports;
  grant.requested = wall_now;
  grant.start = start;
  grant.end = start + duration;
  grant.justification = request.justification;
  const auto approval_timeout = approval_timeout_for(request.ports);
  const auto until_start = start - wall_now;
  grant.deadline = now + until_start + duration;
  if (approval_timeout) {
    grant.status = GrantStatus::pending;
    grant.status_reason = reason::awaiting_approval;
    grant.needs_approval = true;
    grant.wait_until = now + *approval_timeout;
  } else if (until_start > Milliseconds{0}) {
    grant.status = GrantStatus::pending;
    grant.status_reason = reason::scheduled;
    grant.wait_until = now + until_start;
  } else {
    grant.status_reason = reason::user_requested;
  }
  return grant;
}

std::string AccessEngine::new_grant_id() const {
  const auto taken = [this](const std::string& id) {
    return active_.contains(id) || waiting_.contains(id) ||
           std::any_of(pending_.begin(), pending_.end(),
                       [&id](const PendingRequest& pending) { return pending.grant.id == id; });
  };
  std::string id;
  do {
    id = new_id_();
  } while (taken(id));  // an id names exactly one grant
  return id;
}

void AccessEngine::submit(const Caller& caller, const GrantRequest& request, GrantCallback done) {
  submit(caller, std::vector<GrantRequest>{request},
         [done = std::move(done)](Result<std::vector<Grant>> grants) {
           if (!grants) return done(tl::unexpected(std::move(grants.error())));
           done(std::move(grants->front()));
         });
}

void AccessEngine::submit(const Caller& caller, const std::vector<GrantRequest>& requests,
                          GrantsCallback done) {
  // Each grant answers into one collector; the caller hears once all have.
  struct Collector {
    std::size_t left = 0;
    std::vector<Grant> grants;
    std::optional<Error> error;
    GrantsCallback done;
  };
  auto collector = std::make_shared<Collector>();
  collector->done = std::move(done);
  const auto refuse = [&](const GrantRequest* request, Error error) {
    audit_refusal(caller, request, error);
    collector->done(tl::unexpected(std::move(error)));
  };
  if (!policy_.roles.grants(caller, Right::request)) {
    return refuse(
        requests.empty() ? nullptr : &requests.front(),
        {ErrorCode::forbidden, policy_.roles.refusal(caller, Right::request, "request access")});
  }
  if (requests.empty()) {
    return refuse(nullptr, {ErrorCode::invalid_request, "ports: at least one port is required"});
  }
  std::vector<Grant> grants;
  for (const auto& request : requests) {
    auto grant = prepare(caller, request);
    if (!grant) return refuse(&request, grant.error());
    grants.push_back(std::move(*grant));
  }
  for (std::size_t i = 0; i < grants.size(); ++i) {
    grants[i].id = new_grant_id();
    // Journal first: once synced, a crash re-applies the grant at the next start.
    if (auto recorded = journal_.record_grant(grants[i]); !recorded) {
      // The ones already written would come back at a restart: close them.
      std::vector<PendingEnd> ends;
      for (std::size_t j = 0; j < i; ++j) {
        ends.push_back({grants[j].id, GrantStatus::revoked, std::string(reason::journal_failed)});
      }
      pending_.resize(pending_.size() - i);
      journal_ends(ends);
      return refuse(&requests[i], recorded.error());
    }
    ++collector->left;
    auto answer = [collector](Result<Grant> grant) {
      if (grant) {
        collector->grants.push_back(std::move(*grant));
      } else if (!collector->error) {
        collector->error = std::move(grant.error());
      }
      if (--collector->left > 0) return;
      if (collector->error) {
        auto error = std::move(*collector->error);
        if (!collector->grants.empty()) {
          error.message += " (granted all the same:";
          for (const auto& live : collector->grants) error.message += " " + live.id;
          error.message += ")";
        }
        return collector->done(tl::unexpected(std::move(error)));
      }
      collector->done(std::move(collector->grants));
    };
    pending_.push_back({caller, requests[i], grants[i], std::move(answer)});
  }
}

void AccessEngine::answer_refused(PendingRequest& pending, Error error) {
  audit_refusal(pending.caller, &pending.request, error);
  pending.done(tl::unexpected(std::move(error)));
}

std::vector<std::optional<Error>> AccessEngine::apply_one_by_one(
    const std::vector<PendingRequest>& batch) {
  std::vector<std::optional<Error>> outcomes(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].grant.status != GrantStatus::initiated) continue;
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
      ends.push_back({pending.grant.id, GrantStatus::revoked, std::string(reason::journal_failed)});
    }
    journal_ends(ends);
    for (auto& pending : batch) answer_refused(pending, synced.error());
    return;
  }
  // Timeouts count from now, not from before the journal's sync: the kernel starts them at
  // commit, so a slow disk must not stretch a grant past its deadline. Pending grants wait
  // outside the kernel.
  RangeChanges changes;
  for (const auto& pending : batch) {
    if (pending.grant.status == GrantStatus::initiated) add_coverage(pending.grant, changes);
  }
  std::vector<std::optional<Error>> outcomes(batch.size());
  if (auto applied = apply(changes, clock_.boot_now()); !applied) {
    RangeChanges undone;
    for (const auto& pending : batch) {
      if (pending.grant.status == GrantStatus::initiated) remove_coverage(pending.grant, undone);
    }
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
    if (outcomes[i]) {
      never_applied.push_back(
          {batch[i].grant.id, GrantStatus::revoked, std::string(reason::kernel_refused)});
    }
  }
  journal_ends(never_applied);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto& pending = batch[i];
    if (outcomes[i]) {
      answer_refused(pending, std::move(*outcomes[i]));
      continue;
    }
    if (pending.grant.status == GrantStatus::pending) {
      waiting_.insert_or_assign(pending.grant.id, pending.grant);
      audit_grant("request", "pending", pending.grant, pending.grant.status_reason);
    } else {
      activate(pending.grant);
      audit_grant("request", "granted", pending.grant);
    }
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
  const auto waiting = waiting_.find(id);
  const bool live = found != active_.end() && found->second.deadline > now;
  if (!live && waiting == waiting_.end()) {
    return refuse({ErrorCode::not_found, "no active grant with id '" + std::string(id) + "'"});
  }
  const Grant& target = live ? found->second : waiting->second;
  // A requester may end their own grants; ending someone else's is an administrator's call.
  if (target.requestor.uid != caller.uid && !policy_.roles.grants(caller, Right::administer)) {
    return refuse(
        {ErrorCode::forbidden,
         policy_.roles.refusal(caller, Right::administer,
                               "revoke grant " + target.id + " of " + target.requestor.name)});
  }
  if (!live) {
    // Withdrawn before it started: nothing in the kernel to change.
    Grant grant = waiting->second;
    waiting_.erase(waiting);
    return end_grants({{std::move(grant), GrantStatus::revoked, std::string(reason::user_requested),
                        caller}})
        .front();
  }
  // Journal first: once recorded, no restart can bring the grant back.
  RangeChanges changes;
  remove_coverage(found->second, changes);
  Grant grant = end_grants({{deactivate(found), GrantStatus::revoked,
                             std::string(reason::user_requested), caller}})
                    .front();
  if (auto applied = apply(changes, clock_.boot_now()); !applied) {
    return tl::unexpected(Error{applied.error().code,
                                "revoke of " + grant.id +
                                    " is recorded, but the kernel refused the change (retrying): " +
                                    applied.error().message,
                                applied.error().sys_errno});
  }
  failpoint("after_kernel_ack");
  cut_sessions();
  return grant;
}

Result<Grant> AccessEngine::extend(const Caller& caller, std::string_view id,
                                   const Extension& extension) {
  commit();
  const auto now = clock_.boot_now();
  const auto wall_now = clock_.now();
  const auto refuse = [&](Error error) -> Result<Grant> {
    auto event = refusal_event(caller, "extend", error);
    event.grant_id = std::string(id);
    audit_.record(event);
    return tl::unexpected(std::move(error));
  };
  if (!policy_.roles.grants(caller, Right::request)) {
    return refuse(
        {ErrorCode::forbidden, policy_.roles.refusal(caller, Right::request, "extend access")});
  }
  if (extension.by.has_value() == extension.until.has_value()) {
    return refuse({ErrorCode::invalid_request, "give exactly one of duration and endTimeUtc"});
  }
  const auto found = active_.find(id);
  if (found == active_.end() || found->second.deadline <= now) {
    return refuse({ErrorCode::not_found, "no active grant with id '" + std::string(id) + "'"});
  }
  const Grant& current = found->second;
  if (current.requestor.uid != caller.uid && !policy_.roles.grants(caller, Right::administer)) {
    return refuse(
        {ErrorCode::forbidden,
         policy_.roles.refusal(caller, Right::administer,
                               "extend grant " + current.id + " of " + current.requestor.name)});
  }
  // An extension is more access: on a port whose rule wants an approver, the requester may not
  // give it to themselves (one approval must not become open-ended access); per-port
  // requesters narrow who may extend as they narrow who may request.
  if (!policy_.roles.grants(caller, Right::administer)) {
    if (approval_timeout_for(current.ports)) {
      return refuse({ErrorCode::forbidden,
                     "grant " + current.id +
                         ": its ports require approval, so only an administrator may extend "
                         "it; ask for a new grant, which an approver decides"});
    }
    GrantRequest as_request;
    as_request.ports = current.ports;
    if (auto authorised = authorise_ports(caller, as_request); !authorised) {
      return refuse(authorised.error());
    }
  }
  const auto field = extension.by ? "duration" : "endTimeUtc";
  if (extension.by && *extension.by <= Milliseconds{0}) {
    return refuse({ErrorCode::invalid_argument, "duration: must be longer than zero"});
  }
  const auto new_end = extension.by ? current.end + *extension.by : *extension.until;
  if (new_end <= current.end) {
    return refuse({ErrorCode::invalid_request,
                   std::string(field) + ": the new end " + format_utc(new_end) +
                       " is not after the grant's end " + format_utc(current.end) +
                       "; to end access earlier, revoke the grant"});
  }
  // Each rule bounds the end: its maximum from the grant's start, or from now (extendFrom).
  for (const auto& port : current.ports) {
    for (const auto protocol : expand(port.protocol)) {
      const auto* rule = policy_.find_rule(port.number, protocol);
      if (rule == nullptr) continue;
      const bool from_now = rule->extend_from == PortRule::ExtendFrom::now;
      const auto latest = (from_now ? wall_now : current.start) + rule->max_duration;
      if (new_end > latest) {
        return refuse(
            {ErrorCode::duration_too_long,
             std::string(field) + ": the new end " + format_utc(new_end) + " is later than " +
                 format_utc(latest) + ", the maximum " + format_duration(rule->max_duration) +
                 " of port " + to_string(rule->port) +
                 (from_now ? " counted from now (extendFrom: now)"
                           : " counted from the grant's start " + format_utc(current.start) +
                                 " (extendFrom: start; a new request starts a new maximum)")});
      }
    }
  }
  Grant grant = current;
  const auto moved = new_end - grant.end;
  grant.end = new_end;
  grant.deadline += moved;
  // Journal first: a crash after the kernel change must not shorten the grant again, and one
  // before it restores the longer end, which the kernel then gets at install.
  if (auto journaled = journal_.record_grant(grant); !journaled) return refuse(journaled.error());
  if (auto synced = journal_.sync(); !synced) {
    // The longer end may be on disk all the same: the current one goes after it, so a restart
    // does not grant what was refused (durable with the next sync).
    (void)journal_.record_grant(current);
    return refuse(synced.error());
  }
  const auto previous_end = format_utc(current.end);
  RangeChanges changes;
  remove_coverage(deactivate(found), changes);
  add_coverage(grant, changes);
  activate(grant);
  audit_grant("extend", "extended", grant, "end moved from " + previous_end, &caller);
  if (auto applied = apply(changes, clock_.boot_now()); !applied) {
    return tl::unexpected(Error{applied.error().code,
                                "extension of " + grant.id +
                                    " is recorded, but the kernel refused the change (retrying): " +
                                    applied.error().message,
                                applied.error().sys_errno});
  }
  return grant;
}

Result<Grant> AccessEngine::approve(const Caller& caller, std::string_view id,
                                    const std::string& note) {
  return decide(caller, id, true, note);
}

Result<Grant> AccessEngine::deny(const Caller& caller, std::string_view id,
                                 const std::string& note) {
  return decide(caller, id, false, note);
}

Result<Grant> AccessEngine::decide(const Caller& caller, std::string_view id, bool approve,
                                   const std::string& note) {
  commit();
  const auto* event_name = approve ? "approve" : "deny";
  const auto refuse = [&](Error error) -> Result<Grant> {
    auto event = refusal_event(caller, event_name, error);
    event.grant_id = std::string(id);
    audit_.record(event);
    return tl::unexpected(std::move(error));
  };
  const auto found = waiting_.find(id);
  if (found == waiting_.end() || !found->second.needs_approval) {
    return refuse({ErrorCode::not_found,
                   "no request waiting for approval with id '" + std::string(id) + "'"});
  }
  Grant grant = found->second;
  // Self-approval first: it is refused even to someone who approves everyone else's requests.
  if (grant.requestor.uid == caller.uid) {
    return refuse({ErrorCode::forbidden, "user " + caller.name + " (uid " +
                                             std::to_string(caller.uid) +
                                             ") may not approve or deny their own request"});
  }
  for (const auto& port : grant.ports) {
    for (const auto protocol : expand(port.protocol)) {
      const auto* rule = policy_.find_rule(port.number, protocol);
      if (rule == nullptr || !rule->approval_required || rule->approvers.includes(caller)) continue;
      return refuse({ErrorCode::forbidden,
                     "user " + caller.name + " (uid " + std::to_string(caller.uid) + ") may not " +
                         event_name + " requests for " + to_string(rule->port) +
                         ": its approvers are " + rule->approvers.describe()});
    }
  }
  waiting_.erase(found);
  // Kept with the grant, in the history too: who let it start, or who refused it.
  grant.decided_by = Requestor{caller.uid, caller.name};
  if (!approve) {
    return end_grants({{std::move(grant), GrantStatus::revoked, std::string(reason::denied), caller,
                        note}})
        .front();
  }
  grant.needs_approval = false;
  audit_grant("approve", "approved", grant, note.empty() ? std::string() : "note: " + note,
              &caller);
  start_waiting(std::move(grant), caller);
  // Live, or waiting for its start time; anything else ended it (the history has it, but an
  // ended grant is not what an approval answers).
  if (const auto live = active_.find(id); live != active_.end()) return live->second;
  if (const auto waiting = waiting_.find(id); waiting != waiting_.end()) return waiting->second;
  return fail(ErrorCode::io, "grant " + std::string(id) +
                                 " was approved but could not start: the journal refused its "
                                 "record; see the audit log");
}

void AccessEngine::start_waiting(Grant grant, const std::optional<Caller>& approver) {
  const auto wall_now = clock_.now();
  const auto now = clock_.boot_now();
  const auto length = grant.end - grant.start;
  if (grant.needs_approval) {
    // Nobody decided in time.
    end_grants({{std::move(grant), GrantStatus::revoked, std::string(reason::approval_expired),
                 std::nullopt}});
    return;
  }
  if (grant.start > wall_now) {
    // Approved before its start time: it waits for that.
    grant.status_reason = reason::scheduled;
    grant.wait_until = now + (grant.start - wall_now);
    if (auto journaled = journal_.record_grant(grant); journaled) (void)journal_.sync();
    waiting_.insert_or_assign(grant.id, std::move(grant));
    return;
  }
  if (approver) {
    // The grant's time starts at approval.
    grant.start = wall_now;
    grant.end = wall_now + length;
    grant.deadline = now + length;
  } else {
    // A scheduled start runs on the boot clock from when it was due, so a late timer does not
    // lengthen the grant.
    grant.deadline = *grant.wait_until + length;
  }
  grant.status = GrantStatus::initiated;
  grant.status_reason = reason::user_requested;
  grant.wait_until.reset();
  if (grant.deadline <= now) {
    end_grants(
        {{std::move(grant), GrantStatus::revoked, std::string(reason::expired), std::nullopt}});
    return;
  }
  auto journaled = journal_.record_grant(grant);
  if (journaled) journaled = journal_.sync();
  if (!journaled) {
    // Not on disk: starting it could not survive a restart. End it with the reason.
    audit_grant("start", "failed", grant, "journal: " + journaled.error().message);
    end_grants({{std::move(grant), GrantStatus::revoked, std::string(reason::journal_failed),
                 std::nullopt}});
    return;
  }
  RangeChanges changes;
  add_coverage(grant, changes);
  activate(grant);
  audit_grant("start", "granted", grant);
  // A refusal leaves the kernel to the next install (retry_pending), with the grant in it.
  (void)apply(changes, clock_.boot_now());
}

void AccessEngine::cut_sessions() {
  // Before the first install the kernel's table is not the one index_ describes, and the keep
  // lists would miss live grants: wait for it.
  if (uncut_.empty() || kernel_pending_ || !installed_) return;
  auto ended = std::exchange(uncut_, {});
  if (cutter_ == nullptr) return;
  const auto now = clock_.boot_now();
  const auto spec = enforcement_spec(now);
  std::vector<SessionCut> cuts;
  for (const auto& grant : ended) {
    for (const auto& port : grant.ports) {
      for (const auto protocol : expand(port.protocol)) {
        const auto* rule = policy_.find_rule(port.number, protocol);
        if (rule == nullptr || !rule->terminate_sessions_on_end) continue;
        SessionCut cut{{protocol, port.number}, {}, {}};
        for (const auto& prefix : grant.source.prefixes()) cut.sources.push_back(prefix.range());
        for (const auto& element : spec.grants) {
          if (element.key.port == cut.port) cut.keep.push_back(element.key.source);
        }
        for (const auto& element : spec.permanent) {
          if (element.port == cut.port) cut.keep.push_back(element.source);
        }
        cuts.push_back(std::move(cut));
      }
    }
  }
  if (cuts.empty()) return;
  AuditEvent event;
  event.time = clock_.now();
  event.event = "sessions";
  event.user = "jitd";
  auto report = cutter_->cut(cuts);
  event.outcome = report ? "ended" : "failed";
  event.reason = report ? std::to_string(report->flows) + " flows, " +
                              std::to_string(report->sockets) + " sockets ended"
                        : report.error().message;
  for (const auto& grant : ended) {
    event.grant_id += (event.grant_id.empty() ? "" : " ") + grant.id;
  }
  audit_.record(event);
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
    const auto latest_end = grant.start + longest_for(grant.ports);
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
  // A pending request is not in force yet: unless the new policy allows it exactly as asked
  // (every port for its source, its length, and approval as it was given or is still awaited),
  // it ends, and its requester asks again under the new policy. Narrowing it instead could
  // start, unapproved or longer, what the new policy would refuse.
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    const auto& grant = it->second;
    const bool ports_allowed = std::all_of(
        grant.ports.begin(), grant.ports.end(),
        [&](const PortSpec& port) { return still_allowed(policy_, port, grant.source) == port; });
    const bool requires_approval = approval_timeout_for(grant.ports).has_value();
    const bool approval_holds = grant.needs_approval
                                    ? requires_approval
                                    : !requires_approval || grant.decided_by.has_value();
    if (!ports_allowed || !approval_holds || grant.end - grant.start > longest_for(grant.ports)) {
      ++change.revoked;
      revoked.push_back({it->second, GrantStatus::revoked, policy_changed, std::nullopt});
      it = waiting_.erase(it);
    } else {
      ++it;
    }
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
  // At most a batch per pass, so many starts due at once (a shift's scheduled grants) do not
  // hold the loop for seconds; next_expiry() is then still due.
  std::vector<Grant> due;
  for (auto it = waiting_.begin(); it != waiting_.end() && due.size() < start_batch;) {
    if (*it->second.wait_until <= now) {
      due.push_back(std::move(it->second));
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& grant : due) start_waiting(std::move(grant), std::nullopt);
  // After the starts: a grant that starts as another ends keeps the sessions it admits.
  cut_sessions();
}

std::vector<Grant> AccessEngine::active_grants() const {
  std::vector<Grant> grants;
  const auto now = clock_.boot_now();
  for (const auto& [id, grant] : active_) {
    if (grant.deadline > now) grants.push_back(grant);
  }
  // Ties broken by id: a listing pages through this order with (start, id) cursors.
  std::sort(grants.begin(), grants.end(), [](const Grant& a, const Grant& b) {
    return std::tie(a.start, a.id) < std::tie(b.start, b.id);
  });
  return grants;
}

std::vector<Grant> AccessEngine::pending_grants() const {
  std::vector<Grant> grants;
  for (const auto& [id, grant] : waiting_) grants.push_back(grant);
  std::sort(grants.begin(), grants.end(), [](const Grant& a, const Grant& b) {
    return std::tie(a.requested, a.id) < std::tie(b.requested, b.id);
  });
  return grants;
}

Result<std::optional<Grant>> AccessEngine::find_grant(std::string_view id) const {
  if (const auto found = active_.find(id);
      found != active_.end() && found->second.deadline > clock_.boot_now()) {
    return found->second;
  }
  if (const auto found = waiting_.find(id); found != waiting_.end()) return found->second;
  if (history_ == nullptr) return std::nullopt;
  return history_->find(std::string(id));
}

std::optional<Deadline> AccessEngine::next_expiry() const {
  // Ended index entries are due work too, though the kernel needs nothing from them.
  std::optional<Deadline> next = index_.earliest_end();
  if (!by_deadline_.empty() && (!next || by_deadline_.begin()->first < *next)) {
    next = by_deadline_.begin()->first;
  }
  for (const auto& [id, grant] : waiting_) {
    if (!next || *grant.wait_until < *next) next = grant.wait_until;
  }
  return next;
}

}  // namespace jitd::core
