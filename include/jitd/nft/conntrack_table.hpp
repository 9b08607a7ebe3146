#pragma once
// Conntrack must be active in a network namespace for the eBPF backend's conntrack lookups to
// find anything: in a namespace with no user of conntrack it records nothing. jitd makes it
// active with a tiny table, inet jitd_conntrack, whose one rule has a `ct state` expression:
// the expression's setup registers conntrack's hooks for the table's family (inet: IPv4 and
// IPv6) and loads nf_conntrack where it is a module (before the program that calls its kfuncs
// is loaded). The rule is in a chain with no hook that nothing jumps to, so it costs nothing
// per packet. `nft flush ruleset` (nftables.service's restart) deletes it with everything else,
// so its deletion is watched.
#include <memory>
#include <string_view>

#include "jitd/core/error.hpp"
#include "jitd/nft/nft_backend.hpp"

namespace jitd::nft {

inline constexpr std::string_view conntrack_table = "jitd_conntrack";

// Replaces table inet jitd_conntrack with a fresh one in one transaction, so conntrack's
// hooks stay registered throughout when it existed.
[[nodiscard]] core::Result<void> activate_conntrack();
// Deletes the table; done when it is not there.
[[nodiscard]] core::Result<void> remove_conntrack_table();
[[nodiscard]] core::Result<bool> conntrack_table_present();
// Readable when anyone (jitd included) changed or deleted the table: a hint to look with
// conntrack_table_present(), which tells jitd's own replacement from a deletion.
[[nodiscard]] core::Result<std::unique_ptr<RulesetMonitor>> watch_conntrack_table();

}  // namespace jitd::nft
