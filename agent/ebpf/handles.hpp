#pragma once
// Single-owner wrappers for the C handles of libbpf, libmnl and libnftnl used by the eBPF
// backend.
#include <linux/types.h>

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>

#include <new>

#include "jitd/sys/handle.hpp"
#include "jitd/sys/unique_fd.hpp"

// The skeleton bpftool generates (jitd.skel.h); only ebpf_backend.cpp includes it, since it
// defines static functions.
struct jitd_bpf;

namespace jitd::ebpf {

using sys::Handle;

// Destroying the skeleton closes jitd's descriptors of maps and programs; pins and attachments
// keep them alive in the kernel.
void destroy_skeleton(jitd_bpf* skeleton);
using Skeleton = Handle<jitd_bpf, destroy_skeleton>;
using Btf = Handle<btf, btf__free>;
using MnlSocket = Handle<mnl_socket, mnl_socket_close>;
using NftTable = Handle<nftnl_table, nftnl_table_free>;
using NftChain = Handle<nftnl_chain, nftnl_chain_free>;
using NftRule = Handle<nftnl_rule, nftnl_rule_free>;
using NftExpr = Handle<nftnl_expr, nftnl_expr_free>;

// libnftnl allocators only fail when memory is exhausted, which is not a kernel error.
template <class H, class T>
H allocate(T* raw) {
  if (raw == nullptr) throw std::bad_alloc();
  return H(raw);
}

}  // namespace jitd::ebpf
