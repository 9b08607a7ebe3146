#include "jitd/nft/nft_backend.hpp"

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <set>
#include <utility>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>

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

// Elements of a dumped set; they stay owned by the set.
std::vector<nftnl_set_elem*> elements_of(const Set& set) {
  std::vector<nftnl_set_elem*> elements;
  nftnl_set_elem_foreach(
      set.get(),
      [](nftnl_set_elem* element, void* data) {
        static_cast<std::vector<nftnl_set_elem*>*>(data)->push_back(element);
        return 0;
      },
      &elements);
  return elements;
}

}  // namespace

struct NftBackend::Impl {
  Netlink netlink;
  std::string table;

  core::Result<void> apply_once(const core::ElementChanges& changes) {
    Batch batch = netlink.batch();
    TableWriter writer(batch, table);
    writer.delete_grants(changes.remove);
    writer.add_grants(changes.add);
    return netlink.commit(std::move(batch));
  }

  core::Result<bool> table_exists() {
    auto request = allocate<Table>(nftnl_table_alloc());
    nftnl_table_set_str(request.get(), NFTNL_TABLE_NAME, table.c_str());
    auto found = netlink.query(
        NFT_MSG_GETTABLE, NFPROTO_INET, Netlink::Request::get,
        [&](nlmsghdr* header) { nftnl_table_nlmsg_build_payload(header, request.get()); },
        [](const nlmsghdr*) { return true; }, "get table inet " + table);
    if (found) return true;
    if (found.error().sys_errno == ENOENT) return false;
    return tl::unexpected(found.error());
  }

  core::Result<Set> dump(SetKind kind) {
    auto set = allocate<Set>(nftnl_set_alloc());
    nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, table.c_str());
    nftnl_set_set_str(set.get(), NFTNL_SET_NAME, std::string(set_name(kind)).c_str());
    auto dumped = netlink.query(
        NFT_MSG_GETSETELEM, NFPROTO_INET, Netlink::Request::dump,
        [&](nlmsghdr* header) { nftnl_set_elems_nlmsg_build_payload(header, set.get()); },
        [&](const nlmsghdr* reply) { return nftnl_set_elems_nlmsg_parse(reply, set.get()) >= 0; },
        "list set inet " + table + " " + std::string(set_name(kind)));
    if (!dumped) return tl::unexpected(dumped.error());
    return set;
  }
};

NftBackend::NftBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NftBackend::~NftBackend() = default;

core::Result<std::unique_ptr<NftBackend>> NftBackend::open(std::string table_name) {
  auto netlink = Netlink::open();
  if (!netlink) return tl::unexpected(netlink.error());
  auto impl = std::make_unique<Impl>(Impl{std::move(*netlink), std::move(table_name)});
  return std::unique_ptr<NftBackend>(new NftBackend(std::move(impl)));
}

core::Result<void> NftBackend::install(const core::EnforcementSpec& spec) {
  if (auto checked = check_timeouts(spec.grants); !checked) return checked;
  Batch batch = impl_->netlink.batch();
  TableWriter writer(batch, impl_->table);
  // Adding first makes the delete valid whether or not an old table exists.
  writer.add_table();
  writer.delete_table();
  writer.add_table();
  writer.add_sets();
  writer.add_chain();
  writer.add_protected(spec.protected_ports);
  writer.add_permanent(spec.permanent);
  writer.add_grants(spec.grants);
  return impl_->netlink.commit(std::move(batch));
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

core::Result<core::KernelSnapshot> NftBackend::snapshot() {
  core::KernelSnapshot snapshot;
  auto exists = impl_->table_exists();
  if (!exists) return tl::unexpected(exists.error());
  if (!*exists) return snapshot;
  snapshot.installed = true;

  for (const SetKind kind : all_sets) {
    auto set = impl_->dump(kind);
    if (!set) return tl::unexpected(set.error());
    for (nftnl_set_elem* element : elements_of(*set)) {
      if (kind == SetKind::protected_ports) {
        auto port = decode_port(element);
        if (!port) return tl::unexpected(port.error());
        snapshot.protected_ports.push_back(*port);
        continue;
      }
      auto decoded = decode_element(kind, element);
      if (!decoded) return tl::unexpected(decoded.error());
      if (kind == SetKind::grants4 || kind == SetKind::grants6) {
        snapshot.grants.push_back(*decoded);
      } else {
        snapshot.permanent.push_back(decoded->key);
      }
    }
  }
  // Dump order is the kernel's; sorted output keeps comparisons simple for callers.
  std::sort(snapshot.protected_ports.begin(), snapshot.protected_ports.end());
  std::sort(snapshot.permanent.begin(), snapshot.permanent.end());
  std::sort(snapshot.grants.begin(), snapshot.grants.end());
  return snapshot;
}

core::Result<void> NftBackend::uninstall() {
  Batch batch = impl_->netlink.batch();
  TableWriter(batch, impl_->table).delete_table();
  auto removed = impl_->netlink.commit(std::move(batch));
  if (!removed && removed.error().sys_errno == ENOENT) return {};
  return removed;
}

}  // namespace jitd::nft
