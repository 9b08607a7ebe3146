#include "jitd/daemon/daemon.hpp"

#include <malloc.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <spdlog/spdlog.h>
#include <cerrno>
#include <cstring>

#include "jitd/config/last_valid.hpp"
#include "jitd/conntrack/listeners.hpp"
#include "jitd/conntrack/session_adoption.hpp"
#include "jitd/core/text.hpp"
#include "jitd/daemon/backends.hpp"
#include "jitd/sys/system_error.hpp"

namespace jitd::daemon {

namespace {

using namespace std::chrono_literals;

constexpr auto reload_settle_time = 200ms;  // editors and fleet tools write in several steps
// How long an audit record may wait for its sync: a burst of records (an expiry storm, a
// batch of grants) shares one, and a crash of jitd loses none of them, only a power loss could.
constexpr auto audit_sync_delay = 50ms;
// Between two passes of an expiry storm's records (128 each): 100,000 ends in about 4 s.
constexpr auto expiry_pass_interval = 5ms;
constexpr auto repair_coalesce_time = 2ms;  // one foreign transaction sends many events
// Retention is counted in days: an hourly prune keeps the history within an hour of it.
constexpr auto history_prune_interval = std::chrono::hours(1);
// How old a reading of other tables' rules a grant's warnings may come from.
constexpr auto firewall_advice_max_age = std::chrono::seconds(5);

// A failure here costs old sessions, never protection, so it is logged, not fatal.
void adopt_sessions(const std::vector<core::PortKey>& protected_ports, std::string_view when) {
  const auto adopted = conntrack::adopt_established_sessions(protected_ports);
  if (!adopted) {
    spdlog::warn("adopt established sessions ({}): {}", when, adopted.error().message);
    return;
  }
  if (adopted->adopted > 0 || adopted->failed > 0) {
    spdlog::info("adopted {} established session(s) to protected ports ({})", adopted->adopted,
                 when);
  }
  if (adopted->failed > 0) {
    spdlog::warn("{} established session(s) could not be adopted, first: {}", adopted->failed,
                 adopted->first_error);
  }
}

// Whether jitd's enforcement is in the kernel before this start installs it. Unknown counts as
// yes: adoption could then revive sessions the enforcement is cutting off.
bool enforcement_present(core::KernelBackend& backend) {
  const auto installed = backend.installed();
  if (!installed) {
    spdlog::warn("read the kernel's {} before install: {}", backend.where(),
                 installed.error().message);
    return true;
  }
  return *installed;
}

// The API's caps keep its own descriptors far below 1024, but systemd's default soft limit
// (1024) is no reason to fail an accept, a journal or a netlink socket under a flood: epoll has
// no FD_SETSIZE bound, so jitd may use every descriptor the hard limit allows.
void raise_open_file_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == limit.rlim_max) return;
  const auto soft = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    spdlog::warn("raise the open file limit from {}: {}", soft, std::strerror(errno));
  }
}

// The API's socket: jitd.socket's when systemd activated jitd (the .socket unit gives it its
// group and mode, so jitd needs no CAP_CHOWN, and it outlives a restart), else one jitd makes.
core::Result<api::ListenSocket> listen_socket(const config::MainConfig& settings,
                                              std::optional<gid_t> group) {
  const int passed = sd_listen_fds(/*unset_environment=*/1);
  if (passed < 0) return sys::fail_system(core::ErrorCode::io, "read LISTEN_FDS", -passed);
  if (passed > 1) {
    return core::fail(core::ErrorCode::invalid_argument,
                      "systemd passed " + std::to_string(passed) +
                          " sockets; jitd listens on one (jitd.socket, ListenStream=" +
                          settings.socket_path.string() + ")");
  }
  if (passed == 0) {
    return api::ListenSocket::create(settings.socket_path, group, settings.socket_mode);
  }
  auto adopted = api::ListenSocket::adopt(sys::UniqueFd(SD_LISTEN_FDS_START));
  if (!adopted) return adopted;
  const auto& path = adopted->path();
  // Protection first: a socket at another path is still served (refusing it would leave the
  // ports open at boot), but said loudly, since jitctl looks for socketPath.
  if (path != settings.socket_path) {
    spdlog::error(
        "socket from systemd listens on '{}', but socketPath is {}: serving on '{}'; "
        "make jitd.socket's ListenStream= and socketPath agree",
        path.string(), settings.socket_path.string(), path.string());
  }
  // Access is the socket unit's to set now; a mismatch with jitd.yaml is worth a warning.
  struct stat info {};
  if (::stat(path.c_str(), &info) == 0 &&
      ((info.st_mode & 07777) != settings.socket_mode || info.st_gid != group.value_or(0))) {
    spdlog::warn(
        "socket {} from systemd has mode {:04o} group {}, jitd.yaml says mode {:04o} group '{}': "
        "set SocketMode= and SocketGroup= in jitd.socket to match",
        path.string(), info.st_mode & 07777, info.st_gid, settings.socket_mode,
        settings.socket_group);
  }
  spdlog::info("socket activation: serving on {} passed by systemd", path.string());
  return adopted;
}

}  // namespace

core::Result<StartingPolicy> load_starting_policy(const config::MainConfig& settings) {
  StartingPolicy starting;
  auto files = config::load_policy_directory(settings.policy_directory, &starting.sources);
  if (files.ok()) {
    starting.enforced = std::move(files.value);
    return starting;
  }
  for (const auto& error : files.errors) {
    starting.status.file_errors.push_back(error.to_string());
    spdlog::error("{}", starting.status.file_errors.back());
  }
  starting.sources.clear();
  const auto copy_path = settings.state_directory / config::last_valid_policy_name;
  const auto invalid = "policy in " + settings.policy_directory.string() + " is invalid (" +
                       std::to_string(files.errors.size()) + " error(s))";
  auto copy = config::load_last_valid_policy(copy_path);
  if (!copy) return core::fail(copy.error().code, invalid + " and " + copy.error().message);
  if (!*copy) {
    return core::fail(core::ErrorCode::policy_invalid,
                      invalid + " and no valid policy was ever seen here (" + copy_path.string() +
                          " does not exist): jitd starts only with a valid policy");
  }
  auto parsed = config::parse_policy_sources((*copy)->directory, (*copy)->sources);
  if (!parsed.ok()) {
    return core::fail(core::ErrorCode::policy_invalid, invalid + " and so is its last valid copy " +
                                                           copy_path.string() + ": " +
                                                           parsed.errors.front().to_string());
  }
  spdlog::critical(
      "{}: enforcing the last valid policy instead, saved {} ({}); fix the files and jitd "
      "takes them at once",
      invalid, (*copy)->saved_utc, copy_path.string());
  starting.enforced = std::move(parsed.value);
  starting.status.last_valid_copy = true;
  starting.status.saved_utc = (*copy)->saved_utc;
  return starting;
}

Daemon::Daemon(config::MainConfig settings, std::unique_ptr<core::KernelBackend> backend,
               std::unique_ptr<state::AuditLog> audit, std::unique_ptr<state::FileJournal> journal,
               StartingPolicy policy)
    : settings_(std::move(settings)),
      backend_(std::move(backend)),
      audit_(std::move(audit)),
      journal_(std::move(journal)),
      engine_(*backend_, *journal_, audit_sinks_, clock_, random_grant_id,
              std::move(policy.enforced)),
      metrics_(settings_, engine_, *backend_, clock_),
      firewall_advice_(clock_, settings_.nft_table, firewall_advice_max_age),
      policy_status_(std::move(policy.status)),
      starting_sources_(std::move(policy.sources)),
      router_(
          engine_, clock_,
          [this](const core::Caller& caller) { return reload("API by " + caller.name); },
          audit_.get(), &policy_status_,
          [this] {
            return api::EnforcementStatus{std::string(backend_->name()), backend_->where(),
                                          backend_->protection(),        backend_->features(),
                                          backend_->counters(),          backend_->would_block()};
          }) {
  audit_sinks_.add(*audit_);
  if (settings_.audit_journal) audit_sinks_.add(audit_journal_);
  add_notifier();
  audit_sinks_.add(metrics_.recorder());
  router_.set_metrics_reader([this] { return metrics_.scrape(); });
  router_.set_activity_reader([this] { return metrics_.activity(); });
  engine_.set_session_cutter(&session_cutter_);
  router_.set_host_name(host_name());
  router_.set_firewall_advisor(api::FirewallAdvisor{
      [this]() -> core::Result<nlohmann::json> {
        auto report = firewall_advice_.inspect(engine_.policy().protected_ports());
        if (!report) return tl::unexpected(report.error());
        return doctor_json(*report);
      },
      [this](const std::vector<core::PortSpec>& ports) {
        return firewall_advice_.warnings(engine_.policy().protected_ports(), ports);
      }});
  router_.set_listener_source(conntrack::list_listeners);
}

int Daemon::run(const state::JournalReplay& replay, const std::string& boot_id) {
  if (auto started = start(replay, boot_id); !started) {
    spdlog::critical("{}", started.error().message);
    return 1;
  }
  // The start read the whole journal and built the table in memory; give those pages back
  // (glibc keeps freed memory otherwise: hundreds of MiB after a start with 100,000 grants).
  malloc_trim(0);
  record("start", "ok", "listening on " + settings_.socket_path.string());
  spdlog::info("listening on {}", settings_.socket_path.string());
  sd_notify(0, "READY=1");
  const int loop = loop_->run();
  sd_notify(0, "STOPPING=1");
  // The table and its live grants stay: protection and access outlive the daemon.
  record("stop", "ok", stop_reason_);
  sync_audit();
  metrics_.save();
  spdlog::info("stopping ({}); {} and live grants stay in force", stop_reason_, backend_->where());
  return loop < 0 ? 1 : 0;
}

core::Result<void> Daemon::start(const state::JournalReplay& replay, const std::string& boot_id) {
  // The socket first (its directory was made by main): a socket that cannot be bound must stop
  // the start before the table is installed, or the ports would be closed with no API to open
  // them. Requests wait in the backlog until the loop runs.
  raise_open_file_limit();
  metrics_.load();  // before the first event it counts
  const auto group = lookup_group(settings_.socket_group);
  auto listener = listen_socket(settings_, group);
  if (!listener) return tl::unexpected(listener.error());
  api::ServerOptions options{settings_.socket_path, group, {}, {}};
  options.observe = [this](std::string_view method, std::string_view path, unsigned status,
                           std::chrono::nanoseconds took) {
    metrics_.observe_request(method, path, status, took);
  };
  auto server = api::Server::start(options, router_, std::move(*listener));
  if (!server) return tl::unexpected(server.error());
  server_ = std::move(*server);

  for (const auto& dropped : replay.dropped) {
    spdlog::warn("journal damaged: {}", dropped);
    record("journal", "damaged", dropped);
  }
  if (!replay.damaged_copy.empty()) {
    spdlog::warn("journal damaged: the file as it was is kept in {}", replay.damaged_copy.string());
  }
  open_history();
  const auto restored = engine_.restore(replay.live, boot_id);
  spdlog::info("journal: {} live grant(s) restored, {} ended while jitd was not running",
               restored.restored, restored.expired);

  auto monitor = backend_->watch();  // before install: no change goes unseen
  if (!monitor) {
    return core::fail(monitor.error().code,
                      "watch for changes to " + backend_->where() + ": " + monitor.error().message);
  }
  monitor_ = std::move(*monitor);

  // Sessions are adopted only into a table that did not exist: once it exists, an established
  // socket without a conntrack entry is one the table is dropping (its entry was flushed or
  // timed out and no grant covers it), and adopting it would revive a session jitd cut off.
  const bool adopt = !enforcement_present(*backend_);
  const auto& protected_ports = engine_.policy().protected_ports();
  if (adopt) {
    adopt_sessions(protected_ports, "before install");
  } else {
    spdlog::info("{} is already in the kernel: not adopting sessions", backend_->where());
  }
  const auto installing = std::chrono::steady_clock::now();
  // What the enforcement left in force counted while jitd was down, then its restart at zero.
  if (!adopt) metrics_.read_kernel();
  if (auto installed = engine_.install(); !installed) {
    return core::fail(installed.error().code, "install enforcement: " + installed.error().message);
  }
  metrics_.read_kernel();
  const auto install_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - installing)
                              .count();
  if (adopt) adopt_sessions(protected_ports, "after install");
  // Only now, so that protection never lapses while the host switches backends.
  if (auto removed = remove_other_backend(settings_); !removed) {
    spdlog::error(
        "remove the other backend's enforcement after a switch of backend: {}; it "
        "may drop what this one admits",
        removed.error().message);
  } else if (!removed->empty()) {
    spdlog::warn("backend switched to {}: removed the old {}", backend_->name(), *removed);
    record("backend", "switched", "removed the old " + *removed);
  }
  spdlog::info("{} installed in {} ms ({} backend): {} protected port(s), {}", backend_->where(),
               install_ms, backend_->name(), protected_ports.size(), backend_->protection());
  log_firewall_conflicts();
  if (policy_status_.last_valid_copy) {
    record("policy", "last-valid-copy",
           "policy files invalid, enforcing the copy saved " + policy_status_.saved_utc + ": " +
               core::join(policy_status_.file_errors, "; "));
  } else {
    save_last_valid(std::exchange(starting_sources_, {}));
  }

  return watch_events();
}

core::Result<void> Daemon::watch_events() {
  auto loop = EventLoop::create();
  if (!loop) return tl::unexpected(loop.error());
  loop_ = std::move(*loop);

  for (const auto& [signal, name] : {std::pair{SIGTERM, "SIGTERM"}, std::pair{SIGINT, "SIGINT"}}) {
    auto added = loop_->on_signal(signal, name, [this](const signalfd_siginfo& info) {
      stop_reason_ = strsignal(static_cast<int>(info.ssi_signo));
      loop_->exit(0);
    });
    if (!added) return added;
  }
  if (notifier_) {
    notify_loop_ = std::make_unique<NotifyLoop>(*loop_);
    if (auto started = notifier_->start(*notify_loop_); !started) return started;
  }
  if (auto added = loop_->on_signal(SIGHUP, "SIGHUP (reload)",
                                    [this](const signalfd_siginfo&) { reload("SIGHUP"); });
      !added) {
    return added;
  }

  auto timer = [this](std::unique_ptr<Timer>& slot, const char* description,
                      EventLoop::TimerHandler handler) -> core::Result<void> {
    auto made = loop_->make_timer(description, std::move(handler));
    if (!made) return tl::unexpected(made.error());
    slot = std::move(*made);
    return {};
  };
  for (auto made :
       {timer(http_timer_, "HTTP timeouts", [this] { serve_http(); }),
        timer(reload_timer_, "policy reload", [this] { reload("policy directory changed"); }),
        timer(repair_timer_, "table repair", [this] { repair(); }),
        timer(housekeeping_timer_, "housekeeping", [this] { housekeeping(); }),
        timer(audit_sync_timer_, "audit log sync", [this] { sync_audit(); })}) {
    if (!made) return made;
  }
  // Whatever wrote audit records (a request, an expiry, a repair, a reload) gets them synced.
  if (auto added =
          loop_->after_each_event("audit log sync scheduling", [this] { sync_audit_soon(); });
      !added) {
    return added;
  }
  reload_settle_ = std::make_unique<Coalescer>(*reload_timer_, reload_settle_time);
  repair_coalesce_ = std::make_unique<Coalescer>(*repair_timer_, repair_coalesce_time);

  sys::UniqueFd inotify(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify) return sys::fail_system(core::ErrorCode::io, "inotify_init1", errno);
  inotify_fd_ = inotify.get();
  // Not fatal: the table is in, and jitd must serve the API. A directory that is missing now
  // (a fleet tool between two renames) is looked for again by housekeeping.
  if (!watch_policy_directory()) {
    spdlog::warn("watch policy directory {}: {}; jitd looks for it again every second",
                 settings_.policy_directory.string(), std::strerror(errno));
  }
  if (auto added = loop_->on_io(std::move(inotify), EPOLLIN, "policy directory",
                                [this](std::uint32_t) { on_policy_directory_event(); });
      !added) {
    return added;
  }
  if (auto added = loop_->on_io(monitor_->fd(), EPOLLIN, "ruleset events",
                                [this](std::uint32_t) { on_ruleset_event(); });
      !added) {
    return added;
  }
  // Two sources, one handler: run() accepts and serves, whichever of the two woke the loop.
  for (const auto& [fd, description] : {std::pair{server_->epoll_fd(), "HTTP API"},
                                        std::pair{server_->listener_fd(), "HTTP API listener"}}) {
    if (auto added =
            loop_->on_io(fd, EPOLLIN, description, [this](std::uint32_t) { serve_http(); });
        !added) {
      return added;
    }
  }
  // Files fixed while jitd started (read before this watch existed) are taken now.
  if (policy_status_.last_valid_copy) reload_settle_->add();
  auto watchdog = loop_->enable_watchdog();
  if (!watchdog) return tl::unexpected(watchdog.error());
  if (*watchdog) spdlog::info("systemd watchdog: pinged from the event loop");
  if (auto attached = metrics_.attach(*loop_); !attached) return attached;
  housekeeping_timer_->arm(0us);
  return {};
}

void Daemon::save_last_valid(std::vector<config::PolicySource> sources) {
  const auto path = settings_.state_directory / config::last_valid_policy_name;
  auto saved = config::save_last_valid_policy(
      path, {settings_.policy_directory, core::format_utc(clock_.now()), std::move(sources)});
  // The policy is in force either way; only a later start with broken files would miss it.
  if (!saved)
    spdlog::warn("keep the last valid policy in {}: {}", path.string(), saved.error().message);
}

void Daemon::record(std::string event, std::string outcome, std::string reason) {
  core::AuditEvent audit;
  audit.time = clock_.now();
  audit.event = std::move(event);
  audit.outcome = std::move(outcome);
  audit.user = "jitd";
  audit.reason = std::move(reason);
  audit_sinks_.record(audit);
}

void Daemon::add_notifier() {
  if (settings_.webhooks.empty()) return;
  auto notifier =
      notify::Notifier::create(configured_webhooks(settings_.webhooks), host_name(), clock_);
  if (!notifier) {
    spdlog::error("{}: no webhook is sent", notifier.error().message);
    return;
  }
  notifier_ = std::move(*notifier);
  audit_sinks_.add(*notifier_);
  router_.add_status_section("webhooks", [this] { return webhooks_json(notifier_->stats()); });
  metrics_.metrics().add_collector([this](std::vector<metrics::Family>& families) {
    append_webhook_families(notifier_->stats(), families);
  });
}

api::ReloadOutcome Daemon::reload(const std::string& trigger) {
  api::ReloadOutcome outcome;
  if (notifier_) reread_webhook_secrets(settings_.webhooks, *notifier_);
  // A directory swapped in while the old watch died is watched from here on.
  if (!policy_watched_ && watch_policy_directory()) {
    spdlog::info("policy directory {} is watched again", settings_.policy_directory.string());
  }
  std::vector<config::PolicySource> sources;
  auto loaded = config::load_policy_directory(settings_.policy_directory, &sources);
  if (!loaded.ok()) {
    for (const auto& error : loaded.errors) {
      outcome.errors.push_back(error.to_string());
      spdlog::error("policy reload ({}): {}", trigger, outcome.errors.back());
    }
    spdlog::error("policy reload ({}) refused: the {} stays in force", trigger,
                  policy_status_.last_valid_copy ? "last valid copy" : "previous policy");
    record("reload", "refused", trigger + ": " + core::join(outcome.errors, "; "));
    policy_status_.file_errors = outcome.errors;
    return outcome;
  }
  if (policy_status_.last_valid_copy) {
    spdlog::info("policy files are valid again: the last valid copy is no longer in force");
  }
  metrics_.read_kernel();  // the re-install restarts the kernel's counters
  auto change = engine_.replace_policy(std::move(loaded.value));
  metrics_.read_kernel();
  // In force in jitd from here, also when the kernel refused it (retried until installed):
  // it is what a start with broken files must fall back to.
  policy_status_ = {};
  save_last_valid(std::move(sources));
  if (!change) {
    outcome.previous_in_force = false;
    outcome.errors.push_back(
        "the new policy is in force in jitd, but the kernel refused its "
        "ruleset (retrying): " +
        change.error().message);
    spdlog::error("policy reload ({}): {}", trigger, change.error().message);
    record("reload", "failed", trigger + ": " + change.error().message);
    return outcome;
  }
  outcome.applied = true;
  outcome.change = *change;

  const auto summary = fmt::format(
      "{}: {} protected port(s); grants revoked {}, narrowed {}, "
      "clamped {}",
      trigger, engine_.policy().protected_ports().size(), change->revoked, change->narrowed,
      change->clamped);
  spdlog::info("policy reloaded ({})", summary);
  record("reload", "applied", summary);
  return outcome;
}

bool Daemon::watch_policy_directory() {
  policy_watched_ =
      inotify_add_watch(inotify_fd_, settings_.policy_directory.c_str(),
                        IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE |
                            IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF) >= 0;
  return policy_watched_;
}

void Daemon::on_policy_directory_event() {
  alignas(inotify_event) char buffer[4096];
  bool directory_replaced = false;
  ssize_t length = 0;
  while ((length = read(inotify_fd_, buffer, sizeof buffer)) > 0) {
    for (ssize_t offset = 0; offset < length;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer + offset);
      directory_replaced |= (event->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) != 0;
      offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
    }
  }
  // A fleet tool may swap the whole directory: the old watch died with the old inode. Between
  // its two renames there may be no directory at all; the settled reload looks again.
  if (directory_replaced && !watch_policy_directory()) {
    spdlog::warn(
        "policy directory {} is gone for now: the current policy stays in force; "
        "jitd looks again at the next reload",
        settings_.policy_directory.string());
  }
  reload_settle_->add();
}

void Daemon::on_ruleset_event() {
  auto events = monitor_->drain();
  std::string foreign;
  if (!events) {
    foreign = "ruleset events unreadable: " + events.error().message;
  } else {
    foreign = std::move(events->foreign);
    if (events->other_tables) firewall_advice_.forget();
    if (!events->lost.empty() && events_lost_.empty()) events_lost_ = std::move(events->lost);
  }
  if (foreign.empty() && events_lost_.empty()) return;
  if (repair_coalesce_->add()) tamper_since_ = std::chrono::steady_clock::now();
  if (!foreign.empty() && tamper_detected_.empty()) tamper_detected_ = std::move(foreign);
}

void Daemon::repair() {
  auto what = std::exchange(tamper_detected_, {});
  const auto lost = std::exchange(events_lost_, {});
  if (what.empty()) {
    // Only lost events: read the table back; re-install only if it differs. A blind re-install
    // of a large table would overrun the queue again and loop.
    const auto intact = engine_.kernel_intact();
    if (intact && *intact) {
      spdlog::info("change watch: {}; {} read back and intact", lost, backend_->where());
      return;
    }
    what = lost + (intact ? "; the table read back differs"
                          : "; the table could not be read back: " + intact.error().message);
  }
  metrics_.read_kernel();  // the re-install restarts the kernel's counters
  auto repaired = engine_.repair(what);
  metrics_.read_kernel();
  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - tamper_since_);
  if (repaired) {
    spdlog::warn("{} changed by another tool ({}); restored in {} us", backend_->where(), what,
                 took.count());
  } else {
    spdlog::error("{} changed by another tool ({}); restore failed: {}", backend_->where(), what,
                  repaired.error().message);
  }
}

void Daemon::housekeeping() {
  // Armed first: should anything below throw, the next pass still comes.
  housekeeping_timer_->arm(housekeeping_interval);
  if (!policy_watched_ && watch_policy_directory()) {
    spdlog::info("policy directory {} is back: watched and read again",
                 settings_.policy_directory.string());
    reload_settle_->add();
  }
  engine_.expire_due();
  if (clock_.boot_now() >= next_history_prune_) prune_history();
  const auto retried = engine_.retry_pending();
  if (retried.journal) {
    spdlog::error("journal still refuses an end record: {}", retried.journal->message);
  }
  if (retried.kernel) {
    spdlog::error("kernel still refuses jitd's table: {}", retried.kernel->message);
  }
  const auto next = engine_.next_expiry();
  const auto now = clock_.boot_now();
  const bool backlog = next && *next <= now;
  // Not between two passes of an expiry storm: compaction rewrites every live record, and
  // after the storm few are left.
  if (journal_->compaction_due() && !backlog) {
    if (auto compacted = journal_->compact(); !compacted) {
      spdlog::warn("compact journal: {}; the journal stays valid, retried later",
                   compacted.error().message);
    }
  }
  // An expiry storm's records are written at a steady pace rather than in one burst: a burst
  // of audit lines is tens of MiB the disk must write while the next journal sync waits.
  housekeeping_timer_->arm(backlog ? expiry_pass_interval : housekeeping_delay(next, now));
}

void Daemon::open_history() {
  const auto path = settings_.state_directory / "history.jsonl";
  auto opened = state::FileGrantHistory::open(
      path.string(), {settings_.history_retention, settings_.history_max_bytes});
  if (!opened) {
    spdlog::error("grant history {}: {}; ended grants are kept in the audit log only",
                  path.string(), opened.error().message);
    return;
  }
  history_ = std::move(*opened);
  engine_.set_history(history_.get());
  prune_history();
}

void Daemon::prune_history() {
  next_history_prune_ = clock_.boot_now() + history_prune_interval;
  // Rotated audit logs are pruned at each rotation too; this covers a log that stopped growing.
  if (auto pruned = audit_->prune(clock_.now()); !pruned) {
    spdlog::warn("prune rotated audit logs: {}; retried in an hour", pruned.error().message);
  }
  if (!history_) return;
  auto pruned = history_->prune(clock_.now());
  if (!pruned) {
    spdlog::warn("prune grant history: {}; retried in an hour", pruned.error().message);
  } else if (*pruned > 0) {
    spdlog::info("grant history: {} grant(s) past retention or the size bound dropped", *pruned);
  }
}

void Daemon::log_firewall_conflicts() {
  auto report = firewall_advice_.inspect(engine_.policy().protected_ports());
  if (!report) {
    spdlog::warn("check other firewalls' rules: {}", report.error().message);
    return;
  }
  for (const auto& conflict : report->conflicts) {
    const bool drops = conflict.kind == nft::FirewallConflict::Kind::drops;
    spdlog::warn("{} {} {} in family {} table {} chain {} ({}): {}",
                 conflict.certain ? "a rule" : "a rule possibly",
                 drops ? "drops a protected port jitd may grant:"
                       : "accepts a protected port, which jitd's drop now refuses:",
                 conflict.rule, conflict.family, conflict.table, conflict.chain,
                 conflict.certain ? "certain" : "possible", conflict.advice);
  }
  if (!report->legacy_iptables_tables.empty()) {
    spdlog::warn("legacy iptables tables are loaded ({}): jitd cannot judge their rules",
                 core::join(report->legacy_iptables_tables));
  }
}

void Daemon::sync_audit_soon() {
  if (audit_->unsynced() && !audit_sync_timer_->armed()) audit_sync_timer_->arm(audit_sync_delay);
}

void Daemon::sync_audit() {
  if (auto synced = audit_->sync(); !synced) {
    // The records are written (a crash of jitd keeps them); only a power loss could lose them.
    spdlog::error("{}; retrying", synced.error().message);
    sync_audit_soon();
  }
}

void Daemon::serve_http() {
  // Armed first: should run() throw, stalled connections are still timed out.
  http_timer_->arm(housekeeping_interval);
  server_->run([this] { engine_.commit(); });
  // Re-armed after every run: work left on a connection does not wake the descriptor again.
  if (const auto next = server_->next_run()) {
    http_timer_->arm(*next);
  } else {
    http_timer_->disarm();
  }
}

}  // namespace jitd::daemon
