#include "jitd/api/listen_socket.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "jitd/sys/file_safety.hpp"
#include "jitd/sys/system_error.hpp"

namespace jitd::api {

namespace {

tl::unexpected<core::Error> failed(const std::string& what) {
  return sys::fail_system(core::ErrorCode::io, what, errno);
}

// Whatever is at `path` must be a socket left by an earlier run: anything else (a file, a
// link to one) belongs to someone else and stays.
core::Result<void> remove_stale_socket(const std::string& path) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return {};
    return failed("socket path " + path);
  }
  if (!S_ISSOCK(info.st_mode)) {
    return core::fail(core::ErrorCode::io,
                      "socket path " + path + " exists and is " +
                          std::string(sys::file_type(info.st_mode)) +
                          ", not a socket; jitd replaces only a stale socket: move it away or choose another "
                          "socketPath",
                      EEXIST);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return failed("remove stale socket " + path);
  }
  return {};
}

}  // namespace

core::Result<sockaddr_un> unix_address(const std::filesystem::path& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const auto& text = path.native();
  if (text.size() >= sizeof address.sun_path) {
    return core::fail(core::ErrorCode::invalid_argument,
                      "socket path " + text + " is longer than " +
                          std::to_string(sizeof address.sun_path - 1) +
                          " bytes, the most a Unix socket address holds");
  }
  std::memcpy(address.sun_path, text.c_str(), text.size() + 1);
  return address;
}

core::Result<sys::UniqueFd> open_listen_socket(const std::filesystem::path& path,
                                               std::optional<gid_t> group, mode_t mode) {
  const auto address = unix_address(path);
  if (!address) return tl::unexpected(address.error());
  const auto& text = path.native();
  const auto directory = path.parent_path();
  if (auto checked = sys::open_trusted_directory(directory, sys::CreateMissing::no, 0,
                                                 "socket directory " + directory.string());
      !checked) {
    return tl::unexpected(checked.error());
  }
  if (auto removed = remove_stale_socket(text); !removed) return tl::unexpected(removed.error());

  sys::UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listener) return failed("socket for " + text);
  // The socket is born with its mode: there is no moment in which others may connect.
  const mode_t previous = ::umask(~mode & 0777);
  const int bound = ::bind(listener.get(), reinterpret_cast<const sockaddr*>(&*address),
                           sizeof *address);
  ::umask(previous);
  if (bound != 0) return failed("bind " + text);
  // Never through a link, should one replace the socket after bind.
  if (group && ::fchownat(AT_FDCWD, text.c_str(), 0, *group, AT_SYMLINK_NOFOLLOW) != 0) {
    return failed("chown socket " + text);
  }
  if (::listen(listener.get(), 64) != 0) return failed("listen " + text);
  return listener;
}

}  // namespace jitd::api
