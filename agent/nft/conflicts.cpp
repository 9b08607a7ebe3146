#include "jitd/nft/conflicts.hpp"

#include <arpa/inet.h>
#include <fcntl.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <tuple>
#include <utility>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>

#include "jitd/core/prefix.hpp"
#include "jitd/nft/conntrack_table.hpp"
#include "jitd/sys/files.hpp"
#include "jitd/sys/system_error.hpp"
#include "jitd/sys/unique_fd.hpp"
#include "netlink.hpp"

namespace jitd::nft {
namespace {

using Bytes = std::vector<std::uint8_t>;

// The kernel's jump stack is this deep; deeper chains cannot be reached.
constexpr int max_jump_depth = 16;
// Every network namespace numbers its loopback device 1.
constexpr std::uint32_t loopback_ifindex = 1;
constexpr std::size_t rendered_elements = 8;

// ------------------------------------------------------------------ the ruleset as read

// A chain or a set: names are per table, tables per family.
struct ObjectKey {
  std::uint32_t family = 0;
  std::string table;
  std::string name;
  auto operator<=>(const ObjectKey&) const = default;
};

struct BaseChain {
  ObjectKey key;
  std::string hook;
  int priority = 0;
  std::uint32_t policy = NF_ACCEPT;
};

// One element as an inclusive range of whole keys; a map's element carries its verdict.
struct SetElement {
  Bytes first;
  Bytes last;
  std::optional<std::int32_t> verdict;
  std::string chain;  // of a jump or goto verdict
};

struct SetData {
  std::uint32_t flags = 0;
  std::uint32_t key_length = 0;
  std::optional<std::vector<SetElement>> elements;  // read on first use
};

Bytes bytes_of(const void* data, std::uint32_t length) {
  const auto* begin = static_cast<const std::uint8_t*>(data);
  return data == nullptr ? Bytes{} : Bytes(begin, begin + length);
}

// The key just before `key` (big endian), for an interval's exclusive end.
Bytes before(Bytes key) {
  for (auto it = key.rbegin(); it != key.rend(); ++it) {
    if ((*it)-- != 0) break;
  }
  return key;
}

// A single-field interval set (rbtree) holds each interval as a start element and an end
// element flagged INTERVAL_END whose key is one past the interval; a missing end means "to the
// top". Concatenated interval sets (pipapo) hold both ends in one element (key, key_end).
std::vector<SetElement> decode_elements(const SetData& set, const Set& dumped) {
  struct Raw {
    SetElement element;
    bool end = false;
  };
  std::vector<Raw> raw;
  for (nftnl_set_elem* element : elements_of(dumped)) {
    std::uint32_t length = 0;
    const void* key = nftnl_set_elem_get(element, NFTNL_SET_ELEM_KEY, &length);
    Raw item;
    item.element.first = bytes_of(key, length);
    item.element.last = item.element.first;
    if (nftnl_set_elem_is_set(element, NFTNL_SET_ELEM_KEY_END)) {
      const void* end = nftnl_set_elem_get(element, NFTNL_SET_ELEM_KEY_END, &length);
      item.element.last = bytes_of(end, length);
    }
    if (nftnl_set_elem_is_set(element, NFTNL_SET_ELEM_VERDICT)) {
      item.element.verdict =
          static_cast<std::int32_t>(nftnl_set_elem_get_u32(element, NFTNL_SET_ELEM_VERDICT));
    }
    if (nftnl_set_elem_is_set(element, NFTNL_SET_ELEM_CHAIN)) {
      item.element.chain = nftnl_set_elem_get_str(element, NFTNL_SET_ELEM_CHAIN);
    }
    item.end = nftnl_set_elem_is_set(element, NFTNL_SET_ELEM_FLAGS) &&
               (nftnl_set_elem_get_u32(element, NFTNL_SET_ELEM_FLAGS) & NFT_SET_ELEM_INTERVAL_END);
    raw.push_back(std::move(item));
  }
  std::vector<SetElement> result;
  const bool rbtree = (set.flags & NFT_SET_INTERVAL) && !(set.flags & NFT_SET_CONCAT);
  if (!rbtree) {
    for (auto& item : raw) result.push_back(std::move(item.element));
    // Hash sets dump in bucket order; sorted, the rendering is stable.
    std::sort(result.begin(), result.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    return result;
  }
  // An end sorts before a start at the same key: [a, b) then [b, c).
  std::sort(raw.begin(), raw.end(), [](const Raw& a, const Raw& b) {
    return std::tie(a.element.first, b.end) < std::tie(b.element.first, a.end);
  });
  std::optional<SetElement> open;
  for (auto& item : raw) {
    if (open) {
      open->last = before(item.element.first);
      result.push_back(std::move(*open));
      open.reset();
    }
    if (!item.end) open = std::move(item.element);
  }
  if (open) {
    std::fill(open->last.begin(), open->last.end(), 0xff);
    result.push_back(std::move(*open));
  }
  return result;
}

template <class H, class Alloc, class Parse>
core::Result<std::vector<H>> dump_all(Netlink& netlink, std::uint16_t type, Alloc alloc,
                                      Parse parse, const std::string& what) {
  std::vector<H> objects;
  auto dumped = netlink.query(
      type, NFPROTO_UNSPEC, Netlink::Request::dump, [](nlmsghdr*) {},
      [&](const nlmsghdr* header) {
        auto object = allocate<H>(alloc());
        if (parse(header, object.get()) < 0) return false;
        objects.push_back(std::move(object));
        return true;
      },
      "list " + what);
  if (!dumped) return tl::unexpected(dumped.error());
  return objects;
}

std::optional<std::string> hook_name(std::uint32_t family, std::uint32_t hook) {
  if (family == NFPROTO_NETDEV) {
    return hook == NF_NETDEV_INGRESS ? std::optional<std::string>("ingress") : std::nullopt;
  }
  if (family != NFPROTO_IPV4 && family != NFPROTO_IPV6 && family != NFPROTO_INET) {
    return std::nullopt;
  }
  if (hook == NF_INET_PRE_ROUTING) return "prerouting";
  if (hook == NF_INET_LOCAL_IN) return "input";
  if (hook == NF_INET_INGRESS && family == NFPROTO_INET) return "ingress";
  return std::nullopt;
}

class Ruleset {
 public:
  static core::Result<Ruleset> read(Netlink& netlink, std::string_view own_table) {
    Ruleset ruleset(netlink);
    auto chains = dump_all<Chain>(netlink, NFT_MSG_GETCHAIN, nftnl_chain_alloc,
                                  nftnl_chain_nlmsg_parse, "chains");
    if (!chains) return tl::unexpected(chains.error());
    auto rules =
        dump_all<Rule>(netlink, NFT_MSG_GETRULE, nftnl_rule_alloc, nftnl_rule_nlmsg_parse, "rules");
    if (!rules) return tl::unexpected(rules.error());
    auto sets =
        dump_all<Set>(netlink, NFT_MSG_GETSET, nftnl_set_alloc, nftnl_set_nlmsg_parse, "sets");
    if (!sets) return tl::unexpected(sets.error());

    const auto own = [&](std::uint32_t family, const std::string& table) {
      return family == NFPROTO_INET && (table == own_table || table == conntrack_table);
    };
    for (const Chain& chain : *chains) {
      ObjectKey key{nftnl_chain_get_u32(chain.get(), NFTNL_CHAIN_FAMILY),
                    nftnl_chain_get_str(chain.get(), NFTNL_CHAIN_TABLE),
                    nftnl_chain_get_str(chain.get(), NFTNL_CHAIN_NAME)};
      if (own(key.family, key.table) || !nftnl_chain_is_set(chain.get(), NFTNL_CHAIN_HOOKNUM) ||
          !nftnl_chain_is_set(chain.get(), NFTNL_CHAIN_TYPE) ||
          std::strcmp(nftnl_chain_get_str(chain.get(), NFTNL_CHAIN_TYPE), "filter") != 0) {
        continue;
      }
      auto hook = hook_name(key.family, nftnl_chain_get_u32(chain.get(), NFTNL_CHAIN_HOOKNUM));
      if (!hook) continue;
      ruleset.base_chains.push_back({std::move(key), *hook,
                                     nftnl_chain_get_s32(chain.get(), NFTNL_CHAIN_PRIO),
                                     nftnl_chain_is_set(chain.get(), NFTNL_CHAIN_POLICY)
                                         ? nftnl_chain_get_u32(chain.get(), NFTNL_CHAIN_POLICY)
                                         : NF_ACCEPT});
    }
    // A dump lists each chain's rules in the order the kernel evaluates them.
    for (Rule& rule : *rules) {
      ObjectKey key{nftnl_rule_get_u32(rule.get(), NFTNL_RULE_FAMILY),
                    nftnl_rule_get_str(rule.get(), NFTNL_RULE_TABLE),
                    nftnl_rule_get_str(rule.get(), NFTNL_RULE_CHAIN)};
      if (!own(key.family, key.table)) ruleset.rules_[std::move(key)].push_back(std::move(rule));
    }
    for (const Set& set : *sets) {
      ObjectKey key{nftnl_set_get_u32(set.get(), NFTNL_SET_FAMILY),
                    nftnl_set_get_str(set.get(), NFTNL_SET_TABLE),
                    nftnl_set_get_str(set.get(), NFTNL_SET_NAME)};
      ruleset.sets_[std::move(key)] =
          SetData{nftnl_set_get_u32(set.get(), NFTNL_SET_FLAGS),
                  nftnl_set_get_u32(set.get(), NFTNL_SET_KEY_LEN), std::nullopt};
    }
    return ruleset;
  }

  std::vector<BaseChain> base_chains;

  [[nodiscard]] const std::vector<Rule>& rules(const ObjectKey& chain) const {
    static const std::vector<Rule> none;
    const auto found = rules_.find(chain);
    return found == rules_.end() ? none : found->second;
  }

  [[nodiscard]] const SetData* set(const ObjectKey& key) const {
    const auto found = sets_.find(key);
    return found == sets_.end() ? nullptr : &found->second;
  }

  // The set's elements, read from the kernel on first use.
  core::Result<const std::vector<SetElement>*> elements(const ObjectKey& key) {
    const auto found = sets_.find(key);
    if (found == sets_.end()) {
      return core::fail(core::ErrorCode::kernel,
                        "list set " + family_name(key.family) + " " + key.table + " " + key.name +
                            ": not in the dump of sets",
                        ENOENT);
    }
    if (!found->second.elements) {
      auto dumped =
          dump_set(*netlink_, static_cast<std::uint16_t>(key.family), key.table, key.name);
      if (!dumped) return tl::unexpected(dumped.error());
      found->second.elements = decode_elements(found->second, *dumped);
    }
    return &*found->second.elements;
  }

 private:
  explicit Ruleset(Netlink& netlink) : netlink_(&netlink) {}
  Netlink* netlink_;
  std::map<ObjectKey, std::vector<Rule>> rules_;
  std::map<ObjectKey, SetData> sets_;
};

// ------------------------------------------------------------------ one rule, judged

// Ordered: combining two judgements takes the smaller.
enum class Match { no, maybe, yes };

// How a rule matches the traffic to one protected port that a grant lets in.
struct PortMatch {
  Match match = Match::yes;             // a source match counts as maybe: grants name any source
  Match ignoring_sources = Match::yes;  // for accepts: which sources is the allow-list's question
  bool whole = true;  // every packet to the port: no ct state, family or source restriction
};

enum class Verdict { none, accept, drop, reject, jump, go, ret };

struct Judgement {
  std::vector<PortMatch> ports;
  std::vector<std::string> unjudged;  // matches that could not be judged, as nft names them
  std::vector<std::string> text;
  bool names_port = false;
  bool names_sources = false;
  std::vector<std::string> sources;  // prefixes, when sources_exact
  bool sources_exact = true;
  std::string sources_note;  // what they are when not prefixes
  Verdict verdict = Verdict::none;
  std::string target;  // chain of a jump or goto
};

enum class FieldKind {
  l4proto,
  dport,
  nfproto,
  ethertype,
  saddr,
  daddr,
  ct_state,
  iif,
  iifname,
  other
};

// What a register holds: the loaded field, as nft names it.
struct Field {
  FieldKind kind = FieldKind::other;
  std::uint32_t length = 0;
  std::string name;
  core::Family family = core::Family::ipv4;  // of an address
  Bytes mask;                                // applied by a bitwise expression; empty when none
};

constexpr std::uint32_t padded(std::uint32_t length) { return (length + 3) & ~3U; }

// Registers as 32-bit words: NFT_REG_1..4 are 16 bytes each, NFT_REG32_00.. 4 bytes.
std::optional<std::uint32_t> word_of(std::uint32_t reg) {
  if (reg >= NFT_REG32_00) return reg - NFT_REG32_00;
  if (reg >= NFT_REG_1 && reg <= NFT_REG_4) return (reg - NFT_REG_1) * 4;
  return std::nullopt;
}

std::uint32_t ct_state_names_mask() {
  return NF_CT_STATE_INVALID_BIT | NF_CT_STATE_BIT(IP_CT_ESTABLISHED) |
         NF_CT_STATE_BIT(IP_CT_RELATED) | NF_CT_STATE_BIT(IP_CT_NEW) | NF_CT_STATE_UNTRACKED_BIT;
}

std::string ct_states(std::uint32_t bits) {
  static constexpr std::array<std::pair<std::uint32_t, const char*>, 5> names{{
      {NF_CT_STATE_INVALID_BIT, "invalid"},
      {NF_CT_STATE_BIT(IP_CT_ESTABLISHED), "established"},
      {NF_CT_STATE_BIT(IP_CT_RELATED), "related"},
      {NF_CT_STATE_BIT(IP_CT_NEW), "new"},
      {NF_CT_STATE_UNTRACKED_BIT, "untracked"},
  }};
  std::string text;
  for (const auto& [bit, name] : names) {
    if (bits & bit) text += (text.empty() ? "" : ",") + std::string(name);
  }
  return text;
}

std::string protocol_name(std::uint8_t protocol) {
  if (protocol == IPPROTO_TCP) return "tcp";
  if (protocol == IPPROTO_UDP) return "udp";
  return std::to_string(protocol);
}

std::string join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string text;
  for (const auto& part : parts) text += (text.empty() ? "" : std::string(separator)) + part;
  return text;
}

std::uint32_t big_endian(std::span<const std::uint8_t> bytes) {
  std::uint32_t value = 0;
  for (const std::uint8_t byte : bytes) value = value << 8 | byte;
  return value;
}

// An address prefix from a (possibly shortened) address load, its mask and value.
std::optional<std::string> prefix_text(const Field& field, const Bytes& value) {
  const std::size_t size = field.family == core::Family::ipv4 ? 4 : 16;
  std::array<std::uint8_t, 16> address{};
  std::copy_n(value.begin(), std::min<std::size_t>(value.size(), field.length), address.begin());
  unsigned length = field.length * 8;
  if (!field.mask.empty()) {
    length = 0;
    bool ended = false;
    for (std::size_t i = 0; i < field.length && i < field.mask.size(); ++i) {
      for (int bit = 7; bit >= 0; --bit) {
        const bool set = field.mask[i] >> bit & 1;
        if (set && ended) return std::nullopt;  // not a prefix mask
        if (set) ++length;
        ended = ended || !set;
      }
    }
  }
  std::array<char, INET6_ADDRSTRLEN> text{};
  inet_ntop(size == 4 ? AF_INET : AF_INET6, address.data(), text.data(), text.size());
  std::string result = text.data();
  if (length < size * 8) result += "/" + std::to_string(length);
  return result;
}

// The fewest prefixes that cover first..last (both big-endian addresses of `size` bytes).
std::vector<std::string> range_prefixes(const Field& field, const Bytes& first, const Bytes& last) {
  const unsigned bits = field.family == core::Family::ipv4 ? 32 : 128;
  const auto value = [&](const Bytes& bytes) {
    core::AddressValue result = 0;
    for (std::size_t i = 0; i < bits / 8; ++i)
      result = result << 8 | (i < bytes.size() ? bytes[i] : 0);
    return result;
  };
  core::AddressValue low = value(first);
  const core::AddressValue high = value(last);
  std::vector<std::string> prefixes;
  while (low <= high) {
    unsigned host = 0;  // host bits of the widest prefix that starts at low and fits
    while (host < bits && ((low >> host) & 1) == 0) {
      const core::AddressValue end = low + ((core::AddressValue{2} << host) - 1);
      if (end > high || end < low) break;
      ++host;
    }
    prefixes.push_back(core::address_to_string(field.family, low) +
                       (host > 0 ? "/" + std::to_string(bits - host) : ""));
    const core::AddressValue next = low + (core::AddressValue{1} << host);
    if (next <= low) break;  // wrapped past the top
    low = next;
  }
  return prefixes;
}

std::string render_value(const Field& field, std::span<const std::uint8_t> value) {
  switch (field.kind) {
    case FieldKind::l4proto: return value.empty() ? "?" : protocol_name(value[0]);
    case FieldKind::dport:
      return std::to_string(big_endian(value.first(std::min<std::size_t>(2, value.size()))));
    case FieldKind::saddr:
    case FieldKind::daddr: {
      auto text = prefix_text(field, Bytes(value.begin(), value.end()));
      return text ? *text : "?";
    }
    case FieldKind::iifname: {
      std::string name(value.begin(), value.end());
      const bool wildcard = name.find('\0') == std::string::npos;
      name = name.substr(0, name.find('\0'));
      return "\"" + name + (wildcard ? "*" : "") + "\"";
    }
    case FieldKind::iif: {
      std::uint32_t index = 0;
      std::memcpy(&index, value.data(), std::min<std::size_t>(sizeof index, value.size()));
      return index == loopback_ifindex ? "lo" : std::to_string(index);
    }
    default: {
      std::ostringstream hex;
      hex << "0x" << std::hex;
      for (const std::uint8_t byte : value) hex << (byte < 16 ? "0" : "") << unsigned(byte);
      return hex.str();
    }
  }
}

std::string_view cmp_operator(std::uint32_t op) {
  switch (op) {
    case NFT_CMP_NEQ: return "!= ";
    case NFT_CMP_LT: return "< ";
    case NFT_CMP_LTE: return "<= ";
    case NFT_CMP_GT: return "> ";
    case NFT_CMP_GTE: return ">= ";
    default: return "";
  }
}

bool compare(std::uint32_t op, int order) {
  switch (op) {
    case NFT_CMP_EQ: return order == 0;
    case NFT_CMP_NEQ: return order != 0;
    case NFT_CMP_LT: return order < 0;
    case NFT_CMP_LTE: return order <= 0;
    case NFT_CMP_GT: return order > 0;
    case NFT_CMP_GTE: return order >= 0;
    default: return false;
  }
}

int order(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  const std::size_t length = std::min(a.size(), b.size());
  const int result = std::memcmp(a.data(), b.data(), length);
  return result < 0 ? -1 : result > 0 ? 1 : 0;
}

// The bytes a protected port shows a field, or nothing when the field is not about it.
std::optional<Bytes> port_value(const Field& field, const core::PortKey& port) {
  if (field.kind == FieldKind::l4proto) return Bytes{static_cast<std::uint8_t>(port.protocol)};
  if (field.kind == FieldKind::dport) {
    return Bytes{static_cast<std::uint8_t>(port.port >> 8), static_cast<std::uint8_t>(port.port)};
  }
  return std::nullopt;
}

std::string meta_name(std::uint32_t key) {
  switch (key) {
    case NFT_META_MARK: return "meta mark";
    case NFT_META_IIFTYPE: return "iiftype";
    case NFT_META_OIF: return "oif";
    case NFT_META_OIFNAME: return "oifname";
    case NFT_META_SKUID: return "skuid";
    case NFT_META_SKGID: return "skgid";
    case NFT_META_PKTTYPE: return "pkttype";
    case NFT_META_IIFGROUP: return "iifgroup";
    case NFT_META_CGROUP: return "cgroup";
    case NFT_META_IIFKIND: return "iifkind";
    default: return "meta key " + std::to_string(key);
  }
}

std::string ct_name(std::uint32_t key) {
  switch (key) {
    case NFT_CT_MARK: return "ct mark";
    case NFT_CT_STATUS: return "ct status";
    case NFT_CT_DIRECTION: return "ct direction";
    case NFT_CT_ZONE: return "ct zone";
    case NFT_CT_HELPER: return "ct helper";
    default: return "ct key " + std::to_string(key);
  }
}

// Reads one rule's expressions, keeping track of what each register holds, and judges each
// match against the protected ports.
class RuleReader {
 public:
  RuleReader(Ruleset& ruleset, const std::vector<core::PortKey>& ports, std::uint32_t family,
             std::string table)
      : ruleset_(ruleset), ports_(ports), family_(family), table_(std::move(table)) {}

  // One judgement per verdict the rule can reach: a verdict map gives one per verdict among its
  // elements, each judged as if the map held only the elements with that verdict.
  core::Result<std::vector<Judgement>> judge(const Rule& rule) {
    exprs_.clear();
    nftnl_expr_foreach(
        rule.get(),
        [](nftnl_expr* expr, void* data) {
          static_cast<std::vector<nftnl_expr*>*>(data)->push_back(expr);
          return 0;
        },
        &exprs_);
    std::vector<std::pair<std::int32_t, std::string>> verdicts;
    for (nftnl_expr* expr : exprs_) {
      if (name(expr) != "lookup" || !nftnl_expr_is_set(expr, NFTNL_EXPR_LOOKUP_DREG) ||
          nftnl_expr_get_u32(expr, NFTNL_EXPR_LOOKUP_DREG) != NFT_REG_VERDICT) {
        continue;
      }
      auto elements = ruleset_.elements(set_key(expr));
      if (!elements) return tl::unexpected(elements.error());
      for (const auto& element : **elements) {
        if (!element.verdict) continue;
        std::pair verdict{*element.verdict, element.chain};
        if (std::find(verdicts.begin(), verdicts.end(), verdict) == verdicts.end()) {
          verdicts.push_back(std::move(verdict));
        }
      }
    }
    std::vector<Judgement> judgements;
    if (verdicts.empty()) {
      auto judged = read(std::nullopt);
      if (!judged) return tl::unexpected(judged.error());
      judgements.push_back(std::move(*judged));
    }
    for (const auto& verdict : verdicts) {
      auto judged = read(verdict);
      if (!judged) return tl::unexpected(judged.error());
      judgements.push_back(std::move(*judged));
    }
    return judgements;
  }

 private:
  using VmapVerdict = std::pair<std::int32_t, std::string>;

  static std::string name(nftnl_expr* expr) { return nftnl_expr_get_str(expr, NFTNL_EXPR_NAME); }

  ObjectKey set_key(nftnl_expr* expr) const {
    return {family_, table_, nftnl_expr_get_str(expr, NFTNL_EXPR_LOOKUP_SET)};
  }

  static Bytes data(nftnl_expr* expr, std::uint16_t attribute) {
    std::uint32_t length = 0;
    const void* value = nftnl_expr_get(expr, attribute, &length);
    return bytes_of(value, length);
  }

  const Field* field(std::uint32_t reg) const {
    const auto word = word_of(reg);
    if (!word) return nullptr;
    const auto found = registers_.find(*word);
    return found == registers_.end() ? nullptr : &found->second;
  }

  void load(std::uint32_t reg, Field field) {
    const auto word = word_of(reg);
    if (!word) return;
    for (std::uint32_t w = *word; w < *word + std::max(1U, padded(field.length) / 4); ++w) {
      registers_.erase(w);
    }
    registers_[*word] = std::move(field);
  }

  void set_verdict(Judgement& judgement, std::int32_t code, const std::string& chain) {
    switch (code) {
      case NF_ACCEPT: judgement.verdict = Verdict::accept; break;
      case NF_DROP: judgement.verdict = Verdict::drop; break;
      case NFT_JUMP: judgement.verdict = Verdict::jump; break;
      case NFT_GOTO: judgement.verdict = Verdict::go; break;
      case NFT_RETURN: judgement.verdict = Verdict::ret; break;
      default: break;
    }
    judgement.target = chain;
  }

  // A match that says nothing about the ports.
  enum class Effect {
    none,      // every packet to the ports matches
    never,     // no packet a grant lets in matches
    partial,   // some of them do, in a way that is known (a family, a connection state)
    source,    // some sources do
    unjudged,  // cannot tell
  };

  void apply(Judgement& judgement, Effect effect, const std::string& what = {}) {
    for (auto& port : judgement.ports) apply(port, effect);
    if (effect == Effect::unjudged) add_unjudged(judgement, what);
  }

  static void apply(PortMatch& port, Effect effect) {
    switch (effect) {
      case Effect::none: break;
      case Effect::never: port.match = port.ignoring_sources = Match::no; break;
      case Effect::partial: port.whole = false; break;
      case Effect::source:
        port.match = std::min(port.match, Match::maybe);
        port.whole = false;
        break;
      case Effect::unjudged:
        port.match = std::min(port.match, Match::maybe);
        port.ignoring_sources = std::min(port.ignoring_sources, Match::maybe);
        port.whole = false;
        break;
    }
  }

  static void add_unjudged(Judgement& judgement, const std::string& what) {
    if (std::find(judgement.unjudged.begin(), judgement.unjudged.end(), what) ==
        judgement.unjudged.end()) {
      judgement.unjudged.push_back(what);
    }
  }

  // "meta l4proto tcp" followed by a port match reads as nft prints it: "tcp dport 22", and
  // "dport >= 20" followed by "dport <= 30" as "dport 20-30".
  void add_port_text(Judgement& judgement, const std::string& rest) {
    judgement.names_port = true;
    const bool after_last = !judgement.text.empty();
    if (after_last && judgement.text.size() - 1 == low_port_token_ && rest.starts_with("<= ")) {
      std::string& token = judgement.text.back();
      token.replace(token.find(">= "), 3, "");
      token += "-" + rest.substr(3);
      low_port_token_ = std::size_t(-1);
      return;
    }
    if (after_last && judgement.text.size() - 1 == protocol_token_) {
      const std::string token = judgement.text.back();
      const std::string protocol = token.substr(token.rfind(' ') + 1);
      judgement.text.back() = protocol + " dport " + rest;
    } else {
      judgement.text.push_back("th dport " + rest);
    }
    protocol_token_ = std::size_t(-1);
    low_port_token_ = rest.starts_with(">= ") ? judgement.text.size() - 1 : std::size_t(-1);
  }

  void match_ports(Judgement& judgement, const std::function<bool(const core::PortKey&)>& test) {
    for (std::size_t i = 0; i < ports_.size(); ++i) {
      if (!test(ports_[i]))
        judgement.ports[i].match = judgement.ports[i].ignoring_sources = Match::no;
    }
  }

  Effect ct_state_effect(std::uint32_t states) {
    const std::uint32_t granted = NF_CT_STATE_BIT(IP_CT_NEW) | NF_CT_STATE_BIT(IP_CT_ESTABLISHED);
    if ((states & granted) == 0) return Effect::never;
    return (states & granted) == granted ? Effect::none : Effect::partial;
  }

  void read_cmp(Judgement& judgement, nftnl_expr* expr) {
    const Field* loaded = field(nftnl_expr_get_u32(expr, NFTNL_EXPR_CMP_SREG));
    const std::uint32_t op = nftnl_expr_get_u32(expr, NFTNL_EXPR_CMP_OP);
    const Bytes value = data(expr, NFTNL_EXPR_CMP_DATA);
    if (loaded == nullptr) {
      judgement.text.push_back("(unknown match)");
      apply(judgement, Effect::unjudged, "an unknown match");
      return;
    }
    const Field& f = *loaded;
    const std::string shown = std::string(cmp_operator(op)) + render_value(f, value);
    switch (f.kind) {
      case FieldKind::l4proto:
      case FieldKind::dport:
        match_ports(judgement, [&](const core::PortKey& port) {
          return compare(op, order(*port_value(f, port), value));
        });
        if (f.kind == FieldKind::dport) {
          add_port_text(judgement, shown);
        } else {
          judgement.text.push_back(f.name + " " + shown);
          protocol_token_ = op == NFT_CMP_EQ ? judgement.text.size() - 1 : std::size_t(-1);
        }
        return;
      case FieldKind::nfproto:
      case FieldKind::ethertype: {
        // The dependency nft adds before an address match: it also tells the header's family.
        const std::uint32_t number = big_endian(value);
        const bool v4 = f.kind == FieldKind::nfproto ? !value.empty() && value[0] == NFPROTO_IPV4
                                                     : number == 0x0800;
        const bool v6 = f.kind == FieldKind::nfproto ? !value.empty() && value[0] == NFPROTO_IPV6
                                                     : number == 0x86dd;
        if (op == NFT_CMP_EQ && (v4 || v6)) l3_ = v4 ? core::Family::ipv4 : core::Family::ipv6;
        if (op != NFT_CMP_EQ) judgement.text.push_back(f.name + " " + shown);
        apply(judgement, Effect::partial);
        return;
      }
      case FieldKind::saddr:
        if (op == NFT_CMP_EQ || op == NFT_CMP_NEQ) {
          judgement.text.push_back(f.name + " " + shown);
          note_sources(judgement, op == NFT_CMP_EQ ? prefix_text(f, value) : std::nullopt,
                       "all sources but " + render_value(f, value));
          apply(judgement, Effect::source);
          return;
        }
        break;
      case FieldKind::ct_state: {
        std::uint32_t number = 0;
        std::memcpy(&number, value.data(), std::min<std::size_t>(sizeof number, value.size()));
        std::uint32_t mask = 0;
        std::memcpy(&mask, f.mask.data(), std::min<std::size_t>(sizeof mask, f.mask.size()));
        std::uint32_t states = 0;
        if (f.mask.empty()) {
          states = op == NFT_CMP_EQ ? number : ct_state_names_mask() & ~number;
        } else if (number == 0 && (op == NFT_CMP_EQ || op == NFT_CMP_NEQ)) {
          states = op == NFT_CMP_NEQ ? mask : ct_state_names_mask() & ~mask;
        } else {
          break;
        }
        judgement.text.push_back("ct state " + ct_states(states));
        apply(judgement, ct_state_effect(states));
        return;
      }
      case FieldKind::iif:
      case FieldKind::iifname: {
        // Grants are for clients on the network; jitd accepts loopback itself.
        const std::string loopback = f.kind == FieldKind::iif ? "lo" : "\"lo\"";
        const bool is_loopback = render_value(f, value) == loopback;
        judgement.text.push_back(f.name + " " + shown);
        if (is_loopback && op == NFT_CMP_EQ) return apply(judgement, Effect::never);
        if (is_loopback && op == NFT_CMP_NEQ) return apply(judgement, Effect::none);
        return apply(judgement, Effect::unjudged, f.name);
      }
      default: break;
    }
    judgement.text.push_back(f.name + " " + shown);
    apply(judgement, Effect::unjudged, f.name);
  }

  void note_sources(Judgement& judgement, std::optional<std::string> prefix,
                    const std::string& otherwise) {
    judgement.names_sources = true;
    if (prefix) {
      judgement.sources.push_back(*prefix);
    } else {
      judgement.sources_exact = false;
      judgement.sources_note = otherwise;
    }
  }

  void read_range(Judgement& judgement, nftnl_expr* expr) {
    const Field* loaded = field(nftnl_expr_get_u32(expr, NFTNL_EXPR_RANGE_SREG));
    const bool equal = nftnl_expr_get_u32(expr, NFTNL_EXPR_RANGE_OP) == NFT_RANGE_EQ;
    const Bytes from = data(expr, NFTNL_EXPR_RANGE_FROM_DATA);
    const Bytes to = data(expr, NFTNL_EXPR_RANGE_TO_DATA);
    if (loaded == nullptr) {
      apply(judgement, Effect::unjudged, "an unknown match");
      return;
    }
    const Field& f = *loaded;
    const std::string shown =
        (equal ? "" : "!= ") + render_value(f, from) + "-" + render_value(f, to);
    if (f.kind == FieldKind::l4proto || f.kind == FieldKind::dport) {
      match_ports(judgement, [&](const core::PortKey& port) {
        const Bytes value = *port_value(f, port);
        return (order(value, from) >= 0 && order(value, to) <= 0) == equal;
      });
      if (f.kind == FieldKind::dport) {
        add_port_text(judgement, shown);
      } else {
        judgement.text.push_back(f.name + " " + shown);
      }
      return;
    }
    judgement.text.push_back(f.name + " " + shown);
    if (f.kind == FieldKind::saddr) {
      judgement.names_sources = true;
      if (equal) {
        for (auto& prefix : range_prefixes(f, from, to)) judgement.sources.push_back(prefix);
      } else {
        judgement.sources_exact = false;
        judgement.sources_note = "all sources but " + shown.substr(3);
      }
      return apply(judgement, Effect::source);
    }
    apply(judgement, Effect::unjudged, f.name);
  }

  core::Result<void> read_lookup(Judgement& judgement, nftnl_expr* expr,
                                 const std::optional<VmapVerdict>& vmap) {
    const ObjectKey key = set_key(expr);
    const SetData* set = ruleset_.set(key);
    const bool inverted = nftnl_expr_is_set(expr, NFTNL_EXPR_LOOKUP_FLAGS) &&
                          (nftnl_expr_get_u32(expr, NFTNL_EXPR_LOOKUP_FLAGS) & NFT_LOOKUP_F_INV);
    const bool is_vmap = nftnl_expr_is_set(expr, NFTNL_EXPR_LOOKUP_DREG) &&
                         nftnl_expr_get_u32(expr, NFTNL_EXPR_LOOKUP_DREG) == NFT_REG_VERDICT;
    // The key's fields, each at its offset in the key.
    struct KeyField {
      const Field* field;
      std::uint32_t offset;
    };
    std::vector<KeyField> fields;
    bool complete = set != nullptr;
    if (set != nullptr) {
      const auto first = word_of(nftnl_expr_get_u32(expr, NFTNL_EXPR_LOOKUP_SREG));
      std::uint32_t offset = 0;
      while (first && offset < set->key_length) {
        const auto found = registers_.find(*first + offset / 4);
        if (found == registers_.end() || found->second.length == 0) {
          complete = false;
          break;
        }
        fields.push_back({&found->second, offset});
        offset += padded(found->second.length);
      }
    }
    std::vector<std::string> names;
    bool about_ports = false;
    bool about_sources = false;
    std::vector<std::string> others;
    for (const auto& [f, offset] : fields) {
      names.push_back(f->name);
      if (f->kind == FieldKind::l4proto || f->kind == FieldKind::dport) {
        about_ports = true;
      } else if (f->kind == FieldKind::saddr) {
        about_sources = true;
      } else if (f->kind != FieldKind::nfproto && f->kind != FieldKind::ethertype) {
        others.push_back(f->name);
      }
    }
    if (!complete) others.emplace_back("a set lookup");
    const bool anonymous = set != nullptr && (set->flags & NFT_SET_ANONYMOUS);

    const std::vector<SetElement>* elements = nullptr;
    if (complete && (about_ports || is_vmap || (about_sources && anonymous))) {
      auto read = ruleset_.elements(key);
      if (!read) return tl::unexpected(read.error());
      elements = *read;
    }
    const auto selected = [&](const SetElement& element) {
      return !vmap || (element.verdict == vmap->first && element.chain == vmap->second);
    };

    // The text: "tcp dport { 22, 3389 }", "ip saddr @admins", "iifname vmap @zones".
    std::string shown = inverted ? "!= " : "";
    if (anonymous && elements != nullptr) {
      std::vector<std::string> values;
      for (const auto& element : *elements) {
        if (!selected(element)) continue;
        if (values.size() == rendered_elements) {
          values.emplace_back("...");
          break;
        }
        std::vector<std::string> parts;
        for (const auto& field : fields) {
          // Named copies: clang 14 cannot capture structured bindings in a lambda.
          const auto& f = field.field;
          const auto offset = field.offset;
          const auto slice = [&](const Bytes& bytes) {
            return std::span<const std::uint8_t>(bytes).subspan(
                std::min<std::size_t>(offset, bytes.size()),
                std::min<std::size_t>(f->length,
                                      bytes.size() - std::min<std::size_t>(offset, bytes.size())));
          };
          const auto first = slice(element.first);
          const auto last = slice(element.last);
          std::string part = render_value(*f, first);
          if (order(first, last) != 0 && f->kind == FieldKind::saddr) {
            part = join(range_prefixes(*f, Bytes(first.begin(), first.end()),
                                       Bytes(last.begin(), last.end())),
                        ", ");
          } else if (order(first, last) != 0) {
            part += "-" + render_value(*f, last);
          }
          parts.push_back(part);
        }
        values.push_back(join(parts, " . "));
      }
      shown += "{ " + join(values, ", ") + " }";
    } else {
      shown += "@" + key.name;
    }
    if (is_vmap) shown = "vmap " + shown;
    const bool only_port_fields =
        about_ports && !about_sources && others.empty() && names.size() == 1;
    if (only_port_fields && fields.front().field->kind == FieldKind::dport) {
      add_port_text(judgement, shown);
    } else {
      judgement.text.push_back(
          join(names.empty() ? std::vector<std::string>{"(unknown)"} : names, " . ") + " " + shown);
      if (about_ports) judgement.names_port = true;
    }
    if (vmap) set_verdict(judgement, vmap->first, vmap->second);

    if (about_sources) {
      judgement.names_sources = true;
      std::vector<std::string> prefixes;
      const bool sources_only = fields.size() == 1 && !inverted && elements != nullptr;
      if (sources_only) {
        for (const auto& element : *elements) {
          if (!selected(element)) continue;
          for (auto& prefix : range_prefixes(*fields.front().field, element.first, element.last)) {
            judgement.sources.push_back(std::move(prefix));
          }
        }
      } else {
        judgement.sources_exact = false;
        judgement.sources_note =
            "the addresses of set " + family_name(family_) + " " + table_ + " @" + key.name;
      }
    }

    for (std::size_t i = 0; i < ports_.size(); ++i) {
      PortMatch& port = judgement.ports[i];
      // Whether some element's port fields cover this port; fields that are not about ports
      // (sources, interfaces) match some packets, which the effects below account for.
      bool hit = true;
      if (about_ports) {
        hit = elements != nullptr &&
              std::any_of(elements->begin(), elements->end(), [&](const SetElement& element) {
                if (!selected(element)) return false;
                return std::all_of(fields.begin(), fields.end(), [&](const KeyField& key_field) {
                  const auto value = port_value(*key_field.field, ports_[i]);
                  if (!value) return true;
                  const auto at = [&](const Bytes& bytes) {
                    return std::span<const std::uint8_t>(bytes).subspan(
                        std::min<std::size_t>(key_field.offset, bytes.size()));
                  };
                  return order(*value, at(element.first)) >= 0 &&
                         order(*value, at(element.last)) <= 0;
                });
              });
      }
      const bool exact = about_ports && !about_sources && others.empty();
      if (inverted) {
        // Not in the set: certain only when the set is about the ports alone.
        if (exact) {
          if (hit) port.match = port.ignoring_sources = Match::no;
        } else if (hit || !about_ports) {
          apply(port, Effect::unjudged);
        }
        continue;
      }
      if (!hit) {
        port.match = port.ignoring_sources = Match::no;
        continue;
      }
      if (about_sources) apply(port, Effect::source);
      if (!others.empty()) apply(port, Effect::unjudged);
    }
    for (const auto& other : others) add_unjudged(judgement, other);
    if (inverted && !about_ports && about_sources) add_unjudged(judgement, "a source set");
    return {};
  }

  void read_payload(nftnl_expr* expr) {
    if (!nftnl_expr_is_set(expr, NFTNL_EXPR_PAYLOAD_DREG)) return;  // a header rewrite
    const std::uint32_t dreg = nftnl_expr_get_u32(expr, NFTNL_EXPR_PAYLOAD_DREG);
    const std::uint32_t base = nftnl_expr_get_u32(expr, NFTNL_EXPR_PAYLOAD_BASE);
    const std::uint32_t offset = nftnl_expr_get_u32(expr, NFTNL_EXPR_PAYLOAD_OFFSET);
    const std::uint32_t length = nftnl_expr_get_u32(expr, NFTNL_EXPR_PAYLOAD_LEN);
    Field f{FieldKind::other, length, "payload", core::Family::ipv4, {}};
    if (base == NFT_PAYLOAD_TRANSPORT_HEADER) {
      f.name = "transport header";
      if (offset == 2 && length == 2) f = {FieldKind::dport, 2, "th dport", {}, {}};
      if (offset == 0 && length == 2) f.name = "th sport";
    } else if (base == NFT_PAYLOAD_NETWORK_HEADER && l3_) {
      const bool v4 = *l3_ == core::Family::ipv4;
      const std::string prefix = v4 ? "ip " : "ip6 ";
      f.name = prefix + "header";
      const std::uint32_t protocol_at = v4 ? 9 : 6;
      const std::uint32_t saddr_at = v4 ? 12 : 8;
      const std::uint32_t daddr_at = v4 ? 16 : 24;
      const std::uint32_t address = v4 ? 4 : 16;
      if (offset == protocol_at && length == 1) {
        f = {FieldKind::l4proto, 1, v4 ? "ip protocol" : "ip6 nexthdr", {}, {}};
      } else if (offset == saddr_at && length <= address) {
        f = {FieldKind::saddr, length, prefix + "saddr", *l3_, {}};
      } else if (offset == daddr_at && length <= address) {
        f = {FieldKind::daddr, length, prefix + "daddr", *l3_, {}};
      }
    } else if (base == NFT_PAYLOAD_NETWORK_HEADER) {
      f.name = "network header";
    } else if (base == NFT_PAYLOAD_LL_HEADER) {
      f.name = "link layer header";
    }
    load(dreg, std::move(f));
  }

  void read_meta(nftnl_expr* expr) {
    if (!nftnl_expr_is_set(expr, NFTNL_EXPR_META_DREG)) return;  // meta set: a statement
    const std::uint32_t key = nftnl_expr_get_u32(expr, NFTNL_EXPR_META_KEY);
    Field f{FieldKind::other, 4, meta_name(key), core::Family::ipv4, {}};
    switch (key) {
      case NFT_META_L4PROTO: f = {FieldKind::l4proto, 1, "meta l4proto", {}, {}}; break;
      case NFT_META_NFPROTO: f = {FieldKind::nfproto, 1, "meta nfproto", {}, {}}; break;
      case NFT_META_PROTOCOL: f = {FieldKind::ethertype, 2, "meta protocol", {}, {}}; break;
      case NFT_META_IIF: f = {FieldKind::iif, 4, "iif", {}, {}}; break;
      case NFT_META_IIFNAME: f = {FieldKind::iifname, 16, "iifname", {}, {}}; break;
      case NFT_META_OIFNAME:
      case NFT_META_IIFKIND: f.length = 16; break;
      default: break;
    }
    load(nftnl_expr_get_u32(expr, NFTNL_EXPR_META_DREG), std::move(f));
  }

  void read_bitwise(nftnl_expr* expr) {
    const Field* source = field(nftnl_expr_get_u32(expr, NFTNL_EXPR_BITWISE_SREG));
    Field f = source != nullptr ? *source : Field{FieldKind::other, 4, "a computed value", {}, {}};
    const Bytes xor_value = data(expr, NFTNL_EXPR_BITWISE_XOR);
    const bool plain_mask =
        (!nftnl_expr_is_set(expr, NFTNL_EXPR_BITWISE_OP) ||
         nftnl_expr_get_u32(expr, NFTNL_EXPR_BITWISE_OP) == NFT_BITWISE_BOOL) &&
        std::all_of(xor_value.begin(), xor_value.end(), [](std::uint8_t b) { return b == 0; });
    if (plain_mask && f.mask.empty()) {
      f.mask = data(expr, NFTNL_EXPR_BITWISE_MASK);
    } else {
      f = Field{FieldKind::other, f.length, f.name + " (computed)", {}, {}};
    }
    load(nftnl_expr_get_u32(expr, NFTNL_EXPR_BITWISE_DREG), std::move(f));
  }

  core::Result<Judgement> read(const std::optional<VmapVerdict>& vmap) {
    Judgement judgement;
    judgement.ports.resize(ports_.size());
    registers_.clear();
    protocol_token_ = low_port_token_ = std::size_t(-1);
    l3_.reset();
    if (family_ == NFPROTO_IPV4) l3_ = core::Family::ipv4;
    if (family_ == NFPROTO_IPV6) l3_ = core::Family::ipv6;
    for (nftnl_expr* expr : exprs_) {
      const std::string kind = name(expr);
      if (kind == "payload") {
        read_payload(expr);
      } else if (kind == "meta") {
        read_meta(expr);
      } else if (kind == "ct") {
        if (!nftnl_expr_is_set(expr, NFTNL_EXPR_CT_DREG)) continue;  // ct set: a statement
        const std::uint32_t key = nftnl_expr_get_u32(expr, NFTNL_EXPR_CT_KEY);
        load(nftnl_expr_get_u32(expr, NFTNL_EXPR_CT_DREG),
             key == NFT_CT_STATE ? Field{FieldKind::ct_state, 4, "ct state", {}, {}}
                                 : Field{FieldKind::other, 4, ct_name(key), {}, {}});
      } else if (kind == "bitwise") {
        read_bitwise(expr);
      } else if (kind == "cmp") {
        read_cmp(judgement, expr);
      } else if (kind == "range") {
        read_range(judgement, expr);
      } else if (kind == "lookup") {
        if (auto looked = read_lookup(judgement, expr, vmap); !looked) {
          return tl::unexpected(looked.error());
        }
      } else if (kind == "immediate") {
        if (nftnl_expr_get_u32(expr, NFTNL_EXPR_IMM_DREG) == NFT_REG_VERDICT) {
          const char* chain = nftnl_expr_is_set(expr, NFTNL_EXPR_IMM_CHAIN)
                                  ? nftnl_expr_get_str(expr, NFTNL_EXPR_IMM_CHAIN)
                                  : "";
          set_verdict(judgement,
                      static_cast<std::int32_t>(nftnl_expr_get_u32(expr, NFTNL_EXPR_IMM_VERDICT)),
                      chain);
        } else {
          load(nftnl_expr_get_u32(expr, NFTNL_EXPR_IMM_DREG),
               Field{FieldKind::other, 4, "a constant", {}, {}});
        }
      } else if (kind == "reject") {
        judgement.verdict = Verdict::reject;
      } else if (kind == "target") {
        // iptables-nft keeps some targets as xtables extensions.
        const std::string target = nftnl_expr_get_str(expr, NFTNL_EXPR_TG_NAME);
        if (target == "REJECT") judgement.verdict = Verdict::reject;
      } else if (kind == "counter" || kind == "log" || kind == "last" || kind == "notrack" ||
                 (kind == "objref" && nftnl_expr_is_set(expr, NFTNL_EXPR_OBJREF_IMM_TYPE) &&
                  nftnl_expr_get_u32(expr, NFTNL_EXPR_OBJREF_IMM_TYPE) == NFT_OBJECT_COUNTER) ||
                 (kind == "dynset" && !nftnl_expr_is_set(expr, NFTNL_EXPR_DYNSET_EXPR) &&
                  !nftnl_expr_is_set(expr, NFTNL_EXPR_DYNSET_EXPRESSIONS))) {
        continue;  // statements: they match every packet
      } else {
        // limit, quota, fib, socket, an xtables match, ...: a match we cannot judge. It may
        // load registers too, so nothing read before is trusted after it.
        const std::string what =
            kind == "match"
                ? "xt match " + std::string(nftnl_expr_get_str(expr, NFTNL_EXPR_MT_NAME))
                : kind;
        judgement.text.push_back(what);
        apply(judgement, Effect::unjudged, what);
        registers_.clear();
      }
    }
    return judgement;
  }

  Ruleset& ruleset_;
  const std::vector<core::PortKey>& ports_;
  std::uint32_t family_;
  std::string table_;
  std::vector<nftnl_expr*> exprs_;
  std::map<std::uint32_t, Field> registers_;
  std::optional<core::Family> l3_;                // whose header the network-header loads read
  std::size_t protocol_token_ = std::size_t(-1);  // text index of a "meta l4proto tcp"
  std::size_t low_port_token_ = std::size_t(-1);  // text index of a "dport >= n"
};

// ------------------------------------------------------------------ chains, walked

std::string verdict_text(const Judgement& judgement) {
  switch (judgement.verdict) {
    case Verdict::accept: return "accept";
    case Verdict::drop: return "drop";
    case Verdict::reject: return "reject";
    case Verdict::jump: return "jump " + judgement.target;
    case Verdict::go: return "goto " + judgement.target;
    case Verdict::ret: return "return";
    case Verdict::none: return "";
  }
  return "";
}

// "tcp dport 22", "tcp dport { 22, 3389 }", "meta l4proto . th dport { tcp . 22, udp . 53 }".
std::string port_match(const std::vector<core::PortKey>& ports) {
  const bool one_protocol = std::all_of(ports.begin(), ports.end(), [&](const auto& port) {
    return port.protocol == ports.front().protocol;
  });
  std::vector<std::string> values;
  for (const auto& port : ports) {
    values.push_back(one_protocol ? std::to_string(port.port)
                                  : std::string(core::to_string(port.protocol)) + " . " +
                                        std::to_string(port.port));
  }
  const std::string set = values.size() == 1 ? values.front() : "{ " + join(values, ", ") + " }";
  if (one_protocol) return std::string(core::to_string(ports.front().protocol)) + " dport " + set;
  return "meta l4proto . th dport " + set;
}

std::string port_list(const std::vector<core::PortKey>& ports) {
  std::vector<std::string> names;
  for (const auto& port : ports) {
    names.push_back(std::to_string(port.port) + "/" + std::string(core::to_string(port.protocol)));
  }
  return join(names, ", ");
}

// How other firewall front ends open a port, when the table is theirs.
std::string front_end_hint(const ObjectKey& chain, const std::vector<core::PortKey>& ports) {
  std::vector<std::string> commands;
  if (chain.table == "firewalld") {
    for (const auto& port : ports) {
      commands.push_back("firewall-cmd --permanent --add-port=" + std::to_string(port.port) + "/" +
                         std::string(core::to_string(port.protocol)));
    }
    return " (firewalld: " + join(commands, "; ") + "; firewall-cmd --reload)";
  }
  if (chain.name.starts_with("ufw")) {
    for (const auto& port : ports) {
      commands.push_back("ufw allow " + std::to_string(port.port) + "/" +
                         std::string(core::to_string(port.protocol)));
    }
    return " (ufw: " + join(commands, "; ") + ")";
  }
  return "";
}

std::string drop_advice(const ObjectKey& chain, std::uint64_t handle,
                        const std::vector<core::PortKey>& ports) {
  const std::string where = family_name(chain.family) + " " + chain.table + " " + chain.name;
  const std::string command =
      handle == 0 ? "nft add rule " + where + " " + port_match(ports) + " accept"
                  : "nft insert rule " + where + " position " + std::to_string(handle) + " " +
                        port_match(ports) + " accept";
  return "let the protected ports through here and leave the choice of sources to jitd, whose "
         "table still drops every source without a grant: " +
         command + front_end_hint(chain, ports);
}

std::string accept_advice(const Judgement& judgement, const ObjectKey& chain, std::uint64_t handle,
                          const std::vector<core::PortKey>& ports) {
  const std::string lost =
      "jitd's table drops every source without a grant or an allow-list "
      "entry on " +
      port_list(ports) + ", so this rule no longer admits anyone there";
  if (!judgement.names_sources) {
    return lost +
           ": nothing to change if every client is to request access; otherwise list "
           "the clients in permanentAllowList";
  }
  if (!judgement.sources_exact || judgement.sources.empty()) {
    return lost + ": to keep admitting its clients, add " +
           (judgement.sources_note.empty() ? "their addresses" : judgement.sources_note) +
           " to permanentAllowList in a policy file";
  }
  std::vector<std::string> quoted;
  for (const auto& source : judgement.sources) quoted.push_back("\"" + source + "\"");
  std::string yaml =
      "permanentAllowList:\n  - sourceAddressPrefixes: [" + join(quoted, ", ") + "]\n    ports:\n";
  for (const auto& port : ports) {
    yaml += "      - number: " + std::to_string(port.port) +
            "\n        protocol: " + std::string(core::to_string(port.protocol)) + "\n";
  }
  yaml += "    description: \"was " + family_name(chain.family) + " " + chain.table + " " +
          chain.name + " handle " + std::to_string(handle) + "\"\n";
  return lost + "; to keep admitting its clients, add to a policy file:\n" + yaml;
}

// Whether a port may still reach a point in a chain, and if only maybe, why.
struct Reach {
  Match match = Match::yes;
  std::string why;
};

class Inspector {
 public:
  Inspector(Ruleset& ruleset, const std::vector<core::PortKey>& ports)
      : ruleset_(ruleset), ports_(ports) {}

  core::Result<void> inspect(const BaseChain& base) {
    std::vector<Reach> reach(ports_.size());
    auto walked = walk(base, base.key, reach, "", 0);
    if (!walked) return tl::unexpected(walked.error());
    if (base.policy != NF_DROP) return {};
    std::vector<core::PortKey> affected;
    std::vector<std::string> whys;
    bool certain = true;
    for (std::size_t i = 0; i < ports_.size(); ++i) {
      if (reach[i].match == Match::no) continue;
      affected.push_back(ports_[i]);
      if (reach[i].match == Match::maybe) {
        certain = false;
        if (std::find(whys.begin(), whys.end(), reach[i].why) == whys.end()) {
          whys.push_back(reach[i].why);
        }
      }
    }
    if (affected.empty()) return {};
    std::string rule = "policy drop";
    if (!whys.empty()) rule += " (" + join(whys, "; ") + ")";
    add({FirewallConflict::Kind::drops, certain, family_name(base.key.family), base.key.table,
         base.key.name, base.hook, base.priority, 0, affected, rule,
         drop_advice(base.key, 0, affected)});
    return {};
  }

  std::vector<FirewallConflict> conflicts;

 private:
  void add(FirewallConflict conflict) {
    for (auto& known : conflicts) {
      if (known.kind == conflict.kind && known.family == conflict.family &&
          known.table == conflict.table && known.chain == conflict.chain &&
          known.handle == conflict.handle) {
        // The same rule reached again through another jump.
        for (const auto& port : conflict.ports) {
          if (std::find(known.ports.begin(), known.ports.end(), port) == known.ports.end()) {
            known.ports.push_back(port);
          }
        }
        std::sort(known.ports.begin(), known.ports.end());
        known.certain = known.certain && conflict.certain;
        return;
      }
    }
    conflicts.push_back(std::move(conflict));
  }

  // Walks a chain for the ports still reaching it (`reach`, updated to what falls through);
  // `via` says how a regular chain was reached. Returns, per port, whether the chain may accept.
  core::Result<std::vector<bool>> walk(const BaseChain& base, const ObjectKey& chain,
                                       std::vector<Reach>& reach, const std::string& via,
                                       int depth) {
    std::vector<bool> may_accept(ports_.size(), false);
    RuleReader reader(ruleset_, ports_, chain.family, chain.table);
    for (const Rule& rule : ruleset_.rules(chain)) {
      const std::uint64_t handle = nftnl_rule_get_u64(rule.get(), NFTNL_RULE_HANDLE);
      auto judgements = reader.judge(rule);
      if (!judgements) return tl::unexpected(judgements.error());
      for (const Judgement& judgement : *judgements) {
        auto stepped = step(base, chain, handle, judgement, reach, may_accept, via, depth);
        if (!stepped) return tl::unexpected(stepped.error());
      }
    }
    return may_accept;
  }

  core::Result<void> step(const BaseChain& base, const ObjectKey& chain, std::uint64_t handle,
                          const Judgement& judgement, std::vector<Reach>& reach,
                          std::vector<bool>& may_accept, const std::string& via, int depth) {
    const auto reached = [&](std::size_t i, Match match) {
      return match != Match::no && reach[i].match != Match::no;
    };
    std::vector<std::string> text = judgement.text;
    text.push_back(verdict_text(judgement));
    const std::string shown = join(text, " ");
    const auto conflict = [&](FirewallConflict::Kind kind, const auto& match_of) {
      std::vector<core::PortKey> affected;
      std::vector<std::string> whys;
      bool certain = via.empty();
      for (std::size_t i = 0; i < ports_.size(); ++i) {
        const Match match = match_of(judgement.ports[i]);
        if (!reached(i, match)) continue;
        affected.push_back(ports_[i]);
        if (match != Match::yes) certain = false;
        if (reach[i].match != Match::yes) {
          certain = false;
          if (std::find(whys.begin(), whys.end(), reach[i].why) == whys.end()) {
            whys.push_back(reach[i].why);
          }
        }
      }
      if (affected.empty()) return;
      if (!judgement.unjudged.empty()) {
        whys.insert(whys.begin(), "not judged: " + join(judgement.unjudged, ", "));
      }
      if (!via.empty()) whys.push_back(via);
      std::string rule = shown;
      if (!whys.empty()) rule += " (" + join(whys, "; ") + ")";
      std::string advice = kind == FirewallConflict::Kind::drops
                               ? drop_advice(chain, handle, affected)
                               : accept_advice(judgement, chain, handle, affected);
      add({kind, certain, family_name(chain.family), chain.table, chain.name, base.hook,
           base.priority, handle, std::move(affected), std::move(rule), std::move(advice)});
    };
    // A port matched by every packet to it goes no further in this chain.
    const auto stop_whole = [&] {
      for (std::size_t i = 0; i < ports_.size(); ++i) {
        if (judgement.ports[i].match == Match::yes && judgement.ports[i].whole) {
          reach[i].match = Match::no;
        }
      }
    };
    // After a rule that may accept some of a port's traffic in ways we cannot judge, a later
    // drop is only possible. Matches on sources leave other (granted) sources to the drop.
    const auto may_have_accepted = [&](std::size_t i, const std::string& why) {
      if (reach[i].match == Match::yes) reach[i] = {Match::maybe, why};
    };

    switch (judgement.verdict) {
      case Verdict::drop:
      case Verdict::reject:
        conflict(FirewallConflict::Kind::drops, [](const PortMatch& m) { return m.match; });
        stop_whole();
        break;
      case Verdict::accept:
        if (judgement.names_port || judgement.names_sources) {
          conflict(FirewallConflict::Kind::accepts,
                   [](const PortMatch& m) { return m.ignoring_sources; });
        }
        for (std::size_t i = 0; i < ports_.size(); ++i) {
          if (!reached(i, judgement.ports[i].match)) continue;
          may_accept[i] = true;
          if (judgement.ports[i].ignoring_sources == Match::maybe) {
            may_have_accepted(i, "rule handle " + std::to_string(handle) + " in " + chain.name +
                                     " may accept it first");
          }
        }
        stop_whole();
        break;
      case Verdict::jump:
      case Verdict::go: {
        if (depth + 1 >= max_jump_depth) break;
        std::vector<Reach> inner(ports_.size(), Reach{Match::no, {}});
        bool any = false;
        for (std::size_t i = 0; i < ports_.size(); ++i) {
          if (!reached(i, judgement.ports[i].match)) continue;
          any = true;
          inner[i] = reach[i];
          if (judgement.ports[i].match == Match::maybe && inner[i].match == Match::yes) {
            inner[i].match = Match::maybe;
          }
        }
        if (!any) break;
        const ObjectKey target{chain.family, chain.table, judgement.target};
        const std::string inner_via =
            "reached through " + std::string(judgement.verdict == Verdict::jump ? "jump" : "goto") +
            " from " + chain.name + " handle " + std::to_string(handle);
        auto accepted = walk(base, target, inner, inner_via, depth + 1);
        if (!accepted) return tl::unexpected(accepted.error());
        for (std::size_t i = 0; i < ports_.size(); ++i) {
          if (!(*accepted)[i]) continue;
          may_accept[i] = true;
          may_have_accepted(i, "chain " + judgement.target + " may accept it first");
        }
        if (judgement.verdict == Verdict::go) stop_whole();
        break;
      }
      case Verdict::ret:
        // In a base chain a return leads to the policy, which inspect() judges.
        if (!via.empty()) stop_whole();
        break;
      case Verdict::none: break;
    }
    return {};
  }

  Ruleset& ruleset_;
  const std::vector<core::PortKey>& ports_;
};

// ------------------------------------------------------------------ legacy iptables

// The table names of a /proc/net/*_tables_names file; a missing file means none are loaded.
core::Result<std::vector<std::string>> legacy_tables(const char* path) {
  sys::UniqueFd fd(open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return std::vector<std::string>{};
    return sys::fail_system(core::ErrorCode::io, std::string("open ") + path, errno);
  }
  auto text = sys::read_all(fd.get(), std::string("read ") + path, 64 * 1024);
  if (!text) return tl::unexpected(text.error());
  std::vector<std::string> names;
  std::istringstream lines(*text);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) names.push_back(line);
  }
  return names;
}

}  // namespace

core::Result<FirewallReport> inspect_firewall(const std::vector<core::PortKey>& protected_ports,
                                              std::string_view own_table) {
  std::vector<core::PortKey> ports = protected_ports;
  std::sort(ports.begin(), ports.end());
  ports.erase(std::unique(ports.begin(), ports.end()), ports.end());

  FirewallReport report;
  auto netlink = Netlink::open();
  if (!netlink) return tl::unexpected(netlink.error());
  // A dump that a concurrent change interrupted (NLM_F_DUMP_INTR) fails with EINTR: read again.
  auto ruleset = Ruleset::read(*netlink, own_table);
  for (int retry = 0; retry < 3 && !ruleset && ruleset.error().sys_errno == EINTR; ++retry) {
    ruleset = Ruleset::read(*netlink, own_table);
  }
  if (!ruleset) return tl::unexpected(ruleset.error());
  Inspector inspector(*ruleset, ports);
  for (const BaseChain& base : ruleset->base_chains) {
    if (auto inspected = inspector.inspect(base); !inspected) {
      return tl::unexpected(inspected.error());
    }
  }
  report.conflicts = std::move(inspector.conflicts);

  for (const auto& [path, tool] : {std::pair{"/proc/net/ip_tables_names", "iptables"},
                                   std::pair{"/proc/net/ip6_tables_names", "ip6tables"}}) {
    auto names = legacy_tables(path);
    if (!names) {
      report.notes.push_back("could not tell whether legacy " + std::string(tool) +
                             " tables are loaded: " + names.error().message);
      continue;
    }
    for (const auto& name : *names) report.legacy_iptables_tables.push_back(tool + (" " + name));
  }
  if (!report.legacy_iptables_tables.empty()) {
    report.notes.push_back(
        "legacy iptables tables are loaded (" + join(report.legacy_iptables_tables, ", ") +
        "): their rules are invisible to nftables, so jitd cannot judge whether they drop granted "
        "clients; read them with iptables-legacy-save and ip6tables-legacy-save");
  }
  return report;
}

}  // namespace jitd::nft
