#pragma once
// Element operations on one of jitd's maps, with errors that name the map, the operation and
// the element.
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "handles.hpp"
#include "jitd/core/error.hpp"
#include "keys.hpp"

namespace jitd::ebpf {

class Map {
 public:
  explicit Map(const bpf_map* map) : map_(map) {}

  [[nodiscard]] std::string name() const { return bpf_map__name(map_); }
  [[nodiscard]] int fd() const { return bpf_map__fd(map_); }

  // `what` names the element in errors ("203.0.113.0/24 udp/53").
  [[nodiscard]] core::Result<void> update(const RawKey& key, const void* value, std::uint64_t flags,
                                          const std::string& what) const;
  // Whether the key was there; a missing key is not an error.
  [[nodiscard]] core::Result<bool> erase(const RawKey& key, const std::string& what) const;
  // Whether the key was there. On an LPM trie this is the longest match, so only the value of
  // a key just listed is that key's own.
  [[nodiscard]] core::Result<bool> lookup(const RawKey& key, void* value,
                                          const std::string& what) const;

  using Visitor = std::function<core::Result<void>(std::span<const std::uint8_t> key)>;
  // Calls `visit` for every key. A key deleted meanwhile makes the kernel start over, so a key
  // may be visited twice; callers collect into maps.
  [[nodiscard]] core::Result<void> for_each_key(const Visitor& visit) const;

 private:
  const bpf_map* map_;
};

}  // namespace jitd::ebpf
