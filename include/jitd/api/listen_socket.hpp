#pragma once
// The API's listening Unix socket, made so that nothing else on the host is touched: only a
// stale socket is ever removed, and the socket has its mode from birth.
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

// Binds and listens on `path` with `mode` (0660 by default; 0666 lets the policy's roles
// decide who may do what), owner root, group `group` (root's when none).
// Refused: a directory that is a symbolic link or that anyone but root may change, and a path
// that exists as anything but a socket (a stale socket is removed).
[[nodiscard]] core::Result<sys::UniqueFd> open_listen_socket(const std::filesystem::path& path,
                                                             std::optional<gid_t> group,
                                                             mode_t mode);

}  // namespace jitd::api
