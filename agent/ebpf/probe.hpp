#pragma once
// What the eBPF backend needs of the kernel and of its own privileges, each probe failing with
// the reason jitd then refuses to start for.
#include <cstdint>
#include <filesystem>
#include <string>

#include "handles.hpp"
#include "jitd/core/error.hpp"

namespace jitd::ebpf {

// The kernel's own BTF (/sys/kernel/btf/vmlinux): CO-RE relocation and the kfunc search need it.
[[nodiscard]] core::Result<Btf> probe_btf();

// CAP_BPF (or CAP_SYS_ADMIN) to load programs and maps, CAP_NET_ADMIN to attach them and for
// nftables, in the effective set.
[[nodiscard]] core::Result<void> probe_capabilities();

// A bpffs at `path`, mounted there (mode 0700) when something else is; returns whether jitd
// mounted it.
[[nodiscard]] core::Result<bool> ensure_bpffs(const std::filesystem::path& path);

struct ConntrackBtf {
  std::string module;  // "vmlinux" or "nf_conntrack": whose BTF has the kfuncs
  std::uint32_t ct_opts_size = 0;
};
// The conntrack kfuncs the program calls (bpf_skb_ct_lookup, bpf_xdp_ct_lookup,
// bpf_ct_release) in vmlinux or, where conntrack is a module, in its BTF, and the size of
// struct bpf_ct_opts there. The module's BTF only exists once it is loaded. Kfuncs in a
// module's BTF also need CAP_SYS_ADMIN to load (probe.cpp says why).
[[nodiscard]] core::Result<ConntrackBtf> probe_conntrack(const btf* vmlinux);

}  // namespace jitd::ebpf
