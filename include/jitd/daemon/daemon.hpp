#pragma once
// The running daemon: restores journaled grants, installs enforcement, serves the API, and
// runs the one event loop that owns the engine, the journal and the backend. Every entry
// point (HTTP requests, signals, policy directory changes, netfilter events, timers) is a
// source of that loop, so they are ordered by it and no lock guards jitd's state.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "jitd/api/router.hpp"
#include "jitd/api/server.hpp"
#include "jitd/config/config.hpp"
#include "jitd/conntrack/session_cut.hpp"
#include "jitd/core/backend.hpp"
#include "jitd/core/engine.hpp"
#include "jitd/daemon/event_loop.hpp"
#include "jitd/daemon/firewall_advice.hpp"
#include "jitd/daemon/host.hpp"
#include "jitd/daemon/metrics_service.hpp"
#include "jitd/daemon/schedule.hpp"
#include "jitd/state/audit_journal.hpp"
#include "jitd/daemon/webhooks.hpp"
#include "jitd/state/audit_log.hpp"
#include "jitd/state/file_journal.hpp"
#include "jitd/state/grant_history.hpp"

namespace jitd::daemon {

// The policy a start enforces and where it came from.
struct StartingPolicy {
  core::Policy enforced;
  std::vector<config::PolicySource> sources;  // from valid files: saved as the last valid copy
  api::PolicyStatus status;                   // the files, or the last valid copy and why
};

// The policy files; when they are invalid, the last valid copy in the state directory (each
// file error logged). An error only when the files are invalid and no usable copy exists.
[[nodiscard]] core::Result<StartingPolicy> load_starting_policy(const config::MainConfig& settings);

class Daemon {
 public:
  Daemon(config::MainConfig settings, std::unique_ptr<core::KernelBackend> backend,
         std::unique_ptr<state::AuditLog> audit, std::unique_ptr<state::FileJournal> journal,
         StartingPolicy policy);
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Runs until SIGTERM/SIGINT; returns the process exit code. SIGTERM, SIGINT and SIGHUP
  // must be blocked before the call.
  int run(const state::JournalReplay& replay, const std::string& boot_id);

 private:
  [[nodiscard]] core::Result<void> start(const state::JournalReplay& replay,
                                         const std::string& boot_id);
  [[nodiscard]] core::Result<void> watch_events();
  void record(std::string event, std::string outcome, std::string reason);
  void save_last_valid(std::vector<config::PolicySource> sources);
  // Webhooks, when configured: an audit sink from the start (a restore's expiries wait in its
  // queues), sending once the loop runs.
  void add_notifier();

  api::ReloadOutcome reload(const std::string& trigger);
  void on_policy_directory_event();
  [[nodiscard]] bool watch_policy_directory();
  void on_ruleset_event();
  void repair();
  void housekeeping();
  // Opens the history of ended grants; without it (a disk error) jitd enforces as ever, and
  // ended grants are only in the audit log.
  void open_history();
  void prune_history();
  // Other tables' rules at start: a drop defeats grants, an accept no longer admits anyone.
  void log_firewall_conflicts();
  void serve_http();
  // The audit log is written at once and synced shortly after, so a burst shares one sync.
  void sync_audit_soon();
  void sync_audit();

  config::MainConfig settings_;
  SystemClock clock_;
  std::unique_ptr<core::KernelBackend> backend_;
  std::unique_ptr<state::AuditLog> audit_;
  state::AuditJournal audit_journal_;  // a sink when auditJournal is on
  std::unique_ptr<state::FileJournal> journal_;
  std::unique_ptr<state::FileGrantHistory> history_;
  conntrack::SessionTerminator session_cutter_;
  // Every audit event, the engine's and the daemon's: the log file first, then the others.
  core::AuditFanout audit_sinks_;
  core::AccessEngine engine_;
  MetricsService metrics_;
  FirewallAdvice firewall_advice_;
  api::PolicyStatus policy_status_;
  std::vector<config::PolicySource> starting_sources_;  // saved once the start succeeded
  api::Router router_;
  // Declared before the loop, destroyed after it: the loop's sources watch their descriptors.
  std::unique_ptr<core::ChangeWatch> monitor_;
  std::unique_ptr<api::Server> server_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Timer> http_timer_;
  std::unique_ptr<Timer> reload_timer_;
  std::unique_ptr<Timer> repair_timer_;
  std::unique_ptr<Timer> housekeeping_timer_;
  std::unique_ptr<Timer> audit_sync_timer_;
  std::unique_ptr<Coalescer> reload_settle_;
  std::unique_ptr<Coalescer> repair_coalesce_;
  // Webhooks (none configured: null). After the loop, so destroyed before it; the notifier
  // before the adapter it sends through.
  std::unique_ptr<NotifyLoop> notify_loop_;
  std::unique_ptr<notify::Notifier> notifier_;

  int inotify_fd_ = -1;  // owned by its loop source
  bool policy_watched_ = false;
  std::string tamper_detected_;
  std::string events_lost_;  // why ruleset events were lost since the last repair pass
  std::chrono::steady_clock::time_point tamper_since_;
  core::Deadline next_history_prune_{};
  std::string stop_reason_ = "event loop ended";
};

}  // namespace jitd::daemon
