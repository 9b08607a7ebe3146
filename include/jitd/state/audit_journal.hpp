#pragma once
// Every audit event also goes to the systemd journal, with structured fields (JITD_EVENT=,
// JITD_GRANT_ID=, JITD_SOURCE=, JITD_PORTS=, JITD_USER=, ...), so `journalctl JITD_EVENT=request`
// finds them and log shippers pick them up. audit.jsonl stays the authoritative record: journald
// rate-limits bursts (an expiry storm) and may drop some. A failing send is counted and said
// once, not once per event.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "jitd/core/audit.hpp"

namespace jitd::state {

// The journal fields of an event, "NAME=value" each, empty values left out: MESSAGE (a one-line
// summary), PRIORITY (6 info; 4 warning for a refusal or tampering; 3 err for a failure),
// SYSLOG_IDENTIFIER=jitd and the JITD_* fields.
[[nodiscard]] std::vector<std::string> journal_fields(const core::AuditEvent& event);

class AuditJournal final : public core::AuditSink {
 public:
  // Sends the fields as one journal entry; returns 0 or a negative errno (sd_journal_sendv's
  // contract). Tests pass their own.
  using Send = std::function<int(const std::vector<std::string>& fields)>;

  AuditJournal();  // sends with sd_journal_sendv
  explicit AuditJournal(Send send) : send_(std::move(send)) {}
  void record(const core::AuditEvent& event) override;
  // Events the journal did not take since jitd started (for metrics and status).
  [[nodiscard]] std::uint64_t failures() const { return failures_; }

 private:
  Send send_;
  std::uint64_t failures_ = 0;
  bool failing_ = false;
};

}  // namespace jitd::state
