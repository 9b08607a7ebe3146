#include "jitd/state/sealed_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <system_error>

#include "jitd/sys/file_safety.hpp"
#include "jitd/sys/system_error.hpp"

namespace jitd::state {

std::string sealed_name(const std::string& active, std::uint64_t number) {
  return active + "." + std::to_string(number);
}

std::optional<std::uint64_t> sealed_number(std::string_view name, const std::string& active) {
  if (name.size() <= active.size() + 1 || name.substr(0, active.size()) != active ||
      name[active.size()] != '.') {
    return std::nullopt;
  }
  const auto digits = name.substr(active.size() + 1);
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  std::uint64_t number = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
  if (error != std::errc{} || end != digits.data() + digits.size()) return std::nullopt;
  return number;
}

std::string directory_of(const std::filesystem::path& path) {
  return path.has_parent_path() ? path.parent_path().string() : ".";
}

core::Result<std::vector<SealedSegment>> list_sealed(int directory_fd, const std::string& directory,
                                                     const std::string& name,
                                                     const std::string& what) {
  std::vector<SealedSegment> sealed;
  std::error_code error;
  for (std::filesystem::directory_iterator entry(directory, error), end; !error && entry != end;
       entry.increment(error)) {
    const auto file = entry->path().filename().string();
    const auto number = sealed_number(file, name);
    if (!number) continue;
    struct stat info {};
    if (::fstatat(directory_fd, file.c_str(), &info, AT_SYMLINK_NOFOLLOW) != 0) {
      return sys::fail_system(core::ErrorCode::io, what + ": " + file, errno);
    }
    if (!S_ISREG(info.st_mode)) {
      return core::fail(core::ErrorCode::io, what + ": " + file + " is " +
                                                 std::string(sys::file_type(info.st_mode)) +
                                                 ", not a segment");
    }
    const auto modified = std::chrono::sys_seconds(std::chrono::seconds(info.st_mtim.tv_sec)) +
                          std::chrono::nanoseconds(info.st_mtim.tv_nsec);
    sealed.push_back({*number, info.st_ino, static_cast<std::uint64_t>(info.st_size),
                      std::chrono::floor<std::chrono::milliseconds>(modified)});
  }
  if (error)
    return sys::fail_system(core::ErrorCode::io, what + ": list " + directory, error.value());
  std::sort(sealed.begin(), sealed.end(),
            [](const SealedSegment& a, const SealedSegment& b) { return a.number < b.number; });
  return sealed;
}

}  // namespace jitd::state
