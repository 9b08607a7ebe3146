#include "ruleset.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <span>
#include <utility>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>

namespace jitd::nft {
namespace {

constexpr std::string_view chain_name = "input";
constexpr int chain_priority = -10;
// Every network namespace numbers its loopback device 1.
constexpr std::uint32_t loopback_ifindex = 1;
// Keeps each element message far below the 64 KiB netlink attribute limit and within
// Batch::message_capacity (an IPv6 range with timeout takes 80 bytes).
constexpr std::size_t elements_per_message = 256;

// nft datatype ids; a concatenation's type is the ids shifted in 6 bits at a time.
constexpr std::uint32_t ipv4_addr = 7;
constexpr std::uint32_t ipv6_addr = 8;
constexpr std::uint32_t inet_proto = 12;
constexpr std::uint32_t inet_service = 13;
constexpr std::uint32_t concat(std::uint32_t a, std::uint32_t b) { return a << 6 | b; }

struct SetSpec {
  std::string_view name;
  std::uint32_t flags;
  std::uint32_t key_type;
  std::array<std::uint8_t, 3> fields;  // field byte lengths, 0-terminated when shorter
  // A counter on every element (Linux 5.11+ set element expressions).
  bool counted = false;
  std::uint64_t timeout_ms = 0;  // default element timeout; 0: none
  std::uint32_t size = 0;        // element limit; 0: none
};

constexpr std::uint32_t interval = NFT_SET_INTERVAL | NFT_SET_CONCAT;
constexpr std::uint32_t port_type = concat(inet_proto, inet_service);
constexpr std::uint32_t source4_type = concat(concat(ipv4_addr, inet_proto), inet_service);
constexpr std::uint32_t source6_type = concat(concat(ipv6_addr, inet_proto), inet_service);

constexpr std::array grant_sets{SetKind::grants4_single, SetKind::grants6_single, SetKind::grants4,
                                SetKind::grants6};

const SetSpec& spec(SetKind kind) {
  static constexpr std::array<SetSpec, all_sets.size()> specs{{
      {"protected", 0, port_type, {1, 2, 0}, true},
      {"allow4", interval, source4_type, {4, 1, 2}},
      {"allow6", interval, source6_type, {16, 1, 2}},
      // No interval flag: the kernel picks its resizable hash set (rhash). No size either: a
      // set without one has no element limit, and the table grows as needed.
      {"grants4_single", NFT_SET_TIMEOUT, source4_type, {4, 1, 2}},
      {"grants6_single", NFT_SET_TIMEOUT, source6_type, {16, 1, 2}},
      {"grants4", interval | NFT_SET_TIMEOUT, source4_type, {4, 1, 2}},
      {"grants6", interval | NFT_SET_TIMEOUT, source6_type, {16, 1, 2}},
      {"dropped_new", 0, port_type, {1, 2, 0}, true},
      {"admitted", 0, port_type, {1, 2, 0}, true},
      {"audited", 0, port_type, {1, 2, 0}, true},
      // Filled from the packet path (dynamic), so bounded: a scan from many addresses must not
      // grow kernel memory without limit.
      {"would_block4",
       NFT_SET_EVAL | NFT_SET_TIMEOUT,
       source4_type,
       {4, 1, 2},
       true,
       would_block_timeout_ms,
       would_block_size},
      {"would_block6",
       NFT_SET_EVAL | NFT_SET_TIMEOUT,
       source6_type,
       {16, 1, 2},
       true,
       would_block_timeout_ms,
       would_block_size},
  }};
  return specs.at(static_cast<std::size_t>(kind));
}

constexpr std::uint32_t padded(std::uint32_t length) { return (length + 3) & ~3U; }

std::uint32_t key_length(const SetSpec& set) {
  std::uint32_t length = 0;
  for (const std::uint8_t field : set.fields) length += padded(field);
  return length;
}

// A concatenated key: each field in network byte order, zero-padded to 32-bit registers.
struct Key {
  std::array<std::uint8_t, 24> bytes{};
  std::uint32_t length = 0;

  void append(const void* data, std::uint32_t size) {
    std::memcpy(bytes.data() + length, data, size);
    length += padded(size);
  }
  void append(const core::PortKey& port) {
    const auto protocol = static_cast<std::uint8_t>(port.protocol);
    const std::uint16_t number = htons(port.port);
    append(&protocol, sizeof protocol);
    append(&number, sizeof number);
  }
  void append(core::Family family, core::AddressValue address) {
    const unsigned size = family == core::Family::ipv4 ? 4 : 16;
    std::array<std::uint8_t, 16> big_endian{};
    for (unsigned i = 0; i < size; ++i) {
      big_endian[i] = static_cast<std::uint8_t>(address >> (8 * (size - 1 - i)));
    }
    append(big_endian.data(), size);
  }
};

Key port_key(const core::PortKey& port) {
  Key key;
  key.append(port);
  return key;
}

Key address_key(core::Family family, core::AddressValue address, const core::PortKey& port) {
  Key key;
  key.append(family, address);
  key.append(port);
  return key;
}

SetElem make_element(const Key& key) {
  auto element = allocate<SetElem>(nftnl_set_elem_alloc());
  nftnl_set_elem_set(element.get(), NFTNL_SET_ELEM_KEY, key.bytes.data(), key.length);
  return element;
}

// Interval concatenations take the inclusive range as key .. key_end; a hash set has keys only
// (the caller routes only single addresses there).
SetElem make_element(SetKind kind, const core::ElementKey& element) {
  const auto& [family, first, last] = element.source;
  auto result = make_element(address_key(family, first, element.port));
  if (spec(kind).flags & NFT_SET_INTERVAL) {
    const Key end = address_key(family, last, element.port);
    nftnl_set_elem_set(result.get(), NFTNL_SET_ELEM_KEY_END, end.bytes.data(), end.length);
  }
  return result;
}

core::Result<std::span<const std::uint8_t>> element_bytes(SetKind kind, nftnl_set_elem* element,
                                                          std::uint16_t attribute) {
  std::uint32_t length = 0;
  const auto* data =
      static_cast<const std::uint8_t*>(nftnl_set_elem_get(element, attribute, &length));
  if (data == nullptr || length != key_length(spec(kind))) {
    return core::fail(
        core::ErrorCode::kernel,
        "decode element of set " + std::string(spec(kind).name) + ": unexpected key length",
        EPROTO);
  }
  return std::span(data, length);
}

core::PortKey read_port(std::span<const std::uint8_t> key, std::size_t offset) {
  return core::PortKey{static_cast<core::Protocol>(key[offset]),
                       static_cast<std::uint16_t>(key[offset + 4] << 8 | key[offset + 5])};
}

core::AddressValue read_address(std::span<const std::uint8_t> key, std::size_t size) {
  core::AddressValue value = 0;
  for (std::size_t i = 0; i < size; ++i) value = value << 8 | key[i];
  return value;
}

Expr make_expr(const char* name) { return allocate<Expr>(nftnl_expr_alloc(name)); }

// Concatenation fields live in consecutive 32-bit registers.
constexpr std::uint32_t reg(std::uint32_t word) { return NFT_REG32_00 + word; }

Expr meta(std::uint32_t key, std::uint32_t dreg) {
  auto expr = make_expr("meta");
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_META_KEY, key);
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_META_DREG, dreg);
  return expr;
}

Expr payload(std::uint32_t base, std::uint32_t offset, std::uint32_t length, std::uint32_t dreg) {
  auto expr = make_expr("payload");
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_PAYLOAD_BASE, base);
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_PAYLOAD_OFFSET, offset);
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_PAYLOAD_LEN, length);
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_PAYLOAD_DREG, dreg);
  return expr;
}

template <class T>
Expr cmp(nft_cmp_ops op, std::uint32_t sreg, T value) {
  auto expr = make_expr("cmp");
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_CMP_SREG, sreg);
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_CMP_OP, op);
  nftnl_expr_set(expr.get(), NFTNL_EXPR_CMP_DATA, &value, sizeof value);
  return expr;
}

Expr ct_state(std::uint32_t dreg) {
  auto expr = make_expr("ct");
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_CT_DREG, dreg);
  return expr;
}

Expr bitwise_and(std::uint32_t reg, std::uint32_t mask) {
  const std::uint32_t zero = 0;
  auto expr = make_expr("bitwise");
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_BITWISE_SREG, reg);
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_BITWISE_DREG, reg);
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_BITWISE_LEN, sizeof mask);
  nftnl_expr_set(expr.get(), NFTNL_EXPR_BITWISE_MASK, &mask, sizeof mask);
  nftnl_expr_set(expr.get(), NFTNL_EXPR_BITWISE_XOR, &zero, sizeof zero);
  return expr;
}

Expr lookup(std::string_view set, std::uint32_t sreg, std::uint32_t flags) {
  auto expr = make_expr("lookup");
  nftnl_expr_set_str(expr.get(), NFTNL_EXPR_LOOKUP_SET, std::string(set).c_str());
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_LOOKUP_SREG, sreg);
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_LOOKUP_FLAGS, flags);
  return expr;
}

Expr verdict(std::uint32_t code) {
  auto expr = make_expr("immediate");
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_IMM_VERDICT, code);
  return expr;
}

Expr go_to(std::string_view chain) {
  auto expr = make_expr("immediate");
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_IMM_VERDICT, NFT_GOTO);
  nftnl_expr_set_str(expr.get(), NFTNL_EXPR_IMM_CHAIN, std::string(chain).c_str());
  return expr;
}

// update @set { <key in sreg> }: adds the key or refreshes its timeout, and moves the
// element's counter (cloned from the set's).
Expr update(SetKind set, std::uint32_t sreg) {
  auto expr = make_expr("dynset");
  nftnl_expr_set_str(expr.get(), NFTNL_EXPR_DYNSET_SET_NAME, std::string(set_name(set)).c_str());
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_DYNSET_SREG_KEY, sreg);
  nftnl_expr_set_u32(expr.get(), NFTNL_EXPR_DYNSET_OP, NFT_DYNSET_OP_UPDATE);
  return expr;
}

template <class... E>
std::vector<Expr> sequence(E... exprs) {
  std::vector<Expr> result;
  (result.push_back(std::move(exprs)), ...);
  return result;
}

constexpr std::string_view granted_chain = "granted";
constexpr std::string_view audit_chain = "audit";

// meta nfproto <family> <saddr> . meta l4proto . th dport, in the registers from reg(0).
std::vector<Expr> source_key(core::Family family) {
  const bool v4 = family == core::Family::ipv4;
  const std::uint32_t address_words = v4 ? 1 : 4;
  return sequence(
      meta(NFT_META_NFPROTO, reg(0)),
      cmp(NFT_CMP_EQ, reg(0), static_cast<std::uint8_t>(v4 ? NFPROTO_IPV4 : NFPROTO_IPV6)),
      payload(NFT_PAYLOAD_NETWORK_HEADER, v4 ? 12 : 8, v4 ? 4 : 16, reg(0)),
      meta(NFT_META_L4PROTO, reg(address_words)),
      payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg(address_words + 1)));
}

// meta l4proto . th dport, in reg(0) and reg(1).
std::vector<Expr> port_key_exprs() {
  return sequence(meta(NFT_META_L4PROTO, reg(0)),
                  payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg(1)));
}

std::vector<Expr> then(std::vector<Expr> first, std::vector<Expr> rest) {
  for (auto& expr : rest) first.push_back(std::move(expr));
  return first;
}

// <source key> @set <verdict>
std::vector<Expr> source_lookup(core::Family family, SetKind set, Expr verdict_expr) {
  return then(source_key(family),
              sequence(lookup(set_name(set), reg(0), 0), std::move(verdict_expr)));
}

constexpr std::uint32_t established_related =
    NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED);
constexpr std::uint32_t state_new = NF_CT_STATE_BIT(IP_CT_NEW);

// ct state <states>: matches when any of them holds.
std::vector<Expr> ct_state_in(std::uint32_t states) {
  return sequence(ct_state(reg(0)), bitwise_and(reg(0), states),
                  cmp(NFT_CMP_NEQ, reg(0), std::uint32_t{0}));
}

// ct state new meta l4proto . th dport @set: a lookup only for the element's counter; what
// follows runs whether or not it matched.
std::vector<Expr> count_new_connection(SetKind set) {
  return then(then(ct_state_in(state_new), port_key_exprs()),
              sequence(lookup(set_name(set), reg(0), 0)));
}

std::vector<std::vector<Expr>> input_rules() {
  std::vector<std::vector<Expr>> rules;
  // iif "lo" accept
  rules.push_back(sequence(meta(NFT_META_IIF, reg(0)), cmp(NFT_CMP_EQ, reg(0), loopback_ifindex),
                           verdict(NF_ACCEPT)));
  // meta l4proto . th dport != @protected accept
  rules.push_back(then(port_key_exprs(), sequence(lookup(set_name(SetKind::protected_ports), reg(0),
                                                         NFT_LOOKUP_F_INV),
                                                  verdict(NF_ACCEPT))));
  // ct state established,related accept
  rules.push_back(then(ct_state_in(established_related), sequence(verdict(NF_ACCEPT))));
  // The allow-list accepts here; its connections are not grant accesses (not counted).
  rules.push_back(source_lookup(core::Family::ipv4, SetKind::allow4, verdict(NF_ACCEPT)));
  rules.push_back(source_lookup(core::Family::ipv6, SetKind::allow6, verdict(NF_ACCEPT)));
  for (const SetKind kind : grant_sets) {
    const bool v4 = kind == SetKind::grants4_single || kind == SetKind::grants4;
    rules.push_back(
        source_lookup(v4 ? core::Family::ipv4 : core::Family::ipv6, kind, go_to(granted_chain)));
  }
  // meta l4proto . th dport @audited goto audit: the lookup moves the port's would-drop counter.
  rules.push_back(then(port_key_exprs(), sequence(lookup(set_name(SetKind::audited), reg(0), 0),
                                                  go_to(audit_chain))));
  rules.push_back(count_new_connection(SetKind::dropped_new));
  // meta l4proto . th dport @protected counter drop: every packet here is to a protected port;
  // the lookup is for the element's own counter (see add_sets).
  rules.push_back(
      then(port_key_exprs(), sequence(lookup(set_name(SetKind::protected_ports), reg(0), 0),
                                      make_expr("counter"), verdict(NF_DROP))));
  return rules;
}

std::vector<std::vector<Expr>> granted_rules() {
  std::vector<std::vector<Expr>> rules;
  rules.push_back(count_new_connection(SetKind::admitted));
  rules.push_back(sequence(verdict(NF_ACCEPT)));
  return rules;
}

// The source is remembered by a rule of its own: when the set is full the update fails and
// ends only that rule, and the packet is still accepted.
std::vector<std::vector<Expr>> audit_rules() {
  std::vector<std::vector<Expr>> rules;
  rules.push_back(
      then(source_key(core::Family::ipv4), sequence(update(SetKind::would_block4, reg(0)))));
  rules.push_back(
      then(source_key(core::Family::ipv6), sequence(update(SetKind::would_block6, reg(0)))));
  rules.push_back(sequence(verdict(NF_ACCEPT)));
  return rules;
}

}  // namespace

std::string_view set_name(SetKind kind) { return spec(kind).name; }

SetKind allow_set(core::Family family) {
  return family == core::Family::ipv4 ? SetKind::allow4 : SetKind::allow6;
}

bool is_grant_set(SetKind kind) {
  return std::find(grant_sets.begin(), grant_sets.end(), kind) != grant_sets.end();
}

bool is_hash_set(SetKind kind) {
  return kind == SetKind::grants4_single || kind == SetKind::grants6_single;
}

SetKind grant_set(const core::ElementKey& key) {
  const bool v4 = key.source.family == core::Family::ipv4;
  if (key.source.first == key.source.last) {
    return v4 ? SetKind::grants4_single : SetKind::grants6_single;
  }
  return v4 ? SetKind::grants4 : SetKind::grants6;
}

TableWriter::TableWriter(Batch& batch, std::string table)
    : batch_(batch), table_(std::move(table)) {}

void TableWriter::add_table(std::uint32_t flags) {
  auto table = allocate<Table>(nftnl_table_alloc());
  nftnl_table_set_str(table.get(), NFTNL_TABLE_NAME, table_.c_str());
  if (flags != 0) nftnl_table_set_u32(table.get(), NFTNL_TABLE_FLAGS, flags);
  nftnl_table_nlmsg_build_payload(
      batch_.add(NFT_MSG_NEWTABLE, NFPROTO_INET, NLM_F_CREATE, "add table inet " + table_),
      table.get());
}

void TableWriter::delete_table() {
  auto table = allocate<Table>(nftnl_table_alloc());
  nftnl_table_set_str(table.get(), NFTNL_TABLE_NAME, table_.c_str());
  nftnl_table_nlmsg_build_payload(
      batch_.add(NFT_MSG_DELTABLE, NFPROTO_INET, 0, "delete table inet " + table_), table.get());
}

void TableWriter::add_sets() {
  for (const SetKind kind : all_sets) {
    const SetSpec& set_spec = spec(kind);
    auto set = allocate<Set>(nftnl_set_alloc());
    nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, table_.c_str());
    nftnl_set_set_str(set.get(), NFTNL_SET_NAME, std::string(set_spec.name).c_str());
    // The kernel requires an id unique within the transaction.
    nftnl_set_set_u32(set.get(), NFTNL_SET_ID, static_cast<std::uint32_t>(kind) + 1);
    nftnl_set_set_u32(set.get(), NFTNL_SET_FLAGS, set_spec.flags);
    nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_TYPE, set_spec.key_type);
    nftnl_set_set_u32(set.get(), NFTNL_SET_KEY_LEN, key_length(set_spec));
    // Interval concatenations (pipapo) need the field lengths; the kernel refuses them on
    // other sets.
    if (set_spec.flags & NFT_SET_CONCAT) {
      nftnl_set_set_data(set.get(), NFTNL_SET_DESC_CONCAT, set_spec.fields.data(),
                         set_spec.fields.size());
    }
    if (set_spec.timeout_ms != 0)
      nftnl_set_set_u64(set.get(), NFTNL_SET_TIMEOUT, set_spec.timeout_ms);
    if (set_spec.size != 0) nftnl_set_set_u32(set.get(), NFTNL_SET_DESC_SIZE, set_spec.size);
    // Each element counts what the one lookup that matches it in the chains sees: the
    // per-port counters of status.
    if (set_spec.counted) nftnl_set_add_expr(set.get(), make_expr("counter").release());
    const std::string operation = "add set inet " + table_ + " " + std::string(set_spec.name);
    nftnl_set_nlmsg_build_payload(batch_.add(NFT_MSG_NEWSET, NFPROTO_INET, NLM_F_CREATE, operation),
                                  set.get());
  }
}

void TableWriter::add_chain() {
  // The chains a rule jumps to exist before the rule.
  add_regular_chain(granted_chain);
  add_rules(granted_chain, granted_rules());
  add_regular_chain(audit_chain);
  add_rules(audit_chain, audit_rules());
  auto chain = allocate<Chain>(nftnl_chain_alloc());
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TABLE, table_.c_str());
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_NAME, std::string(chain_name).c_str());
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TYPE, "filter");
  nftnl_chain_set_u32(chain.get(), NFTNL_CHAIN_HOOKNUM, NF_INET_LOCAL_IN);
  nftnl_chain_set_s32(chain.get(), NFTNL_CHAIN_PRIO, chain_priority);
  nftnl_chain_set_u32(chain.get(), NFTNL_CHAIN_POLICY, NF_ACCEPT);
  const std::string object = "chain inet " + table_ + " " + std::string(chain_name);
  nftnl_chain_nlmsg_build_payload(
      batch_.add(NFT_MSG_NEWCHAIN, NFPROTO_INET, NLM_F_CREATE, "add " + object), chain.get());
  add_rules(chain_name, input_rules());
}

void TableWriter::add_regular_chain(std::string_view name) {
  auto chain = allocate<Chain>(nftnl_chain_alloc());
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TABLE, table_.c_str());
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_NAME, std::string(name).c_str());
  nftnl_chain_nlmsg_build_payload(batch_.add(NFT_MSG_NEWCHAIN, NFPROTO_INET, NLM_F_CREATE,
                                             "add chain inet " + table_ + " " + std::string(name)),
                                  chain.get());
}

void TableWriter::add_conntrack_keeper() {
  constexpr std::string_view keeper = "conntrack";
  add_regular_chain(keeper);
  std::vector<std::vector<Expr>> keeper_rules;
  // ct state established,related: the ct expression is what registers conntrack's hooks.
  keeper_rules.push_back(ct_state_in(established_related));
  add_rules(keeper, std::move(keeper_rules));
}

void TableWriter::add_rules(std::string_view chain, std::vector<std::vector<Expr>> rules) {
  const std::string object = "chain inet " + table_ + " " + std::string(chain);
  int number = 0;
  for (auto& exprs : rules) {
    auto rule = allocate<Rule>(nftnl_rule_alloc());
    nftnl_rule_set_str(rule.get(), NFTNL_RULE_TABLE, table_.c_str());
    nftnl_rule_set_str(rule.get(), NFTNL_RULE_CHAIN, std::string(chain).c_str());
    // The rule takes ownership of each expression.
    for (auto& expr : exprs) nftnl_rule_add_expr(rule.get(), expr.release());
    const std::string operation = "add rule " + std::to_string(++number) + " to " + object;
    nftnl_rule_nlmsg_build_payload(
        batch_.add(NFT_MSG_NEWRULE, NFPROTO_INET, NLM_F_CREATE | NLM_F_APPEND, operation),
        rule.get());
  }
}

void TableWriter::add_ports(const std::vector<core::PortKey>& protected_ports,
                            const std::vector<core::PortKey>& audited_ports) {
  const auto write = [this](SetKind kind, const std::vector<core::PortKey>& ports) {
    std::vector<SetElem> elements;
    for (const auto& port : ports) elements.push_back(make_element(port_key(port)));
    write_elements(NFT_MSG_NEWSETELEM, kind, std::move(elements));
  };
  for (const SetKind kind : counter_sets) {
    write(kind, kind == SetKind::audited ? audited_ports : protected_ports);
  }
}

void TableWriter::add_permanent(const std::vector<core::ElementKey>& elements) {
  for (const auto family : {core::Family::ipv4, core::Family::ipv6}) {
    std::vector<SetElem> family_elements;
    for (const auto& element : elements) {
      if (element.source.family == family) {
        family_elements.push_back(make_element(allow_set(family), element));
      }
    }
    write_elements(NFT_MSG_NEWSETELEM, allow_set(family), std::move(family_elements));
  }
}

void TableWriter::add_grants(const std::vector<core::TimedElement>& grants) {
  for (const SetKind kind : grant_sets) {
    std::vector<SetElem> elements;
    for (const auto& grant : grants) {
      if (grant_set(grant.key) != kind) continue;
      auto element = make_element(kind, grant.key);
      nftnl_set_elem_set_u64(element.get(), NFTNL_SET_ELEM_TIMEOUT,
                             static_cast<std::uint64_t>(grant.timeout.count()));
      elements.push_back(std::move(element));
    }
    write_elements(NFT_MSG_NEWSETELEM, kind, std::move(elements));
  }
}

void TableWriter::delete_grants(const std::vector<core::ElementKey>& keys) {
  for (const SetKind kind : grant_sets) {
    std::vector<SetElem> elements;
    for (const auto& key : keys) {
      if (grant_set(key) == kind) elements.push_back(make_element(kind, key));
    }
    write_elements(NFT_MSG_DELSETELEM, kind, std::move(elements));
  }
}

void TableWriter::write_elements(std::uint16_t type, SetKind kind, std::vector<SetElem> elements) {
  const std::string object = "set inet " + table_ + " " + std::string(set_name(kind));
  const bool add = type == NFT_MSG_NEWSETELEM;
  const std::string operation = add ? "add element to " + object : "delete element from " + object;
  // EXCL: adding an element that exists is an error, never a silent no-op.
  const std::uint16_t flags = add ? NLM_F_CREATE | NLM_F_EXCL : 0;
  for (std::size_t begin = 0; begin < elements.size(); begin += elements_per_message) {
    auto set = allocate<Set>(nftnl_set_alloc());
    nftnl_set_set_str(set.get(), NFTNL_SET_TABLE, table_.c_str());
    nftnl_set_set_str(set.get(), NFTNL_SET_NAME, std::string(set_name(kind)).c_str());
    const std::size_t end = std::min(elements.size(), begin + elements_per_message);
    // The set takes ownership of each element.
    for (std::size_t i = begin; i < end; ++i) nftnl_set_elem_add(set.get(), elements[i].release());
    nftnl_set_elems_nlmsg_build_payload(batch_.add(type, NFPROTO_INET, flags, operation),
                                        set.get());
  }
}

core::Result<core::PortKey> decode_port(SetKind kind, nftnl_set_elem* element) {
  return element_bytes(kind, element, NFTNL_SET_ELEM_KEY).map([](auto key) {
    return read_port(key, 0);
  });
}

core::Result<core::TimedElement> decode_element(SetKind kind, nftnl_set_elem* element) {
  const bool v4 = spec(kind).key_type == source4_type;
  const std::size_t address_size = v4 ? 4 : 16;
  auto key = element_bytes(kind, element, NFTNL_SET_ELEM_KEY);
  if (!key) return tl::unexpected(key.error());
  // A hash set's element, and at times an interval set's single address, has no key_end.
  auto key_end = nftnl_set_elem_is_set(element, NFTNL_SET_ELEM_KEY_END)
                     ? element_bytes(kind, element, NFTNL_SET_ELEM_KEY_END)
                     : key;
  if (!key_end) return tl::unexpected(key_end.error());

  core::TimedElement result;
  result.key.source = {v4 ? core::Family::ipv4 : core::Family::ipv6,
                       read_address(*key, address_size), read_address(*key_end, address_size)};
  result.key.port = read_port(*key, padded(address_size));
  if (nftnl_set_elem_is_set(element, NFTNL_SET_ELEM_EXPIRATION)) {
    result.timeout = core::Milliseconds(nftnl_set_elem_get_u64(element, NFTNL_SET_ELEM_EXPIRATION));
  }
  return result;
}

std::uint64_t counted_packets(nftnl_set_elem* element) {
  std::uint64_t packets = 0;
  nftnl_set_elem_expr_foreach(
      element,
      [](nftnl_expr* expr, void* data) {
        if (std::strcmp(nftnl_expr_get_str(expr, NFTNL_EXPR_NAME), "counter") == 0) {
          *static_cast<std::uint64_t*>(data) += nftnl_expr_get_u64(expr, NFTNL_EXPR_CTR_PACKETS);
        }
        return 0;
      },
      &packets);
  return packets;
}

}  // namespace jitd::nft
