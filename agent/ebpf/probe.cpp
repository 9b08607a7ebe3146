#include "probe.hpp"

#include <linux/capability.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include <spdlog/spdlog.h>

#include "jitd/sys/system_error.hpp"

namespace jitd::ebpf {
namespace {

constexpr const char* vmlinux_path = "/sys/kernel/btf/vmlinux";
constexpr std::array<const char*, 3> conntrack_kfuncs{"bpf_skb_ct_lookup", "bpf_xdp_ct_lookup",
                                                      "bpf_ct_release"};
// Linux 6.1 has 12 (netns_id, error, l4proto, dir, reserved); later kernels add ct_zone_id
// and ct_zone_dir.
constexpr std::array<std::uint32_t, 2> known_ct_opts_sizes{12, 16};

// Tests make a probe fail as if the kernel lacked what it looks for: JITD_EBPF_PROBE_FAIL
// names it (btf, kfunc, ct_opts, cap_bpf, bpffs).
bool forced_failure(std::string_view probe) {
  const char* forced = std::getenv("JITD_EBPF_PROBE_FAIL");
  if (forced == nullptr || probe != forced) return false;
  spdlog::warn("ebpf: probe '{}' fails: forced by JITD_EBPF_PROBE_FAIL (test only)", probe);
  return true;
}

core::Error failure(const std::string& message, int error) {
  return core::Error{core::ErrorCode::kernel, message, error};
}

// Whether `capability` is in this process's effective set; false when capget fails.
bool effective(unsigned capability) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3> data{};
  if (syscall(SYS_capget, &header, data.data()) != 0) return false;
  return (data.at(capability / 32).effective & (1U << (capability % 32))) != 0;
}

bool has_kfuncs(const btf* types) {
  for (const char* name : conntrack_kfuncs) {
    if (btf__find_by_name_kind(types, name, BTF_KIND_FUNC) < 0) return false;
  }
  return true;
}

}  // namespace

core::Result<Btf> probe_btf() {
  const int error = forced_failure("btf") ? ENOENT : access(vmlinux_path, R_OK) == 0 ? 0 : errno;
  if (error != 0) {
    return tl::unexpected(failure(std::string("no BTF: ") + vmlinux_path + ": " +
                                      std::strerror(error) +
                                      " (the kernel needs CONFIG_DEBUG_INFO_BTF)",
                                  error));
  }
  Btf types(btf__load_vmlinux_btf());
  if (!types) {
    return tl::unexpected(
        failure(std::string("no BTF: load ") + vmlinux_path + ": " + std::strerror(errno), errno));
  }
  return types;
}

core::Result<void> probe_capabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3> data{};
  if (syscall(SYS_capget, &header, data.data()) != 0) {
    return sys::fail_system(core::ErrorCode::kernel, "read capabilities (capget)", errno);
  }
  const auto has = [&data](unsigned capability) {
    return (data.at(capability / 32).effective & (1U << (capability % 32))) != 0;
  };
  if (forced_failure("cap_bpf") || !(has(CAP_BPF) || has(CAP_SYS_ADMIN))) {
    return tl::unexpected(
        failure("needs CAP_BPF (or CAP_SYS_ADMIN) to load the eBPF program and maps", EPERM));
  }
  if (!has(CAP_NET_ADMIN)) {
    return tl::unexpected(
        failure("needs CAP_NET_ADMIN to attach the eBPF program and for nftables", EPERM));
  }
  return {};
}

core::Result<bool> ensure_bpffs(const std::filesystem::path& path) {
  const auto refused = [&path](int error) {
    return tl::unexpected(failure(
        "no bpffs at " + path.string() + " and mounting one there failed: " + std::strerror(error),
        error));
  };
  // A forced failure is a kernel without bpffs, where mounting one fails with ENODEV.
  if (forced_failure("bpffs")) return refused(ENODEV);
  struct statfs info {};
  if (statfs(path.c_str(), &info) == 0 &&
      info.f_type == static_cast<decltype(info.f_type)>(BPF_FS_MAGIC)) {
    return false;
  }
  std::error_code created;
  std::filesystem::create_directories(path, created);
  if (created) return refused(created.value());
  if (mount("bpf", path.c_str(), "bpf", 0, "mode=0700") != 0) return refused(errno);
  return true;
}

core::Result<ConntrackBtf> probe_conntrack(const btf* vmlinux) {
  ConntrackBtf found;
  const btf* types = nullptr;
  Btf module;  // where conntrack is a module: split BTF on top of vmlinux's
  if (forced_failure("kfunc")) {
    // As if neither BTF had them.
  } else if (has_kfuncs(vmlinux)) {
    types = vmlinux;
    found.module = "vmlinux";
  } else if (module.reset(btf__load_module_btf("nf_conntrack", const_cast<btf*>(vmlinux)));
             module && has_kfuncs(module.get())) {
    types = module.get();
    found.module = "nf_conntrack";
  }
  if (types == nullptr) {
    return tl::unexpected(
        failure("conntrack kfuncs not found in vmlinux or nf_conntrack BTF (bpf_skb_ct_lookup, "
                "bpf_xdp_ct_lookup, bpf_ct_release: Linux 6.1 or later with nf_conntrack)",
                ENOENT));
  }
  const __s32 id = forced_failure("ct_opts")
                       ? -ENOENT
                       : btf__find_by_name_kind(types, "bpf_ct_opts", BTF_KIND_STRUCT);
  const __s64 size = id < 0 ? id : btf__resolve_size(types, static_cast<__u32>(id));
  if (size < 0) {
    return tl::unexpected(
        failure("struct bpf_ct_opts not found in " + found.module + " BTF", ENOENT));
  }
  found.ct_opts_size = static_cast<std::uint32_t>(size);
  if (std::find(known_ct_opts_sizes.begin(), known_ct_opts_sizes.end(), found.ct_opts_size) ==
      known_ct_opts_sizes.end()) {
    return tl::unexpected(failure("struct bpf_ct_opts is " + std::to_string(size) + " bytes in " +
                                      found.module + " BTF; jitd's program knows 12 and 16",
                                  EINVAL));
  }
  // A kfunc of a module is named in the program by a file descriptor of the module's BTF, and
  // the kernel hands those out (BPF_BTF_GET_NEXT_ID, BPF_BTF_GET_FD_BY_ID) to CAP_SYS_ADMIN
  // only, CAP_BPF is not enough (Linux 6.1 and later alike). Debian's kernels build conntrack as
  // a module, so there the load needs CAP_SYS_ADMIN; without it libbpf's "failed to iterate BTF
  // objects: -1" is all one would see.
  if (found.module != "vmlinux" && !effective(CAP_SYS_ADMIN)) {
    return tl::unexpected(failure(
        "needs CAP_SYS_ADMIN: the conntrack kfuncs are in " + found.module +
            "'s module BTF, whose file descriptor the kernel gives CAP_SYS_ADMIN alone (the "
            "systemd drop-in /usr/share/jitd/systemd/jitd-ebpf.conf grants it)",
        EPERM));
  }
  return found;
}

}  // namespace jitd::ebpf
