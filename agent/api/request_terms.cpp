#include "request_terms.hpp"

#include <algorithm>

#include "json_fields.hpp"

namespace jitd::api::terms {

using core::ErrorCode;
using fields::field;
using fields::invalid_value;
using nlohmann::json;

core::Result<RequestTerms> parse_terms(const json& object, const std::string& where) {
  RequestTerms terms;
  const auto source = field(object, "allowedSourceAddressPrefix", json::value_t::string, where);
  if (!source) return tl::unexpected(source.error());
  if (*source != nullptr) {
    // "*": every address of both families, where the port rules allow "*".
    auto spec = core::SourceSpec::parse((*source)->get<std::string>());
    if (!spec) return invalid_value(where + "allowedSourceAddressPrefix", spec.error());
    terms.source = *spec;
  }
  const auto duration = field(object, "duration", json::value_t::string, where);
  if (!duration) return tl::unexpected(duration.error());
  const auto end_time = field(object, "endTimeUtc", json::value_t::string, where);
  if (!end_time) return tl::unexpected(end_time.error());
  if (*duration != nullptr && *end_time != nullptr) {
    return core::fail(ErrorCode::invalid_request,
                      where + "duration: give at most one of duration and endTimeUtc");
  }
  if (*duration != nullptr) {
    auto parsed = core::parse_duration((*duration)->get<std::string>());
    if (!parsed) return invalid_value(where + "duration", parsed.error());
    terms.duration = *parsed;
  } else if (*end_time != nullptr) {
    auto parsed = core::parse_utc((*end_time)->get<std::string>());
    if (!parsed) return invalid_value(where + "endTimeUtc", parsed.error());
    terms.end_time = *parsed;
  }
  return terms;
}

void add_grouped(std::vector<core::GrantRequest>& groups, core::GrantRequest&& port) {
  const auto same = std::find_if(groups.begin(), groups.end(), [&](const core::GrantRequest& g) {
    return g.source == port.source && g.duration == port.duration && g.end_time == port.end_time &&
           g.start_time == port.start_time;
  });
  if (same == groups.end()) {
    groups.push_back(std::move(port));
  } else {
    same->ports.insert(same->ports.end(), port.ports.begin(), port.ports.end());
  }
}

}  // namespace jitd::api::terms
