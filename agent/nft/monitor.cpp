#include "monitor.hpp"

#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <optional>
#include <utility>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include "jitd/sys/system_error.hpp"
#include "netlink.hpp"

namespace jitd::nft {
namespace {

// Events queue here until drained. The kernel coalesces about 32 element events into one
// datagram and charges about 8 KiB for it: replacing 10 000 grants (20 000 events) queues
// 5 MiB. Memory is only used while events wait.
constexpr std::size_t monitor_buffer_size = std::size_t{16} << 20;
// The kernel coalesces events into datagrams of at most NLMSG_GOODSIZE (one page or 8 KiB).
constexpr std::size_t datagram_size = std::size_t{64} << 10;

// Every object message carries its table as attribute 1 (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE,
// NFTA_RULE_TABLE, NFTA_SET_TABLE, NFTA_SET_ELEM_LIST_TABLE).
constexpr std::uint16_t table_attribute = 1;

// The attribute naming the object an event is about, or nullopt for events that cannot
// change our table's enforcement (generations, objects, flowtables, traces).
std::optional<std::uint16_t> name_attribute(std::uint16_t message) {
  switch (message) {
    case NFT_MSG_NEWTABLE:
    case NFT_MSG_DELTABLE: return NFTA_TABLE_NAME;
    case NFT_MSG_NEWCHAIN:
    case NFT_MSG_DELCHAIN: return NFTA_CHAIN_NAME;
    case NFT_MSG_NEWRULE:
    case NFT_MSG_DELRULE: return NFTA_RULE_CHAIN;
    case NFT_MSG_NEWSET:
    case NFT_MSG_DELSET: return NFTA_SET_NAME;
    case NFT_MSG_NEWSETELEM:
    case NFT_MSG_DELSETELEM: return NFTA_SET_ELEM_LIST_SET;
    default: return std::nullopt;
  }
}

std::string describe(std::uint16_t message, const std::string& name) {
  switch (message) {
    case NFT_MSG_NEWTABLE: return "table added or changed";
    case NFT_MSG_DELTABLE: return "table deleted";
    case NFT_MSG_NEWCHAIN: return "chain " + name + " added or changed";
    case NFT_MSG_DELCHAIN: return "chain " + name + " deleted";
    case NFT_MSG_NEWRULE: return "rule added to chain " + name;
    case NFT_MSG_DELRULE: return "rule deleted from chain " + name;
    case NFT_MSG_NEWSET: return "set " + name + " added or changed";
    case NFT_MSG_DELSET: return "set " + name + " deleted";
    case NFT_MSG_NEWSETELEM: return "set " + name + ": elements added";
    default: return "set " + name + ": elements deleted";
  }
}

// Attributes 1..3 of an nf_tables message, which hold the table and object names.
using Attributes = std::array<const nlattr*, 4>;

bool parse_attributes(const nlmsghdr* header, Attributes& attributes) {
  const mnl_attr_cb_t collect = [](const nlattr* attribute, void* data) -> int {
    auto& found = *static_cast<Attributes*>(data);
    const auto type = mnl_attr_get_type(attribute);
    if (type < found.size()) found[type] = attribute;
    return MNL_CB_OK;
  };
  return mnl_attr_parse(header, sizeof(nfgenmsg), collect, &attributes) >= MNL_CB_STOP;
}

bool is_string(const nlattr* attribute) {
  return attribute != nullptr && mnl_attr_validate(attribute, MNL_TYPE_NUL_STRING) == 0;
}

}  // namespace

core::Result<std::unique_ptr<RulesetMonitor::Impl>> RulesetMonitor::Impl::open(
    std::string table, std::uint32_t own_portid) {
  MnlSocket socket(mnl_socket_open2(NETLINK_NETFILTER, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (!socket)
    return sys::fail_system(core::ErrorCode::kernel, "open nftables event socket", errno);
  if (mnl_socket_bind(socket.get(), 1U << (NFNLGRP_NFTABLES - 1), MNL_SOCKET_AUTOPID) < 0) {
    return sys::fail_system(core::ErrorCode::kernel, "subscribe to nftables events", errno);
  }
  const int fd = mnl_socket_get_fd(socket.get());
  if (auto sized =
          ensure_buffer(fd, SO_RCVBUF, SO_RCVBUFFORCE, monitor_buffer_size, "event receive buffer");
      !sized) {
    return tl::unexpected(sized.error());
  }
  return std::make_unique<Impl>(
      Impl{std::move(socket), std::move(table), own_portid, std::vector<char>(datagram_size)});
}

core::Result<core::ForeignChanges> RulesetMonitor::Impl::drain() {
  core::ForeignChanges events;
  const auto note = [&events](std::string change) {
    if (events.foreign.empty()) events.foreign = std::move(change);
  };
  const auto lost = [&events](std::string why) {
    if (events.lost.empty()) events.lost = std::move(why);
  };
  const int fd = mnl_socket_get_fd(socket.get());
  for (;;) {
    // MSG_TRUNC returns a datagram's full length, so a truncated one is noticed.
    const ssize_t received = recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT | MSG_TRUNC);
    if (received < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return events;
      // The queue overflowed and the kernel dropped events; the socket itself stays usable.
      if (errno == ENOBUFS) {
        lost("events lost (ENOBUFS)");
        continue;
      }
      return sys::fail_system(core::ErrorCode::kernel, "read nftables events", errno);
    }
    if (static_cast<std::size_t>(received) > buffer.size()) {
      lost("events lost (datagram truncated)");
      continue;
    }
    auto length = static_cast<int>(received);
    for (auto* header = reinterpret_cast<const nlmsghdr*>(buffer.data());
         mnl_nlmsg_ok(header, length); header = mnl_nlmsg_next(header, &length)) {
      // The kernel stamps each event with the port id of the socket whose request caused it.
      if (header->nlmsg_pid == own_portid) continue;
      if (NFNL_SUBSYS_ID(header->nlmsg_type) != NFNL_SUBSYS_NFTABLES) continue;
      const std::uint16_t message = NFNL_MSG_TYPE(header->nlmsg_type);
      const auto name = name_attribute(message);
      if (!name) continue;
      const auto* family = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(header));
      if (header->nlmsg_len < NLMSG_SPACE(sizeof(nfgenmsg))) continue;
      if (family->nfgen_family != NFPROTO_INET) {
        events.other_tables = true;
        continue;
      }
      Attributes attributes{};
      if (!parse_attributes(header, attributes) || !is_string(attributes[table_attribute]) ||
          !is_string(attributes[*name])) {
        note("unreadable nftables event");
        continue;
      }
      if (mnl_attr_get_str(attributes[table_attribute]) != table) {
        events.other_tables = true;
        continue;
      }
      note(describe(message, mnl_attr_get_str(attributes[*name])) + " (netlink port " +
           std::to_string(header->nlmsg_pid) + ")");
    }
  }
}

RulesetMonitor::RulesetMonitor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RulesetMonitor::~RulesetMonitor() = default;

int RulesetMonitor::fd() const { return mnl_socket_get_fd(impl_->socket.get()); }

core::Result<core::ForeignChanges> RulesetMonitor::drain() { return impl_->drain(); }

}  // namespace jitd::nft
