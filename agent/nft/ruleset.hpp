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
enum class SetKind {
  protected_ports,
  allow4,
  allow6,
  grants4_single,
  grants6_single,
  grants4,
  grants6
};

// In creation order, which is also the order of the chain's lookups.
inline constexpr std::array all_sets{
    SetKind::protected_ports, SetKind::allow4,  SetKind::allow6, SetKind::grants4_single,
    SetKind::grants6_single,  SetKind::grants4, SetKind::grants6};

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
  void add_chain();
  // A chain with no hook, and in it one rule with a `ct state` expression that nothing ever
  // evaluates: its setup alone makes conntrack active (conntrack_table.hpp says why).
  void add_conntrack_keeper();
  void add_protected(const std::vector<core::PortKey>& ports);
  void add_permanent(const std::vector<core::ElementKey>& elements);
  // Each element goes to its grant_set().
  void add_grants(const std::vector<core::TimedElement>& grants);
  void delete_grants(const std::vector<core::ElementKey>& elements);

 private:
  void write_elements(std::uint16_t type, SetKind kind, std::vector<SetElem> elements);
  void add_rules(std::string_view chain, std::vector<std::vector<Expr>> rules);

  Batch& batch_;
  std::string table_;
};

// An element of `kind` as read from the kernel; grants carry the remaining timeout. Elements
// of the hash sets and single addresses of the interval sets come back without a key end.
[[nodiscard]] core::Result<core::PortKey> decode_port(nftnl_set_elem* element);
// An element of the set `protected` with the packets its counter has seen (drops only).
[[nodiscard]] core::Result<core::PortCounters> decode_port_drops(nftnl_set_elem* element);
[[nodiscard]] core::Result<core::TimedElement> decode_element(SetKind kind,
                                                              nftnl_set_elem* element);

}  // namespace jitd::nft
