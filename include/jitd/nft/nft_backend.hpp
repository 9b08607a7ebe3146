#pragma once
// nftables backend over libmnl + libnftnl: no nft process, no libnftables text.
// Every change is one netlink batch whose ACKs are all read.
#include <memory>
#include <string>

#include "jitd/core/backend.hpp"

namespace jitd::nft {

class NftBackend final : public core::Backend {
 public:
  // Opens the netlink socket in the caller's network namespace.
  [[nodiscard]] static core::Result<std::unique_ptr<NftBackend>> open(std::string table_name);
  ~NftBackend() override;
  NftBackend(const NftBackend&) = delete;
  NftBackend& operator=(const NftBackend&) = delete;

  [[nodiscard]] core::Result<void> install(const core::EnforcementSpec& spec) override;
  [[nodiscard]] core::Result<void> apply(const core::ElementChanges& changes) override;
  [[nodiscard]] core::Result<core::KernelSnapshot> snapshot() override;
  [[nodiscard]] core::Result<void> uninstall() override;

 private:
  struct Impl;
  explicit NftBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace jitd::nft
