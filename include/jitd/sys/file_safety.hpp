#pragma once
// Opening files and directories that decide what jitd protects (policy, config, state,
// socket) so that nobody but root can steer them: no symbolic link in the last component,
// no FIFO or device read by mistake, no file larger than a bound, and sshd-StrictModes-like
// ownership (owner root, or the user running jitd; neither group nor others may write).
// Every error reads "<what>: <reason>".
#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include "jitd/core/error.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace jitd::sys {

// "a symbolic link", "a FIFO", ...: what a stat mode says the file is, for messages.
[[nodiscard]] std::string_view file_type(mode_t mode);

// The owner is root (or the effective user, so that `jitd --validate` works on a user's own
// files) and the mode has neither g+w nor o+w.
[[nodiscard]] core::Result<void> check_trusted(const struct stat& info, const std::string& what);

// openat(O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | flags, mode): a symbolic link is refused by
// name (O_NONBLOCK: opening a FIFO must not hang; read_regular and require_regular refuse it).
[[nodiscard]] core::Result<UniqueFd> open_nofollow(int directory_fd, const std::string& name,
                                                   int flags, const std::string& what,
                                                   mode_t mode = 0);

// An error unless the open file is a regular file.
[[nodiscard]] core::Result<void> require_regular(int fd, const std::string& what);

// fstat of an open descriptor.
[[nodiscard]] core::Result<struct stat> stat_open(int fd, const std::string& what);

// The whole content of a regular file of at most `max_bytes` (its size is checked before
// anything is read, and the read stops one byte past the bound should the file grow).
[[nodiscard]] core::Result<std::string> read_regular(int fd, const struct stat& info,
                                                     std::size_t max_bytes,
                                                     const std::string& what);

// A secret (a webhook's signing key): a regular file, not a symbolic link, trusted as above
// and besides readable by its owner alone (no group or other bits at all), at most
// `max_bytes`.
[[nodiscard]] core::Result<std::string> read_secret(const std::filesystem::path& path,
                                                    std::size_t max_bytes, const std::string& what);

// A directory that is neither a symbolic link nor changeable by anyone but root. With
// `create_mode`, the missing components of `path` are created with that mode (the umask
// does not narrow it); an existing directory's mode is never changed.
enum class CreateMissing { no, yes };
[[nodiscard]] core::Result<UniqueFd> open_trusted_directory(const std::filesystem::path& path,
                                                            CreateMissing create, mode_t mode,
                                                            const std::string& what);

}  // namespace jitd::sys
