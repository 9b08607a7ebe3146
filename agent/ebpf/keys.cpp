#include "keys.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

#include "jitd/core/ranges.hpp"

namespace jitd::ebpf {
namespace {

// The addresses a prefix of this many host bits spans, less one (a 128-bit shift would be
// undefined).
core::AddressValue span_below(unsigned host_bits) {
  return host_bits >= 128 ? ~core::AddressValue{0} : (core::AddressValue{1} << host_bits) - 1;
}

unsigned trailing_zeros(core::AddressValue value, unsigned bits) {
  if (value == 0) return bits;
  const auto low = static_cast<std::uint64_t>(value);
  if (low != 0) return static_cast<unsigned>(std::countr_zero(low));
  return 64 + static_cast<unsigned>(std::countr_zero(static_cast<std::uint64_t>(value >> 64)));
}

std::size_t address_bytes(core::Family family) { return family == core::Family::ipv4 ? 4 : 16; }

core::Error malformed(core::Family family, const std::string& why) {
  return core::Error{core::ErrorCode::kernel,
                     std::string("decode ") + (family == core::Family::ipv4 ? "IPv4" : "IPv6") +
                         " trie entry: " + why,
                     EPROTO};
}

// A map key's protocol and port (network byte order) as jitd's; `what` names the key in errors.
core::Result<core::PortKey> port_of(__u8 protocol, __u16 port, const char* what) {
  if (protocol != static_cast<__u8>(core::Protocol::tcp) &&
      protocol != static_cast<__u8>(core::Protocol::udp)) {
    return core::fail(core::ErrorCode::kernel,
                      std::string("decode ") + what + ": protocol " + std::to_string(protocol),
                      EPROTO);
  }
  return core::PortKey{static_cast<core::Protocol>(protocol), ntohs(port)};
}

}  // namespace

std::vector<LpmPrefix> split(const core::ElementKey& key) {
  const auto& [family, first, last] = key.source;
  const unsigned bits = core::address_bits(family);
  std::vector<LpmPrefix> prefixes;
  core::AddressValue next = first;
  for (;;) {
    // The widest block that starts at `next`, is aligned there and ends within the range.
    unsigned host_bits = trailing_zeros(next, bits);
    while (span_below(host_bits) > last - next) --host_bits;
    prefixes.push_back(LpmPrefix{key.port, family, next, bits - host_bits});
    const core::AddressValue end = next + span_below(host_bits);
    if (end >= last) return prefixes;
    next = end + 1;
  }
}

core::AddressRange range_of(const LpmPrefix& prefix) {
  const unsigned host_bits = core::address_bits(prefix.family) - prefix.length;
  return core::AddressRange{prefix.family, prefix.address, prefix.address + span_below(host_bits)};
}

std::string describe(const LpmPrefix& prefix) {
  return core::address_to_string(prefix.family, prefix.address) + "/" +
         std::to_string(prefix.length) + " " + std::string(core::to_string(prefix.port.protocol)) +
         "/" + std::to_string(prefix.port.port);
}

RawKey encode(const LpmPrefix& prefix) {
  const std::size_t size = address_bytes(prefix.family);
  std::array<std::uint8_t, 16> address{};
  for (std::size_t i = 0; i < size; ++i) {
    address[i] = static_cast<std::uint8_t>(prefix.address >> (8 * (size - 1 - i)));
  }
  const __u32 prefixlen = JITD_LPM_PORT_BITS + prefix.length;
  const __u16 port = htons(prefix.port.port);
  RawKey raw;
  if (prefix.family == core::Family::ipv4) {
    jitd_lpm_key4 key{prefixlen, static_cast<__u8>(prefix.port.protocol), 0, port, {}};
    std::memcpy(key.addr, address.data(), sizeof key.addr);
    std::memcpy(raw.bytes.data(), &key, sizeof key);
    raw.size = sizeof key;
  } else {
    jitd_lpm_key6 key{prefixlen, static_cast<__u8>(prefix.port.protocol), 0, port, {}};
    std::memcpy(key.addr, address.data(), sizeof key.addr);
    std::memcpy(raw.bytes.data(), &key, sizeof key);
    raw.size = sizeof key;
  }
  return raw;
}

core::Result<LpmPrefix> decode(core::Family family, std::span<const std::uint8_t> key) {
  // Both key layouts share their first 8 bytes; the address follows.
  const std::size_t size = address_bytes(family);
  const std::size_t expected =
      family == core::Family::ipv4 ? sizeof(jitd_lpm_key4) : sizeof(jitd_lpm_key6);
  if (key.size() != expected) return tl::unexpected(malformed(family, "unexpected key size"));
  jitd_lpm_key4 head{};
  std::memcpy(&head, key.data(), offsetof(jitd_lpm_key4, addr));
  const unsigned bits = core::address_bits(family);
  // The port fields must always match in full; an entry that does not cover them (written by
  // someone else) means nothing to jitd.
  if (head.prefixlen < JITD_LPM_PORT_BITS || head.prefixlen > JITD_LPM_PORT_BITS + bits) {
    return tl::unexpected(
        malformed(family, "prefix length " + std::to_string(head.prefixlen) + " out of range"));
  }
  if (head.protocol != static_cast<__u8>(core::Protocol::tcp) &&
      head.protocol != static_cast<__u8>(core::Protocol::udp)) {
    return tl::unexpected(malformed(family, "protocol " + std::to_string(head.protocol)));
  }
  LpmPrefix prefix;
  prefix.port = core::PortKey{static_cast<core::Protocol>(head.protocol), ntohs(head.port)};
  prefix.family = family;
  prefix.length = head.prefixlen - JITD_LPM_PORT_BITS;
  for (std::size_t i = 0; i < size; ++i) {
    prefix.address = prefix.address << 8 | key[offsetof(jitd_lpm_key4, addr) + i];
  }
  // The trie ignores bits past the prefix; so does jitd.
  prefix.address &= ~span_below(bits - prefix.length);
  return prefix;
}

RawKey encode(const core::PortKey& port) {
  const jitd_port_key key{static_cast<__u8>(port.protocol), 0, htons(port.port)};
  RawKey raw;
  std::memcpy(raw.bytes.data(), &key, sizeof key);
  raw.size = sizeof key;
  return raw;
}

core::Result<core::PortKey> decode_port(std::span<const std::uint8_t> key) {
  jitd_port_key port{};
  if (key.size() != sizeof port) {
    return core::fail(core::ErrorCode::kernel, "decode port key: unexpected key size", EPROTO);
  }
  std::memcpy(&port, key.data(), sizeof port);
  return port_of(port.protocol, port.port, "port key");
}

core::Result<core::ElementKey> decode_source(std::span<const std::uint8_t> key) {
  jitd_source_key source{};
  if (key.size() != sizeof source) {
    return core::fail(core::ErrorCode::kernel, "decode source key: unexpected key size", EPROTO);
  }
  std::memcpy(&source, key.data(), sizeof source);
  if (source.family != AF_INET && source.family != AF_INET6) {
    return core::fail(core::ErrorCode::kernel,
                      "decode source key: address family " + std::to_string(source.family), EPROTO);
  }
  auto port = port_of(source.protocol, source.port, "source key");
  if (!port) return tl::unexpected(port.error());
  const core::Family family = source.family == AF_INET ? core::Family::ipv4 : core::Family::ipv6;
  core::AddressValue address = 0;
  for (std::size_t i = 0; i < address_bytes(family); ++i) address = address << 8 | source.addr[i];
  return core::ElementKey{core::AddressRange{family, address, address}, *port};
}

std::string describe(const core::ElementKey& source) {
  return core::address_to_string(source.source.family, source.source.first) + " " +
         std::string(core::to_string(source.port.protocol)) + "/" +
         std::to_string(source.port.port);
}

RawKey raw_key(std::span<const std::uint8_t> key) {
  RawKey raw;
  const std::size_t size = std::min(key.size(), raw.bytes.size());
  std::copy_n(key.begin(), size, raw.bytes.begin());
  raw.size = static_cast<std::uint32_t>(size);
  return raw;
}

std::vector<std::pair<core::ElementKey, std::uint64_t>> merge(
    std::vector<std::pair<LpmPrefix, std::uint64_t>> entries) {
  std::sort(entries.begin(), entries.end());
  std::vector<std::pair<core::ElementKey, std::uint64_t>> ranges;
  for (const auto& [prefix, value] : entries) {
    const core::AddressRange range = range_of(prefix);
    if (!ranges.empty()) {
      auto& [last, last_value] = ranges.back();
      if (last.port == prefix.port && last.source.family == range.family && last_value == value &&
          last.source.last != core::family_max(range.family) &&
          last.source.last + 1 == range.first) {
        last.source.last = range.last;
        continue;
      }
    }
    ranges.emplace_back(core::ElementKey{range, prefix.port}, value);
  }
  return ranges;
}

}  // namespace jitd::ebpf
