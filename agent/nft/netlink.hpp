#pragma once
// nf_tables netlink plumbing: one socket, batches whose every ACK is read, and queries.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <linux/netlink.h>

#include "handles.hpp"
#include "jitd/core/error.hpp"

namespace jitd::nft {

// Raises a socket buffer (SO_SNDBUF / SO_RCVBUF, via the *FORCE variant where permitted) to at
// least `needed` bytes; `what` names the buffer in the error.
[[nodiscard]] core::Result<void> ensure_buffer(int fd, int option, int force_option,
                                               std::size_t needed, const char* what);

// One transaction: BATCH_BEGIN, messages that each ask for an ACK, BATCH_END.
class Batch {
 public:
  // Room reserved for one message; callers keep each message below it.
  static constexpr std::size_t message_capacity = 32 * 1024;

  explicit Batch(std::uint32_t first_seq);

  // Starts a message and returns its header for a libnftnl payload builder; the header is
  // valid until the next add(). `operation` names the message in error reports.
  nlmsghdr* add(std::uint16_t type, std::uint16_t family, std::uint16_t flags,
                std::string operation);

 private:
  friend class Netlink;
  void close_message();
  void finish();

  std::vector<char> buffer_;
  std::size_t size_ = 0;  // bytes of closed messages
  std::uint32_t first_seq_;
  std::vector<std::string> operations_;  // indexed by seq - first_seq_
};

class Netlink {
 public:
  static core::Result<Netlink> open();

  [[nodiscard]] Batch batch() const { return Batch(seq_); }
  // The socket's netlink port id: the kernel records it as a table's owner and as the sender
  // of the events our transactions cause.
  [[nodiscard]] std::uint32_t portid() const { return portid_; }
  // Sends the batch and reads the reply of every message; the first error names the
  // operation it belongs to.
  [[nodiscard]] core::Result<void> commit(Batch batch);

  enum class Request { get, dump };
  using Builder = std::function<void(nlmsghdr*)>;
  // Returns false when a reply does not parse.
  using ReplyHandler = std::function<bool(const nlmsghdr*)>;
  // One request and its replies, up to the ACK (get) or NLMSG_DONE (dump).
  [[nodiscard]] core::Result<void> query(std::uint16_t type, std::uint16_t family, Request request,
                                         const Builder& build, const ReplyHandler& on_reply,
                                         const std::string& operation);

 private:
  Netlink(MnlSocket socket, std::uint32_t seq);
  [[nodiscard]] core::Result<void> fit_buffers(const Batch& batch);

  MnlSocket socket_;
  std::uint32_t portid_;
  std::uint32_t seq_;
  std::vector<char> receive_buffer_;
};

// nft's name of a netfilter family ("ip", "ip6", "inet", "netdev", ...), for messages.
[[nodiscard]] std::string family_name(std::uint32_t family);

// Every element of the set <family> <table> <name>, held by the returned set.
[[nodiscard]] core::Result<Set> dump_set(Netlink& netlink, std::uint16_t family,
                                         const std::string& table, const std::string& name);
// The elements of a dumped set; they stay owned by the set.
[[nodiscard]] std::vector<nftnl_set_elem*> elements_of(const Set& set);

}  // namespace jitd::nft
