// The BPF program (bpf/jitd.bpf.c) on crafted packets through BPF_PROG_TEST_RUN: every packet
// goes through both jitd_tc and jitd_xdp, unattached, and both must reach the same verdict.
// main() first moves the process into a new network namespace; each test then takes a fresh
// one of its own with a veth pair, jitd0 (10.1.0.1/24, 2001:db8:1::1/64) and its peer, whose
// jitd0 the runs name as the ingress device: without it a test run's device is the
// namespace's loopback, which the program never judges. (veth rather than dummy: some
// kernels, this CI machine's among them, are built without the dummy driver.) Forwarding is
// on, so a packet for one of jitd0's addresses is judged because it is local (the route
// lookup says "not forwarded"), not merely because nothing is forwarded. One test attaches
// jitd_tc to jitd0 and sends through the peer a packet whose headers are not in the skb's
// linear part, which a test run cannot build.
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <linux/pkt_cls.h>
#include <linux/types.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include "jitd/sys/handle.hpp"
#include "jitd/sys/unique_fd.hpp"
#include "jitd_abi.h"
#include "kernel_test_support.hpp"

// The skeleton embeds the object as one long string literal, longer than ISO C++ promises to
// support; GCC and clang take it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverlength-strings"
#include "jitd.skel.h"
#pragma GCC diagnostic pop

namespace {

using jitd::sys::Handle;
using jitd::sys::UniqueFd;
using namespace jitd::test;  // run, skip_all, running_under_ci

using Bytes = std::vector<std::uint8_t>;
using Skeleton = Handle<jitd_bpf, jitd_bpf__destroy>;
using Btf = Handle<btf, btf__free>;

constexpr std::uint16_t ssh = 22;
constexpr std::uint16_t other_port = 2222;
constexpr std::uint16_t client_port = 40000;
const std::string host4 = "10.1.0.1";
const std::string client4 = "10.1.0.2";
const std::string host6 = "2001:db8:1::1";
const std::string client6 = "2001:db8:1::2";
const std::string interface = "jitd0";
const std::string peer = "jitd0peer";

constexpr std::uint16_t ethertype_ipv4 = 0x0800;
constexpr std::uint16_t ethertype_ipv6 = 0x86DD;
constexpr std::uint16_t ethertype_arp = 0x0806;
constexpr std::uint16_t tpid_8021q = 0x8100;
constexpr std::uint16_t tpid_8021ad = 0x88A8;
constexpr std::uint8_t nexthdr_hop = 0;
constexpr std::uint8_t nexthdr_routing = 43;
constexpr std::uint8_t nexthdr_fragment = 44;
constexpr std::uint8_t nexthdr_esp = 50;
constexpr std::uint8_t nexthdr_auth = 51;
constexpr std::uint8_t nexthdr_none = 59;
constexpr std::uint8_t nexthdr_dest = 60;
constexpr std::uint16_t ipv4_more_fragments = 0x2000;
constexpr std::uint8_t tcp_syn = 0x02;
constexpr std::uint8_t tcp_ack = 0x10;

// Test plumbing failures are not what is under test: they abort the test with the reason.
void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what + ": " + std::strerror(errno));
}

void check_command(const std::string& command) {
  const Output output = run(command);
  if (output.status != 0) {
    throw std::runtime_error("`" + command + "` exited " + std::to_string(output.status));
  }
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream file(path);
  file << text;
  file.flush();
  if (!file) throw std::runtime_error("cannot write " + path);
}

std::uint64_t boot_clock_ns() {
  timespec now{};
  check(clock_gettime(CLOCK_BOOTTIME, &now) == 0, "clock_gettime");
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000U +
         static_cast<std::uint64_t>(now.tv_nsec);
}

// ---------------------------------------------------------------------------- packets

void put16(Bytes& out, std::uint16_t value) {
  out.push_back(static_cast<std::uint8_t>(value >> 8));
  out.push_back(static_cast<std::uint8_t>(value));
}

void append(Bytes& out, const Bytes& more) { out.insert(out.end(), more.begin(), more.end()); }

template <std::size_t N>
std::array<std::uint8_t, N> address(const std::string& text) {
  std::array<std::uint8_t, N> bytes{};
  check(inet_pton(N == 4 ? AF_INET : AF_INET6, text.c_str(), bytes.data()) == 1, "parse " + text);
  return bytes;
}

// A TCP header (a SYN unless `tcp_flags` say otherwise), a UDP header or an ICMP/ICMPv6 echo
// request.
Bytes transport(std::uint8_t protocol, std::uint16_t sport, std::uint16_t dport,
                std::uint8_t tcp_flags = tcp_syn) {
  Bytes out;
  if (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6) {
    return {static_cast<std::uint8_t>(protocol == IPPROTO_ICMP ? 8 : 128), 0, 0, 0, 0, 0, 0, 0};
  }
  put16(out, sport);
  put16(out, dport);
  if (protocol == IPPROTO_UDP) {
    put16(out, 8);  // length
    put16(out, 0);  // no checksum
  } else {
    // sequence, acknowledgement, data offset 5 words, flags, window, checksum, urgent pointer
    append(out, {0, 0, 0, 1, 0, 0, 0, 0, 0x50, tcp_flags, 0xFF, 0xFF, 0, 0, 0, 0});
  }
  return out;
}

// An IPv4 header (with `options`, a multiple of 4 bytes) and `payload`. `fragment` is the
// flags and offset field; the header checksum is not checked by anything here.
Bytes ipv4(const std::string& src, const std::string& dst, std::uint8_t protocol,
           const Bytes& payload, std::uint16_t fragment = 0, const Bytes& options = {}) {
  const std::size_t header_len = 20 + options.size();
  Bytes out{static_cast<std::uint8_t>(0x40 | header_len / 4), 0};
  put16(out, static_cast<std::uint16_t>(header_len + payload.size()));
  put16(out, 0x1234);  // identification
  put16(out, fragment);
  append(out, {64, protocol, 0, 0});
  for (const auto byte : address<4>(src)) out.push_back(byte);
  for (const auto byte : address<4>(dst)) out.push_back(byte);
  append(out, options);
  append(out, payload);
  return out;
}

// An IPv6 header and `payload`: `nexthdr` names its first header.
Bytes ipv6(const std::string& src, const std::string& dst, std::uint8_t nexthdr,
           const Bytes& payload) {
  Bytes out{0x60, 0, 0, 0};
  put16(out, static_cast<std::uint16_t>(payload.size()));
  append(out, {nexthdr, 64});
  for (const auto byte : address<16>(src)) out.push_back(byte);
  for (const auto byte : address<16>(dst)) out.push_back(byte);
  append(out, payload);
  return out;
}

// Hop-by-hop, routing or destination options: (length + 1) x 8 bytes, padding otherwise.
Bytes option_header(std::uint8_t nexthdr, std::uint8_t length = 0) {
  Bytes out((length + 1U) * 8U, 0);
  out[0] = nexthdr;
  out[1] = length;
  return out;
}

// AH: (length + 2) x 4 bytes.
Bytes auth_header(std::uint8_t nexthdr, std::uint8_t length) {
  Bytes out((length + 2U) * 4U, 0);
  out[0] = nexthdr;
  out[1] = length;
  return out;
}

Bytes fragment_header(std::uint8_t nexthdr, std::uint16_t offset_units, bool more) {
  Bytes out{nexthdr, 0};
  put16(out, static_cast<std::uint16_t>(offset_units << 3 | (more ? 1 : 0)));
  append(out, {0, 0, 0x12, 0x34});  // identification
  return out;
}

// An Ethernet frame; `tags` are the TPIDs of VLAN tags, outermost first.
Bytes ethernet(std::uint16_t type, const Bytes& payload,
               const std::vector<std::uint16_t>& tags = {}) {
  Bytes out{0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02};
  for (const auto tpid : tags) {
    put16(out, tpid);
    put16(out, 100);  // VLAN id
  }
  put16(out, type);
  append(out, payload);
  return out;
}

Bytes tcp4(const std::string& src, std::uint16_t dport = ssh, const std::string& dst = host4,
           std::uint8_t flags = tcp_syn) {
  return ethernet(ethertype_ipv4,
                  ipv4(src, dst, IPPROTO_TCP, transport(IPPROTO_TCP, client_port, dport, flags)));
}

Bytes udp4(const std::string& src, std::uint16_t dport, const std::string& dst = host4) {
  return ethernet(ethertype_ipv4,
                  ipv4(src, dst, IPPROTO_UDP, transport(IPPROTO_UDP, client_port, dport)));
}

Bytes tcp6(const std::string& src, std::uint16_t dport = ssh, const std::string& dst = host6) {
  return ethernet(ethertype_ipv6,
                  ipv6(src, dst, IPPROTO_TCP, transport(IPPROTO_TCP, client_port, dport)));
}

// An IPv6 packet to host6 whose headers after the fixed one are `chain` (starting with
// `first`), then a TCP header to `dport`.
Bytes tcp6_after(std::uint8_t first, const Bytes& chain, const std::string& src = client6,
                 std::uint16_t dport = ssh) {
  Bytes payload = chain;
  append(payload, transport(IPPROTO_TCP, client_port, dport));
  return ethernet(ethertype_ipv6, ipv6(src, host6, first, payload));
}

// ---------------------------------------------------------------------------- verdicts

struct Verdicts {
  std::uint32_t tc = 0;   // what jitd_tc returned (TC_ACT_*)
  std::uint32_t xdp = 0;  // what jitd_xdp returned (XDP_*)
};

testing::AssertionResult passed(const Verdicts& verdicts) {
  if (verdicts.tc == TC_ACT_OK && verdicts.xdp == XDP_PASS) return testing::AssertionSuccess();
  return testing::AssertionFailure()
         << "tc returned " << verdicts.tc << " (TC_ACT_OK is " << TC_ACT_OK << "), xdp "
         << verdicts.xdp << " (XDP_PASS is " << XDP_PASS << ")";
}

testing::AssertionResult dropped(const Verdicts& verdicts) {
  if (verdicts.tc == TC_ACT_SHOT && verdicts.xdp == XDP_DROP) return testing::AssertionSuccess();
  return testing::AssertionFailure()
         << "tc returned " << verdicts.tc << " (TC_ACT_SHOT is " << TC_ACT_SHOT << "), xdp "
         << verdicts.xdp << " (XDP_DROP is " << XDP_DROP << ")";
}

// ---------------------------------------------------------------------------- kernel

std::optional<std::uint32_t> struct_size(const btf* types, const char* name) {
  const int id = btf__find_by_name_kind(types, name, BTF_KIND_STRUCT);
  if (id <= 0) return std::nullopt;
  return btf__type_by_id(types, static_cast<__u32>(id))->size;
}

// sizeof(struct bpf_ct_opts) as the running kernel has it (the loader's job in jitd): in
// vmlinux's BTF when conntrack is built in, in nf_conntrack's module BTF when it is a module
// (Debian's 6.1). Nothing when that module is not loaded: then the kfuncs are missing too.
std::optional<std::uint32_t> kernel_ct_opts_size() {
  const Btf vmlinux(btf__load_vmlinux_btf());
  check(vmlinux != nullptr, "load the kernel's BTF");
  if (const auto size = struct_size(vmlinux.get(), "bpf_ct_opts")) return size;
  const Btf module(btf__load_module_btf("nf_conntrack", vmlinux.get()));
  if (!module) return std::nullopt;
  return struct_size(module.get(), "bpf_ct_opts");
}

class EbpfProgramTest : public testing::Test {
 protected:
  void SetUp() override {
    if (skip_all()) GTEST_SKIP() << "no private network namespace (needs root or CAP_SYS_ADMIN)";
    static const std::optional<std::uint32_t> size = kernel_ct_opts_size();
    if (!size) {
      const std::string why =
          "no struct bpf_ct_opts in the kernel's BTF: conntrack is a module (nf_conntrack) "
          "that is not loaded, so the program's conntrack kfuncs are missing";
      if (running_under_ci()) FAIL() << why;
      GTEST_SKIP() << why;
    }
    ASSERT_EQ(unshare(CLONE_NEWNET), 0) << std::strerror(errno);
    check_command("ip link set lo up");
    // MTU 9000: room for the page-sized packet of TcJudgesHeadersOutsideTheLinearPart.
    check_command("ip link add " + interface + " mtu 9000 type veth peer name " + peer +
                  " mtu 9000");
    check_command("ip link set " + interface + " up");
    check_command("ip link set " + peer + " up");
    check_command("ip addr add " + host4 + "/24 dev " + interface);
    check_command("ip addr add " + host6 + "/64 dev " + interface + " nodad");
    ifindex_ = if_nametoindex(interface.c_str());
    check(ifindex_ != 0, "if_nametoindex " + interface);
    set_forwarding(true);
    load(*size);
  }

  void load(std::uint32_t ct_opts_size) {
    skeleton_.reset(jitd_bpf__open());
    check(skeleton_ != nullptr, "open the BPF skeleton");
    skeleton_->rodata->ct_opts_size = ct_opts_size;
    const int error = jitd_bpf__load(skeleton_.get());
    if (error != 0) {
      throw std::runtime_error("load the BPF program (libbpf printed the verifier log): " +
                               std::string(std::strerror(-error)));
    }
  }

  // Both sysctls exist per namespace; a new one starts from the host's IPv4 setting.
  static void set_forwarding(bool on) {
    write_file("/proc/sys/net/ipv4/ip_forward", on ? "1" : "0");
    write_file("/proc/sys/net/ipv6/conf/all/forwarding", on ? "1" : "0");
  }

  [[nodiscard]] int map_fd(const bpf_map* map) const { return bpf_map__fd(map); }

  void update(const bpf_map* map, const void* key, const void* value) const {
    check(bpf_map_update_elem(map_fd(map), key, value, BPF_ANY) == 0,
          std::string("update map ") + bpf_map__name(map));
  }

  void protect(std::uint8_t protocol, std::uint16_t port,
               std::uint8_t mode = JITD_PORT_ENFORCE) const {
    const jitd_port_key key{protocol, 0, htons(port)};
    update(skeleton_->maps.protected_ports, &key, &mode);
  }

  // An allow-list (end JITD_NEVER) or grant entry for `source`/`prefix_len`, whose
  // address family decides the map.
  void add_source(bool allow, std::uint8_t protocol, std::uint16_t port, const std::string& source,
                  std::uint32_t prefix_len, std::uint64_t end) const {
    if (source.find(':') == std::string::npos) {
      jitd_lpm_key4 key{JITD_LPM_PORT_BITS + prefix_len, protocol, 0, htons(port), {}};
      const auto bytes = address<4>(source);
      std::memcpy(key.addr, bytes.data(), bytes.size());
      update(allow ? skeleton_->maps.allow4 : skeleton_->maps.grants4, &key, &end);
    } else {
      jitd_lpm_key6 key{JITD_LPM_PORT_BITS + prefix_len, protocol, 0, htons(port), {}};
      const auto bytes = address<16>(source);
      std::memcpy(key.addr, bytes.data(), bytes.size());
      update(allow ? skeleton_->maps.allow6 : skeleton_->maps.grants6, &key, &end);
    }
  }

  void grant(std::uint8_t protocol, std::uint16_t port, const std::string& source,
             std::uint32_t prefix_len,
             std::uint64_t end = boot_clock_ns() + 60'000'000'000U) const {
    add_source(false, protocol, port, source, prefix_len, end);
  }

  void allow(std::uint8_t protocol, std::uint16_t port, const std::string& source,
             std::uint32_t prefix_len) const {
    add_source(true, protocol, port, source, prefix_len, JITD_NEVER);
  }

  // counters[(protocol, port)] summed over CPUs; all zero when the program never counted it.
  [[nodiscard]] jitd_port_counters counters(std::uint8_t protocol, std::uint16_t port) const {
    const jitd_port_key key{protocol, 0, htons(port)};
    const int cpus = libbpf_num_possible_cpus();
    check(cpus > 0, "count the possible CPUs");
    std::vector<jitd_port_counters> values(static_cast<std::size_t>(cpus));
    jitd_port_counters sum{};
    if (bpf_map_lookup_elem(map_fd(skeleton_->maps.counters), &key, values.data()) != 0) {
      check(errno == ENOENT, "look up counters");
      return sum;
    }
    for (const auto& cpu : values) {
      sum.dropped_packets += cpu.dropped_packets;
      sum.dropped_connections += cpu.dropped_connections;
      sum.admitted_connections += cpu.admitted_connections;
      sum.would_drop_packets += cpu.would_drop_packets;
    }
    return sum;
  }

  [[nodiscard]] std::uint64_t drops(std::uint8_t protocol, std::uint16_t port) const {
    return counters(protocol, port).dropped_packets;
  }

  // What would_block remembers of `source` at (protocol, port), if anything.
  [[nodiscard]] std::optional<jitd_source_seen> remembered(const std::string& source,
                                                           std::uint8_t protocol,
                                                           std::uint16_t port) const {
    jitd_source_key key{};
    key.protocol = protocol;
    key.port = htons(port);
    if (source.find(':') == std::string::npos) {
      key.family = AF_INET;
      const auto bytes = address<4>(source);
      std::memcpy(key.addr, bytes.data(), bytes.size());
    } else {
      key.family = AF_INET6;
      const auto bytes = address<16>(source);
      std::memcpy(key.addr, bytes.data(), bytes.size());
    }
    jitd_source_seen seen{};
    if (bpf_map_lookup_elem(map_fd(skeleton_->maps.would_block), &key, &seen) != 0) {
      check(errno == ENOENT, "look up would_block");
      return std::nullopt;
    }
    return seen;
  }

  static std::uint32_t test_run(const bpf_program* program, const Bytes& packet, void* context,
                                std::size_t context_size) {
    bpf_test_run_opts options{};
    options.sz = sizeof(options);
    options.data_in = packet.data();
    options.data_size_in = static_cast<__u32>(packet.size());
    options.ctx_in = context;
    options.ctx_size_in = static_cast<__u32>(context_size);
    options.repeat = 1;
    const int error = bpf_prog_test_run_opts(bpf_program__fd(program), &options);
    if (error != 0) {
      throw std::runtime_error(std::string("BPF_PROG_TEST_RUN of ") + bpf_program__name(program) +
                               ": " + std::strerror(-error));
    }
    return options.retval;
  }

  // Runs `packet` through jitd_xdp as if it arrived on `ifindex` (jitd0 by default):
  // xdp_md.ingress_ifindex picks the receive queue's device; data_end must be the packet's
  // size. (Both context fields here are taken by 6.1 and later.)
  [[nodiscard]] std::uint32_t run_xdp(const Bytes& packet, std::uint32_t ifindex = 0) const {
    xdp_md xdp{};
    xdp.data_end = static_cast<__u32>(packet.size());
    xdp.ingress_ifindex = ifindex == 0 ? ifindex_ : ifindex;
    return test_run(skeleton_->progs.jitd_xdp, packet, &xdp, sizeof(xdp));
  }

  // Runs `packet` through both programs as if it arrived on `ifindex` (jitd0 by default).
  // tc: __sk_buff.ifindex picks the test run's device (0 or 1 means loopback).
  [[nodiscard]] Verdicts run(const Bytes& packet, std::uint32_t ifindex = 0) const {
    __sk_buff skb{};
    skb.ifindex = ifindex == 0 ? ifindex_ : ifindex;
    return {test_run(skeleton_->progs.jitd_tc, packet, &skb, sizeof(skb)),
            run_xdp(packet, ifindex)};
  }

  std::uint32_t ifindex_ = 0;
  Skeleton skeleton_;
};

TEST_F(EbpfProgramTest, GrantedSourcePasses) {
  protect(IPPROTO_TCP, ssh);
  grant(IPPROTO_TCP, ssh, client4, 32);

  EXPECT_TRUE(passed(run(tcp4(client4))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 0U);
}

TEST_F(EbpfProgramTest, SourceWithoutGrantIsDroppedAndCounted) {
  protect(IPPROTO_TCP, ssh);
  protect(IPPROTO_TCP, other_port);
  grant(IPPROTO_TCP, ssh, "10.1.0.3", 32);
  grant(IPPROTO_TCP, other_port, client4, 32);  // another port's grant admits nothing here

  EXPECT_TRUE(dropped(run(tcp4(client4))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 2U);  // one per program
  EXPECT_TRUE(dropped(run(tcp4(client4))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 4U);
  EXPECT_EQ(drops(IPPROTO_TCP, other_port), 0U);
}

// A packet opens a connection when it is a TCP SYN without ACK, or a UDP datagram of a flow
// conntrack does not know; dropped_connections counts the dropped ones.
TEST_F(EbpfProgramTest, DroppedSynCountsADroppedConnection) {
  protect(IPPROTO_TCP, ssh);
  protect(IPPROTO_UDP, 53);

  EXPECT_TRUE(dropped(run(tcp4(client4))));
  jitd_port_counters counted = counters(IPPROTO_TCP, ssh);
  EXPECT_EQ(counted.dropped_packets, 2U);  // one per program
  EXPECT_EQ(counted.dropped_connections, 2U);
  // Neither a stray ACK nor a SYN-ACK opens a connection.
  EXPECT_TRUE(dropped(run(tcp4(client4, ssh, host4, tcp_ack))));
  EXPECT_TRUE(dropped(run(tcp4(client4, ssh, host4, tcp_syn | tcp_ack))));
  counted = counters(IPPROTO_TCP, ssh);
  EXPECT_EQ(counted.dropped_packets, 6U);
  EXPECT_EQ(counted.dropped_connections, 2U);
  EXPECT_EQ(counted.admitted_connections, 0U);
  EXPECT_EQ(counted.would_drop_packets, 0U);

  EXPECT_TRUE(dropped(run(udp4(client4, 53))));
  counted = counters(IPPROTO_UDP, 53);
  EXPECT_EQ(counted.dropped_packets, 2U);
  EXPECT_EQ(counted.dropped_connections, 2U);
}

// admitted_connections: new connections a grant let in; not the allow-list's, not later
// packets of a connection, not a forwarded packet (nftables' input hook never sees those).
TEST_F(EbpfProgramTest, GrantedSynCountsAnAdmittedConnection) {
  protect(IPPROTO_TCP, ssh);
  grant(IPPROTO_TCP, ssh, client4, 32);
  allow(IPPROTO_TCP, ssh, "10.1.0.3", 32);
  check_command("ip route add 10.2.0.0/24 dev " + interface);

  EXPECT_TRUE(passed(run(tcp4(client4))));
  EXPECT_EQ(counters(IPPROTO_TCP, ssh).admitted_connections, 2U);
  EXPECT_TRUE(passed(run(tcp4(client4, ssh, host4, tcp_ack))));
  EXPECT_TRUE(passed(run(tcp4("10.1.0.3"))));
  EXPECT_TRUE(passed(run(tcp4(client4, ssh, "10.2.0.5"))));
  const jitd_port_counters counted = counters(IPPROTO_TCP, ssh);
  EXPECT_EQ(counted.admitted_connections, 2U);
  EXPECT_EQ(counted.dropped_packets, 0U);
  EXPECT_EQ(counted.dropped_connections, 0U);
}

// `mode: audit`: what enforcement would drop passes, is counted and its source remembered; an
// enforced port beside it still drops.
TEST_F(EbpfProgramTest, AuditedPortPassesCountsAndRemembersTheSource) {
  protect(IPPROTO_TCP, ssh, JITD_PORT_AUDIT);
  protect(IPPROTO_TCP, other_port);
  grant(IPPROTO_TCP, ssh, "10.1.0.3", 32);
  const std::uint64_t before = boot_clock_ns();

  EXPECT_TRUE(passed(run(tcp4(client4))));
  EXPECT_TRUE(passed(run(tcp6(client6))));
  const std::uint64_t after = boot_clock_ns();
  jitd_port_counters counted = counters(IPPROTO_TCP, ssh);
  EXPECT_EQ(counted.would_drop_packets, 4U);
  EXPECT_EQ(counted.dropped_packets, 0U);
  EXPECT_EQ(counted.dropped_connections, 0U);
  const auto seen4 = remembered(client4, IPPROTO_TCP, ssh);
  ASSERT_TRUE(seen4.has_value());
  EXPECT_EQ(seen4->packets, 2U);
  EXPECT_GE(seen4->last_seen, before);
  EXPECT_LE(seen4->last_seen, after);
  const auto seen6 = remembered(client6, IPPROTO_TCP, ssh);
  ASSERT_TRUE(seen6.has_value());
  EXPECT_EQ(seen6->packets, 2U);

  // A granted source is admitted, not a would-be drop.
  EXPECT_TRUE(passed(run(tcp4("10.1.0.3"))));
  counted = counters(IPPROTO_TCP, ssh);
  EXPECT_EQ(counted.would_drop_packets, 4U);
  EXPECT_EQ(counted.admitted_connections, 2U);
  EXPECT_FALSE(remembered("10.1.0.3", IPPROTO_TCP, ssh).has_value());

  EXPECT_TRUE(dropped(run(tcp4(client4, other_port))));
  counted = counters(IPPROTO_TCP, other_port);
  EXPECT_EQ(counted.dropped_packets, 2U);
  EXPECT_EQ(counted.dropped_connections, 2U);
  EXPECT_EQ(counted.would_drop_packets, 0U);
  EXPECT_FALSE(remembered(client4, IPPROTO_TCP, other_port).has_value());
}

TEST_F(EbpfProgramTest, ExpiredGrantDrops) {
  protect(IPPROTO_TCP, ssh);
  grant(IPPROTO_TCP, ssh, client4, 32, boot_clock_ns() - 1);

  EXPECT_TRUE(dropped(run(tcp4(client4))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 2U);
}

TEST_F(EbpfProgramTest, UnprotectedPortPasses) {
  protect(IPPROTO_TCP, ssh);
  protect(IPPROTO_UDP, 53);

  EXPECT_TRUE(passed(run(tcp4(client4, other_port))));
  EXPECT_TRUE(passed(run(udp4(client4, ssh))));  // UDP 22 is not TCP 22
  EXPECT_TRUE(passed(run(tcp4(client4, 53))));
  EXPECT_EQ(drops(IPPROTO_TCP, other_port), 0U);
  EXPECT_EQ(drops(IPPROTO_UDP, ssh), 0U);
  EXPECT_EQ(drops(IPPROTO_TCP, 53), 0U);
}

TEST_F(EbpfProgramTest, UdpIsJudged) {
  protect(IPPROTO_UDP, 53);
  grant(IPPROTO_UDP, 53, client4, 32);

  EXPECT_TRUE(passed(run(udp4(client4, 53))));
  EXPECT_TRUE(dropped(run(udp4("10.1.0.3", 53))));
  EXPECT_EQ(drops(IPPROTO_UDP, 53), 2U);
}

TEST_F(EbpfProgramTest, AllowListedSourcePasses) {
  protect(IPPROTO_TCP, ssh);
  allow(IPPROTO_TCP, ssh, "10.1.0.0", 24);
  allow(IPPROTO_TCP, ssh, "2001:db8:1::", 64);

  EXPECT_TRUE(passed(run(tcp4(client4))));
  EXPECT_TRUE(passed(run(tcp6(client6))));
  EXPECT_TRUE(dropped(run(tcp4("192.0.2.1"))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 2U);
}

TEST_F(EbpfProgramTest, PrefixGrantCoversItsAddressesOnly) {
  protect(IPPROTO_TCP, ssh);
  grant(IPPROTO_TCP, ssh, "10.1.0.0", 24);

  EXPECT_TRUE(passed(run(tcp4("10.1.0.0"))));
  EXPECT_TRUE(passed(run(tcp4("10.1.0.200"))));
  EXPECT_TRUE(passed(run(tcp4("10.1.0.255"))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 0U);
  EXPECT_TRUE(dropped(run(tcp4("10.1.1.0"))));
  EXPECT_TRUE(dropped(run(tcp4("10.0.255.255"))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 4U);
}

TEST_F(EbpfProgramTest, Ipv6GrantedPassesOthersDrop) {
  protect(IPPROTO_TCP, ssh);
  grant(IPPROTO_TCP, ssh, client6, 128);
  grant(IPPROTO_TCP, ssh, "2001:db8:5::", 48);

  EXPECT_TRUE(passed(run(tcp6(client6))));
  EXPECT_TRUE(passed(run(tcp6("2001:db8:5:ffff::9"))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 0U);
  EXPECT_TRUE(dropped(run(tcp6("2001:db8:1::3"))));
  EXPECT_TRUE(dropped(run(tcp6("2001:db8:6::1"))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 4U);
}

TEST_F(EbpfProgramTest, OtherProtocolsAndNonIpPass) {
  protect(IPPROTO_TCP, ssh);
  protect(IPPROTO_UDP, ssh);
  const Bytes icmp = transport(IPPROTO_ICMP, 0, 0);
  const Bytes icmp6 = transport(IPPROTO_ICMPV6, 0, 0);
  // SCTP has its ports where TCP has them: still not judged.
  const Bytes sctp = transport(IPPROTO_UDP, client_port, ssh);

  EXPECT_TRUE(passed(run(ethernet(ethertype_ipv4, ipv4(client4, host4, IPPROTO_ICMP, icmp)))));
  EXPECT_TRUE(passed(run(ethernet(ethertype_ipv6, ipv6(client6, host6, IPPROTO_ICMPV6, icmp6)))));
  EXPECT_TRUE(passed(run(ethernet(ethertype_ipv4, ipv4(client4, host4, IPPROTO_SCTP, sctp)))));
  EXPECT_TRUE(passed(run(ethernet(ethertype_arp, Bytes(28, 0)))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 0U);
}

TEST_F(EbpfProgramTest, LoopbackIsNeverJudged) {
  protect(IPPROTO_TCP, ssh);

  EXPECT_TRUE(passed(run(tcp4(client4), 1)));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 0U);
}

// The program passes what it cannot read the ports of when the stack discards it anyway: a
// TCP header shorter than 4 bytes fails TCP's own header pull. Readable ports are judged even
// when the rest of the header is missing.
TEST_F(EbpfProgramTest, TruncatedBeforeThePortsPasses) {
  protect(IPPROTO_TCP, ssh);
  Bytes two_bytes = transport(IPPROTO_TCP, client_port, ssh);
  two_bytes.resize(2);
  Bytes four_bytes = transport(IPPROTO_TCP, client_port, ssh);
  four_bytes.resize(4);
  Bytes short_ipv4 = ipv4(client4, host4, IPPROTO_TCP, {});
  short_ipv4.resize(16);

  EXPECT_TRUE(passed(run(ethernet(ethertype_ipv4, ipv4(client4, host4, IPPROTO_TCP, two_bytes)))));
  // XDP only: a test run of an skb refuses an IP header shorter than 20 bytes.
  EXPECT_EQ(run_xdp(ethernet(ethertype_ipv4, short_ipv4)), XDP_PASS);
  EXPECT_TRUE(passed(run(ethernet(ethertype_ipv6, ipv6(client6, host6, IPPROTO_TCP, two_bytes)))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 0U);
  EXPECT_TRUE(
      dropped(run(ethernet(ethertype_ipv4, ipv4(client4, host4, IPPROTO_TCP, four_bytes)))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 2U);
}

TEST_F(EbpfProgramTest, Ipv4OptionsAreSkipped) {
  protect(IPPROTO_TCP, ssh);
  grant(IPPROTO_TCP, ssh, client4, 32);
  const Bytes options{0x94, 0x04, 0, 0};  // router alert
  const Bytes syn = transport(IPPROTO_TCP, client_port, ssh);

  EXPECT_TRUE(
      passed(run(ethernet(ethertype_ipv4, ipv4(client4, host4, IPPROTO_TCP, syn, 0, options)))));
  EXPECT_TRUE(dropped(
      run(ethernet(ethertype_ipv4, ipv4("10.1.0.3", host4, IPPROTO_TCP, syn, 0, options)))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 2U);
}

TEST_F(EbpfProgramTest, Ipv4Fragments) {
  protect(IPPROTO_TCP, ssh);
  grant(IPPROTO_TCP, ssh, client4, 32);
  const Bytes syn = transport(IPPROTO_TCP, client_port, ssh);
  // A later fragment carries no TCP header; bytes that look like ports to 22 do not matter.
  const Bytes later = ethernet(ethertype_ipv4, ipv4("10.1.0.3", host4, IPPROTO_TCP, syn, 185));
  const Bytes first =
      ethernet(ethertype_ipv4, ipv4("10.1.0.3", host4, IPPROTO_TCP, syn, ipv4_more_fragments));
  const Bytes granted_first =
      ethernet(ethertype_ipv4, ipv4(client4, host4, IPPROTO_TCP, syn, ipv4_more_fragments));
  Bytes no_ports = syn;
  no_ports.resize(2);
  const Bytes first_without_ports =
      ethernet(ethertype_ipv4, ipv4("10.1.0.3", host4, IPPROTO_TCP, no_ports, ipv4_more_fragments));

  EXPECT_TRUE(passed(run(later)));
  EXPECT_TRUE(passed(run(granted_first)));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 0U);
  EXPECT_TRUE(dropped(run(first)));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 2U);
  // Reassembly could complete it, so it is not passed as truncated; no port to count it under.
  EXPECT_TRUE(dropped(run(first_without_ports)));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 2U);
}

TEST_F(EbpfProgramTest, Ipv6ExtensionHeadersAreWalked) {
  protect(IPPROTO_TCP, ssh);
  grant(IPPROTO_TCP, ssh, client6, 128);
  const std::string stranger = "2001:db8:1::3";
  Bytes hop_dest = option_header(nexthdr_dest);
  append(hop_dest, option_header(IPPROTO_TCP, 2));
  Bytes routing_auth = option_header(nexthdr_auth, 1);
  append(routing_auth, auth_header(IPPROTO_TCP, 4));

  EXPECT_TRUE(passed(run(tcp6_after(nexthdr_hop, hop_dest))));
  EXPECT_TRUE(passed(run(tcp6_after(nexthdr_routing, routing_auth))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 0U);
  EXPECT_TRUE(dropped(run(tcp6_after(nexthdr_hop, hop_dest, stranger))));
  EXPECT_TRUE(dropped(run(tcp6_after(nexthdr_routing, routing_auth, stranger))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 4U);
}

TEST_F(EbpfProgramTest, Ipv6Fragments) {
  protect(IPPROTO_TCP, ssh);
  const std::string stranger = "2001:db8:1::3";
  // Offset 8 x 8 bytes: no TCP header in it, whatever the bytes look like.
  EXPECT_TRUE(
      passed(run(tcp6_after(nexthdr_fragment, fragment_header(IPPROTO_TCP, 8, false), stranger))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 0U);
  EXPECT_TRUE(
      dropped(run(tcp6_after(nexthdr_fragment, fragment_header(IPPROTO_TCP, 0, true), stranger))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 2U);

  // A first fragment whose destination options run past its end: Linux reassembles it
  // (only a first fragment cut inside the upper-layer header is refused), so it cannot pass
  // as truncated. Uncounted: no port was read.
  Bytes cut = fragment_header(nexthdr_dest, 0, true);
  append(cut, option_header(IPPROTO_TCP, 8));
  cut.resize(cut.size() - 40);
  EXPECT_TRUE(dropped(run(ethernet(ethertype_ipv6, ipv6(stranger, host6, nexthdr_fragment, cut)))));
  // The same cut without a fragment header is malformed and discarded by the stack.
  Bytes cut_unfragmented = option_header(IPPROTO_TCP, 8);
  cut_unfragmented.resize(cut_unfragmented.size() - 40);
  EXPECT_TRUE(
      passed(run(ethernet(ethertype_ipv6, ipv6(stranger, host6, nexthdr_dest, cut_unfragmented)))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 2U);
}

// Six extension headers are walked (RFC 8200's longest order); a longer chain is dropped as
// one the program cannot read, since the stack would walk it to the TCP header.
TEST_F(EbpfProgramTest, OverlongIpv6ChainIsDroppedUncounted) {
  protect(IPPROTO_TCP, ssh);
  protect(IPPROTO_TCP, other_port);
  grant(IPPROTO_TCP, ssh, client6, 128);
  const auto chain = [](int headers) {
    Bytes out;
    for (int i = 1; i <= headers; ++i) {
      append(out, option_header(i == headers ? std::uint8_t{IPPROTO_TCP} : nexthdr_dest));
    }
    return out;
  };

  EXPECT_TRUE(passed(run(tcp6_after(nexthdr_dest, chain(6)))));
  EXPECT_TRUE(dropped(run(tcp6_after(nexthdr_dest, chain(6), "2001:db8:1::3"))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 2U);
  EXPECT_TRUE(dropped(run(tcp6_after(nexthdr_dest, chain(7)))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 2U);
  // Only local packets: the same chain to a forwarded destination passes.
  check_command("ip -6 route add 2001:db8:2::/64 dev " + interface);
  Bytes forwarded = chain(7);
  append(forwarded, transport(IPPROTO_TCP, client_port, ssh));
  EXPECT_TRUE(passed(
      run(ethernet(ethertype_ipv6, ipv6(client6, "2001:db8:2::5", nexthdr_dest, forwarded)))));
}

TEST_F(EbpfProgramTest, OtherUpperLayersAfterIpv6HeadersPass) {
  protect(IPPROTO_TCP, ssh);
  EXPECT_TRUE(passed(run(tcp6_after(nexthdr_esp, {}, "2001:db8:1::3"))));
  EXPECT_TRUE(passed(run(tcp6_after(nexthdr_none, {}, "2001:db8:1::3"))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 0U);
}

TEST_F(EbpfProgramTest, VlanTaggedPacketsAreJudged) {
  protect(IPPROTO_TCP, ssh);
  grant(IPPROTO_TCP, ssh, client4, 32);
  const Bytes syn = transport(IPPROTO_TCP, client_port, ssh);
  const auto tagged = [&](const std::string& src, const std::vector<std::uint16_t>& tags) {
    return ethernet(ethertype_ipv4, ipv4(src, host4, IPPROTO_TCP, syn), tags);
  };

  EXPECT_TRUE(passed(run(tagged(client4, {tpid_8021q}))));
  EXPECT_TRUE(passed(run(tagged(client4, {tpid_8021ad, tpid_8021q}))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 0U);
  EXPECT_TRUE(dropped(run(tagged("10.1.0.3", {tpid_8021q}))));
  EXPECT_TRUE(dropped(run(tagged("10.1.0.3", {tpid_8021ad}))));
  EXPECT_TRUE(dropped(run(tagged("10.1.0.3", {tpid_8021ad, tpid_8021q}))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 6U);
  const Bytes tagged6 =
      ethernet(ethertype_ipv6, ipv6("2001:db8:1::3", host6, IPPROTO_TCP, syn), {tpid_8021q});
  EXPECT_TRUE(dropped(run(tagged6)));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 8U);
}

// Only packets for this host are judged: one the host would forward passes, protected port
// and no grant notwithstanding.
TEST_F(EbpfProgramTest, ForwardedPacketsPass) {
  protect(IPPROTO_TCP, ssh);
  check_command("ip route add 10.2.0.0/24 dev " + interface);
  check_command("ip -6 route add 2001:db8:2::/64 dev " + interface);

  EXPECT_TRUE(passed(run(tcp4(client4, ssh, "10.2.0.5"))));
  EXPECT_TRUE(passed(run(tcp6(client6, ssh, "2001:db8:2::5"))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 0U);
  EXPECT_TRUE(dropped(run(tcp4(client4))));
  EXPECT_TRUE(dropped(run(tcp6(client6))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 4U);
}

// Forwarding off: nothing is forwarded, so everything that arrives is judged.
TEST_F(EbpfProgramTest, WithoutForwardingEverythingIsJudged) {
  protect(IPPROTO_TCP, ssh);
  check_command("ip route add 10.2.0.0/24 dev " + interface);
  check_command("ip -6 route add 2001:db8:2::/64 dev " + interface);
  set_forwarding(false);

  EXPECT_TRUE(dropped(run(tcp4(client4, ssh, "10.2.0.5"))));
  EXPECT_TRUE(dropped(run(tcp6(client6, ssh, "2001:db8:2::5"))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 4U);
}

// A blackholed destination is not forwarded: judged (the stack would drop it anyway).
TEST_F(EbpfProgramTest, BlackholedDestinationIsJudged) {
  protect(IPPROTO_TCP, ssh);
  check_command("ip route add blackhole 10.3.0.0/24");

  EXPECT_TRUE(dropped(run(tcp4(client4, ssh, "10.3.0.5"))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 2U);
}

// Established flows through the conntrack kfuncs, with the bpf_ct_opts size the kernel's BTF
// gives and with 12, Linux 6.1's, which newer kernels still take: the loader may have to
// pass either.
class EbpfConntrackTest : public EbpfProgramTest,
                          public testing::WithParamInterface<std::optional<std::uint32_t>> {
 protected:
  void SetUp() override {
    EbpfProgramTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (GetParam()) load(*GetParam());
  }

  // A conntrack entry in this test's namespace; `status` as `conntrack -u` takes it.
  static void add_entry(const std::string& protocol, const std::string& src, std::uint16_t sport,
                        const std::string& dst, std::uint16_t dport, const std::string& state,
                        const std::string& status) {
    std::string command = "conntrack -I -p " + protocol + " -s " + src + " -d " + dst +
                          " --sport " + std::to_string(sport) + " --dport " +
                          std::to_string(dport) + " -t 120";
    if (!state.empty()) command += " --state " + state;
    if (!status.empty()) command += " -u " + status;
    check_command(command);
  }
};

TEST_P(EbpfConntrackTest, EstablishedFlowsPass) {
  protect(IPPROTO_TCP, ssh);
  protect(IPPROTO_UDP, 53);
  add_entry("tcp", client4, client_port, host4, ssh, "ESTABLISHED", "SEEN_REPLY");
  add_entry("tcp", client6, client_port, host6, ssh, "ESTABLISHED", "SEEN_REPLY");
  add_entry("udp", client4, client_port, host4, 53, "", "SEEN_REPLY");

  EXPECT_TRUE(passed(run(tcp4(client4))));
  EXPECT_TRUE(passed(run(tcp6(client6))));
  EXPECT_TRUE(passed(run(udp4(client4, 53))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 0U);
  EXPECT_EQ(drops(IPPROTO_UDP, 53), 0U);
}

TEST_P(EbpfConntrackTest, UnrepliedFlowIsJudged) {
  protect(IPPROTO_TCP, ssh);
  protect(IPPROTO_UDP, 53);
  add_entry("tcp", client4, client_port, host4, ssh, "SYN_SENT", "");
  add_entry("udp", client4, client_port, host4, 53, "", "");

  EXPECT_TRUE(dropped(run(tcp4(client4))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 2U);
  EXPECT_EQ(counters(IPPROTO_TCP, ssh).dropped_connections, 2U);  // a SYN, retransmitted
  // A datagram of a flow conntrack already knows does not open one.
  EXPECT_TRUE(dropped(run(udp4(client4, 53))));
  EXPECT_EQ(drops(IPPROTO_UDP, 53), 2U);
  EXPECT_EQ(counters(IPPROTO_UDP, 53).dropped_connections, 0U);
}

// A packet in the reply direction of a flow this host opened (from its port 22) is
// established to nftables even before the entry has seen a reply.
TEST_P(EbpfConntrackTest, ReplyDirectionPasses) {
  protect(IPPROTO_TCP, ssh);
  add_entry("tcp", host4, ssh, client4, client_port, "SYN_SENT", "");

  EXPECT_TRUE(passed(run(tcp4(client4))));
  EXPECT_EQ(drops(IPPROTO_TCP, ssh), 0U);
}

INSTANTIATE_TEST_SUITE_P(OptsSize, EbpfConntrackTest,
                         testing::Values(std::nullopt, std::optional<std::uint32_t>(12)),
                         [](const testing::TestParamInfo<std::optional<std::uint32_t>>& info) {
                           return info.param ? "Size" + std::to_string(*info.param)
                                             : std::string("KernelBtf");
                         });

// struct virtio_net_hdr: <linux/virtio_net.h> is not valid C++ (a member is named `class`).
// Fields in the host's byte order, as packet sockets take them on little-endian hosts.
struct VirtioNetHeader {
  std::uint8_t flags = 0;
  std::uint8_t gso_type = 0;  // VIRTIO_NET_HDR_GSO_NONE
  std::uint16_t hdr_len = 0;
  std::uint16_t gso_size = 0;
  std::uint16_t csum_start = 0;
  std::uint16_t csum_offset = 0;
};

// Owns jitd_tc's attachment at a device's ingress: removing the clsact qdisc removes it.
class TcIngress {
 public:
  TcIngress(std::uint32_t ifindex, int program_fd) {
    hook_.sz = sizeof(hook_);
    hook_.ifindex = static_cast<int>(ifindex);
    hook_.attach_point = BPF_TC_INGRESS;
    int error = bpf_tc_hook_create(&hook_);
    if (error != 0)
      throw std::runtime_error("create clsact: " + std::string(std::strerror(-error)));
    bpf_tc_opts options{};
    options.sz = sizeof(options);
    options.prog_fd = program_fd;
    error = bpf_tc_attach(&hook_, &options);
    if (error != 0) {
      destroy();
      throw std::runtime_error("attach jitd_tc: " + std::string(std::strerror(-error)));
    }
  }
  ~TcIngress() { destroy(); }
  TcIngress(const TcIngress&) = delete;
  TcIngress& operator=(const TcIngress&) = delete;

 private:
  void destroy() {
    hook_.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
    bpf_tc_hook_destroy(&hook_);
  }
  bpf_tc_hook hook_{};
};

// Headers are normally in the skb's linear part, but nothing guarantees it. A packet socket
// with a virtio-net header of hdr_len 14 builds an skb whose linear part is the Ethernet
// header alone (for packets of a page or more); veth hands it on to its peer as it is.
// Without the program's pull it would see a packet that ends before the IP header, and pass
// it.
TEST_F(EbpfProgramTest, TcJudgesHeadersOutsideTheLinearPart) {
  protect(IPPROTO_UDP, ssh);
  const std::uint32_t sender = if_nametoindex(peer.c_str());
  check(sender != 0, "if_nametoindex " + peer);
  const TcIngress attached(ifindex_, bpf_program__fd(skeleton_->progs.jitd_tc));

  const UniqueFd packets(socket(AF_PACKET, SOCK_RAW, 0));
  check(static_cast<bool>(packets), "packet socket");
  const int on = 1;
  check(setsockopt(packets.get(), SOL_PACKET, PACKET_VNET_HDR, &on, sizeof(on)) == 0,
        "PACKET_VNET_HDR");
  Bytes datagram = transport(IPPROTO_UDP, client_port, ssh);
  datagram.resize(6000);
  datagram[4] = static_cast<std::uint8_t>(datagram.size() >> 8);  // UDP length
  datagram[5] = static_cast<std::uint8_t>(datagram.size());
  const Bytes frame = ethernet(ethertype_ipv4, ipv4(client4, host4, IPPROTO_UDP, datagram));
  VirtioNetHeader vnet;
  vnet.hdr_len = 14;  // linear: the Ethernet header only
  Bytes message(sizeof(vnet));
  std::memcpy(message.data(), &vnet, sizeof(vnet));
  append(message, frame);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ethertype_ipv4);
  to.sll_ifindex = static_cast<int>(sender);
  to.sll_halen = 6;
  std::memcpy(to.sll_addr, frame.data(), 6);
  check(sendto(packets.get(), message.data(), message.size(), 0,
               reinterpret_cast<const sockaddr*>(&to),
               sizeof(to)) == static_cast<ssize_t>(message.size()),
        "send on " + peer);

  // veth delivers through the backlog, normally before sendto returns.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (drops(IPPROTO_UDP, ssh) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(drops(IPPROTO_UDP, ssh), 1U);
}

}  // namespace

int main(int argc, char** argv) { return jitd::test::run_in_private_network_namespace(argc, argv); }
