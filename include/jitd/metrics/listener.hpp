#pragma once
// metricsListen: GET /metrics over loopback TCP for Prometheus, which cannot scrape a Unix
// socket. Its own libmicrohttpd instance without a thread: the daemon's event loop watches
// epoll_fd() and calls run() when it is readable and when next_run() says, as for the API.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "jitd/core/error.hpp"
#include "jitd/core/tcp_address.hpp"

namespace jitd::metrics {

class Listener {
 public:
  // What a scrape answers; runs on the loop's thread.
  using Scrape = std::function<std::string()>;
  // What a scrape took, for the latency histogram: (method, path, status, duration).
  using Observe =
      std::function<void(std::string_view, std::string_view, unsigned, std::chrono::nanoseconds)>;

  // Binds and listens at once, so a port in use stops the start with its errno.
  [[nodiscard]] static core::Result<std::unique_ptr<Listener>> start(const core::TcpAddress& where,
                                                                     Scrape scrape,
                                                                     Observe observe = nullptr);
  // libmicrohttpd's epoll descriptor (its connections) and the listening socket, which jitd
  // accepts on itself (libmicrohttpd then has no socket it did not get from jitd).
  [[nodiscard]] int epoll_fd() const;
  [[nodiscard]] int listener_fd() const;
  // Accepts and serves without blocking.
  void run();
  [[nodiscard]] std::optional<std::chrono::milliseconds> next_run() const;
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  struct Impl;

 private:
  explicit Listener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace jitd::metrics
