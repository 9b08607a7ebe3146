#pragma once
// The API's listening Unix socket, made so that nothing else on the host is touched: only a
// stale socket is ever removed, the socket has its mode from birth, and a socket jitd made is
// gone again when jitd stops (its presence is no readiness signal; sd_notify READY=1 is).
#include <sys/types.h>
#include <sys/un.h>

#include <filesystem>
#include <optional>

#include "jitd/core/error.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace jitd::api {

// The address for `path`; an error when the path does not fit in sun_path (checked by
// `jitd --validate` and before the daemon changes the kernel).
[[nodiscard]] core::Result<sockaddr_un> unix_address(const std::filesystem::path& path);

class ListenSocket {
 public:
  // Binds and listens on `path` with `mode` (0660 by default; 0666 lets the policy's roles
  // decide who may do what), owner root, group `group` (root's when none). Removed again when
  // this owner is destroyed, if the path still holds this socket.
  // Refused: a directory that is a symbolic link or that anyone but root may change, a path
  // that exists as anything but a socket (a stale socket is removed), and a socket another
  // process still accepts on (a second jitd).
  [[nodiscard]] static core::Result<ListenSocket> create(const std::filesystem::path& path,
                                                         std::optional<gid_t> group, mode_t mode);
  // A socket systemd passed (socket activation): it must be a listening Unix stream socket
  // bound to a path. Never removed: its .socket unit owns it, and it outlives a restart.
  [[nodiscard]] static core::Result<ListenSocket> adopt(sys::UniqueFd fd);

  ListenSocket(ListenSocket&& other) noexcept;
  ListenSocket& operator=(ListenSocket&&) = delete;
  ListenSocket(const ListenSocket&) = delete;
  ListenSocket& operator=(const ListenSocket&) = delete;
  ~ListenSocket();

  [[nodiscard]] int fd() const { return fd_.get(); }
  // Where it listens.
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  // Whether jitd made the socket file (and so removes it).
  [[nodiscard]] bool created() const { return created_; }

 private:
  ListenSocket(sys::UniqueFd fd, std::filesystem::path path, bool created, dev_t device,
               ino_t inode);

  sys::UniqueFd fd_;
  std::filesystem::path path_;
  bool created_ = false;
  dev_t device_ = 0;  // of the socket file: it is removed only while the path still names it
  ino_t inode_ = 0;
};

}  // namespace jitd::api
