#include "jitd/nft/nft_backend.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>

#include "monitor.hpp"
#include "netlink.hpp"
#include "ruleset.hpp"

namespace jitd::nft {
namespace {

// The kernel treats a zero timeout as "never expires", which a grant must not be.
core::Result<void> check_timeouts(const std::vector<core::TimedElement>& grants) {
  const bool all_positive = std::all_of(grants.begin(), grants.end(), [](const auto& grant) {
    return grant.timeout > core::Milliseconds(0);
  });
  if (all_positive) return {};
  return core::fail(core::ErrorCode::invalid_argument, "grant element without a positive timeout");
}

// Whether the kernel has owner + persist table flags (Linux 6.9+): one transaction adds a
// scratch table with both and deletes it again, so nothing is left behind either way.
core::Result<bool> probe_ownership(Netlink& netlink) {
  static std::atomic<unsigned> counter{0};
  const std::string name =
      "jitd-probe-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
  Batch batch = netlink.batch();
  TableWriter writer(batch, name);
  writer.add_table(owned_table_flags);
  writer.delete_table();
  auto probed = netlink.commit(std::move(batch));
  if (probed) return true;
  // Older kernels reject unknown table flags.
  const int error = probed.error().sys_errno;
  if (error == EOPNOTSUPP || error == EINVAL) return false;
  return tl::unexpected(probed.error());
}

}  // namespace

struct NftBackend::Impl {
  Netlink netlink;
  std::string table;
  bool claim_ownership = false;
  bool owns_table = false;

  // With owner + persist flags only our socket may change the table; the kernel refuses
  // anyone else with EPERM, which is then explained with the owner's port id.
  core::Result<void> commit(Batch batch) {
    auto committed = netlink.commit(std::move(batch));
    if (committed || committed.error().sys_errno != EPERM) return committed;
    auto current = get_table();
    if (!current || !*current) return committed;
    const nftnl_table* found = current->value().get();
    const std::uint32_t owner = nftnl_table_get_u32(found, NFTNL_TABLE_OWNER);
    if (!(nftnl_table_get_u32(found, NFTNL_TABLE_FLAGS) & NFT_TABLE_F_OWNER) ||
        owner == netlink.portid()) {
      return committed;
    }
    core::Error refused = committed.error();
    refused.message += ": another process owns table inet " + table + " (netlink port " +
                       std::to_string(owner) + ")";
    return tl::unexpected(std::move(refused));
  }

  core::Result<void> apply_once(const core::ElementChanges& changes) {
    Batch batch = netlink.batch();
    TableWriter writer(batch, table);
    writer.delete_grants(changes.remove);
    writer.add_grants(changes.add);
    return commit(std::move(batch));
  }

  // The table as the kernel reports it (flags, owner), or nullopt when it does not exist.
  core::Result<std::optional<Table>> get_table() {
    auto request = allocate<Table>(nftnl_table_alloc());
    nftnl_table_set_str(request.get(), NFTNL_TABLE_NAME, table.c_str());
    auto reply = allocate<Table>(nftnl_table_alloc());
    auto found = netlink.query(
        NFT_MSG_GETTABLE, NFPROTO_INET, Netlink::Request::get,
        [&](nlmsghdr* header) { nftnl_table_nlmsg_build_payload(header, request.get()); },
        [&](const nlmsghdr* header) { return nftnl_table_nlmsg_parse(header, reply.get()) >= 0; },
        "get table inet " + table);
    if (found) return std::optional<Table>(std::move(reply));
    if (found.error().sys_errno == ENOENT) return std::nullopt;
    return tl::unexpected(found.error());
  }

  core::Result<Set> dump(SetKind kind) {
    return dump_set(netlink, NFPROTO_INET, table, std::string(set_name(kind)));
  }

  // The elements of a grant or allow set, sorted.
  core::Result<std::vector<core::TimedElement>> read_elements(SetKind kind) {
    auto set = dump(kind);
    if (!set) return tl::unexpected(set.error());
    std::vector<core::TimedElement> elements;
    for (nftnl_set_elem* element : elements_of(*set)) {
      auto decoded = decode_element(kind, element);
      if (!decoded) return tl::unexpected(decoded.error());
      elements.push_back(*decoded);
    }
    std::sort(elements.begin(), elements.end());
    return elements;
  }

  // The kernel resizes a hash set in a worker whenever inserts or removals cross a load
  // threshold, and continues a dump in each further netlink message by skipping as many
  // elements as it has sent: a resize in between skips some elements and repeats others. So a
  // dump counts only when no key repeats and the next dump lists the same keys.
  core::Result<std::vector<core::TimedElement>> read_hash_set(SetKind kind) {
    constexpr int attempts = 8;
    std::optional<std::vector<core::ElementKey>> previous;
    for (int attempt = 0; attempt < attempts; ++attempt) {
      auto elements = read_elements(kind);
      if (!elements) return elements;
      std::vector<core::ElementKey> keys;
      keys.reserve(elements->size());
      for (const auto& element : *elements) keys.push_back(element.key);
      const bool repeated = std::adjacent_find(keys.begin(), keys.end()) != keys.end();
      if (!repeated && previous == keys) return elements;
      if (repeated) {
        previous.reset();
      } else {
        previous = std::move(keys);
      }
    }
    return core::fail(core::ErrorCode::kernel,
                      "list set inet " + table + " " + std::string(set_name(kind)) +
                          ": the set kept changing while it was read",
                      EAGAIN);
  }
};

NftBackend::NftBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NftBackend::~NftBackend() = default;

core::Result<std::unique_ptr<NftBackend>> NftBackend::open(std::string table_name,
                                                           bool claim_ownership) {
  auto netlink = Netlink::open();
  if (!netlink) return tl::unexpected(netlink.error());
  bool owns_table = false;
  if (claim_ownership) {
    auto probed = probe_ownership(*netlink);
    if (!probed) return tl::unexpected(probed.error());
    owns_table = *probed;
  }
  auto impl = std::make_unique<Impl>(
      Impl{std::move(*netlink), std::move(table_name), claim_ownership, owns_table});
  return std::unique_ptr<NftBackend>(new NftBackend(std::move(impl)));
}

core::Result<void> NftBackend::install(const core::EnforcementSpec& spec) {
  if (auto checked = check_timeouts(spec.grants); !checked) return checked;
  Batch batch = impl_->netlink.batch();
  TableWriter writer(batch, impl_->table);
  // Adding first makes the delete valid whether or not an old table exists. That add has no
  // flags: with owner flags it would fail on an existing unowned table (EOPNOTSUPP). This way
  // an unowned table, ours, or one orphaned by a dead jitd is replaced by a new one, owned
  // when owns_table. Another owner's table fails the add with EPERM.
  writer.add_table();
  writer.delete_table();
  writer.add_table(impl_->owns_table ? owned_table_flags : 0);
  writer.add_sets();
  writer.add_chain();
  writer.add_ports(spec.protected_ports, spec.audited_ports);
  writer.add_permanent(spec.permanent);
  writer.add_grants(spec.grants);
  return impl_->commit(std::move(batch));
}

core::Result<void> NftBackend::apply(const core::ElementChanges& changes) {
  if (changes.empty()) return {};
  if (auto checked = check_timeouts(changes.add); !checked) return checked;
  auto applied = impl_->apply_once(changes);
  if (applied || applied.error().sys_errno != ENOENT || changes.remove.empty()) return applied;

  // A removal may name a grant the kernel has already expired: drop those and retry once.
  auto current = snapshot();
  if (!current) return tl::unexpected(current.error());
  std::set<core::ElementKey> present;
  for (const auto& grant : current->grants) present.insert(grant.key);
  core::ElementChanges retry{.remove = {}, .add = changes.add};
  std::copy_if(changes.remove.begin(), changes.remove.end(), std::back_inserter(retry.remove),
               [&](const core::ElementKey& key) { return present.contains(key); });
  if (retry.remove.size() == changes.remove.size()) return applied;
  return impl_->apply_once(retry);
}

core::Result<bool> NftBackend::table_installed() {
  auto table = impl_->get_table();
  if (!table) return tl::unexpected(table.error());
  return table->has_value();
}

core::Result<core::KernelSnapshot> NftBackend::snapshot() {
  core::KernelSnapshot snapshot;
  auto table = impl_->get_table();
  if (!table) return tl::unexpected(table.error());
  if (!*table) return snapshot;
  snapshot.installed = true;

  for (const auto& [kind, ports] : {std::pair{SetKind::protected_ports, &snapshot.protected_ports},
                                    std::pair{SetKind::audited, &snapshot.audited_ports}}) {
    auto set = impl_->dump(kind);
    if (!set) return tl::unexpected(set.error());
    for (nftnl_set_elem* element : elements_of(*set)) {
      auto port = decode_port(kind, element);
      if (!port) return tl::unexpected(port.error());
      ports->push_back(*port);
    }
  }
  for (const SetKind kind : source_sets) {
    auto elements = is_hash_set(kind) ? impl_->read_hash_set(kind) : impl_->read_elements(kind);
    if (!elements) return tl::unexpected(elements.error());
    // Both grant sets of a family merge into one list: the split is the backend's own.
    for (const auto& element : *elements) {
      if (is_grant_set(kind)) {
        snapshot.grants.push_back(element);
      } else {
        snapshot.permanent.push_back(element.key);
      }
    }
  }
  // Dump order is the kernel's; sorted output keeps comparisons simple for callers.
  std::sort(snapshot.protected_ports.begin(), snapshot.protected_ports.end());
  std::sort(snapshot.audited_ports.begin(), snapshot.audited_ports.end());
  std::sort(snapshot.permanent.begin(), snapshot.permanent.end());
  std::sort(snapshot.grants.begin(), snapshot.grants.end());
  return snapshot;
}

core::Result<void> NftBackend::uninstall() {
  Batch batch = impl_->netlink.batch();
  TableWriter(batch, impl_->table).delete_table();
  auto removed = impl_->commit(std::move(batch));
  if (!removed && removed.error().sys_errno == ENOENT) return {};
  return removed;
}

bool NftBackend::owns_table() const { return impl_->owns_table; }

std::string NftBackend::where() const { return "table inet " + impl_->table; }

std::string NftBackend::protection() const {
  return impl_->owns_table ? "owned by jitd and persistent (owner + persist flags)"
                           : "not owned (self-healing only)";
}

std::vector<std::pair<std::string, std::string>> NftBackend::features() const {
  return {{"tableOwnership", impl_->owns_table        ? "owner + persist"
                             : impl_->claim_ownership ? "unavailable (Linux < 6.9)"
                                                      : "off"}};
}

core::Result<std::vector<core::PortCounters>> NftBackend::counters() {
  // Every protected port is in `protected`; the other sets hold it too (audited: when audited).
  std::map<core::PortKey, core::PortCounters> counted;
  for (const SetKind kind : counter_sets) {
    auto set = impl_->dump(kind);
    if (!set) return tl::unexpected(set.error());
    for (nftnl_set_elem* element : elements_of(*set)) {
      auto port = decode_port(kind, element);
      if (!port) return tl::unexpected(port.error());
      auto& counters = counted.try_emplace(*port, core::PortCounters{*port}).first->second;
      const std::uint64_t packets = counted_packets(element);
      switch (kind) {
        case SetKind::protected_ports: counters.dropped_packets = packets; break;
        case SetKind::dropped_new: counters.dropped_connections = packets; break;
        case SetKind::admitted: counters.admitted_connections = packets; break;
        default: counters.would_drop_packets = packets; break;
      }
    }
  }
  std::vector<core::PortCounters> result;
  for (auto& [port, counters] : counted) result.push_back(counters);
  return result;
}

core::Result<std::vector<core::WouldBlock>> NftBackend::would_block() {
  std::vector<core::WouldBlock> sources;
  for (const SetKind kind : would_block_sets) {
    auto set = impl_->dump(kind);
    if (!set) return tl::unexpected(set.error());
    for (nftnl_set_elem* element : elements_of(*set)) {
      auto decoded = decode_element(kind, element);
      if (!decoded) return tl::unexpected(decoded.error());
      sources.push_back({decoded->key.source, decoded->key.port, counted_packets(element)});
    }
  }
  // A hash set resized during the dump may list an element twice (see read_hash_set); an
  // approximate list is good enough here, a repeated source is not.
  std::sort(sources.begin(), sources.end());
  const auto same = [](const core::WouldBlock& a, const core::WouldBlock& b) {
    return a.source == b.source && a.port == b.port;
  };
  sources.erase(std::unique(sources.begin(), sources.end(), same), sources.end());
  return sources;
}

core::Result<std::unique_ptr<core::ChangeWatch>> NftBackend::watch() {
  auto monitor = open_monitor();
  if (!monitor) return tl::unexpected(monitor.error());
  return std::unique_ptr<core::ChangeWatch>(std::move(*monitor));
}

core::Result<std::unique_ptr<RulesetMonitor>> NftBackend::open_monitor() const {
  auto impl = RulesetMonitor::Impl::open(impl_->table, impl_->netlink.portid());
  if (!impl) return tl::unexpected(impl.error());
  return std::unique_ptr<RulesetMonitor>(new RulesetMonitor(std::move(*impl)));
}

}  // namespace jitd::nft
