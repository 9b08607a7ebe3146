// RulesetMonitor against `nft` children in a private network namespace, with an unowned
// table (claim_ownership = false), which anyone may change.
#include <poll.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

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
using jitd::core::Protocol;
using jitd::nft::NftBackend;
using jitd::nft::RulesetMonitor;
using namespace jitd::test;  // run, nft_json, succeeded, skip_all
using nlohmann::json;
using namespace std::chrono_literals;

testing::AssertionResult begins_with(const std::string& text, const std::string& prefix) {
  if (text.starts_with(prefix)) return testing::AssertionSuccess();
  return testing::AssertionFailure()
         << "\"" << text << "\" does not begin with \"" << prefix << "\"";
}

ElementKey host(AddressValue address) {
  return ElementKey{AddressRange{Family::ipv4, address, address}, {Protocol::tcp, 22}};
}

const ElementKey grant_key = host(0xC6336407);  // 198.51.100.7 . tcp . 22

class NftMonitorTest : public testing::Test {
 protected:
  void SetUp() override {
    if (skip_all()) GTEST_SKIP() << "no private network namespace (needs root or CAP_SYS_ADMIN)";
    auto opened = NftBackend::open("jitd", false);
    ASSERT_TRUE(succeeded(opened));
    backend_ = std::move(*opened);
    ASSERT_TRUE(succeeded(backend_->uninstall()));
    auto monitor = backend_->open_monitor();
    ASSERT_TRUE(succeeded(monitor));
    monitor_ = std::move(*monitor);
    ASSERT_TRUE(succeeded(
        backend_->install(EnforcementSpec{{{Protocol::tcp, 22}}, {}, {{grant_key, 1h}}})));
    ASSERT_EQ(own_changes(), "");
  }

  bool readable(std::chrono::milliseconds timeout) {
    pollfd events{monitor_->fd(), POLLIN, 0};
    return poll(&events, 1, static_cast<int>(timeout.count())) == 1;
  }

  // What the monitor reports of a change made a moment ago: it must be readable in 100 ms.
  std::string report() {
    if (!readable(100ms)) return "nothing readable within 100 ms";
    auto drained = monitor_->drain();
    if (!drained) return "drain failed: " + drained.error().message;
    return drained->lost.empty() ? drained->foreign : drained->lost;
  }

  // Drains the events of our own change, which arrived and must not be reported.
  std::string own_changes() {
    if (!readable(100ms)) return "no events within 100 ms";
    return report();
  }

  // The handle of the rule at `index` in chain input, as `nft -a` shows it.
  std::string rule_handle(std::size_t index) {
    std::size_t seen = 0;
    for (const json& item : nft_json("-a list chain inet jitd input")) {
      if (item.contains("rule") && seen++ == index) return item["rule"]["handle"].dump();
    }
    return "none";
  }

  std::unique_ptr<NftBackend> backend_;
  std::unique_ptr<RulesetMonitor> monitor_;
};

TEST_F(NftMonitorTest, OwnInstallAndApplyAreNotReported) {
  ASSERT_TRUE(succeeded(backend_->install(EnforcementSpec{{{Protocol::tcp, 22}}, {}, {}})));
  EXPECT_EQ(own_changes(), "");
  ASSERT_TRUE(succeeded(backend_->apply(ElementChanges{{}, {{grant_key, 1h}}})));
  ASSERT_TRUE(succeeded(backend_->apply(ElementChanges{{grant_key}, {{grant_key, 2h}}})));
  ASSERT_TRUE(succeeded(backend_->apply(ElementChanges{{grant_key}, {}})));
  EXPECT_EQ(own_changes(), "");
  EXPECT_FALSE(readable(0ms));
}

TEST_F(NftMonitorTest, DeleteTableIsReported) {
  ASSERT_EQ(run("nft delete table inet jitd").status, 0);
  // The kernel announces the table's rules, sets and chains before the table itself, the
  // rules of the regular chain `granted` (created first) first.
  EXPECT_TRUE(begins_with(report(), "rule deleted from chain granted (netlink port "));
}

TEST_F(NftMonitorTest, FlushRulesetIsReported) {
  ASSERT_EQ(run("nft flush ruleset").status, 0);
  EXPECT_TRUE(begins_with(report(), "rule deleted from chain granted (netlink port "));
}

// grant_key is one address, so it lives in the hash set grants4_single.
TEST_F(NftMonitorTest, FlushSetIsReported) {
  ASSERT_EQ(run("nft flush set inet jitd grants4_single").status, 0);
  EXPECT_TRUE(begins_with(report(), "set grants4_single: elements deleted (netlink port "));
}

// Ranges live in the interval set; changes to either grant set are foreign the same way.
TEST_F(NftMonitorTest, ChangesToTheIntervalSetAreReported) {
  const ElementKey range{AddressRange{Family::ipv4, 0xC6336400, 0xC63364FF}, {Protocol::tcp, 22}};
  ASSERT_TRUE(succeeded(backend_->apply(ElementChanges{{}, {{range, 1h}}})));
  EXPECT_EQ(own_changes(), "");
  ASSERT_EQ(run("nft flush set inet jitd grants4").status, 0);
  EXPECT_TRUE(begins_with(report(), "set grants4: elements deleted (netlink port "));
  ASSERT_EQ(
      run("nft add element inet jitd grants4 '{ 192.0.2.0/24 . tcp . 22 timeout 1h }'").status, 0);
  EXPECT_TRUE(begins_with(report(), "set grants4: elements added (netlink port "));
}

TEST_F(NftMonitorTest, ForeignElementInTheHashSetIsReported) {
  ASSERT_EQ(run("nft add element inet jitd grants6_single '{ 2001:db8::1 . udp . 53 }'").status, 0);
  EXPECT_TRUE(begins_with(report(), "set grants6_single: elements added (netlink port "));
  ASSERT_EQ(run("nft delete element inet jitd grants4_single '{ 198.51.100.7 . tcp . 22 }'").status,
            0);
  EXPECT_TRUE(begins_with(report(), "set grants4_single: elements deleted (netlink port "));
}

TEST_F(NftMonitorTest, DeleteRuleIsReported) {
  const std::string handle = rule_handle(9);  // counter drop
  ASSERT_EQ(run("nft delete rule inet jitd input handle " + handle).status, 0) << handle;
  EXPECT_TRUE(begins_with(report(), "rule deleted from chain input (netlink port "));
}

TEST_F(NftMonitorTest, AddRuleIsReported) {
  ASSERT_EQ(run("nft add rule inet jitd input accept").status, 0);
  EXPECT_TRUE(begins_with(report(), "rule added to chain input (netlink port "));
}

TEST_F(NftMonitorTest, DormantTableIsReported) {
  ASSERT_EQ(run("nft add table inet jitd '{ flags dormant; }'").status, 0);
  EXPECT_TRUE(begins_with(report(), "table added or changed (netlink port "));
}

// The report names the sender: `nft` binds its socket to its own pid.
TEST_F(NftMonitorTest, ReportNamesTheSendersPort) {
  const Output output =
      run("nft add element inet jitd grants4_single '{ 192.0.2.1 . tcp . 22 }' & "
          "echo $!; wait");
  ASSERT_EQ(output.status, 0);
  EXPECT_EQ(report(), "set grants4_single: elements added (netlink port " +
                          output.text.substr(0, output.text.find('\n')) + ")");
}

TEST_F(NftMonitorTest, OtherTablesAreNotReported) {
  ASSERT_EQ(run("nft add table inet other").status, 0);
  ASSERT_EQ(run("nft add chain inet other input '{ type filter hook input priority 0; }'").status,
            0);
  ASSERT_EQ(run("nft add rule inet other input accept").status, 0);
  // Same name, other family.
  ASSERT_EQ(run("nft add table ip jitd").status, 0);
  ASSERT_EQ(run("nft add chain ip jitd input").status, 0);
  ASSERT_TRUE(readable(100ms));
  EXPECT_EQ(report(), "");
  ASSERT_EQ(run("nft delete table inet other; nft delete table ip jitd").status, 0);
}

// The kernel drops expired elements silently: no event, neither when they time out nor when
// a later transaction on the set garbage-collects them.
TEST_F(NftMonitorTest, ElementExpiryIsNotReported) {
  const ElementKey short_lived = host(0xC6336408);
  ASSERT_TRUE(succeeded(backend_->apply(ElementChanges{{}, {{short_lived, 1000ms}}})));
  EXPECT_EQ(own_changes(), "");
  std::this_thread::sleep_for(1200ms);
  EXPECT_FALSE(readable(0ms));
  EXPECT_EQ(run("nft list set inet jitd grants4_single").text.find("198.51.100.8"),
            std::string::npos);
  // The next transaction on the set makes the kernel collect the expired element.
  ASSERT_TRUE(succeeded(backend_->apply(ElementChanges{{}, {{short_lived, 1h}}})));
  EXPECT_EQ(own_changes(), "");
  EXPECT_FALSE(readable(0ms));
}

// Replacing 10 000 grants queues 20 000 element events; the buffer takes them all.
TEST_F(NftMonitorTest, LargeOwnTransactionsDoNotOverrun) {
  ElementChanges changes;
  for (AddressValue i = 0; i < 10'000; ++i) changes.add.push_back({host(0x0A000000 + i), 1h});
  ASSERT_TRUE(succeeded(backend_->apply(changes)));
  for (auto& grant : changes.add) {
    changes.remove.push_back(grant.key);
    grant.timeout = 2h;
  }
  ASSERT_TRUE(succeeded(backend_->apply(changes)));
  EXPECT_EQ(own_changes(), "");
}

// When events pile up beyond the buffer the kernel drops them and says so. The lost events
// may have been foreign, so that is reported even though these were ours. Small
// transactions fill the buffer fastest: two datagrams of about 800 bytes each.
TEST_F(NftMonitorTest, OverrunIsReported) {
  for (int i = 0; i < 8'000; ++i) {
    ASSERT_TRUE(succeeded(backend_->apply(ElementChanges{{grant_key}, {{grant_key, 1h}}})));
    ASSERT_TRUE(succeeded(backend_->apply(ElementChanges{{grant_key}, {{grant_key, 2h}}})));
  }
  EXPECT_EQ(report(), "events lost (ENOBUFS)");
  // The socket works on afterwards.
  ASSERT_EQ(run("nft flush set inet jitd grants4_single").status, 0);
  EXPECT_TRUE(begins_with(report(), "set grants4_single: elements deleted"));
}

}  // namespace

int main(int argc, char** argv) { return jitd::test::run_in_private_network_namespace(argc, argv); }
