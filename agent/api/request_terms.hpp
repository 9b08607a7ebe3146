#pragma once
// What a grant request says about where from and for how long, read the same way wherever a
// body may say it: jitd's POST /v1/grants (at the top or per port) and Azure's initiate (per
// port).
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "jitd/core/duration.hpp"
#include "jitd/core/error.hpp"
#include "jitd/core/grant.hpp"

namespace jitd::api::terms {

struct RequestTerms {
  std::optional<core::SourceSpec> source;  // allowedSourceAddressPrefix
  std::optional<core::Milliseconds> duration;
  std::optional<core::TimePoint> end_time;  // endTimeUtc
};

// The allowedSourceAddressPrefix, duration and endTimeUtc of `object`, each optional, at most
// one of duration and endTimeUtc; `where` as for fields::field ("ports[0]." or "").
[[nodiscard]] core::Result<RequestTerms> parse_terms(const nlohmann::json& object,
                                                     const std::string& where);

// Adds one port's request to `groups`: into the request with the same source and timing, or as a
// new one. The engine grants each request all-or-nothing with one end, so ports that share
// their terms share a grant.
void add_grouped(std::vector<core::GrantRequest>& groups, core::GrantRequest&& port);

}  // namespace jitd::api::terms
