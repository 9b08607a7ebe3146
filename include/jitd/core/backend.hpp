#pragma once
// The seam between the engine and the kernel. Implementations: nft (libnftnl),
// later ebpf, and a fake for unit tests. A backend makes no policy or time
// decisions: it is told exact elements and relative timeouts.
#include <vector>

#include "jitd/core/duration.hpp"
#include "jitd/core/error.hpp"
#include "jitd/core/policy.hpp"
#include "jitd/core/prefix.hpp"

namespace jitd::core {

// One kernel element: a source address range for one (protocol, port).
struct ElementKey {
  AddressRange source;
  PortKey port;
  auto operator<=>(const ElementKey&) const = default;
};

// A grant element with its kernel timeout, relative to the transaction.
struct TimedElement {
  ElementKey key;
  Milliseconds timeout{0};
  auto operator<=>(const TimedElement&) const = default;
};

struct EnforcementSpec {
  std::vector<PortKey> protected_ports;
  std::vector<ElementKey> permanent;  // disjoint per port
  std::vector<TimedElement> grants;   // disjoint per port
};

// Removals are applied before additions, all in one kernel transaction.
struct ElementChanges {
  std::vector<ElementKey> remove;
  std::vector<TimedElement> add;
  [[nodiscard]] bool empty() const { return remove.empty() && add.empty(); }
};

// What the kernel holds now; grant timeouts are the remaining time.
struct KernelSnapshot {
  bool installed = false;
  std::vector<PortKey> protected_ports;
  std::vector<ElementKey> permanent;
  std::vector<TimedElement> grants;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Atomically replaces everything jitd holds in the kernel with this spec.
  [[nodiscard]] virtual Result<void> install(const EnforcementSpec& spec) = 0;
  // One transaction; on error nothing changed.
  [[nodiscard]] virtual Result<void> apply(const ElementChanges& changes) = 0;
  [[nodiscard]] virtual Result<KernelSnapshot> snapshot() = 0;
  [[nodiscard]] virtual Result<void> uninstall() = 0;
};

}  // namespace jitd::core
