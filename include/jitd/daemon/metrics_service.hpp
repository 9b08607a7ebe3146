#pragma once
// The daemon's metrics on its event loop: the counters' state loaded at start and saved a few
// seconds after it changed (and at stop), the kernel's counters read every 10 s, metricsListen
// served, the textfile rewritten; and what the API shows of them (GET /metrics, status).
#include <map>
#include <memory>

#include "jitd/api/router.hpp"
#include "jitd/config/config.hpp"
#include "jitd/core/backend.hpp"
#include "jitd/core/engine.hpp"
#include "jitd/daemon/event_loop.hpp"
#include "jitd/metrics/listener.hpp"
#include "jitd/metrics/metrics.hpp"

namespace jitd::daemon {

// How often the kernel's counters are read without a scrape: the precision of lastAccess, and
// what a counter's restart behind jitd's back (a deleted table) can cost at most.
inline constexpr auto kernel_counters_interval = std::chrono::seconds(10);
// How long a changed state waits to be saved: what a crash of jitd may lose of the counts.
inline constexpr auto metrics_save_delay = std::chrono::seconds(5);

class MetricsService {
 public:
  MetricsService(const config::MainConfig& settings, const core::AccessEngine& engine,
                 core::KernelBackend& backend, const core::Clock& clock);

  // Counts the engine's and the daemon's audit events.
  [[nodiscard]] core::AuditSink& recorder() { return metrics_.recorder(); }
  [[nodiscard]] metrics::Metrics& metrics() { return metrics_; }
  // The saved counters, before anything is counted (a problem is logged: counting starts over).
  void load();
  // Timers, metricsListen and the textfile on `loop`. metricsListen failing to listen is
  // logged, not fatal: the ports stay protected and the API serves GET /metrics all the same.
  [[nodiscard]] core::Result<void> attach(EventLoop& loop);
  // Before and after every re-install of the enforcement: a counter that then restarts at zero
  // is told apart from one that kept counting.
  void read_kernel() { metrics_.read_kernel(); }
  // At stop: the counts since the last save.
  void save();

  [[nodiscard]] api::Response scrape();
  [[nodiscard]] std::map<core::PortKey, api::PortActivity> activity();
  // For the API server's request observer.
  void observe_request(std::string_view method, std::string_view path, unsigned status,
                       std::chrono::nanoseconds took) {
    metrics_.observe_request(method, path, status, took);
  }

 private:
  void serve_listener();
  void write_textfile();

  const config::MainConfig& settings_;
  const core::AccessEngine& engine_;
  metrics::Metrics metrics_;
  std::unique_ptr<metrics::Listener> listener_;
  std::unique_ptr<Timer> kernel_timer_;
  std::unique_ptr<Timer> save_timer_;
  std::unique_ptr<Timer> textfile_timer_;
  std::unique_ptr<Timer> listener_timer_;
};

}  // namespace jitd::daemon
