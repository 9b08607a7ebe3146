// The listener listing: four sock_diag dumps (tcp, udp; IPv4, IPv6).
#include "jitd/conntrack/listeners.hpp"

#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <ctime>

#include "netlink.hpp"

namespace jitd::conntrack {
namespace {

core::AddressValue address_value(std::uint8_t family, const __be32 (&address)[4]) {
  if (family == AF_INET) return ntohl(address[0]);
  core::AddressValue value = 0;
  for (const __be32 word : address) value = value << 32 | ntohl(word);
  return value;
}

int on_attribute(const nlattr* attribute, void* data) {
  if (mnl_attr_get_type(attribute) == INET_DIAG_SKV6ONLY &&
      mnl_attr_get_payload_len(attribute) >= 1) {
    *static_cast<bool*>(data) = mnl_attr_get_u8(attribute) != 0;
    return MNL_CB_STOP;
  }
  return MNL_CB_OK;
}

// INET_DIAG_SKV6ONLY, which the kernel adds for every IPv6 socket; absent (never seen), the
// socket counts as IPv6 only, which only changes how `::` is printed.
bool v6_only(const nlmsghdr* header) {
  bool only = true;
  mnl_attr_parse(header, sizeof(inet_diag_msg), on_attribute, &only);
  return only;
}

}  // namespace

core::Result<std::vector<core::Listener>> list_listeners() {
  auto socket = detail::open_netlink(NETLINK_SOCK_DIAG, "sock_diag");
  if (!socket) return tl::unexpected(socket.error());
  auto seq = static_cast<std::uint32_t>(std::time(nullptr));
  std::vector<core::Listener> listeners;
  for (const auto& [protocol, states] :
       {std::pair{core::Protocol::tcp, 1U << TCP_LISTEN},
        std::pair{core::Protocol::udp, 1U << TCP_CLOSE}}) {  // an unconnected UDP socket
    const detail::OnSocket keep = [&, protocol = protocol](const nlmsghdr* header,
                                                           const inet_diag_msg& message) {
      const std::uint16_t port = ntohs(message.id.idiag_sport);
      if (port == 0) return;  // a UDP socket never bound
      const bool v6 = message.idiag_family == AF_INET6;
      listeners.push_back({protocol, port, v6 ? core::Family::ipv6 : core::Family::ipv4,
                           address_value(message.idiag_family, message.id.idiag_src),
                           v6 && v6_only(header)});
    };
    for (const std::uint8_t family : {AF_INET, AF_INET6}) {
      if (auto dumped = detail::dump_sockets(
              socket->get(), family, static_cast<std::uint8_t>(protocol), states, seq, keep);
          !dumped) {
        return tl::unexpected(dumped.error());
      }
    }
  }
  return listeners;
}

}  // namespace jitd::conntrack
