// SPDX-License-Identifier: GPL-2.0
/* jitd's packet filter, at tc ingress (jitd_tc) and XDP (jitd_xdp): the decision of the
 * nftables chain (agent/nft/ruleset.cpp, rules()) over the maps of jitd_abi.h. Both programs
 * parse with parse() and decide with judge(); bpf/README.md describes the decision and why
 * each step is what it is. GPL: the conntrack kfuncs are only for GPL programs. */
#include "vmlinux.h"  // first: the headers below use its types

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "jitd_abi.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, JITD_MAX_PROTECTED);
  __type(key, struct jitd_port_key);
  __type(value, __u8); /* JITD_PORT_ENFORCE or JITD_PORT_AUDIT */
} protected_ports SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
  __uint(max_entries, JITD_MAX_PROTECTED);
  __type(key, struct jitd_port_key);
  __type(value, struct jitd_port_counters);
} counters SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, JITD_MAX_WOULD_BLOCK);
  __type(key, struct jitd_source_key);
  __type(value, struct jitd_source_seen);
} would_block SEC(".maps");

#define LPM_MAP(name, key_type, capacity) \
  struct {                                \
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);  \
    __uint(map_flags, BPF_F_NO_PREALLOC); \
    __uint(max_entries, capacity);        \
    __type(key, key_type);                \
    __type(value, __u64);                 \
  } name SEC(".maps")

LPM_MAP(allow4, struct jitd_lpm_key4, JITD_MAX_ALLOW);
LPM_MAP(allow6, struct jitd_lpm_key6, JITD_MAX_ALLOW);
LPM_MAP(grants4, struct jitd_lpm_key4, JITD_MAX_GRANTS);
LPM_MAP(grants6, struct jitd_lpm_key6, JITD_MAX_GRANTS);

/* Set by the loader from the kernel's own BTF before load: 12 on Linux 6.1, 16 on newer.
 * The kfuncs refuse any other size, and sizeof here would be the build machine's. */
const volatile __u32 ct_opts_size = 12;

/* Macros of uapi headers that vmlinux.h (types only) does not carry. */
#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define AF_INET 2
#define AF_INET6 10
#define EEXIST 17
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define IP6_OFFSET 0xFFF8
#define IP6_MF 0x0001
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10
#define LOOPBACK_IFINDEX 1 /* every namespace's lo */

/* Parsing bounds, fixed so the verifier sees bounded loops and offsets. Two VLAN tags: at tc
 * the outer one of a QinQ frame is already in skb metadata, at XDP both are in the frame. Six
 * extension headers: RFC 8200's order allows at most hop-by-hop, destination options,
 * routing, fragment, AH and destination options again before the upper layer. */
#define MAX_VLAN_TAGS 2
#define MAX_IPV6_EXT_HEADERS 6
/* Ports further into the packet than this are not read (see PARSE_OPAQUE); at tc, at most
 * this much (plus the ports) is pulled into the linear part. */
#define MAX_PORTS_OFFSET 2048

/* Wire headers, declared here rather than taken from vmlinux.h: vmlinux.h marks its structs
 * preserve_access_index, which would make every packet read a CO-RE relocation against
 * kernel types that have nothing to do with the wire format. */
struct wire_eth {
  __u8 dst[6];
  __u8 src[6];
  __be16 proto;
};
struct wire_vlan {
  __be16 tci;
  __be16 proto;
};
struct wire_ipv4 {
  __u8 version_ihl;
  __u8 tos;
  __be16 tot_len;
  __be16 id;
  __be16 frag_off;
  __u8 ttl;
  __u8 protocol;
  __be16 check;
  __be32 saddr;
  __be32 daddr;
};
struct wire_ipv6 {
  __be32 version_flow;
  __be16 payload_len;
  __u8 nexthdr;
  __u8 hop_limit;
  __be32 saddr[4];
  __be32 daddr[4];
};
/* The first four bytes of every extension header (each is at least eight long); frag_off
 * means something only in a fragment header. */
struct wire_ipv6_ext {
  __u8 nexthdr;
  __u8 len;
  __be16 frag_off;
};
struct wire_ports {
  __be16 source;
  __be16 dest;
};
/* TCP up to its flags. */
struct wire_tcp_flags {
  struct wire_ports ports;
  __be32 seq;
  __be32 ack_seq;
  __u8 data_offset;
  __u8 flags;
};

/* struct bpf_ct_opts as the kfuncs read it: 12 bytes on 6.1 (the last two reserved), 16 on
 * newer kernels (zone id and direction, then reserved). Ours, not vmlinux.h's: its size is
 * the one thing that differs between kernels and must never be relocated; all zero past
 * `dir` means the default zone. */
struct jitd_ct_opts {
  __s32 netns_id;
  __s32 error;
  __u8 l4proto;
  __u8 dir; /* out: which of the entry's tuples matched */
  __u8 zero[6];
};

/* Not weak: without them the program must not load (the loader then refuses to start rather
 * than run without the established-flow check). */
extern struct nf_conn* bpf_skb_ct_lookup(struct __sk_buff* skb, struct bpf_sock_tuple* tuple,
                                         __u32 tuple_size, struct bpf_ct_opts* opts,
                                         __u32 opts_size) __ksym;
extern struct nf_conn* bpf_xdp_ct_lookup(struct xdp_md* xdp, struct bpf_sock_tuple* tuple,
                                         __u32 tuple_size, struct bpf_ct_opts* opts,
                                         __u32 opts_size) __ksym;
extern void bpf_ct_release(struct nf_conn* ct) __ksym;

/* What parse() learnt of a packet. Addresses in network byte order; IPv4 uses [0]. */
struct jitd_packet {
  __be32 saddr[4];
  __be32 daddr[4];
  __be32 flowinfo; /* IPv6 traffic class and flow label */
  __u16 l3_len;    /* the IP datagram's length, for the route lookup */
  __u8 tos;        /* IPv4 */
  __u8 family;     /* AF_INET or AF_INET6 */
  __u8 protocol;   /* IPPROTO_TCP or IPPROTO_UDP once known */
  __be16 sport;
  __be16 dport;
  __u8 tcp_flags;      /* 0 when the packet ends before them */
  bool first_fragment; /* offset 0 and more fragments follow: the stack will reassemble */
};

enum jitd_parse {
  /* TCP or UDP with both ports read: judged. */
  PARSE_PORTS,
  /* Not judged: not IPv4/IPv6, not TCP/UDP, a non-first fragment (it carries no ports and
   * the stack cannot reassemble it without the first one, which is judged), or a header the
   * stack itself discards (bad version or IPv4 header length). */
  PARSE_IGNORE,
  /* The packet as seen ends before the ports. */
  PARSE_SHORT,
  /* The ports cannot be read (more than MAX_IPV6_EXT_HEADERS extension headers, or further
   * in than MAX_PORTS_OFFSET) yet the stack would deliver the packet: judged without ports. */
  PARSE_OPAQUE,
};

/* Whether the `len` bytes at data + off end by data_end: the check the verifier needs before
 * each read. (Variable offsets need CAP_PERFMON in the loader: without it the verifier's
 * Spectre hardening refuses packet-pointer arithmetic with a register.) */
static __always_inline bool fits(void* data, void* data_end, __u32 off, __u32 len) {
  return data + off + len <= data_end;
}

static __always_inline enum jitd_parse read_ports(void* data, void* data_end, __u32 off,
                                                  struct jitd_packet* pkt) {
  if (off > MAX_PORTS_OFFSET) return PARSE_OPAQUE;
  if (!fits(data, data_end, off, sizeof(struct wire_ports))) return PARSE_SHORT;
  struct wire_ports* ports = data + off;
  pkt->sport = ports->source;
  pkt->dport = ports->dest;
  /* barrier_var: else clang computes data + off again for the read, apart from the register
   * the bound was checked on, and the verifier (at XDP) knows no range for it. */
  struct wire_tcp_flags* tcp = data + off;
  barrier_var(tcp);
  if (pkt->protocol == IPPROTO_TCP && (void*)(tcp + 1) <= data_end) pkt->tcp_flags = tcp->flags;
  return PARSE_PORTS;
}

static __always_inline enum jitd_parse parse_ipv4(void* data, void* data_end, __u32 off,
                                                  struct jitd_packet* pkt) {
  if (!fits(data, data_end, off, sizeof(struct wire_ipv4))) return PARSE_SHORT;
  struct wire_ipv4* ip = data + off;
  __u32 header_len = (ip->version_ihl & 0x0F) * 4;
  if (ip->version_ihl >> 4 != 4 || header_len < sizeof(*ip)) return PARSE_IGNORE;
  pkt->family = AF_INET;
  pkt->saddr[0] = ip->saddr;
  pkt->daddr[0] = ip->daddr;
  pkt->tos = ip->tos;
  pkt->l3_len = bpf_ntohs(ip->tot_len);
  __u16 frag_off = bpf_ntohs(ip->frag_off);
  if (frag_off & IP_OFFSET) return PARSE_IGNORE;
  pkt->first_fragment = frag_off & IP_MF;
  if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP) return PARSE_IGNORE;
  pkt->protocol = ip->protocol;
  return read_ports(data, data_end, off + header_len, pkt);
}

/* The headers Linux walks to find the upper layer (ipv6_ext_hdr() and AH, as nftables'
 * ipv6_find_hdr does); anything else is the upper layer itself. */
static __always_inline bool ipv6_ext_header(__u8 nexthdr) {
  return nexthdr == NEXTHDR_HOP || nexthdr == NEXTHDR_ROUTING || nexthdr == NEXTHDR_DEST ||
         nexthdr == NEXTHDR_FRAGMENT || nexthdr == NEXTHDR_AUTH;
}

static __always_inline enum jitd_parse parse_ipv6(void* data, void* data_end, __u32 off,
                                                  struct jitd_packet* pkt) {
  if (!fits(data, data_end, off, sizeof(struct wire_ipv6))) return PARSE_SHORT;
  struct wire_ipv6* ip6 = data + off;
  if (bpf_ntohl(ip6->version_flow) >> 28 != 6) return PARSE_IGNORE;
  pkt->family = AF_INET6;
  __builtin_memcpy(pkt->saddr, ip6->saddr, sizeof(pkt->saddr));
  __builtin_memcpy(pkt->daddr, ip6->daddr, sizeof(pkt->daddr));
  pkt->flowinfo = ip6->version_flow & bpf_htonl(0x0FFFFFFF);
  /* A jumbogram's 0 just means "no MTU check" to the route lookup. */
  __u32 l3_len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
  pkt->l3_len = l3_len > 0xFFFF ? 0xFFFF : l3_len;
  __u8 nexthdr = ip6->nexthdr;
  off += sizeof(*ip6);

#pragma unroll
  for (int i = 0; i < MAX_IPV6_EXT_HEADERS && ipv6_ext_header(nexthdr); i++) {
    if (off > MAX_PORTS_OFFSET) return PARSE_OPAQUE;
    if (!fits(data, data_end, off, sizeof(struct wire_ipv6_ext))) return PARSE_SHORT;
    struct wire_ipv6_ext* ext = data + off;
    if (nexthdr == NEXTHDR_FRAGMENT) {
      __u16 frag_off = bpf_ntohs(ext->frag_off);
      if (frag_off & IP6_OFFSET) return PARSE_IGNORE;
      pkt->first_fragment = frag_off & IP6_MF;
      off += 8;
    } else if (nexthdr == NEXTHDR_AUTH) {
      off += (ext->len + 2) * 4;
    } else {
      off += (ext->len + 1) * 8;
    }
    nexthdr = ext->nexthdr;
  }
  if (nexthdr == IPPROTO_TCP || nexthdr == IPPROTO_UDP) {
    pkt->protocol = nexthdr;
    return read_ports(data, data_end, off, pkt);
  }
  /* Still an extension header: a longer chain than any RFC 8200 sender builds, which the
   * stack would nevertheless walk to its end. */
  return ipv6_ext_header(nexthdr) ? PARSE_OPAQUE : PARSE_IGNORE;
}

/* Ethernet, up to MAX_VLAN_TAGS VLAN tags, then IPv4 or IPv6 up to the TCP/UDP ports. */
static __always_inline enum jitd_parse parse(void* data, void* data_end, struct jitd_packet* pkt) {
  if (!fits(data, data_end, 0, sizeof(struct wire_eth))) return PARSE_IGNORE; /* a runt */
  struct wire_eth* eth = data;
  __be16 proto = eth->proto;
  __u32 off = sizeof(*eth);

#pragma unroll
  for (int i = 0; i < MAX_VLAN_TAGS; i++) {
    if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD)) break;
    if (!fits(data, data_end, off, sizeof(struct wire_vlan))) return PARSE_SHORT;
    struct wire_vlan* vlan = data + off;
    proto = vlan->proto;
    off += sizeof(*vlan);
  }
  if (proto == bpf_htons(ETH_P_IP)) return parse_ipv4(data, data_end, off, pkt);
  if (proto == bpf_htons(ETH_P_IPV6)) return parse_ipv6(data, data_end, off, pkt);
  return PARSE_IGNORE;
}

/* What conntrack knows of the packet's flow. */
enum jitd_flow {
  FLOW_UNKNOWN,  /* no entry in either direction */
  FLOW_NEW,      /* an entry that is neither established nor related (no reply seen yet) */
  FLOW_ACCEPTED, /* nftables' `ct state established,related` */
};

/* The flow as nftables' `ct state established,related` sees it: the packet is in the reply
 * direction, or the entry has seen a reply (established) or was expected by a helper
 * (related). `xdp` is a constant at each call site, so only one kfunc call remains in each
 * program. */
static __always_inline enum jitd_flow flow_of(void* ctx, const struct jitd_packet* pkt, bool xdp) {
  struct bpf_sock_tuple tuple = {};
  __u32 tuple_size;
  if (pkt->family == AF_INET) {
    tuple.ipv4.saddr = pkt->saddr[0];
    tuple.ipv4.daddr = pkt->daddr[0];
    tuple.ipv4.sport = pkt->sport;
    tuple.ipv4.dport = pkt->dport;
    tuple_size = sizeof(tuple.ipv4);
  } else {
    __builtin_memcpy(tuple.ipv6.saddr, pkt->saddr, sizeof(tuple.ipv6.saddr));
    __builtin_memcpy(tuple.ipv6.daddr, pkt->daddr, sizeof(tuple.ipv6.daddr));
    tuple.ipv6.sport = pkt->sport;
    tuple.ipv6.dport = pkt->dport;
    tuple_size = sizeof(tuple.ipv6);
  }
  struct jitd_ct_opts opts = {.netns_id = BPF_F_CURRENT_NETNS, .l4proto = pkt->protocol};
  struct nf_conn* ct =
      xdp ? bpf_xdp_ct_lookup(ctx, &tuple, tuple_size, (struct bpf_ct_opts*)&opts, ct_opts_size)
          : bpf_skb_ct_lookup(ctx, &tuple, tuple_size, (struct bpf_ct_opts*)&opts, ct_opts_size);
  if (!ct) return FLOW_UNKNOWN;
  /* status through vmlinux.h's preserve_access_index: relocated to the running kernel's
   * struct nf_conn (nf_conntrack's module BTF on Debian's 6.1). */
  const bool accepted =
      opts.dir == IP_CT_DIR_REPLY || (ct->status & (IPS_SEEN_REPLY | IPS_EXPECTED));
  bpf_ct_release(ct);
  return accepted ? FLOW_ACCEPTED : FLOW_NEW;
}

/* Whether the packet would open a connection, what the counters count as one: a TCP SYN
 * without ACK (retransmissions too, as conntrack's `ct state new` sees them), or a UDP datagram
 * of a flow conntrack has no entry for (a flow's later datagrams find the entry its first made,
 * if that one was accepted). */
static __always_inline bool opens_connection(const struct jitd_packet* pkt, enum jitd_flow flow) {
  if (pkt->protocol == IPPROTO_TCP) {
    return (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
  }
  return flow == FLOW_UNKNOWN;
}

enum jitd_admission {
  ADMIT_NONE,
  ADMIT_ALLOWED, /* the permanent allow-list */
  ADMIT_GRANTED, /* a live grant */
};

/* Whether the source is on the permanent allow-list or holds a live grant for the port. */
static __always_inline enum jitd_admission admission_of(const struct jitd_packet* pkt) {
  const __u64 now = bpf_ktime_get_boot_ns();
  __u64* end;
  if (pkt->family == AF_INET) {
    struct jitd_lpm_key4 key = {
        .prefixlen = JITD_LPM_PORT_BITS + 32, .protocol = pkt->protocol, .port = pkt->dport};
    __builtin_memcpy(key.addr, pkt->saddr, sizeof(key.addr));
    if (bpf_map_lookup_elem(&allow4, &key)) return ADMIT_ALLOWED;
    end = bpf_map_lookup_elem(&grants4, &key);
  } else {
    struct jitd_lpm_key6 key = {
        .prefixlen = JITD_LPM_PORT_BITS + 128, .protocol = pkt->protocol, .port = pkt->dport};
    __builtin_memcpy(key.addr, pkt->saddr, sizeof(key.addr));
    if (bpf_map_lookup_elem(&allow6, &key)) return ADMIT_ALLOWED;
    end = bpf_map_lookup_elem(&grants6, &key);
  }
  /* The grants are disjoint prefixes, so the longest match is the only one: an expired
   * entry (the loader deletes it later) admits nothing. */
  return end && *end > now ? ADMIT_GRANTED : ADMIT_NONE;
}

/* Whether the packet is for this host, as nftables' input hook sees packets: the routing
 * decision for it is anything but "forward" (local, broadcast; or forwarding is off on the
 * interface, so nothing is forwarded; or a blackhole/unreachable route, so the stack drops it
 * anyway). FRAG_NEEDED and UNSUPP_LWT come only after the lookup found a unicast route out,
 * so they are forwarding too. Errors (no such device) count as local: judged, not waved
 * through. */
static __always_inline bool addressed_here(void* ctx, const struct jitd_packet* pkt,
                                           __u32 ifindex) {
  struct bpf_fib_lookup fib = {
      .family = pkt->family,
      .l4_protocol = pkt->protocol,
      .sport = pkt->sport,
      .dport = pkt->dport,
      .tot_len = pkt->l3_len,
      .ifindex = ifindex,
  };
  if (pkt->family == AF_INET) {
    fib.tos = pkt->tos;
    fib.ipv4_src = pkt->saddr[0];
    fib.ipv4_dst = pkt->daddr[0];
  } else {
    fib.flowinfo = pkt->flowinfo;
    __builtin_memcpy(fib.ipv6_src, pkt->saddr, sizeof(fib.ipv6_src));
    __builtin_memcpy(fib.ipv6_dst, pkt->daddr, sizeof(fib.ipv6_dst));
  }
  switch (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0)) {
    case BPF_FIB_LKUP_RET_SUCCESS:
    case BPF_FIB_LKUP_RET_NO_NEIGH:
    case BPF_FIB_LKUP_RET_FRAG_NEEDED:
    case BPF_FIB_LKUP_RET_UNSUPP_LWT: return false;
    default: return true;
  }
}

/* The port's counters, made (zero) at its first count. They are per CPU, so the caller's
 * plain increments are exact. Another CPU may create the key between our lookup and insert
 * (EEXIST): the second lookup finds it either way. NULL only when the map is full. */
static __always_inline struct jitd_port_counters* counters_of(const struct jitd_port_key* key) {
  struct jitd_port_counters* found = bpf_map_lookup_elem(&counters, key);
  if (found) return found;
  const struct jitd_port_counters zero = {};
  bpf_map_update_elem(&counters, key, &zero, BPF_NOEXIST);
  return bpf_map_lookup_elem(&counters, key);
}

/* An audited port let the packet through: its source, port and time go to the LRU hash
 * would_block, shared by all CPUs, hence the atomic add. */
static __always_inline void remember_source(const struct jitd_packet* pkt) {
  struct jitd_source_key key = {
      .family = pkt->family, .protocol = pkt->protocol, .port = pkt->dport};
  if (pkt->family == AF_INET) {
    __builtin_memcpy(key.addr, pkt->saddr, 4);
  } else {
    __builtin_memcpy(key.addr, pkt->saddr, sizeof(key.addr));
  }
  const __u64 now = bpf_ktime_get_boot_ns();
  struct jitd_source_seen* seen = bpf_map_lookup_elem(&would_block, &key);
  if (!seen) {
    const struct jitd_source_seen first = {.packets = 1, .last_seen = now};
    if (bpf_map_update_elem(&would_block, &key, &first, BPF_NOEXIST) != -EEXIST) return;
    seen = bpf_map_lookup_elem(&would_block, &key);
    if (!seen) return;
  }
  __sync_fetch_and_add(&seen->packets, 1);
  seen->last_seen = now;
}

/* The decision over a parsed packet, in the order of the nftables chain; true: drop. The
 * route lookup comes last, so accepted packets never pay for it (but for new connections a
 * grant admits, to count only those for this host, as nftables' input hook does). */
static __always_inline bool judge(void* ctx, enum jitd_parse parsed, const struct jitd_packet* pkt,
                                  __u32 ifindex, bool xdp) {
  switch (parsed) {
    case PARSE_IGNORE: return false;
    case PARSE_SHORT:
      /* Truncated before the ports: the stack discards such a packet (IPv4 and IPv6 header
       * checks, TCP/UDP header pulls), unless it is a first fragment that later fragments
       * complete in reassembly (IPv6 accepts a first fragment whose extension headers are
       * cut short). */
      if (!pkt->first_fragment) return false;
      return addressed_here(ctx, pkt, ifindex);
    case PARSE_OPAQUE: return addressed_here(ctx, pkt, ifindex);
    case PARSE_PORTS: break;
  }
  const struct jitd_port_key key = {.protocol = pkt->protocol, .port = pkt->dport};
  const __u8* mode = bpf_map_lookup_elem(&protected_ports, &key);
  if (!mode) return false;
  const bool audited = *mode == JITD_PORT_AUDIT;
  const enum jitd_flow flow = flow_of(ctx, pkt, xdp);
  if (flow == FLOW_ACCEPTED) return false;
  const bool opens = opens_connection(pkt, flow);
  const enum jitd_admission admission = admission_of(pkt);
  if (admission == ADMIT_ALLOWED) return false;
  if (admission == ADMIT_GRANTED) {
    if (!opens || !addressed_here(ctx, pkt, ifindex)) return false;
    struct jitd_port_counters* counted = counters_of(&key);
    if (counted) counted->admitted_connections += 1;
    return false;
  }
  if (!addressed_here(ctx, pkt, ifindex)) return false;
  struct jitd_port_counters* counted = counters_of(&key);
  if (audited) {
    if (counted) counted->would_drop_packets += 1;
    remember_source(pkt);
    return false;
  }
  if (counted) {
    counted->dropped_packets += 1;
    if (opens) counted->dropped_connections += 1;
  }
  return true;
}

SEC("tc")
int jitd_tc(struct __sk_buff* skb) {
  /* At tc ingress skb->ifindex is the receiving device. Context fields are read once, into
   * locals: clang may otherwise keep a context pointer plus offset around, which the
   * verifier refuses to dereference. */
  const __u32 ifindex = skb->ifindex;
  if (ifindex == LOOPBACK_IFINDEX) return TC_ACT_OK;
  void* data = (void*)(long)skb->data;
  void* data_end = (void*)(long)skb->data_end;
  struct jitd_packet pkt = {};
  enum jitd_parse parsed = parse(data, data_end, &pkt);
  /* Headers are normally in the linear part (drivers and GRO pull them), but nothing
   * guarantees it: when the linear part ends before the ports and the packet does not, pull
   * and parse again, else a packet with paged headers would pass as truncated. A failed pull
   * is memory pressure, under which the stack's own pull fails too: drop. */
  __u32 want = skb->len;
  if (want > MAX_PORTS_OFFSET + sizeof(struct wire_ports))
    want = MAX_PORTS_OFFSET + sizeof(struct wire_ports);
  if (parsed == PARSE_SHORT && data + want > data_end) {
    if (bpf_skb_pull_data(skb, want) != 0) return TC_ACT_SHOT;
    data = (void*)(long)skb->data;
    data_end = (void*)(long)skb->data_end;
    pkt = (struct jitd_packet){};
    parsed = parse(data, data_end, &pkt);
  }
  return judge(skb, parsed, &pkt, ifindex, false) ? TC_ACT_SHOT : TC_ACT_OK;
}

SEC("xdp")
int jitd_xdp(struct xdp_md* ctx) {
  const __u32 ifindex = ctx->ingress_ifindex;
  if (ifindex == LOOPBACK_IFINDEX) return XDP_PASS;
  /* Without BPF_F_XDP_HAS_FRAGS the frame is one buffer: data_end is the packet's end. */
  void* data = (void*)(long)ctx->data;
  void* data_end = (void*)(long)ctx->data_end;
  struct jitd_packet pkt = {};
  const enum jitd_parse parsed = parse(data, data_end, &pkt);
  return judge(ctx, parsed, &pkt, ifindex, true) ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
