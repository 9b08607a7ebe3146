// Session adoption: sock_diag lists the sockets, ctnetlink creates one entry per session.
#include "jitd/conntrack/session_adoption.hpp"

#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <ctime>
#include <fstream>
#include <new>
#include <set>

#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack_tcp.h>

#include "jitd/sys/handle.hpp"
#include "jitd/sys/system_error.hpp"
#include "netlink.hpp"

namespace jitd::conntrack {
namespace {

using NfctHandle = sys::Handle<nfct_handle, nfct_close>;
using detail::Conntrack;
using detail::endpoint;
using detail::Session;

// The kernel's default nf_conntrack_tcp_timeout_established (5 days).
constexpr std::uint32_t default_established_timeout = 432000;

core::Result<std::vector<Session>> list_sessions(const std::set<std::uint16_t>& ports) {
  auto socket = detail::open_netlink(NETLINK_SOCK_DIAG, "sock_diag");
  if (!socket) return tl::unexpected(socket.error());
  auto seq = static_cast<std::uint32_t>(std::time(nullptr));
  return detail::list_tcp_sessions(socket->get(), ports, seq);
}

// The namespace's own setting, so an adopted entry lives as long as a tracked one would.
std::uint32_t established_timeout() {
  std::ifstream file("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established");
  std::uint32_t seconds = 0;
  if (file >> seconds && seconds > 0) return seconds;
  return default_established_timeout;
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
  if (!handle) {
    return sys::fail_system(core::ErrorCode::kernel, "open conntrack netlink (ctnetlink)", errno);
  }
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
      result.first_error =
          sys::system_error(core::ErrorCode::kernel,
                            "create conntrack entry " +
                                endpoint(session.remote, session.remote_port) + " -> " +
                                endpoint(session.local, session.local_port),
                            error)
              .message;
    }
  }
  return result;
}

}  // namespace jitd::conntrack
