#include "jitd/api/server.hpp"

#include <microhttpd.h>

#include <spdlog/spdlog.h>
#include <algorithm>
#include <vector>

#include "jitd/api/listen_socket.hpp"
#include "jitd/api/peer.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace jitd::api {

namespace {

constexpr std::size_t max_body_size = 64 * 1024;
constexpr unsigned connection_timeout_seconds = 10;

// Per-request state that libmicrohttpd keeps between calls of the handler.
struct PendingRequest {
  std::string body;
  bool too_large = false;
};

}  // namespace

struct Server::Impl {
  ServerOptions options;
  const Router& router;
  MHD_Daemon* daemon = nullptr;

  ~Impl() {
    if (daemon != nullptr) MHD_stop_daemon(daemon);  // also closes the listening socket
  }

  static MHD_Result on_request(void* self, MHD_Connection* connection, const char* url,
                               const char* method, const char* /*version*/, const char* upload_data,
                               size_t* upload_data_size, void** request_state) {
    // Nothing may unwind through libmicrohttpd's C frames: it would leave the connection at
    // the head of libmicrohttpd's ready list, to fail again on every run, and serve no one.
    try {
      return static_cast<Impl*>(self)->handle(connection, url, method, upload_data,
                                              upload_data_size, request_state);
    } catch (const std::exception& error) {
      spdlog::error("HTTP request failed: {}", error.what());
    } catch (...) {
      spdlog::error("HTTP request failed: unknown exception");
    }
    try {
      return respond(connection,
                     {500, R"({"error":{"code":"Internal","message":"internal error"}})"});
    } catch (...) {
      return MHD_NO;  // libmicrohttpd closes the connection
    }
  }

  MHD_Result handle(MHD_Connection* connection, const char* url, const char* method,
                    const char* upload_data, size_t* upload_data_size, void** request_state) {
    auto* pending = static_cast<PendingRequest*>(*request_state);
    if (pending == nullptr) {
      *request_state = new PendingRequest();  // freed in on_completed
      return MHD_YES;
    }
    if (*upload_data_size > 0) {
      if (pending->body.size() + *upload_data_size > max_body_size) {
        pending->too_large = true;
      } else {
        pending->body.append(upload_data, *upload_data_size);
      }
      *upload_data_size = 0;
      return MHD_YES;
    }
    if (pending->too_large) {
      return respond(
          connection,
          {413,
           R"({"error":{"code":"InvalidRequest","message":"body: larger than 65536 bytes"}})"});
    }
    const auto* info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    const auto caller =
        identify_peer(info != nullptr ? info->connect_fd : -1, options.manage_group);
    auto response = router.handle(caller, method, url, pending->body);
    spdlog::debug("{} {} by {} (uid {}) -> {}", method, url, caller.name, caller.uid,
                  response.status);
    return respond(connection, std::move(response));
  }

  static MHD_Result respond(MHD_Connection* connection, Response response) {
    response.body += "\n";
    auto* reply = MHD_create_response_from_buffer(response.body.size(), response.body.data(),
                                                  MHD_RESPMEM_MUST_COPY);
    if (reply == nullptr) return MHD_NO;
    MHD_add_response_header(reply, "Content-Type", "application/json");
    const auto queued = MHD_queue_response(connection, response.status, reply);
    MHD_destroy_response(reply);
    return queued;
  }

  static void on_completed(void* /*self*/, MHD_Connection* /*connection*/, void** request_state,
                           MHD_RequestTerminationCode /*code*/) {
    delete static_cast<PendingRequest*>(*request_state);
    *request_state = nullptr;
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

core::Result<std::unique_ptr<Server>> Server::start(const ServerOptions& options,
                                                    const Router& router) {
  auto listener = open_listen_socket(options.socket_path, options.manage_group);
  if (!listener) return tl::unexpected(listener.error());
  const auto& path = options.socket_path.native();

  auto impl = std::make_unique<Impl>(Impl{options, router});
  const int fd = listener->release();  // libmicrohttpd owns and closes it from here
  // No thread of its own: the daemon's event loop polls libmicrohttpd's epoll descriptor and
  // calls run(), so requests reach the engine on the loop's thread, in order with the rest.
  impl->daemon = MHD_start_daemon(
      MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, nullptr, nullptr, &Impl::on_request, impl.get(),
      MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, &Impl::on_completed, impl.get(),
      MHD_OPTION_CONNECTION_TIMEOUT, connection_timeout_seconds, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      static_cast<size_t>(max_body_size * 2), MHD_OPTION_END);
  if (impl->daemon == nullptr) {
    sys::UniqueFd orphan(fd);  // not taken over after all
    return core::fail(core::ErrorCode::io, "start HTTP server on " + path);
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

int Server::epoll_fd() const {
  const auto* info = MHD_get_daemon_info(impl_->daemon, MHD_DAEMON_INFO_EPOLL_FD);
  return info != nullptr ? info->epoll_fd : -1;
}

void Server::run() { MHD_run(impl_->daemon); }

std::optional<std::chrono::milliseconds> Server::next_run() const {
  MHD_UNSIGNED_LONG_LONG timeout = 0;
  if (MHD_get_timeout(impl_->daemon, &timeout) != MHD_YES) return std::nullopt;
  return std::chrono::milliseconds(timeout);
}

}  // namespace jitd::api
