#pragma once
// The audit log: one JSON object per line in <state dir>/audit.jsonl, appended with one
// write() per event, so a crash of jitd never loses a recorded decision. The grant journal is
// what a request waits for; the audit log is synced by the daemon shortly after it was written
// (and at stop), so a burst (an expiry storm) shares one sync. Not thread-safe: the daemon's
// event loop is its one writer.
//
// Rotation (core::AuditRotation::jitd): between two records, once the file holds max_bytes or its
// first record is max_age old, it is synced, renamed to audit.jsonl.<n> (<n> from 1, larger is
// newer) and a new audit.jsonl is created, so a record is never split or lost. Rotated files
// whose last write is older than the retention are unlinked (at a rotation and by prune()).
// With core::AuditRotation::external another tool (logrotate) renames the file: before each write,
// jitd compares the inode at the path with the one it writes to and reopens the path when they
// differ; it then neither rotates nor prunes, and reads only the file it writes to.
//
// Reads go forward, oldest first, across the rotated files and then the current one. Cursors
// are "<inode>:<offset>" of a file, so they stay valid across a rotation (a rename keeps the
// inode); a cursor into a file pruned since starts at the oldest record that remains.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/audit.hpp"
#include "jitd/core/duration.hpp"
#include "jitd/core/error.hpp"
#include "jitd/state/sealed_files.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace jitd::state {

[[nodiscard]] std::string to_json_line(const core::AuditEvent& event);

// The records in `text` (whole lines) that match `query`'s filters, from the start of `text`:
// at most `limit`; `consumed` is the length of the lines looked at.
struct AuditMatches {
  std::vector<std::string> records;
  std::size_t consumed = 0;
};
[[nodiscard]] AuditMatches match_audit_lines(std::string_view text, const core::AuditQuery& query);

struct AuditLimits {
  core::AuditRotation rotation = core::AuditRotation::jitd;
  std::uint64_t max_bytes = std::uint64_t{64} << 20;  // rotate once the file holds this much
  core::Milliseconds max_age =
      std::chrono::days(1);  // ... or its first record is this old; 0: never
  core::Milliseconds retention = std::chrono::days(90);  // rotated files older than this go
  // What one read scans at most before it answers a short page and a cursor: a filter that
  // matches little must not scan a large log on the daemon's only thread.
  std::size_t max_scan_bytes = std::size_t{1} << 20;
};

class AuditLog final : public core::AuditSink, public core::AuditReader {
 public:
  [[nodiscard]] static core::Result<std::unique_ptr<AuditLog>> open(std::filesystem::path path,
                                                                    AuditLimits limits = {});
  void record(const core::AuditEvent& event) override;
  // fdatasync() when records were written since the last sync.
  [[nodiscard]] core::Result<void> sync();
  [[nodiscard]] bool unsynced() const { return unsynced_; }
  [[nodiscard]] core::Result<core::AuditPage> read(const core::AuditQuery& query) const override;
  // Unlinks the rotated files last written before now - retention; returns how many went.
  [[nodiscard]] core::Result<std::size_t> prune(core::TimePoint now);
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] const std::vector<SealedSegment>& rotated() const { return rotated_; }

 private:
  AuditLog(std::filesystem::path path, AuditLimits limits, sys::UniqueFd directory,
           std::vector<SealedSegment> rotated);
  [[nodiscard]] core::Result<void> open_current();
  // Rotates (jitd) or reopens a file renamed by another tool (external) when it is due.
  [[nodiscard]] core::Result<void> before_write(core::TimePoint now);
  [[nodiscard]] core::Result<void> rotate(core::TimePoint now);

  std::filesystem::path path_;
  std::string name_;  // path_'s file name in directory_
  AuditLimits limits_;
  sys::UniqueFd directory_;
  std::vector<SealedSegment> rotated_;  // oldest first; empty with external rotation
  std::uint64_t next_number_ = 1;
  sys::UniqueFd fd_;  // read and append
  // When the current file's first record was written: what max_age counts from.
  std::optional<core::TimePoint> first_record_;
  bool unsynced_ = false;
  bool failing_ = false;  // rotation or reopening fails: said once, not per record
};

}  // namespace jitd::state
