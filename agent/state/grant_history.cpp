#include "jitd/state/grant_history.hpp"

#include <fcntl.h>

#include <algorithm>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "file_cursor.hpp"
#include "jitd/state/journal_format.hpp"
#include "jitd/sys/file_safety.hpp"
#include "jitd/sys/files.hpp"

namespace jitd::state {

namespace {

// Reads go backwards in chunks of this size.
constexpr std::size_t chunk_bytes = 64 * 1024;
// A line longer than this is no record (a request body is at most 64 KiB): it is skipped
// without being held in memory whole.
constexpr std::size_t max_line_bytes = 1024 * 1024;

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

// A byte range of the file that prune() keeps.
struct Span {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
};

// Copies `spans` (in file order) from `from` to the end of `to`, in chunks, ending the copy
// with a '\n' should the last span lack one (a record whose newline was torn off).
core::Result<void> copy_spans(int from, const std::vector<Span>& spans, int to,
                              const std::string& read_what, const std::string& write_what) {
  bool newline_last = true;
  for (const auto& span : spans) {
    for (std::uint64_t done = 0; done < span.length;) {
      const auto length =
          static_cast<std::size_t>(std::min<std::uint64_t>(span.length - done, max_line_bytes));
      auto text = sys::read_at(from, span.offset + done, length, read_what);
      if (!text) return tl::unexpected(text.error());
      if (text->size() != length) {
        return core::fail(core::ErrorCode::io, read_what + ": the file was cut short while read");
      }
      if (auto written = sys::write_all(to, *text, write_what); !written) return written;
      newline_last = text->back() == '\n';
      done += length;
    }
  }
  return newline_last ? core::Result<void>{} : sys::write_all(to, "\n", write_what);
}

}  // namespace

FileGrantHistory::FileGrantHistory(std::filesystem::path path, HistoryLimits limits,
                                   sys::UniqueFd fd, bool torn_tail)
    : path_(std::move(path)), limits_(limits), fd_(std::move(fd)), torn_tail_(torn_tail) {}

core::Result<std::unique_ptr<FileGrantHistory>> FileGrantHistory::open(const std::string& path,
                                                                       HistoryLimits limits) {
  // As the audit log: never through a link, never anything but a regular file.
  const auto what = "open grant history " + path;
  auto fd = sys::open_nofollow(AT_FDCWD, path, O_RDWR | O_APPEND | O_CREAT, what, 0600);
  if (!fd) return tl::unexpected(fd.error());
  if (auto regular = sys::require_regular(fd->get(), what); !regular) {
    return tl::unexpected(regular.error());
  }
  const auto info = sys::stat_open(fd->get(), what);
  if (!info) return tl::unexpected(info.error());
  // The last byte only: whether a crash left a torn line that the next record must not extend.
  bool torn_tail = false;
  if (info->st_size > 0) {
    const auto last = sys::read_at(fd->get(), static_cast<std::uint64_t>(info->st_size) - 1, 1,
                                   "read grant history " + path);
    if (!last) return tl::unexpected(last.error());
    torn_tail = *last != "\n";
  }
  return std::unique_ptr<FileGrantHistory>(
      new FileGrantHistory(path, limits, std::move(*fd), torn_tail));
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
  const auto line = (torn_tail_ ? "\n" : "") + json + "\n";
  // No sync: see the header. append_record takes a short write back; should that fail too,
  // the fragment stays, and the next record must start on a line of its own.
  if (auto appended =
          sys::append_record(fd_.get(), line, "append to grant history " + path_.string());
      !appended) {
    torn_tail_ = true;
    return appended;
  }
  torn_tail_ = false;
  return {};
}

core::Result<std::optional<core::Grant>> FileGrantHistory::find(const std::string& id) const {
  const auto what = "read grant history " + path_.string();
  const auto info = sys::stat_open(fd_.get(), what);
  if (!info) return tl::unexpected(info.error());
  // Only lines holding the id as a JSON string are parsed: a scan of a full history parses one.
  const auto needle =
      nlohmann::json(id).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  BackwardLines lines(fd_.get(), static_cast<std::uint64_t>(info->st_size), what);
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
  const auto info = sys::stat_open(fd_.get(), what);
  if (!info) return tl::unexpected(info.error());
  auto start = static_cast<std::uint64_t>(info->st_size);
  if (!query.cursor.empty()) {
    const auto at = parse_file_cursor(query.cursor, *info, "a grant history");
    if (!at) return tl::unexpected(at.error());
    start = *at;
  }
  core::HistoryPage page;
  BackwardLines lines(fd_.get(), start, what);
  for (;;) {
    auto line = lines.next();
    if (!line) return tl::unexpected(line.error());
    if (!*line) return page;  // the oldest record: no next page
    if (auto grant = parse_grant_fields((*line)->text); grant && matches(*grant, query)) {
      page.grants.push_back(std::move(*grant));
    }
    const bool full = page.grants.size() == query.limit;
    if (full || start - lines.position() >= limits_.max_scan_bytes) {
      if (lines.position() > 0) page.next = file_cursor(*info, lines.position());
      return page;
    }
  }
}

core::Result<bool> FileGrantHistory::prune_due(core::TimePoint cutoff) const {
  const auto what = "read grant history " + path_.string();
  const auto info = sys::stat_open(fd_.get(), what);
  if (!info) return tl::unexpected(info.error());
  const auto size = static_cast<std::uint64_t>(info->st_size);
  if (size == 0) return false;
  if (size > limits_.max_bytes) return true;
  // The first record is the oldest (records are appended as grants end): if it is within the
  // retention, so is everything after it.
  auto head = sys::read_at(fd_.get(), 0, std::min<std::uint64_t>(size, chunk_bytes), what);
  if (!head) return tl::unexpected(head.error());
  if (head->find('\n') == std::string::npos && size > head->size()) {
    head = sys::read_at(fd_.get(), 0, std::min<std::uint64_t>(size, max_line_bytes), what);
    if (!head) return tl::unexpected(head.error());
  }
  const auto first = parse_grant_fields(std::string_view(*head).substr(0, head->find('\n')));
  // An unreadable first line is damage a rewrite removes.
  return !first || ended_at(*first) < cutoff;
}

core::Result<std::size_t> FileGrantHistory::prune(core::TimePoint now) {
  const auto cutoff = now - limits_.retention;
  const auto due = prune_due(cutoff);
  if (!due) return tl::unexpected(due.error());
  if (!*due) return 0;

  const auto what = "prune grant history " + path_.string();
  const auto info = sys::stat_open(fd_.get(), what);
  if (!info) return tl::unexpected(info.error());
  // Newest first, what the retention keeps, as runs of adjacent lines (few, as records end in
  // file order). `fits_from` is the oldest of the newest records that fit in 3/4 of max_bytes:
  // should the kept records exceed max_bytes, only those from there on stay.
  const auto target = limits_.max_bytes / 4 * 3;
  std::vector<Span> kept;  // newest first
  std::uint64_t kept_bytes = 0;
  std::size_t kept_records = 0;
  std::size_t records = 0;
  std::size_t fitting_records = 0;
  auto fits_from = static_cast<std::uint64_t>(info->st_size);
  BackwardLines lines(fd_.get(), fits_from, what);
  for (;;) {
    auto line = lines.next();
    if (!line) return tl::unexpected(line.error());
    if (!*line) break;
    const auto grant = parse_grant_fields((*line)->text);
    if (!grant) continue;
    ++records;
    if (ended_at(*grant) < cutoff) continue;
    const auto length = (*line)->end - (*line)->offset;
    if (!kept.empty() && kept.back().offset == (*line)->end) {
      kept.back().offset = (*line)->offset;
      kept.back().length += length;
    } else {
      kept.push_back(Span{(*line)->offset, length});
    }
    ++kept_records;
    kept_bytes += length;
    if (kept_bytes <= target) {
      fits_from = (*line)->offset;
      ++fitting_records;
    }
  }
  if (kept_bytes > limits_.max_bytes) {
    // The oldest kept records go: the runs before fits_from, and the part of the one across it.
    while (!kept.empty() && kept.back().offset + kept.back().length <= fits_from) kept.pop_back();
    if (!kept.empty() && kept.back().offset < fits_from) {
      kept.back().length -= fits_from - kept.back().offset;
      kept.back().offset = fits_from;
    }
    kept_records = fitting_records;
  }
  std::reverse(kept.begin(), kept.end());

  auto replacement = sys::Replacement::create(path_);
  if (!replacement) return tl::unexpected(replacement.error());
  if (auto copied =
          copy_spans(fd_.get(), kept, replacement->fd(), what, "write " + replacement->temp_path());
      !copied) {
    return tl::unexpected(copied.error());
  }
  auto replaced = std::move(*replacement).commit();
  if (!replaced) return tl::unexpected(replaced.error());
  // Appends go to the new file from here; it ends on a whole line.
  fd_ = std::move(*replaced);
  torn_tail_ = false;
  if (auto synced = sys::sync_directory_of(path_); !synced) return tl::unexpected(synced.error());
  return records - kept_records;
}

}  // namespace jitd::state
