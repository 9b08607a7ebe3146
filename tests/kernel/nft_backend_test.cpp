// NftBackend against the running kernel. main() first moves the process into a new network
// namespace, so nothing here can touch the host's ruleset; `nft` children inherit it and
// read the kernel independently of the backend.
#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "jitd/nft/nft_backend.hpp"
#include "kernel_test_support.hpp"

namespace {

using jitd::core::AddressRange;
using jitd::core::AddressValue;
using jitd::core::ElementChanges;
using jitd::core::ElementKey;
using jitd::core::EnforcementSpec;
using jitd::core::Family;
using jitd::core::Milliseconds;
using jitd::core::PortCounters;
using jitd::core::PortKey;
using jitd::core::Protocol;
using jitd::core::TimedElement;
using jitd::nft::NftBackend;
using namespace jitd::test;  // run, feed, nft_objects, succeeded, skip_all
using nlohmann::json;
using namespace std::chrono_literals;

json nft_set(const std::string& name) {
  const auto sets = nft_objects("set inet jitd " + name, "set");
  return sets.empty() ? json() : sets.front();
}

// Elements of a listed set as text: "198.51.100.7 . tcp . 22 timeout 3600", addresses as
// nft prints them (plain, prefix or range).
std::vector<std::string> element_texts(const json& set) {
  std::vector<std::string> texts;
  if (!set.contains("elem")) return texts;
  for (const json& item : set.at("elem")) {
    const json& element = item.contains("elem") ? item.at("elem") : item;
    const json& value = element.contains("val") ? element.at("val") : element;
    std::string text;
    for (const json& field : value.at("concat")) {
      if (!text.empty()) text += " . ";
      if (field.contains("prefix")) {
        text += field["prefix"]["addr"].get<std::string>() + "/" +
                std::to_string(field["prefix"]["len"].get<int>());
      } else if (field.contains("range")) {
        text += field["range"][0].get<std::string>() + "-" + field["range"][1].get<std::string>();
      } else {
        text += field.is_string() ? field.get<std::string>() : field.dump();
      }
    }
    if (element.contains("timeout")) text += " timeout " + element["timeout"].dump();
    texts.push_back(text);
  }
  std::sort(texts.begin(), texts.end());
  return texts;
}

const ElementKey host_tcp22 = key("198.51.100.7", Protocol::tcp, 22);
const ElementKey net_udp53 = key("203.0.113.0", "203.0.113.255", Protocol::udp, 53);
const ElementKey v6_tcp22 = key("2001:db8::7", Protocol::tcp, 22);
const ElementKey v6_net_tcp22 = key("2001:db8:1::", "2001:db8:1::ff", Protocol::tcp, 22);

EnforcementSpec sample_spec() {
  EnforcementSpec spec;
  spec.protected_ports = {{Protocol::tcp, 22}, {Protocol::udp, 53}};
  spec.permanent = {key("192.0.2.0", "192.0.2.255", Protocol::tcp, 22),
                    key("2001:db8::", "2001:db8::ffff:ffff:ffff:ffff", Protocol::tcp, 22)};
  spec.grants = {{host_tcp22, 1h}, {net_udp53, 30min}};
  spec.audited_ports = {{Protocol::udp, 53}};
  return spec;
}

class NftBackendTest : public testing::Test {
 protected:
  // Whether the backend owns the table (owner + persist flags, Linux 6.9+).
  virtual bool claim_ownership() const { return false; }

  void SetUp() override {
    if (skip_all()) GTEST_SKIP() << "no private network namespace (needs root or CAP_SYS_ADMIN)";
    auto opened = NftBackend::open("jitd", claim_ownership());
    ASSERT_TRUE(succeeded(opened));
    backend_ = std::move(*opened);
    if (claim_ownership() && !backend_->owns_table()) {
      GTEST_SKIP() << "kernel lacks owner + persist table flags (Linux 6.9+)";
    }
    ASSERT_TRUE(succeeded(backend_->uninstall()));
    ASSERT_TRUE(succeeded(backend_->install(EnforcementSpec{{{Protocol::tcp, 22}}, {}, {}})));
  }

  void apply_ok(const ElementChanges& changes) { ASSERT_TRUE(succeeded(backend_->apply(changes))); }

  std::vector<TimedElement> grants() {
    auto snapshot = backend_->snapshot();
    EXPECT_TRUE(succeeded(snapshot));
    return snapshot ? snapshot->grants : std::vector<TimedElement>{};
  }

  std::unique_ptr<NftBackend> backend_;
};

// Tests of what the table holds run with an unowned table and with an owned one; those about
// timeouts and size, which the table's flags do not affect, only unowned. An owned table
// outlives its test's backend, orphaned; the next SetUp's uninstall removes it.
class NftBackendOwnershipTest : public NftBackendTest, public testing::WithParamInterface<bool> {
 protected:
  bool claim_ownership() const override { return GetParam(); }
};

TEST_P(NftBackendOwnershipTest, InstallCreatesTheRuleset) {
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));

  std::vector<std::string> names;
  for (const json& set : nft_objects("table inet jitd", "set")) {
    const std::string name = set.at("name");
    names.push_back(name);
    if (name.starts_with("would_block")) continue;
    const bool interval =
        name.starts_with("allow") || (name.starts_with("grants") && !name.ends_with("_single"));
    const bool timeout = name.starts_with("grants");
    EXPECT_EQ(set.value("flags", json::array()).size(), interval + timeout) << set.dump();
    // No size: the kernel sets no element limit then.
    EXPECT_FALSE(set.contains("size")) << set.dump();
  }
  EXPECT_EQ(names,
            (std::vector<std::string>{"protected", "allow4", "allow6", "grants4_single",
                                      "grants6_single", "grants4", "grants6", "dropped_new",
                                      "admitted", "audited", "would_block4", "would_block6"}));
  EXPECT_EQ(nft_set("allow4").at("type"), json({"ipv4_addr", "inet_proto", "inet_service"}));
  EXPECT_EQ(nft_set("grants6").at("flags"), json({"interval", "timeout"}));
  EXPECT_EQ(nft_set("grants6_single").at("type"),
            json({"ipv6_addr", "inet_proto", "inet_service"}));
  EXPECT_EQ(nft_set("grants6_single").at("flags"), json({"timeout"}));
  // Filled by the packet path: bounded, and forgetting sources an hour after their last packet.
  for (const char* name : {"would_block4", "would_block6"}) {
    const json set = nft_set(name);
    // (nft lists no "dynamic" here, for its own `flags dynamic, timeout` set neither: the
    // whole table is compared with nft's in RulesetListsLikeNftsOwn.)
    EXPECT_EQ(set.at("flags"), json({"timeout"})) << set.dump();
    EXPECT_EQ(set.at("timeout"), 3600) << set.dump();
    EXPECT_EQ(set.at("size"), 65536) << set.dump();
  }

  const auto chains = nft_objects("table inet jitd", "chain");
  ASSERT_EQ(chains.size(), 3U);
  EXPECT_EQ(chains[0].at("name"), "granted");
  EXPECT_EQ(chains[1].at("name"), "audit");
  EXPECT_EQ(chains[2].at("name"), "input");
  EXPECT_EQ(chains[2].at("hook"), "input");
  EXPECT_EQ(chains[2].at("prio"), -10);
  EXPECT_EQ(chains[2].at("policy"), "accept");

  std::vector<json> rules;
  for (const json& rule : nft_objects("table inet jitd", "rule")) {
    if (rule.at("chain") == "input") rules.push_back(rule);
  }
  ASSERT_EQ(rules.size(), 12U);
  EXPECT_EQ(rules[0]["expr"][0]["match"]["right"], "lo");
  EXPECT_EQ(rules[1]["expr"][0]["match"]["op"], "!=");
  EXPECT_EQ(rules[1]["expr"][0]["match"]["right"], "@protected");
  EXPECT_EQ(rules[2]["expr"][0]["match"]["right"], json({"established", "related"}));
  const std::array<const char*, 6> lookups{"@allow4",         "@allow6",  "@grants4_single",
                                           "@grants6_single", "@grants4", "@grants6"};
  for (std::size_t i = 0; i < lookups.size(); ++i) {
    // The lookup (nft leaves the nfproto match implied), then accept (allow-list) or goto
    // granted (grants).
    EXPECT_EQ(rules[3 + i]["expr"][0]["match"]["right"], lookups[i]) << rules[3 + i].dump();
    EXPECT_EQ(rules[3 + i]["expr"][1].contains("goto"), i >= 2) << rules[3 + i].dump();
  }
  EXPECT_EQ(rules[9]["expr"][0]["match"]["right"], "@audited");
  EXPECT_EQ(rules[9]["expr"][1]["goto"]["target"], "audit");
  EXPECT_EQ(rules[10]["expr"][1]["match"]["right"], "@dropped_new");
  // The drop rule looks the port up again for the element's counter: per-port drops.
  EXPECT_EQ(rules[11]["expr"][0]["match"]["right"], "@protected");
  EXPECT_TRUE(rules[11]["expr"][1].contains("counter"));
  EXPECT_TRUE(rules[11]["expr"][2].contains("drop"));

  for (const char* counted : {"protected", "dropped_new", "admitted"}) {
    EXPECT_EQ(element_texts(nft_set(counted)), (std::vector<std::string>{"tcp . 22", "udp . 53"}))
        << counted;
  }
  EXPECT_EQ(element_texts(nft_set("audited")), (std::vector<std::string>{"udp . 53"}));
  EXPECT_EQ(element_texts(nft_set("allow6")),
            (std::vector<std::string>{"2001:db8::/64 . tcp . 22"}));
  EXPECT_EQ(element_texts(nft_set("grants4_single")),
            (std::vector<std::string>{"198.51.100.7 . tcp . 22 timeout 3600"}));
  EXPECT_EQ(element_texts(nft_set("grants4")),
            (std::vector<std::string>{"203.0.113.0/24 . udp . 53 timeout 1800"}));

  auto snapshot = backend_->snapshot();
  ASSERT_TRUE(succeeded(snapshot));
  const EnforcementSpec spec = sample_spec();
  EXPECT_TRUE(snapshot->installed);
  EXPECT_EQ(snapshot->protected_ports, spec.protected_ports);
  EXPECT_EQ(snapshot->permanent, spec.permanent);
  EXPECT_EQ(keys_of(snapshot->grants), (std::vector<ElementKey>{host_tcp22, net_udp53}));

  // One drop counter per protected port, nothing dropped yet (no traffic in this namespace).
  auto dropped = backend_->counters();
  ASSERT_TRUE(succeeded(dropped));
  EXPECT_EQ(*dropped,
            (std::vector<PortCounters>{{spec.protected_ports[0]}, {spec.protected_ports[1]}}));
}

// nft itself, given the ruleset as text, must produce a table that lists identically.
TEST_P(NftBackendOwnershipTest, RulesetListsLikeNftsOwn) {
  EnforcementSpec spec = sample_spec();
  spec.grants.clear();  // "expires" would differ
  ASSERT_TRUE(succeeded(backend_->install(spec)));
  const std::string reference = R"(table inet reference {
    set protected { type inet_proto . inet_service; counter; elements = { tcp . 22, udp . 53 } }
    set allow4 { type ipv4_addr . inet_proto . inet_service; flags interval;
                 elements = { 192.0.2.0/24 . tcp . 22 } }
    set allow6 { type ipv6_addr . inet_proto . inet_service; flags interval;
                 elements = { 2001:db8::/64 . tcp . 22 } }
    set grants4_single { type ipv4_addr . inet_proto . inet_service; flags timeout; }
    set grants6_single { type ipv6_addr . inet_proto . inet_service; flags timeout; }
    set grants4 { type ipv4_addr . inet_proto . inet_service; flags interval, timeout; }
    set grants6 { type ipv6_addr . inet_proto . inet_service; flags interval, timeout; }
    set dropped_new { type inet_proto . inet_service; counter; elements = { tcp . 22, udp . 53 } }
    set admitted { type inet_proto . inet_service; counter; elements = { tcp . 22, udp . 53 } }
    set audited { type inet_proto . inet_service; counter; elements = { udp . 53 } }
    set would_block4 { type ipv4_addr . inet_proto . inet_service; size 65536;
                       flags dynamic, timeout; counter; timeout 1h; }
    set would_block6 { type ipv6_addr . inet_proto . inet_service; size 65536;
                       flags dynamic, timeout; counter; timeout 1h; }
    chain granted {
      ct state new meta l4proto . th dport @admitted
      accept
    }
    chain audit {
      meta nfproto ipv4 update @would_block4 { ip saddr . meta l4proto . th dport }
      meta nfproto ipv6 update @would_block6 { ip6 saddr . meta l4proto . th dport }
      accept
    }
    chain input {
      type filter hook input priority -10; policy accept;
      iif "lo" accept
      meta l4proto . th dport != @protected accept
      ct state established,related accept
      meta nfproto ipv4 ip saddr . meta l4proto . th dport @allow4 accept
      meta nfproto ipv6 ip6 saddr . meta l4proto . th dport @allow6 accept
      meta nfproto ipv4 ip saddr . meta l4proto . th dport @grants4_single goto granted
      meta nfproto ipv6 ip6 saddr . meta l4proto . th dport @grants6_single goto granted
      meta nfproto ipv4 ip saddr . meta l4proto . th dport @grants4 goto granted
      meta nfproto ipv6 ip6 saddr . meta l4proto . th dport @grants6 goto granted
      meta l4proto . th dport @audited goto audit
      ct state new meta l4proto . th dport @dropped_new
      meta l4proto . th dport @protected counter drop
    }
  })";
  ASSERT_EQ(feed("nft -f -", reference), 0);
  // Compared from the first set on: an owned table's header also names the owner.
  const auto body = [](const std::string& text) { return text.substr(text.find("\tset")); };
  EXPECT_EQ(body(run("nft list table inet jitd").text),
            body(run("nft list table inet reference").text));
  ASSERT_EQ(run("nft delete table inet reference").status, 0);
}

TEST_P(NftBackendOwnershipTest, InstallTwiceReplacesEverything) {
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  const ElementKey other = key("192.0.2.99", Protocol::tcp, 2222);
  ASSERT_TRUE(
      succeeded(backend_->install(EnforcementSpec{{{Protocol::tcp, 2222}}, {}, {{other, 1h}}})));

  EXPECT_EQ(element_texts(nft_set("grants4_single")),
            (std::vector<std::string>{"192.0.2.99 . tcp . 2222 timeout 3600"}));
  EXPECT_TRUE(element_texts(nft_set("grants4")).empty());
  EXPECT_EQ(element_texts(nft_set("protected")), (std::vector<std::string>{"tcp . 2222"}));
  EXPECT_TRUE(element_texts(nft_set("allow4")).empty());
  EXPECT_TRUE(element_texts(nft_set("audited")).empty());
  EXPECT_EQ(nft_objects("table inet jitd", "rule").size(), 17U);
  EXPECT_EQ(keys_of(grants()), (std::vector<ElementKey>{other}));
}

TEST_P(NftBackendOwnershipTest, ApplyAddsGrantsAndSnapshotReportsRemainingTime) {
  apply_ok(ElementChanges{{}, {{host_tcp22, 60s}, {net_udp53, 120s}, {v6_tcp22, 90s}}});
  EXPECT_TRUE(succeeded(backend_->apply(ElementChanges{})));

  EXPECT_EQ(element_texts(nft_set("grants4_single")),
            (std::vector<std::string>{"198.51.100.7 . tcp . 22 timeout 60"}));
  EXPECT_EQ(element_texts(nft_set("grants4")),
            (std::vector<std::string>{"203.0.113.0/24 . udp . 53 timeout 120"}));
  EXPECT_EQ(element_texts(nft_set("grants6_single")),
            (std::vector<std::string>{"2001:db8::7 . tcp . 22 timeout 90"}));
  EXPECT_TRUE(element_texts(nft_set("grants6")).empty());

  const auto current = grants();
  ASSERT_EQ(keys_of(current), (std::vector<ElementKey>{host_tcp22, net_udp53, v6_tcp22}));
  const std::array<Milliseconds, 3> given{60s, 120s, 90s};
  for (std::size_t i = 0; i < given.size(); ++i) {
    EXPECT_LE(current[i].timeout, given[i]);
    EXPECT_GT(current[i].timeout, given[i] - 5s);
  }
}

// counters() reads each counting set into its own field, would_block() the dynamic sets. The
// counters are set here through nft (traffic that moves them is tests/kernel/
// test_operator_counters.py's and test_audit_mode.py's).
TEST_F(NftBackendTest, CountersAndWouldBlockReadEachSet) {
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  auto counted = backend_->counters();
  ASSERT_TRUE(succeeded(counted));
  const PortCounters ssh{{Protocol::tcp, 22}}, dns{{Protocol::udp, 53}};
  EXPECT_EQ(*counted, (std::vector<PortCounters>{ssh, dns}));
  auto sources = backend_->would_block();
  ASSERT_TRUE(succeeded(sources));
  EXPECT_TRUE(sources->empty());

  // Each set's tcp . 22 element replaced by one whose counter has seen `packets`.
  const auto preset = [](const std::string& set, int packets) {
    return run("nft delete element inet jitd " + set +
               " '{ tcp . 22 }' && nft add element inet jitd " + set +
               " '{ tcp . 22 counter packets " + std::to_string(packets) + " bytes 0 }'")
        .status;
  };
  ASSERT_EQ(preset("protected", 7), 0);
  ASSERT_EQ(preset("dropped_new", 3), 0);
  ASSERT_EQ(preset("admitted", 2), 0);
  ASSERT_EQ(
      run("nft add element inet jitd audited '{ tcp . 22 counter packets 9 bytes 0 }'").status, 0);
  ASSERT_EQ(run("nft add element inet jitd would_block4 '{ 198.51.100.9 . udp . 53 counter "
                "packets 4 bytes 0 }' && nft add element inet jitd would_block6 '{ "
                "2001:db8::9 . tcp . 22 counter packets 1 bytes 0 }'")
                .status,
            0);
  counted = backend_->counters();
  ASSERT_TRUE(succeeded(counted));
  EXPECT_EQ(*counted, (std::vector<PortCounters>{{{Protocol::tcp, 22}, 7, 3, 2, 9}, dns}));
  sources = backend_->would_block();
  ASSERT_TRUE(succeeded(sources));
  EXPECT_EQ(*sources, (std::vector<jitd::core::WouldBlock>{
                          {{Family::ipv4, address("198.51.100.9"), address("198.51.100.9")},
                           {Protocol::udp, 53},
                           4},
                          {{Family::ipv6, address("2001:db8::9"), address("2001:db8::9")},
                           {Protocol::tcp, 22},
                           1}}));

  // A set that cannot be read is named in the error.
  ASSERT_EQ(run("nft delete table inet jitd").status, 0);
  counted = backend_->counters();
  ASSERT_FALSE(counted);
  EXPECT_NE(counted.error().message.find("list set inet jitd protected"), std::string::npos)
      << counted.error().message;
  sources = backend_->would_block();
  ASSERT_FALSE(sources);
  EXPECT_NE(sources.error().message.find("list set inet jitd would_block4"), std::string::npos)
      << sources.error().message;
}

// The backend splits grants by width: one address to the hash sets, wider ranges to the
// interval sets. Callers see one list either way.
TEST_P(NftBackendOwnershipTest, SinglesAndRangesGoToTheirSets) {
  const ElementKey v4_pair = key("198.51.100.8", "198.51.100.10", Protocol::tcp, 22);
  apply_ok(
      ElementChanges{{}, {{host_tcp22, 1h}, {v4_pair, 1h}, {v6_tcp22, 1h}, {v6_net_tcp22, 1h}}});

  EXPECT_EQ(element_texts(nft_set("grants4_single")),
            (std::vector<std::string>{"198.51.100.7 . tcp . 22 timeout 3600"}));
  EXPECT_EQ(element_texts(nft_set("grants4")),
            (std::vector<std::string>{"198.51.100.8-198.51.100.10 . tcp . 22 timeout 3600"}));
  EXPECT_EQ(element_texts(nft_set("grants6_single")),
            (std::vector<std::string>{"2001:db8::7 . tcp . 22 timeout 3600"}));
  EXPECT_EQ(element_texts(nft_set("grants6")),
            (std::vector<std::string>{"2001:db8:1::/120 . tcp . 22 timeout 3600"}));
  EXPECT_EQ(keys_of(grants()),
            (std::vector<ElementKey>{host_tcp22, v4_pair, v6_tcp22, v6_net_tcp22}));

  // Removal finds each element in its set, in one transaction with additions.
  apply_ok(ElementChanges{{host_tcp22, v6_net_tcp22}, {{net_udp53, 1h}}});
  EXPECT_TRUE(element_texts(nft_set("grants4_single")).empty());
  EXPECT_TRUE(element_texts(nft_set("grants6")).empty());
  EXPECT_EQ(keys_of(grants()), (std::vector<ElementKey>{v4_pair, net_udp53, v6_tcp22}));
  apply_ok(ElementChanges{{v4_pair, v6_tcp22, net_udp53}, {}});
  EXPECT_TRUE(element_texts(nft_set("grants4")).empty());
  EXPECT_TRUE(element_texts(nft_set("grants6_single")).empty());
  EXPECT_TRUE(grants().empty());
}

// What install() writes, snapshot() reads back: same keys (sorted), timeouts counting down.
TEST_P(NftBackendOwnershipTest, SnapshotRoundTripsInstall) {
  EnforcementSpec spec = sample_spec();
  spec.grants = {{v6_net_tcp22, 2h}, {net_udp53, 30min}, {v6_tcp22, 45min}, {host_tcp22, 1h}};
  ASSERT_TRUE(succeeded(backend_->install(spec)));
  auto snapshot = backend_->snapshot();
  ASSERT_TRUE(succeeded(snapshot));
  std::vector<TimedElement> expected = spec.grants;
  std::sort(expected.begin(), expected.end());
  ASSERT_EQ(keys_of(snapshot->grants), keys_of(expected));
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_LE(snapshot->grants[i].timeout, expected[i].timeout);
    EXPECT_GT(snapshot->grants[i].timeout, expected[i].timeout - 5s);
  }
  EXPECT_EQ(snapshot->permanent, spec.permanent);
  EXPECT_EQ(snapshot->audited_ports, spec.audited_ports);

  // Installing what was read gives the same kernel content.
  ASSERT_TRUE(succeeded(backend_->install(
      EnforcementSpec{snapshot->protected_ports, snapshot->permanent, snapshot->grants})));
  auto again = backend_->snapshot();
  ASSERT_TRUE(succeeded(again));
  EXPECT_EQ(keys_of(again->grants), keys_of(snapshot->grants));
  EXPECT_EQ(element_texts(nft_set("grants4_single")).size(), 1U);
  EXPECT_EQ(element_texts(nft_set("grants6")).size(), 1U);
}

// The hash set keeps NFTA_SET_ELEM_TIMEOUT and reports the remaining time like the interval
// set: both count down together, end together, and refuse a duplicate add (EXCL).
TEST_F(NftBackendTest, HashSetTimeoutsBehaveLikeIntervalSetTimeouts) {
  apply_ok(ElementChanges{{}, {{host_tcp22, 3s}, {net_udp53, 3s}}});
  const auto first = grants();
  ASSERT_EQ(keys_of(first), (std::vector<ElementKey>{host_tcp22, net_udp53}));
  std::this_thread::sleep_for(1s);
  const auto second = grants();
  ASSERT_EQ(keys_of(second), keys_of(first));
  for (std::size_t i = 0; i < first.size(); ++i) {
    EXPECT_LE(first[i].timeout, 3s);
    EXPECT_GT(first[i].timeout, 2500ms);
    EXPECT_LE(second[i].timeout, first[i].timeout - 900ms);
    EXPECT_GT(second[i].timeout, first[i].timeout - 1500ms);
  }
  const auto apart = second[0].timeout - second[1].timeout;
  EXPECT_LT(std::chrono::abs(apart), 200ms) << apart.count();

  auto duplicate = backend_->apply(ElementChanges{{}, {{host_tcp22, 1h}}});
  ASSERT_FALSE(duplicate);
  EXPECT_EQ(duplicate.error().sys_errno, EEXIST);
  EXPECT_NE(duplicate.error().message.find("add element to set inet jitd grants4_single: "),
            std::string::npos)
      << duplicate.error().message;

  std::this_thread::sleep_for(second[0].timeout + 500ms);
  EXPECT_TRUE(grants().empty());
  EXPECT_TRUE(element_texts(nft_set("grants4_single")).empty());
  // An expired element that garbage collection has not reached yet does not block the key.
  apply_ok(ElementChanges{{}, {{host_tcp22, 1h}, {net_udp53, 1h}}});
  EXPECT_EQ(keys_of(grants()), (std::vector<ElementKey>{host_tcp22, net_udp53}));
}

TEST_P(NftBackendOwnershipTest, RemoveAndAddTheSameKeyInOneBatchExtends) {
  apply_ok(ElementChanges{{}, {{host_tcp22, 10s}, {v6_tcp22, 10s}}});
  apply_ok(ElementChanges{{host_tcp22, v6_tcp22}, {{host_tcp22, 1h}, {v6_tcp22, 2h}}});

  const auto current = grants();
  ASSERT_EQ(current.size(), 2U);
  EXPECT_GT(current[0].timeout, 1h - 5s);
  EXPECT_GT(current[1].timeout, 2h - 5s);
}

TEST_P(NftBackendOwnershipTest, OverlappingAddFailsAndChangesNothing) {
  apply_ok(ElementChanges{{}, {{net_udp53, 1h}}});
  const ElementKey inside = key("203.0.113.5", "203.0.113.9", Protocol::udp, 53);
  auto applied = backend_->apply(ElementChanges{{}, {{host_tcp22, 1h}, {inside, 1h}}});

  ASSERT_FALSE(applied);
  EXPECT_EQ(applied.error().code, jitd::core::ErrorCode::kernel);
  EXPECT_NE(applied.error().sys_errno, 0);
  EXPECT_NE(applied.error().message.find("add element to set inet jitd grants4: "),
            std::string::npos)
      << applied.error().message;
  EXPECT_EQ(keys_of(grants()), (std::vector<ElementKey>{net_udp53}));
}

// From either grant set; host_tcp22 is in the hash set, net_udp53 in the interval set.
TEST_F(NftBackendTest, ElementDisappearsWhenItsTimeoutEnds) {
  apply_ok(ElementChanges{{}, {{host_tcp22, 1500ms}, {net_udp53, 1500ms}}});
  EXPECT_EQ(element_texts(nft_set("grants4_single")).size(), 1U);
  EXPECT_EQ(element_texts(nft_set("grants4")).size(), 1U);
  std::this_thread::sleep_for(2500ms);
  EXPECT_TRUE(element_texts(nft_set("grants4_single")).empty());
  EXPECT_TRUE(element_texts(nft_set("grants4")).empty());
  EXPECT_TRUE(grants().empty());
}

// From either grant set: host_tcp22 expires in the hash set, v6_net_tcp22 in the interval set.
TEST_F(NftBackendTest, RemovingAnExpiredElementIsTolerated) {
  apply_ok(ElementChanges{{}, {{host_tcp22, 1000ms}, {v6_net_tcp22, 1000ms}, {v6_tcp22, 1h}}});
  std::this_thread::sleep_for(1500ms);
  // The kernel answers ENOENT for the expired removals; the retry drops them.
  apply_ok(ElementChanges{{host_tcp22, v6_net_tcp22, v6_tcp22}, {{net_udp53, 1h}, {v6_tcp22, 2h}}});

  const auto current = grants();
  ASSERT_EQ(keys_of(current), (std::vector<ElementKey>{net_udp53, v6_tcp22}));
  EXPECT_GT(current[1].timeout, 2h - 5s);
}

// Expired elements may linger in the set until garbage collection; they must not block
// re-adding the same key or an overlapping range.
TEST_F(NftBackendTest, ExpiredElementsDoNotBlockNewOnes) {
  const ElementKey range = key("10.1.0.0", "10.1.0.255", Protocol::tcp, 22);
  const ElementKey wider = key("10.2.0.0", "10.2.255.255", Protocol::tcp, 22);
  const ElementKey partial = key("10.3.0.0", "10.3.0.10", Protocol::tcp, 22);
  apply_ok(ElementChanges{{},
                          {{range, 1000ms},
                           {key("10.2.0.0", "10.2.0.255", Protocol::tcp, 22), 1000ms},
                           {key("10.3.0.5", Protocol::tcp, 22), 1000ms}}});
  std::this_thread::sleep_for(1500ms);

  apply_ok(ElementChanges{{}, {{range, 1h}}});
  apply_ok(ElementChanges{{}, {{wider, 1h}}});
  apply_ok(ElementChanges{{}, {{partial, 1h}}});
  EXPECT_EQ(keys_of(grants()), (std::vector<ElementKey>{range, wider, partial}));
}

TEST_F(NftBackendTest, TenThousandElementsInOneApply) {
  ElementChanges changes;
  const AddressValue base = address("10.0.0.0");
  for (AddressValue i = 0; i < 10'000; ++i) {
    changes.add.push_back({{{Family::ipv4, base + i, base + i}, {Protocol::tcp, 22}}, 1h});
  }
  apply_ok(changes);

  // Read back at once: the kernel may still be growing the hash set, which a plain dump
  // does not survive intact (snapshot() re-reads until two dumps agree).
  const auto current = grants();
  EXPECT_EQ(current.size(), 10'000U);
  EXPECT_EQ(keys_of(current), keys_of(changes.add));
  // Replace them all in one batch again: 10 000 deletions plus 10 000 additions.
  for (auto& grant : changes.add) grant.timeout = 2h;
  for (const auto& grant : current) changes.remove.push_back(grant.key);
  apply_ok(changes);
  EXPECT_EQ(grants().size(), 10'000U);
}

TEST_P(NftBackendOwnershipTest, UninstallRemovesTheTableAndIsIdempotent) {
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  ASSERT_TRUE(succeeded(backend_->uninstall()));
  EXPECT_NE(run("nft list table inet jitd").status, 0);
  auto snapshot = backend_->snapshot();
  ASSERT_TRUE(succeeded(snapshot));
  EXPECT_FALSE(snapshot->installed);
  EXPECT_TRUE(succeeded(backend_->uninstall()));
}

INSTANTIATE_TEST_SUITE_P(Table, NftBackendOwnershipTest, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& info) {
                           return info.param ? "Owned" : "Unowned";
                         });

}  // namespace

int main(int argc, char** argv) { return jitd::test::run_in_private_network_namespace(argc, argv); }
