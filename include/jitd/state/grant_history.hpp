#pragma once
// The history of ended grants on disk, one grant per line as the journal writes it
// (grant_fields_json), in end order, kept as segments beside each other in the state directory:
//
//   history.jsonl      the active segment: appended with O_APPEND and one write() per grant
//   history.jsonl.<n>  sealed segments, never written again; a larger <n> is newer
//
// (the names are those of `path` with ".<n>" added; <n> is decimal, from 1, and only grows).
// Once the active segment holds segment_bytes or more, the record that got it there seals it:
// it is fdatasync()ed, renamed to the next <n> and a new, empty active segment is created
// (then the directory is fsync()ed). A history.jsonl of any size written before segments
// existed is thus read as it is, and sealed whole with the next record.
//
// prune() never rewrites: it unlinks whole sealed segments, the oldest first, so it costs a
// few reads and unlinks whatever the size of the history. The price is granularity: a record
// outlives its retention until the newest record of its segment is due, and the size bound
// holds to within one segment.
//
// Appends are not synced: the grant journal is the durable record, and the history is for
// people. A write() survives a crash of jitd at once and reaches the disk with the kernel's
// writeback; a power loss may cost the last seconds of history, never a grant. A crash
// mid-write leaves a torn last line: readers skip any line that does not parse, and the next
// record starts on a new line. A crash mid-seal leaves either the old active segment or it
// sealed and no active one, which open() creates.
//
// Cursors are "<inode>:<offset>" of a segment: the next page holds the records that end before
// that offset, then those of the older segments, so pages stay put while records are appended
// and across a seal (a rename keeps the inode). A cursor into a segment pruned since is refused
// (invalid_request): what it would have led to was older still, and is gone too. Not
// thread-safe: the daemon's event loop is its one user.
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "jitd/core/duration.hpp"
#include "jitd/core/history.hpp"
#include "jitd/state/sealed_files.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace jitd::state {

struct HistoryLimits {
  // Grants that ended longer ago than this are pruned (with the rest of their segment).
  core::Milliseconds retention = std::chrono::days(90);
  // Beyond this, the oldest segments are pruned.
  std::uint64_t max_bytes = std::uint64_t{64} << 20;
  // What one query reads at most before it answers a short page and a cursor: a filter that
  // matches little must not scan a large file on the daemon's only thread.
  std::size_t max_scan_bytes = std::size_t{1} << 20;
  // The size at which the active segment is sealed; 0: max_bytes / 16, within 256 KiB and
  // 4 MiB, so that the size bound cuts at most 1/16 too much and a full history is few files.
  std::uint64_t segment_bytes = 0;
};

class FileGrantHistory final : public core::GrantHistory {
 public:
  // Opens the active segment for appending, created (mode 0600) if missing, and lists the
  // sealed ones. Reads no record, so a large history never slows a start. Refuses a link or a
  // non-regular file as a segment.
  [[nodiscard]] static core::Result<std::unique_ptr<FileGrantHistory>> open(const std::string& path,
                                                                            HistoryLimits limits);

  // Appends, and seals the active segment once it is full.
  [[nodiscard]] core::Result<void> record(const core::Grant& ended) override;
  // The newest record of `id`: a scan from the newest end, O(history) in time, bounded in memory.
  [[nodiscard]] core::Result<std::optional<core::Grant>> find(const std::string& id) const override;
  [[nodiscard]] core::Result<core::HistoryPage> query(
      const core::HistoryQuery& query) const override;
  // Unlinks the oldest sealed segments while their newest record ended before now - retention,
  // then while the history is larger than max_bytes; an active segment whose newest record is
  // due is sealed and unlinked too. A segment without one readable record is damage, and goes.
  // Returns how many lines (records, and any damaged ones) went.
  [[nodiscard]] core::Result<std::size_t> prune(core::TimePoint now) override;

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  FileGrantHistory(std::filesystem::path path, HistoryLimits limits, sys::UniqueFd directory,
                   std::vector<SealedSegment> sealed);
  [[nodiscard]] core::Result<void> open_active();
  [[nodiscard]] core::Result<void> seal();
  [[nodiscard]] core::Result<std::size_t> drop_oldest();

  std::filesystem::path path_;
  std::string name_;  // path_'s file name, the active segment's name in directory_
  HistoryLimits limits_;
  sys::UniqueFd directory_;            // the state directory: segments are opened, renamed in it
  std::vector<SealedSegment> sealed_;  // oldest first
  std::uint64_t next_number_ = 1;
  // Read and append; empty after a seal that could not create the next active segment, which
  // the next record() creates.
  sys::UniqueFd active_;
  // The active segment does not end in '\n' (a torn record, or a failed append that could not
  // be taken back): the next record starts with one, so it never continues the broken line.
  bool torn_tail_ = false;
};

}  // namespace jitd::state
