#include "jitd/sys/files.hpp"

#include <unistd.h>

#include <array>
#include <cerrno>

#include "jitd/sys/system_error.hpp"

namespace jitd::sys {

core::Result<std::string> read_all(int fd, const std::string& what) {
  std::string text;
  std::array<char, 1 << 16> buffer{};
  for (;;) {
    const auto got = ::read(fd, buffer.data(), buffer.size());
    if (got == 0) return text;
    if (got > 0) {
      text.append(buffer.data(), static_cast<std::size_t>(got));
    } else if (errno != EINTR) {
      return fail_system(core::ErrorCode::io, what, errno);
    }
  }
}

core::Result<void> write_all(int fd, std::string_view text, const std::string& what) {
  while (!text.empty()) {
    const auto written = ::write(fd, text.data(), text.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return fail_system(core::ErrorCode::io, what, errno);
    }
    text.remove_prefix(static_cast<std::size_t>(written));
  }
  return {};
}

}  // namespace jitd::sys
