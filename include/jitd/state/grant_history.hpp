#pragma once
// The history of ended grants on disk: <state dir>/history.jsonl, one grant per line as the
// journal writes it (grant_fields_json), appended with O_APPEND and one write() when the grant
// ends, so the file is in end order and a query reads it backwards from its end.
//
// Not synced: the grant journal is the durable record, and the history is for people. A write()
// survives a crash of jitd at once and reaches the disk with the kernel's writeback; a power
// loss may cost the last seconds of history, never a grant. A crash mid-write leaves a torn last
// line: readers skip any line that does not parse, and the next record starts on a new line.
//
// Cursors are "<inode>:<offset>": the next page holds the records that end before that offset,
// so pages stay put while records are appended; prune() replaces the file, and a cursor into
// the replaced file is refused. Not thread-safe: the daemon's event loop is its one user.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "jitd/core/duration.hpp"
#include "jitd/core/history.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace jitd::state {

struct HistoryLimits {
  // Grants that ended longer ago than this are pruned.
  core::Milliseconds retention = std::chrono::days(90);
  // A file larger than this (after retention) loses its oldest grants down to 3/4 of it, so
  // that the next few appends do not make the next prune rewrite it again.
  std::uint64_t max_bytes = std::uint64_t{64} << 20;
  // What one query reads at most before it answers a short page and a cursor: a filter that
  // matches little must not scan a large file on the daemon's only thread.
  std::size_t max_scan_bytes = std::size_t{1} << 20;
};

class FileGrantHistory final : public core::GrantHistory {
 public:
  // Opens the file for appending, created (mode 0600) if missing. Reads nothing but its size
  // and last byte, so a large history never slows a start. Refuses a link or a non-regular file.
  [[nodiscard]] static core::Result<std::unique_ptr<FileGrantHistory>> open(const std::string& path,
                                                                            HistoryLimits limits);

  [[nodiscard]] core::Result<void> record(const core::Grant& ended) override;
  // The newest record of `id`: a scan from the end, O(file) in time, bounded in memory.
  [[nodiscard]] core::Result<std::optional<core::Grant>> find(const std::string& id) const override;
  [[nodiscard]] core::Result<core::HistoryPage> query(
      const core::HistoryQuery& query) const override;
  // Rewrites the file (temporary sibling, fdatasync, rename, directory fsync) without what ended
  // before now - retention, then without the oldest beyond max_bytes; unparsable lines go too.
  // Cheap when nothing is due: the size and the first record's end time decide. Returns how
  // many records were dropped.
  [[nodiscard]] core::Result<std::size_t> prune(core::TimePoint now) override;

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  FileGrantHistory(std::filesystem::path path, HistoryLimits limits, sys::UniqueFd fd,
                   bool torn_tail);
  [[nodiscard]] core::Result<bool> prune_due(core::TimePoint cutoff) const;

  std::filesystem::path path_;
  HistoryLimits limits_;
  sys::UniqueFd fd_;  // read and append; replaced by prune()
  // The file does not end in '\n' (a torn record, or a failed append that could not be taken
  // back): the next record starts with one, so it never continues the broken line.
  bool torn_tail_ = false;
};

}  // namespace jitd::state
