#pragma once
// The AccessEngine tests' shared fixture: an engine on the fake backend, journal, audit sink
// and clock, the default policy, and the constants and helpers the core_engine_*_test.cpp
// files use. Everything is inline in a named namespace so that every test file sees the same
// fixture class, as GoogleTest requires of one suite spread over several files.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fake_backend.hpp"
#include "jitd/core/engine.hpp"
#include "jitd/core/history.hpp"
#include "jitd/core/sessions.hpp"
#include "test_grants.hpp"

namespace jitd::core::engine_fixture {

using namespace std::chrono_literals;
using test::CallLog;
using test::FakeBackend;
using test::FakeJournal;
using test::RecordingAudit;
using test::expect_same_grant;
using test::ids_of;
using test::prefix;

inline const TimePoint t0 = TimePoint{std::chrono::sys_days{std::chrono::year{2026} / 11 / 24}};
// The boot clock at t0: unrelated to the wall clock, as on a real machine.
inline const Deadline b0 = Deadline{std::chrono::hours(5) + std::chrono::minutes(17)};

inline constexpr PortSpec ssh{22, ProtocolSpec::tcp};
inline constexpr PortSpec https{443, ProtocolSpec::tcp};
inline constexpr PortSpec dns{53, ProtocolSpec::any};
inline constexpr PortKey ssh_key{Protocol::tcp, 22};
inline constexpr PortKey https_key{Protocol::tcp, 443};
inline constexpr PortKey dns_tcp{Protocol::tcp, 53};
inline constexpr PortKey dns_udp{Protocol::udp, 53};

inline ElementKey key(std::string_view source, PortKey port) {
  return ElementKey{prefix(source).range(), port};
}

inline ElementKey key(Family family, AddressValue first, AddressValue last, PortKey port) {
  return ElementKey{AddressRange{family, first, last}, port};
}

constexpr AddressValue ip4(unsigned a, unsigned b, unsigned c, unsigned d) {
  return (AddressValue{a} << 24) | (AddressValue{b} << 16) | (AddressValue{c} << 8) | d;
}

inline PortRule rule(PortSpec port, std::vector<Prefix> sources, Milliseconds max) {
  PortRule r;
  r.port = port;
  r.any_source = sources.empty();
  r.allowed_sources = std::move(sources);
  r.max_duration = max;
  return r;
}

// 22/tcp from anywhere for up to 3h; 443/tcp from 10.0.0.0/24 and fd00::/64 for up to
// 1h; 53 (tcp and udp) from anywhere for up to 2h.
inline Policy default_policy() {
  Policy policy;
  policy.rules = {rule(ssh, {}, 3h),
                  rule(https, {prefix("10.0.0.0/24"), prefix("fd00::/64")}, 1h),
                  rule(dns, {}, 2h)};
  return policy;
}

inline GrantRequest ask(std::vector<PortSpec> ports, std::string_view source,
                        std::optional<Milliseconds> duration,
                        std::optional<TimePoint> end_time = std::nullopt) {
  GrantRequest request;
  request.ports = std::move(ports);
  request.source = prefix(source);
  request.duration = duration;
  request.end_time = end_time;
  request.justification = "ticket OPS-1";
  return request;
}

inline const Caller admin{0, 0, "root", true, {}};
inline const Caller alice{1000, 1000, "alice", true, {}};
inline const Caller mallory{1001, 1001, "mallory", false, {}};
inline const Caller bob{1002, 1002, "bob", true, {}};

// Keeps every cut with what the kernel model held and how many installs it had seen at that
// moment: a cut must come only once the kernel no longer admits the ended grant.
class RecordingCutter final : public SessionCutter {
 public:
  struct Call {
    std::vector<SessionCut> cuts;
    std::map<ElementKey, Deadline> kernel;
    std::size_t installs = 0;
  };
  explicit RecordingCutter(FakeBackend& backend) : backend_(backend) {}

  std::vector<Call> calls;

  Result<CutReport> cut(const std::vector<SessionCut>& cuts) override {
    calls.push_back({cuts, backend_.live_elements(), backend_.installs.size()});
    return CutReport{cuts.size(), 0, false, 0, {}};
  }

 private:
  FakeBackend& backend_;
};

// Keeps every ended grant it is given, in order; find() answers from them.
class RecordingHistory final : public GrantHistory {
 public:
  std::vector<Grant> ended;

  Result<void> record(const Grant& grant) override {
    ended.push_back(grant);
    return {};
  }
  [[nodiscard]] Result<std::optional<Grant>> find(const std::string& id) const override {
    const auto found = std::find_if(ended.rbegin(), ended.rend(),
                                    [&id](const Grant& grant) { return grant.id == id; });
    if (found == ended.rend()) return std::nullopt;
    return *found;
  }
  [[nodiscard]] Result<HistoryPage> query(const HistoryQuery& /*query*/) const override {
    return HistoryPage{{ended.rbegin(), ended.rend()}, {}};
  }
  [[nodiscard]] Result<std::size_t> prune(TimePoint /*now*/) override { return 0; }
};

class CoreEngineTest : public ::testing::Test {
 protected:
  explicit CoreEngineTest(Policy policy = default_policy())
      : engine(backend, journal, audit, clock, [this] { return next_id(); }, std::move(policy)) {}

  void TearDown() override {
    for (const auto& violation : backend.violations) ADD_FAILURE() << "kernel model: " << violation;
  }

  Grant grant_ok(const GrantRequest& request, const Caller& caller = admin) {
    auto result = engine.request(caller, request);
    EXPECT_TRUE(result.has_value()) << (result ? "" : result.error().message);
    return result ? *result : Grant{};
  }

  // Requests, expects a refusal with `code`, and checks that nothing reached the kernel,
  // no grant was stored, and the audit log got a "refused" line with the reason.
  Error refused(const GrantRequest& request, ErrorCode code, const Caller& caller = admin) {
    const auto applies_before = backend.applies.size();
    const auto events_before = audit.events.size();
    const auto grants_before = engine.active_grants().size();
    const auto ids_before = ids;
    auto result = engine.request(caller, request);
    EXPECT_FALSE(result.has_value()) << "granted " << (result ? result->id : "");
    if (result) return Error{};
    EXPECT_EQ(result.error().code, code) << result.error().message;
    EXPECT_FALSE(result.error().message.empty());
    EXPECT_EQ(backend.applies.size(), applies_before) << "refusal reached the backend";
    EXPECT_EQ(engine.active_grants().size(), grants_before);
    EXPECT_EQ(ids, ids_before) << "an id was spent on a refusal";
    EXPECT_EQ(audit.events.size(), events_before + 1);
    if (audit.events.size() == events_before + 1) {
      const auto& event = audit.events.back();
      EXPECT_EQ(event.event, "request");
      EXPECT_EQ(event.outcome, "refused");
      EXPECT_EQ(event.time, clock.now());
      EXPECT_EQ(event.uid, caller.uid);
      EXPECT_EQ(event.user, caller.name);
      EXPECT_EQ(event.source, request.source.to_string());
      EXPECT_EQ(event.ports, request.ports);
      EXPECT_EQ(event.justification, request.justification);
      EXPECT_TRUE(event.grant_id.empty());
      EXPECT_NE(event.reason.find(std::string(to_string(code))), std::string::npos) << event.reason;
      EXPECT_NE(event.reason.find(result.error().message), std::string::npos) << event.reason;
    }
    return result.error();
  }

  std::optional<Deadline> kernel_end(std::string_view address, PortKey port) {
    const auto host = prefix(address);
    return backend.end_for(host.family(), host.address(), port);
  }

  // retry_pending(), expecting it to leave nothing for the next call.
  void retry_all_pending() {
    const auto outcome = engine.retry_pending();
    EXPECT_FALSE(outcome.journal.has_value()) << outcome.journal->message;
    EXPECT_FALSE(outcome.kernel.has_value()) << outcome.kernel->message;
  }

  // jitd started again on the same journal, backend and clocks, with the same policy: a new
  // engine that has not restored anything yet.
  AccessEngine restarted_engine() {
    return AccessEngine(backend, journal, audit, clock, [this] { return next_id(); },
                        engine.policy());
  }

  // Sends every backend, journal and audit call to `log`, in the order they happen.
  void trace() {
    backend.log = &log;
    journal.log = &log;
    audit.log = &log;
  }

  std::string next_id() { return "g" + std::to_string(++ids); }

  CallLog log;
  FakeClock clock{t0, b0};
  FakeBackend backend{clock};
  FakeJournal journal;
  RecordingAudit audit;
  int ids = 0;
  AccessEngine engine;
};

using Kind = FakeJournal::Call::Kind;

// The calls in `log` that start with one of `prefixes`, in order.
inline std::vector<std::string> calls_to(const CallLog& log,
                                         std::vector<std::string_view> prefixes) {
  std::vector<std::string> found;
  for (const auto& call : log.calls) {
    for (const auto prefix : prefixes) {
      if (call.starts_with(prefix)) {
        found.push_back(call);
        break;
      }
    }
  }
  return found;
}

// The ids of `grants`, in order.
inline std::vector<std::string> ids_of(const std::vector<Grant>& grants) {
  std::vector<std::string> ids;
  for (const auto& grant : grants) ids.push_back(grant.id);
  return ids;
}

}  // namespace jitd::core::engine_fixture
