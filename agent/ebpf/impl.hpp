#pragma once
// EbpfBackend's state, shared with the change watch (agent/ebpf/watch.cpp), which attaches to
// new interfaces and checks jitd's attachments and pins against what it expects.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "handles.hpp"
#include "jitd/ebpf/ebpf_backend.hpp"
#include "keys.hpp"
#include "netdev.hpp"

namespace jitd::ebpf {

// What jitd wrote to grants4/grants6: each prefix with its end, and the prefixes by end, so an
// apply() finds the entries that have ended without reading the tries. The program ignores an
// ended entry but it stays in the trie, where, being more specific, it would hide a wider
// grant added later: apply() deletes ended entries as it goes.
class GrantShadow {
 public:
  void set(const LpmPrefix& prefix, std::uint64_t end);
  void erase(const LpmPrefix& prefix);
  [[nodiscard]] std::optional<std::uint64_t> find(const LpmPrefix& prefix) const;
  // Entries whose end is at or before `now`.
  [[nodiscard]] std::vector<LpmPrefix> ended(std::uint64_t now) const;

 private:
  std::map<LpmPrefix, std::uint64_t> ends_;
  std::set<std::pair<std::uint64_t, LpmPrefix>> by_end_;
};

// An inotify descriptor on the pin directory; install() re-arms it after re-creating a
// directory someone removed (a watch dies with its directory).
struct PinWatch {
  explicit PinWatch(int fd) : inotify(fd) {}
  void arm(const std::filesystem::path& directory);
  sys::UniqueFd inotify;
  int descriptor = -1;
};

struct Attachment {
  Link link;
  std::optional<XdpMode> xdp_mode;  // with AttachPoint::xdp
};

struct EbpfBackend::Impl {
  EbpfOptions options;
  KernelFeatures features;
  std::filesystem::path pin_directory;
  Skeleton skeleton;
  std::uint32_t tc_program_id = 0;
  std::uint32_t xdp_program_id = 0;
  std::map<std::string, std::uint32_t> map_ids;  // by map (and pin) name
  std::size_t possible_cpus = 0;                 // values per key of the per-CPU counters map

  // From install() until uninstall(): every covered interface should carry the program, and
  // a missing attachment or pin is someone else's doing.
  bool enforcing = false;
  bool maps_reused = false;  // open() found this layout's maps pinned: an earlier jitd ran here
  std::map<int, Attachment> attached;  // by ifindex
  // Interfaces whose XDP slot jitd held in this process: a program someone put there instead
  // is replaced on repair; elsewhere another tool's XDP program is never replaced.
  std::set<int> xdp_held;
  std::optional<GrantShadow> shadow;  // nullopt: unknown, read from the maps when needed
  std::vector<std::weak_ptr<PinWatch>> pin_watches;

  // Whether jitd should filter this interface (options.interfaces, or all but loopback).
  [[nodiscard]] bool covers(const Link& link) const;
  [[nodiscard]] core::Result<void> attach(const Link& link);
  // The pins that are missing or hold something else, by name.
  [[nodiscard]] std::vector<std::string> broken_pins() const;
  // What became of jitd's program on the interface ("tc filter removed from veth0"); empty
  // when the program this process loaded is attached there.
  [[nodiscard]] core::Result<std::string> attachment_change(const Link& link) const;
};

// The ChangeWatch of EbpfBackend::watch().
[[nodiscard]] core::Result<std::unique_ptr<core::ChangeWatch>> open_watch(
    const std::shared_ptr<EbpfBackend::Impl>& impl);

}  // namespace jitd::ebpf
