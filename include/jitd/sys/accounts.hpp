#pragma once
// User and group names → ids, through NSS (which may ask a directory server: call these when a
// policy or the config loads, never per request).
#include <sys/types.h>

#include <optional>
#include <string_view>

#include "jitd/core/error.hpp"

namespace jitd::sys {

// nullopt: no such user / group; an error: the lookup itself failed.
[[nodiscard]] core::Result<std::optional<uid_t>> user_id(std::string_view name);
[[nodiscard]] core::Result<std::optional<gid_t>> group_id(std::string_view name);

}  // namespace jitd::sys
