#pragma once
// Errors cross module seams as values (tl::expected); only programming errors throw.
#include <string>
#include <string_view>

#include <tl/expected.hpp>

namespace jitd::core {

enum class ErrorCode {
  invalid_request,     // malformed body, wrong type, missing field
  invalid_argument,    // a value that does not parse (prefix, duration, port)
  port_not_in_policy,  // requested (port, protocol) is not protected by the policy
  source_not_allowed,  // requested prefix lies outside every allowed prefix
  duration_too_long,   // longer than the port's maxRequestAccessDuration
  end_time_in_past,
  forbidden,  // caller may not do this
  not_found,
  policy_invalid,  // config / policy file errors (file:line:col: message)
  kernel,          // netlink / nftables failure, carries errno
  io,              // file system failure, carries errno
};

// Stable text used by the API ("error.code") and the audit log.
[[nodiscard]] std::string_view to_string(ErrorCode code);

struct Error {
  ErrorCode code;
  std::string message;
  int sys_errno = 0;  // errno or the kernel's netlink error, 0 when not a system error
};

template <class T>
using Result = tl::expected<T, Error>;

[[nodiscard]] inline tl::unexpected<Error> fail(ErrorCode code, std::string message,
                                                int sys_errno = 0) {
  return tl::unexpected<Error>(Error{code, std::move(message), sys_errno});
}

}  // namespace jitd::core
