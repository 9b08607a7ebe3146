#pragma once
// The last policy jitd found valid, kept in its state directory. After a reboot no table is in
// the kernel, so a policy broken by a bad push would leave the host open if jitd refused to
// start: it starts with this copy instead, says so (log, audit, GET /v1/policy), and takes the
// files again once they are fixed. Saved as the very texts that were parsed, so the copy
// parses as it did then.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "jitd/config/config.hpp"
#include "jitd/core/error.hpp"

namespace jitd::config {

inline constexpr const char* last_valid_policy_name = "policy.last-valid.json";

struct LastValidPolicy {
  std::filesystem::path directory;  // where the files were read
  std::string saved_utc;            // when they were found valid
  std::vector<PolicySource> sources;
  bool operator==(const LastValidPolicy&) const = default;
};

// Replaces the copy at `path` durably (a crash leaves the old copy or the new one).
[[nodiscard]] core::Result<void> save_last_valid_policy(const std::filesystem::path& path,
                                                        const LastValidPolicy& policy);
// nullopt when none was ever saved; an error when the copy is unreadable or damaged.
[[nodiscard]] core::Result<std::optional<LastValidPolicy>> load_last_valid_policy(
    const std::filesystem::path& path);

}  // namespace jitd::config
