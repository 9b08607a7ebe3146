#pragma once
// HTTP/1.1 over a Unix socket (libmicrohttpd). The caller's identity comes from
// SO_PEERCRED / SO_PEERGROUPS of the connection, never from the request.
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>

#include "jitd/api/listen_socket.hpp"
#include "jitd/api/router.hpp"
#include "jitd/core/error.hpp"

namespace jitd::api {

// What callers may hold of the server. A connection over a cap is accepted and closed at once:
// the listen queue never fills, so one user's flood cannot lock the others out. Each admitted
// connection holds at most a 16 KiB request-head pool and a 64 KiB body, so the defaults bound
// the API's memory to (256 + 16) x 80 KiB, about 21 MiB.
struct ServerLimits {
  std::size_t connections = 256;         // of all callers but root together
  std::size_t connections_per_uid = 16;  // root's are outside `connections`: root gets in
  // For one request, from accept or the end of the previous request on the connection to the
  // end of this one. libmicrohttpd's inactivity timeout starts over with every byte, so only
  // this ends a connection that drips a byte at a time; a real request takes milliseconds.
  std::chrono::milliseconds connection_deadline{15'000};
};

// Told of every answered request: its method, path (without the query), status, and the time
// from its arrival (its head read) to its answer being queued, a grant's commit included.
using RequestObserver = std::function<void(std::string_view method, std::string_view path,
                                           unsigned status, std::chrono::nanoseconds took)>;

struct ServerOptions {
  std::filesystem::path socket_path;  // where `listener` is, for messages
  std::optional<gid_t> manage_group;  // members may request and revoke; root always may
  ServerLimits limits{};
  RequestObserver observe;  // optional
};

class Server {
 public:
  // Serves on `listener` (made by jitd or passed by systemd). The server has no thread: the owner's
  // event loop watches epoll_fd() and listener_fd() and calls run() when either is readable
  // and when next_run() says, so every request is handled on the loop's thread.
  [[nodiscard]] static core::Result<std::unique_ptr<Server>> start(const ServerOptions& options,
                                                                   const Router& router,
                                                                   ListenSocket listener);
  // libmicrohttpd's own epoll descriptor: readable when the listener or a connection has work.
  [[nodiscard]] int epoll_fd() const;
  // The listening socket: jitd accepts itself, to count connections by the caller's uid.
  [[nodiscard]] int listener_fd() const;
  // Does all pending work without blocking: accepts, closes connections past their deadline,
  // serves requests. A grant request is submitted to the engine and its connection suspended;
  // `commit` (the engine's group commit) then decides every request this run read, and their
  // answers are sent before run() returns.
  void run(const std::function<void()>& commit);
  // When run() is due even without I/O (timeouts, deadlines; 0 means "now": work is left over, and
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
