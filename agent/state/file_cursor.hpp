#pragma once
// Cursors of the readers that page through a file jitd appends to (the audit log, the grant
// history): "<inode>:<offset>". The inode makes an offset into a file since replaced (rotated,
// pruned) an error rather than a page of the wrong records.
#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "jitd/core/error.hpp"

namespace jitd::state {

[[nodiscard]] std::string file_cursor(const struct stat& file, std::uint64_t offset);

struct FileCursor {
  std::uint64_t inode = 0;
  std::uint64_t offset = 0;
};

// The parts of a cursor, for a reader of several files (the segments of the grant history) to
// find the file it names; errors as parse_file_cursor's.
[[nodiscard]] core::Result<FileCursor> split_file_cursor(const std::string& cursor);

// An invalid_request error about `cursor`: "cursor: '<cursor>' <why>".
[[nodiscard]] core::Error bad_cursor(const std::string& cursor, const std::string& why);

// The offset of a cursor given out for `file` (at most its size); errors are invalid_request
// and start with "cursor:". `name` says what the file is ("audit log").
[[nodiscard]] core::Result<std::uint64_t> parse_file_cursor(const std::string& cursor,
                                                            const struct stat& file,
                                                            std::string_view name);

}  // namespace jitd::state
