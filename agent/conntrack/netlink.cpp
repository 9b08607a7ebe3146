// Netlink plumbing shared by session adoption, session cutting and the listener listing.
#include "netlink.hpp"

#include <arpa/inet.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "jitd/sys/system_error.hpp"

namespace jitd::conntrack::detail {
namespace {

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

struct DumpContext {
  const OnSocket& on_socket;
};

int on_message(const nlmsghdr* header, void* data) {
  if (header->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) {
    errno = EBADMSG;
    return MNL_CB_ERROR;
  }
  const auto& context = *static_cast<const DumpContext*>(data);
  context.on_socket(header, *static_cast<const inet_diag_msg*>(mnl_nlmsg_get_payload(header)));
  return MNL_CB_OK;
}

}  // namespace

core::Result<void> dump_sockets(mnl_socket* socket, std::uint8_t family, std::uint8_t protocol,
                                std::uint32_t states, std::uint32_t& seq,
                                const OnSocket& on_socket) {
  const std::string operation = std::string("dump ") + (protocol == IPPROTO_UDP ? "udp" : "tcp") +
                                (family == AF_INET ? "" : "6") + " sockets (sock_diag)";
  std::vector<char> buffer(receive_buffer_size);
  nlmsghdr* header = mnl_nlmsg_put_header(buffer.data());
  header->nlmsg_type = SOCK_DIAG_BY_FAMILY;
  header->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  header->nlmsg_seq = seq++;
  const std::uint32_t request_seq = header->nlmsg_seq;
  auto* request =
      static_cast<inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(header, sizeof(inet_diag_req_v2)));
  request->sdiag_family = family;
  request->sdiag_protocol = protocol;
  request->idiag_states = states;
  if (mnl_socket_sendto(socket, header, header->nlmsg_len) < 0) {
    return sys::fail_system(core::ErrorCode::kernel, operation, errno);
  }
  const unsigned int portid = mnl_socket_get_portid(socket);
  DumpContext context{on_socket};
  for (;;) {
    const ssize_t received = mnl_socket_recvfrom(socket, buffer.data(), buffer.size());
    if (received < 0) return sys::fail_system(core::ErrorCode::kernel, operation, errno);
    const int status = mnl_cb_run(buffer.data(), static_cast<std::size_t>(received), request_seq,
                                  portid, on_message, &context);
    if (status == MNL_CB_ERROR) return sys::fail_system(core::ErrorCode::kernel, operation, errno);
    if (status == MNL_CB_STOP) return {};
  }
}

core::Result<MnlSocket> open_netlink(int bus, const std::string& name) {
  MnlSocket socket(mnl_socket_open(bus));
  if (!socket) {
    return sys::fail_system(core::ErrorCode::kernel, "open netlink socket (" + name + ")", errno);
  }
  if (mnl_socket_bind(socket.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    return sys::fail_system(core::ErrorCode::kernel, "bind netlink socket (" + name + ")", errno);
  }
  return socket;
}

core::Result<std::vector<Session>> list_tcp_sessions(mnl_socket* socket,
                                                     const std::set<std::uint16_t>& ports,
                                                     std::uint32_t& seq) {
  std::vector<Session> sessions;
  const OnSocket keep = [&](const nlmsghdr*, const inet_diag_msg& message) {
    const std::uint16_t local_port = ntohs(message.id.idiag_sport);
    if (!ports.contains(local_port)) return;
    sessions.push_back(Session{from_diag(message.idiag_family, message.id.idiag_src),
                               from_diag(message.idiag_family, message.id.idiag_dst), local_port,
                               ntohs(message.id.idiag_dport), message.idiag_family, message.id});
  };
  for (const std::uint8_t family : {AF_INET, AF_INET6}) {
    if (auto dumped = dump_sockets(socket, family, IPPROTO_TCP, synchronized_states, seq, keep);
        !dumped) {
      return tl::unexpected(dumped.error());
    }
  }
  return sessions;
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

core::Result<void> send_acked(mnl_socket* socket, std::uint32_t& seq, std::size_t count,
                              const std::string& operation, const BuildRequest& build,
                              const OnAck& on_ack) {
  // The ACK of a refused request echoes it whole, so a batch of 16 KiB keeps its answers well
  // inside the socket's default receive buffer.
  constexpr std::size_t batch_limit = 16 * 1024;
  std::vector<char> requests(batch_limit + max_request_size);
  std::vector<char> answers(receive_buffer_size);
  std::size_t next = 0;
  while (next < count) {
    const std::size_t first = next;
    const std::uint32_t first_seq = seq;
    std::size_t used = 0;
    std::memset(requests.data(), 0, requests.size());
    while (next < count && used <= batch_limit) {
      nlmsghdr* header = build(next, requests.data() + used);
      header->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
      header->nlmsg_seq = seq++;
      used += NLMSG_ALIGN(header->nlmsg_len);
      ++next;
    }
    if (mnl_socket_sendto(socket, requests.data(), used) < 0) {
      return sys::fail_system(core::ErrorCode::kernel, operation, errno);
    }
    std::size_t pending = next - first;
    while (pending > 0) {
      const ssize_t received = mnl_socket_recvfrom(socket, answers.data(), answers.size());
      if (received < 0) return sys::fail_system(core::ErrorCode::kernel, operation, errno);
      auto remaining = static_cast<int>(received);
      for (const auto* header = reinterpret_cast<const nlmsghdr*>(answers.data());
           mnl_nlmsg_ok(header, remaining); header = mnl_nlmsg_next(header, &remaining)) {
        if (header->nlmsg_type != NLMSG_ERROR ||
            header->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) {
          continue;
        }
        const std::uint32_t offset = header->nlmsg_seq - first_seq;
        if (offset >= next - first) continue;  // not one of this batch's requests
        const auto* answer = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(header));
        on_ack(first + offset, -answer->error);
        --pending;
      }
    }
  }
  return {};
}

}  // namespace jitd::conntrack::detail
