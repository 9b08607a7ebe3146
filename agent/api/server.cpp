#include "jitd/api/server.hpp"

#include <microhttpd.h>

#include <spdlog/spdlog.h>
#include <strings.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "jitd/api/listen_socket.hpp"
#include "jitd/api/peer.hpp"
#include "jitd/core/text.hpp"
#include "jitd/sys/system_error.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace jitd::api {

namespace {

constexpr std::size_t max_body_size = 64 * 1024;
// libmicrohttpd's per-connection pool: the request line and headers, and the reply's headers.
// A bigger request head is answered 431; the body streams through it into PendingRequest.
constexpr std::size_t connection_memory_limit = 16 * 1024;
constexpr unsigned connection_timeout_seconds = 10;
// Connections accepted per run: the listener stays readable (the loop watches it level-
// triggered), so the loop comes back for the rest after its other sources had their turn.
constexpr int accept_batch = 64;
// How much of a request line a log line quotes.
constexpr std::size_t max_logged_method = 16;
constexpr std::size_t max_logged_url = 256;
constexpr std::size_t max_logged_error = 256;

// libmicrohttpd's own messages go to jitd's log. It treats a connection handed to it as a TCP
// one and reports, for every reply, that TCP-only socket options failed on the Unix socket:
// true and meaningless here, so those are dropped rather than logged once per request.
void log_libmicrohttpd(void* /*context*/, const char* format, va_list arguments) {
  std::array<char, 512> text{};
  std::vsnprintf(text.data(), text.size(), format, arguments);
  std::string_view message(text.data());
  while (!message.empty() && message.back() == '\n') message.remove_suffix(1);
  if (message.find("TCP_CORK") != std::string_view::npos ||
      message.find("TCP_NODELAY") != std::string_view::npos ||
      message.starts_with("Failed to push the data from buffers")) {
    return;
  }
  // What a client did (closed mid-request, sent a head too large) is not jitd's problem to warn
  // about; the rest is.
  const bool by_client = message.starts_with("Connection socket is closed") ||
                         message.starts_with("Error processing request");
  spdlog::log(by_client ? spdlog::level::debug : spdlog::level::warn, "libmicrohttpd: {}", message);
}

// Per-request state that libmicrohttpd keeps between calls of the handler.
struct PendingRequest {
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::string body;
  bool too_large = false;
  bool suspended = false;         // waiting for the engine's commit
  std::optional<Response> reply;  // the answer, once decided
};

}  // namespace

struct Server::Impl {
  using Clock = std::chrono::steady_clock;

  // A connection from accept until libmicrohttpd reports it closed.
  struct Admitted {
    core::Caller caller;         // identified once, at accept, by the kernel's credentials
    Clock::time_point deadline;  // for the request under way; each request gets its own
    bool shut_down = false;      // past its deadline; libmicrohttpd closes it at its next run
  };

  // A constructor, not aggregate initialisation from make_unique: clang 14 lacks the latter.
  Impl(ServerOptions server_options, const Router& server_router, ListenSocket listening)
      : options(std::move(server_options)), router(server_router), listener(std::move(listening)) {}

  ServerOptions options;
  const Router& router;
  ListenSocket listener;
  MHD_Daemon* daemon = nullptr;
  std::unordered_map<int, Admitted> admitted;  // by descriptor: unique while open
  std::unordered_map<uid_t, std::size_t> admitted_per_uid;
  std::size_t resumed = 0;  // connections resumed since the last MHD_run

  ~Impl() {
    if (daemon != nullptr) MHD_stop_daemon(daemon);  // closes the connections, not the listener
  }

  // Takes what the listen queue holds. Every connection is accepted, also one over a cap (it
  // is closed at once), so the queue never fills and the kernel never refuses a caller.
  void accept_pending() {
    for (int accepted = 0; accepted < accept_batch; ++accepted) {
      sockaddr_un address{};
      socklen_t length = sizeof address;
      sys::UniqueFd client(accept4(listener.fd(), reinterpret_cast<sockaddr*>(&address), &length,
                                   SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!client) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED && errno != EINTR) {
          spdlog::error("accept on the API socket: {}", std::strerror(errno));
        }
        return;
      }
      admit(std::move(client), address, length);
    }
  }

  void admit(sys::UniqueFd client, const sockaddr_un& address, socklen_t length) {
    auto caller = identify_peer(client.get(), options.manage_group);
    if (caller.uid == core::unknown_uid) {
      spdlog::warn("API connection without peer credentials closed");
      return;
    }
    const uid_t uid = caller.uid;
    const auto held = admitted_per_uid.find(uid);
    const std::size_t by_uid = held != admitted_per_uid.end() ? held->second : 0;
    const auto by_root = admitted_per_uid.find(0);
    const std::size_t by_others =
        admitted.size() - (by_root != admitted_per_uid.end() ? by_root->second : 0);
    if (by_uid >= options.limits.connections_per_uid ||
        (uid != 0 && by_others >= options.limits.connections)) {
      spdlog::debug("API connection by uid {} closed: {} of its own and {} in all are open", uid,
                    by_uid, by_others);
      return;
    }
    const int fd = client.release();  // libmicrohttpd owns and closes it from here, even on failure
    admitted.emplace(
        fd, Admitted{std::move(caller), Clock::now() + options.limits.connection_deadline});
    ++admitted_per_uid[uid];
    if (MHD_add_connection(daemon, fd, reinterpret_cast<const sockaddr*>(&address), length) !=
        MHD_YES) {
      spdlog::warn("API connection by uid {} dropped by libmicrohttpd: {}", uid,
                   std::strerror(errno));
      forget(fd);  // a no-op when libmicrohttpd got as far as reporting it closed
    }
  }

  void forget(int fd) {
    const auto found = admitted.find(fd);
    if (found == admitted.end()) return;
    const auto by_uid = admitted_per_uid.find(found->second.caller.uid);
    if (--by_uid->second == 0) admitted_per_uid.erase(by_uid);
    admitted.erase(found);
  }

  // libmicrohttpd 0.9.75 has no call that closes a connection: shutting the socket down makes
  // it readable at EOF, and libmicrohttpd closes it at its next run (and reports it closed).
  void shut_down_expired() {
    const auto now = Clock::now();
    for (auto& [fd, connection] : admitted) {
      if (connection.shut_down || connection.deadline > now) continue;
      spdlog::debug("API connection by uid {} closed: open longer than {} ms",
                    connection.caller.uid, options.limits.connection_deadline.count());
      shutdown(fd, SHUT_RDWR);
      connection.shut_down = true;
    }
  }

  [[nodiscard]] std::optional<Clock::time_point> next_deadline() const {
    std::optional<Clock::time_point> next;
    for (const auto& [fd, connection] : admitted) {
      if (!connection.shut_down && (!next || connection.deadline < *next)) {
        next = connection.deadline;
      }
    }
    return next;
  }

  // The connection's own descriptor: its key in `admitted`, unique while it is open.
  static int descriptor_of(MHD_Connection* connection) {
    const auto* info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info != nullptr ? info->connect_fd : -1;
  }

  static void on_connection(void* self, MHD_Connection* connection, void** /*socket_context*/,
                            MHD_ConnectionNotificationCode code) {
    if (code != MHD_CONNECTION_NOTIFY_CLOSED) return;
    // Called before libmicrohttpd closes the descriptor, so it still names this connection.
    static_cast<Impl*>(self)->forget(descriptor_of(connection));
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
      spdlog::error("HTTP request failed: {}", core::excerpt(error.what(), max_logged_error));
    } catch (...) {
      spdlog::error("HTTP request failed: unknown exception");
    }
    try {
      return static_cast<Impl*>(self)->answer(
          connection, static_cast<PendingRequest*>(*request_state), method, url,
          {500, R"({"error":{"code":"Internal","message":"internal error"}})"});
    } catch (...) {
      return MHD_NO;  // libmicrohttpd closes the connection
    }
  }

  MHD_Result handle(MHD_Connection* connection, const char* url, const char* method,
                    const char* upload_data, size_t* upload_data_size, void** request_state) {
    auto* pending = static_cast<PendingRequest*>(*request_state);
    if (pending == nullptr) {
      pending = new PendingRequest();  // freed in on_completed
      *request_state = pending;
      // Two lengths leave it open where this body ends and the next request begins.
      if (count_headers(connection, MHD_HTTP_HEADER_CONTENT_LENGTH) > 1) {
        return answer(connection, pending, method, url,
                      {400, R"({"error":{"code":"InvalidRequest",)"
                            R"("message":"Content-Length: given more than once"}})"});
      }
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
      return answer(
          connection, pending, method, url,
          {413,
           R"({"error":{"code":"InvalidRequest","message":"body: larger than 65536 bytes"}})"});
    }
    // Resumed after the engine's commit: the answer is decided.
    if (pending->reply) return answer(connection, pending, method, url, std::move(*pending->reply));
    const auto found = admitted.find(descriptor_of(connection));
    // Every connection was admitted; one that was not has no identity and so no right.
    const auto caller = found != admitted.end()
                            ? found->second.caller
                            : core::Caller{core::unknown_uid, 0, "unknown", false, {}};
    spdlog::debug("{} {} by {} (uid {})", core::excerpt(method, max_logged_method),
                  core::excerpt(url, max_logged_url), core::escaped(caller.name), caller.uid);
    router.handle_async(caller, method, url, pending->body, query_arguments(connection),
                        [this, connection, pending](Response response) {
                          pending->reply = std::move(response);
                          if (!pending->suspended) return;
                          pending->suspended = false;
                          MHD_resume_connection(connection);
                          ++resumed;
                        });
    if (pending->reply) return answer(connection, pending, method, url, std::move(*pending->reply));
    // A grant waits for the group commit that follows this run (Server::run).
    pending->suspended = true;
    MHD_suspend_connection(connection);
    return MHD_YES;
  }

  static QueryArguments query_arguments(MHD_Connection* connection) {
    QueryArguments arguments;
    MHD_get_connection_values(
        connection, MHD_GET_ARGUMENT_KIND,
        [](void* state, MHD_ValueKind, const char* key, const char* value) {
          static_cast<QueryArguments*>(state)->emplace_back(key, value != nullptr ? value : "");
          return MHD_YES;
        },
        &arguments);
    return arguments;
  }

  static std::size_t count_headers(MHD_Connection* connection, const char* name) {
    struct Count {
      const char* name;
      std::size_t seen = 0;
    } count{name};
    MHD_get_connection_values(
        connection, MHD_HEADER_KIND,
        [](void* state, MHD_ValueKind, const char* key, const char*) {
          auto* count = static_cast<Count*>(state);
          if (strcasecmp(key, count->name) == 0) ++count->seen;
          return MHD_YES;
        },
        &count);
    return count.seen;
  }

  // libmicrohttpd hands the handler a C string: a decoded %00 would cut the path short, and
  // "/v1/grants%00/x" would be served as "/v1/grants". Such a path is left undecoded, so it
  // matches no route and is quoted as sent.
  static size_t unescape(void* /*self*/, MHD_Connection* /*connection*/, char* text) {
    if (std::strstr(text, "%00") != nullptr) return std::strlen(text);
    return MHD_http_unescape(text);
  }

  // Queues the answer and tells the observer; `pending` is null when the request failed before
  // its state existed.
  MHD_Result answer(MHD_Connection* connection, const PendingRequest* pending, const char* method,
                    const char* url, Response response) const {
    const auto status = response.status;
    const auto queued = respond(connection, std::move(response));
    if (options.observe && pending != nullptr) {
      options.observe(method, url, status, std::chrono::steady_clock::now() - pending->started);
    }
    return queued;
  }

  static MHD_Result respond(MHD_Connection* connection, Response response) {
    if (!response.body.ends_with('\n')) response.body += "\n";
    auto* reply = MHD_create_response_from_buffer(response.body.size(), response.body.data(),
                                                  MHD_RESPMEM_MUST_COPY);
    if (reply == nullptr) return MHD_NO;
    MHD_add_response_header(reply, "Content-Type", response.content_type.c_str());
    const auto queued = MHD_queue_response(connection, response.status, reply);
    MHD_destroy_response(reply);
    return queued;
  }

  static void on_completed(void* self, MHD_Connection* connection, void** request_state,
                           MHD_RequestTerminationCode /*code*/) {
    delete static_cast<PendingRequest*>(*request_state);
    *request_state = nullptr;
    // A kept-alive connection's next request gets a deadline of its own.
    auto* impl = static_cast<Impl*>(self);
    if (const auto found = impl->admitted.find(descriptor_of(connection));
        found != impl->admitted.end()) {
      found->second.deadline = Clock::now() + impl->options.limits.connection_deadline;
    }
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

core::Result<std::unique_ptr<Server>> Server::start(const ServerOptions& options,
                                                    const Router& router, ListenSocket listener) {
  const auto& path = options.socket_path.native();
  auto impl = std::make_unique<Impl>(options, router, std::move(listener));
  // No thread of its own: the daemon's event loop polls libmicrohttpd's epoll descriptor and
  // the listener and calls run(), so requests reach the engine on the loop's thread, in order
  // with the rest. jitd accepts (libmicrohttpd's accept policy sees an address, not a uid).
  const auto& limits = options.limits;
  impl->daemon = MHD_start_daemon(
      MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME, 0,
      nullptr, nullptr, &Impl::on_request, impl.get(),
      // First: what libmicrohttpd reports before it goes to its own stderr logger.
      MHD_OPTION_EXTERNAL_LOGGER, &log_libmicrohttpd, nullptr, MHD_OPTION_NOTIFY_COMPLETED,
      &Impl::on_completed, impl.get(), MHD_OPTION_NOTIFY_CONNECTION, &Impl::on_connection,
      impl.get(), MHD_OPTION_CONNECTION_LIMIT,
      static_cast<unsigned>(limits.connections + limits.connections_per_uid),
      MHD_OPTION_CONNECTION_TIMEOUT, connection_timeout_seconds, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      connection_memory_limit, MHD_OPTION_UNESCAPE_CALLBACK, &Impl::unescape, impl.get(),
      MHD_OPTION_END);
  if (impl->daemon == nullptr) {
    return core::fail(core::ErrorCode::io, "start HTTP server on " + path);
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

int Server::epoll_fd() const {
  const auto* info = MHD_get_daemon_info(impl_->daemon, MHD_DAEMON_INFO_EPOLL_FD);
  return info != nullptr ? info->epoll_fd : -1;
}

int Server::listener_fd() const { return impl_->listener.fd(); }

void Server::run(const std::function<void()>& commit) {
  impl_->accept_pending();
  impl_->shut_down_expired();  // first: this run's MHD_run sees them at EOF and closes them
  MHD_run(impl_->daemon);
  // Every request this run read is decided by one commit (one journal sync, one kernel
  // transaction); the answers go out in a second run.
  commit();
  if (std::exchange(impl_->resumed, 0) > 0) MHD_run(impl_->daemon);
}

std::optional<std::chrono::milliseconds> Server::next_run() const {
  std::optional<std::chrono::milliseconds> next;
  if (MHD_UNSIGNED_LONG_LONG timeout = 0; MHD_get_timeout(impl_->daemon, &timeout) == MHD_YES) {
    next = std::chrono::milliseconds(timeout);
  }
  if (const auto deadline = impl_->next_deadline()) {
    // Rounded up: a timer that fires a little early would find nothing due and re-arm at 0.
    const auto until =
        std::max(std::chrono::ceil<std::chrono::milliseconds>(*deadline - Impl::Clock::now()),
                 std::chrono::milliseconds(0));
    next = next ? std::min(*next, until) : until;
  }
  return next;
}

}  // namespace jitd::api
