#pragma once
// Whole-file reads and writes that retry EINTR, and durable appends of one record, reporting
// errno by what they were doing.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>

#include "jitd/core/error.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace jitd::sys {

// Reads `fd` to its end; an error reads "<what>: <strerror>". More than `max_bytes` is an
// error ("<what>: larger than <max_bytes> bytes"), found without reading much past the bound.
[[nodiscard]] core::Result<std::string> read_all(
    int fd, const std::string& what,
    std::size_t max_bytes = std::numeric_limits<std::size_t>::max());

// Up to `length` bytes at `offset` (pread, EINTR retried); fewer only where the file ends.
[[nodiscard]] core::Result<std::string> read_at(int fd, std::uint64_t offset, std::size_t length,
                                                const std::string& what);

// Writes all of `text`, however many write() calls it takes.
[[nodiscard]] core::Result<void> write_all(int fd, std::string_view text, const std::string& what);

// Appends `record` with one write() (on an O_APPEND descriptor a crash leaves at most a torn
// tail). It survives a crash of the process at once and a crash of the machine once synced
// (sync_data). A short write means the disk (or a size limit) is full: it is reported as
// "<what>: short write (n of m bytes)", not retried. On failure the part that reached the
// file is taken back (cut_tail), so the next record starts on a clean line.
[[nodiscard]] core::Result<void> append_record(int fd, std::string_view record,
                                               const std::string& what);

// fdatasync(): every record appended so far is on disk. Several records share one sync.
[[nodiscard]] core::Result<void> sync_data(int fd, const std::string& what);

// The new content of the file at `path`, written to a temporary sibling (`path`.tmp, mode
// 0600, open for reading and appending) and put in place by commit(), so that a crash leaves
// the old file or the new one, never a mix. For contents too large to hold in memory at once;
// a temporary never committed is removed on destruction.
class Replacement {
 public:
  [[nodiscard]] static core::Result<Replacement> create(const std::filesystem::path& path);
  Replacement(Replacement&&) noexcept = default;
  Replacement& operator=(Replacement&&) = delete;
  Replacement(const Replacement&) = delete;
  Replacement& operator=(const Replacement&) = delete;
  ~Replacement();

  [[nodiscard]] int fd() const { return fd_.get(); }
  [[nodiscard]] const std::string& temp_path() const { return temp_; }
  // fdatasync()s the temporary and renames it over `path`; returns it (still open for
  // appending). The rename is durable only once the caller has synced the directory
  // (sync_directory_of), after it took the new descriptor.
  [[nodiscard]] core::Result<UniqueFd> commit() &&;

 private:
  Replacement(std::filesystem::path path, std::string temp, UniqueFd fd);
  std::filesystem::path path_;
  std::string temp_;
  UniqueFd fd_;  // empty once committed or moved from: nothing left to remove
};

// Replaces the file at `path` with `text` (a Replacement written and committed at once).
[[nodiscard]] core::Result<UniqueFd> replace_synced(const std::filesystem::path& path,
                                                    std::string_view text);

// fsync()s the directory holding `file`, so that a rename or a creation in it is durable.
[[nodiscard]] core::Result<void> sync_directory_of(const std::filesystem::path& file);

// Takes the last `bytes` bytes back off the file after a failed append: the caller hears that
// the record failed, so it must not come back. Best effort: if this fails too, the fragment
// stays and the next record is glued onto it.
void cut_tail(int fd, std::size_t bytes);

}  // namespace jitd::sys
