#include "jitd/sys/file_safety.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "jitd/sys/files.hpp"
#include "jitd/sys/system_error.hpp"

namespace jitd::sys {

namespace {

using core::ErrorCode;

std::string octal(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

}  // namespace

std::string_view file_type(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFDIR: return "a directory";
    case S_IFLNK: return "a symbolic link";
    case S_IFIFO: return "a FIFO";
    case S_IFSOCK: return "a socket";
    case S_IFCHR:
    case S_IFBLK: return "a device";
    default: return "a regular file";
  }
}

namespace {

// A failed open without following links: says "symbolic link" when that is why, whatever
// errno the flags made the kernel choose (ELOOP, or ENOTDIR with O_DIRECTORY).
tl::unexpected<core::Error> open_failed(int directory_fd, const std::string& name, int error,
                                        const std::string& what) {
  struct stat info {};
  if ((error == ELOOP || error == ENOTDIR) &&
      ::fstatat(directory_fd, name.c_str(), &info, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISLNK(info.st_mode)) {
    return core::fail(ErrorCode::io, what + ": is a symbolic link; jitd does not follow links here",
                      error);
  }
  return fail_system(ErrorCode::io, what, error);
}

}  // namespace

core::Result<void> check_trusted(const struct stat& info, const std::string& what) {
  if (info.st_uid != 0 && info.st_uid != ::geteuid()) {
    return core::fail(ErrorCode::io,
                      what + ": owned by uid " + std::to_string(info.st_uid) +
                          ", not root; only root may control jitd",
                      EPERM);
  }
  std::string bits;
  if ((info.st_mode & S_IWGRP) != 0) bits = "g+w";
  if ((info.st_mode & S_IWOTH) != 0) bits += (bits.empty() ? "" : ", ") + std::string("o+w");
  if (!bits.empty()) {
    return core::fail(ErrorCode::io,
                      what + ": mode " + octal(info.st_mode) + " lets others change it (" + bits +
                          "); only root may control jitd",
                      EPERM);
  }
  return {};
}

core::Result<UniqueFd> open_nofollow(int directory_fd, const std::string& name, int flags,
                                     const std::string& what, mode_t mode) {
  UniqueFd fd(
      ::openat(directory_fd, name.c_str(), flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode));
  if (!fd) return open_failed(directory_fd, name, errno, what);
  return fd;
}

core::Result<struct stat> stat_open(int fd, const std::string& what) {
  struct stat info {};
  if (::fstat(fd, &info) != 0) return fail_system(ErrorCode::io, what, errno);
  return info;
}

namespace {

core::Result<void> require_regular(const struct stat& info, const std::string& what) {
  if (S_ISREG(info.st_mode)) return {};
  return core::fail(ErrorCode::io,
                    what + ": is " + std::string(file_type(info.st_mode)) + ", not a regular file");
}

}  // namespace

core::Result<void> require_regular(int fd, const std::string& what) {
  const auto info = stat_open(fd, what);
  if (!info) return tl::unexpected(info.error());
  return require_regular(*info, what);
}

core::Result<std::string> read_regular(int fd, const struct stat& info, std::size_t max_bytes,
                                       const std::string& what) {
  if (auto regular = require_regular(info, what); !regular) return tl::unexpected(regular.error());
  if (static_cast<std::size_t>(info.st_size) > max_bytes) {
    return core::fail(ErrorCode::io, what + ": " + std::to_string(info.st_size) +
                                         " bytes is larger than the limit of " +
                                         std::to_string(max_bytes) + " bytes");
  }
  return read_all(fd, what, max_bytes);
}

core::Result<UniqueFd> open_trusted_directory(const std::filesystem::path& path,
                                              CreateMissing create, mode_t mode,
                                              const std::string& what) {
  bool created = false;
  if (create == CreateMissing::yes) {
    std::filesystem::path partial;
    for (const auto& component : path) {
      partial /= component;
      created = ::mkdir(partial.c_str(), mode) == 0;
      if (!created && errno != EEXIST) {
        return fail_system(ErrorCode::io, what + ": create " + partial.string(), errno);
      }
    }
  }
  auto fd = open_nofollow(AT_FDCWD, path.string(), O_RDONLY | O_DIRECTORY, what);
  if (!fd) return fd;
  const auto info = stat_open(fd->get(), what);
  if (!info) return tl::unexpected(info.error());
  if (auto trusted = check_trusted(*info, what); !trusted) return tl::unexpected(trusted.error());
  // Only a directory jitd made itself gets jitd's mode (mkdir's was narrowed by the umask);
  // one that was there keeps the mode its owner chose.
  if (created && ::fchmod(fd->get(), mode) != 0) {
    return fail_system(ErrorCode::io, what + ": chmod", errno);
  }
  return fd;
}

core::Result<std::string> read_secret(const std::filesystem::path& path, std::size_t max_bytes,
                                      const std::string& what) {
  auto fd = open_nofollow(AT_FDCWD, path.string(), O_RDONLY, what);
  if (!fd) return tl::unexpected(fd.error());
  const auto info = stat_open(fd->get(), what);
  if (!info) return tl::unexpected(info.error());
  if (auto trusted = check_trusted(*info, what); !trusted) return tl::unexpected(trusted.error());
  if ((info->st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return core::fail(ErrorCode::io,
                      what + ": mode " + octal(info->st_mode) +
                          " lets others read it; a secret must be mode 0600 or 0400",
                      EPERM);
  }
  return read_regular(fd->get(), *info, max_bytes, what);
}

}  // namespace jitd::sys
