#include "jitd/core/grant.hpp"

namespace jitd::core {

SourceSpec SourceSpec::any() {
  SourceSpec spec;
  spec.any_ = true;
  return spec;
}

Result<SourceSpec> SourceSpec::parse(std::string_view text) {
  if (text == "*") return any();
  auto prefix = Prefix::parse(text);
  if (!prefix) return tl::unexpected(prefix.error());
  return SourceSpec(*prefix);
}

std::vector<Prefix> SourceSpec::prefixes() const {
  if (!any_) return {prefix_};
  return {*Prefix::parse("0.0.0.0/0"), *Prefix::parse("::/0")};
}

std::string SourceSpec::to_string() const { return any_ ? "*" : prefix_.to_string(); }

std::string_view to_string(GrantStatus status) {
  switch (status) {
    case GrantStatus::pending: return "Pending";
    case GrantStatus::initiated: return "Initiated";
    case GrantStatus::revoked: return "Revoked";
  }
  return "Unknown";
}

std::optional<GrantStatus> parse_grant_status(std::string_view text) {
  for (const auto status : {GrantStatus::pending, GrantStatus::initiated, GrantStatus::revoked}) {
    if (to_string(status) == text) return status;
  }
  if (text == "Expired") return GrantStatus::revoked;
  return std::nullopt;
}

Milliseconds remaining(const Grant& grant, Deadline now) {
  if (grant.status != GrantStatus::initiated) return Milliseconds{0};
  return grant.deadline > now ? grant.deadline - now : Milliseconds{0};
}

}  // namespace jitd::core
