// Session adoption: sock_diag lists the sockets, ctnetlink creates one entry per session.
#include "jitd/conntrack/session_adoption.hpp"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <new>
#include <set>

#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack_tcp.h>

#include "jitd/sys/handle.hpp"
#include "jitd/sys/system_error.hpp"

namespace jitd::conntrack {
namespace {

using MnlSocket = sys::Handle<mnl_socket, mnl_socket_close>;
using NfctHandle = sys::Handle<nfct_handle, nfct_close>;
using Conntrack = sys::Handle<nf_conntrack, nfct_destroy>;

// Netlink dumps fill at most 32 KiB per datagram.
constexpr std::size_t receive_buffer_size = 32 * 1024;

// The states in which both ends are synchronized and packets still arrive for the socket.
constexpr std::uint32_t synchronized_states = 1U << TCP_ESTABLISHED | 1U << TCP_FIN_WAIT1 |
                                              1U << TCP_FIN_WAIT2 | 1U << TCP_CLOSE_WAIT |
                                              1U << TCP_LAST_ACK | 1U << TCP_CLOSING;

// The kernel's default nf_conntrack_tcp_timeout_established (5 days).
constexpr std::uint32_t default_established_timeout = 432000;

// One session as the local socket sees it. IPv4 addresses are kept v4-mapped, the form
// dual-stack sockets report them in, so both dumps share one representation.
struct Session {
  in6_addr local{};
  in6_addr remote{};
  std::uint16_t local_port = 0;  // host order
  std::uint16_t remote_port = 0;
};

struct DumpContext {
  const std::set<std::uint16_t>& ports;
  std::vector<Session>& sessions;
};

in6_addr from_diag(std::uint8_t family, const __be32 (&address)[4]) {
  in6_addr result{};
  if (family == AF_INET) {
    result.s6_addr16[5] = 0xffff;
    result.s6_addr32[3] = address[0];
  } else {
    std::memcpy(&result, address, sizeof result);
  }
  return result;
}

int on_socket(const nlmsghdr* header, void* data) {
  auto& context = *static_cast<DumpContext*>(data);
  if (header->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) {
    errno = EBADMSG;
    return MNL_CB_ERROR;
  }
  const auto* message = static_cast<const inet_diag_msg*>(mnl_nlmsg_get_payload(header));
  const std::uint16_t local_port = ntohs(message->id.idiag_sport);
  if (!context.ports.contains(local_port)) return MNL_CB_OK;
  context.sessions.push_back(Session{from_diag(message->idiag_family, message->id.idiag_src),
                                     from_diag(message->idiag_family, message->id.idiag_dst),
                                     local_port, ntohs(message->id.idiag_dport)});
  return MNL_CB_OK;
}

core::Result<void> dump_family(mnl_socket* socket, std::uint8_t family, std::uint32_t seq,
                               DumpContext& context) {
  const std::string operation =
      std::string("dump tcp") + (family == AF_INET ? "" : "6") + " sockets (sock_diag)";
  std::vector<char> buffer(receive_buffer_size);
  nlmsghdr* header = mnl_nlmsg_put_header(buffer.data());
  header->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  header->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  header->nlmsg_seq = seq;
  auto* request =
      static_cast<inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(header, sizeof(inet_diag_req_v2)));
  request->sdiag_family = family;
  request->sdiag_protocol = IPPROTO_TCP;
  request->idiag_states = synchronized_states;
  if (mnl_socket_sendto(socket, header, header->nlmsg_len) < 0) {
    return sys::fail_system(core::ErrorCode::kernel, operation, errno);
  }
  const unsigned int portid = mnl_socket_get_portid(socket);
  for (;;) {
    const ssize_t received = mnl_socket_recvfrom(socket, buffer.data(), buffer.size());
    if (received < 0) return sys::fail_system(core::ErrorCode::kernel, operation, errno);
    const int status = mnl_cb_run(buffer.data(), static_cast<std::size_t>(received), seq, portid,
                                  on_socket, &context);
    if (status == MNL_CB_ERROR) return sys::fail_system(core::ErrorCode::kernel, operation, errno);
    if (status == MNL_CB_STOP) return {};
  }
}

// Sessions whose local port is one of `ports`, from both address families. A dual-stack
// socket serving an IPv4 peer shows up in the AF_INET6 dump only, v4-mapped.
core::Result<std::vector<Session>> list_sessions(const std::set<std::uint16_t>& ports) {
  MnlSocket socket(mnl_socket_open(NETLINK_SOCK_DIAG));
  if (!socket) return sys::fail_system(core::ErrorCode::kernel, "open netlink socket (sock_diag)", errno);
  if (mnl_socket_bind(socket.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    return sys::fail_system(core::ErrorCode::kernel, "bind netlink socket (sock_diag)", errno);
  }
  std::vector<Session> sessions;
  DumpContext context{ports, sessions};
  auto seq = static_cast<std::uint32_t>(std::time(nullptr));
  for (const std::uint8_t family : {AF_INET, AF_INET6}) {
    if (auto dumped = dump_family(socket.get(), family, seq++, context); !dumped) {
      return tl::unexpected(dumped.error());
    }
  }
  return sessions;
}

// The namespace's own setting, so an adopted entry lives as long as a tracked one would.
std::uint32_t established_timeout() {
  std::ifstream file("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established");
  std::uint32_t seconds = 0;
  if (file >> seconds && seconds > 0) return seconds;
  return default_established_timeout;
}

std::string endpoint(const in6_addr& address, std::uint16_t port) {
  char text[INET6_ADDRSTRLEN] = {};
  if (IN6_IS_ADDR_V4MAPPED(&address)) {
    inet_ntop(AF_INET, &address.s6_addr32[3], text, sizeof text);
    return std::string(text) + ":" + std::to_string(port);
  }
  inet_ntop(AF_INET6, &address, text, sizeof text);
  return "[" + std::string(text) + "]:" + std::to_string(port);
}

// Builds the entry conntrack would hold had it seen the handshake: the peer's direction
// is the original one, SEEN_REPLY makes its packets ctinfo ESTABLISHED (without it they
// stay NEW), ASSURED keeps the entry from early drop. BE_LIBERAL because the entry has no
// sequence or window data to check packets against.
Conntrack build_entry(const Session& session, std::uint32_t timeout) {
  Conntrack entry(nfct_new());
  if (!entry) throw std::bad_alloc();
  nf_conntrack* ct = entry.get();
  const bool v4 = IN6_IS_ADDR_V4MAPPED(&session.local);
  const std::uint8_t family = v4 ? AF_INET : AF_INET6;
  nfct_set_attr_u8(ct, ATTR_L3PROTO, family);
  nfct_set_attr_u8(ct, ATTR_REPL_L3PROTO, family);
  if (v4) {
    nfct_set_attr_u32(ct, ATTR_IPV4_SRC, session.remote.s6_addr32[3]);
    nfct_set_attr_u32(ct, ATTR_IPV4_DST, session.local.s6_addr32[3]);
    nfct_set_attr_u32(ct, ATTR_REPL_IPV4_SRC, session.local.s6_addr32[3]);
    nfct_set_attr_u32(ct, ATTR_REPL_IPV4_DST, session.remote.s6_addr32[3]);
  } else {
    nfct_set_attr(ct, ATTR_IPV6_SRC, &session.remote);
    nfct_set_attr(ct, ATTR_IPV6_DST, &session.local);
    nfct_set_attr(ct, ATTR_REPL_IPV6_SRC, &session.local);
    nfct_set_attr(ct, ATTR_REPL_IPV6_DST, &session.remote);
  }
  nfct_set_attr_u8(ct, ATTR_L4PROTO, IPPROTO_TCP);
  nfct_set_attr_u8(ct, ATTR_REPL_L4PROTO, IPPROTO_TCP);
  nfct_set_attr_u16(ct, ATTR_PORT_SRC, htons(session.remote_port));
  nfct_set_attr_u16(ct, ATTR_PORT_DST, htons(session.local_port));
  nfct_set_attr_u16(ct, ATTR_REPL_PORT_SRC, htons(session.local_port));
  nfct_set_attr_u16(ct, ATTR_REPL_PORT_DST, htons(session.remote_port));
  nfct_set_attr_u8(ct, ATTR_TCP_STATE, TCP_CONNTRACK_ESTABLISHED);
  nfct_set_attr_u8(ct, ATTR_TCP_FLAGS_ORIG, IP_CT_TCP_FLAG_BE_LIBERAL);
  nfct_set_attr_u8(ct, ATTR_TCP_MASK_ORIG, IP_CT_TCP_FLAG_BE_LIBERAL);
  nfct_set_attr_u8(ct, ATTR_TCP_FLAGS_REPL, IP_CT_TCP_FLAG_BE_LIBERAL);
  nfct_set_attr_u8(ct, ATTR_TCP_MASK_REPL, IP_CT_TCP_FLAG_BE_LIBERAL);
  nfct_set_attr_u32(ct, ATTR_STATUS, IPS_SEEN_REPLY | IPS_ASSURED);
  nfct_set_attr_u32(ct, ATTR_TIMEOUT, timeout);  // ctnetlink refuses a create without one
  return entry;
}

}  // namespace

core::Result<AdoptedSessions> adopt_established_sessions(
    const std::vector<core::PortKey>& protected_ports) {
  std::set<std::uint16_t> tcp_ports;
  for (const auto& key : protected_ports) {
    if (key.protocol == core::Protocol::tcp) tcp_ports.insert(key.port);
  }
  AdoptedSessions result;
  if (tcp_ports.empty()) return result;
  auto sessions = list_sessions(tcp_ports);
  if (!sessions) return tl::unexpected(sessions.error());
  if (sessions->empty()) return result;

  NfctHandle handle(nfct_open(CONNTRACK, 0));
  if (!handle) return sys::fail_system(core::ErrorCode::kernel, "open conntrack netlink (ctnetlink)", errno);
  const std::uint32_t timeout = established_timeout();
  for (const auto& session : *sessions) {
    const Conntrack entry = build_entry(session, timeout);
    // NFCT_Q_CREATE is exclusive: an entry that exists already is left as the kernel has it.
    if (nfct_query(handle.get(), NFCT_Q_CREATE, entry.get()) == 0 || errno == EEXIST) {
      ++result.adopted;
      continue;
    }
    const int error = errno;
    if (result.failed++ == 0) {
      result.first_error = sys::system_error(core::ErrorCode::kernel,
                                             "create conntrack entry " +
                                                 endpoint(session.remote, session.remote_port) +
                                                 " -> " + endpoint(session.local, session.local_port),
                                             error)
                               .message;
    }
  }
  return result;
}

}  // namespace jitd::conntrack
