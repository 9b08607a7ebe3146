#pragma once
// A TCP endpoint as configured: an IPv4 or IPv6 address in text and a port. metricsListen's
// (config::parse_loopback_address checks it is loopback), and what metrics::Listener binds.
#include <cstdint>
#include <string>

namespace jitd::core {

struct TcpAddress {
  bool ipv6 = false;
  std::string address;  // "127.0.0.1", "::1"
  std::uint16_t port = 0;
  // "127.0.0.1:9464", "[::1]:9464"
  [[nodiscard]] std::string to_string() const {
    return (ipv6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
  }
};

}  // namespace jitd::core
