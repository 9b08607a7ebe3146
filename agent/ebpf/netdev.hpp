#pragma once
// The namespace's interfaces over rtnetlink, and jitd's program on them: a tc filter at the
// clsact ingress hook or an XDP program, both set over netlink, so they outlive jitd.
#include <linux/netlink.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "handles.hpp"
#include "jitd/core/error.hpp"

namespace jitd::ebpf {

struct Link {
  int ifindex = 0;
  std::string name;
  bool loopback = false;
};

// An RTM_NEWLINK or RTM_DELLINK message (a dump reply or an event) as a Link.
[[nodiscard]] std::optional<Link> parse_link(const nlmsghdr* header);
[[nodiscard]] core::Result<std::vector<Link>> list_links();

// An rtnetlink socket bound to `groups` (RTMGRP_*), close-on-exec; non-blocking for events.
[[nodiscard]] core::Result<MnlSocket> open_rtnetlink(unsigned groups, bool nonblocking);

// jitd's filter is the one with this handle and priority at the ingress hook. Priority 1 runs
// it before filters of other tools, whose verdict could otherwise end classification first.
inline constexpr std::uint32_t tc_handle = 0x6a17;
inline constexpr std::uint32_t tc_priority = 1;

// Creates the clsact qdisc when missing and puts the program in jitd's filter, replacing the
// program there in one step (no moment without a filter).
[[nodiscard]] core::Result<void> attach_tc(const Link& link, int program_fd);
// The id of the program in jitd's filter; nullopt when there is no such filter.
[[nodiscard]] core::Result<std::optional<std::uint32_t>> tc_program(const Link& link);
// Deletes jitd's filter, and then the clsact qdisc when no other filter is left on it.
[[nodiscard]] core::Result<void> detach_tc(const Link& link);

enum class XdpMode { native, generic };
[[nodiscard]] std::string_view to_string(XdpMode mode);

struct XdpProgram {
  std::uint32_t id = 0;
  XdpMode mode = XdpMode::native;
};
// The XDP program in native or generic mode; nullopt when there is none.
[[nodiscard]] core::Result<std::optional<XdpProgram>> xdp_program(const Link& link);
// The name the kernel has for a program ("jitd_xdp"); empty when it is gone.
[[nodiscard]] std::string program_name(std::uint32_t id);
// Attaches in native mode, or generic where the driver refuses native. A program already
// there is replaced atomically, keeping its mode, when it is named `own_name` (an earlier
// jitd's) or `replace_foreign`; otherwise the attach fails and names it.
[[nodiscard]] core::Result<XdpMode> attach_xdp(const Link& link, int program_fd,
                                               std::string_view own_name, bool replace_foreign);
// Detaches the XDP program when it is named `own_name`; another tool's is left alone.
[[nodiscard]] core::Result<void> detach_xdp(const Link& link, std::string_view own_name);

}  // namespace jitd::ebpf
