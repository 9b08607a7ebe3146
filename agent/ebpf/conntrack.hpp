#pragma once
// Conntrack must be active in the namespace for the program's conntrack lookups to find
// anything: in a namespace with no user of conntrack it records nothing. jitd makes it active
// with a tiny nftables table whose rule has a `ct state` expression: the expression's setup
// registers conntrack's hooks for the table's family (inet: IPv4 and IPv6) and loads
// nf_conntrack where it is a module. The rule is in a chain with no hook that nothing jumps
// to, so it costs nothing per packet.
#include <string_view>

#include "jitd/core/error.hpp"

namespace jitd::ebpf {

inline constexpr std::string_view conntrack_table = "jitd_conntrack";

// Replaces table inet jitd_conntrack with a fresh one in one transaction, so conntrack's
// hooks stay registered throughout when it existed.
[[nodiscard]] core::Result<void> activate_conntrack();
// Deletes the table; done when it is not there.
[[nodiscard]] core::Result<void> remove_conntrack_table();

}  // namespace jitd::ebpf
