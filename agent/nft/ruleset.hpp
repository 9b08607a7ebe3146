#pragma once
// The jitd table in libnftnl terms: the messages that build and change it, and the
// decoding of set elements read back from the kernel.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <linux/netfilter/nf_tables.h>

#include "handles.hpp"
#include "jitd/core/backend.hpp"
#include "netlink.hpp"

namespace jitd::nft {

// NFT_TABLE_F_PERSIST (Linux 6.9) is missing from older uapi headers. OWNER alone is not
// enough: such a table dies with its owner's socket, and jitd's enforcement with it.
inline constexpr std::uint32_t table_flag_persist = 0x4;
// Only the owner may change or delete the table, `flush ruleset` skips it, and it outlives
// the owner (orphaned, without OWNER) until someone claims or deletes it.
inline constexpr std::uint32_t owned_table_flags = NFT_TABLE_F_OWNER | table_flag_persist;

// Grants live in two sets per family. An interval set (pipapo) rebuilds its lookup data on
// every transaction that changes it, in proportion to its size; a hash set changes one bucket.
// Most grants are one address, so those go to the hash sets (grants4_single, grants6_single)
// and only wider ranges to the interval sets (grants4, grants6).
// The counting sets hold the protected ports (audited: the ports in `mode: audit`), each
// element with a counter that one lookup in the chains moves: new connections dropped
// (dropped_new), new connections a grant admitted (admitted), packets audit mode accepted that
// enforcement would drop (audited). would_block4/6 are filled by the kernel itself: the
// sources audit mode accepted, per port, with a counter each and a timeout.
enum class SetKind {
  protected_ports,
  allow4,
  allow6,
  grants4_single,
  grants6_single,
  grants4,
  grants6,
  dropped_new,
  admitted,
  audited,
  would_block4,
  would_block6
};

// In creation order.
inline constexpr std::array all_sets{
    SetKind::protected_ports, SetKind::allow4,  SetKind::allow6,       SetKind::grants4_single,
    SetKind::grants6_single,  SetKind::grants4, SetKind::grants6,      SetKind::dropped_new,
    SetKind::admitted,        SetKind::audited, SetKind::would_block4, SetKind::would_block6};
// The sets of source elements jitd writes: the allow-list and the grants.
inline constexpr std::array source_sets{SetKind::allow4,         SetKind::allow6,
                                        SetKind::grants4_single, SetKind::grants6_single,
                                        SetKind::grants4,        SetKind::grants6};
// The sets whose elements are protected ports with a counter, and what each counts.
inline constexpr std::array counter_sets{SetKind::protected_ports, SetKind::dropped_new,
                                         SetKind::admitted, SetKind::audited};
inline constexpr std::array would_block_sets{SetKind::would_block4, SetKind::would_block6};
// How long an audited source stays in would_block4/6 after its last packet, and how many
// (source, port) pairs each holds: past that, audit mode still accepts, but remembers no new
// source until old ones age out.
inline constexpr std::uint64_t would_block_timeout_ms = 3600 * 1000;
inline constexpr std::uint32_t would_block_size = 65536;

[[nodiscard]] std::string_view set_name(SetKind kind);
[[nodiscard]] bool is_grant_set(SetKind kind);
// grants4_single or grants6_single: the kernel's resizable hash set.
[[nodiscard]] bool is_hash_set(SetKind kind);
[[nodiscard]] SetKind allow_set(core::Family family);
// The set a grant element belongs to: the hash set when its source is one address, else the
// interval set of its family.
[[nodiscard]] SetKind grant_set(const core::ElementKey& key);

// Appends the nf_tables messages for one inet table to a batch.
class TableWriter {
 public:
  TableWriter(Batch& batch, std::string table);

  // Without flags the message leaves an existing table's flags as they are.
  void add_table(std::uint32_t flags = 0);
  void delete_table();
  void add_sets();
  // The base chain `input` and the chains it branches to.
  void add_chain();
  // A chain with no hook, and in it one rule with a `ct state` expression that nothing ever
  // evaluates: its setup alone makes conntrack active (conntrack_table.hpp says why).
  void add_conntrack_keeper();
  // The protected ports, into `protected` and the counting sets, and the audited ones.
  void add_ports(const std::vector<core::PortKey>& protected_ports,
                 const std::vector<core::PortKey>& audited_ports);
  void add_permanent(const std::vector<core::ElementKey>& elements);
  // Each element goes to its grant_set().
  void add_grants(const std::vector<core::TimedElement>& grants);
  void delete_grants(const std::vector<core::ElementKey>& elements);

 private:
  void write_elements(std::uint16_t type, SetKind kind, std::vector<SetElem> elements);
  void add_regular_chain(std::string_view chain);
  void add_rules(std::string_view chain, std::vector<std::vector<Expr>> rules);

  Batch& batch_;
  std::string table_;
};

// An element of `kind` as read from the kernel; grants carry the remaining timeout. Elements
// of the hash sets and single addresses of the interval sets come back without a key end.
// An element of `protected` or another of counter_sets.
[[nodiscard]] core::Result<core::PortKey> decode_port(SetKind kind, nftnl_set_elem* element);
[[nodiscard]] core::Result<core::TimedElement> decode_element(SetKind kind,
                                                              nftnl_set_elem* element);
// The packets an element's counter has seen (0 without one).
[[nodiscard]] std::uint64_t counted_packets(nftnl_set_elem* element);

}  // namespace jitd::nft
