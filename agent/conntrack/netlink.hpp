#pragma once
// Netlink plumbing shared by session adoption and session cutting (internal to jitd_conntrack):
// the handle owners, sock_diag dumps (TCP sessions, listeners), and requests sent in batches whose
// every ACK is read.
#include <linux/inet_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

#include "jitd/core/error.hpp"
#include "jitd/sys/handle.hpp"

namespace jitd::conntrack::detail {

using MnlSocket = sys::Handle<mnl_socket, mnl_socket_close>;
using Conntrack = sys::Handle<nf_conntrack, nfct_destroy>;

// Netlink dumps fill at most 32 KiB per datagram.
inline constexpr std::size_t receive_buffer_size = 32 * 1024;

// The states in which both ends are synchronized and packets still arrive for the socket.
inline constexpr std::uint32_t synchronized_states = 1U << TCP_ESTABLISHED | 1U << TCP_FIN_WAIT1 |
                                                     1U << TCP_FIN_WAIT2 | 1U << TCP_CLOSE_WAIT |
                                                     1U << TCP_LAST_ACK | 1U << TCP_CLOSING;

// One session as the local socket sees it. IPv4 addresses are kept v4-mapped, the form
// dual-stack sockets report them in, so both dumps share one representation.
struct Session {
  in6_addr local{};
  in6_addr remote{};
  std::uint16_t local_port = 0;  // host order
  std::uint16_t remote_port = 0;
  std::uint8_t family = 0;  // the socket's own (AF_INET6 for a dual-stack one), for SOCK_DESTROY
  inet_diag_sockid id{};    // as the kernel reported it, cookie included
};

// A netlink socket on `bus` bound to a kernel-chosen port id; `name` names it in errors
// ("sock_diag", "ctnetlink").
[[nodiscard]] core::Result<MnlSocket> open_netlink(int bus, const std::string& name);

// Told each socket a dump lists; `message` is the header's payload, its attributes follow it.
using OnSocket = std::function<void(const nlmsghdr* header, const inet_diag_msg& message)>;

// Every socket of `family` and `protocol` (IPPROTO_TCP, IPPROTO_UDP) whose state is in `states`,
// a mask of 1 << TCP_* (a UDP socket is TCP_CLOSE unconnected, TCP_ESTABLISHED connected).
// `seq` is advanced past the request sent.
[[nodiscard]] core::Result<void> dump_sockets(mnl_socket* socket, std::uint8_t family,
                                              std::uint8_t protocol, std::uint32_t states,
                                              std::uint32_t& seq, const OnSocket& on_socket);

// Synchronized TCP sessions whose local port is one of `ports`, from both address families.
// A dual-stack socket serving an IPv4 peer shows up in the AF_INET6 dump only, v4-mapped.
// `seq` is advanced past the requests sent.
[[nodiscard]] core::Result<std::vector<Session>> list_tcp_sessions(
    mnl_socket* socket, const std::set<std::uint16_t>& ports, std::uint32_t& seq);

// "192.0.2.1:22" or "[2001:db8::1]:22"; a v4-mapped address prints as IPv4.
[[nodiscard]] std::string endpoint(const in6_addr& address, std::uint16_t port);

// Writes request `index` at `buffer` (at most max_request_size bytes) and returns its header.
using BuildRequest = std::function<nlmsghdr*(std::size_t index, char* buffer)>;
// Told the kernel's answer to request `index`: 0 or its errno.
using OnAck = std::function<void(std::size_t index, int error)>;

inline constexpr std::size_t max_request_size = 4096;

// Sends requests 0 .. count-1, as many per datagram as fit, each with NLM_F_ACK, and reads
// every ACK before sending more, so the socket's receive queue cannot overflow. A refused
// request does not stop the others; only a failure of the socket itself fails the call.
// `operation` names them in that error. `seq` is advanced past the requests sent.
[[nodiscard]] core::Result<void> send_acked(mnl_socket* socket, std::uint32_t& seq,
                                            std::size_t count, const std::string& operation,
                                            const BuildRequest& build, const OnAck& on_ack);

}  // namespace jitd::conntrack::detail
