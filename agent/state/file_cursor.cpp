#include "file_cursor.hpp"

#include <cstdio>

namespace jitd::state {

core::Error bad_cursor(const std::string& cursor, const std::string& why) {
  return {core::ErrorCode::invalid_request, "cursor: '" + cursor.substr(0, 40) + "' " + why};
}

std::string file_cursor(const struct stat& file, std::uint64_t offset) {
  return std::to_string(file.st_ino) + ":" + std::to_string(offset);
}

core::Result<FileCursor> split_file_cursor(const std::string& cursor) {
  unsigned long long inode = 0;
  unsigned long long at = 0;
  char rest = 0;
  if (std::sscanf(cursor.c_str(), "%llu:%llu%c", &inode, &at, &rest) != 2) {
    return tl::unexpected(bad_cursor(cursor, "is not a cursor this jitd gave out"));
  }
  return FileCursor{inode, at};
}

core::Result<std::uint64_t> parse_file_cursor(const std::string& cursor, const struct stat& file,
                                              std::string_view name) {
  const auto parts = split_file_cursor(cursor);
  if (!parts) return tl::unexpected(parts.error());
  if (parts->inode != file.st_ino || parts->offset > static_cast<std::uint64_t>(file.st_size)) {
    return tl::unexpected(
        bad_cursor(cursor, "belongs to " + std::string(name) + " that was replaced"));
  }
  return parts->offset;
}

}  // namespace jitd::state
