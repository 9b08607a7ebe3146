#include "jitd/state/file_journal.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <optional>
#include <utility>

#include "jitd/core/failpoint.hpp"
#include "jitd/sys/files.hpp"
#include "jitd/sys/system_error.hpp"

namespace jitd::state {

namespace {

// Ended records are dead weight; rewrite once they clearly outnumber the live ones.
constexpr std::size_t compaction_min_ended = 256;
// When the live records are less than this fraction of the file, compaction reads them back
// one by one instead of reading the whole file (after an expiry storm: 2 MB out of 44 MB).
constexpr std::uint64_t sparse_ratio = 8;

tl::unexpected<core::Error> io_failure(const std::string& what, int error) {
  return sys::fail_system(core::ErrorCode::io, what, error);
}

// The whole file, or nullopt when there is none.
core::Result<std::optional<std::string>> read_whole(const std::filesystem::path& path) {
  sys::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::nullopt;
    return io_failure("open journal " + path.string(), errno);
  }
  return sys::read_all(fd.get(), "read journal " + path.string());
}

}  // namespace

FileJournal::FileJournal(std::filesystem::path path, std::string boot_id)
    : path_(std::move(path)), boot_id_(std::move(boot_id)) {}

core::Result<std::unique_ptr<FileJournal>> FileJournal::open(std::filesystem::path path,
                                                             std::string boot_id,
                                                             JournalReplay& replay) {
  replay = JournalReplay{};
  const auto text = read_whole(path);
  if (!text) return tl::unexpected(text.error());

  std::unique_ptr<FileJournal> journal(new FileJournal(std::move(path), std::move(boot_id)));
  // Two daemons appending to one journal would interleave records; the second must not start.
  const auto lock_path = journal->path_.string() + ".lock";
  journal->lock_.reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!journal->lock_) return io_failure("open " + lock_path, errno);
  if (::flock(journal->lock_.get(), LOCK_EX | LOCK_NB) != 0) {
    return io_failure("lock " + lock_path + " (is another jitd using this state directory?)",
                      errno);
  }
  if (*text) {
    auto replayed = replay_journal(**text, journal->path_.filename().string());
    if (!replayed) {
      return core::fail(replayed.error().code,
                        "journal " + journal->path_.string() + ": " + replayed.error().message);
    }
    static_cast<TextReplay&>(replay) = std::move(*replayed);
    if (!replay.dropped.empty()) {
      // Compaction drops the damaged bytes; keep the original for whoever investigates.
      const auto copy = journal->path_.string() + ".damaged";
      sys::UniqueFd saved(::open(copy.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
      if (saved && sys::write_all(saved.get(), **text, "write " + copy)) {
        replay.damaged_copy = copy;
      }
    }
  }
  // A clean journal of this version with little dead weight is kept as it is: rewriting 38 MB
  // at every start with 100,000 live grants costs a third of a second and a sync.
  if (*text && replay.dropped.empty() && replay.current_header) {
    const auto dead = replay.records - replay.live.size();
    if (dead <= compaction_min_ended || dead <= 2 * replay.live.size()) {
      journal->fd_.reset(::open(journal->path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
      if (!journal->fd_) return io_failure("open journal " + journal->path_.string(), errno);
      for (const auto& [id, line] : replay.live_lines) {
        journal->live_spans_.emplace(id, Span{replay.live_offsets.at(id), line.size()});
      }
      journal->size_ = (*text)->size();
      journal->ended_since_compaction_ = dead;
      replay.live_lines.clear();
      return journal;
    }
  }
  // Also what creates a missing journal, and what cuts a torn tail off before the first
  // append could glue a record onto it. It leaves fd_ open for appending.
  if (auto compacted = journal->compact_from(std::exchange(replay.live_lines, {})); !compacted) {
    return tl::unexpected(std::move(compacted.error()));
  }
  return journal;
}

core::Result<void> FileJournal::record_grant(const core::Grant& grant) {
  auto line = grant_record(grant, boot_id_);
  if (!line) return tl::unexpected(std::move(line.error()));
  const auto offset = size_;
  if (auto appended = append(*line); !appended) return appended;
  live_spans_[grant.id] = Span{offset, line->size()};
  return {};
}

core::Result<void> FileJournal::record_end(const std::string& id, core::GrantStatus status,
                                           const std::string& reason) {
  if (auto appended = append(end_record(id, status, reason)); !appended) return appended;
  live_spans_.erase(id);
  ++ended_since_compaction_;
  return {};
}

bool FileJournal::compaction_due() const {
  return ended_since_compaction_ > compaction_min_ended &&
         ended_since_compaction_ > 2 * live_spans_.size();
}

core::Result<void> FileJournal::append(std::string_view line) {
  const auto what = "append to journal " + path_.string();
  // Crash tests need half a record in the file when the process dies; production never splits.
  if (core::failpoints_enabled()) {
    const auto half = line.substr(0, line.size() / 2);
    if (auto first = sys::append_record(fd_.get(), half, what); !first) return first;
    core::failpoint("journal_mid_record");
    if (auto rest = sys::append_record(fd_.get(), line.substr(half.size()), what); !rest) {
      sys::cut_tail(fd_.get(), half.size());
      return rest;
    }
  } else if (auto whole = sys::append_record(fd_.get(), line, what); !whole) {
    return whole;
  }
  size_ += line.size();
  return {};
}

core::Result<void> FileJournal::sync() {
  if (auto synced = sys::sync_data(fd_.get(), "sync journal " + path_.string()); !synced) {
    return synced;
  }
  core::failpoint("after_journal_sync");
  return {};
}

core::Result<void> FileJournal::compact() {
  std::map<std::string, std::string> live_lines;
  const auto what = "compact journal " + path_.string();
  sys::UniqueFd file(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file) return io_failure(what, errno);
  std::uint64_t live_bytes = 0;
  for (const auto& [id, span] : live_spans_) live_bytes += span.length;
  if (live_bytes * sparse_ratio < size_) {
    // After an expiry storm: a few records to read back from a large file, one by one.
    for (const auto& [id, span] : live_spans_) {
      std::string line(span.length, '\0');
      const auto got =
          ::pread(file.get(), line.data(), line.size(), static_cast<off_t>(span.offset));
      if (got != static_cast<ssize_t>(line.size())) {
        return got < 0 ? io_failure(what, errno)
                       : core::fail(core::ErrorCode::io, what + ": a live record is cut short");
      }
      live_lines.emplace(id, std::move(line));
    }
    return compact_from(live_lines);
  }
  // Many: the whole file in one read; the text is gone again when the rewrite is done.
  auto text = sys::read_all(file.get(), what);
  if (!text) return tl::unexpected(text.error());
  if (text->size() < size_) {
    return core::fail(core::ErrorCode::io, what + ": the file is shorter than what was appended");
  }
  for (const auto& [id, span] : live_spans_) {
    live_lines.emplace(id, text->substr(span.offset, span.length));
  }
  return compact_from(live_lines);
}

core::Result<void> FileJournal::compact_from(const std::map<std::string, std::string>& live_lines) {
  const auto text = compacted_journal(live_lines);
  auto replaced = sys::replace_synced(path_, text);
  if (!replaced) return tl::unexpected(replaced.error());
  // The old descriptor refers to the replaced file: appends go to the new one from here.
  fd_ = std::move(*replaced);
  ended_since_compaction_ = 0;
  // compacted_journal() writes the header, then the lines in id order.
  std::map<std::string, Span> spans;
  std::uint64_t offset = text.size();
  for (auto it = live_lines.rbegin(); it != live_lines.rend(); ++it) {
    offset -= it->second.size();
    spans.emplace_hint(spans.begin(), it->first, Span{offset, it->second.size()});
  }
  live_spans_ = std::move(spans);
  size_ = text.size();
  return sys::sync_directory_of(path_);
}

}  // namespace jitd::state
