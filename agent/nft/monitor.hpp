#pragma once
// RulesetMonitor's state; NftBackend opens monitors, so it needs the complete type.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "handles.hpp"
#include "jitd/nft/nft_backend.hpp"

namespace jitd::nft {

struct RulesetMonitor::Impl {
  // Subscribes to nf_tables events in the caller's network namespace. Events sent on behalf
  // of `own_portid` (the backend's socket) are ours.
  static core::Result<std::unique_ptr<Impl>> open(std::string table, std::uint32_t own_portid);

  core::Result<core::ForeignChanges> drain();

  MnlSocket socket;
  std::string table;
  std::uint32_t own_portid;
  std::vector<char> buffer;
};

}  // namespace jitd::nft
