#pragma once
// The query strings of the read routes (GET /v1/audit, GET /v1/grants): each argument once,
// unknown ones refused, values checked, every error naming the argument.
#include <cstdint>
#include <optional>
#include <string>

#include "jitd/api/router.hpp"
#include "jitd/core/audit.hpp"
#include "jitd/core/clock.hpp"
#include "jitd/core/error.hpp"

namespace jitd::api::queries {

[[nodiscard]] core::Result<core::AuditQuery> parse_audit_query(const QueryArguments& arguments,
                                                               core::TimePoint now);

// Which grants GET /v1/grants lists: its `state`, the same filters for every state, and where
// the previous page ended.
struct GrantQuery {
  bool live = true;     // state=active or all
  bool pending = false;  // state=pending or all
  bool ended = false;    // state=ended or all
  std::optional<core::TimePoint> since;  // ended grants: ended at or after; others all match
  std::string user;
  std::optional<std::uint16_t> port;
  std::optional<std::size_t> limit;  // none: every live and pending grant, ended ones by 100
  std::string cursor;
};

[[nodiscard]] core::Result<GrantQuery> parse_grant_query(const QueryArguments& arguments,
                                                         core::TimePoint now);

}  // namespace jitd::api::queries
