#include "netlink.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <optional>
#include <utility>

#include <libnftnl/common.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include "jitd/sys/system_error.hpp"

namespace jitd::nft {
namespace {

// Large enough for a full dump datagram (the kernel fills up to 32 KiB).
constexpr std::size_t receive_buffer_size = 64 * 1024;
// Rough kernel memory charged per queued ACK (skb truesize), to size the receive buffer.
constexpr std::size_t ack_truesize = 1024;

}  // namespace

// The *FORCE options bypass wmem_max/rmem_max; they need CAP_NET_ADMIN, which nf_tables
// needs anyway, so the plain option is only a fallback.
core::Result<void> ensure_buffer(int fd, int option, int force_option, std::size_t needed,
                                 const char* what) {
  int current = 0;
  socklen_t length = sizeof current;
  if (getsockopt(fd, SOL_SOCKET, option, &current, &length) == 0 &&
      static_cast<std::size_t>(current) >= needed) {
    return {};
  }
  // The kernel doubles the requested value.
  const int value = static_cast<int>(std::min<std::size_t>(needed / 2 + 1, INT_MAX / 2));
  if (setsockopt(fd, SOL_SOCKET, force_option, &value, sizeof value) == 0 ||
      setsockopt(fd, SOL_SOCKET, option, &value, sizeof value) == 0) {
    return {};
  }
  return sys::fail_system(core::ErrorCode::kernel, std::string("set netlink ") + what, errno);
}

Batch::Batch(std::uint32_t first_seq) : first_seq_(first_seq) {
  buffer_.resize(message_capacity);
  nftnl_batch_begin(buffer_.data(), first_seq_);
  operations_.emplace_back("begin transaction");
}

void Batch::close_message() {
  const auto* header = reinterpret_cast<const nlmsghdr*>(buffer_.data() + size_);
  size_ += NLMSG_ALIGN(header->nlmsg_len);
}

nlmsghdr* Batch::add(std::uint16_t type, std::uint16_t family, std::uint16_t flags,
                     std::string operation) {
  close_message();
  buffer_.resize(size_ + message_capacity);
  const auto seq = static_cast<std::uint32_t>(first_seq_ + operations_.size());
  operations_.push_back(std::move(operation));
  return nftnl_nlmsg_build_hdr(buffer_.data() + size_, type, family, flags | NLM_F_ACK, seq);
}

void Batch::finish() {
  close_message();
  buffer_.resize(size_ + NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg)));
  nftnl_batch_end(buffer_.data() + size_,
                  static_cast<std::uint32_t>(first_seq_ + operations_.size()));
  operations_.emplace_back("commit transaction");
  close_message();
}

Netlink::Netlink(MnlSocket socket, std::uint32_t seq)
    : socket_(std::move(socket)),
      portid_(mnl_socket_get_portid(socket_.get())),
      seq_(seq),
      receive_buffer_(receive_buffer_size) {}

core::Result<Netlink> Netlink::open() {
  // Close-on-exec: a child that inherited the socket would keep an owned table owned.
  MnlSocket socket(mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC));
  if (!socket) return sys::fail_system(core::ErrorCode::kernel, "open netlink socket", errno);
  if (mnl_socket_bind(socket.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
    return sys::fail_system(core::ErrorCode::kernel, "open netlink socket", errno);
  }
  // Error replies then carry only the failed message's header, not the whole message.
  int on = 1;
  if (mnl_socket_setsockopt(socket.get(), NETLINK_CAP_ACK, &on, sizeof on) < 0) {
    return sys::fail_system(core::ErrorCode::kernel, "open netlink socket", errno);
  }
  return Netlink(std::move(socket), static_cast<std::uint32_t>(std::time(nullptr)));
}

// The kernel runs a batch synchronously inside sendmsg and queues all replies before it
// returns, so the whole batch must fit the send buffer and all ACKs the receive buffer.
core::Result<void> Netlink::fit_buffers(const Batch& batch) {
  const int fd = mnl_socket_get_fd(socket_.get());
  return ensure_buffer(fd, SO_SNDBUF, SO_SNDBUFFORCE, batch.size_ + 4096, "send buffer")
      .and_then([&] {
        return ensure_buffer(fd, SO_RCVBUF, SO_RCVBUFFORCE, batch.operations_.size() * ack_truesize,
                             "receive buffer");
      });
}

core::Result<void> Netlink::commit(Batch batch) {
  batch.finish();
  seq_ = static_cast<std::uint32_t>(batch.first_seq_ + batch.operations_.size());
  if (auto fitted = fit_buffers(batch); !fitted) return fitted;
  if (mnl_socket_sendto(socket_.get(), batch.buffer_.data(), batch.size_) < 0) {
    return sys::fail_system(core::ErrorCode::kernel, "send transaction", errno);
  }

  // Every message between BEGIN and END is answered, with an ACK or an error. An error
  // about BEGIN itself (e.g. EPERM) means nothing else comes, so after any error the
  // remaining replies are drained without blocking.
  std::size_t pending = batch.operations_.size() - 2;
  std::optional<core::Error> failure;
  const int fd = mnl_socket_get_fd(socket_.get());
  while (pending > 0) {
    const ssize_t received =
        recv(fd, receive_buffer_.data(), receive_buffer_.size(), failure ? MSG_DONTWAIT : 0);
    if (received < 0) {
      if (errno == EINTR) continue;
      if (failure && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      return tl::unexpected(failure.value_or(
          sys::system_error(core::ErrorCode::kernel, "receive transaction replies", errno)));
    }
    auto length = static_cast<int>(received);
    for (auto* header = reinterpret_cast<const nlmsghdr*>(receive_buffer_.data());
         mnl_nlmsg_ok(header, length); header = mnl_nlmsg_next(header, &length)) {
      const std::uint32_t index = header->nlmsg_seq - batch.first_seq_;
      if (header->nlmsg_type != NLMSG_ERROR || index >= batch.operations_.size()) continue;
      const auto* reply = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(header));
      if (reply->error != 0 && !failure) {
        failure =
            sys::system_error(core::ErrorCode::kernel, batch.operations_[index], -reply->error);
      }
      if (index > 0 && index + 1 < batch.operations_.size()) --pending;
    }
  }
  if (failure) return tl::unexpected(*failure);
  return {};
}

core::Result<void> Netlink::query(std::uint16_t type, std::uint16_t family, Request request,
                                  const Builder& build, const ReplyHandler& on_reply,
                                  const std::string& operation) {
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE);
  const std::uint32_t seq = seq_++;
  // A dump ends with NLMSG_DONE; a plain get must ask for the ACK that ends it.
  const std::uint16_t flags = request == Request::dump ? NLM_F_DUMP : NLM_F_ACK;
  nlmsghdr* header = nftnl_nlmsg_build_hdr(buffer.data(), type, family, flags, seq);
  build(header);
  if (mnl_socket_sendto(socket_.get(), header, header->nlmsg_len) < 0) {
    return sys::fail_system(core::ErrorCode::kernel, operation, errno);
  }

  struct Context {
    const ReplyHandler& on_reply;
    bool malformed = false;
  } context{on_reply};
  // A reply that does not parse is noted, not fatal, so the rest of the dump is still read
  // and cannot be mistaken for the answer to a later request.
  const mnl_cb_t callback = [](const nlmsghdr* reply, void* data) -> int {
    auto* context = static_cast<Context*>(data);
    if (!context->on_reply(reply)) context->malformed = true;
    return MNL_CB_OK;
  };
  int status = MNL_CB_OK;
  while (status > MNL_CB_STOP) {
    const ssize_t received =
        mnl_socket_recvfrom(socket_.get(), receive_buffer_.data(), receive_buffer_.size());
    if (received < 0) return sys::fail_system(core::ErrorCode::kernel, operation, errno);
    status = mnl_cb_run(receive_buffer_.data(), static_cast<std::size_t>(received), seq, portid_,
                        callback, &context);
  }
  if (context.malformed) return sys::fail_system(core::ErrorCode::kernel, operation, EPROTO);
  if (status == MNL_CB_ERROR) return sys::fail_system(core::ErrorCode::kernel, operation, errno);
  return {};
}

std::string family_name(std::uint32_t family) {
  switch (family) {
    case NFPROTO_IPV4: return "ip";
    case NFPROTO_IPV6: return "ip6";
    case NFPROTO_INET: return "inet";
    case NFPROTO_NETDEV: return "netdev";
    case NFPROTO_ARP: return "arp";
    case NFPROTO_BRIDGE: return "bridge";
    default: return "family " + std::to_string(family);
  }
}

core::Result<Set> dump_set(Netlink& netlink, std::uint16_t family, const std::string& table,
                           const std::string& name) {
  auto set = allocate<Set>(nftnl_set_alloc());
  nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, table.c_str());
  nftnl_set_set_str(set.get(), NFTNL_SET_NAME, name.c_str());
  auto dumped = netlink.query(
      NFT_MSG_GETSETELEM, family, Netlink::Request::dump,
      [&](nlmsghdr* header) { nftnl_set_elems_nlmsg_build_payload(header, set.get()); },
      [&](const nlmsghdr* reply) { return nftnl_set_elems_nlmsg_parse(reply, set.get()) >= 0; },
      "list set " + family_name(family) + " " + table + " " + name);
  if (!dumped) return tl::unexpected(dumped.error());
  return set;
}

std::vector<nftnl_set_elem*> elements_of(const Set& set) {
  std::vector<nftnl_set_elem*> elements;
  nftnl_set_elem_foreach(
      set.get(),
      [](nftnl_set_elem* element, void* data) {
        static_cast<std::vector<nftnl_set_elem*>*>(data)->push_back(element);
        return 0;
      },
      &elements);
  return elements;
}

}  // namespace jitd::nft
