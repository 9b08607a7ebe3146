#pragma once
// jitd's metrics: what the engine holds now (live and pending grants), what it decided (counted
// from its audit events), the kernel's counters per protected port made monotonic, request
// latencies, and build info; rendered for GET /metrics, metricsListen and the textfile, and
// kept in the state directory (metrics.json) so that counters survive restarts.
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "jitd/core/backend.hpp"
#include "jitd/core/clock.hpp"
#include "jitd/core/engine.hpp"
#include "jitd/core/error.hpp"
#include "jitd/metrics/activity.hpp"
#include "jitd/metrics/exposition.hpp"

namespace jitd::metrics {

inline constexpr const char* state_file_name = "metrics.json";

struct BuildInfo {
  std::string version;
  std::string backend;  // "nftables", "ebpf"
};

// A protected port as GET /v1/status shows its activity.
struct PortStatus {
  std::uint64_t approved_last_7_days = 0;
  std::optional<core::TimePoint> last_access;
  std::string last_user;  // empty: no grant seen for it
};

// The route a request took, with the parts a caller chooses (a grant id, an unknown path)
// replaced, so that a label's values stay few: "/v1/grants/{id}", "unmatched".
[[nodiscard]] std::string route_of(std::string_view path, unsigned status);

// node_exporter's textfile: `text` written to a temporary sibling and renamed over `path`, so the
// collector reads the old file or the new one, never half of one. Readable by all (0644):
// node_exporter runs as its own user, and jitd's umask would make it root's alone.
[[nodiscard]] core::Result<void> write_textfile(const std::filesystem::path& path,
                                                std::string_view text);

class Metrics {
 public:
  Metrics(const core::AccessEngine& engine, core::KernelBackend& backend, const core::Clock& clock,
          std::filesystem::path state_file, BuildInfo build);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // The saved state, at start. A missing file is a first start; an unreadable or invalid one
  // is reported and counting starts from zero (the file is replaced at the next save).
  [[nodiscard]] core::Result<void> load();
  // Writes the state when it changed since the last save (temporary sibling + rename).
  [[nodiscard]] core::Result<void> save_if_changed();
  [[nodiscard]] bool changed() const { return activity_.dirty(); }

  // Counts the engine's decisions: the daemon adds it to its audit fanout.
  [[nodiscard]] core::AuditSink& recorder() { return activity_; }
  // Reads the kernel's counters now. Called periodically, on every scrape and status, and right
  // before and after each re-install (so a counter's restart at zero is told from traffic).
  void read_kernel();
  void observe_request(std::string_view method, std::string_view path, unsigned status,
                       std::chrono::nanoseconds took);

  // Collectors of families kept elsewhere (webhooks), appended to every scrape.
  void add_collector(Collector collector) { extra_.add(std::move(collector)); }
  // The exposition text, after a fresh reading of the kernel.
  [[nodiscard]] std::string scrape();
  [[nodiscard]] PortStatus port_status(const core::PortKey& port) const;

 private:
  void collect(std::vector<Family>& families) const;

  const core::AccessEngine& engine_;
  core::KernelBackend& backend_;
  const core::Clock& clock_;
  std::filesystem::path state_file_;
  BuildInfo build_;
  Activity activity_;
  Histogram latency_;
  std::uint64_t kernel_read_failures_ = 0;
  Registry extra_;
};

}  // namespace jitd::metrics
