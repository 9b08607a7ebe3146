#pragma once
// The one conversion of an errno (or a kernel's netlink error) into jitd's Error:
// "<what>: <strerror>", carrying the number.
#include <string>

#include "jitd/core/error.hpp"

namespace jitd::sys {

[[nodiscard]] core::Error system_error(core::ErrorCode code, const std::string& what, int error);

[[nodiscard]] inline tl::unexpected<core::Error> fail_system(core::ErrorCode code,
                                                             const std::string& what, int error) {
  return tl::unexpected(system_error(code, what, error));
}

}  // namespace jitd::sys
