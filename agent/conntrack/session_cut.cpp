// Session cutting: sock_diag destroys the local TCP sockets, ctnetlink deletes the flows.
#include "jitd/conntrack/session_cut.hpp"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <set>
#include <string>
#include <utility>

#include <libmnl/libmnl.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

#include "jitd/sys/system_error.hpp"
#include "netlink.hpp"

namespace jitd::conntrack {
namespace {

using detail::Conntrack;
using detail::endpoint;
using detail::Session;

// The CTA_FILTER_ORIG_FLAGS bits of ctnetlink's dump filter (Linux 5.8+). The kernel keeps
// them in an internal header (net/netfilter/nf_internals.h); libnetfilter_conntrack 1.0.9
// does not export them. An older kernel ignores the filter and dumps every entry of the
// family, which the check below sorts out anyway.
constexpr std::uint32_t filter_protocol = 1U << 3;          // CTA_FILTER_F_CTA_PROTO_NUM
constexpr std::uint32_t filter_destination_port = 1U << 5;  // CTA_FILTER_F_CTA_PROTO_DST_PORT

struct Peer {
  core::Family family = core::Family::ipv4;
  core::AddressValue value = 0;
};

core::AddressValue from_bytes(const std::uint8_t* bytes, std::size_t size) {
  core::AddressValue value = 0;
  for (std::size_t i = 0; i < size; ++i) value = value << 8 | bytes[i];
  return value;
}

// IPv4 sessions of dual-stack sockets are v4-mapped; jitd's ranges hold them as IPv4.
Peer peer_of(const in6_addr& address) {
  if (IN6_IS_ADDR_V4MAPPED(&address)) {
    return {core::Family::ipv4, from_bytes(&address.s6_addr[12], 4)};
  }
  return {core::Family::ipv6, from_bytes(address.s6_addr, 16)};
}

bool inside(const std::vector<core::AddressRange>& ranges, const Peer& peer) {
  return std::any_of(ranges.begin(), ranges.end(), [&](const core::AddressRange& range) {
    return range.family == peer.family && range.first <= peer.value && peer.value <= range.last;
  });
}

bool selected(const core::SessionCut& cut, const Peer& peer) {
  return inside(cut.sources, peer) && !inside(cut.keep, peer);
}

bool has_family(const std::vector<core::AddressRange>& ranges, core::Family family) {
  return std::any_of(ranges.begin(), ranges.end(),
                     [&](const core::AddressRange& range) { return range.family == family; });
}

void note_refusal(core::CutReport& report, const std::string& what, int error) {
  if (report.failed++ == 0) {
    report.first_error = sys::system_error(core::ErrorCode::kernel, what, error).message;
  }
}

// --- sockets -------------------------------------------------------------------------------

nlmsghdr* build_destroy(const Session& session, char* buffer) {
  nlmsghdr* header = mnl_nlmsg_put_header(buffer);
  header->nlmsg_type = SOCK_DESTROY;
  auto* request =
      static_cast<inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(header, sizeof(inet_diag_req_v2)));
  request->sdiag_family = session.family;
  request->sdiag_protocol = IPPROTO_TCP;
  request->idiag_states = detail::synchronized_states;
  request->id = session.id;  // with its cookie, so a socket reusing the tuple is left alone
  return header;
}

// Destroys the synchronized TCP sockets of the selected sessions; the kernel sends each peer a
// RST and fails the socket's pending and next calls (ECONNABORTED).
core::Result<void> destroy_sockets(const std::vector<core::SessionCut>& cuts, std::uint32_t& seq,
                                   core::CutReport& report) {
  std::set<std::uint16_t> ports;
  for (const auto& cut : cuts) {
    if (cut.port.protocol == core::Protocol::tcp && !cut.sources.empty()) {
      ports.insert(cut.port.port);
    }
  }
  if (ports.empty()) return {};
  auto socket = detail::open_netlink(NETLINK_SOCK_DIAG, "sock_diag");
  if (!socket) return tl::unexpected(socket.error());
  auto sessions = detail::list_tcp_sessions(socket->get(), ports, seq);
  if (!sessions) return tl::unexpected(sessions.error());

  std::vector<const Session*> doomed;
  for (const auto& session : *sessions) {
    const Peer peer = peer_of(session.remote);
    const core::PortKey key{core::Protocol::tcp, session.local_port};
    if (std::any_of(cuts.begin(), cuts.end(), [&](const core::SessionCut& cut) {
          return cut.port == key && selected(cut, peer);
        })) {
      doomed.push_back(&session);
    }
  }
  return detail::send_acked(
      socket->get(), seq, doomed.size(), "destroy tcp sockets (sock_diag)",
      [&](std::size_t index, char* buffer) { return build_destroy(*doomed[index], buffer); },
      [&](std::size_t index, int error) {
        const Session& session = *doomed[index];
        switch (error) {
          case 0: ++report.sockets; break;
          case ENOENT:         // closed meanwhile
          case ESTALE: break;  // closed, and its tuple taken by a new socket
          case EOPNOTSUPP: report.sockets_unsupported = true; break;
          default:
            note_refusal(report,
                         "destroy tcp socket " + endpoint(session.local, session.local_port) +
                             " <- " + endpoint(session.remote, session.remote_port),
                         error);
        }
      });
}

// --- flows ---------------------------------------------------------------------------------

nlmsghdr* put_ctnetlink_header(char* buffer, std::uint8_t type, std::uint8_t family) {
  nlmsghdr* header = mnl_nlmsg_put_header(buffer);
  header->nlmsg_type = NFNL_SUBSYS_CTNETLINK << 8 | type;
  auto* message = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(header, sizeof(nfgenmsg)));
  message->nfgen_family = family;
  message->version = NFNETLINK_V0;
  message->res_id = 0;
  return header;
}

// The original tuple's source, IPv4 v4-mapped as sock_diag reports it; false when the entry
// lacks it.
bool original_source(const nf_conntrack* entry, in6_addr& address) {
  switch (nfct_get_attr_u8(entry, ATTR_ORIG_L3PROTO)) {
    case AF_INET:
      if (!nfct_attr_is_set(entry, ATTR_ORIG_IPV4_SRC)) return false;
      address = in6_addr{};
      address.s6_addr16[5] = 0xffff;
      address.s6_addr32[3] = nfct_get_attr_u32(entry, ATTR_ORIG_IPV4_SRC);
      return true;
    case AF_INET6:
      if (!nfct_attr_is_set(entry, ATTR_ORIG_IPV6_SRC)) return false;
      std::memcpy(&address, nfct_get_attr(entry, ATTR_ORIG_IPV6_SRC), sizeof address);
      return true;
    default: return false;
  }
}

// Whether the entry's original tuple has the cut's protocol and port and a selected source.
// An entry without a complete original tuple is never selected: ctnetlink takes a delete
// without one for a flush of the whole table.
bool selected(const core::SessionCut& cut, const nf_conntrack* entry) {
  if (!nfct_attr_is_set(entry, ATTR_ORIG_L3PROTO) || !nfct_attr_is_set(entry, ATTR_ORIG_L4PROTO) ||
      !nfct_attr_is_set(entry, ATTR_ORIG_PORT_DST)) {
    return false;
  }
  if (nfct_get_attr_u8(entry, ATTR_ORIG_L4PROTO) != static_cast<std::uint8_t>(cut.port.protocol) ||
      ntohs(nfct_get_attr_u16(entry, ATTR_ORIG_PORT_DST)) != cut.port.port) {
    return false;
  }
  in6_addr source{};
  return original_source(entry, source) && selected(cut, peer_of(source));
}

struct FlowDump {
  const core::SessionCut& cut;
  std::vector<Conntrack>& doomed;
};

int on_flow(const nlmsghdr* header, void* data) {
  auto& dump = *static_cast<FlowDump*>(data);
  Conntrack entry(nfct_new());
  if (!entry) {
    errno = ENOMEM;  // no exception through libmnl's C frames
    return MNL_CB_ERROR;
  }
  if (nfct_nlmsg_parse(header, entry.get()) < 0) {
    errno = EBADMSG;
    return MNL_CB_ERROR;
  }
  if (selected(dump.cut, entry.get())) dump.doomed.push_back(std::move(entry));
  return MNL_CB_OK;
}

// Adds the entries of `family` the cut selects to `doomed`. With `kernel_filter` the kernel
// sends only entries of the cut's protocol and destination port.
core::Result<void> dump_flows(mnl_socket* socket, const core::SessionCut& cut, std::uint8_t family,
                              bool kernel_filter, std::uint32_t& seq,
                              std::vector<Conntrack>& doomed) {
  const std::string operation = "dump conntrack entries (ctnetlink, " +
                                std::string(family == AF_INET ? "ipv4 " : "ipv6 ") +
                                std::string(core::to_string(cut.port.protocol)) + " dport " +
                                std::to_string(cut.port.port) + ")";
  std::vector<char> buffer(detail::receive_buffer_size);
  nlmsghdr* header = put_ctnetlink_header(buffer.data(), IPCTNL_MSG_CT_GET, family);
  header->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  const std::uint32_t dump_seq = seq++;
  header->nlmsg_seq = dump_seq;
  if (kernel_filter) {
    nlattr* tuple = mnl_attr_nest_start(header, CTA_TUPLE_ORIG);
    nlattr* protocol = mnl_attr_nest_start(header, CTA_TUPLE_PROTO);
    mnl_attr_put_u8(header, CTA_PROTO_NUM, static_cast<std::uint8_t>(cut.port.protocol));
    mnl_attr_put_u16(header, CTA_PROTO_DST_PORT, htons(cut.port.port));
    mnl_attr_nest_end(header, protocol);
    mnl_attr_nest_end(header, tuple);
    nlattr* filter = mnl_attr_nest_start(header, CTA_FILTER);
    mnl_attr_put_u32(header, CTA_FILTER_ORIG_FLAGS, filter_protocol | filter_destination_port);
    mnl_attr_nest_end(header, filter);
  }
  if (mnl_socket_sendto(socket, header, header->nlmsg_len) < 0) {
    return sys::fail_system(core::ErrorCode::kernel, operation, errno);
  }
  FlowDump dump{cut, doomed};
  const unsigned int portid = mnl_socket_get_portid(socket);
  for (;;) {
    const ssize_t received = mnl_socket_recvfrom(socket, buffer.data(), buffer.size());
    if (received < 0) return sys::fail_system(core::ErrorCode::kernel, operation, errno);
    const int status = mnl_cb_run(buffer.data(), static_cast<std::size_t>(received), dump_seq,
                                  portid, on_flow, &dump);
    if (status == MNL_CB_ERROR) return sys::fail_system(core::ErrorCode::kernel, operation, errno);
    if (status == MNL_CB_STOP) return {};
  }
}

std::string flow_text(const nf_conntrack* entry) {
  in6_addr source{};
  original_source(entry, source);
  const auto protocol = static_cast<core::Protocol>(nfct_get_attr_u8(entry, ATTR_ORIG_L4PROTO));
  return std::string(core::to_string(protocol)) + " " +
         endpoint(source, ntohs(nfct_get_attr_u16(entry, ATTR_ORIG_PORT_SRC))) + " -> port " +
         std::to_string(ntohs(nfct_get_attr_u16(entry, ATTR_ORIG_PORT_DST)));
}

// Deletes every conntrack entry the cuts select, over one ctnetlink socket.
core::Result<void> delete_flows(const std::vector<core::SessionCut>& cuts, std::uint32_t& seq,
                                core::CutReport& report) {
  auto socket = detail::open_netlink(NETLINK_NETFILTER, "ctnetlink");
  if (!socket) return tl::unexpected(socket.error());
  std::vector<Conntrack> doomed;
  for (const auto& cut : cuts) {
    for (const auto& [family, l3] : {std::pair{core::Family::ipv4, std::uint8_t{AF_INET}},
                                     std::pair{core::Family::ipv6, std::uint8_t{AF_INET6}}}) {
      if (!has_family(cut.sources, family)) continue;
      auto dumped = dump_flows(socket->get(), cut, l3, true, seq, doomed);
      // A kernel that parses the filter but refuses it: the unfiltered dump still works.
      if (!dumped &&
          (dumped.error().sys_errno == EOPNOTSUPP || dumped.error().sys_errno == EINVAL)) {
        dumped = dump_flows(socket->get(), cut, l3, false, seq, doomed);
      }
      if (!dumped) return tl::unexpected(dumped.error());
    }
  }
  return detail::send_acked(
      socket->get(), seq, doomed.size(), "delete conntrack entries (ctnetlink)",
      [&](std::size_t index, char* buffer) {
        const nf_conntrack* entry = doomed[index].get();
        nlmsghdr* header = put_ctnetlink_header(buffer, IPCTNL_MSG_CT_DELETE,
                                                nfct_get_attr_u8(entry, ATTR_ORIG_L3PROTO));
        // The entry as dumped: its original tuple names it, its id (when the kernel sent one)
        // keeps a newer entry with the same tuple from being deleted in its place.
        nfct_nlmsg_build(header, entry);
        return header;
      },
      [&](std::size_t index, int error) {
        if (error == 0) {
          ++report.flows;
        } else if (error != ENOENT) {  // ENOENT: expired or deleted meanwhile
          note_refusal(report, "delete conntrack entry " + flow_text(doomed[index].get()), error);
        }
      });
}

}  // namespace

core::Result<core::CutReport> SessionTerminator::cut(const std::vector<core::SessionCut>& cuts) {
  core::CutReport report;
  if (std::all_of(cuts.begin(), cuts.end(),
                  [](const core::SessionCut& cut) { return cut.sources.empty(); })) {
    return report;
  }
  auto seq = static_cast<std::uint32_t>(std::time(nullptr));
  // Sockets first: the RST each destruction sends then still matches its conntrack entry;
  // sent after the deletion it would be an untracked (INVALID) packet that rules dropping
  // invalid packets would stop.
  if (auto destroyed = destroy_sockets(cuts, seq, report); !destroyed) {
    return tl::unexpected(destroyed.error());
  }
  if (auto deleted = delete_flows(cuts, seq, report); !deleted) {
    return tl::unexpected(deleted.error());
  }
  return report;
}

}  // namespace jitd::conntrack
