#include "jitd/state/audit_log.hpp"

#include <fcntl.h>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "jitd/sys/file_safety.hpp"
#include "jitd/sys/files.hpp"

namespace jitd::state {

std::string to_json_line(const core::AuditEvent& event) {
  nlohmann::json ports = nlohmann::json::array();
  for (const auto& port : event.ports) {
    ports.push_back({{"number", port.number}, {"protocol", core::to_string(port.protocol)}});
  }
  nlohmann::json line = {{"time", core::format_utc(event.time)},
                         {"event", event.event},
                         {"outcome", event.outcome},
                         {"uid", event.uid},
                         {"user", event.user}};
  const auto add_if = [&line](const char* key, const std::string& value) {
    if (!value.empty()) line[key] = value;
  };
  add_if("grantId", event.grant_id);
  add_if("source", event.source);
  if (!event.ports.empty()) line["ports"] = std::move(ports);
  add_if("justification", event.justification);
  add_if("endTimeUtc", event.end_time);
  add_if("reason", event.reason);
  // Invalid UTF-8 in a justification must not make the log unwritable.
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

AuditLog::AuditLog(std::filesystem::path path, sys::UniqueFd fd)
    : path_(std::move(path)), fd_(std::move(fd)) {}

core::Result<std::unique_ptr<AuditLog>> AuditLog::open(std::filesystem::path path) {
  // Never through a link (a link to /etc/shadow would have jitd append to it), never to
  // anything but a regular file.
  const auto what = "open audit log " + path.string();
  auto fd = sys::open_nofollow(AT_FDCWD, path.string(), O_WRONLY | O_APPEND | O_CREAT, what, 0640);
  if (!fd) return tl::unexpected(fd.error());
  if (auto regular = sys::require_regular(fd->get(), what); !regular) {
    return tl::unexpected(regular.error());
  }
  return std::unique_ptr<AuditLog>(new AuditLog(std::move(path), std::move(*fd)));
}

void AuditLog::record(const core::AuditEvent& event) {
  const auto line = to_json_line(event);
  const auto what = "append to audit log " + path_.string();
  if (auto appended = sys::append_synced(fd_.get(), line, what); !appended) {
    // Enforcement does not depend on the log; say loudly that the record is missing.
    spdlog::error("{}; event: {}", appended.error().message, line);
  }
}

}  // namespace jitd::state
