#include "jitd/metrics/listener.hpp"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>
#include <array>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "jitd/metrics/exposition.hpp"
#include "jitd/sys/system_error.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace jitd::metrics {

namespace {

// Prometheus scrapes with one connection at a time; a few more for curl and the textfile's
// readers. Over the cap libmicrohttpd closes a connection at once.
constexpr unsigned max_connections = 16;
constexpr unsigned connection_timeout_seconds = 10;
constexpr std::size_t connection_memory_limit = 16 * 1024;
constexpr int accept_batch = 16;

void log_libmicrohttpd(void* /*context*/, const char* format, va_list arguments) {
  std::array<char, 512> text{};
  std::vsnprintf(text.data(), text.size(), format, arguments);
  std::string_view message(text.data());
  while (!message.empty() && message.back() == '\n') message.remove_suffix(1);
  spdlog::debug("metricsListen: libmicrohttpd: {}", message);
}

}  // namespace

struct Listener::Impl {
  Impl(sys::UniqueFd listening, Scrape scrape_text, Observe observer)
      : listener(std::move(listening)),
        scrape(std::move(scrape_text)),
        observe(std::move(observer)) {}

  sys::UniqueFd listener;
  Scrape scrape;
  Observe observe;
  MHD_Daemon* daemon = nullptr;

  ~Impl() {
    if (daemon != nullptr) MHD_stop_daemon(daemon);
  }

  void accept_pending() {
    for (int accepted = 0; accepted < accept_batch; ++accepted) {
      sockaddr_storage address{};
      socklen_t length = sizeof address;
      const int client = accept4(listener.get(), reinterpret_cast<sockaddr*>(&address), &length,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (client < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED && errno != EINTR) {
          spdlog::error("metricsListen: accept: {}", std::strerror(errno));
        }
        return;
      }
      // libmicrohttpd owns and closes it from here, also when it refuses it (over the cap).
      if (MHD_add_connection(daemon, client, reinterpret_cast<const sockaddr*>(&address), length) !=
          MHD_YES) {
        spdlog::debug("metricsListen: connection refused: {}", std::strerror(errno));
      }
    }
  }

  static MHD_Result reply(MHD_Connection* connection, unsigned status, std::string_view type,
                          const std::string& body) {
    auto* response = MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()),
                                                     MHD_RESPMEM_MUST_COPY);
    if (response == nullptr) return MHD_NO;
    MHD_add_response_header(response, "Content-Type", std::string(type).c_str());
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED) MHD_add_response_header(response, "Allow", "GET");
    const auto queued = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return queued;
  }

  static MHD_Result on_request(void* self, MHD_Connection* connection, const char* url,
                               const char* method, const char* /*version*/,
                               const char* /*upload_data*/, size_t* upload_data_size,
                               void** /*request_state*/) {
    const auto started = std::chrono::steady_clock::now();
    auto* impl = static_cast<Impl*>(self);
    // A body is not read: the answer does not depend on one.
    *upload_data_size = 0;
    const std::string_view path(url);
    const std::string_view verb(method);
    unsigned status = MHD_HTTP_OK;
    MHD_Result queued = MHD_NO;
    try {
      if (path != "/metrics") {
        status = MHD_HTTP_NOT_FOUND;
        queued = reply(connection, status, "text/plain; charset=utf-8",
                       "metricsListen serves /metrics only\n");
      } else if (verb != "GET" && verb != "HEAD") {
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        queued = reply(connection, status, "text/plain; charset=utf-8", "GET /metrics only\n");
      } else {
        queued = reply(connection, status, content_type, impl->scrape());
      }
    } catch (const std::exception& error) {
      spdlog::error("metricsListen: scrape failed: {}", error.what());
      status = MHD_HTTP_INTERNAL_SERVER_ERROR;
      queued = reply(connection, status, "text/plain; charset=utf-8", "internal error\n");
    }
    if (impl->observe)
      impl->observe(verb, path, status, std::chrono::steady_clock::now() - started);
    return queued;
  }
};

Listener::Listener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Listener::~Listener() = default;

core::Result<std::unique_ptr<Listener>> Listener::start(const core::TcpAddress& where,
                                                        Scrape scrape, Observe observe) {
  const auto named = where.to_string();
  sockaddr_storage address{};
  socklen_t length = 0;
  if (where.ipv6) {
    auto& v6 = reinterpret_cast<sockaddr_in6&>(address);
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(where.port);
    if (inet_pton(AF_INET6, where.address.c_str(), &v6.sin6_addr) != 1) {
      return core::fail(core::ErrorCode::invalid_argument,
                        "metricsListen " + named + ": not an IPv6 address");
    }
    length = sizeof v6;
  } else {
    auto& v4 = reinterpret_cast<sockaddr_in&>(address);
    v4.sin_family = AF_INET;
    v4.sin_port = htons(where.port);
    if (inet_pton(AF_INET, where.address.c_str(), &v4.sin_addr) != 1) {
      return core::fail(core::ErrorCode::invalid_argument,
                        "metricsListen " + named + ": not an IPv4 address");
    }
    length = sizeof v4;
  }
  sys::UniqueFd listening(
      ::socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listening) {
    // Under jitd.service without the jitd-tcp.conf drop-in: RestrictAddressFamilies= says no.
    return sys::fail_system(core::ErrorCode::io,
                            "metricsListen " + named +
                                ": socket (the unit needs AF_INET/AF_INET6: "
                                "install the jitd-tcp.conf drop-in)",
                            errno);
  }
  const int on = 1;
  // A restarted jitd binds again while the old connections are in TIME_WAIT.
  setsockopt(listening.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (::bind(listening.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    return sys::fail_system(core::ErrorCode::io, "metricsListen: bind " + named, errno);
  }
  if (::listen(listening.get(), SOMAXCONN) != 0) {
    return sys::fail_system(core::ErrorCode::io, "metricsListen: listen on " + named, errno);
  }
  auto impl = std::make_unique<Impl>(std::move(listening), std::move(scrape), std::move(observe));
  impl->daemon =
      MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ERROR_LOG, 0, nullptr,
                       nullptr, &Impl::on_request, impl.get(), MHD_OPTION_EXTERNAL_LOGGER,
                       &log_libmicrohttpd, nullptr, MHD_OPTION_CONNECTION_LIMIT, max_connections,
                       MHD_OPTION_CONNECTION_TIMEOUT, connection_timeout_seconds,
                       MHD_OPTION_CONNECTION_MEMORY_LIMIT, connection_memory_limit, MHD_OPTION_END);
  if (impl->daemon == nullptr) {
    return core::fail(core::ErrorCode::io, "metricsListen: start HTTP server on " + named);
  }
  return std::unique_ptr<Listener>(new Listener(std::move(impl)));
}

int Listener::epoll_fd() const {
  const auto* info = MHD_get_daemon_info(impl_->daemon, MHD_DAEMON_INFO_EPOLL_FD);
  return info != nullptr ? info->epoll_fd : -1;
}

int Listener::listener_fd() const { return impl_->listener.get(); }

void Listener::run() {
  impl_->accept_pending();
  MHD_run(impl_->daemon);
}

std::optional<std::chrono::milliseconds> Listener::next_run() const {
  if (MHD_UNSIGNED_LONG_LONG timeout = 0; MHD_get_timeout(impl_->daemon, &timeout) == MHD_YES) {
    return std::chrono::milliseconds(timeout);
  }
  return std::nullopt;
}

}  // namespace jitd::metrics
