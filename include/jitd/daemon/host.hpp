#pragma once
// Facts the daemon reads from the host: the clocks, randomness for grant ids, the boot id,
// groups, and the directories it runs in.
#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>

#include "jitd/core/clock.hpp"
#include "jitd/core/error.hpp"

namespace jitd::daemon {

// CLOCK_REALTIME for people, CLOCK_BOOTTIME for deadlines.
class SystemClock final : public core::Clock {
 public:
  [[nodiscard]] core::TimePoint now() const override;
  [[nodiscard]] core::Deadline boot_now() const override;
};

// 64 random bits in hex: ids must not be guessable from one another.
[[nodiscard]] std::string random_grant_id();

// /proc/sys/kernel/random/boot_id: tells a restart from a reboot. Empty when unreadable.
[[nodiscard]] std::string current_boot_id();

// The host's name (uname's nodename): what an Azure initiate's VM id must name. Empty when
// unreadable.
[[nodiscard]] std::string host_name();

// The group's id, or nullopt (with a warning) when `name` is empty or no such group exists.
[[nodiscard]] std::optional<gid_t> lookup_group(const std::string& name);

// Creates what is missing of `path` with `mode`. Refuses a directory that is a symbolic link
// or that anyone but root may change; never changes the mode of one that was there.
[[nodiscard]] core::Result<void> make_directory(const std::filesystem::path& path, mode_t mode);
// make_directory's checks without creating anything (`jitd --validate`): a missing directory
// passes, since the daemon will create it.
[[nodiscard]] core::Result<void> check_directory(const std::filesystem::path& path);

}  // namespace jitd::daemon
