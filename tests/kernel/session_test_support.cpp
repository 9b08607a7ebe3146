#include "session_test_support.hpp"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace jitd::test {

using sys::UniqueFd;

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what + ": " + std::strerror(errno));
}

Address make_address(const std::string& text, std::uint16_t port) {
  Address address;
  if (text.find(':') == std::string::npos) {
    auto& v4 = reinterpret_cast<sockaddr_in&>(address.storage);
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    check(inet_pton(AF_INET, text.c_str(), &v4.sin_addr) == 1, "parse " + text);
    address.length = sizeof v4;
  } else {
    auto& v6 = reinterpret_cast<sockaddr_in6&>(address.storage);
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    check(inet_pton(AF_INET6, text.c_str(), &v6.sin6_addr) == 1, "parse " + text);
    address.length = sizeof v6;
  }
  return address;
}

std::uint16_t local_port(const UniqueFd& socket) {
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  check(getsockname(socket.get(), reinterpret_cast<sockaddr*>(&storage), &length) == 0,
        "getsockname");
  return ntohs(storage.ss_family == AF_INET
                   ? reinterpret_cast<const sockaddr_in&>(storage).sin_port
                   : reinterpret_cast<const sockaddr_in6&>(storage).sin6_port);
}

void bring_loopback_up() {
  const UniqueFd control(socket(AF_INET, SOCK_DGRAM, 0));
  check(static_cast<bool>(control), "socket for ioctl");
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  check(ioctl(control.get(), SIOCGIFFLAGS, &request) == 0, "get lo flags");
  request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
  check(ioctl(control.get(), SIOCSIFFLAGS, &request) == 0, "bring lo up");
}

UniqueFd listen_on(const std::string& address, std::uint16_t port) {
  const Address at = make_address(address, port);
  UniqueFd listener(socket(at.family(), SOCK_STREAM, 0));
  check(static_cast<bool>(listener), "listener socket");
  if (at.family() == AF_INET6) {
    const int off = 0;  // dual-stack, so "::" also serves IPv4 peers (v4-mapped)
    check(setsockopt(listener.get(), IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) == 0,
          "clear IPV6_V6ONLY");
  }
  check(bind(listener.get(), at.get(), at.length) == 0, "bind listener " + address);
  check(listen(listener.get(), 8) == 0, "listen");
  return listener;
}

UniqueFd start_connect(const std::string& client_address, const std::string& server_address,
                       std::uint16_t port) {
  const Address from = make_address(client_address, 0);
  const Address to = make_address(server_address, port);
  UniqueFd client(socket(to.family(), SOCK_STREAM | SOCK_NONBLOCK, 0));
  check(static_cast<bool>(client), "client socket");
  check(bind(client.get(), from.get(), from.length) == 0, "bind client " + client_address);
  check(connect(client.get(), to.get(), to.length) == 0 || errno == EINPROGRESS, "connect");
  return client;
}

bool connected_within(const UniqueFd& client, int timeout_ms) {
  pollfd entry{client.get(), POLLOUT, 0};
  if (poll(&entry, 1, timeout_ms) != 1) return false;
  int error = 0;
  socklen_t length = sizeof error;
  return getsockopt(client.get(), SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0;
}

Connection open_connection(const UniqueFd& listener, const std::string& server_address,
                           const std::string& client_address, std::uint16_t port) {
  Connection connection;
  connection.client = start_connect(client_address, server_address, port);
  check(connected_within(connection.client, wait_ms), "connect to " + server_address);
  connection.server = UniqueFd(accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK));
  check(static_cast<bool>(connection.server), "accept");
  connection.client_port = local_port(connection.client);
  return connection;
}

bool delivers(const UniqueFd& from, const UniqueFd& to, const std::string& payload) {
  check(send(from.get(), payload.data(), payload.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(payload.size()),
        "send");
  std::string received;
  while (received.size() < payload.size()) {
    pollfd entry{to.get(), POLLIN, 0};
    if (poll(&entry, 1, wait_ms) != 1) return false;
    std::array<char, 256> chunk{};
    const ssize_t count = recv(to.get(), chunk.data(), chunk.size(), 0);
    if (count <= 0) return false;
    received.append(chunk.data(), static_cast<std::size_t>(count));
  }
  return received == payload;
}

}  // namespace jitd::test
