#include "jitd/daemon/host.hpp"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include <spdlog/spdlog.h>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <vector>

#include "jitd/core/hex.hpp"
#include "jitd/sys/accounts.hpp"
#include "jitd/sys/file_safety.hpp"
#include "jitd/sys/files.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace jitd::daemon {

core::TimePoint SystemClock::now() const {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

core::Deadline SystemClock::boot_now() const {
  timespec boot{};
  clock_gettime(CLOCK_BOOTTIME, &boot);
  return core::Deadline{std::chrono::seconds(boot.tv_sec) +
                        std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::nanoseconds(boot.tv_nsec))};
}

std::string random_grant_id() {
  unsigned char bytes[8];
  // getrandom() of 8 bytes only returns short when interrupted before the pool is ready.
  while (getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) {
  }
  return core::to_hex(bytes, sizeof bytes);
}

std::string host_name() {
  utsname names{};
  if (uname(&names) != 0) return {};
  return names.nodename;
}

std::string current_boot_id() {
  const sys::UniqueFd fd(::open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  auto text = sys::read_all(fd.get(), "read boot id");
  if (!text) return {};
  return text->substr(0, text->find('\n'));
}

std::optional<gid_t> lookup_group(const std::string& name) {
  if (name.empty()) return std::nullopt;
  const auto id = sys::group_id(name);
  if (!id) {
    spdlog::warn("socket group: {}: only root may request and revoke", id.error().message);
    return std::nullopt;
  }
  if (!*id) {
    spdlog::warn("socket group '{}' does not exist: only root may request and revoke", name);
  }
  return *id;
}

core::Result<void> make_directory(const std::filesystem::path& path, mode_t mode) {
  auto opened = sys::open_trusted_directory(path, sys::CreateMissing::yes, mode,
                                            "directory " + path.string());
  if (!opened) return tl::unexpected(opened.error());
  return {};
}

core::Result<void> check_directory(const std::filesystem::path& path) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0 && errno == ENOENT) return {};
  auto opened =
      sys::open_trusted_directory(path, sys::CreateMissing::no, 0, "directory " + path.string());
  if (!opened) return tl::unexpected(opened.error());
  return {};
}

}  // namespace jitd::daemon
