#pragma once
// HTTP/1.1 over a Unix socket (libmicrohttpd). The caller's identity comes from
// SO_PEERCRED / SO_PEERGROUPS of the connection, never from the request.
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>

#include "jitd/api/router.hpp"
#include "jitd/core/error.hpp"

namespace jitd::api {

struct ServerOptions {
  std::filesystem::path socket_path;
  std::optional<gid_t> manage_group;  // members may request and revoke; root always may
};

class Server {
 public:
  // Binds the socket (mode 0660, group manage_group). The server has no thread: the owner's
  // event loop watches epoll_fd() and calls run() when it is readable and when next_run()
  // says, so every request is handled on the loop's thread.
  [[nodiscard]] static core::Result<std::unique_ptr<Server>> start(const ServerOptions& options,
                                                                   const Router& router);
  // libmicrohttpd's own epoll descriptor: readable when the listener or a connection has work.
  [[nodiscard]] int epoll_fd() const;
  // Does all pending work without blocking.
  void run();
  // When run() is due even without I/O (timeouts; 0 means "now": work is left over, and
  // libmicrohttpd's edge-triggered epoll will not say so again); nullopt: only on I/O.
  [[nodiscard]] std::optional<std::chrono::milliseconds> next_run() const;
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace jitd::api
