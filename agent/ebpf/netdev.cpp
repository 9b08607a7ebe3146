#include "netdev.hpp"

#include <linux/if_link.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <bpf/bpf.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <functional>

#include "jitd/sys/system_error.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace jitd::ebpf {
namespace {

// The kernel fills dump datagrams up to 32 KiB.
constexpr std::size_t dump_buffer_size = 64 * 1024;

core::Error kernel_error(const std::string& what, int error) {
  return sys::system_error(core::ErrorCode::kernel, what, error);
}

// One rtnetlink dump request with `header` (ifinfomsg, tcmsg) as its payload; `on_reply` sees
// every reply up to NLMSG_DONE.
template <class Header>
core::Result<void> dump(std::uint16_t type, const Header& header,
                        std::function<void(const nlmsghdr*)> on_reply,
                        const std::string& operation) {
  auto socket = open_rtnetlink(0, false);
  if (!socket) return tl::unexpected(socket.error());
  std::vector<char> buffer(dump_buffer_size);
  nlmsghdr* request = mnl_nlmsg_put_header(buffer.data());
  request->nlmsg_type = type;
  request->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request->nlmsg_seq = static_cast<std::uint32_t>(std::time(nullptr));
  const std::uint32_t seq = request->nlmsg_seq;
  auto* payload = static_cast<Header*>(mnl_nlmsg_put_extra_header(request, sizeof(Header)));
  *payload = header;
  if (mnl_socket_sendto(socket->get(), request, request->nlmsg_len) < 0) {
    return tl::unexpected(kernel_error(operation, errno));
  }
  const auto portid = mnl_socket_get_portid(socket->get());
  const mnl_cb_t callback = [](const nlmsghdr* reply, void* data) -> int {
    (*static_cast<std::function<void(const nlmsghdr*)>*>(data))(reply);
    return MNL_CB_OK;
  };
  int status = MNL_CB_OK;
  while (status > MNL_CB_STOP) {
    const ssize_t received = mnl_socket_recvfrom(socket->get(), buffer.data(), buffer.size());
    if (received < 0) return tl::unexpected(kernel_error(operation, errno));
    status = mnl_cb_run(buffer.data(), static_cast<std::size_t>(received), seq, portid, callback,
                        &on_reply);
  }
  if (status == MNL_CB_ERROR) return tl::unexpected(kernel_error(operation, errno));
  return {};
}

bpf_tc_hook ingress_hook(const Link& link) {
  bpf_tc_hook hook{};
  hook.sz = sizeof hook;
  hook.ifindex = link.ifindex;
  hook.attach_point = BPF_TC_INGRESS;
  return hook;
}

bpf_tc_opts own_filter() {
  bpf_tc_opts opts{};
  opts.sz = sizeof opts;
  opts.handle = tc_handle;
  opts.priority = tc_priority;
  return opts;
}

// Whether any filter is left on either hook of the clsact qdisc.
core::Result<bool> clsact_in_use(const Link& link) {
  bool found = false;
  for (const std::uint32_t hook : {TC_H_MIN_INGRESS, TC_H_MIN_EGRESS}) {
    tcmsg request{};
    request.tcm_family = AF_UNSPEC;
    request.tcm_ifindex = link.ifindex;
    request.tcm_parent = TC_H_MAKE(TC_H_CLSACT, hook);
    auto listed = dump(
        RTM_GETTFILTER, request,
        [&found](const nlmsghdr* reply) { found = found || reply->nlmsg_type == RTM_NEWTFILTER; },
        "list tc filters on " + link.name);
    if (!listed) return tl::unexpected(listed.error());
  }
  return found;
}

std::uint32_t mode_flags(XdpMode mode) {
  return mode == XdpMode::native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
}

}  // namespace

std::optional<Link> parse_link(const nlmsghdr* header) {
  if (header->nlmsg_type != RTM_NEWLINK && header->nlmsg_type != RTM_DELLINK) return std::nullopt;
  if (header->nlmsg_len < NLMSG_SPACE(sizeof(ifinfomsg))) return std::nullopt;
  const auto* info = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(header));
  Link link;
  link.ifindex = info->ifi_index;
  link.loopback = (info->ifi_flags & IFF_LOOPBACK) != 0;
  const mnl_attr_cb_t find_name = [](const nlattr* attribute, void* data) -> int {
    if (mnl_attr_get_type(attribute) == IFLA_IFNAME &&
        mnl_attr_validate(attribute, MNL_TYPE_NUL_STRING) == 0) {
      *static_cast<std::string*>(data) = mnl_attr_get_str(attribute);
    }
    return MNL_CB_OK;
  };
  if (mnl_attr_parse(header, sizeof(ifinfomsg), find_name, &link.name) < MNL_CB_STOP ||
      link.name.empty()) {
    return std::nullopt;
  }
  return link;
}

core::Result<std::vector<Link>> list_links() {
  std::vector<Link> links;
  ifinfomsg request{};
  request.ifi_family = AF_UNSPEC;
  auto listed = dump(
      RTM_GETLINK, request,
      [&links](const nlmsghdr* reply) {
        if (auto link = parse_link(reply)) links.push_back(std::move(*link));
      },
      "list network interfaces");
  if (!listed) return tl::unexpected(listed.error());
  return links;
}

core::Result<MnlSocket> open_rtnetlink(unsigned groups, bool nonblocking) {
  MnlSocket socket(
      mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0)));
  if (!socket) return tl::unexpected(kernel_error("open rtnetlink socket", errno));
  if (mnl_socket_bind(socket.get(), groups, MNL_SOCKET_AUTOPID) < 0) {
    return tl::unexpected(kernel_error("bind rtnetlink socket", errno));
  }
  return socket;
}

core::Result<void> attach_tc(const Link& link, int program_fd) {
  bpf_tc_hook hook = ingress_hook(link);
  if (const int created = bpf_tc_hook_create(&hook); created != 0 && created != -EEXIST) {
    return tl::unexpected(kernel_error("create clsact qdisc on " + link.name, -created));
  }
  bpf_tc_opts opts = own_filter();
  opts.prog_fd = program_fd;
  opts.flags = BPF_TC_F_REPLACE;
  if (const int attached = bpf_tc_attach(&hook, &opts); attached != 0) {
    return tl::unexpected(kernel_error("attach tc filter to " + link.name, -attached));
  }
  return {};
}

core::Result<std::optional<std::uint32_t>> tc_program(const Link& link) {
  const bpf_tc_hook hook = ingress_hook(link);
  bpf_tc_opts opts = own_filter();
  const int queried = bpf_tc_query(&hook, &opts);
  if (queried == 0) return opts.prog_id;
  // No filter of ours, or no clsact qdisc at all.
  if (queried == -ENOENT || queried == -EINVAL) return std::nullopt;
  return tl::unexpected(kernel_error("query tc filter on " + link.name, -queried));
}

core::Result<void> detach_tc(const Link& link) {
  auto present = tc_program(link);
  if (!present) return tl::unexpected(present.error());
  if (!*present) return {};
  bpf_tc_hook hook = ingress_hook(link);
  const bpf_tc_opts opts = own_filter();
  if (const int detached = bpf_tc_detach(&hook, &opts); detached != 0 && detached != -ENOENT) {
    return tl::unexpected(kernel_error("delete tc filter from " + link.name, -detached));
  }
  auto in_use = clsact_in_use(link);
  if (!in_use) return tl::unexpected(in_use.error());
  if (*in_use) return {};
  // Another tool could add a filter between the check and the delete; the qdisc is only
  // removed when it looked empty, which is the best tc's interface allows.
  hook.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
  if (const int destroyed = bpf_tc_hook_destroy(&hook);
      destroyed != 0 && destroyed != -ENOENT && destroyed != -EINVAL) {
    return tl::unexpected(kernel_error("delete clsact qdisc from " + link.name, -destroyed));
  }
  return {};
}

std::string_view to_string(XdpMode mode) { return mode == XdpMode::native ? "native" : "generic"; }

core::Result<std::optional<XdpProgram>> xdp_program(const Link& link) {
  bpf_xdp_query_opts opts{};
  opts.sz = sizeof opts;
  if (const int queried = bpf_xdp_query(link.ifindex, 0, &opts); queried != 0) {
    return tl::unexpected(kernel_error("query xdp program on " + link.name, -queried));
  }
  if (opts.drv_prog_id != 0) return XdpProgram{opts.drv_prog_id, XdpMode::native};
  if (opts.skb_prog_id != 0) return XdpProgram{opts.skb_prog_id, XdpMode::generic};
  return std::nullopt;
}

std::string program_name(std::uint32_t id) {
  const sys::UniqueFd program(bpf_prog_get_fd_by_id(id));
  if (!program) return {};
  bpf_prog_info info{};
  std::uint32_t length = sizeof info;
  if (bpf_obj_get_info_by_fd(program.get(), &info, &length) != 0) return {};
  return info.name;
}

core::Result<XdpMode> attach_xdp(const Link& link, int program_fd, std::string_view own_name,
                                 bool replace_foreign) {
  auto current = xdp_program(link);
  if (!current) return tl::unexpected(current.error());
  if (*current) {
    const auto [id, mode] = **current;
    const std::string name = program_name(id);
    if (name != own_name && !replace_foreign) {
      return core::fail(core::ErrorCode::kernel,
                        "attach xdp to " + link.name + ": another XDP program is attached (id " +
                            std::to_string(id) + ", name '" + name + "'); jitd does not replace it",
                        EEXIST);
    }
    // XDP_FLAGS_REPLACE swaps only the program we looked at: one attached meanwhile is kept.
    const sys::UniqueFd old(bpf_prog_get_fd_by_id(id));
    bpf_xdp_attach_opts opts{};
    opts.sz = sizeof opts;
    opts.old_prog_fd = old.get();
    const std::uint32_t flags = mode_flags(mode) | (old ? XDP_FLAGS_REPLACE : 0);
    if (const int attached = bpf_xdp_attach(link.ifindex, program_fd, flags, &opts);
        attached != 0) {
      return tl::unexpected(kernel_error("replace xdp program on " + link.name, -attached));
    }
    return mode;
  }
  // UPDATE_IF_NOEXIST: a program another tool attached meanwhile is not replaced.
  const int native = bpf_xdp_attach(link.ifindex, program_fd,
                                    XDP_FLAGS_DRV_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST, nullptr);
  if (native == 0) return XdpMode::native;
  const int generic = bpf_xdp_attach(link.ifindex, program_fd,
                                     XDP_FLAGS_SKB_MODE | XDP_FLAGS_UPDATE_IF_NOEXIST, nullptr);
  if (generic == 0) return XdpMode::generic;
  return tl::unexpected(kernel_error(
      "attach xdp to " + link.name + " (native: " + std::strerror(-native) + "; generic)",
      -generic));
}

core::Result<void> detach_xdp(const Link& link, std::string_view own_name) {
  auto current = xdp_program(link);
  if (!current) return tl::unexpected(current.error());
  if (!*current || program_name((*current)->id) != own_name) return {};
  const sys::UniqueFd old(bpf_prog_get_fd_by_id((*current)->id));
  if (!old) return {};  // unloaded meanwhile
  bpf_xdp_attach_opts opts{};
  opts.sz = sizeof opts;
  opts.old_prog_fd = old.get();
  const int detached =
      bpf_xdp_detach(link.ifindex, mode_flags((*current)->mode) | XDP_FLAGS_REPLACE, &opts);
  // EEXIST: replaced by another program since the query, which stays.
  if (detached != 0 && detached != -EEXIST && detached != -ENODEV) {
    return tl::unexpected(kernel_error("detach xdp program from " + link.name, -detached));
  }
  return {};
}

}  // namespace jitd::ebpf
