#include "jitd/core/prefix.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

namespace jitd::core {

namespace {

AddressValue host_mask(Family family, unsigned length) {
  const unsigned bits = address_bits(family);
  if (length >= bits) return 0;
  if (bits - length == 128) return ~AddressValue{0};  // a 128-bit shift would be undefined
  return (AddressValue{1} << (bits - length)) - 1;
}

// ::ffff:0:0/96 holds IPv4 addresses written as IPv6 (how a dual-stack socket shows an IPv4
// peer). The kernel matches such a client as IPv4, against the IPv4 sets only, so jitd keeps
// these prefixes as the IPv4 prefixes they mean.
constexpr AddressValue v4_mapped_tag = 0xffff;  // the 16 bits above the embedded address
constexpr unsigned v4_mapped_length = 96;

bool is_v4_mapped(Family family, AddressValue address) {
  return family == Family::ipv6 && (address >> 32) == v4_mapped_tag;
}

Result<std::pair<Family, AddressValue>> parse_address(std::string_view text) {
  // inet_pton is pure parsing (no system call); it needs a NUL-terminated string.
  const std::string copy(text);
  in_addr v4{};
  if (inet_pton(AF_INET, copy.c_str(), &v4) == 1) {
    return std::pair{Family::ipv4, AddressValue{ntohl(v4.s_addr)}};
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, copy.c_str(), &v6) == 1) {
    AddressValue value = 0;
    for (const auto byte : v6.s6_addr) value = (value << 8) | byte;
    return std::pair{Family::ipv6, value};
  }
  return fail(ErrorCode::invalid_argument, "'" + copy + "' is not an IPv4 or IPv6 address");
}

}  // namespace

unsigned address_bits(Family family) { return family == Family::ipv4 ? 32 : 128; }

std::string_view to_string(Family family) { return family == Family::ipv4 ? "IPv4" : "IPv6"; }

std::string address_to_string(Family family, AddressValue value) {
  char text[INET6_ADDRSTRLEN] = {};
  if (family == Family::ipv4) {
    in_addr v4{htonl(static_cast<std::uint32_t>(value))};
    inet_ntop(AF_INET, &v4, text, sizeof text);
  } else {
    in6_addr v6{};
    for (int i = 15; i >= 0; --i, value >>= 8) v6.s6_addr[i] = static_cast<std::uint8_t>(value);
    inet_ntop(AF_INET6, &v6, text, sizeof text);
  }
  return text;
}

Result<Prefix> Prefix::parse(std::string_view text) {
  if (text.empty()) return fail(ErrorCode::invalid_argument, "empty address prefix");
  // The address parser reads a C string: "10.0.0.0\0/8" must not pass as 10.0.0.0/8.
  if (text.find('\0') != std::string_view::npos) {
    return fail(ErrorCode::invalid_argument, "address prefix contains a NUL byte");
  }
  const auto slash = text.find('/');
  auto address = parse_address(text.substr(0, slash));
  if (!address) return tl::unexpected(address.error());
  Prefix prefix;
  prefix.family_ = address->first;
  prefix.address_ = address->second;
  prefix.length_ = address_bits(prefix.family_);
  if (slash != std::string_view::npos) {
    const auto length_text = text.substr(slash + 1);
    unsigned length = 0;
    const auto [end, ec] =
        std::from_chars(length_text.data(), length_text.data() + length_text.size(), length);
    if (ec != std::errc{} || end != length_text.data() + length_text.size() ||
        length_text.empty() || length > prefix.length_) {
      return fail(ErrorCode::invalid_argument, "'" + std::string(text) +
                                                   "': prefix length must be 0.." +
                                                   std::to_string(prefix.length_));
    }
    prefix.length_ = length;
  }
  if (is_v4_mapped(prefix.family_, prefix.address_)) {
    if (prefix.length_ < v4_mapped_length) {
      return fail(ErrorCode::invalid_argument,
                  "'" + std::string(text) +
                      "' is an IPv4-mapped prefix shorter than /96, which reaches beyond IPv4; "
                      "write an IPv4 prefix (::ffff:0:0/96 is all of IPv4, 0.0.0.0/0)");
    }
    prefix.family_ = Family::ipv4;
    prefix.address_ &= 0xFFFFFFFF;
    prefix.length_ -= v4_mapped_length;
  }
  if ((prefix.address_ & host_mask(prefix.family_, prefix.length_)) != 0) {
    return fail(
        ErrorCode::invalid_argument,
        "'" + std::string(text) + "' has host bits set; did you mean " +
            address_to_string(prefix.family_,
                              prefix.address_ & ~host_mask(prefix.family_, prefix.length_)) +
            "/" + std::to_string(prefix.length_) + "?");
  }
  return prefix;
}

bool Prefix::contains(const Prefix& inner) const {
  if (inner.family_ != family_ || inner.length_ < length_) return false;
  const AddressValue mask = ~host_mask(family_, length_);
  return (inner.address_ & mask) == address_;
}

AddressRange Prefix::range() const {
  return AddressRange{family_, address_, address_ | host_mask(family_, length_)};
}

std::string Prefix::to_string() const {
  auto text = address_to_string(family_, address_);
  if (length_ != address_bits(family_)) text += "/" + std::to_string(length_);
  return text;
}

bool covers_every_address(Family family, const std::vector<Prefix>& prefixes) {
  std::vector<AddressRange> ranges;
  for (const auto& prefix : prefixes) {
    if (prefix.family() == family) ranges.push_back(prefix.range());
  }
  std::sort(ranges.begin(), ranges.end());
  const AddressValue last = host_mask(family, 0);
  AddressValue next = 0;  // the lowest address not covered yet
  for (const auto& range : ranges) {
    if (range.first > next) return false;  // a gap
    if (range.last == last) return true;
    next = std::max(next, range.last + 1);  // range.last < last: no overflow
  }
  return false;
}

}  // namespace jitd::core
