#include "jitd/daemon/metrics_service.hpp"

#include <sys/epoll.h>

#include <spdlog/spdlog.h>

namespace jitd::daemon {

MetricsService::MetricsService(const config::MainConfig& settings, const core::AccessEngine& engine,
                               core::KernelBackend& backend, const core::Clock& clock)
    : settings_(settings),
      engine_(engine),
      metrics_(engine, backend, clock, settings.state_directory / metrics::state_file_name,
               {JITD_VERSION, std::string(backend.name())}) {}

void MetricsService::load() {
  if (auto loaded = metrics_.load(); !loaded) {
    spdlog::error("metrics: {}; counting starts from zero", loaded.error().message);
  }
}

core::Result<void> MetricsService::attach(EventLoop& loop) {
  auto timer = [&loop](std::unique_ptr<Timer>& slot, const char* description,
                       EventLoop::TimerHandler handler) -> core::Result<void> {
    auto made = loop.make_timer(description, std::move(handler));
    if (!made) return tl::unexpected(made.error());
    slot = std::move(*made);
    return {};
  };
  for (auto made :
       {timer(kernel_timer_, "metrics: kernel counters",
              [this] {
                kernel_timer_->arm(kernel_counters_interval);
                metrics_.read_kernel();
              }),
        timer(save_timer_, "metrics: state save", [this] { save(); }),
        timer(textfile_timer_, "metrics: textfile", [this] { write_textfile(); }),
        timer(listener_timer_, "metrics: listener timeouts", [this] { serve_listener(); })}) {
    if (!made) return made;
  }
  // Whatever counted something gets it saved a little later, with whatever follows it.
  if (auto added = loop.after_each_event("metrics state save scheduling",
                                         [this] {
                                           if (metrics_.changed() && !save_timer_->armed()) {
                                             save_timer_->arm(metrics_save_delay);
                                           }
                                         });
      !added) {
    return added;
  }
  kernel_timer_->arm(kernel_counters_interval);
  if (!settings_.metrics_textfile.empty()) textfile_timer_->arm(std::chrono::microseconds(0));
  if (!settings_.metrics_listen) return {};
  const auto& where = *settings_.metrics_listen;
  auto listener = metrics::Listener::start(
      where, [this] { return metrics_.scrape(); },
      [this](std::string_view method, std::string_view path, unsigned status,
             std::chrono::nanoseconds took) { observe_request(method, path, status, took); });
  if (!listener) {
    spdlog::error("{}; metrics are served on the API socket only", listener.error().message);
    return {};
  }
  listener_ = std::move(*listener);
  for (const auto& [fd, description] :
       {std::pair{listener_->epoll_fd(), "metricsListen"},
        std::pair{listener_->listener_fd(), "metricsListen listener"}}) {
    if (auto added =
            loop.on_io(fd, EPOLLIN, description, [this](std::uint32_t) { serve_listener(); });
        !added) {
      return added;
    }
  }
  spdlog::info("metrics: serving GET /metrics on http://{}/metrics", where.to_string());
  return {};
}

void MetricsService::serve_listener() {
  // Armed first, as for the API: should run() throw, stalled connections still time out.
  listener_timer_->arm(std::chrono::seconds(1));
  listener_->run();
  if (const auto next = listener_->next_run()) {
    listener_timer_->arm(*next);
  } else {
    listener_timer_->disarm();
  }
}

void MetricsService::write_textfile() {
  textfile_timer_->arm(settings_.metrics_textfile_interval);
  if (auto written = metrics::write_textfile(settings_.metrics_textfile, metrics_.scrape());
      !written) {
    spdlog::warn(
        "metrics textfile: {}; retried in {} s", written.error().message,
        std::chrono::duration_cast<std::chrono::seconds>(settings_.metrics_textfile_interval)
            .count());
  }
}

void MetricsService::save() {
  if (auto saved = metrics_.save_if_changed(); !saved) {
    spdlog::warn("metrics: save counters: {}; retried in {} s", saved.error().message,
                 metrics_save_delay.count());
  }
}

api::Response MetricsService::scrape() {
  return {200, metrics_.scrape(), std::string(metrics::content_type)};
}

std::map<core::PortKey, api::PortActivity> MetricsService::activity() {
  metrics_.read_kernel();
  std::map<core::PortKey, api::PortActivity> ports;
  for (const auto& port : engine_.policy().protected_ports()) {
    const auto status = metrics_.port_status(port);
    ports[port] = {status.approved_last_7_days, status.last_access, status.last_user};
  }
  return ports;
}

}  // namespace jitd::daemon
