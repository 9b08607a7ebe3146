#pragma once
#include <chrono>
#include <string>
#include <string_view>

#include "jitd/core/error.hpp"

namespace jitd::core {

using Milliseconds = std::chrono::milliseconds;

// ISO 8601 durations ("PT3H", "PT1H30M", "P1D", "PT45.5S") and the shorthand
// "3h", "30m", "45s", "1h30m". Zero and negative durations are errors.
[[nodiscard]] Result<Milliseconds> parse_duration(std::string_view text);

// ISO 8601 text, e.g. "PT3H", "PT1H30M", "PT0.5S".
[[nodiscard]] std::string format_duration(Milliseconds duration);

}  // namespace jitd::core
