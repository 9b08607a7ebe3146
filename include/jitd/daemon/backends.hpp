#pragma once
// Which kernel backend runs: the one the main config names. A host that switched backends
// still holds the other one's enforcement, which would drop what the new one admits: it is
// removed once the new one is installed, and --uninstall removes both.
#include <memory>

#include "jitd/config/config.hpp"
#include "jitd/core/backend.hpp"

namespace jitd::daemon {

// Opens (and probes) the configured backend; an error says why jitd cannot enforce with it.
[[nodiscard]] core::Result<std::unique_ptr<core::KernelBackend>> open_backend(
    const config::MainConfig& settings);

// Removes the enforcement of the backend not configured, if any is in the kernel; returns what
// was removed ("table inet jitd", ...) or an empty string.
[[nodiscard]] core::Result<std::string> remove_other_backend(const config::MainConfig& settings);

// Removes jitd's enforcement of both backends; returns what was removed, one item per backend.
[[nodiscard]] core::Result<std::vector<std::string>> remove_all_backends(
    const config::MainConfig& settings);

}  // namespace jitd::daemon
