// A table owned by the backend (owner + persist flags, Linux 6.9+) against `nft` and other
// processes, in a private network namespace. The kernel tracks ownership by netlink socket:
// `nft` children and forked processes here each use their own.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "jitd/nft/nft_backend.hpp"
#include "kernel_test_support.hpp"

namespace {

using jitd::core::AddressRange;
using jitd::core::ElementChanges;
using jitd::core::ElementKey;
using jitd::core::EnforcementSpec;
using jitd::core::Family;
using jitd::core::Protocol;
using jitd::nft::NftBackend;
using namespace jitd::test;  // run, nft_json, nft_objects, succeeded, skip_all
using nlohmann::json;
using namespace std::chrono_literals;

// 198.51.100.7 . tcp . 22
const ElementKey grant_key{AddressRange{Family::ipv4, 0xC6336407, 0xC6336407}, {Protocol::tcp, 22}};
const char* const grant_text = "198.51.100.7 . tcp . 22 timeout 1h";

EnforcementSpec sample_spec() {
  return EnforcementSpec{{{Protocol::tcp, 22}}, {}, {{grant_key, 1h}}};
}

// The table's flags as `nft -j` names them (1.0.6 calls persist "unknown"); empty when the
// table does not exist.
json table_flags() {
  for (const json& table : nft_objects("tables inet", "table")) {
    if (table["name"] == "jitd") return table.value("flags", json::array());
  }
  return json();
}

bool owned(const json& flags) {
  return flags.is_array() && std::find(flags.begin(), flags.end(), "owner") != flags.end();
}

// What `nft` lists of our table, without the parts that change by themselves ("expires").
struct Listing {
  std::size_t sets = 0;
  std::size_t rules = 0;
  std::string grants;  // the elements line of grants4_single (grant_key's set), without expiry
  bool operator==(const Listing&) const = default;
};

std::ostream& operator<<(std::ostream& out, const Listing& listing) {
  return out << listing.sets << " sets, " << listing.rules << " rules, grants4_single \""
             << listing.grants << "\"";
}

Listing listing() {
  Listing result;
  const std::vector<json> items = nft_json("list table inet jitd");
  if (items.empty()) return result;
  for (const json& item : items) {
    result.sets += item.contains("set");
    result.rules += item.contains("rule");
  }
  const std::string text = run("nft list set inet jitd grants4_single").text;
  const auto begin = text.find("elements = { ");
  if (begin != std::string::npos) {
    result.grants = text.substr(begin, text.find(" expires", begin) - begin);
  }
  return result;
}

// A child process that runs `body` and reports one line back. The body keeps the backend it
// opens in `kept`, which lives until the child is killed.
class Child {
 public:
  template <class Body>
  explicit Child(Body body) {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      close(fds[0]);
      std::unique_ptr<NftBackend> kept;
      const std::string line = body(kept) + "\n";
      (void)!write(fds[1], line.data(), line.size());
      pause();
      _exit(0);
    }
    close(fds[1]);
    reply_fd_ = fds[0];
  }
  ~Child() {
    kill();
    if (reply_fd_ >= 0) close(reply_fd_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  std::string reply() {
    std::string line;
    char next = 0;
    while (reply_fd_ >= 0 && read(reply_fd_, &next, 1) == 1 && next != '\n') line += next;
    return line.empty() ? "no reply" : line;
  }
  // SIGKILL: no destructor runs, the kernel closes the child's sockets.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int reply_fd_ = -1;
};

class NftOwnershipTest : public testing::Test {
 protected:
  void SetUp() override {
    if (skip_all()) GTEST_SKIP() << "no private network namespace (needs root or CAP_SYS_ADMIN)";
    auto opened = NftBackend::open("jitd", true);
    ASSERT_TRUE(succeeded(opened));
    backend_ = std::move(*opened);
    if (!backend_->owns_table()) {
      GTEST_SKIP() << "kernel lacks owner + persist table flags (Linux 6.9+); ownership untested";
    }
    // The previous test's table is orphaned (its backend is gone), so anyone may delete it.
    ASSERT_TRUE(succeeded(backend_->uninstall()));
    ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
    installed_ = listing();
    ASSERT_EQ(installed_, (Listing{12, 17, "elements = { " + std::string(grant_text)}));
  }

  std::unique_ptr<NftBackend> backend_;
  Listing installed_;
};

TEST_F(NftOwnershipTest, ProbeLeavesNoTableBehind) {
  ASSERT_TRUE(succeeded(NftBackend::open("jitd", true)));
  const Output tables = run("nft list tables");
  EXPECT_EQ(tables.text, "table inet jitd\n");
  EXPECT_TRUE(owned(table_flags())) << table_flags().dump();
}

TEST_F(NftOwnershipTest, DeleteTableByAnotherProcessIsRefused) {
  EXPECT_NE(run("nft delete table inet jitd").status, 0);
  EXPECT_EQ(listing(), installed_);
}

TEST_F(NftOwnershipTest, FlushRulesetSkipsTheTable) {
  ASSERT_EQ(run("nft add table inet other").status, 0);
  EXPECT_EQ(run("nft flush ruleset").status, 0);
  EXPECT_EQ(run("nft list tables").text, "table inet jitd\n");
  EXPECT_EQ(listing(), installed_);
}

TEST_F(NftOwnershipTest, FlushSetByAnotherProcessIsRefused) {
  EXPECT_NE(run("nft flush set inet jitd grants4_single").status, 0);
  EXPECT_NE(run("nft add rule inet jitd input accept").status, 0);
  EXPECT_EQ(listing(), installed_);
}

TEST_F(NftOwnershipTest, AnotherProcessCannotChangeTheTableButCanReadIt) {
  Child other([](std::unique_ptr<NftBackend>& kept) {
    auto opened = NftBackend::open("jitd", true);
    if (!opened) return "open: " + opened.error().message;
    kept = std::move(*opened);
    auto installed = kept->install(sample_spec());
    if (installed) return std::string("install succeeded");
    return std::to_string(installed.error().sys_errno) + " " + installed.error().message;
  });
  const std::string reply = other.reply();
  EXPECT_EQ(reply.rfind(std::to_string(EPERM) + " add table inet jitd: ", 0), 0U) << reply;
  EXPECT_NE(reply.find("another process owns table inet jitd (netlink port "), std::string::npos)
      << reply;

  // A second socket of this process is "another process" to the kernel too; reads work.
  auto reader = NftBackend::open("jitd", false);
  ASSERT_TRUE(succeeded(reader));
  auto applied = (*reader)->apply(ElementChanges{{grant_key}, {}});
  ASSERT_FALSE(applied);
  EXPECT_EQ(applied.error().sys_errno, EPERM);
  EXPECT_NE(applied.error().message.find("another process owns table inet jitd"), std::string::npos)
      << applied.error().message;
  auto snapshot = (*reader)->snapshot();
  ASSERT_TRUE(succeeded(snapshot));
  EXPECT_TRUE(snapshot->installed);
  ASSERT_EQ(snapshot->grants.size(), 1U);
  EXPECT_EQ(snapshot->grants[0].key, grant_key);
  EXPECT_EQ(listing(), installed_);
}

// The monitor's socket is not the owner's: it still receives events, and refused changes
// cause none.
TEST_F(NftOwnershipTest, MonitorSeesNothingOfRefusedChanges) {
  auto monitor = backend_->open_monitor();
  ASSERT_TRUE(succeeded(monitor));
  EXPECT_NE(run("nft delete table inet jitd").status, 0);
  EXPECT_NE(run("nft flush set inet jitd grants4_single").status, 0);
  EXPECT_EQ(run("nft flush ruleset").status, 0);
  ASSERT_TRUE(succeeded(backend_->apply(ElementChanges{{grant_key}, {{grant_key, 2h}}})));
  pollfd readable{(*monitor)->fd(), POLLIN, 0};
  ASSERT_EQ(poll(&readable, 1, 100), 1);  // our own apply's events arrived ...
  auto drained = (*monitor)->drain();
  ASSERT_TRUE(succeeded(drained));
  EXPECT_EQ(drained->foreign, "");  // ... and were recognised as ours
  EXPECT_EQ(drained->lost, "");
}

TEST_F(NftOwnershipTest, TableOutlivesKilledOwnerAndIsClaimedByInstall) {
  // The owner is a child process: release ours (orphaning the table) and let it claim.
  backend_.reset();
  Child owner([](std::unique_ptr<NftBackend>& kept) {
    auto opened = NftBackend::open("jitd", true);
    if (!opened) return "open: " + opened.error().message;
    kept = std::move(*opened);
    auto installed = kept->install(sample_spec());
    return installed ? std::string("installed") : installed.error().message;
  });
  ASSERT_EQ(owner.reply(), "installed");
  EXPECT_TRUE(owned(table_flags()));
  EXPECT_NE(run("nft delete table inet jitd").status, 0);

  owner.kill();
  // Orphaned: persist keeps it, with its elements and their running timeouts.
  EXPECT_FALSE(owned(table_flags())) << table_flags().dump();
  EXPECT_EQ(listing(), installed_);
  auto successor = NftBackend::open("jitd", true);
  ASSERT_TRUE(succeeded(successor));
  auto snapshot = (*successor)->snapshot();
  ASSERT_TRUE(succeeded(snapshot));
  ASSERT_EQ(snapshot->grants.size(), 1U);
  EXPECT_EQ(snapshot->grants[0].key, grant_key);
  EXPECT_GT(snapshot->grants[0].timeout, 1h - 10s);
  EXPECT_LE(snapshot->grants[0].timeout, 1h);

  ASSERT_TRUE(succeeded((*successor)->install(sample_spec())));
  EXPECT_TRUE(owned(table_flags()));
  EXPECT_NE(run("nft delete table inet jitd").status, 0);
  EXPECT_EQ(listing(), installed_);
}

// The kernel clears the owner flag when the owner's socket closes; until a new jitd claims
// the table, anyone may change or delete it. jitd must therefore install soon after start.
TEST_F(NftOwnershipTest, OrphanedTableIsUnprotectedUntilClaimed) {
  backend_.reset();
  EXPECT_EQ(listing(), installed_);
  EXPECT_EQ(run("nft flush set inet jitd grants4_single").status, 0);
  EXPECT_EQ(run("nft flush ruleset").status, 0);
  EXPECT_EQ(run("nft list tables").text, "");
}

}  // namespace

int main(int argc, char** argv) { return jitd::test::run_in_private_network_namespace(argc, argv); }
