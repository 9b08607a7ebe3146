#pragma once
// A grant as the API shows it: the same object for a live, a pending and an ended grant, in
// every route that returns one (docs/api.md, "The grant object").
#include <nlohmann/json.hpp>

#include "jitd/core/clock.hpp"
#include "jitd/core/grant.hpp"
#include "jitd/core/policy.hpp"

namespace jitd::api {

// What a grant's view depends on besides the grant: the time (remaining seconds, and when a
// request nobody approves lapses, which the engine keeps on the boot clock) and the policy
// (who may approve).
struct GrantView {
  core::Deadline boot_now;
  core::TimePoint utc_now;
  const core::Policy& policy;
};

[[nodiscard]] nlohmann::json port_json(const core::PortSpec& port);
[[nodiscard]] nlohmann::json grant_json(const core::Grant& grant, const GrantView& view);

}  // namespace jitd::api
