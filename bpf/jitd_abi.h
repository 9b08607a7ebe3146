/* The maps and constants shared by the BPF program (bpf/jitd.bpf.c) and its loader
 * (agent/ebpf/). Plain C with kernel-style types (__u8 .. __u64): the BPF side gets them from
 * vmlinux.h, the user side from <linux/types.h>, which the includer provides first.
 *
 * Bump JITD_BPF_LAYOUT_VERSION whenever a key, a value or a map changes: the pin path carries
 * it (/sys/fs/bpf/jitd/<netns inode>/v<version>/), so an upgraded jitd never reuses a map of
 * an older layout. */
#ifndef JITD_BPF_ABI_H
#define JITD_BPF_ABI_H

/* 2: protected_ports' value is the port's mode, `drops` became `counters` (four counters per
 * port) and `would_block` was added. */
#define JITD_BPF_LAYOUT_VERSION 2

/* Capacities. LPM tries and hashes of BPF_F_NO_PREALLOC allocate per entry, so these are caps,
 * not memory reserved up front. A range of addresses becomes at most 2 x (address bits)
 * prefixes. */
#define JITD_MAX_PROTECTED 4096
#define JITD_MAX_ALLOW 65536
#define JITD_MAX_GRANTS (1U << 22)
/* would_block is an LRU hash: the least recently seen sources make room for new ones. */
#define JITD_MAX_WOULD_BLOCK 65536

/* protected_ports and counters: one (protocol, port) pair. port in network byte order, as read
 * from the packet. */
struct jitd_port_key {
  __u8 protocol; /* IPPROTO_TCP or IPPROTO_UDP */
  __u8 pad;      /* always 0 */
  __u16 port;    /* network byte order */
};

/* The value of a protected_ports entry: what the program does with a packet enforcement
 * refuses. JITD_PORT_AUDIT (`mode: audit`) accepts it, counts it as would_drop_packets and
 * remembers its source in would_block. */
#define JITD_PORT_ENFORCE 1
#define JITD_PORT_AUDIT 2

/* The value of a counters entry (a per-CPU hash: one per possible CPU, summed by the loader). A
 * packet "opens a connection" when it is a TCP SYN without ACK, or a UDP datagram of a flow
 * conntrack has no entry for. */
struct jitd_port_counters {
  __u64 dropped_packets;      /* dropped (enforced ports) */
  __u64 dropped_connections;  /* of those, packets opening a connection */
  __u64 admitted_connections; /* packets opening a connection a grant admitted (not the
                                 allow-list) */
  __u64 would_drop_packets;   /* audited ports: accepted, enforcement would drop them */
};

/* would_block: a source an audited port accepted that enforcement would have dropped. IPv4
 * addresses in addr[0..3], the rest zero. */
struct jitd_source_key {
  __u8 family; /* AF_INET or AF_INET6 */
  __u8 protocol;
  __u16 port; /* network byte order */
  __u8 addr[16];
};
struct jitd_source_seen {
  __u64 packets;
  __u64 last_seen; /* CLOCK_BOOTTIME ns (bpf_ktime_get_boot_ns()) */
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
