#pragma once
// Test doubles for the engine's seams: a backend that records every call and models
// what an nftables interval set with timeouts would hold, a journal that records every
// call and models what a replay would give back, and an audit sink that keeps every event.
// All three can write to one shared CallLog, so a test can check the order of the calls
// across them ("journal before kernel").
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "jitd/core/audit.hpp"
#include "jitd/core/backend.hpp"
#include "jitd/core/clock.hpp"
#include "jitd/core/engine.hpp"
#include "jitd/core/journal.hpp"

namespace jitd::test {

// One line per call, across fakes: "journal.grant g1", "journal.end g1 Revoked KernelRefused",
// "backend.apply", "backend.install", "audit.request granted".
struct CallLog {
  std::vector<std::string> calls;
  void add(std::string call) { calls.push_back(std::move(call)); }
};

class FakeBackend final : public core::Backend {
 public:
  // The clock lets the model drop elements whose timeout ran out, as the kernel does. Kernel
  // timeouts run on the boot clock: setting the wall clock does not touch them.
  explicit FakeBackend(const core::Clock& clock) : clock_(clock) {}

  std::vector<core::EnforcementSpec> installs;  // every install call, failed ones included
  std::vector<core::ElementChanges> applies;    // every apply call, failed ones included
  std::vector<std::string> violations;          // transactions a real kernel would refuse
  int uninstalls = 0;
  CallLog* log = nullptr;

  // The next apply() fails with a kernel error and changes nothing.
  void fail_next_apply(int sys_errno = ENOBUFS) { fail_next_apply_ = sys_errno; }
  // The next install() fails with a kernel error and changes nothing.
  void fail_next_install(int sys_errno = ENOBUFS) { fail_next_install_ = sys_errno; }
  // Every transaction that adds an element for this source fails, as a kernel refusing one
  // element fails its whole batch.
  std::optional<core::AddressRange> refused_source;

  core::Result<void> install(const core::EnforcementSpec& spec) override {
    installs.push_back(spec);
    if (log != nullptr) log->add("backend.install");
    if (fail_next_install_) {
      const int sys_errno = *fail_next_install_;
      fail_next_install_.reset();
      return core::fail(core::ErrorCode::kernel, "netlink: injected install failure", sys_errno);
    }
    if (refuses(spec.grants)) return refusal();
    Elements next;  // one transaction: the old table stays unless every element goes in
    const auto now = clock_.boot_now();
    for (const auto& element : spec.grants) {
      if (const auto error = check_add(next, element.key, element.timeout)) {
        violations.push_back("install: " + *error);
        return core::fail(core::ErrorCode::kernel, *error, EEXIST);
      }
      next[element.key] = now + element.timeout;
    }
    elements_ = std::move(next);
    installed_ = true;
    return {};
  }

  core::Result<void> apply(const core::ElementChanges& changes) override {
    applies.push_back(changes);
    if (log != nullptr) log->add("backend.apply");
    if (fail_next_apply_) {
      const int sys_errno = *fail_next_apply_;
      fail_next_apply_.reset();
      return core::fail(core::ErrorCode::kernel, "netlink: injected failure", sys_errno);
    }
    if (refuses(changes.add)) return refusal();
    drop_expired();
    auto next = elements_;  // one transaction: committed only when every step succeeds
    for (const auto& key : changes.remove) {
      if (next.erase(key) == 0) {
        violations.push_back("remove of an element the kernel does not hold: " + describe(key));
        return core::fail(core::ErrorCode::kernel, violations.back(), ENOENT);
      }
    }
    for (const auto& element : changes.add) {
      if (const auto error = check_add(next, element.key, element.timeout)) {
        violations.push_back(*error);
        return core::fail(core::ErrorCode::kernel, *error, EEXIST);
      }
      next[element.key] = clock_.boot_now() + element.timeout;
    }
    elements_ = std::move(next);
    return {};
  }

  core::Result<core::KernelSnapshot> snapshot() override {
    drop_expired();
    core::KernelSnapshot snap;
    snap.installed = installed_;
    if (!installs.empty()) {
      snap.protected_ports = installs.back().protected_ports;
      snap.audited_ports = installs.back().audited_ports;
      snap.permanent = installs.back().permanent;
    }
    for (const auto& [key, end] : elements_) snap.grants.push_back({key, end - clock_.boot_now()});
    return snap;
  }

  core::Result<void> uninstall() override {
    ++uninstalls;
    installed_ = false;
    elements_.clear();
    return {};
  }

  // Live grant elements with their absolute end on the boot clock.
  std::map<core::ElementKey, core::Deadline> live_elements() {
    drop_expired();
    return elements_;
  }

  // When the kernel stops letting `address` through on `port`; nullopt: it does not.
  std::optional<core::Deadline> end_for(core::Family family, core::AddressValue address,
                                        core::PortKey port) {
    drop_expired();
    std::optional<core::Deadline> found;
    for (const auto& [key, end] : elements_) {
      if (key.port == port && key.source.family == family && key.source.first <= address &&
          address <= key.source.last) {
        if (found) violations.push_back("two elements hold one address: " + describe(key));
        found = end;
      }
    }
    return found;
  }

 private:
  static std::string describe(const core::ElementKey& key) {
    return core::address_to_string(key.source.family, key.source.first) + "-" +
           core::address_to_string(key.source.family, key.source.last) + " " +
           std::string(core::to_string(key.port.protocol)) + "/" + std::to_string(key.port.port);
  }

  using Elements = std::map<core::ElementKey, core::Deadline>;

  static std::optional<std::string> check_add(const Elements& held_elements,
                                              const core::ElementKey& key,
                                              core::Milliseconds timeout) {
    if (timeout <= core::Milliseconds{0}) return "timeout not positive: " + describe(key);
    if (key.source.first > key.source.last) return "inverted range: " + describe(key);
    for (const auto& [held, end] : held_elements) {
      if (held.port == key.port && held.source.family == key.source.family &&
          held.source.first <= key.source.last && key.source.first <= held.source.last) {
        return "add overlaps " + describe(held) + ": " + describe(key);
      }
    }
    return std::nullopt;
  }

  void drop_expired() {
    const auto now = clock_.boot_now();
    std::erase_if(elements_, [now](const auto& entry) { return entry.second <= now; });
  }

  const core::Clock& clock_;
  [[nodiscard]] bool refuses(const std::vector<core::TimedElement>& added) const {
    return refused_source && std::any_of(added.begin(), added.end(), [this](const auto& element) {
             return element.key.source == *refused_source;
           });
  }
  static core::Result<void> refusal() {
    return core::fail(core::ErrorCode::kernel, "netlink: injected refusal of one element", EINVAL);
  }

  std::optional<int> fail_next_apply_;
  std::optional<int> fail_next_install_;
  bool installed_ = false;
  Elements elements_;
};

// Records every call and keeps what a replay of the journal file would give back: the latest
// grant record of each id that has no end record, in the order the ids were first recorded.
class FakeJournal final : public core::Journal {
 public:
  struct Call {
    enum class Kind { grant, end } kind = Kind::grant;
    core::Grant grant;                                        // Kind::grant: the grant as recorded
    std::string id;                                           // both kinds
    core::GrantStatus status = core::GrantStatus::initiated;  // Kind::end
    std::string reason;                                       // Kind::end
    bool failed = false;
  };

  explicit FakeJournal(std::string boot_id = "boot-a") : boot_id(std::move(boot_id)) {}

  std::string boot_id;      // stamped on grant records, as the file journal does
  std::vector<Call> calls;  // every call, failed ones included
  CallLog* log = nullptr;

  // The next call (either kind) fails with an io error and records nothing.
  void fail_next(int sys_errno = EIO) { fail_next_ = sys_errno; }

  core::Result<void> record_grant(const core::Grant& grant) override {
    Call call;
    call.kind = Call::Kind::grant;
    call.grant = grant;
    call.id = grant.id;
    if (log != nullptr) log->add("journal.grant " + grant.id);
    if (auto failed = injected(call)) return *failed;
    const auto found = std::find_if(live_.begin(), live_.end(),
                                    [&](const auto& entry) { return entry.grant.id == grant.id; });
    if (found != live_.end()) {
      *found = core::JournalEntry{grant, boot_id};
    } else {
      live_.push_back(core::JournalEntry{grant, boot_id});
    }
    return {};
  }

  core::Result<void> record_end(const std::string& id, core::GrantStatus status,
                                const std::string& reason) override {
    Call call;
    call.kind = Call::Kind::end;
    call.id = id;
    call.status = status;
    call.reason = reason;
    if (log != nullptr) {
      log->add("journal.end " + id + " " + std::string(core::to_string(status)) + " " + reason);
    }
    if (auto failed = injected(call)) return *failed;
    std::erase_if(live_, [&](const auto& entry) { return entry.grant.id == id; });
    return {};
  }

  // Records written are what a crash of jitd leaves; a failed sync is modelled as a disk that
  // took them anyway (the worst case for the engine, which must close them).
  // Counted apart from `calls` (which hold records); a failure is injected by fail_next too.
  core::Result<void> sync() override {
    if (log != nullptr) log->add("journal.sync");
    if (fail_next_) {
      const int sys_errno = *std::exchange(fail_next_, std::nullopt);
      ++failed_syncs;
      return core::fail(core::ErrorCode::io, "journal: injected sync failure", sys_errno);
    }
    ++syncs;
    return {};
  }
  std::size_t syncs = 0;  // successful
  std::size_t failed_syncs = 0;

  // What an earlier run left in the file (not counted as calls).
  void seed(std::vector<core::JournalEntry> entries) { live_ = std::move(entries); }

  // What opening the journal again would replay.
  [[nodiscard]] std::vector<core::JournalEntry> replay() const { return live_; }

  // Successful calls of one kind.
  [[nodiscard]] std::vector<Call> recorded(Call::Kind kind) const {
    std::vector<Call> found;
    for (const auto& call : calls) {
      if (call.kind == kind && !call.failed) found.push_back(call);
    }
    return found;
  }

 private:
  std::optional<core::Result<void>> injected(Call& call) {
    if (!fail_next_) {
      calls.push_back(std::move(call));
      return std::nullopt;
    }
    const int sys_errno = *fail_next_;
    fail_next_.reset();
    call.failed = true;
    calls.push_back(std::move(call));
    return core::Result<void>(
        core::fail(core::ErrorCode::io, "journal: injected failure", sys_errno));
  }

  std::optional<int> fail_next_;
  std::vector<core::JournalEntry> live_;
};

class RecordingAudit final : public core::AuditSink {
 public:
  std::vector<core::AuditEvent> events;
  CallLog* log = nullptr;
  void record(const core::AuditEvent& event) override {
    events.push_back(event);
    if (log != nullptr) log->add("audit." + event.event + " " + event.outcome);
  }

  // Events with this name, in order.
  [[nodiscard]] std::vector<core::AuditEvent> named(std::string_view name) const {
    std::vector<core::AuditEvent> found;
    for (const auto& event : events) {
      if (event.event == name) found.push_back(event);
    }
    return found;
  }
};

// Grant ids as the daemon makes them (host.cpp): 16 lowercase hex digits.
inline std::string grant_id(int number) {
  char id[17];
  std::snprintf(id, sizeof id, "%016x", number);
  return id;
}

// An AccessEngine over the fakes, for what sits above the engine: the router, the server and
// the fuzzers. Ids count up from grant_id(1).
struct FakeEngine {
  explicit FakeEngine(core::Policy policy = {},
                      core::TimePoint start = core::TimePoint{std::chrono::hours(24 * 20000)})
      : clock(start),
        engine(
            backend, journal, audit, clock, [this] { return grant_id(++next_id); },
            std::move(policy)) {}
  FakeEngine(const FakeEngine&) = delete;
  FakeEngine& operator=(const FakeEngine&) = delete;

  core::FakeClock clock;
  FakeBackend backend{clock};
  FakeJournal journal;
  RecordingAudit audit;
  int next_id = 0;
  core::AccessEngine engine;
};

}  // namespace jitd::test
