#pragma once
// What the daemon says about other firewalls' rules on the hooks jitd shares (nft::
// inspect_firewall): the doctor report (GET /v1/doctor), a warning in each grant reply whose
// port another table may still drop, and a line in the log at start.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "jitd/core/clock.hpp"
#include "jitd/core/error.hpp"
#include "jitd/core/grant.hpp"
#include "jitd/core/policy.hpp"
#include "jitd/nft/conflicts.hpp"

namespace jitd::daemon {

[[nodiscard]] nlohmann::json doctor_json(const nft::FirewallReport& report);

// Grant replies reuse one reading of the ruleset: a burst of grants must not dump every table
// once each. The reading is renewed when another table changes (forget(), from the nftables
// monitor) and at the latest after `max_age` (the eBPF backend watches no nftables events).
class FirewallAdvice {
 public:
  FirewallAdvice(const core::Clock& clock, std::string own_table, core::Milliseconds max_age)
      : clock_(clock), own_table_(std::move(own_table)), max_age_(max_age) {}

  // A fresh reading, also kept for warnings().
  [[nodiscard]] core::Result<nft::FirewallReport> inspect(
      const std::vector<core::PortKey>& protected_ports);
  // Another table changed: the next warnings() reads the ruleset again.
  void forget() { last_.reset(); }
  // One line per rule that may drop traffic to one of `ports` (certain or possible); a line
  // saying the ruleset could not be read when it could not.
  [[nodiscard]] std::vector<std::string> warnings(const std::vector<core::PortKey>& protected_ports,
                                                  const std::vector<core::PortSpec>& ports);

 private:
  const core::Clock& clock_;
  std::string own_table_;
  core::Milliseconds max_age_;
  std::optional<core::Result<nft::FirewallReport>> last_;
  core::Deadline read_at_{};
};

}  // namespace jitd::daemon
