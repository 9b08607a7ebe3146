#pragma once
// Whole-file reads and writes that retry EINTR and report errno by what they were doing.
#include <string>
#include <string_view>

#include "jitd/core/error.hpp"

namespace jitd::sys {

// Reads `fd` to its end; an error reads "<what>: <strerror>".
[[nodiscard]] core::Result<std::string> read_all(int fd, const std::string& what);

// Writes all of `text`, however many write() calls it takes.
[[nodiscard]] core::Result<void> write_all(int fd, std::string_view text, const std::string& what);

}  // namespace jitd::sys
