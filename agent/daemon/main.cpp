// jitd: loads config and policy, restores journaled grants, installs enforcement, serves
// the API, and runs one sd-event loop for signals, policy changes, tampering and expiries.
#include <grp.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <spdlog/spdlog.h>
#include <vector>

#include "jitd/api/router.hpp"
#include "jitd/api/server.hpp"
#include "jitd/config/config.hpp"
#include "jitd/core/engine.hpp"
#include "jitd/core/failpoint.hpp"
#include "jitd/sys/unique_fd.hpp"
#include "jitd/daemon/failpoints.hpp"
#include "jitd/conntrack/session_adoption.hpp"
#include "jitd/nft/nft_backend.hpp"
#include "jitd/state/audit_log.hpp"
#include "jitd/state/file_journal.hpp"

namespace {

using namespace jitd;
using namespace std::chrono_literals;

constexpr auto housekeeping_interval = 1s;  // expiry records and kernel retries, at the latest
constexpr auto reload_settle_time = 200ms;  // editors and fleet tools write in several steps
constexpr auto repair_coalesce_time = 2ms;  // one foreign transaction sends many events
// sd-event's default timer accuracy (0) is 250 ms; a repair must not wait that long.
constexpr uint64_t timer_accuracy_us = 1000;

class SystemClock final : public core::Clock {
 public:
  [[nodiscard]] core::TimePoint now() const override {
    return std::chrono::time_point_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now());
  }
  [[nodiscard]] core::Deadline boot_now() const override {
    timespec boot{};
    clock_gettime(CLOCK_BOOTTIME, &boot);
    return core::Deadline{std::chrono::seconds(boot.tv_sec) +
                          std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::nanoseconds(boot.tv_nsec))};
  }
};

// 64 random bits in hex: ids must not be guessable from one another.
std::string random_grant_id() {
  unsigned char bytes[8];
  while (getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) {
  }
  static constexpr char digits[] = "0123456789abcdef";
  std::string id;
  for (const auto byte : bytes) {
    id += digits[byte >> 4];
    id += digits[byte & 0xf];
  }
  return id;
}

std::string current_boot_id() {
  std::ifstream file("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(file, id);
  return id;
}

void print_errors(const std::vector<config::Diagnostic>& errors) {
  for (const auto& error : errors) std::cerr << error.to_string() << "\n";
}

std::optional<gid_t> lookup_group(const std::string& name) {
  if (name.empty()) return std::nullopt;
  std::vector<char> buffer(16384);
  group entry{};
  group* found = nullptr;
  if (getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 ||
      found == nullptr) {
    spdlog::warn("socket group '{}' does not exist: only root may request and revoke", name);
    return std::nullopt;
  }
  return found->gr_gid;
}

core::Result<void> make_directory(const std::filesystem::path& path, mode_t mode) {
  std::error_code error;
  std::filesystem::create_directories(path, error);
  if (error) {
    return core::fail(core::ErrorCode::io,
                      "create directory " + path.string() + ": " + error.message(), error.value());
  }
  if (chmod(path.c_str(), mode) != 0) {
    return core::fail(core::ErrorCode::io,
                      "chmod directory " + path.string() + ": " + std::strerror(errno), errno);
  }
  return {};
}

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

struct EventDeleter {
  void operator()(sd_event* event) const { sd_event_unref(event); }
  void operator()(sd_event_source* source) const { sd_event_source_unref(source); }
};
using EventLoop = std::unique_ptr<sd_event, EventDeleter>;
using EventSource = std::unique_ptr<sd_event_source, EventDeleter>;

// Everything the running daemon owns, and the handlers of its event loop.
class Daemon {
 public:
  Daemon(config::MainConfig settings, std::unique_ptr<nft::NftBackend> backend,
         std::unique_ptr<state::AuditLog> audit, std::unique_ptr<state::FileJournal> journal,
         core::Policy policy)
      : settings_(std::move(settings)),
        backend_(std::move(backend)),
        audit_(std::move(audit)),
        journal_(std::move(journal)),
        engine_(*backend_, *journal_, *audit_, clock_, random_grant_id, std::move(policy)),
        router_(engine_, engine_mutex_, clock_,
                [this](const core::Caller& caller) { return reload("API by " + caller.name); }) {}

  int run(const state::JournalReplay& replay, const std::string& boot_id) {
    for (const auto& dropped : replay.dropped) {
      spdlog::warn("journal damaged: {}", dropped);
      record("journal", "damaged", dropped);
    }
    if (!replay.damaged_copy.empty()) {
      spdlog::warn("journal damaged: the file as it was is kept in {}",
                   replay.damaged_copy.string());
    }
    const auto restored = engine_.restore(replay.live, boot_id);
    spdlog::info("journal: {} live grant(s) restored, {} ended while jitd was not running",
                 restored.restored, restored.expired);

    auto monitor = backend_->open_monitor();  // before install: no change goes unseen
    if (!monitor) return fatal("watch ruleset events: " + monitor.error().message);
    monitor_ = std::move(*monitor);

    adopt_sessions(engine_.policy().protected_ports(), "before install");
    if (auto installed = engine_.install(); !installed) {
      return fatal("install enforcement: " + installed.error().message);
    }
    adopt_sessions(engine_.policy().protected_ports(), "after install");
    spdlog::info("table inet {} installed: {} protected port(s), {} ({})", settings_.nft_table,
                 engine_.policy().protected_ports().size(),
                 backend_->owns_table() ? "owned by jitd and persistent (owner + persist flags)"
                                        : "not owned (self-healing only)",
                 settings_.claim_table_ownership ? "kernel probed" : "ownership off");

    if (auto made = make_directory(settings_.socket_path.parent_path(), 0755); !made) {
      return fatal(made.error().message);
    }
    auto server = api::Server::start(
        api::ServerOptions{settings_.socket_path, lookup_group(settings_.socket_group)}, router_);
    if (!server) return fatal(server.error().message);
    server_ = std::move(*server);
    if (auto armed = arm_event_loop(); !armed) return fatal(armed.error().message);

    record("start", "ok", "listening on " + settings_.socket_path.string());
    spdlog::info("listening on {}", settings_.socket_path.string());
    sd_notify(0, "READY=1");
    const int loop = sd_event_loop(loop_.get());
    sd_notify(0, "STOPPING=1");
    server_.reset();
    // The table and its live grants stay: protection and access outlive the daemon.
    record("stop", "ok", stop_reason_);
    spdlog::info("stopping ({}); table inet {} and live grants stay in force", stop_reason_,
                 settings_.nft_table);
    return loop < 0 ? 1 : 0;
  }

 private:
  int fatal(const std::string& message) {
    spdlog::critical("{}", message);
    return 1;
  }

  void record(std::string event, std::string outcome, std::string reason) {
    core::AuditEvent audit;
    audit.time = clock_.now();
    audit.event = std::move(event);
    audit.outcome = std::move(outcome);
    audit.user = "jitd";
    audit.reason = std::move(reason);
    audit_->record(audit);
  }

  api::ReloadOutcome reload(const std::string& trigger) {
    // Reloads come from the HTTP thread and the event loop; reading and applying under one
    // lock keeps an older read from being applied after a newer one.
    std::lock_guard reloading(reload_mutex_);
    api::ReloadOutcome outcome;
    auto loaded = config::load_policy_directory(settings_.policy_directory);
    if (!loaded.ok()) {
      std::string joined;
      for (const auto& error : loaded.errors) {
        outcome.errors.push_back(error.to_string());
        spdlog::error("policy reload ({}): {}", trigger, error.to_string());
        joined += (joined.empty() ? "" : "; ") + error.to_string();
      }
      spdlog::error("policy reload ({}) refused: the previous policy stays in force", trigger);
      record("reload", "refused", trigger + ": " + joined);
      return outcome;
    }
    std::lock_guard lock(engine_mutex_);
    auto change = engine_.replace_policy(std::move(loaded.value));
    if (!change) {
      outcome.previous_in_force = false;
      outcome.errors.push_back("the new policy is in force in jitd, but the kernel refused its "
                               "ruleset (retrying): " + change.error().message);
      spdlog::error("policy reload ({}): {}", trigger, change.error().message);
      record("reload", "failed", trigger + ": " + change.error().message);
      return outcome;
    }
    outcome.applied = true;
    outcome.change = *change;
    const auto summary = fmt::format("{}: {} protected port(s); grants revoked {}, narrowed {}, "
                                     "clamped {}",
                                     trigger, engine_.policy().protected_ports().size(),
                                     change->revoked, change->narrowed, change->clamped);
    spdlog::info("policy reloaded ({})", summary);
    record("reload", "applied", summary);
    return outcome;
  }

  core::Result<void> arm_event_loop() {
    sd_event* loop = nullptr;
    if (const int error = sd_event_new(&loop); error < 0) return event_error("create", error);
    loop_.reset(loop);
    const auto add = [&](int result, const char* what) -> core::Result<void> {
      if (result < 0) return event_error(what, result);
      return {};
    };
    for (const int signal : {SIGTERM, SIGINT}) {
      if (auto added = add(sd_event_add_signal(loop, nullptr, signal, &Daemon::on_stop, this),
                           "watch SIGTERM/SIGINT");
          !added) {
        return added;
      }
    }
    if (auto added = add(sd_event_add_signal(loop, nullptr, SIGHUP, &Daemon::on_hangup, this),
                         "watch SIGHUP");
        !added) {
      return added;
    }
    inotify_.reset(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (!inotify_ || watch_policy_directory() < 0) {
      return core::fail(core::ErrorCode::io, "watch policy directory " +
                                                 settings_.policy_directory.string() + ": " +
                                                 std::strerror(errno), errno);
    }
    if (auto added = add(sd_event_add_io(loop, nullptr, inotify_.get(), EPOLLIN,
                                         &Daemon::on_policy_directory, this),
                         "watch policy directory");
        !added) {
      return added;
    }
    if (auto added = add(sd_event_add_io(loop, nullptr, monitor_->fd(), EPOLLIN,
                                         &Daemon::on_ruleset_event, this),
                         "watch ruleset events");
        !added) {
      return added;
    }
    sd_event_source* source = nullptr;
    if (auto added = add(sd_event_add_time_relative(loop, &source, CLOCK_BOOTTIME, 0,
                                                    timer_accuracy_us, &Daemon::on_housekeeping,
                                                    this),
                         "add housekeeping timer");
        !added) {
      return added;
    }
    housekeeping_.reset(source);
    return {};
  }

  static core::Result<void> event_error(const char* what, int negative_errno) {
    return core::fail(core::ErrorCode::io,
                      std::string("event loop: ") + what + ": " + std::strerror(-negative_errno),
                      -negative_errno);
  }

  // A one-shot timer `delay` from now, unless one is already pending in `slot`.
  void defer(EventSource& slot, std::chrono::milliseconds delay,
             sd_event_time_handler_t handler) {
    if (slot) {
      int enabled = SD_EVENT_OFF;
      sd_event_source_get_enabled(slot.get(), &enabled);
      if (enabled != SD_EVENT_OFF) return;
      slot.reset();
    }
    sd_event_source* source = nullptr;
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(delay).count();
    if (sd_event_add_time_relative(loop_.get(), &source, CLOCK_BOOTTIME,
                                   static_cast<uint64_t>(micros), timer_accuracy_us, handler,
                                   this) >= 0) {
      slot.reset(source);
    }
  }

  static int on_stop(sd_event_source* source, const signalfd_siginfo* info, void* self) {
    static_cast<Daemon*>(self)->stop_reason_ = strsignal(static_cast<int>(info->ssi_signo));
    return sd_event_exit(sd_event_source_get_event(source), 0);
  }

  static int on_hangup(sd_event_source*, const signalfd_siginfo*, void* self) {
    static_cast<Daemon*>(self)->reload("SIGHUP");
    return 0;
  }

  static int on_policy_directory(sd_event_source*, int fd, uint32_t, void* self) {
    auto* daemon = static_cast<Daemon*>(self);
    alignas(inotify_event) char buffer[4096];
    bool directory_replaced = false;
    ssize_t length = 0;
    while ((length = read(fd, buffer, sizeof buffer)) > 0) {
      for (ssize_t offset = 0; offset < length;) {
        const auto* event = reinterpret_cast<const inotify_event*>(buffer + offset);
        directory_replaced |= (event->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) != 0;
        offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
      }
    }
    // A fleet tool may swap the whole directory: the old watch died with the old inode.
    if (directory_replaced && daemon->watch_policy_directory() < 0) {
      spdlog::error("policy directory {} is gone: the current policy stays in force until it "
                    "is back and jitd gets SIGHUP or POST /v1/policy/reload",
                    daemon->settings_.policy_directory.string());
    }
    daemon->defer(daemon->reload_timer_, reload_settle_time, &Daemon::on_reload_timer);
    return 0;
  }

  int watch_policy_directory() {
    return inotify_add_watch(inotify_.get(), settings_.policy_directory.c_str(),
                             IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE |
                                 IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF);
  }

  static int on_reload_timer(sd_event_source*, uint64_t, void* self) {
    auto* daemon = static_cast<Daemon*>(self);
    daemon->reload("policy directory changed");
    return 0;
  }

  static int on_ruleset_event(sd_event_source*, int, uint32_t, void* self) {
    auto* daemon = static_cast<Daemon*>(self);
    auto foreign = daemon->monitor_->drain();
    const std::string what = foreign ? *foreign : "ruleset events unreadable: " + foreign.error().message;
    if (what.empty()) return 0;
    if (daemon->tamper_detected_.empty()) {
      daemon->tamper_detected_ = what;
      daemon->tamper_since_ = std::chrono::steady_clock::now();
    }
    daemon->defer(daemon->repair_timer_, repair_coalesce_time, &Daemon::on_repair_timer);
    return 0;
  }

  static int on_repair_timer(sd_event_source*, uint64_t, void* self) {
    auto* daemon = static_cast<Daemon*>(self);
    const auto what = std::exchange(daemon->tamper_detected_, {});
    std::lock_guard lock(daemon->engine_mutex_);
    auto repaired = daemon->engine_.repair(what);
    const auto took = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - daemon->tamper_since_);
    if (repaired) {
      spdlog::warn("table inet {} changed by another tool ({}); restored in {} us",
                   daemon->settings_.nft_table, what, took.count());
    } else {
      spdlog::error("table inet {} changed by another tool ({}); restore failed: {}",
                    daemon->settings_.nft_table, what, repaired.error().message);
    }
    return 0;
  }

  static int on_housekeeping(sd_event_source* source, uint64_t, void* self) {
    auto* daemon = static_cast<Daemon*>(self);
    auto next = std::chrono::milliseconds(housekeeping_interval);
    {
      std::lock_guard lock(daemon->engine_mutex_);
      daemon->engine_.expire_due();
      if (auto retried = daemon->engine_.retry_pending(); !retried) {
        spdlog::error("kernel still refuses jitd's table: {}", retried.error().message);
      }
      if (const auto expiry = daemon->engine_.next_expiry()) {
        next = std::clamp(*expiry - daemon->clock_.boot_now(), std::chrono::milliseconds(1), next);
      }
    }
    uint64_t now = 0;
    sd_event_now(sd_event_source_get_event(source), CLOCK_BOOTTIME, &now);
    sd_event_source_set_time(source, now + static_cast<uint64_t>(std::chrono::microseconds(next).count()));
    sd_event_source_set_enabled(source, SD_EVENT_ONESHOT);
    return 0;
  }

  config::MainConfig settings_;
  SystemClock clock_;
  std::unique_ptr<nft::NftBackend> backend_;
  std::unique_ptr<state::AuditLog> audit_;
  std::unique_ptr<state::FileJournal> journal_;
  core::AccessEngine engine_;
  std::mutex engine_mutex_;
  std::mutex reload_mutex_;
  api::Router router_;
  std::unique_ptr<nft::RulesetMonitor> monitor_;
  std::unique_ptr<api::Server> server_;
  EventLoop loop_;
  EventSource housekeeping_;
  EventSource reload_timer_;
  EventSource repair_timer_;
  sys::UniqueFd inotify_;
  std::string tamper_detected_;
  std::chrono::steady_clock::time_point tamper_since_;
  std::string stop_reason_ = "event loop ended";
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"jitd: just-in-time access to management ports, enforced by nftables"};
  std::string config_path = config::default_config_path;
  bool validate_only = false;
  bool uninstall = false;
  auto* config_option =
      app.add_option("-c,--config", config_path, "main config file")->capture_default_str();
  app.add_flag("--validate", validate_only,
               "check config and policy, print file:line:col: message per error, touch nothing");
  app.add_flag("--uninstall", uninstall, "remove jitd's nftables table (opens the protected ports)");
  CLI11_PARSE(app, argc, argv);

  // Only the default path may be absent (all defaults); a named file must exist.
  if (config_option->count() > 0 && !std::filesystem::exists(config_path)) {
    std::cerr << config_path << ": config file does not exist\n";
    return 1;
  }
  const auto main_config = config::load_main_config(config_path);
  if (!main_config.ok()) {
    print_errors(main_config.errors);
    return 1;
  }
  const auto& settings = main_config.value;
  auto policy = config::load_policy_directory(settings.policy_directory);
  if (validate_only) {
    print_errors(policy.errors);
    if (!policy.ok()) return 1;
    std::cout << config_path << " and " << settings.policy_directory.string()
              << " are valid: " << policy.value.rules.size() << " port rules, "
              << policy.value.permanent_allow.size() << " permanent allow-list entries\n";
    return 0;
  }
  spdlog::set_level(spdlog::level::from_str(settings.log_level));
  if (!policy.ok()) {
    print_errors(policy.errors);
    spdlog::critical("policy in {} is invalid; nothing was changed",
                     settings.policy_directory.string());
    return 1;
  }
  if (policy.value.rules.empty()) {
    spdlog::warn("policy in {} protects no port", settings.policy_directory.string());
  }
  daemon::install_failpoints_from_environment();

  auto backend = nft::NftBackend::open(settings.nft_table, settings.claim_table_ownership);
  if (!backend) {
    spdlog::critical("{}", backend.error().message);
    return 1;
  }
  if (auto made = make_directory(settings.state_directory, 0750); !made) {
    spdlog::critical("{}", made.error().message);
    return 1;
  }
  auto audit = state::AuditLog::open(settings.state_directory / "audit.jsonl");
  if (!audit) {
    spdlog::critical("{}", audit.error().message);
    return 1;
  }
  if (uninstall) {
    if (auto removed = (*backend)->uninstall(); !removed) {
      spdlog::critical("{}", removed.error().message);
      return 1;
    }
    core::AuditEvent event;
    event.time = SystemClock().now();
    event.event = "uninstall";
    event.outcome = "ok";
    event.user = "jitd";
    event.reason = "table inet " + settings.nft_table + " removed by jitd --uninstall";
    (*audit)->record(event);
    spdlog::info("removed table inet {}; protected ports are open", settings.nft_table);
    return 0;
  }
  state::JournalReplay replay;
  const auto boot_id = current_boot_id();
  auto journal = state::FileJournal::open(settings.state_directory / "grants.journal", boot_id,
                                          replay);
  if (!journal) {
    spdlog::critical("{}", journal.error().message);
    return 1;
  }
  // Signals are handled by the event loop; block them before the HTTP thread starts so it
  // inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  for (const int signal : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, signal);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Daemon agent(settings, std::move(*backend), std::move(*audit), std::move(*journal),
                std::move(policy.value));
  return agent.run(replay, boot_id);
}
