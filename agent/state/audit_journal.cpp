#include "jitd/state/audit_journal.hpp"

#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include <cstring>
#include <utility>

#include <spdlog/spdlog.h>

#include "jitd/core/text.hpp"

namespace jitd::state {

namespace {

// syslog(3) priorities, which journald takes as PRIORITY=.
constexpr int priority_err = 3;
constexpr int priority_warning = 4;
constexpr int priority_info = 6;

int priority_of(const core::AuditEvent& event) {
  if (event.outcome == "failed") return priority_err;
  if (event.outcome == "refused" || event.event == "tamper") return priority_warning;
  return priority_info;
}

std::string ports_text(const std::vector<core::PortSpec>& ports) {
  std::vector<std::string> texts;
  for (const auto& port : ports) texts.push_back(core::to_string(port));
  return core::join(texts, " ");
}

// "request granted: alice (uid 1000), 22/tcp from 10.0.3.2 until ..., grant 3f2a: reason";
// escaped, so a justification or reason cannot break it into lines.
std::string summary(const core::AuditEvent& event, const std::string& ports) {
  auto text = event.event + " " + event.outcome + ": " + event.user + " (uid " +
              std::to_string(event.uid) + ")";
  if (!ports.empty()) text += ", " + ports;
  if (!event.source.empty()) text += " from " + event.source;
  if (!event.end_time.empty()) text += " until " + event.end_time;
  if (!event.grant_id.empty()) text += ", grant " + event.grant_id;
  if (!event.reason.empty()) text += ": " + event.reason;
  return core::escaped(text);
}

int send_to_journal(const std::vector<std::string>& fields) {
  std::vector<iovec> vector;
  vector.reserve(fields.size());
  for (const auto& field : fields) {
    // sd_journal_sendv reads the buffers only.
    vector.push_back({const_cast<char*>(field.data()), field.size()});
  }
  return sd_journal_sendv(vector.data(), static_cast<int>(vector.size()));
}

}  // namespace

std::vector<std::string> journal_fields(const core::AuditEvent& event) {
  const auto ports = ports_text(event.ports);
  std::vector<std::string> fields{"MESSAGE=" + summary(event, ports),
                                  "PRIORITY=" + std::to_string(priority_of(event)),
                                  "SYSLOG_IDENTIFIER=jitd"};
  const auto add = [&fields](const char* name, const std::string& value) {
    if (!value.empty()) fields.push_back(std::string(name) + "=" + value);
  };
  add("JITD_EVENT", event.event);
  add("JITD_OUTCOME", event.outcome);
  add("JITD_GRANT_ID", event.grant_id);
  add("JITD_SOURCE", event.source);
  add("JITD_PORTS", ports);
  add("JITD_USER", event.user);
  add("JITD_UID", std::to_string(event.uid));
  add("JITD_END_TIME", event.end_time);
  add("JITD_REASON", event.reason);
  add("JITD_CODE", event.code);
  add("JITD_JUSTIFICATION", event.justification);
  add("JITD_TIME", core::format_utc(event.time));
  return fields;
}

AuditJournal::AuditJournal() : send_(send_to_journal) {}

void AuditJournal::record(const core::AuditEvent& event) {
  const int sent = send_(journal_fields(event));
  if (sent >= 0) {
    if (std::exchange(failing_, false)) {
      spdlog::info("systemd journal takes audit events again ({} were not sent)", failures_);
    }
    return;
  }
  ++failures_;
  // Once per spell of failures: one line per event would flood the log it failed to reach.
  if (!std::exchange(failing_, true)) {
    spdlog::warn("send audit event to the systemd journal: {}; audit.jsonl has every event",
                 std::strerror(-sent));
  }
}

}  // namespace jitd::state
