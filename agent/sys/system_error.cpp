#include "jitd/sys/system_error.hpp"

#include <cstring>

namespace jitd::sys {

core::Error system_error(core::ErrorCode code, const std::string& what, int error) {
  return core::Error{code, what + ": " + std::strerror(error), error};
}

}  // namespace jitd::sys
