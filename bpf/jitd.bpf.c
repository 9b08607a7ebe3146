// SPDX-License-Identifier: GPL-2.0
/* Placeholder program with the final maps: replaced by the real decision (see bpf/README.md). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "jitd_abi.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, JITD_MAX_PROTECTED);
  __type(key, struct jitd_port_key);
  __type(value, __u8);
} protected_ports SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, JITD_MAX_PROTECTED);
  __type(key, struct jitd_port_key);
  __type(value, __u64);
} drops SEC(".maps");

#define LPM_MAP(name, key_type, capacity)     \
  struct {                                    \
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);      \
    __uint(map_flags, BPF_F_NO_PREALLOC);     \
    __uint(max_entries, capacity);            \
    __type(key, key_type);                    \
    __type(value, __u64);                     \
  } name SEC(".maps")

LPM_MAP(allow4, struct jitd_lpm_key4, JITD_MAX_ALLOW);
LPM_MAP(allow6, struct jitd_lpm_key6, JITD_MAX_ALLOW);
LPM_MAP(grants4, struct jitd_lpm_key4, JITD_MAX_GRANTS);
LPM_MAP(grants6, struct jitd_lpm_key6, JITD_MAX_GRANTS);

/* Set by the loader from the kernel's own BTF before load: 12 on Linux 6.1, 16 on newer. */
const volatile __u32 ct_opts_size = 12;

SEC("tc")
int jitd_tc(struct __sk_buff *skb) { return 0; /* TC_ACT_OK */ }

SEC("xdp")
int jitd_xdp(struct xdp_md *ctx) { return XDP_PASS; }

char LICENSE[] SEC("license") = "GPL";
