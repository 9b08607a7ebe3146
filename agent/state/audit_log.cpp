#include "jitd/state/audit_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <utility>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "file_cursor.hpp"
#include "jitd/sys/file_safety.hpp"
#include "jitd/sys/files.hpp"
#include "jitd/sys/system_error.hpp"

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

namespace {

core::TimePoint modified_time(const struct stat& info) {
  return std::chrono::floor<std::chrono::milliseconds>(
      std::chrono::sys_seconds(std::chrono::seconds(info.st_mtim.tv_sec)) +
      std::chrono::nanoseconds(info.st_mtim.tv_nsec));
}

// The time of the first record of a file, if its first line is one: what max_age counts from
// for a file jitd finds at start. A request body is at most 64 KiB, so the line is shorter.
std::optional<core::TimePoint> first_record_time(int fd, const std::string& what) {
  const auto head = sys::read_at(fd, 0, 128 * 1024, what);
  if (!head) return std::nullopt;
  const auto newline = head->find('\n');
  if (newline == std::string::npos) return std::nullopt;
  const auto record = nlohmann::json::parse(head->substr(0, newline), nullptr, false);
  if (!record.is_object() || !record.contains("time") || !record["time"].is_string()) {
    return std::nullopt;
  }
  auto when = core::parse_utc(record["time"].get<std::string>());
  return when ? std::optional<core::TimePoint>(*when) : std::nullopt;
}

}  // namespace

AuditLog::AuditLog(std::filesystem::path path, AuditLimits limits, sys::UniqueFd directory,
                   std::vector<SealedSegment> rotated)
    : path_(std::move(path)),
      name_(path_.filename().string()),
      limits_(limits),
      directory_(std::move(directory)),
      rotated_(std::move(rotated)),
      next_number_(rotated_.empty() ? 1 : rotated_.back().number + 1) {}

core::Result<std::unique_ptr<AuditLog>> AuditLog::open(std::filesystem::path path,
                                                       AuditLimits limits) {
  const auto what = "open audit log " + path.string();
  const auto directory = directory_of(path);
  sys::UniqueFd directory_fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!directory_fd) return sys::fail_system(core::ErrorCode::io, what, errno);
  std::vector<SealedSegment> rotated;
  // logrotate's names ("audit.jsonl.1" is its newest) are not jitd's order: with external
  // rotation, jitd reads the file it writes to only.
  if (limits.rotation == core::AuditRotation::jitd) {
    auto listed = list_sealed(directory_fd.get(), directory, path.filename().string(), what);
    if (!listed) return tl::unexpected(listed.error());
    rotated = std::move(*listed);
  }
  std::unique_ptr<AuditLog> log(
      new AuditLog(std::move(path), limits, std::move(directory_fd), std::move(rotated)));
  if (auto opened = log->open_current(); !opened) return tl::unexpected(opened.error());
  return log;
}

core::Result<void> AuditLog::open_current() {
  // Never through a link (a link to /etc/shadow would have jitd append to it), never to
  // anything but a regular file.
  const auto what = "open audit log " + path_.string();
  auto fd = sys::open_nofollow(directory_.get(), name_, O_RDWR | O_APPEND | O_CREAT, what, 0640);
  if (!fd) return tl::unexpected(fd.error());
  if (auto regular = sys::require_regular(fd->get(), what); !regular) return regular;
  first_record_ = first_record_time(fd->get(), what);
  fd_ = std::move(*fd);
  return {};
}

void AuditLog::record(const core::AuditEvent& event) {
  const auto line = to_json_line(event);
  // A rotation that fails leaves the record in the current file: better a large file than a
  // lost record.
  if (auto ready = before_write(event.time); !ready) {
    if (!std::exchange(failing_, true)) {
      spdlog::error("{}; records go on to the current file until this succeeds",
                    ready.error().message);
    }
  } else if (std::exchange(failing_, false)) {
    spdlog::info("audit log {}: rotation works again", path_.string());
  }
  const auto what = "append to audit log " + path_.string();
  if (auto appended = sys::append_record(fd_.get(), line, what); !appended) {
    // Enforcement does not depend on the log; say loudly that the record is missing.
    spdlog::error("{}; event: {}", appended.error().message, line);
    return;
  }
  unsynced_ = true;
  if (!first_record_) first_record_ = event.time;
}

core::Result<void> AuditLog::before_write(core::TimePoint now) {
  const auto what = "audit log " + path_.string();
  const auto info = sys::stat_open(fd_.get(), what);
  if (!info) return tl::unexpected(info.error());
  if (limits_.rotation == core::AuditRotation::external) {
    struct stat at_path {};
    const bool moved =
        ::fstatat(directory_.get(), name_.c_str(), &at_path, AT_SYMLINK_NOFOLLOW) != 0
            ? errno == ENOENT
            : at_path.st_ino != info->st_ino || at_path.st_dev != info->st_dev;
    if (!moved) return {};
    // The records written before the rename on disk before jitd lets go of the file.
    if (auto synced = sync(); !synced) return synced;
    spdlog::info("audit log {} was renamed (external rotation): writing to a new one",
                 path_.string());
    return open_current();
  }
  const bool full = static_cast<std::uint64_t>(info->st_size) >= limits_.max_bytes;
  const bool old =
      limits_.max_age.count() > 0 && first_record_ && now - *first_record_ >= limits_.max_age;
  if (info->st_size == 0 || (!full && !old)) return {};
  return rotate(now);
}

core::Result<void> AuditLog::rotate(core::TimePoint now) {
  const auto number = next_number_;
  const auto target = sealed_name(name_, number);
  const auto what = "rotate audit log " + path_.string() + " to " + target;
  // The current file is this one until the rename: a record written after a failure here
  // goes to it, whole.
  const auto info = sys::stat_open(fd_.get(), what);
  if (!info) return tl::unexpected(info.error());
  // Renamed already by a rotation that could not create its successor: create it now.
  if (!rotated_.empty() && rotated_.back().inode == info->st_ino) return open_current();
  // Its records on disk before its new name is: a rotated file is never written again.
  if (auto synced = sys::sync_data(fd_.get(), what); !synced) return synced;
  unsynced_ = false;
  if (::renameat(directory_.get(), name_.c_str(), directory_.get(), target.c_str()) != 0) {
    return sys::fail_system(core::ErrorCode::io, what, errno);
  }
  ++next_number_;
  rotated_.push_back(
      {number, info->st_ino, static_cast<std::uint64_t>(info->st_size), modified_time(*info)});
  // Should this fail, records go on to the renamed file (reads see it once, as rotated), and
  // the next record tries again.
  if (auto opened = open_current(); !opened) return opened;
  if (::fsync(directory_.get()) != 0) {
    return sys::fail_system(core::ErrorCode::io, "sync directory of " + path_.string(), errno);
  }
  if (auto pruned = prune(now); !pruned) return tl::unexpected(pruned.error());
  return {};
}

core::Result<std::size_t> AuditLog::prune(core::TimePoint now) {
  std::size_t pruned = 0;
  while (!rotated_.empty() && rotated_.front().modified < now - limits_.retention) {
    const auto name = sealed_name(name_, rotated_.front().number);
    if (::unlinkat(directory_.get(), name.c_str(), 0) != 0 && errno != ENOENT) {
      return sys::fail_system(core::ErrorCode::io,
                              "prune audit log " + directory_of(path_) + "/" + name, errno);
    }
    rotated_.erase(rotated_.begin());
    ++pruned;
  }
  return pruned;
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

// Whether any of the record's ports has this number (a record names a port once per protocol).
bool names_port(const nlohmann::json& record, std::uint16_t number) {
  const auto ports = record.find("ports");
  if (ports == record.end() || !ports->is_array()) return false;
  return std::any_of(ports->begin(), ports->end(), [number](const nlohmann::json& port) {
    if (!port.is_object()) return false;
    const auto value = port.find("number");
    return value != port.end() && value->is_number_unsigned() &&
           value->get<std::uint64_t>() == number;
  });
}

bool matches(const nlohmann::json& record, const core::AuditQuery& query) {
  if (!record.is_object()) return false;
  if (!query.user.empty()) {
    const auto user = record.find("user");
    if (user == record.end() || !user->is_string() || *user != query.user) return false;
  }
  if (!query.events.empty()) {
    const auto event = record.find("event");
    if (event == record.end() || !event->is_string() ||
        std::find(query.events.begin(), query.events.end(), event->get_ref<const std::string&>()) ==
            query.events.end()) {
      return false;
    }
  }
  if (query.port && !names_port(record, *query.port)) return false;
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

namespace {

// A file to read: its name in the state directory (empty: the one jitd writes to, read through
// its descriptor) and the inode cursors name it by.
struct Part {
  std::string name;
  ino_t inode = 0;
};

}  // namespace

core::Result<core::AuditPage> AuditLog::read(const core::AuditQuery& query) const {
  const auto what = "read audit log " + path_.string();
  std::vector<Part> parts;
  for (const auto& file : rotated_) parts.push_back({sealed_name(name_, file.number), file.inode});
  const auto current = sys::stat_open(fd_.get(), what);
  if (!current) return tl::unexpected(current.error());
  // After a rename whose new file could not be created, jitd still writes to the rotated one.
  if (parts.empty() || parts.back().inode != current->st_ino)
    parts.push_back({"", current->st_ino});

  std::size_t index = 0;
  std::uint64_t offset = 0;
  if (!query.cursor.empty()) {
    const auto at = split_file_cursor(query.cursor);
    if (!at) return tl::unexpected(at.error());
    const auto part = std::find_if(parts.begin(), parts.end(), [&](const Part& candidate) {
      return candidate.inode == at->inode;
    });
    // A file pruned since: what it held is gone, the oldest that remains comes next.
    if (part != parts.end()) {
      index = static_cast<std::size_t>(part - parts.begin());
      offset = at->offset;
    }
  }
  core::AuditPage page;
  auto scan = limits_.max_scan_bytes;
  for (; index < parts.size(); ++index, offset = 0) {
    const auto& part = parts[index];
    const bool last = index + 1 == parts.size();
    sys::UniqueFd opened;
    if (!part.name.empty()) {
      auto fd = sys::open_nofollow(directory_.get(), part.name, O_RDONLY, what + ": " + part.name);
      if (!fd) return tl::unexpected(fd.error());
      opened = std::move(*fd);
    }
    const int fd = part.name.empty() ? fd_.get() : opened.get();
    const auto info = sys::stat_open(fd, what);
    if (!info) return tl::unexpected(info.error());
    // Only jitd renames and unlinks rotated files: another inode under the name would make
    // offsets point into the wrong records.
    if (info->st_ino != part.inode) {
      return core::fail(core::ErrorCode::io,
                        what + ": " + part.name + " was replaced by something other than jitd");
    }
    const auto size = static_cast<std::uint64_t>(info->st_size);
    if (offset > size) {
      return tl::unexpected(bad_cursor(query.cursor, "points past the end of its audit log file"));
    }
    const auto length = static_cast<std::size_t>(std::min<std::uint64_t>(size - offset, scan));
    auto text = sys::read_at(fd, offset, length, what);
    if (!text) return tl::unexpected(text.error());
    auto wanted = query;
    wanted.limit = query.limit - page.records.size();
    auto found = match_audit_lines(*text, wanted);
    std::move(found.records.begin(), found.records.end(), std::back_inserter(page.records));
    scan -= found.consumed;
    const auto end = offset + found.consumed;
    const bool cut_short = length < size - offset;  // by the scan bound
    if (page.records.size() == query.limit || cut_short) {
      if (end < size || !last) page.next = file_cursor(*info, end);
      return page;
    }
    // Here the whole rest of the file was read: what follows `end` is a torn line, which
    // the current file's next write completes and a rotated file's never does.
    if (last) return page;
  }
  return page;
}

}  // namespace jitd::state
