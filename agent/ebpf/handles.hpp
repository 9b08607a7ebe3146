#pragma once
// Single-owner wrappers for the C handles of libbpf and libmnl used by the eBPF backend.
#include <linux/types.h>

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <libmnl/libmnl.h>

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

}  // namespace jitd::ebpf
