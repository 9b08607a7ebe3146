#include "jitd/state/audit_log.hpp"

#include <fcntl.h>

#include <algorithm>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "file_cursor.hpp"
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
  add_if("code", event.code);
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
  if (auto appended = sys::append_record(fd_.get(), line, what); !appended) {
    // Enforcement does not depend on the log; say loudly that the record is missing.
    spdlog::error("{}; event: {}", appended.error().message, line);
    return;
  }
  unsynced_ = true;
}

core::Result<void> AuditLog::sync() {
  if (!unsynced_) return {};
  if (auto synced = sys::sync_data(fd_.get(), "sync audit log " + path_.string()); !synced) {
    return synced;
  }
  unsynced_ = false;
  return {};
}

}  // namespace jitd::state

namespace jitd::state {

namespace {

// Bytes one page reads at most: a filter that matches little answers a short page and a
// cursor instead of scanning a large log on the daemon's only thread.
constexpr std::size_t max_page_scan = 1 << 20;

bool matches(const nlohmann::json& record, const core::AuditQuery& query) {
  if (!record.is_object()) return false;
  if (!query.user.empty()) {
    const auto user = record.find("user");
    if (user == record.end() || !user->is_string() || *user != query.user) return false;
  }
  if (!query.since && !query.until) return true;
  const auto time = record.find("time");
  if (time == record.end() || !time->is_string()) return false;
  const auto when = core::parse_utc(time->get<std::string>());
  if (!when) return false;
  return (!query.since || *when >= *query.since) && (!query.until || *when < *query.until);
}

}  // namespace

AuditMatches match_audit_lines(std::string_view text, const core::AuditQuery& query) {
  AuditMatches found;
  while (found.records.size() < query.limit) {
    const auto newline = text.find('\n', found.consumed);
    if (newline == std::string_view::npos) break;  // a line still being written
    const auto line = text.substr(found.consumed, newline - found.consumed);
    found.consumed = newline + 1;
    const auto record = nlohmann::json::parse(line, nullptr, false);
    if (!record.is_discarded() && matches(record, query)) found.records.emplace_back(line);
  }
  return found;
}

core::Result<core::AuditPage> AuditLog::read(const core::AuditQuery& query) const {
  const auto what = "read audit log " + path_.string();
  auto fd = sys::open_nofollow(AT_FDCWD, path_.string(), O_RDONLY, what);
  if (!fd) return tl::unexpected(fd.error());
  const auto info = sys::stat_open(fd->get(), what);
  if (!info) return tl::unexpected(info.error());

  std::uint64_t offset = 0;
  if (!query.cursor.empty()) {
    const auto at = parse_file_cursor(query.cursor, *info, "an audit log");
    if (!at) return tl::unexpected(at.error());
    offset = *at;
  }
  const auto available = static_cast<std::uint64_t>(info->st_size) - offset;
  auto text = sys::read_at(
      fd->get(), offset,
      static_cast<std::size_t>(std::min<std::uint64_t>(available, max_page_scan)), what);
  if (!text) return tl::unexpected(text.error());
  auto found = match_audit_lines(*text, query);
  core::AuditPage page;
  page.records = std::move(found.records);
  const auto end = offset + found.consumed;
  if (end < static_cast<std::uint64_t>(info->st_size) && found.consumed > 0) {
    page.next = file_cursor(*info, end);
  }
  return page;
}

}  // namespace jitd::state
