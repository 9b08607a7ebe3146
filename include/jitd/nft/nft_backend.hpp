#pragma once
// nftables backend over libmnl + libnftnl: no nft process, no libnftables text.
// Every change is one netlink batch whose ACKs are all read.
#include <memory>
#include <string>

#include "jitd/core/backend.hpp"

namespace jitd::nft {

// Watches netfilter's netlink events (NFNLGRP_NFTABLES) for changes to jitd's table made
// by anyone else (`nft flush ruleset`, `nft delete table`, a flushed set, a reloaded
// nftables.service), so the daemon can restore it at once instead of polling.
class RulesetMonitor final : public core::ChangeWatch {
 public:
  ~RulesetMonitor() override;
  RulesetMonitor(const RulesetMonitor&) = delete;
  RulesetMonitor& operator=(const RulesetMonitor&) = delete;

  // For the daemon's event loop: readable when events are pending.
  [[nodiscard]] int fd() const override;
  // Reads every pending event without blocking. Returns a description of the first foreign
  // change to our table ("table deleted", "set grants4: elements deleted", ...), or an empty
  // string when nothing foreign happened. Our own transactions are recognised by the
  // sender's netlink port id and ignored. An overrun (ENOBUFS, a truncated datagram) is
  // reported apart: events were lost, so the table must be read back and checked (a large
  // install of jitd's own overruns the queue too).
  [[nodiscard]] core::Result<core::ForeignChanges> drain() override;

  struct Impl;

 private:
  friend class NftBackend;
  friend core::Result<std::unique_ptr<RulesetMonitor>> watch_conntrack_table();
  explicit RulesetMonitor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class NftBackend final : public core::KernelBackend {
 public:
  // Opens the netlink socket in the caller's network namespace. With `claim_ownership`,
  // probes the kernel for owner + persist table flags (Linux 6.9+) and, where present,
  // creates the table owned by this process and persistent: other tools can then neither
  // delete nor change it, `flush ruleset` skips it, and it outlives jitd. The probe uses a
  // scratch table with a unique name that is deleted in the same transaction.
  [[nodiscard]] static core::Result<std::unique_ptr<NftBackend>> open(std::string table_name,
                                                                      bool claim_ownership);
  ~NftBackend() override;
  NftBackend(const NftBackend&) = delete;
  NftBackend& operator=(const NftBackend&) = delete;

  [[nodiscard]] core::Result<void> install(const core::EnforcementSpec& spec) override;
  [[nodiscard]] core::Result<void> apply(const core::ElementChanges& changes) override;
  [[nodiscard]] core::Result<core::KernelSnapshot> snapshot() override;
  // Whether jitd's table exists, without reading its elements (snapshot() reads them all).
  [[nodiscard]] core::Result<bool> table_installed();
  [[nodiscard]] core::Result<void> uninstall() override;

  // Whether the table is created with owner + persist (probed at open).
  [[nodiscard]] bool owns_table() const;
  [[nodiscard]] core::Result<std::unique_ptr<RulesetMonitor>> open_monitor() const;

  [[nodiscard]] std::string_view name() const override { return "nftables"; }
  [[nodiscard]] std::string where() const override;
  [[nodiscard]] std::string protection() const override;
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> features() const override;
  [[nodiscard]] core::Result<bool> installed() override { return table_installed(); }
  // The counter of each element of the set `protected`: the drop rule's lookup is the only
  // one that matches it (the earlier one is inverted), so it counts exactly the drops.
  [[nodiscard]] core::Result<std::vector<core::PortCounters>> counters() override;
  [[nodiscard]] core::Result<std::vector<core::WouldBlock>> would_block() override;
  [[nodiscard]] core::Result<std::unique_ptr<core::ChangeWatch>> watch() override;

 private:
  struct Impl;
  explicit NftBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace jitd::nft
