#pragma once
// Files that jitd appends to and, once full, renames beside themselves as "<name>.<n>" (<n>
// decimal from 1, larger is newer) to start anew: the grant history's segments and the audit
// log's rotated files. Cursors name such a file by inode, which the rename keeps.
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/clock.hpp"
#include "jitd/core/error.hpp"

namespace jitd::state {

struct SealedSegment {
  std::uint64_t number = 0;
  ino_t inode = 0;  // what cursors into it name
  std::uint64_t size = 0;
  core::TimePoint modified{};  // its last write: when its newest record was written
};

// "<active>.<number>".
[[nodiscard]] std::string sealed_name(const std::string& active, std::uint64_t number);

// The <n> of a sealed file's name "<active>.<n>"; nullopt for any other name (the old
// rewrite's "<active>.tmp", other state files).
[[nodiscard]] std::optional<std::uint64_t> sealed_number(std::string_view name,
                                                         const std::string& active);

// The directory of `path` ("." for a bare name), to open and list.
[[nodiscard]] std::string directory_of(const std::filesystem::path& path);

// The sealed files beside the active one `name` in `directory`, oldest first; something other
// than a regular file under such a name is an error. `what` starts error messages.
[[nodiscard]] core::Result<std::vector<SealedSegment>> list_sealed(int directory_fd,
                                                                   const std::string& directory,
                                                                   const std::string& name,
                                                                   const std::string& what);

}  // namespace jitd::state
