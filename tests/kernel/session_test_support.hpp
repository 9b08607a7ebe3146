// Sockets for the session tests (adoption, cutting): addresses from text, listeners,
// connections between two loopback addresses, and delivery checks. Each waits at most
// wait_ms, so a dropped packet fails a check instead of hanging the test.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "jitd/sys/unique_fd.hpp"

namespace jitd::test {

inline constexpr int wait_ms = 1000;

// Test plumbing failures are not what is under test: they abort the test with the reason.
void check(bool ok, const std::string& what);

struct Address {
  sockaddr_storage storage{};
  socklen_t length = 0;
  [[nodiscard]] int family() const { return storage.ss_family; }
  [[nodiscard]] const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

Address make_address(const std::string& text, std::uint16_t port);
std::uint16_t local_port(const sys::UniqueFd& socket);
void bring_loopback_up();

// A TCP listener; one on an IPv6 address is dual-stack, so "::" also serves IPv4 peers.
sys::UniqueFd listen_on(const std::string& address, std::uint16_t port);

// A client socket bound to `client_address` whose connect() to `server_address` is under
// way; non-blocking so a dropped SYN does not hang the test.
sys::UniqueFd start_connect(const std::string& client_address, const std::string& server_address,
                            std::uint16_t port);
bool connected_within(const sys::UniqueFd& client, int timeout_ms);

struct Connection {
  sys::UniqueFd server;
  sys::UniqueFd client;
  std::uint16_t client_port = 0;
};

// A connected TCP session from `client_address` to `server_address`:port, both ends
// non-blocking.
Connection open_connection(const sys::UniqueFd& listener, const std::string& server_address,
                           const std::string& client_address, std::uint16_t port);

// Whether `payload` sent on `from` arrives on `to` within wait_ms.
bool delivers(const sys::UniqueFd& from, const sys::UniqueFd& to, const std::string& payload);

}  // namespace jitd::test
