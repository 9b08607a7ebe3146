#include "jitd/daemon/backends.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "jitd/ebpf/ebpf_backend.hpp"
#include "jitd/nft/nft_backend.hpp"

namespace jitd::daemon {
namespace {

ebpf::EbpfOptions ebpf_options(const config::MainConfig& settings) {
  return ebpf::EbpfOptions{settings.interfaces,
                           settings.attach == config::Attach::xdp ? ebpf::AttachPoint::xdp
                                                                  : ebpf::AttachPoint::tc,
                           settings.bpf_filesystem};
}

// Removes one backend's enforcement if it is in the kernel; "" when there was none.
core::Result<std::string> remove_if_present(config::Enforcement kind,
                                            const config::MainConfig& settings) {
  if (kind == config::Enforcement::nftables) {
    auto nft = nft::NftBackend::open(settings.nft_table, /*claim_ownership=*/false);
    if (!nft) return tl::unexpected(nft.error());
    auto present = (*nft)->installed();
    if (!present) return tl::unexpected(present.error());
    if (!*present) return std::string();
    if (auto removed = (*nft)->uninstall(); !removed) return tl::unexpected(removed.error());
    return (*nft)->where();
  }
  // Nothing pinned for this namespace: the eBPF backend never ran here (and a kernel without
  // what it needs must not stop the removal of the other backend).
  const auto pins = ebpf::EbpfBackend::pin_root(settings.bpf_filesystem);
  std::error_code error;
  if (!pins || !std::filesystem::exists(*pins, error)) return std::string();
  auto bpf = ebpf::EbpfBackend::open(ebpf_options(settings));
  if (!bpf) {
    // Typically the packaged unit after its eBPF drop-in was removed first: no bpf(2), no
    // CAP_BPF, a read-only bpffs. The program then stays attached with its maps as they were.
    core::Error error = bpf.error();
    error.message = "the eBPF program and pins in " + pins->string() + " stay: " + error.message +
                    " (under systemd: switch back to nftables while the drop-in jitd-ebpf.conf "
                    "is still installed, then remove it)";
    return tl::unexpected(std::move(error));
  }
  const auto where = (*bpf)->where();
  if (auto removed = (*bpf)->uninstall(); !removed) return tl::unexpected(removed.error());
  return where;
}

}  // namespace

core::Result<std::unique_ptr<core::KernelBackend>> open_backend(
    const config::MainConfig& settings) {
  if (settings.backend == config::Enforcement::ebpf) {
    auto opened = ebpf::EbpfBackend::open(ebpf_options(settings));
    if (!opened) return tl::unexpected(opened.error());
    return std::unique_ptr<core::KernelBackend>(std::move(*opened));
  }
  auto opened = nft::NftBackend::open(settings.nft_table, settings.claim_table_ownership);
  if (!opened) return tl::unexpected(opened.error());
  return std::unique_ptr<core::KernelBackend>(std::move(*opened));
}

core::Result<std::string> remove_other_backend(const config::MainConfig& settings) {
  return remove_if_present(settings.backend == config::Enforcement::ebpf
                               ? config::Enforcement::nftables
                               : config::Enforcement::ebpf,
                           settings);
}

core::Result<std::vector<std::string>> remove_all_backends(const config::MainConfig& settings) {
  std::vector<std::string> removed;
  for (const auto kind : {config::Enforcement::nftables, config::Enforcement::ebpf}) {
    auto done = remove_if_present(kind, settings);
    if (!done) return tl::unexpected(done.error());
    if (!done->empty()) removed.push_back(std::move(*done));
  }
  return removed;
}

}  // namespace jitd::daemon
