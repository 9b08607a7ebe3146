#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/clock.hpp"
#include "jitd/core/error.hpp"
#include "jitd/core/policy.hpp"

namespace jitd::core {

// One line of the audit log: who asked, for what, why, and what happened.
struct AuditEvent {
  TimePoint time;
  std::string event;    // one of audit_event_names
  std::string outcome;  // "granted", "refused", "failed", "revoked", "expired", "ok"
  std::string grant_id;
  std::uint32_t uid = 0;
  std::string user;
  std::string source;
  std::vector<PortSpec> ports;
  std::string justification;
  std::string end_time;  // UTC text, when a grant is involved
  std::string reason;    // refusal or failure message, status reason
  std::string code;      // a refusal's or failure's error code ("PortNotInPolicy"): its kind
};

// Every AuditEvent::event jitd writes: what a query's event filter may name.
inline constexpr std::array<std::string_view, 15> audit_event_names{
    "request", "approve", "deny",   "extend",   "revoke",  "expire",  "start",    "stop",
    "policy",  "reload",  "tamper", "sessions", "journal", "backend", "uninstall"};

// A page of the audit log: who did what, filtered by time, user, port and event.
struct AuditQuery {
  std::optional<TimePoint> since;     // records at or after
  std::optional<TimePoint> until;     // records before
  std::string user;                   // empty: every user
  std::optional<std::uint16_t> port;  // records naming this port number (any protocol)
  std::vector<std::string> events;    // records of one of these events; empty: every event
  std::size_t limit = 100;            // records per page, at most max_audit_page
  std::string cursor;                 // where the previous page ended; empty: the start
};

inline constexpr std::size_t max_audit_page = 1000;

struct AuditPage {
  std::vector<std::string> records;  // JSON objects, one per record, in log order
  std::string next;                  // the cursor of the next page; empty at the end
};

// Who rotates the audit log: jitd (by size and age, with retention), or another tool such as
// logrotate, whose renames jitd notices and follows.
enum class AuditRotation { jitd, external };

class AuditReader {
 public:
  virtual ~AuditReader() = default;
  // Bounded in records and in bytes read, so a filter that matches little cannot hold up
  // the caller's thread: a short page with a cursor means "ask again".
  [[nodiscard]] virtual Result<AuditPage> read(const AuditQuery& query) const = 0;
};

class AuditSink {
 public:
  virtual ~AuditSink() = default;
  // Best effort by design of the caller: a failing audit disk is logged, never
  // turned into a lost or leaked grant.
  virtual void record(const AuditEvent& event) = 0;
};

// Hands every event to each of its sinks in turn (the log file first, then the journal,
// metrics, notifications), so the engine knows of one sink.
class AuditFanout final : public AuditSink {
 public:
  void add(AuditSink& sink) { sinks_.push_back(&sink); }
  void record(const AuditEvent& event) override {
    for (auto* sink : sinks_) sink->record(event);
  }

 private:
  std::vector<AuditSink*> sinks_;
};

}  // namespace jitd::core
