#pragma once
// Crash points in the risky windows (journal written but kernel not yet changed, kernel
// changed but caller not yet answered, half a journal record on disk), for crash tests.
// No-ops unless the daemon installed a handler (it does so only when JITD_FAILPOINTS is set).
#include <string_view>

namespace jitd::core {

using FailpointHandler = void (*)(std::string_view name);

void set_failpoint_handler(FailpointHandler handler);
void failpoint(std::string_view name);
// Whether a handler is installed: lets a caller take a slower path that only crash tests need.
[[nodiscard]] bool failpoints_enabled();

}  // namespace jitd::core
