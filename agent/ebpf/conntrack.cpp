#include "conntrack.hpp"

#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>
#include <sys/socket.h>

#include <cerrno>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include <libnftnl/common.h>

#include "handles.hpp"
#include "jitd/sys/system_error.hpp"

namespace jitd::ebpf {
namespace {

constexpr const char* chain_name = "conntrack";
constexpr std::size_t batch_limit = 16 * 1024;

using NlBatch = Handle<mnl_nlmsg_batch, mnl_nlmsg_batch_stop>;

// One nf_tables transaction; every message asks for an ACK so that its error, if any, names it.
class Transaction {
 public:
  Transaction()
      : buffer_(2 * batch_limit),
        batch_(mnl_nlmsg_batch_start(buffer_.data(), batch_limit)),
        first_seq_(static_cast<std::uint32_t>(std::time(nullptr))) {
    nftnl_batch_begin(static_cast<char*>(mnl_nlmsg_batch_current(batch_.get())), first_seq_);
    mnl_nlmsg_batch_next(batch_.get());
    operations_.emplace_back("begin transaction");
  }

  nlmsghdr* add(std::uint16_t type, std::uint16_t flags, std::string operation) {
    const auto seq = static_cast<std::uint32_t>(first_seq_ + operations_.size());
    operations_.push_back(std::move(operation));
    return nftnl_nlmsg_build_hdr(static_cast<char*>(mnl_nlmsg_batch_current(batch_.get())), type,
                                 NFPROTO_INET, flags | NLM_F_ACK, seq);
  }
  void next() { mnl_nlmsg_batch_next(batch_.get()); }

  core::Result<void> commit() {
    nftnl_batch_end(static_cast<char*>(mnl_nlmsg_batch_current(batch_.get())),
                    static_cast<std::uint32_t>(first_seq_ + operations_.size()));
    mnl_nlmsg_batch_next(batch_.get());
    MnlSocket socket(mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC));
    if (!socket || mnl_socket_bind(socket.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
      return sys::fail_system(core::ErrorCode::kernel, "open nftables socket", errno);
    }
    if (mnl_socket_sendto(socket.get(), mnl_nlmsg_batch_head(batch_.get()),
                          mnl_nlmsg_batch_size(batch_.get())) < 0) {
      return sys::fail_system(core::ErrorCode::kernel, "send nftables transaction", errno);
    }
    // Each message but BEGIN is answered. An error about BEGIN itself (EPERM) means nothing
    // else comes, so after any error the rest is read without blocking.
    std::size_t pending = operations_.size() - 1;
    std::optional<core::Error> failure;
    std::vector<char> reply(batch_limit);
    const int fd = mnl_socket_get_fd(socket.get());
    while (pending > 0) {
      const ssize_t received = recv(fd, reply.data(), reply.size(), failure ? MSG_DONTWAIT : 0);
      if (received < 0) {
        if (errno == EINTR) continue;
        if (failure) break;
        return sys::fail_system(core::ErrorCode::kernel, "receive nftables replies", errno);
      }
      auto length = static_cast<int>(received);
      for (auto* header = reinterpret_cast<const nlmsghdr*>(reply.data());
           mnl_nlmsg_ok(header, length); header = mnl_nlmsg_next(header, &length)) {
        const std::uint32_t index = header->nlmsg_seq - first_seq_;
        if (header->nlmsg_type != NLMSG_ERROR || index >= operations_.size()) continue;
        const auto* error = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(header));
        if (error->error != 0 && !failure) {
          failure = sys::system_error(core::ErrorCode::kernel, operations_[index], -error->error);
        }
        if (index > 0) --pending;
      }
    }
    if (failure) return tl::unexpected(*failure);
    return {};
  }

 private:
  std::vector<char> buffer_;
  NlBatch batch_;
  std::uint32_t first_seq_;
  std::vector<std::string> operations_;  // indexed by seq - first_seq_
};

NftExpr make_expr(const char* name) { return allocate<NftExpr>(nftnl_expr_alloc(name)); }

void table_message(Transaction& transaction, std::uint16_t type, std::uint16_t flags,
                   const std::string& operation) {
  auto table = allocate<NftTable>(nftnl_table_alloc());
  nftnl_table_set_str(table.get(), NFTNL_TABLE_NAME, std::string(conntrack_table).c_str());
  nftnl_table_nlmsg_build_payload(transaction.add(type, flags, operation), table.get());
  transaction.next();
}

// ct state established,related: the ct expression is what makes conntrack active.
NftRule conntrack_rule() {
  const std::uint32_t mask = NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED);
  const std::uint32_t zero = 0;
  auto rule = allocate<NftRule>(nftnl_rule_alloc());
  nftnl_rule_set_str(rule.get(), NFTNL_RULE_TABLE, std::string(conntrack_table).c_str());
  nftnl_rule_set_str(rule.get(), NFTNL_RULE_CHAIN, chain_name);
  auto state = make_expr("ct");
  nftnl_expr_set_u32(state.get(), NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
  nftnl_expr_set_u32(state.get(), NFTNL_EXPR_CT_DREG, NFT_REG32_00);
  auto bitwise = make_expr("bitwise");
  nftnl_expr_set_u32(bitwise.get(), NFTNL_EXPR_BITWISE_SREG, NFT_REG32_00);
  nftnl_expr_set_u32(bitwise.get(), NFTNL_EXPR_BITWISE_DREG, NFT_REG32_00);
  nftnl_expr_set_u32(bitwise.get(), NFTNL_EXPR_BITWISE_LEN, sizeof mask);
  nftnl_expr_set(bitwise.get(), NFTNL_EXPR_BITWISE_MASK, &mask, sizeof mask);
  nftnl_expr_set(bitwise.get(), NFTNL_EXPR_BITWISE_XOR, &zero, sizeof zero);
  auto compare = make_expr("cmp");
  nftnl_expr_set_u32(compare.get(), NFTNL_EXPR_CMP_SREG, NFT_REG32_00);
  nftnl_expr_set_u32(compare.get(), NFTNL_EXPR_CMP_OP, NFT_CMP_NEQ);
  nftnl_expr_set(compare.get(), NFTNL_EXPR_CMP_DATA, &zero, sizeof zero);
  // The rule takes ownership of each expression.
  nftnl_rule_add_expr(rule.get(), state.release());
  nftnl_rule_add_expr(rule.get(), bitwise.release());
  nftnl_rule_add_expr(rule.get(), compare.release());
  return rule;
}

}  // namespace

core::Result<void> activate_conntrack() {
  const std::string table = "table inet " + std::string(conntrack_table);
  Transaction transaction;
  // Adding first makes the delete valid whether or not the table exists.
  table_message(transaction, NFT_MSG_NEWTABLE, NLM_F_CREATE, "add " + table);
  table_message(transaction, NFT_MSG_DELTABLE, 0, "delete " + table);
  table_message(transaction, NFT_MSG_NEWTABLE, NLM_F_CREATE, "add " + table);

  auto chain = allocate<NftChain>(nftnl_chain_alloc());
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TABLE, std::string(conntrack_table).c_str());
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_NAME, chain_name);
  nftnl_chain_nlmsg_build_payload(
      transaction.add(NFT_MSG_NEWCHAIN, NLM_F_CREATE, "add chain in " + table), chain.get());
  transaction.next();

  const auto rule = conntrack_rule();
  nftnl_rule_nlmsg_build_payload(
      transaction.add(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, "add ct rule to " + table),
      rule.get());
  transaction.next();
  return transaction.commit();
}

core::Result<void> remove_conntrack_table() {
  Transaction transaction;
  table_message(transaction, NFT_MSG_DELTABLE, 0,
                "delete table inet " + std::string(conntrack_table));
  auto removed = transaction.commit();
  if (!removed && removed.error().sys_errno == ENOENT) return {};
  return removed;
}

}  // namespace jitd::ebpf
