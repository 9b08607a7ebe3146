// jitd's command line: --validate, --uninstall, or open the resources and hand them to the
// daemon (agent/daemon/daemon.cpp), which runs the event loop.
#include <signal.h>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <optional>
#include <vector>

#include "jitd/api/listen_socket.hpp"
#include "jitd/config/config.hpp"
#include "jitd/core/text.hpp"
#include "jitd/daemon/backends.hpp"
#include "jitd/daemon/daemon.hpp"
#include "jitd/daemon/failpoints.hpp"
#include "jitd/daemon/host.hpp"
#include "jitd/state/audit_log.hpp"
#include "jitd/state/file_journal.hpp"

namespace {

using namespace jitd;

void print_errors(const std::vector<config::Diagnostic>& errors) {
  for (const auto& error : errors) std::cerr << error.to_string() << "\n";
}

// What the daemon needs of the host that can fail: checked (create = false, for --validate)
// or made, all before the first kernel change. A start that failed after installing the
// table would leave the protected ports closed with no API to open them.
core::Result<void> prepare_host(const config::MainConfig& settings, bool create) {
  if (auto address = api::unix_address(settings.socket_path); !address) {
    return tl::unexpected(address.error());
  }
  for (const auto& [directory, mode] :
       {std::pair{settings.state_directory, mode_t{0750}},
        std::pair{settings.socket_path.parent_path(), mode_t{0755}}}) {
    auto ready =
        create ? daemon::make_directory(directory, mode) : daemon::check_directory(directory);
    if (!ready) return ready;
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"jitd: just-in-time access to management ports, enforced by nftables"};
  app.set_version_flag("--version", "jitd " JITD_VERSION);
  std::string config_path = config::default_config_path;
  bool validate_only = false;
  bool uninstall = false;
  std::string candidate;
  std::string replaces;
  auto* config_option =
      app.add_option("-c,--config", config_path, "main config file")->capture_default_str();
  app.add_flag("--validate", validate_only,
               "check config and policy, print file:line:col: message per error, touch nothing");
  app.add_option("--policy", candidate,
                 "with --validate: check this one policy file on its own (its own owner and "
                 "mode, not its directory's) instead of the policy directory")
      ->needs(app.get_option("--validate"));
  app.add_option("--replaces", replaces,
                 "with --policy: check the policy directory as it will be once FILE is "
                 "installed in it under this name (a new file or the replacement of one), as "
                 "Ansible's validate: needs")
      ->needs(app.get_option("--policy"));
  app.add_flag("--uninstall", uninstall,
               "remove jitd's nftables table (opens the protected ports)");
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
  if (!candidate.empty()) {
    const auto policy = replaces.empty() ? config::load_policy_file(candidate)
                                         : config::load_policy_directory_replacing(
                                               settings.policy_directory, replaces, candidate);
    print_errors(policy.errors);
    if (!policy.ok()) return 1;
    std::cout << candidate << " is valid"
              << (replaces.empty() ? std::string()
                                   : " as " + (settings.policy_directory / replaces).string())
              << ": " << policy.value.rules.size() << " port rules, "
              << policy.value.permanent_allow.size() << " permanent allow-list entries\n";
    return 0;
  }
  if (validate_only) {
    const auto policy = config::load_policy_directory(settings.policy_directory);
    print_errors(policy.errors);
    const auto host = prepare_host(settings, /*create=*/false);
    if (!host) std::cerr << host.error().message << "\n";
    if (!policy.ok() || !host) return 1;
    std::cout << config_path << " and " << settings.policy_directory.string()
              << " are valid: " << policy.value.rules.size() << " port rules, "
              << policy.value.permanent_allow.size() << " permanent allow-list entries\n";
    return 0;
  }
  spdlog::set_level(spdlog::level::from_str(settings.log_level));
  daemon::install_failpoints_from_environment();

  // First, before anything is made or probed: without a usable policy jitd changes nothing.
  // Not for --uninstall: removing jitd must work whatever state its policy files are in.
  std::optional<daemon::StartingPolicy> policy;
  if (!uninstall) {
    auto loaded = daemon::load_starting_policy(settings);
    if (!loaded) {
      spdlog::critical("{}; nothing was changed", loaded.error().message);
      return 1;
    }
    policy = std::move(*loaded);
    if (policy->enforced.rules.empty()) {
      spdlog::warn("policy in {} protects no port", settings.policy_directory.string());
    }
  }

  // --uninstall needs the state directory (audit) only; the daemon the socket's too.
  if (auto ready = uninstall ? daemon::make_directory(settings.state_directory, 0750)
                             : prepare_host(settings, /*create=*/true);
      !ready) {
    spdlog::critical("{}; nothing was changed", ready.error().message);
    return 1;
  }
  auto audit = state::AuditLog::open(settings.state_directory / "audit.jsonl",
                                     {settings.audit_rotation, settings.audit_max_bytes,
                                      settings.audit_max_age, settings.audit_retention});
  if (!audit) {
    spdlog::critical("{}; nothing was changed", audit.error().message);
    return 1;
  }
  if (uninstall) {
    // Both backends: the host may have switched since jitd last ran.
    auto removed = daemon::remove_all_backends(settings);
    if (!removed) {
      spdlog::critical("{}", removed.error().message);
      return 1;
    }
    const auto what =
        removed->empty() ? std::string("nothing was installed") : core::join(*removed) + " removed";
    core::AuditEvent event;
    event.time = daemon::SystemClock().now();
    event.event = "uninstall";
    event.outcome = "ok";
    event.user = "jitd";
    event.reason = what + " by jitd --uninstall";
    (*audit)->record(event);
    spdlog::info("{}; protected ports are open", what);
    return 0;
  }
  // Before the journal is opened: a kernel that lacks what the backend needs is reported
  // first, and jitd refuses to start rather than run unprotected.
  auto backend = daemon::open_backend(settings);
  if (!backend) {
    spdlog::critical("{} backend: {}", config::to_string(settings.backend),
                     backend.error().message);
    return 1;
  }
  state::JournalReplay replay;
  const auto boot_id = daemon::current_boot_id();
  const auto opening = std::chrono::steady_clock::now();
  auto journal =
      state::FileJournal::open(settings.state_directory / "grants.journal", boot_id, replay);
  if (!journal) {
    spdlog::critical("{}", journal.error().message);
    return 1;
  }
  spdlog::info("journal: {} record(s) read and replayed in {} ms", replay.records,
               std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - opening)
                   .count());
  // The event loop reads these signals from a signalfd: they must not be delivered.
  sigset_t signals;
  sigemptyset(&signals);
  for (const int signal : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, signal);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  daemon::Daemon agent(settings, std::move(*backend), std::move(*audit), std::move(*journal),
                       std::move(*policy));
  return agent.run(replay, boot_id);
}
