#include "jitd/core/error.hpp"

namespace jitd::core {

std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_request: return "InvalidRequest";
    case ErrorCode::invalid_argument: return "InvalidArgument";
    case ErrorCode::port_not_in_policy: return "PortNotInPolicy";
    case ErrorCode::source_not_allowed: return "SourceNotAllowed";
    case ErrorCode::duration_too_long: return "DurationTooLong";
    case ErrorCode::end_time_in_past: return "EndTimeInPast";
    case ErrorCode::forbidden: return "Forbidden";
    case ErrorCode::not_found: return "NotFound";
    case ErrorCode::policy_invalid: return "PolicyInvalid";
    case ErrorCode::kernel: return "KernelError";
    case ErrorCode::io: return "IoError";
  }
  return "Unknown";
}

}  // namespace jitd::core
