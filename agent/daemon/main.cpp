// jitd: loads config and policy, installs enforcement, serves the API, records expiries.
#include <grp.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <spdlog/spdlog.h>
#include <vector>

#include "jitd/api/router.hpp"
#include "jitd/api/server.hpp"
#include "jitd/config/config.hpp"
#include "jitd/core/engine.hpp"
#include "jitd/daemon/session_adoption.hpp"
#include "jitd/nft/nft_backend.hpp"
#include "jitd/state/audit_log.hpp"

namespace {

using namespace jitd;

class SystemClock final : public core::Clock {
 public:
  [[nodiscard]] core::TimePoint now() const override {
    return std::chrono::time_point_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now());
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

core::AuditEvent lifecycle_event(const core::Clock& clock, std::string event, std::string reason) {
  core::AuditEvent audit;
  audit.time = clock.now();
  audit.event = std::move(event);
  audit.outcome = "ok";
  audit.user = "jitd";
  audit.reason = std::move(reason);
  return audit;
}

// A failure here costs old sessions, never protection, so it is logged, not fatal.
void adopt_sessions(const std::vector<core::PortKey>& protected_ports, std::string_view when) {
  const auto adopted = daemon::adopt_established_sessions(protected_ports);
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

// Sleeps until a signal arrives or the next grant ends, then records expiries.
// Enforcement never waits on this loop: the kernel ends access by itself.
int serve(core::AccessEngine& engine, std::mutex& engine_mutex, const core::Clock& clock,
          const sigset_t& signals) {
  for (;;) {
    auto wait = std::chrono::milliseconds(1000);
    {
      std::lock_guard lock(engine_mutex);
      engine.expire_due();
      if (const auto next = engine.next_expiry()) {
        wait = std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(*next - clock.now()),
                          std::chrono::milliseconds(1), wait);
      }
    }
    const timespec timeout{static_cast<time_t>(wait.count() / 1000),
                           static_cast<long>(wait.count() % 1000) * 1'000'000};
    const int signal = sigtimedwait(&signals, nullptr, &timeout);
    if (signal == SIGTERM || signal == SIGINT) return signal;
  }
}

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
    spdlog::critical("policy in {} is invalid; nothing was changed", settings.policy_directory.string());
    return 1;
  }
  if (policy.value.rules.empty()) {
    spdlog::warn("policy in {} protects no port", settings.policy_directory.string());
  }

  auto backend = nft::NftBackend::open(settings.nft_table);
  if (!backend) {
    spdlog::critical("{}", backend.error().message);
    return 1;
  }
  if (uninstall) {
    if (auto removed = (*backend)->uninstall(); !removed) {
      spdlog::critical("{}", removed.error().message);
      return 1;
    }
    spdlog::info("removed table inet {}", settings.nft_table);
    return 0;
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
  SystemClock clock;
  core::AccessEngine engine(**backend, **audit, clock, random_grant_id, std::move(policy.value));
  // Sessions that predate the table have no conntrack entry yet; adopt them before the
  // table goes in, and once more after it, for any opened in between.
  adopt_sessions(engine.policy().protected_ports(), "before install");
  if (auto installed = engine.install(); !installed) {
    spdlog::critical("install enforcement: {}", installed.error().message);
    return 1;
  }
  adopt_sessions(engine.policy().protected_ports(), "after install");
  spdlog::info("table inet {} installed: {} protected port(s)", settings.nft_table,
               engine.policy().protected_ports().size());

  // Signals are handled synchronously by the main loop; block them before the
  // HTTP thread starts so it inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  for (const int signal : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, signal);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (auto made = make_directory(settings.socket_path.parent_path(), 0755); !made) {
    spdlog::critical("{}", made.error().message);
    return 1;
  }
  std::mutex engine_mutex;
  api::Router router(engine, engine_mutex, clock);
  auto server = api::Server::start(
      api::ServerOptions{settings.socket_path, lookup_group(settings.socket_group)}, router);
  if (!server) {
    spdlog::critical("{}", server.error().message);
    return 1;
  }
  (*audit)->record(lifecycle_event(clock, "start", "listening on " + settings.socket_path.string()));
  spdlog::info("listening on {}", settings.socket_path.string());
  sd_notify(0, "READY=1");

  const int signal = serve(engine, engine_mutex, clock, signals);
  sd_notify(0, "STOPPING=1");
  server->reset();
  // The table and its live grants stay: protection and access outlive the daemon.
  (*audit)->record(lifecycle_event(clock, "stop", strsignal(signal)));
  spdlog::info("stopping on {}; table inet {} and live grants stay in force", strsignal(signal),
               settings.nft_table);
  return 0;
}
