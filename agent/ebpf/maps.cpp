#include "maps.hpp"

#include <bpf/bpf.h>

#include <cerrno>
#include <vector>

#include "jitd/sys/system_error.hpp"

namespace jitd::ebpf {

core::Result<void> Map::update(const RawKey& key, const void* value, std::uint64_t flags,
                               const std::string& what) const {
  if (bpf_map_update_elem(fd(), key.data(), value, flags) == 0) return {};
  return sys::fail_system(core::ErrorCode::kernel, "update map " + name() + " " + what, errno);
}

core::Result<bool> Map::erase(const RawKey& key, const std::string& what) const {
  if (bpf_map_delete_elem(fd(), key.data()) == 0) return true;
  if (errno == ENOENT) return false;
  return sys::fail_system(core::ErrorCode::kernel, "delete from map " + name() + " " + what, errno);
}

core::Result<bool> Map::lookup(const RawKey& key, void* value, const std::string& what) const {
  if (bpf_map_lookup_elem(fd(), key.data(), value) == 0) return true;
  if (errno == ENOENT) return false;
  return sys::fail_system(core::ErrorCode::kernel, "look up map " + name() + " " + what, errno);
}

core::Result<void> Map::for_each_key(const Visitor& visit) const {
  const std::size_t size = bpf_map__key_size(map_);
  std::vector<std::uint8_t> key(size);
  std::vector<std::uint8_t> next(size);
  // Each restart (a key deleted under us) walks the map again; bounded so that a writer that
  // never stops cannot keep jitd here.
  const std::uint64_t limit = 4 * std::uint64_t{bpf_map__max_entries(map_)} + 16;
  const void* previous = nullptr;
  for (std::uint64_t step = 0; step < limit; ++step) {
    if (bpf_map_get_next_key(fd(), previous, next.data()) != 0) {
      if (errno == ENOENT) return {};
      return sys::fail_system(core::ErrorCode::kernel, "list map " + name(), errno);
    }
    if (auto visited = visit(next); !visited) {
      core::Error error = visited.error();
      error.message = "list map " + name() + ": " + error.message;
      return tl::unexpected(std::move(error));
    }
    key.swap(next);
    previous = key.data();
  }
  return core::fail(core::ErrorCode::kernel,
                    "list map " + name() + ": the map kept changing while it was read", EAGAIN);
}

}  // namespace jitd::ebpf
