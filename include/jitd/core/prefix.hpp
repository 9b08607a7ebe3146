#pragma once
// IPv4/IPv6 addresses and CIDR prefixes as plain values, with containment and
// the inclusive address range a prefix covers.
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "jitd/core/error.hpp"

namespace jitd::core {

enum class Family : std::uint8_t { ipv4, ipv6 };

// An address as an unsigned integer; IPv4 uses the low 32 bits.
__extension__ typedef unsigned __int128 AddressValue;  // NOLINT(modernize-use-using)

struct AddressRange {
  Family family = Family::ipv4;
  AddressValue first = 0;  // inclusive
  AddressValue last = 0;   // inclusive
  auto operator<=>(const AddressRange&) const = default;
};

class Prefix {
 public:
  // "203.0.113.7", "10.0.0.0/24", "2001:db8::1", "fd00::/64". Host bits must be zero
  // ("10.0.0.1/24" is refused: it usually means a typo and would widen access silently).
  // IPv4-mapped IPv6 ("::ffff:10.0.0.0/120") becomes the IPv4 prefix it means (10.0.0.0/24);
  // a mapped prefix shorter than /96 is refused.
  [[nodiscard]] static Result<Prefix> parse(std::string_view text);

  [[nodiscard]] Family family() const { return family_; }
  [[nodiscard]] unsigned length() const { return length_; }
  [[nodiscard]] AddressValue address() const { return address_; }
  [[nodiscard]] bool contains(const Prefix& inner) const;
  [[nodiscard]] AddressRange range() const;
  // Canonical text; a full-length prefix prints as a bare address.
  [[nodiscard]] std::string to_string() const;

  auto operator<=>(const Prefix&) const = default;

 private:
  Family family_ = Family::ipv4;
  AddressValue address_ = 0;
  unsigned length_ = 0;
};

[[nodiscard]] unsigned address_bits(Family family);
[[nodiscard]] std::string_view to_string(Family family);  // "IPv4", "IPv6"
[[nodiscard]] std::string address_to_string(Family family, AddressValue value);
// Whether the prefixes of `family` among `prefixes`, taken together, cover every address of
// that family: an interval set merges 0.0.0.0/1 and 128.0.0.0/1 into 0.0.0.0/0.
[[nodiscard]] bool covers_every_address(Family family, const std::vector<Prefix>& prefixes);

}  // namespace jitd::core
