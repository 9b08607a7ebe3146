#pragma once
// jitd's elements in the maps' terms (bpf/jitd_abi.h): an address range becomes the CIDR
// prefixes that cover exactly it, one LPM trie entry each; entries read back become ranges
// again.
#include <linux/types.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "jitd/core/backend.hpp"
#include "jitd_abi.h"

namespace jitd::ebpf {

// One LPM trie entry's key: a CIDR prefix of one (protocol, port).
struct LpmPrefix {
  core::PortKey port;
  core::Family family = core::Family::ipv4;
  core::AddressValue address = 0;  // host bits zero
  unsigned length = 0;             // of the address alone, 0..32 or 0..128
  auto operator<=>(const LpmPrefix&) const = default;
};

// A map key as the kernel takes it.
struct RawKey {
  std::array<std::uint8_t, sizeof(jitd_lpm_key6)> bytes{};
  std::uint32_t size = 0;
  [[nodiscard]] const void* data() const { return bytes.data(); }
  auto operator<=>(const RawKey&) const = default;
};

// The fewest CIDR prefixes that together cover exactly the key's range, in address order.
[[nodiscard]] std::vector<LpmPrefix> split(const core::ElementKey& key);
[[nodiscard]] core::AddressRange range_of(const LpmPrefix& prefix);
// "203.0.113.0/24 udp/53", for error messages.
[[nodiscard]] std::string describe(const LpmPrefix& prefix);

[[nodiscard]] RawKey encode(const LpmPrefix& prefix);
// An entry of allow4/grants4 (ipv4) or allow6/grants6 (ipv6) as read from the kernel.
[[nodiscard]] core::Result<LpmPrefix> decode(core::Family family,
                                             std::span<const std::uint8_t> key);

[[nodiscard]] RawKey encode(const core::PortKey& port);
[[nodiscard]] core::Result<core::PortKey> decode_port(std::span<const std::uint8_t> key);

// A would_block key (one address of one (protocol, port)) as jitd's element.
[[nodiscard]] core::Result<core::ElementKey> decode_source(std::span<const std::uint8_t> key);
// "198.51.100.7 tcp/22", for error messages.
[[nodiscard]] std::string describe(const core::ElementKey& source);

// A key as listed from a map, to look it up again.
[[nodiscard]] RawKey raw_key(std::span<const std::uint8_t> key);

// Entries of one trie back as ranges: adjacent prefixes of one (protocol, port) with the same
// value join into one range, so a range installed as several prefixes reads back as itself.
// Sorted by port, then address.
[[nodiscard]] std::vector<std::pair<core::ElementKey, std::uint64_t>> merge(
    std::vector<std::pair<LpmPrefix, std::uint64_t>> entries);

}  // namespace jitd::ebpf
