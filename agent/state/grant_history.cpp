#include "jitd/state/grant_history.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "file_cursor.hpp"
#include "jitd/state/journal_format.hpp"
#include "jitd/state/sealed_files.hpp"
#include "jitd/sys/file_safety.hpp"
#include "jitd/sys/files.hpp"
#include "jitd/sys/system_error.hpp"

namespace jitd::state {

namespace {

// Reads go backwards in chunks of this size.
constexpr std::size_t chunk_bytes = 64 * 1024;
// A line longer than this is no record (a request body is at most 64 KiB): it is skipped
// without being held in memory whole.
constexpr std::size_t max_line_bytes = 1024 * 1024;
// How far out of end order two records may be (a wall clock stepped back between two ends): a
// query with `since` stops at the first record that ended this long before it.
constexpr auto since_slack = std::chrono::hours(24);

// One line of the file: [offset, end) holds `text` and its '\n' (none after a torn tail).
struct Line {
  std::uint64_t offset = 0;
  std::uint64_t end = 0;
  std::string_view text;  // empty for a line too long to be a record
};

// The lines of a file that end at or before `end`, newest first, read backwards in chunks.
// Memory stays within max_line_bytes and a chunk: a longer line comes as empty pieces, which
// still move position() towards the start of the file, so every call makes progress.
class BackwardLines {
 public:
  BackwardLines(int fd, std::uint64_t end, const std::string& what)
      : fd_(fd), what_(what), start_(end) {}

  // The next older line, or nullopt at the start of the file.
  [[nodiscard]] core::Result<std::optional<Line>> next() {
    // The previous line's text goes: buffer_ holds the bytes [start_, position()) of the file.
    buffer_.resize(buffer_.size() - std::exchange(taken_, 0));
    const auto position = this->position();
    if (position == 0) return std::nullopt;
    for (;;) {
      if (!buffer_.empty()) {
        const auto content = buffer_.back() == '\n' ? buffer_.size() - 1 : buffer_.size();
        const auto newline = content == 0 ? std::string::npos : buffer_.rfind('\n', content - 1);
        if (newline != std::string::npos || start_ == 0) {
          const auto begin = newline == std::string::npos ? 0 : newline + 1;
          Line line{start_ + begin, position,
                    std::string_view(buffer_).substr(begin, content - begin)};
          // The text stays valid until the next call, which drops it from the buffer.
          taken_ = buffer_.size() - begin;
          return line;
        }
        if (content > max_line_bytes) {
          taken_ = buffer_.size();
          return Line{start_, position, {}};
        }
      }
      if (auto read = read_chunk(); !read) return tl::unexpected(read.error());
    }
  }

  // Where the lines not given out yet end: the offset of the last line next() returned.
  [[nodiscard]] std::uint64_t position() const { return start_ + buffer_.size() - taken_; }

 private:
  core::Result<void> read_chunk() {
    const auto length = static_cast<std::size_t>(std::min<std::uint64_t>(start_, chunk_bytes));
    auto chunk = sys::read_at(fd_, start_ - length, length, what_);
    if (!chunk) return tl::unexpected(chunk.error());
    if (chunk->size() != length) {
      return core::fail(core::ErrorCode::io, what_ + ": the file was cut short while read");
    }
    start_ -= length;
    buffer_.insert(0, *chunk);
    return {};
  }

  int fd_;
  const std::string& what_;
  std::uint64_t start_;  // file offset of buffer_[0]
  std::string buffer_;
  std::size_t taken_ = 0;  // bytes at the end of buffer_ already given out
};

// When the grant ended; a record written without `ended` (record() refuses those) by its end.
core::TimePoint ended_at(const core::Grant& grant) { return grant.ended.value_or(grant.end); }

bool matches(const core::Grant& grant, const core::HistoryQuery& query) {
  if (query.since && ended_at(grant) < *query.since) return false;
  if (!query.user.empty() && grant.requestor.name != query.user) return false;
  if (query.port) {
    return std::any_of(grant.ports.begin(), grant.ports.end(),
                       [&](const core::PortSpec& port) { return port.number == *query.port; });
  }
  return true;
}

// Where the sealed segments are bounded: below, a full history would be many small files;
// above, the size bound would cut much more than it must.
constexpr std::uint64_t min_segment_bytes = 256 * 1024;
constexpr std::uint64_t max_segment_bytes = 4 * 1024 * 1024;

std::uint64_t segment_bytes(const HistoryLimits& limits) {
  if (limits.segment_bytes != 0) return limits.segment_bytes;
  return std::clamp(limits.max_bytes / 16, min_segment_bytes, max_segment_bytes);
}

// A segment to read: its name in the state directory, and the inode cursors name it by.
struct Part {
  std::string name;
  ino_t inode = 0;
};

// The lines of the whole history newest first: the parts (newest first) one after the other,
// each read backwards by BackwardLines and opened only when reached, so a page that ends in
// the active segment opens no other.
class HistoryLines {
 public:
  // Starts at `offset` in parts[0] (nullopt: at its end).
  HistoryLines(int directory, std::string prefix, std::vector<Part> parts,
               std::optional<std::uint64_t> offset)
      : directory_(directory),
        prefix_(std::move(prefix)),
        parts_(std::move(parts)),
        offset_(offset) {}

  // The next older line, or nullopt past the oldest segment's start.
  [[nodiscard]] core::Result<std::optional<Line>> next() {
    for (;;) {
      if (!lines_) {
        if (index_ == parts_.size()) return std::nullopt;
        if (auto opened = open_part(); !opened) return tl::unexpected(opened.error());
      }
      auto line = lines_->next();
      if (!line || *line) return line;
      scanned_ += end_;
      lines_.reset();
      ++index_;
    }
  }

  // Bytes read so far.
  [[nodiscard]] std::uint64_t scanned() const {
    return scanned_ + (lines_ ? end_ - lines_->position() : 0);
  }

  // The cursor of the lines not given out yet; empty when none are left.
  [[nodiscard]] std::string cursor() const {
    if (!lines_ || (lines_->position() == 0 && index_ + 1 == parts_.size())) return {};
    return file_cursor(info_, lines_->position());
  }

 private:
  core::Result<void> open_part() {
    const auto& part = parts_[index_];
    what_ = prefix_ + part.name;
    auto fd = sys::open_nofollow(directory_, part.name, O_RDONLY, what_);
    if (!fd) return tl::unexpected(fd.error());
    auto info = sys::stat_open(fd->get(), what_);
    if (!info) return tl::unexpected(info.error());
    // Only jitd renames and unlinks segments, and not while it reads: another inode under the
    // name would make offsets (cursors) point into the wrong records.
    if (info->st_ino != part.inode) {
      return core::fail(core::ErrorCode::io, what_ + ": replaced by something other than jitd");
    }
    info_ = *info;
    end_ = std::exchange(offset_, std::nullopt).value_or(static_cast<std::uint64_t>(info->st_size));
    fd_ = std::move(*fd);
    lines_.emplace(fd_.get(), end_, what_);
    return {};
  }

  int directory_;
  std::string prefix_;  // the directory, for messages
  std::vector<Part> parts_;
  std::optional<std::uint64_t> offset_;
  std::size_t index_ = 0;  // parts_[index_] is open while lines_ is set
  std::string what_;       // lines_ holds a reference
  sys::UniqueFd fd_;
  struct stat info_ {};
  std::uint64_t end_ = 0;  // where reading began in the open part
  std::optional<BackwardLines> lines_;
  std::uint64_t scanned_ = 0;  // bytes of the parts done
};

// The newest readable record of a segment, if it holds one.
core::Result<std::optional<core::Grant>> newest_record(int fd, std::uint64_t size,
                                                       const std::string& what) {
  BackwardLines lines(fd, size, what);
  for (;;) {
    auto line = lines.next();
    if (!line) return tl::unexpected(line.error());
    if (!*line) return std::nullopt;
    if (auto grant = parse_grant_fields((*line)->text)) return std::move(*grant);
  }
}

// The lines of a segment (a torn last one included), for prune() to say how much went.
core::Result<std::size_t> count_lines(int fd, std::uint64_t size, const std::string& what) {
  std::size_t lines = 0;
  char last = '\n';
  for (std::uint64_t done = 0; done < size;) {
    // Large reads: the whole segment is read, front to back, only to be counted.
    const auto length =
        static_cast<std::size_t>(std::min<std::uint64_t>(size - done, max_line_bytes));
    const auto text = sys::read_at(fd, done, length, what);
    if (!text) return tl::unexpected(text.error());
    if (text->size() != length) {
      return core::fail(core::ErrorCode::io, what + ": the file was cut short while read");
    }
    lines += static_cast<std::size_t>(std::count(text->begin(), text->end(), '\n'));
    last = text->back();
    done += length;
  }
  return lines + (last == '\n' ? 0 : 1);
}

// The parts of the history newest first: the active segment (if open), then the sealed ones.
core::Result<std::vector<Part>> reading_order(int active_fd, const std::string& active,
                                              const std::vector<SealedSegment>& sealed,
                                              const std::string& what) {
  std::vector<Part> parts;
  if (active_fd >= 0) {
    const auto info = sys::stat_open(active_fd, what);
    if (!info) return tl::unexpected(info.error());
    parts.push_back({active, info->st_ino});
  }
  for (auto segment = sealed.rbegin(); segment != sealed.rend(); ++segment) {
    parts.push_back({sealed_name(active, segment->number), segment->inode});
  }
  return parts;
}

}  // namespace

FileGrantHistory::FileGrantHistory(std::filesystem::path path, HistoryLimits limits,
                                   sys::UniqueFd directory, std::vector<SealedSegment> sealed)
    : path_(std::move(path)),
      name_(path_.filename().string()),
      limits_(limits),
      directory_(std::move(directory)),
      sealed_(std::move(sealed)),
      next_number_(sealed_.empty() ? 1 : sealed_.back().number + 1) {}

core::Result<std::unique_ptr<FileGrantHistory>> FileGrantHistory::open(const std::string& path,
                                                                       HistoryLimits limits) {
  const auto what = "open grant history " + path;
  const auto directory = directory_of(path);
  sys::UniqueFd directory_fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!directory_fd) return sys::fail_system(core::ErrorCode::io, what, errno);
  auto sealed =
      list_sealed(directory_fd.get(), directory, std::filesystem::path(path).filename(), what);
  if (!sealed) return tl::unexpected(sealed.error());
  std::unique_ptr<FileGrantHistory> history(
      new FileGrantHistory(path, limits, std::move(directory_fd), std::move(*sealed)));
  if (auto opened = history->open_active(); !opened) return tl::unexpected(opened.error());
  return history;
}

core::Result<void> FileGrantHistory::open_active() {
  // As the audit log: never through a link, never anything but a regular file.
  const auto what = "open grant history " + path_.string();
  auto fd = sys::open_nofollow(directory_.get(), name_, O_RDWR | O_APPEND | O_CREAT, what, 0600);
  if (!fd) return tl::unexpected(fd.error());
  if (auto regular = sys::require_regular(fd->get(), what); !regular) return regular;
  const auto info = sys::stat_open(fd->get(), what);
  if (!info) return tl::unexpected(info.error());
  // The last byte only: whether a crash left a torn line that the next record must not extend.
  bool torn_tail = false;
  if (info->st_size > 0) {
    const auto last = sys::read_at(fd->get(), static_cast<std::uint64_t>(info->st_size) - 1, 1,
                                   "read grant history " + path_.string());
    if (!last) return tl::unexpected(last.error());
    torn_tail = *last != "\n";
  }
  active_ = std::move(*fd);
  torn_tail_ = torn_tail;
  return {};
}

core::Result<void> FileGrantHistory::record(const core::Grant& ended) {
  if (!ended.ended) {
    return core::fail(core::ErrorCode::invalid_argument,
                      "grant " + ended.id + " has no end time; the history holds ended grants");
  }
  const auto json = grant_fields_json(ended);
  // A record that would not read back would vanish from the history without a word.
  if (auto check = parse_grant_fields(json); !check) {
    return core::fail(core::ErrorCode::invalid_argument,
                      "grant " + ended.id + " cannot be recorded: " + check.error().message);
  }
  if (!active_) {
    if (auto opened = open_active(); !opened) return opened;
  }
  const auto what = "append to grant history " + path_.string();
  const auto line = (torn_tail_ ? "\n" : "") + json + "\n";
  // No sync: see the header. append_record takes a short write back; should that fail too,
  // the fragment stays, and the next record must start on a line of its own.
  if (auto appended = sys::append_record(active_.get(), line, what); !appended) {
    torn_tail_ = true;
    return appended;
  }
  torn_tail_ = false;
  const auto info = sys::stat_open(active_.get(), what);
  if (!info) return tl::unexpected(info.error());
  if (static_cast<std::uint64_t>(info->st_size) < segment_bytes(limits_)) return {};
  if (auto sealed = seal(); !sealed) {
    auto error = sealed.error();
    error.message = "grant " + ended.id + " is recorded, but " + error.message;
    return tl::unexpected(std::move(error));
  }
  return {};
}

core::Result<void> FileGrantHistory::seal() {
  const auto number = next_number_;
  const auto target = sealed_name(name_, number);
  const auto what = "seal grant history " + path_.string() + " as " + target;
  const auto info = sys::stat_open(active_.get(), what);
  if (!info) return tl::unexpected(info.error());
  // Its records on disk before its new name is: a sealed segment is never written again.
  if (auto synced = sys::sync_data(active_.get(), what); !synced) return synced;
  if (::renameat(directory_.get(), name_.c_str(), directory_.get(), target.c_str()) != 0) {
    return sys::fail_system(core::ErrorCode::io, what, errno);
  }
  ++next_number_;
  sealed_.push_back({number, info->st_ino, static_cast<std::uint64_t>(info->st_size)});
  active_.reset();
  // Should this fail, the next record() tries again; queries read the sealed segments alone.
  if (auto opened = open_active(); !opened) return opened;
  if (::fsync(directory_.get()) != 0) {
    return sys::fail_system(core::ErrorCode::io, "sync directory of " + path_.string(), errno);
  }
  return {};
}

core::Result<std::optional<core::Grant>> FileGrantHistory::find(const std::string& id) const {
  const auto what = "read grant history " + path_.string();
  auto parts = reading_order(active_.get(), name_, sealed_, what);
  if (!parts) return tl::unexpected(parts.error());
  // Only lines holding the id as a JSON string are parsed: a scan of a full history parses one.
  const auto needle =
      nlohmann::json(id).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  HistoryLines lines(directory_.get(), "read grant history " + directory_of(path_) + "/",
                     std::move(*parts), std::nullopt);
  for (;;) {
    auto line = lines.next();
    if (!line) return tl::unexpected(line.error());
    if (!*line) return std::nullopt;
    if ((*line)->text.find(needle) == std::string_view::npos) continue;
    auto grant = parse_grant_fields((*line)->text);
    if (grant && grant->id == id) return std::move(*grant);
  }
}

core::Result<core::HistoryPage> FileGrantHistory::query(const core::HistoryQuery& query) const {
  if (query.limit == 0 || query.limit > core::max_history_page) {
    return core::fail(core::ErrorCode::invalid_request, "limit: must be a number from 1 to " +
                                                            std::to_string(core::max_history_page));
  }
  const auto what = "read grant history " + path_.string();
  auto parts = reading_order(active_.get(), name_, sealed_, what);
  if (!parts) return tl::unexpected(parts.error());
  std::optional<std::uint64_t> offset;
  if (!query.cursor.empty()) {
    const auto at = split_file_cursor(query.cursor);
    if (!at) return tl::unexpected(at.error());
    const auto part = std::find_if(parts->begin(), parts->end(), [&](const Part& candidate) {
      return candidate.inode == at->inode;
    });
    if (part == parts->end()) {
      return tl::unexpected(bad_cursor(
          query.cursor, "belongs to a grant history segment that was pruned (or replaced) since"));
    }
    struct stat info {};
    if (::fstatat(directory_.get(), part->name.c_str(), &info, AT_SYMLINK_NOFOLLOW) != 0) {
      return sys::fail_system(core::ErrorCode::io, what + ": " + part->name, errno);
    }
    if (at->offset > static_cast<std::uint64_t>(info.st_size)) {
      return tl::unexpected(bad_cursor(query.cursor, "points past the end of its segment"));
    }
    parts->erase(parts->begin(), part);
    offset = at->offset;
  }
  core::HistoryPage page;
  HistoryLines lines(directory_.get(), "read grant history " + directory_of(path_) + "/",
                     std::move(*parts), offset);
  for (;;) {
    auto line = lines.next();
    if (!line) return tl::unexpected(line.error());
    if (!*line) return page;  // the oldest record: no next page
    auto grant = parse_grant_fields((*line)->text);
    // Records are in the order grants ended: once they ended well before `since` (the slack
    // covers wall clock steps between two ends), nothing older can match.
    if (grant && query.since && grant->ended && *grant->ended < *query.since - since_slack) {
      return page;
    }
    if (grant && matches(*grant, query)) page.grants.push_back(std::move(*grant));
    if (page.grants.size() == query.limit || lines.scanned() >= limits_.max_scan_bytes) {
      page.next = lines.cursor();
      return page;
    }
  }
}

core::Result<std::size_t> FileGrantHistory::drop_oldest() {
  const auto& oldest = sealed_.front();
  const auto name = sealed_name(name_, oldest.number);
  const auto what = "prune grant history " + directory_of(path_) + "/" + name;
  auto fd = sys::open_nofollow(directory_.get(), name, O_RDONLY, what);
  if (!fd) return tl::unexpected(fd.error());
  const auto lines = count_lines(fd->get(), oldest.size, what);
  if (!lines) return tl::unexpected(lines.error());
  if (::unlinkat(directory_.get(), name.c_str(), 0) != 0) {
    return sys::fail_system(core::ErrorCode::io, what, errno);
  }
  sealed_.erase(sealed_.begin());
  return *lines;
}

core::Result<std::size_t> FileGrantHistory::prune(core::TimePoint now) {
  const auto cutoff = now - limits_.retention;
  const auto what = "prune grant history " + path_.string();
  // Whether the newest record of the segment `name` ended before the cutoff (or it has none).
  const auto due = [&](int fd, std::uint64_t size, const std::string& name) -> core::Result<bool> {
    const auto newest = newest_record(fd, size, what + ": " + name);
    if (!newest) return tl::unexpected(newest.error());
    return !*newest || ended_at(**newest) < cutoff;
  };
  std::size_t dropped = 0;
  // Records are in end order across the segments: the first segment whose newest record is
  // within the retention ends the age pruning.
  while (!sealed_.empty()) {
    const auto name = sealed_name(name_, sealed_.front().number);
    auto fd = sys::open_nofollow(directory_.get(), name, O_RDONLY, what + ": " + name);
    if (!fd) return tl::unexpected(fd.error());
    const auto expired = due(fd->get(), sealed_.front().size, name);
    if (!expired) return tl::unexpected(expired.error());
    if (!*expired) break;
    const auto lines = drop_oldest();
    if (!lines) return tl::unexpected(lines.error());
    dropped += *lines;
  }
  std::uint64_t active_size = 0;
  if (active_) {
    const auto info = sys::stat_open(active_.get(), what);
    if (!info) return tl::unexpected(info.error());
    active_size = static_cast<std::uint64_t>(info->st_size);
  }
  // No grant ended within the retention: the active segment goes too, sealed first so that
  // it leaves the way every segment does.
  if (sealed_.empty() && active_size > 0) {
    const auto expired = due(active_.get(), active_size, name_);
    if (!expired) return tl::unexpected(expired.error());
    if (*expired) {
      if (auto sealed = seal(); !sealed) return tl::unexpected(sealed.error());
      const auto lines = drop_oldest();
      if (!lines) return tl::unexpected(lines.error());
      dropped += *lines;
      active_size = 0;
    }
  }
  std::uint64_t total = active_size;
  for (const auto& segment : sealed_) total += segment.size;
  while (!sealed_.empty() && total > limits_.max_bytes) {
    total -= sealed_.front().size;
    const auto lines = drop_oldest();
    if (!lines) return tl::unexpected(lines.error());
    dropped += *lines;
  }
  // The directory is not synced: an unlink that a power loss undoes brings back the oldest
  // segment, which the next prune removes again, and the sync (a journal commit, ~9 ms in
  // docs/benchmarks.md) would be most of what a prune costs the event loop.
  return dropped;
}

}  // namespace jitd::state
