#include "jitd/ebpf/ebpf_backend.hpp"

#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <utility>

#include <spdlog/spdlog.h>

#include "impl.hpp"
#include "jitd.skel.h"
#include "jitd/nft/conntrack_table.hpp"
#include "jitd/sys/system_error.hpp"
#include "maps.hpp"
#include "probe.hpp"

namespace jitd::ebpf {
namespace {

constexpr const char* tc_program_pin = "prog_tc";
constexpr const char* xdp_program_pin = "prog_xdp";
// The XDP program's name as the kernel reports it (bpf/jitd.bpf.c), which tells it apart from
// another tool's.
constexpr const char* xdp_program_name = "jitd_xdp";

// Unpins everything in one layout version's directory and removes it.
core::Result<void> remove_pin_directory(const std::filesystem::path& directory) {
  std::error_code error;
  for (const auto& pin : std::filesystem::directory_iterator(directory, error)) {
    if (::unlink(pin.path().c_str()) != 0 && errno != ENOENT) {
      return sys::fail_system(core::ErrorCode::io, "unpin " + pin.path().string(), errno);
    }
  }
  if (error)
    return sys::fail_system(core::ErrorCode::io, "list " + directory.string(), error.value());
  if (::rmdir(directory.c_str()) != 0 && errno != ENOENT) {
    return sys::fail_system(core::ErrorCode::io, "remove " + directory.string(), errno);
  }
  return {};
}
constexpr std::uint64_t ns_per_ms = 1'000'000;
// would_block() lists the sources an audited port let through within this long: older entries
// stay in the LRU map until newer ones push them out, but are no longer news.
constexpr std::uint64_t would_block_window_ns = 3600 * 1000 * ns_per_ms;

// What bpf_ktime_get_boot_ns() returns in the program.
std::uint64_t boottime_ns() {
  timespec now{};
  clock_gettime(CLOCK_BOOTTIME, &now);
  return static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000U +
         static_cast<std::uint64_t>(now.tv_nsec);
}

// libbpf's messages, the verifier's log among them, go to jitd's log. Its netlink calls also
// warn with the kernel's extended ack ("Kernel error message: Parent Qdisc doesn't exists")
// whenever they fail, expected failures too (a query where nothing is attached); the error
// itself comes back to jitd, which reports it with its context, so those are debug lines.
int log_libbpf(libbpf_print_level level, const char* format, va_list arguments) {
  std::array<char, 1024> line{};
  const int length = std::vsnprintf(line.data(), line.size(), format, arguments);
  if (length <= 0) return 0;
  std::string_view text(line.data(), std::min<std::size_t>(length, line.size() - 1));
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  if (level == LIBBPF_WARN && text.find("Kernel error message: ") == std::string_view::npos) {
    spdlog::warn("{}", text);
  } else {
    // libbpf's debug output is hundreds of lines per load (relocations): trace, not debug.
    spdlog::log(level == LIBBPF_DEBUG ? spdlog::level::trace : spdlog::level::debug, "{}", text);
  }
  return 0;
}

// As with nftables: a grant element has time left (with none it would be written ended).
core::Result<void> check_timeouts(const std::vector<core::TimedElement>& grants) {
  const bool all_positive = std::all_of(grants.begin(), grants.end(), [](const auto& grant) {
    return grant.timeout > core::Milliseconds(0);
  });
  if (all_positive) return {};
  return core::fail(core::ErrorCode::invalid_argument, "grant element without a positive timeout");
}

std::string describe(const core::PortKey& port) {
  return std::string(core::to_string(port.protocol)) + "/" + std::to_string(port.port);
}

std::size_t family_index(core::Family family) { return family == core::Family::ipv4 ? 0 : 1; }

std::array<bpf_map*, 7> pinned_maps(const jitd_bpf& skeleton) {
  return {skeleton.maps.protected_ports, skeleton.maps.counters, skeleton.maps.would_block,
          skeleton.maps.allow4,          skeleton.maps.allow6,   skeleton.maps.grants4,
          skeleton.maps.grants6};
}

// The kernel's id of a map or program, 0 when the descriptor holds neither.
template <class Info>
std::uint32_t object_id(int fd) {
  Info info{};
  std::uint32_t length = sizeof info;
  if (bpf_obj_get_info_by_fd(fd, &info, &length) != 0) return 0;
  return info.id;
}

// The id of what a pin holds, 0 when there is no such pin.
template <class Info>
std::uint32_t pinned_id(const std::filesystem::path& path) {
  const sys::UniqueFd object(bpf_obj_get(path.c_str()));
  return object ? object_id<Info>(object.get()) : 0;
}

// Pins beside the final name and renames over it, so whatever was there is replaced at once.
// (bpffs refuses names with a dot.)
core::Result<void> pin(int fd, const std::filesystem::path& path) {
  const std::filesystem::path staged = path.string() + "_staged";
  ::unlink(staged.c_str());
  if (bpf_obj_pin(fd, staged.c_str()) != 0) {
    return sys::fail_system(core::ErrorCode::kernel, "pin " + path.string(), errno);
  }
  if (::rename(staged.c_str(), path.c_str()) != 0) {
    const int error = errno;
    ::unlink(staged.c_str());
    return sys::fail_system(core::ErrorCode::kernel, "pin " + path.string(), error);
  }
  return {};
}

// Each level under the bpffs, mode 0700: pins are jitd's alone.
core::Result<void> make_directories(const std::filesystem::path& bpffs,
                                    const std::filesystem::path& directory) {
  std::filesystem::path partial = bpffs;
  for (const auto& component : directory.lexically_relative(bpffs)) {
    partial /= component;
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      return sys::fail_system(core::ErrorCode::io, "create " + partial.string(), errno);
    }
  }
  return {};
}

struct Coverage {
  std::vector<Link> links;
  std::vector<std::string> missing;  // named interfaces that do not exist
};

core::Result<Coverage> coverage(const EbpfOptions& options) {
  auto links = list_links();
  if (!links) return tl::unexpected(links.error());
  Coverage covered;
  if (options.interfaces.empty()) {
    std::copy_if(links->begin(), links->end(), std::back_inserter(covered.links),
                 [](const Link& link) { return !link.loopback; });
    return covered;
  }
  for (const auto& name : options.interfaces) {
    const auto found = std::find_if(links->begin(), links->end(),
                                    [&name](const Link& link) { return link.name == name; });
    if (found == links->end()) {
      covered.missing.push_back(name);
    } else if (!found->loopback) {
      covered.links.push_back(*found);
    }
  }
  return covered;
}

// Not an error: at boot jitd starts before udev has renamed the interfaces or a VPN has made
// its own, and refusing to start would leave every other interface open. The link event of a
// named interface attaches the program the moment it appears.
void warn_missing(const std::vector<std::string>& names) {
  std::string list;
  for (const auto& name : names) list += (list.empty() ? "" : ", ") + name;
  spdlog::warn(
      "ebpf: network interface {} named in interfaces: is not in this network namespace "
      "(yet); protected as soon as it appears",
      list);
}

std::string join(const std::vector<std::string>& names) {
  std::string text;
  for (const auto& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

// Every entry of one trie by prefix; a key listed twice (the walk restarted) counts once.
core::Result<std::map<LpmPrefix, std::uint64_t>> read_trie(const Map& map, core::Family family) {
  std::map<LpmPrefix, std::uint64_t> entries;
  auto listed = map.for_each_key([&](std::span<const std::uint8_t> key) -> core::Result<void> {
    auto prefix = decode(family, key);
    if (!prefix) return tl::unexpected(prefix.error());
    std::uint64_t value = 0;
    auto found = map.lookup(raw_key(key), &value, describe(*prefix));
    if (!found) return tl::unexpected(found.error());
    if (*found) entries[*prefix] = value;  // else deleted since it was listed
    return {};
  });
  if (!listed) return tl::unexpected(listed.error());
  return entries;
}

core::Result<std::set<core::PortKey>> read_ports(const Map& map) {
  std::set<core::PortKey> ports;
  auto listed = map.for_each_key([&](std::span<const std::uint8_t> key) -> core::Result<void> {
    auto port = decode_port(key);
    if (!port) return tl::unexpected(port.error());
    ports.insert(*port);
    return {};
  });
  if (!listed) return tl::unexpected(listed.error());
  return ports;
}

// protected_ports: each port with its mode (JITD_PORT_ENFORCE or JITD_PORT_AUDIT).
core::Result<std::map<core::PortKey, std::uint8_t>> read_modes(const Map& map) {
  std::map<core::PortKey, std::uint8_t> modes;
  auto listed = map.for_each_key([&](std::span<const std::uint8_t> key) -> core::Result<void> {
    auto port = decode_port(key);
    if (!port) return tl::unexpected(port.error());
    std::uint8_t mode = 0;
    auto found = map.lookup(raw_key(key), &mode, describe(*port));
    if (!found) return tl::unexpected(found.error());
    if (*found) modes[*port] = mode;  // else deleted since it was listed
    return {};
  });
  if (!listed) return tl::unexpected(listed.error());
  return modes;
}

}  // namespace

void destroy_skeleton(jitd_bpf* skeleton) { jitd_bpf__destroy(skeleton); }

void GrantShadow::set(const LpmPrefix& prefix, std::uint64_t end) {
  erase(prefix);
  ends_.emplace(prefix, end);
  by_end_.emplace(end, prefix);
}

void GrantShadow::erase(const LpmPrefix& prefix) {
  const auto found = ends_.find(prefix);
  if (found == ends_.end()) return;
  by_end_.erase({found->second, prefix});
  ends_.erase(found);
}

std::optional<std::uint64_t> GrantShadow::find(const LpmPrefix& prefix) const {
  const auto found = ends_.find(prefix);
  if (found == ends_.end()) return std::nullopt;
  return found->second;
}

std::vector<LpmPrefix> GrantShadow::ended(std::uint64_t now) const {
  std::vector<LpmPrefix> prefixes;
  for (auto it = by_end_.begin(); it != by_end_.end() && it->first <= now; ++it) {
    prefixes.push_back(it->second);
  }
  return prefixes;
}

void PinWatch::arm(const std::filesystem::path& directory) {
  // Adding a watch for a directory already watched returns the same descriptor.
  descriptor =
      inotify_add_watch(inotify.get(), directory.c_str(),
                        IN_DELETE | IN_DELETE_SELF | IN_MOVED_FROM | IN_MOVE_SELF | IN_ONLYDIR);
}

bool EbpfBackend::Impl::covers(const Link& link) const {
  if (link.loopback) return false;
  return options.interfaces.empty() ||
         std::find(options.interfaces.begin(), options.interfaces.end(), link.name) !=
             options.interfaces.end();
}

core::Result<void> EbpfBackend::Impl::attach(const Link& link) {
  if (options.attach == AttachPoint::tc) {
    auto attached_tc = attach_tc(link, bpf_program__fd(skeleton->progs.jitd_tc));
    if (!attached_tc) return attached_tc;
    attached[link.ifindex] = Attachment{link, std::nullopt};
    return {};
  }
  auto mode =
      attach_xdp(link, bpf_program__fd(skeleton->progs.jitd_xdp),
                 bpf_program__name(skeleton->progs.jitd_xdp), xdp_held.contains(link.ifindex));
  if (!mode) return tl::unexpected(mode.error());
  attached[link.ifindex] = Attachment{link, *mode};
  xdp_held.insert(link.ifindex);
  // One word while every interface runs in the same mode.
  std::set<std::string_view> modes;
  for (const auto& [ifindex, attachment] : attached) modes.insert(to_string(*attachment.xdp_mode));
  features.xdp_mode = modes.size() == 1 ? std::string(*modes.begin()) : "native and generic";
  return {};
}

core::Result<std::string> EbpfBackend::Impl::attachment_change(const Link& link) const {
  if (options.attach == AttachPoint::tc) {
    auto program = tc_program(link);
    if (!program) return tl::unexpected(program.error());
    if (!*program) return "tc filter removed from " + link.name;
    if (**program != tc_program_id) {
      return "tc filter on " + link.name + " replaced (program id " + std::to_string(**program) +
             ")";
    }
    return std::string();
  }
  auto program = xdp_program(link);
  if (!program) return tl::unexpected(program.error());
  if (!*program) return "xdp program removed from " + link.name;
  if ((*program)->id != xdp_program_id) {
    return "xdp program on " + link.name + " replaced (program id " +
           std::to_string((*program)->id) + ")";
  }
  return std::string();
}

std::vector<std::string> EbpfBackend::Impl::broken_pins() const {
  std::vector<std::string> broken;
  for (const bpf_map* map : pinned_maps(*skeleton)) {
    const std::string name = bpf_map__name(map);
    if (pinned_id<bpf_map_info>(pin_directory / name) != map_ids.at(name)) {
      broken.push_back(name);
    }
  }
  if (pinned_id<bpf_prog_info>(pin_directory / tc_program_pin) != tc_program_id) {
    broken.emplace_back(tc_program_pin);
  }
  if (pinned_id<bpf_prog_info>(pin_directory / xdp_program_pin) != xdp_program_id) {
    broken.emplace_back(xdp_program_pin);
  }
  return broken;
}

namespace {

// The parts of install() and apply() that need the Impl's insides.
struct Writer {
  EbpfBackend::Impl& impl;

  [[nodiscard]] Map allow(core::Family family) const {
    return Map(family == core::Family::ipv4 ? impl.skeleton->maps.allow4
                                            : impl.skeleton->maps.allow6);
  }
  [[nodiscard]] Map grants(core::Family family) const {
    return Map(family == core::Family::ipv4 ? impl.skeleton->maps.grants4
                                            : impl.skeleton->maps.grants6);
  }

  // Pins what is missing or replaced; a pin directory someone removed is made again and
  // watched again.
  core::Result<void> ensure_pins() const {
    const auto broken = impl.broken_pins();
    if (broken.empty()) return {};
    if (auto made = make_directories(impl.options.bpffs, impl.pin_directory); !made) return made;
    for (const auto& name : broken) {
      int fd = -1;
      if (name == tc_program_pin) {
        fd = bpf_program__fd(impl.skeleton->progs.jitd_tc);
      } else if (name == xdp_program_pin) {
        fd = bpf_program__fd(impl.skeleton->progs.jitd_xdp);
      } else {
        fd = bpf_map__fd(bpf_object__find_map_by_name(impl.skeleton->obj, name.c_str()));
      }
      if (auto pinned = pin(fd, impl.pin_directory / name); !pinned) return pinned;
    }
    std::erase_if(impl.pin_watches, [](const auto& watch) { return watch.expired(); });
    for (const auto& weak : impl.pin_watches) {
      if (const auto watch = weak.lock()) watch->arm(impl.pin_directory);
    }
    return {};
  }

  // Makes the maps hold exactly `spec`, grants ending at `now` + their timeout. Entries are
  // added and updated before any is deleted, and a port is protected only once its allowed
  // and granted sources are in, so no source the spec admits is refused on the way.
  core::Result<void> write_spec(const core::EnforcementSpec& spec, std::uint64_t now) const {
    std::array<std::map<LpmPrefix, std::uint64_t>, 2> want_allow;
    std::array<std::map<LpmPrefix, std::uint64_t>, 2> want_grants;
    for (const auto& key : spec.permanent) {
      for (const auto& prefix : split(key)) {
        want_allow[family_index(prefix.family)][prefix] = JITD_NEVER;
      }
    }
    for (const auto& grant : spec.grants) {
      const std::uint64_t end = now + static_cast<std::uint64_t>(grant.timeout.count()) * ns_per_ms;
      for (const auto& prefix : split(grant.key)) {
        want_grants[family_index(prefix.family)][prefix] = end;
      }
    }
    const std::set<core::PortKey> audited(spec.audited_ports.begin(), spec.audited_ports.end());
    std::map<core::PortKey, std::uint8_t> want_ports;
    for (const auto& port : spec.protected_ports) {
      want_ports[port] = audited.contains(port) ? JITD_PORT_AUDIT : JITD_PORT_ENFORCE;
    }

    std::array<std::map<LpmPrefix, std::uint64_t>, 2> have_allow;
    std::array<std::map<LpmPrefix, std::uint64_t>, 2> have_grants;
    for (const auto family : {core::Family::ipv4, core::Family::ipv6}) {
      auto allowed = read_trie(allow(family), family);
      if (!allowed) return tl::unexpected(allowed.error());
      have_allow[family_index(family)] = std::move(*allowed);
      auto granted = read_trie(grants(family), family);
      if (!granted) return tl::unexpected(granted.error());
      have_grants[family_index(family)] = std::move(*granted);
    }
    const Map protected_ports(impl.skeleton->maps.protected_ports);
    const Map counters(impl.skeleton->maps.counters);
    auto have_ports = read_ports(protected_ports);
    if (!have_ports) return tl::unexpected(have_ports.error());
    auto have_counters = read_ports(counters);
    if (!have_counters) return tl::unexpected(have_counters.error());

    // Entries that already hold their value (allowed sources, mostly) are left as they are.
    const auto upsert = [](const Map& target, const std::map<LpmPrefix, std::uint64_t>& present,
                           const std::map<LpmPrefix, std::uint64_t>& wanted) {
      for (const auto& [prefix, value] : wanted) {
        if (const auto found = present.find(prefix);
            found != present.end() && found->second == value) {
          continue;
        }
        if (auto updated = target.update(encode(prefix), &value, BPF_ANY, describe(prefix));
            !updated) {
          return updated;
        }
      }
      return core::Result<void>();
    };
    const auto remove_stale = [](const Map& target,
                                 const std::map<LpmPrefix, std::uint64_t>& present,
                                 const std::map<LpmPrefix, std::uint64_t>& wanted) {
      for (const auto& [prefix, value] : present) {
        if (wanted.contains(prefix)) continue;
        if (auto erased = target.erase(encode(prefix), describe(prefix)); !erased) {
          return core::Result<void>(tl::unexpected(erased.error()));
        }
      }
      return core::Result<void>();
    };

    for (const auto family : {core::Family::ipv4, core::Family::ipv6}) {
      const auto index = family_index(family);
      if (auto done = upsert(allow(family), have_allow[index], want_allow[index]); !done) {
        return done;
      }
      if (auto done = upsert(grants(family), have_grants[index], want_grants[index]); !done) {
        return done;
      }
    }
    // Counters start at zero for a newly protected port and keep counting for one that stays,
    // also when its mode changes.
    const std::vector<jitd_port_counters> zero(impl.possible_cpus, jitd_port_counters{});
    for (const auto& [port, mode] : want_ports) {
      if (auto updated = protected_ports.update(encode(port), &mode, BPF_ANY, describe(port));
          !updated) {
        return updated;
      }
      auto counted = counters.update(encode(port), zero.data(), BPF_NOEXIST, describe(port));
      if (!counted && counted.error().sys_errno != EEXIST) return counted;
    }
    for (const auto& [target, present] :
         {std::pair{&protected_ports, &*have_ports}, std::pair{&counters, &*have_counters}}) {
      for (const auto& port : *present) {
        if (want_ports.contains(port)) continue;
        if (auto erased = target->erase(encode(port), describe(port)); !erased) {
          return tl::unexpected(erased.error());
        }
      }
    }
    for (const auto family : {core::Family::ipv4, core::Family::ipv6}) {
      const auto index = family_index(family);
      if (auto done = remove_stale(allow(family), have_allow[index], want_allow[index]); !done) {
        return done;
      }
      if (auto done = remove_stale(grants(family), have_grants[index], want_grants[index]); !done) {
        return done;
      }
    }
    GrantShadow shadow;
    for (const auto& entries : want_grants) {
      for (const auto& [prefix, end] : entries) shadow.set(prefix, end);
    }
    impl.shadow = std::move(shadow);
    return {};
  }

  core::Result<void> load_shadow() const {
    GrantShadow shadow;
    for (const auto family : {core::Family::ipv4, core::Family::ipv6}) {
      auto entries = read_trie(grants(family), family);
      if (!entries) return tl::unexpected(entries.error());
      for (const auto& [prefix, end] : *entries) shadow.set(prefix, end);
    }
    impl.shadow = std::move(shadow);
    return {};
  }

  // One grant entry as it was before this call changed it: its end, or nullopt when absent.
  struct Undo {
    LpmPrefix prefix;
    std::optional<std::uint64_t> previous;
  };

  core::Result<void> set_entry(const LpmPrefix& prefix, std::optional<std::uint64_t> end) const {
    const Map trie = grants(prefix.family);
    if (end) {
      auto updated = trie.update(encode(prefix), &*end, BPF_ANY, describe(prefix));
      if (updated) impl.shadow->set(prefix, *end);
      return updated;
    }
    auto erased = trie.erase(encode(prefix), describe(prefix));
    if (!erased) return tl::unexpected(erased.error());
    impl.shadow->erase(prefix);
    return {};
  }

  // Puts back what a failed apply() changed, newest first.
  void undo(const std::vector<Undo>& done) const {
    for (auto it = done.rbegin(); it != done.rend(); ++it) {
      if (auto restored = set_entry(it->prefix, it->previous); !restored) {
        spdlog::warn("ebpf: undo of a failed change: {}", restored.error().message);
        impl.shadow.reset();  // the tries are read again before the next change
        return;
      }
    }
  }
};

}  // namespace

EbpfBackend::EbpfBackend(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

EbpfBackend::~EbpfBackend() = default;

core::Result<std::unique_ptr<EbpfBackend>> EbpfBackend::open(EbpfOptions options) {
  static std::once_flag libbpf_logging;
  std::call_once(libbpf_logging, [] { libbpf_set_print(log_libbpf); });

  auto vmlinux = probe_btf();
  if (!vmlinux) return tl::unexpected(vmlinux.error());
  if (auto capable = probe_capabilities(); !capable) return tl::unexpected(capable.error());
  auto mounted = ensure_bpffs(options.bpffs);
  if (!mounted) return tl::unexpected(mounted.error());
  auto links = list_links();
  if (!links) return tl::unexpected(links.error());
  std::vector<std::string> missing;
  for (const auto& name : options.interfaces) {
    const auto found = std::find_if(links->begin(), links->end(),
                                    [&name](const Link& link) { return link.name == name; });
    if (found == links->end()) {
      missing.push_back(name);
    } else if (found->loopback) {
      return core::fail(core::ErrorCode::invalid_argument,
                        "network interface " + name + " is loopback, which jitd never filters");
    }
  }
  if (!missing.empty()) warn_missing(missing);

  // Before the program loads: where conntrack is a module, this loads it, and with it the BTF
  // that has the kfuncs. A failure later leaves the table: a running program of an earlier
  // jitd may still rely on it.
  if (auto active = nft::activate_conntrack(); !active) {
    core::Error error = active.error();
    error.message = "make conntrack active: " + error.message;
    return tl::unexpected(std::move(error));
  }
  auto conntrack = probe_conntrack(vmlinux->get());
  if (!conntrack) return tl::unexpected(conntrack.error());

  auto root = pin_root(options.bpffs);
  if (!root) return tl::unexpected(root.error());
  // A per-CPU map's value is one u64 per possible CPU.
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return sys::fail_system(core::ErrorCode::kernel, "count possible CPUs", -cpus);
  auto impl = std::make_shared<Impl>();
  impl->options = std::move(options);
  impl->possible_cpus = static_cast<std::size_t>(cpus);
  impl->pin_directory = *root / ("v" + std::to_string(JITD_BPF_LAYOUT_VERSION));
  if (auto made = make_directories(impl->options.bpffs, impl->pin_directory); !made) {
    return tl::unexpected(made.error());
  }
  const bool reused = ::access((impl->pin_directory / "grants4").c_str(), F_OK) == 0;
  impl->maps_reused = reused;

  impl->skeleton.reset(jitd_bpf__open());
  if (!impl->skeleton) return sys::fail_system(core::ErrorCode::kernel, "open BPF object", errno);
  impl->skeleton->rodata->ct_opts_size = conntrack->ct_opts_size;
  // libbpf reuses a map pinned at its path (refusing one of another shape) or pins the one it
  // creates: a restarted jitd keeps the maps, and with them the grants.
  for (bpf_map* map : pinned_maps(*impl->skeleton)) {
    const auto path = impl->pin_directory / bpf_map__name(map);
    if (const int set = bpf_map__set_pin_path(map, path.c_str()); set != 0) {
      return sys::fail_system(core::ErrorCode::kernel, "pin path of map " + path.string(), -set);
    }
  }
  if (const int loaded = jitd_bpf__load(impl->skeleton.get()); loaded != 0) {
    return sys::fail_system(core::ErrorCode::kernel,
                            "load BPF program (maps pinned in " + impl->pin_directory.string() +
                                "; libbpf's log above says more)",
                            -loaded);
  }
  for (const bpf_map* map : pinned_maps(*impl->skeleton)) {
    impl->map_ids[bpf_map__name(map)] = object_id<bpf_map_info>(bpf_map__fd(map));
  }
  impl->tc_program_id = object_id<bpf_prog_info>(bpf_program__fd(impl->skeleton->progs.jitd_tc));
  impl->xdp_program_id = object_id<bpf_prog_info>(bpf_program__fd(impl->skeleton->progs.jitd_xdp));
  impl->features.conntrack_btf = conntrack->module;
  impl->features.ct_opts_size = conntrack->ct_opts_size;

  spdlog::info("ebpf: {}; bpffs at {} ({}); maps {} in {}", impl->features.describe(),
               impl->options.bpffs.string(), *mounted ? "mounted by jitd" : "present",
               reused ? "reused" : "new", impl->pin_directory.string());
  return std::unique_ptr<EbpfBackend>(new EbpfBackend(std::move(impl)));
}

std::string KernelFeatures::describe() const {
  std::string text = "kernel BTF; conntrack kfuncs in " + conntrack_btf +
                     " BTF; struct bpf_ct_opts " + std::to_string(ct_opts_size) + " bytes";
  if (!xdp_mode.empty()) text += "; xdp " + xdp_mode;
  return text;
}

core::Result<void> EbpfBackend::install(const core::EnforcementSpec& spec) {
  if (auto checked = check_timeouts(spec.grants); !checked) return checked;
  // A failure part way leaves the tries partly written: read them again before a change.
  impl_->shadow.reset();
  // Repairs: the conntrack table and pins may have been removed by someone else.
  if (auto active = nft::activate_conntrack(); !active) return active;
  const Writer writer{*impl_};
  if (auto pinned = writer.ensure_pins(); !pinned) return pinned;
  if (auto written = writer.write_spec(spec, boottime_ns()); !written) return written;

  auto covered = coverage(impl_->options);
  if (!covered) return tl::unexpected(covered.error());
  impl_->enforcing = true;
  // Every interface is tried; the first failure is reported after the others are covered.
  std::optional<core::Error> failure;
  std::set<int> present;
  for (const auto& link : covered->links) {
    present.insert(link.ifindex);
    if (auto attached = impl_->attach(link); !attached && !failure) failure = attached.error();
    // A switch of `attach:` leaves the other attach point's program of an earlier jitd; it
    // shares the maps, but nothing would keep it current after the next layout change.
    auto other = impl_->options.attach == AttachPoint::tc ? detach_xdp(link, xdp_program_name)
                                                          : detach_tc(link);
    if (!other && !failure) failure = other.error();
  }
  std::erase_if(impl_->attached,
                [&present](const auto& entry) { return !present.contains(entry.first); });
  if (failure) return tl::unexpected(*failure);
  if (!covered->missing.empty()) warn_missing(covered->missing);
  // Maps of another layout (a jitd before an upgrade) are no program's any more: this one's
  // replaced the old program on every interface above.
  std::error_code error;
  for (const auto& other :
       std::filesystem::directory_iterator(impl_->pin_directory.parent_path(), error)) {
    if (other.path() == impl_->pin_directory) continue;
    if (auto removed = remove_pin_directory(other.path()); !removed) {
      spdlog::warn("ebpf: remove the pins of another map layout: {}", removed.error().message);
    } else {
      spdlog::info("ebpf: removed the pins of map layout {} (an earlier jitd's)",
                   other.path().filename().string());
    }
  }
  return {};
}

// The interface promises one transaction; maps have none. Each update or delete is atomic on
// its own and the program sees it at once. Additions and updates go first, deletions after,
// so every source admitted before or after the call is admitted throughout; an entry that has
// ended is deleted here too (see GrantShadow). If a step fails, the steps this call made are
// undone newest first, best effort, and the error names the map, the entry and the errno.
core::Result<void> EbpfBackend::apply(const core::ElementChanges& changes) {
  if (changes.empty()) return {};
  if (auto checked = check_timeouts(changes.add); !checked) return checked;
  const Writer writer{*impl_};
  if (!impl_->shadow) {
    if (auto loaded = writer.load_shadow(); !loaded) return loaded;
  }
  const std::uint64_t now = boottime_ns();
  std::map<LpmPrefix, std::uint64_t> additions;
  for (const auto& grant : changes.add) {
    const std::uint64_t end = now + static_cast<std::uint64_t>(grant.timeout.count()) * ns_per_ms;
    for (const auto& prefix : split(grant.key)) additions[prefix] = end;
  }
  std::set<LpmPrefix> deletions;
  for (const auto& key : changes.remove) {
    for (const auto& prefix : split(key)) deletions.insert(prefix);
  }
  for (const auto& prefix : impl_->shadow->ended(now)) deletions.insert(prefix);
  // A key both removed and added is updated in place.
  std::erase_if(deletions,
                [&additions](const LpmPrefix& prefix) { return additions.contains(prefix); });

  std::vector<Writer::Undo> done;
  const auto step = [&](const LpmPrefix& prefix,
                        std::optional<std::uint64_t> end) -> core::Result<void> {
    const auto previous = impl_->shadow->find(prefix);
    if (auto changed = writer.set_entry(prefix, end); !changed) {
      writer.undo(done);
      return changed;
    }
    done.push_back({prefix, previous});
    return {};
  };
  for (const auto& [prefix, end] : additions) {
    if (auto added = step(prefix, end); !added) return added;
  }
  for (const auto& prefix : deletions) {
    if (auto deleted = step(prefix, std::nullopt); !deleted) return deleted;
  }
  return {};
}

core::Result<core::KernelSnapshot> EbpfBackend::snapshot() {
  core::KernelSnapshot snapshot;
  auto installed_now = installed();
  if (!installed_now) return tl::unexpected(installed_now.error());
  snapshot.installed = *installed_now;

  using Entries = std::vector<std::pair<LpmPrefix, std::uint64_t>>;
  const Writer reader{*impl_};
  auto modes = read_modes(Map(impl_->skeleton->maps.protected_ports));
  if (!modes) return tl::unexpected(modes.error());
  for (const auto& [port, mode] : *modes) {
    snapshot.protected_ports.push_back(port);
    if (mode == JITD_PORT_AUDIT) snapshot.audited_ports.push_back(port);
  }
  const std::uint64_t now = boottime_ns();
  for (const auto family : {core::Family::ipv4, core::Family::ipv6}) {
    auto allowed = read_trie(reader.allow(family), family);
    if (!allowed) return tl::unexpected(allowed.error());
    for (const auto& [key, end] : merge(Entries(allowed->begin(), allowed->end()))) {
      snapshot.permanent.push_back(key);
    }
    auto granted = read_trie(reader.grants(family), family);
    if (!granted) return tl::unexpected(granted.error());
    // Ended entries are gone as far as the program is concerned, as in nftables.
    std::erase_if(*granted, [now](const auto& entry) { return entry.second <= now; });
    for (const auto& [key, end] : merge(Entries(granted->begin(), granted->end()))) {
      // Rounded up: time is left, and a re-install of the snapshot keeps it positive.
      const auto remaining = core::Milliseconds((end - now + ns_per_ms - 1) / ns_per_ms);
      snapshot.grants.push_back({key, remaining});
    }
  }
  std::sort(snapshot.protected_ports.begin(), snapshot.protected_ports.end());
  std::sort(snapshot.permanent.begin(), snapshot.permanent.end());
  std::sort(snapshot.grants.begin(), snapshot.grants.end());
  return snapshot;
}

core::Result<void> EbpfBackend::uninstall() {
  impl_->enforcing = false;
  impl_->attached.clear();
  impl_->xdp_held.clear();
  auto removed = remove_installed(impl_->options.bpffs);
  if (!removed) return tl::unexpected(removed.error());
  return {};
}

core::Result<bool> EbpfBackend::remove_installed(const std::filesystem::path& bpffs) {
  std::optional<core::Error> failure;
  const auto note = [&failure](const core::Result<void>& result) {
    if (!result && !failure) failure = result.error();
  };
  bool found = false;
  // Both attach points, wherever jitd's program is: an earlier jitd may have used the other.
  // jitd's tc filter is known by its handle and priority (netlink alone); its XDP program by
  // name, which takes bpf(2): without it (the unit without the eBPF drop-in) an XDP program
  // cannot be told from another tool's and is left alone.
  auto links = list_links();
  if (links) {
    for (const auto& link : *links) {
      if (link.loopback) continue;
      auto tc = tc_program(link);
      auto xdp = xdp_program(link);
      found = found || (tc && *tc) || (xdp && *xdp && program_name((*xdp)->id) == xdp_program_name);
      note(detach_tc(link));
      note(detach_xdp(link, xdp_program_name));
    }
  } else {
    note(tl::unexpected(links.error()));
  }
  // Every layout version's pins in this namespace, then the directories left empty. Pins
  // enforce nothing once no interface runs the program: one that cannot be removed (a
  // read-only /sys under the unit without the eBPF drop-in) is a warning, not a failure.
  const auto warn = [](const core::Result<void>& result) {
    if (!result)
      spdlog::warn("ebpf: {}; the maps stay pinned but enforce nothing", result.error().message);
  };
  auto root = pin_root(bpffs);
  if (root) {
    std::error_code error;
    for (const auto& version : std::filesystem::directory_iterator(*root, error)) {
      found = true;
      warn(remove_pin_directory(version.path()));
    }
    for (auto directory = *root; directory != bpffs; directory = directory.parent_path()) {
      // Not there is nothing to remove: on a read-only bpffs rmdir says EROFS before it looks.
      if (std::filesystem::symlink_status(directory, error).type() ==
          std::filesystem::file_type::not_found) {
        continue;
      }
      if (::rmdir(directory.c_str()) == 0 || errno == ENOENT) continue;
      if (errno != ENOTEMPTY && errno != EEXIST) {
        warn(sys::fail_system(core::ErrorCode::io, "remove " + directory.string(), errno));
      }
      break;
    }
  } else {
    note(tl::unexpected(root.error()));
  }
  auto table = nft::remove_conntrack_table();
  note(table);
  if (failure) return tl::unexpected(*failure);
  return found;
}

std::string EbpfBackend::where() const {
  if (impl_->attached.empty()) {
    const std::string names = impl_->options.interfaces.empty()
                                  ? std::string("every interface but loopback")
                                  : join(impl_->options.interfaces);
    return (impl_->options.attach == AttachPoint::tc ? "tc ingress on " : "xdp on ") + names;
  }
  std::map<std::string, std::vector<std::string>> by_place;  // "tc ingress", "xdp (native)"
  for (const auto& [ifindex, attachment] : impl_->attached) {
    const std::string place = attachment.xdp_mode
                                  ? "xdp (" + std::string(to_string(*attachment.xdp_mode)) + ")"
                                  : "tc ingress";
    by_place[place].push_back(attachment.link.name);
  }
  std::string text;
  for (auto& [place, names] : by_place) {
    std::sort(names.begin(), names.end());
    text += (text.empty() ? "" : "; ") + place + " on " + join(names);
  }
  return text;
}

std::string EbpfBackend::protection() const {
  return "maps pinned in " + impl_->pin_directory.string() + "; " +
         (impl_->options.attach == AttachPoint::tc ? "tc filters" : "XDP programs") +
         " outlive jitd";
}

core::Result<bool> EbpfBackend::installed() {
  auto covered = coverage(impl_->options);
  if (!covered) return tl::unexpected(covered.error());
  if (!impl_->enforcing) {
    // Before this process installs, the question is whether an earlier jitd's enforcement is
    // in force (its maps pinned, a program of jitd's on every covered interface): the daemon
    // adopts sessions only where none was, or it would revive sessions that one cut off.
    if (!impl_->maps_reused) return false;
    for (const auto& link : covered->links) {
      if (impl_->options.attach == AttachPoint::tc) {
        auto program = tc_program(link);
        if (!program) return tl::unexpected(program.error());
        if (!*program) return false;
      } else {
        auto program = xdp_program(link);
        if (!program) return tl::unexpected(program.error());
        if (!*program || program_name((*program)->id) != xdp_program_name) {
          return false;
        }
      }
    }
    return true;
  }
  if (!impl_->broken_pins().empty()) return false;
  for (const auto& link : covered->links) {
    auto change = impl_->attachment_change(link);
    if (!change) return tl::unexpected(change.error());
    if (!change->empty()) return false;
  }
  return true;
}

core::Result<std::vector<core::PortCounters>> EbpfBackend::counters() {
  const Map counters(impl_->skeleton->maps.counters);
  auto ports = read_ports(Map(impl_->skeleton->maps.protected_ports));
  if (!ports) return tl::unexpected(ports.error());
  std::vector<jitd_port_counters> per_cpu(impl_->possible_cpus);
  std::vector<core::PortCounters> counted;
  for (const auto& port : *ports) {
    // A port the program has not counted yet (no key) has all four at zero.
    std::fill(per_cpu.begin(), per_cpu.end(), jitd_port_counters{});
    auto found = counters.lookup(encode(port), per_cpu.data(), describe(port));
    if (!found) return tl::unexpected(found.error());
    core::PortCounters sum{port};
    for (const auto& cpu : per_cpu) {
      sum.dropped_packets += cpu.dropped_packets;
      sum.dropped_connections += cpu.dropped_connections;
      sum.admitted_connections += cpu.admitted_connections;
      sum.would_drop_packets += cpu.would_drop_packets;
    }
    counted.push_back(sum);
  }
  return counted;
}

core::Result<std::vector<core::WouldBlock>> EbpfBackend::would_block() {
  auto modes = read_modes(Map(impl_->skeleton->maps.protected_ports));
  if (!modes) return tl::unexpected(modes.error());
  const Map sources(impl_->skeleton->maps.would_block);
  const std::uint64_t now = boottime_ns();
  const std::uint64_t since = now > would_block_window_ns ? now - would_block_window_ns : 0;
  // By source and port: a key listed twice (the walk restarted) counts once.
  std::map<core::ElementKey, std::uint64_t> seen;
  auto listed = sources.for_each_key([&](std::span<const std::uint8_t> key) -> core::Result<void> {
    auto source = decode_source(key);
    if (!source) return tl::unexpected(source.error());
    // Entries of a port no longer audited stay until the LRU pushes them out; they are not
    // what that port would block now.
    const auto mode = modes->find(source->port);
    if (mode == modes->end() || mode->second != JITD_PORT_AUDIT) return {};
    jitd_source_seen value{};
    auto found = sources.lookup(raw_key(key), &value, describe(*source));
    if (!found) return tl::unexpected(found.error());
    if (*found && value.last_seen >= since) seen[*source] = value.packets;
    return {};
  });
  if (!listed) return tl::unexpected(listed.error());
  std::vector<core::WouldBlock> blocked;
  blocked.reserve(seen.size());
  for (const auto& [source, packets] : seen) {
    blocked.push_back({source.source, source.port, packets});
  }
  return blocked;
}

core::Result<std::unique_ptr<core::ChangeWatch>> EbpfBackend::watch() { return open_watch(impl_); }

const KernelFeatures& EbpfBackend::kernel_features() const { return impl_->features; }

std::vector<std::pair<std::string, std::string>> EbpfBackend::features() const {
  const auto& found = impl_->features;
  std::vector<std::pair<std::string, std::string>> pairs{
      {"conntrackKfuncs", found.conntrack_btf + " BTF"},
      {"bpfCtOptsSize", std::to_string(found.ct_opts_size)},
      {"attach", impl_->options.attach == AttachPoint::tc ? "tc" : "xdp"},
      {"pins", impl_->pin_directory.string()}};
  if (!found.xdp_mode.empty()) pairs.emplace_back("xdpMode", found.xdp_mode);
  return pairs;
}

core::Result<std::filesystem::path> EbpfBackend::pin_root(const std::filesystem::path& bpffs) {
  // bpffs belongs to a mount namespace, not a network namespace: the path names the network
  // namespace so two of them never share (and fight over) one set of maps.
  struct stat netns {};
  if (::stat("/proc/self/ns/net", &netns) != 0) {
    return sys::fail_system(core::ErrorCode::io, "stat /proc/self/ns/net", errno);
  }
  return bpffs / "jitd" / std::to_string(netns.st_ino);
}

const std::filesystem::path& EbpfBackend::pin_directory() const { return impl_->pin_directory; }

}  // namespace jitd::ebpf
