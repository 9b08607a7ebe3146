#include "jitd/api/listen_socket.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <utility>

#include "jitd/sys/file_safety.hpp"
#include "jitd/sys/system_error.hpp"

namespace jitd::api {

namespace {

tl::unexpected<core::Error> failed(const std::string& what) {
  return sys::fail_system(core::ErrorCode::io, what, errno);
}

// Whether the socket at `address` may be in use: only a socket whose connect is refused was
// left by a dead process. Anything else (a listener, a full backlog, a datagram socket, no
// permission, no descriptor to probe with) counts as in use and is left alone.
bool maybe_in_use(const sockaddr_un& address) {
  sys::UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe) return true;
  return ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0 ||
         errno != ECONNREFUSED;
}

// Whatever is at `path` must be a socket left by an earlier run: anything else (a file, a
// link to one) belongs to someone else and stays, and so does a socket still in use.
core::Result<void> remove_stale_socket(const sockaddr_un& address) {
  const std::string path = address.sun_path;
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return {};
    return failed("socket path " + path);
  }
  if (!S_ISSOCK(info.st_mode)) {
    return core::fail(
        core::ErrorCode::io,
        "socket path " + path + " exists and is " + std::string(sys::file_type(info.st_mode)) +
            ", not a socket; jitd replaces only a stale socket: move it away or choose another "
            "socketPath",
        EEXIST);
  }
  if (maybe_in_use(address)) {
    return core::fail(core::ErrorCode::io,
                      "socket path " + path +
                          " is in use: another process (a running jitd?) has it open; stop it "
                          "first, two daemons would fight over one table",
                      EADDRINUSE);
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

core::Result<ListenSocket> ListenSocket::create(const std::filesystem::path& path,
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
  if (auto removed = remove_stale_socket(*address); !removed) {
    return tl::unexpected(removed.error());
  }

  sys::UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listener) return failed("socket for " + text);
  // The socket is born with its mode: there is no moment in which others may connect.
  const mode_t previous = ::umask(~mode & 0777);
  const int bound =
      ::bind(listener.get(), reinterpret_cast<const sockaddr*>(&*address), sizeof *address);
  ::umask(previous);
  if (bound != 0) return failed("bind " + text);
  struct stat info {};
  if (::lstat(text.c_str(), &info) != 0) return failed("stat socket " + text);
  // From here on the owner removes the file, also when a step below fails.
  ListenSocket made(std::move(listener), path, /*created=*/true, info.st_dev, info.st_ino);
  // Never through a link, should one replace the socket after bind.
  if (group && ::fchownat(AT_FDCWD, text.c_str(), 0, *group, AT_SYMLINK_NOFOLLOW) != 0) {
    return failed("chown socket " + text);
  }
  if (::listen(made.fd(), 64) != 0) return failed("listen " + text);
  return made;
}

core::Result<ListenSocket> ListenSocket::adopt(sys::UniqueFd fd) {
  const std::string what = "socket passed by systemd (fd " + std::to_string(fd.get()) + ")";
  auto option = [&](int name) -> core::Result<int> {
    int value = 0;
    socklen_t length = sizeof value;
    if (::getsockopt(fd.get(), SOL_SOCKET, name, &value, &length) != 0) return failed(what);
    return value;
  };
  const auto domain = option(SO_DOMAIN);
  const auto type = option(SO_TYPE);
  const auto accepting = option(SO_ACCEPTCONN);
  if (!domain || !type || !accepting) {
    return tl::unexpected(!domain ? domain.error() : !type ? type.error() : accepting.error());
  }
  sockaddr_un bound{};
  socklen_t length = sizeof bound;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &length) != 0) {
    return failed(what);
  }
  const auto bound_length = length - offsetof(sockaddr_un, sun_path);
  const std::string bound_path(bound.sun_path, ::strnlen(bound.sun_path, bound_length));
  if (*domain != AF_UNIX || *type != SOCK_STREAM || *accepting == 0 || bound_path.empty() ||
      bound_path.front() != '/') {
    return core::fail(core::ErrorCode::invalid_argument,
                      what +
                          " is not a listening Unix stream socket at a path; jitd.socket "
                          "must say ListenStream=/run/jitd/jitd.sock (socketPath)");
  }
  // systemd passes it blocking and inheritable; jitd's loop must never block on accept.
  if (::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK) != 0 ||
      ::fcntl(fd.get(), F_SETFD, FD_CLOEXEC) != 0) {
    return failed(what);
  }
  return ListenSocket(std::move(fd), bound_path, /*created=*/false, 0, 0);
}

ListenSocket::ListenSocket(sys::UniqueFd fd, std::filesystem::path path, bool created, dev_t device,
                           ino_t inode)
    : fd_(std::move(fd)),
      path_(std::move(path)),
      created_(created),
      device_(device),
      inode_(inode) {}

ListenSocket::ListenSocket(ListenSocket&& other) noexcept
    : fd_(std::move(other.fd_)),
      path_(std::move(other.path_)),
      created_(std::exchange(other.created_, false)),
      device_(other.device_),
      inode_(other.inode_) {}

ListenSocket::~ListenSocket() {
  if (!created_) return;
  // Only the file this socket was bound to: a later jitd may have put its own there.
  struct stat info {};
  if (::lstat(path_.c_str(), &info) == 0 && S_ISSOCK(info.st_mode) && info.st_dev == device_ &&
      info.st_ino == inode_) {
    ::unlink(path_.c_str());
  }
}

}  // namespace jitd::api
