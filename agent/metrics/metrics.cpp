#include "jitd/metrics/metrics.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <spdlog/spdlog.h>
#include <cerrno>
#include <map>

#include "jitd/sys/files.hpp"
#include "jitd/sys/system_error.hpp"

namespace jitd::metrics {

namespace {

// From a cached status read (well under a millisecond) to a grant that waits for a slow
// disk's sync or a large kernel transaction.
const std::vector<double> latency_bounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                            0.1,    0.25,  0.5,    1,     2.5,  5,     10};
// The state file is jitd's own: a bound only against a file that is not.
constexpr std::size_t max_state_bytes = 16 << 20;

Labels port_labels(const core::PortKey& port) {
  return {{"port", std::to_string(port.port)},
          {"protocol", std::string(core::to_string(port.protocol))}};
}

Family counter(std::string name, std::string help, double value) {
  return {std::move(name), std::move(help), Type::counter, {{{}, value}}, {}};
}

std::string status_class(unsigned status) { return std::to_string(status / 100) + "xx"; }

// Methods the API answers; anything else is one label value, whatever the caller sent.
std::string method_label(std::string_view method) {
  for (const std::string_view known : {"GET", "POST", "DELETE", "HEAD", "PUT", "PATCH"}) {
    if (method == known) return std::string(known);
  }
  return "other";
}

}  // namespace

std::string route_of(std::string_view path, unsigned status) {
  constexpr std::string_view grants = "/v1/grants/";
  if (path.starts_with(grants) && path.size() > grants.size()) {
    const auto rest = path.substr(grants.size());
    const auto slash = rest.find('/');
    if (slash == std::string_view::npos) return "/v1/grants/{id}";
    const auto action = rest.substr(slash + 1);
    if (action == "extend" || action == "approve" || action == "deny") {
      return "/v1/grants/{id}/" + std::string(action);
    }
    return "unmatched";
  }
  // A path no route serves is the caller's text: one value for all of them.
  if (status == 404) return "unmatched";
  return std::string(path);
}

core::Result<void> write_textfile(const std::filesystem::path& path, std::string_view text) {
  auto replacement = sys::Replacement::create(path);
  if (!replacement) return tl::unexpected(replacement.error());
  if (auto written = sys::write_all(replacement->fd(), text, "write " + replacement->temp_path());
      !written) {
    return written;
  }
  if (::fchmod(replacement->fd(), 0644) != 0) {
    return sys::fail_system(core::ErrorCode::io, "chmod 0644 " + replacement->temp_path(), errno);
  }
  auto committed = std::move(*replacement).commit();
  if (!committed) return tl::unexpected(committed.error());
  return {};
}

Metrics::Metrics(const core::AccessEngine& engine, core::KernelBackend& backend,
                 const core::Clock& clock, std::filesystem::path state_file, BuildInfo build)
    : engine_(engine),
      backend_(backend),
      clock_(clock),
      state_file_(std::move(state_file)),
      build_(std::move(build)),
      latency_(latency_bounds) {}

core::Result<void> Metrics::load() {
  sys::UniqueFd fd(::open(state_file_.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (errno == ENOENT) return {};
    return sys::fail_system(core::ErrorCode::io, "open " + state_file_.string(), errno);
  }
  auto text = sys::read_all(fd.get(), "read " + state_file_.string(), max_state_bytes);
  if (!text) return tl::unexpected(text.error());
  auto loaded = Activity::from_json(nlohmann::json::parse(*text, nullptr, false));
  if (!loaded) {
    return core::fail(loaded.error().code, state_file_.string() + ": " + loaded.error().message);
  }
  activity_ = std::move(*loaded);
  return {};
}

core::Result<void> Metrics::save_if_changed() {
  if (!activity_.dirty()) return {};
  // Not durable across a power loss (no directory sync): the old file is as good a start, and
  // the counters' loss is bounded by how often this runs.
  auto saved = sys::replace_synced(state_file_, activity_.to_json().dump() + "\n");
  if (!saved) return tl::unexpected(saved.error());
  (void)activity_.take_dirty();
  return {};
}

void Metrics::read_kernel() {
  auto counters = backend_.counters();
  if (!counters) {
    ++kernel_read_failures_;
    spdlog::debug("metrics: read kernel counters: {}", counters.error().message);
    return;
  }
  activity_.observe_kernel(*counters, clock_.now());
}

void Metrics::observe_request(std::string_view method, std::string_view path, unsigned status,
                              std::chrono::nanoseconds took) {
  latency_.observe({{"method", method_label(method)},
                    {"route", route_of(path, status)},
                    {"status", status_class(status)}},
                   std::chrono::duration<double>(took).count());
}

std::string Metrics::scrape() {
  read_kernel();
  std::vector<Family> families;
  collect(families);
  for (auto& family : extra_.collect()) families.push_back(std::move(family));
  return render(families);
}

PortStatus Metrics::port_status(const core::PortKey& port) const {
  PortStatus status;
  status.approved_last_7_days = activity_.issued_in_last_days(port, clock_.now());
  if (const auto found = activity_.ports().find(port); found != activity_.ports().end()) {
    status.last_access = found->second.last_access;
    status.last_user = found->second.last_user;
  }
  return status;
}

void Metrics::collect(std::vector<Family>& families) const {
  families.push_back({"jitd_build_info",
                      "jitd's version and the backend it enforces with (always 1).",
                      Type::gauge,
                      {{{{"version", build_.version}, {"backend", build_.backend}}, 1}},
                      {}});

  const auto protected_ports = engine_.policy().protected_ports();
  std::map<core::PortKey, std::uint64_t> live;
  for (const auto& port : protected_ports) live[port] = 0;
  const auto grants = engine_.active_grants();
  for (const auto& grant : grants) {
    for (const auto& spec : grant.ports) {
      for (const auto protocol : core::expand(spec.protocol)) {
        if (const auto found = live.find({protocol, spec.number}); found != live.end()) {
          ++found->second;
        }
      }
    }
  }
  Family live_grants{"jitd_live_grants",
                     "Grants in force now that cover the protected port (a grant of several "
                     "ports counts on each).",
                     Type::gauge,
                     {},
                     {}};
  for (const auto& [port, count] : live) {
    live_grants.samples.push_back({port_labels(port), static_cast<double>(count)});
  }
  families.push_back(std::move(live_grants));
  families.push_back({"jitd_grants",
                      "Grants in force now.",
                      Type::gauge,
                      {{{}, static_cast<double>(grants.size())}},
                      {}});
  families.push_back({"jitd_pending_grants",
                      "Requests waiting for an approver or for their start time.",
                      Type::gauge,
                      {{{}, static_cast<double>(engine_.pending_grants().size())}},
                      {}});

  const auto& decisions = activity_.decisions();
  families.push_back(counter("jitd_grants_issued_total",
                             "Grants that went live, at request or at a later (approved or "
                             "scheduled) start.",
                             static_cast<double>(decisions.issued)));
  families.push_back(counter("jitd_grants_expired_total", "Grants that reached their end.",
                             static_cast<double>(decisions.expired)));
  families.push_back(counter("jitd_grants_revoked_total",
                             "Grants ended before their end: by a user, by a policy reload, or "
                             "closed after a journal or kernel error.",
                             static_cast<double>(decisions.revoked)));
  families.push_back(counter("jitd_grant_requests_denied_total", "Requests an approver denied.",
                             static_cast<double>(decisions.denied)));
  families.push_back(counter("jitd_grant_requests_lapsed_total",
                             "Requests nobody approved within their approval timeout.",
                             static_cast<double>(decisions.approvals_lapsed)));
  Family refused{"jitd_grant_requests_refused_total",
                 "Grant requests refused, by reason (the API's error code).",
                 Type::counter,
                 {},
                 {}};
  for (const auto& [code, count] : decisions.refused) {
    refused.samples.push_back({{{"reason", code}}, static_cast<double>(count)});
  }
  families.push_back(std::move(refused));
  Family failures{"jitd_errors_total",
                  "Operations that failed on a journal (Io) or kernel (Kernel) error, by the "
                  "audit event that failed and its error code.",
                  Type::counter,
                  {},
                  {}};
  for (const auto& [key, count] : decisions.failures) {
    failures.samples.push_back(
        {{{"event", key.first}, {"code", key.second}}, static_cast<double>(count)});
  }
  families.push_back(std::move(failures));
  Family tamper{"jitd_tamper_repairs_total",
                "Changes by other tools to jitd's enforcement that jitd undid (restored) or "
                "tried to (failed).",
                Type::counter,
                {},
                {}};
  for (const auto& outcome : {"restored", "failed"}) {
    const auto found = decisions.tamper.find(outcome);
    tamper.samples.push_back(
        {{{"outcome", outcome}},
         static_cast<double>(found != decisions.tamper.end() ? found->second : 0)});
  }
  families.push_back(std::move(tamper));

  struct KernelFamily {
    const char* name;
    const char* help;
    CarriedCounter KernelTotals::*field;
  };
  static constexpr KernelFamily kernel_families[] = {
      {"jitd_dropped_packets_total",
       "Packets to the protected port that enforcement dropped (no grant or allow-list entry).",
       &KernelTotals::dropped_packets},
      {"jitd_dropped_connections_total",
       "Of the dropped packets, those that opened a new connection.",
       &KernelTotals::dropped_connections},
      {"jitd_admitted_connections_total", "New connections to the protected port a grant admitted.",
       &KernelTotals::admitted_connections},
      {"jitd_audit_would_drop_packets_total",
       "Packets a port in mode: audit accepted that enforcement would have dropped.",
       &KernelTotals::would_drop_packets},
  };
  Family last_access{"jitd_last_access_timestamp_seconds",
                     "Unix time of the kernel reading (every 10 s and at each scrape) that first "
                     "saw a new connection a grant admitted to the protected port.",
                     Type::gauge,
                     {},
                     {}};
  for (const auto& kernel_family : kernel_families) {
    Family family{kernel_family.name, kernel_family.help, Type::counter, {}, {}};
    for (const auto& port : protected_ports) {
      const auto found = activity_.ports().find(port);
      const auto total = found != activity_.ports().end()
                             ? (found->second.kernel.*kernel_family.field).total()
                             : 0;
      family.samples.push_back({port_labels(port), static_cast<double>(total)});
    }
    families.push_back(std::move(family));
  }
  for (const auto& port : protected_ports) {
    const auto found = activity_.ports().find(port);
    if (found == activity_.ports().end() || !found->second.last_access) continue;
    last_access.samples.push_back(
        {port_labels(port),
         std::chrono::duration<double>(found->second.last_access->time_since_epoch()).count()});
  }
  families.push_back(std::move(last_access));
  families.push_back(counter("jitd_kernel_read_failures_total",
                             "Readings of the kernel's per-port counters that failed (the "
                             "totals keep their last values meanwhile).",
                             static_cast<double>(kernel_read_failures_)));
  families.push_back(latency_.family(
      "jitd_api_request_duration_seconds",
      "API requests from their arrival to their answer being queued (a grant request includes "
      "its journal sync and kernel transaction), by method, route and status class."));
}

}  // namespace jitd::metrics
