#pragma once
// The grant journal on disk: <state dir>/grants.journal.
//
// Records are appended with O_APPEND, one write() each, and fdatasync'd together by sync(); the
// format and its replay are in journal_format.hpp. Compaction rewrites the file with the live
// grants only (write temp, fsync, rename, fsync directory): at open when the file is damaged, of
// an older format or mostly dead weight (a clean one is kept as it is), and, by the daemon's
// housekeeping, once ended records pile up; the history of ended grants stays in the audit log.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/journal.hpp"
#include "jitd/state/journal_format.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace jitd::state {

// The file's replay (its live_lines move into the journal for compaction), and where the
// damaged original is kept.
struct JournalReplay : TextReplay {
  std::filesystem::path damaged_copy;  // the file as it was before dropping, when damaged
};

class FileJournal final : public core::Journal {
 public:
  // Reads (and replays) the journal, compacts it if it needs it, and opens it for appending. A damaged
  // file never fails the open; an unreadable one, or one of a newer format version, does.
  [[nodiscard]] static core::Result<std::unique_ptr<FileJournal>> open(std::filesystem::path path,
                                                                       std::string boot_id,
                                                                       JournalReplay& replay);

  [[nodiscard]] core::Result<void> record_grant(const core::Grant& grant) override;
  [[nodiscard]] core::Result<void> record_end(const std::string& id, core::GrantStatus status,
                                              const std::string& reason) override;
  [[nodiscard]] core::Result<void> sync() override;

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

  // Whether ended records clearly outnumber the live ones. Compaction costs in proportion to
  // the live records, so the daemon runs it between expiry passes, not in one: after a storm
  // few are left.
  [[nodiscard]] bool compaction_due() const;
  // Rewrites the file with the live records only (write temp, fsync, rename, fsync directory).
  // On failure the journal stays valid and compaction_due() stays true.
  [[nodiscard]] core::Result<void> compact();

 private:
  FileJournal(std::filesystem::path path, std::string boot_id);
  [[nodiscard]] core::Result<void> append(std::string_view line);
  // compact() from `live_lines` (at open) rather than from the records in the current file.
  [[nodiscard]] core::Result<void> compact_from(
      const std::map<std::string, std::string>& live_lines);

  // Where a live grant's latest record is in the current file. Only the place is kept, not
  // the line: at 100,000 live grants the lines would take tens of MiB for compaction alone.
  struct Span {
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
  };

  std::filesystem::path path_;
  std::string boot_id_;
  sys::UniqueFd fd_;
  sys::UniqueFd lock_;  // flock'd for the journal's lifetime: one writer per state directory
  std::map<std::string, Span> live_spans_;  // id → its latest grant record
  std::uint64_t size_ = 0;                  // of the current file, as appended
  std::size_t ended_since_compaction_ = 0;
};

}  // namespace jitd::state
