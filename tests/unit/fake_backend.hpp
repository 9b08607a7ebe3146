#pragma once
// Test doubles for the engine's seams: a backend that records every call and models
// what an nftables interval set with timeouts would hold, and an audit sink that
// keeps every event.
#include <cerrno>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "jitd/core/audit.hpp"
#include "jitd/core/backend.hpp"
#include "jitd/core/clock.hpp"

namespace jitd::test {

class FakeBackend final : public core::Backend {
 public:
  // The clock lets the model drop elements whose timeout ran out, as the kernel does.
  explicit FakeBackend(const core::Clock& clock) : clock_(clock) {}

  std::vector<core::EnforcementSpec> installs;
  std::vector<core::ElementChanges> applies;  // every apply call, failed ones included
  std::vector<std::string> violations;        // transactions a real kernel would refuse
  int uninstalls = 0;

  // The next apply() fails with a kernel error and changes nothing.
  void fail_next_apply(int sys_errno = ENOBUFS) { fail_next_ = sys_errno; }

  core::Result<void> install(const core::EnforcementSpec& spec) override {
    installs.push_back(spec);
    elements_.clear();
    const auto now = clock_.now();
    for (const auto& element : spec.grants) {
      if (const auto error = check_add(elements_, element.key, element.timeout)) {
        violations.push_back("install: " + *error);
        return core::fail(core::ErrorCode::kernel, *error, EEXIST);
      }
      elements_[element.key] = now + element.timeout;
    }
    installed_ = true;
    return {};
  }

  core::Result<void> apply(const core::ElementChanges& changes) override {
    applies.push_back(changes);
    if (fail_next_) {
      const int sys_errno = *fail_next_;
      fail_next_.reset();
      return core::fail(core::ErrorCode::kernel, "netlink: injected failure", sys_errno);
    }
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
      next[element.key] = clock_.now() + element.timeout;
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
      snap.permanent = installs.back().permanent;
    }
    for (const auto& [key, end] : elements_) snap.grants.push_back({key, end - clock_.now()});
    return snap;
  }

  core::Result<void> uninstall() override {
    ++uninstalls;
    installed_ = false;
    elements_.clear();
    return {};
  }

  // Live grant elements with their absolute end.
  std::map<core::ElementKey, core::TimePoint> live_elements() {
    drop_expired();
    return elements_;
  }

  // When the kernel stops letting `address` through on `port`; nullopt: it does not.
  std::optional<core::TimePoint> end_for(core::Family family, core::AddressValue address,
                                         core::PortKey port) {
    drop_expired();
    std::optional<core::TimePoint> found;
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

  using Elements = std::map<core::ElementKey, core::TimePoint>;

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
    const auto now = clock_.now();
    std::erase_if(elements_, [now](const auto& entry) { return entry.second <= now; });
  }

  const core::Clock& clock_;
  std::optional<int> fail_next_;
  bool installed_ = false;
  Elements elements_;
};

class RecordingAudit final : public core::AuditSink {
 public:
  std::vector<core::AuditEvent> events;
  void record(const core::AuditEvent& event) override { events.push_back(event); }
};

}  // namespace jitd::test
