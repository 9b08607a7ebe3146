#pragma once
// HTTP/1.1 over a Unix socket (libmicrohttpd). The caller's identity comes from
// SO_PEERCRED / SO_PEERGROUPS of the connection, never from the request.
#include <sys/types.h>

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
  // Binds the socket (mode 0660, group manage_group) and serves on its own thread.
  [[nodiscard]] static core::Result<std::unique_ptr<Server>> start(const ServerOptions& options,
                                                                   const Router& router);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace jitd::api
