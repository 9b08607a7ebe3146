#pragma once
// The eBPF backend: jitd's program (bpf/jitd.bpf.c) at tc ingress (clsact) or XDP on the
// namespace's interfaces, with its maps pinned under
// <bpffs>/jitd/<netns inode>/v<layout version>/ so a restarted jitd reuses them: grants
// survive and protection never lapses. The program judges only packets addressed to this
// host, passes established flows (conntrack kfuncs) and expires grants itself (end times on
// CLOCK_BOOTTIME), so enforcement needs no daemon. docs/ebpf.md describes it.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "jitd/core/backend.hpp"

namespace jitd::ebpf {

enum class AttachPoint { tc, xdp };

struct EbpfOptions {
  // Interface names; empty: every interface of the namespace but loopback, including ones
  // that appear later. Loopback is never filtered.
  std::vector<std::string> interfaces;
  AttachPoint attach = AttachPoint::tc;
  // Where a bpffs is (or is mounted, when nothing is): pins go to <bpffs>/jitd/...
  std::filesystem::path bpffs = "/sys/fs/bpf";
};

// What the start-up probe found; logged once.
struct KernelFeatures {
  std::string conntrack_btf;  // "vmlinux" or the module ("nf_conntrack") whose BTF has the kfuncs
  std::uint32_t ct_opts_size = 0;  // sizeof(struct bpf_ct_opts) the kernel takes: 12 or 16
  std::string xdp_mode;  // "native", "generic" or "native and generic" once attached with xdp
  [[nodiscard]] std::string describe() const;
};

class EbpfBackend final : public core::KernelBackend {
 public:
  // Probes the kernel (BTF, conntrack kfuncs and bpf_ct_opts size, CAP_BPF, bpffs), makes
  // conntrack active in the namespace, loads the program (reusing pinned maps of this layout)
  // and opens what it needs. Nothing is attached before install(). An error names what is
  // missing: jitd then refuses to start rather than run unprotected.
  [[nodiscard]] static core::Result<std::unique_ptr<EbpfBackend>> open(EbpfOptions options);
  ~EbpfBackend() override;
  EbpfBackend(const EbpfBackend&) = delete;
  EbpfBackend& operator=(const EbpfBackend&) = delete;

  [[nodiscard]] core::Result<void> install(const core::EnforcementSpec& spec) override;
  [[nodiscard]] core::Result<void> apply(const core::ElementChanges& changes) override;
  [[nodiscard]] core::Result<core::KernelSnapshot> snapshot() override;
  [[nodiscard]] core::Result<void> uninstall() override;

  [[nodiscard]] std::string_view name() const override { return "ebpf"; }
  [[nodiscard]] std::string where() const override;
  [[nodiscard]] std::string protection() const override;
  [[nodiscard]] core::Result<bool> installed() override;
  [[nodiscard]] core::Result<std::vector<core::PortCounters>> counters() override;
  [[nodiscard]] core::Result<std::vector<core::WouldBlock>> would_block() override;
  [[nodiscard]] core::Result<std::unique_ptr<core::ChangeWatch>> watch() override;

  [[nodiscard]] std::vector<std::pair<std::string, std::string>> features() const override;

  [[nodiscard]] const KernelFeatures& kernel_features() const;
  // <bpffs>/jitd/<netns inode>/v<layout version>
  [[nodiscard]] const std::filesystem::path& pin_directory() const;
  // Removes jitd's eBPF enforcement from the caller's network namespace without loading
  // anything: its tc filters and XDP programs on every interface, the pins of every layout
  // version under pin_root(bpffs), the conntrack table. For a switch back to nftables and for
  // --uninstall. Whether anything of it was there.
  [[nodiscard]] static core::Result<bool> remove_installed(const std::filesystem::path& bpffs);
  // <bpffs>/jitd/<inode of the caller's network namespace>: every layout version's pins.
  [[nodiscard]] static core::Result<std::filesystem::path> pin_root(
      const std::filesystem::path& bpffs);

  // Shared with the change watches; a watch drained after its backend is gone says so.
  struct Impl;

 private:
  explicit EbpfBackend(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace jitd::ebpf
