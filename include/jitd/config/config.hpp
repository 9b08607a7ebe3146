#pragma once
// YAML → core::Policy and the daemon's main config. Every error names
// file:line:col and says why; loading reports all errors it finds, not just the first.
// Files are refused unless only root can change them (owner root, no g+w / o+w), larger than
// 1 MiB, nested deeper than 100 levels or using YAML aliases; policy files also when they are
// symbolic links or not regular files. Errors quote values as short, escaped excerpts.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "jitd/core/audit.hpp"
#include "jitd/core/duration.hpp"
#include "jitd/core/error.hpp"
#include "jitd/core/policy.hpp"
#include "jitd/core/tcp_address.hpp"

namespace jitd::config {

inline constexpr const char* default_config_path = "/etc/jitd/jitd.yaml";

enum class Enforcement { nftables, ebpf };
enum class Attach { tc, xdp };
[[nodiscard]] std::string_view to_string(Enforcement backend);
[[nodiscard]] std::string_view to_string(Attach attach);

// The events a webhook may be sent (notify::Kind's names).
inline constexpr std::string_view webhook_events[] = {"grant", "revoke", "expire", "refusal",
                                                      "tamper"};

// One webhook (docs/operations.md, "Webhooks"). The secret is read by the daemon at start and
// at each reload, so it never sits in jitd.yaml, which others may read.
struct WebhookSettings {
  std::string url;  // http:// or https://
  std::filesystem::path secret_file;
  std::vector<std::string> events;  // of webhook_events; every one unless the file names some
  unsigned max_attempts = 5;
  core::Milliseconds timeout = std::chrono::seconds(5);  // per attempt
};

inline constexpr unsigned max_webhook_attempts = 20;
inline constexpr core::Milliseconds min_webhook_timeout = std::chrono::milliseconds(100);
inline constexpr core::Milliseconds max_webhook_timeout = std::chrono::seconds(60);

struct MainConfig {
  std::filesystem::path socket_path = "/run/jitd/jitd.sock";
  std::string socket_group = "jitd";  // members may request and revoke; empty: root only
  // 0660: root and the socket group may connect; 0666: anyone may, and the policy's roles
  // decide what they may do; 0600: root alone.
  mode_t socket_mode = 0660;
  std::filesystem::path policy_directory = "/etc/jitd/policies.d";
  std::filesystem::path state_directory = "/var/lib/jitd";
  std::string nft_table = "jitd";  // table "inet <nft_table>"
  // "auto": owner + persist table flags where the kernel has them (6.9+), so other tools
  // cannot delete or flush the table; "off": rely on self-healing alone.
  bool claim_table_ownership = true;
  std::string log_level = "info";
  // The kernel side (docs/ebpf.md): nftables' input hook, or jitd's eBPF program at tc ingress
  // or XDP on `interfaces` (empty: every interface but loopback, also ones that appear later).
  Enforcement backend = Enforcement::nftables;
  Attach attach = Attach::tc;
  std::vector<std::string> interfaces;
  std::filesystem::path bpf_filesystem = "/sys/fs/bpf";  // pins under <it>/jitd/
  // The history of ended grants (for `jitctl history` and audits) is pruned by age and by
  // size, whichever bound is reached first, so it can neither grow without bound nor vanish
  // before anyone could look at it (hence the minimums of a day and a MiB).
  core::Milliseconds history_retention = std::chrono::days(90);
  std::uint64_t history_max_bytes = std::uint64_t{64} << 20;
  // The audit log (docs/operations.md): also sent to the systemd journal; rotated by jitd
  // once it holds audit_max_bytes or its first record is audit_max_age old (0: size only),
  // rotated files kept for audit_retention; or rotated by another tool that jitd follows.
  bool audit_journal = true;
  core::AuditRotation audit_rotation = core::AuditRotation::jitd;
  std::uint64_t audit_max_bytes = std::uint64_t{64} << 20;
  core::Milliseconds audit_max_age = std::chrono::days(1);
  core::Milliseconds audit_retention = std::chrono::days(90);
  std::vector<WebhookSettings> webhooks;  // none: no notifications
  // Metrics (docs/operations.md) are always at GET /metrics on the socket. Besides: over TCP
  // on loopback for Prometheus (off unless set), and as a node_exporter textfile (none unless
  // set), rewritten every metrics_textfile_interval.
  std::optional<core::TcpAddress> metrics_listen;  // on loopback
  std::filesystem::path metrics_textfile;
  core::Milliseconds metrics_textfile_interval = std::chrono::seconds(15);
};

// Below these, rotation would make a file per few records, and retention lose records before
// anyone could look at them.
inline constexpr std::uint64_t min_audit_max_bytes = 4096;
inline constexpr core::Milliseconds min_audit_max_age = std::chrono::minutes(1);
inline constexpr core::Milliseconds min_audit_retention = std::chrono::days(1);

inline constexpr core::Milliseconds min_history_retention = std::chrono::days(1);
inline constexpr std::uint64_t min_history_max_bytes = std::uint64_t{1} << 20;

// One problem in one file: "file:line:col: message".
struct Diagnostic {
  core::SourceLocation where;
  std::string message;
  [[nodiscard]] std::string to_string() const;
};

template <class T>
struct Loaded {
  T value;
  std::vector<Diagnostic> errors;  // empty when valid
  [[nodiscard]] bool ok() const { return errors.empty(); }
};

// A missing main config file means all defaults.
[[nodiscard]] Loaded<MainConfig> load_main_config(const std::filesystem::path& path);
// The main config's text, as if read from `file_name` (used by tests and fuzzers).
[[nodiscard]] Loaded<MainConfig> parse_main_config_text(const std::string& text,
                                                        const std::string& file_name);
// One policy file as read: its name in the policy directory and its text.
struct PolicySource {
  std::string name;
  std::string text;
  bool operator==(const PolicySource&) const = default;
};

// Every *.yaml / *.yml in the directory, merged in name order; `sources`, when given, receives
// the texts that were parsed (the last valid policy is saved as exactly those).
[[nodiscard]] Loaded<core::Policy> load_policy_directory(
    const std::filesystem::path& directory, std::vector<PolicySource>* sources = nullptr);
// The directory as it will be once `candidate` is installed as `name` in it (a new file, or
// the replacement of the one there): `jitd --validate --policy FILE --replaces NAME`, for a
// fleet tool that validates a file before it moves it into place. Errors in the candidate
// name directory/name.
[[nodiscard]] Loaded<core::Policy> load_policy_directory_replacing(
    const std::filesystem::path& directory, const std::string& name,
    const std::filesystem::path& candidate);
// The two halves of load_policy_directory, for a caller that keeps what it parsed (the last
// valid policy is saved as the very text that was found valid): the files' texts in name
// order (with an error for each that cannot be read), and their parse, each file named as
// `directory`/name.
[[nodiscard]] Loaded<std::vector<PolicySource>> read_policy_directory(
    const std::filesystem::path& directory);
[[nodiscard]] Loaded<core::Policy> parse_policy_sources(const std::filesystem::path& directory,
                                                        const std::vector<PolicySource>& sources);
// One candidate policy file on its own (`jitd --validate --policy FILE`): the file's own
// owner and mode are checked, not its directory's.
[[nodiscard]] Loaded<core::Policy> load_policy_file(const std::filesystem::path& file);
// One document's text, as if read from `file_name` (used by tests and fuzzers).
[[nodiscard]] Loaded<core::Policy> parse_policy_text(const std::string& text,
                                                     const std::string& file_name);
// Cross-file checks after merging: duplicate (port, protocol), allow-list ports
// that are not protected.
void check_merged_policy(const core::Policy& policy, std::vector<Diagnostic>& errors);

}  // namespace jitd::config
