#pragma once
// The audit log: one JSON object per line in <state dir>/audit.jsonl, appended with one
// write() per event, so a crash of jitd never loses a recorded decision. The grant journal is
// what a request waits for; the audit log is synced by the daemon shortly after it was written
// (and at stop), so a burst (an expiry storm) shares one sync. Not thread-safe: the daemon's
// event loop is its one writer.
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/audit.hpp"
#include "jitd/core/error.hpp"
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

class AuditLog final : public core::AuditSink, public core::AuditReader {
 public:
  [[nodiscard]] static core::Result<std::unique_ptr<AuditLog>> open(std::filesystem::path path);
  void record(const core::AuditEvent& event) override;
  // fdatasync() when records were written since the last sync.
  [[nodiscard]] core::Result<void> sync();
  [[nodiscard]] bool unsynced() const { return unsynced_; }
  // Cursors name the file (its inode) and a byte offset in it.
  [[nodiscard]] core::Result<core::AuditPage> read(const core::AuditQuery& query) const override;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  AuditLog(std::filesystem::path path, sys::UniqueFd fd);
  std::filesystem::path path_;
  sys::UniqueFd fd_;
  bool unsynced_ = false;
};

}  // namespace jitd::state
