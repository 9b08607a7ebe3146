#pragma once
// The seam between the engine and the kernel. Implementations: nft (libnftnl),
// later ebpf, and a fake for unit tests. A backend makes no policy or time
// decisions: it is told exact elements and relative timeouts.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
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
  // Of protected_ports, those in `mode: audit`: what enforcement would drop there is counted
  // and its sources remembered (`would_block()`), but accepted.
  std::vector<PortKey> audited_ports;
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
  // Read back too: a port switched to audit behind jitd's back lets every source through.
  std::vector<PortKey> audited_ports;
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

// What a ChangeWatch read since its last drain.
struct ForeignChanges {
  std::string foreign;  // the first change someone else made to jitd's enforcement; empty: none
  std::string lost;     // why events were lost (a queue overran); empty: none were
  bool other_tables = false;  // another firewall's table changed (what `jitctl doctor` reads)
};

// Notices changes to jitd's enforcement made behind its back (a deleted table, a removed tc
// filter, an unpinned map) so the daemon can restore it at once instead of polling.
class ChangeWatch {
 public:
  virtual ~ChangeWatch() = default;
  // For the daemon's event loop: readable when events are pending.
  [[nodiscard]] virtual int fd() const = 0;
  // Reads every pending event without blocking; jitd's own changes are not foreign. Lost
  // events are reported apart: the kernel state must then be read back and checked.
  [[nodiscard]] virtual Result<ForeignChanges> drain() = 0;
};

// The kernel's counters for one protected (protocol, port), since the enforcement was installed
// (a re-install, e.g. after tampering, starts them from zero again).
struct PortCounters {
  PortKey port;
  std::uint64_t dropped_packets = 0;       // dropped by enforcement
  std::uint64_t dropped_connections = 0;   // of those, packets opening a connection (conntrack new)
  std::uint64_t admitted_connections = 0;  // new connections a grant admitted
  std::uint64_t would_drop_packets = 0;    // `mode: audit`: accepted, enforcement would drop them
  auto operator<=>(const PortCounters&) const = default;
};

// A source `mode: audit` let through that enforcement would have dropped, as the kernel
// remembers it (entries age out).
struct WouldBlock {
  AddressRange source;  // one address
  PortKey port;
  std::uint64_t packets = 0;
  auto operator<=>(const WouldBlock&) const = default;
};

// A backend as the daemon runs it: the engine's seam plus what start-up, tamper repair and
// status need. Implementations: nft::NftBackend, ebpf::EbpfBackend.
class KernelBackend : public Backend {
 public:
  // "nftables" or "ebpf", as the main config's `backend:` spells it.
  [[nodiscard]] virtual std::string_view name() const = 0;
  // Where it enforces, for log lines and status: "table inet jitd", "tc ingress on eth0, ...".
  [[nodiscard]] virtual std::string where() const = 0;
  // How it is protected against other tools, for the start-up log line.
  [[nodiscard]] virtual std::string protection() const = 0;
  // What the start-up probe found and chose, as (name, value) pairs for status.
  [[nodiscard]] virtual std::vector<std::pair<std::string, std::string>> features() const = 0;
  // Whether jitd's enforcement is in the kernel, without reading every element.
  [[nodiscard]] virtual Result<bool> installed() = 0;
  // Per protected port, its counters since the enforcement was installed.
  [[nodiscard]] virtual Result<std::vector<PortCounters>> counters() = 0;
  // Sources that ports in `mode: audit` admitted only because of that mode, recently.
  [[nodiscard]] virtual Result<std::vector<WouldBlock>> would_block() = 0;
  [[nodiscard]] virtual Result<std::unique_ptr<ChangeWatch>> watch() = 0;
};

}  // namespace jitd::core
