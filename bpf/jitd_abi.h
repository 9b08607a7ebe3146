/* The maps and constants shared by the BPF program (bpf/jitd.bpf.c) and its loader
 * (agent/ebpf/). Plain C with kernel-style types (__u8 .. __u64): the BPF side gets them from
 * vmlinux.h, the user side from <linux/types.h>, which the includer provides first.
 *
 * Bump JITD_BPF_LAYOUT_VERSION whenever a key, a value or a map changes: the pin path carries
 * it (/sys/fs/bpf/jitd/<netns inode>/v<version>/), so an upgraded jitd never reuses a map of
 * an older layout. */
#ifndef JITD_BPF_ABI_H
#define JITD_BPF_ABI_H

#define JITD_BPF_LAYOUT_VERSION 1

/* Capacities. LPM tries and hashes of BPF_F_NO_PREALLOC allocate per entry, so these are caps,
 * not memory reserved up front. A range of addresses becomes at most 2 x (address bits)
 * prefixes. */
#define JITD_MAX_PROTECTED 4096
#define JITD_MAX_ALLOW 65536
#define JITD_MAX_GRANTS (1U << 22)

/* protected_ports and drops: one (protocol, port) pair. port in network byte order, as read
 * from the packet. */
struct jitd_port_key {
  __u8 protocol; /* IPPROTO_TCP or IPPROTO_UDP */
  __u8 pad;      /* always 0 */
  __u16 port;    /* network byte order */
};

/* allow4/grants4 and allow6/grants6: LPM trie keys. The trie matches the leading prefixlen
 * bits of everything after prefixlen, so protocol, pad and port come first and always match
 * in full: prefixlen = JITD_LPM_PORT_BITS + the address prefix length. */
#define JITD_LPM_PORT_BITS 32
struct jitd_lpm_key4 {
  __u32 prefixlen;
  __u8 protocol;
  __u8 pad;
  __u16 port; /* network byte order */
  __u8 addr[4];
};
struct jitd_lpm_key6 {
  __u32 prefixlen;
  __u8 protocol;
  __u8 pad;
  __u16 port; /* network byte order */
  __u8 addr[16];
};

/* The value of a grants4/grants6 entry: when it ends, in CLOCK_BOOTTIME nanoseconds (what
 * bpf_ktime_get_boot_ns() returns), so the program itself expires it and suspend counts.
 * allow4/allow6 entries hold JITD_NEVER. */
#define JITD_NEVER (~0ULL)

#endif
