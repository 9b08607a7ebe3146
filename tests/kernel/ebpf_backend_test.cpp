// EbpfBackend against the running kernel. main() moves the process into a new network
// namespace and a private mount namespace first; each test mounts a bpffs of its own in a
// temporary directory and builds a veth pair, so nothing here touches the host's interfaces,
// ruleset or /sys/fs/bpf. `bpftool`, `tc`, `ip` and `nft` children inherit both namespaces and
// read the kernel independently of the backend.
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "jitd/ebpf/ebpf_backend.hpp"
#include "jitd/sys/unique_fd.hpp"
#include "jitd_abi.h"
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
using jitd::core::WouldBlock;
using jitd::ebpf::AttachPoint;
using jitd::ebpf::EbpfBackend;
using jitd::ebpf::EbpfOptions;
using jitd::sys::UniqueFd;
using namespace jitd::test;  // run, nft_objects, succeeded, skip_all
using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* own_handle = "0x6a17";

const ElementKey host_tcp22 = key("198.51.100.7", Protocol::tcp, 22);
// Touches host_tcp22 but ends at another time: the two stay apart.
const ElementKey odd_range_tcp22 = key("198.51.100.8", "198.51.100.10", Protocol::tcp, 22);
const ElementKey net_udp53 = key("203.0.113.0", "203.0.113.255", Protocol::udp, 53);
const ElementKey v6_tcp22 = key("2001:db8::7", Protocol::tcp, 22);
const ElementKey v6_range_tcp22 = key("2001:db8:1::1", "2001:db8:1::1ff", Protocol::tcp, 22);

EnforcementSpec sample_spec() {
  EnforcementSpec spec;
  spec.protected_ports = {{Protocol::tcp, 22}, {Protocol::udp, 53}, {Protocol::tcp, 2222}};
  spec.permanent = {key("10.1.0.1", "10.1.0.6", Protocol::tcp, 22),
                    key("192.0.2.0", "192.0.2.255", Protocol::tcp, 22),
                    key("2001:db8::", "2001:db8::ffff:ffff:ffff:ffff", Protocol::tcp, 22),
                    key("0.0.0.0", "255.255.255.255", Protocol::tcp, 2222)};
  spec.grants = {{host_tcp22, 1h},
                 {odd_range_tcp22, 2h},
                 {net_udp53, 30min},
                 {v6_tcp22, 45min},
                 {v6_range_tcp22, 3h}};
  std::sort(spec.protected_ports.begin(), spec.protected_ports.end());
  std::sort(spec.permanent.begin(), spec.permanent.end());
  std::sort(spec.grants.begin(), spec.grants.end());
  return spec;
}

// How far grants installed at `installed` have counted down by now, and a second more.
std::chrono::milliseconds counted_down_since(std::chrono::steady_clock::time_point installed) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               installed) +
         1s;
}

// Keys equal, timeouts counted down by less than `counted_down`: a few seconds, or what the
// test measured since it installed them plus one.
void expect_grants(const std::vector<TimedElement>& held, std::vector<TimedElement> given,
                   std::chrono::milliseconds counted_down = 5s) {
  std::sort(given.begin(), given.end());
  ASSERT_EQ(keys_of(held), keys_of(given));
  for (std::size_t i = 0; i < given.size(); ++i) {
    EXPECT_LE(held[i].timeout, given[i].timeout);
    EXPECT_GT(held[i].timeout, given[i].timeout - counted_down);
  }
}

json parsed(const std::string& command) {
  const Output output = run(command);
  if (output.status != 0 || output.text.empty()) return json();
  return json::parse(output.text);
}

// jitd's filter (our handle) on the interface's ingress hook, or null.
json own_filter(const std::string& interface) {
  const json filters = parsed("tc -j filter show dev " + interface + " ingress");
  if (!filters.is_array()) return json();
  for (const json& filter : filters) {
    const json options = filter.value("options", json::object());
    if (filter.value("kind", "") == "bpf" && options.value("handle", "") == own_handle) {
      return filter;
    }
  }
  return json();
}

// The XDP program id on an interface (ip -j link), 0 without one.
std::uint32_t xdp_id(const std::string& interface) {
  const json links = parsed("ip -j link show dev " + interface);
  if (!links.is_array() || links.empty() || !links[0].contains("xdp")) return 0;
  return links[0]["xdp"].value("prog", json::object()).value("id", 0U);
}

bool has_clsact(const std::string& interface) {
  const json qdiscs = parsed("tc -j qdisc show dev " + interface);
  return qdiscs.is_array() && std::any_of(qdiscs.begin(), qdiscs.end(), [](const json& qdisc) {
           return qdisc.value("kind", "") == "clsact";
         });
}

// Entries of a pinned map, as bpftool reads them.
json pinned_entries(const std::filesystem::path& pin) {
  return parsed("bpftool -j map dump pinned " + pin.string());
}

bool tools_present() {
  return run("command -v bpftool && command -v tc && command -v ip").status == 0;
}

class EbpfBackendTest : public testing::Test {
 protected:
  void SetUp() override {
    if (skip_all()) GTEST_SKIP() << "no private network namespace (needs root)";
    if (!tools_present()) {
      const char* ci = std::getenv("CI");
      ASSERT_FALSE(ci != nullptr && std::string(ci) == "true") << "bpftool, tc or ip missing";
      GTEST_SKIP() << "bpftool, tc or ip missing: run scripts/install-deps.sh";
    }
    std::string directory = (std::filesystem::temp_directory_path() / "jitd-bpffs-XXXXXX").string();
    ASSERT_NE(mkdtemp(directory.data()), nullptr) << std::strerror(errno);
    bpffs_ = directory;
    ASSERT_EQ(mount("bpf", bpffs_.c_str(), "bpf", 0, "mode=0700"), 0) << std::strerror(errno);
    mounted_ = true;
    ASSERT_EQ(run("ip link add veth0 type veth peer name veth1 && ip link set veth0 up && "
                  "ip link set veth1 up")
                  .status,
              0);
  }

  // Also after a failed test: the interfaces take their filters and XDP programs with them,
  // and the unmounted bpffs its pins.
  void TearDown() override {
    unsetenv("JITD_EBPF_PROBE_FAIL");
    backend_.reset();
    run("ip link del veth0 2>/dev/null; ip link del veth2 2>/dev/null; "
        "ip link del br0 2>/dev/null; "
        "nft delete table inet jitd_conntrack");
    if (mounted_) umount2(bpffs_.c_str(), MNT_DETACH);
    if (!bpffs_.empty()) std::filesystem::remove(bpffs_);
  }

  EbpfOptions options(AttachPoint attach = AttachPoint::tc,
                      std::vector<std::string> interfaces = {"veth0"}) const {
    return EbpfOptions{std::move(interfaces), attach, bpffs_};
  }

  void open(EbpfOptions with) {
    auto opened = EbpfBackend::open(std::move(with));
    ASSERT_TRUE(succeeded(opened));
    backend_ = std::move(*opened);
  }

  void install_sample() {
    ASSERT_NO_FATAL_FAILURE(open(options()));
    ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  }

  std::vector<TimedElement> grants() {
    auto snapshot = backend_->snapshot();
    EXPECT_TRUE(succeeded(snapshot));
    return snapshot ? snapshot->grants : std::vector<TimedElement>{};
  }

  std::filesystem::path pin(const std::string& name) const {
    return backend_->pin_directory() / name;
  }

  std::filesystem::path bpffs_;
  bool mounted_ = false;
  std::unique_ptr<EbpfBackend> backend_;
};

TEST_F(EbpfBackendTest, OpenProbesTheKernelAndAttachesNothing) {
  ASSERT_NO_FATAL_FAILURE(open(options()));
  const auto& features = backend_->kernel_features();
  EXPECT_TRUE(features.conntrack_btf == "vmlinux" || features.conntrack_btf == "nf_conntrack");
  EXPECT_TRUE(features.ct_opts_size == 12 || features.ct_opts_size == 16);
  EXPECT_NE(features.describe().find("struct bpf_ct_opts"), std::string::npos);

  // <bpffs>/jitd/<netns inode>/v<layout version>, each level 0700.
  struct stat netns {};
  ASSERT_EQ(stat("/proc/self/ns/net", &netns), 0);
  EXPECT_EQ(backend_->pin_directory(), bpffs_ / "jitd" / std::to_string(netns.st_ino) /
                                           ("v" + std::to_string(JITD_BPF_LAYOUT_VERSION)));
  for (auto directory = backend_->pin_directory(); directory != bpffs_;
       directory = directory.parent_path()) {
    EXPECT_EQ(std::filesystem::status(directory).permissions(), std::filesystem::perms::owner_all)
        << directory;
  }
  for (const char* map :
       {"protected_ports", "counters", "would_block", "allow4", "allow6", "grants4", "grants6"}) {
    EXPECT_TRUE(std::filesystem::exists(pin(map))) << map;
  }

  // Conntrack is made active by a chain nothing jumps to, holding one ct rule.
  const auto chains = nft_objects("table inet jitd_conntrack", "chain");
  ASSERT_EQ(chains.size(), 1U);
  EXPECT_FALSE(chains[0].contains("hook"));
  const auto rules = nft_objects("table inet jitd_conntrack", "rule");
  ASSERT_EQ(rules.size(), 1U);
  EXPECT_EQ(rules[0]["expr"][0]["match"]["left"]["ct"]["key"], "state") << rules[0].dump();

  EXPECT_TRUE(own_filter("veth0").is_null());
  auto installed = backend_->installed();
  ASSERT_TRUE(succeeded(installed));
  EXPECT_FALSE(*installed);
  EXPECT_EQ(backend_->where(), "tc ingress on veth0");
}

// In a namespace where nothing uses conntrack it records nothing, and the program's lookups
// would find nothing; after open() it records (loopback traffic here). A namespace of its own:
// conntrack's hooks outlive an earlier test's table for a moment. The later tests run there.
TEST_F(EbpfBackendTest, OpenMakesConntrackRecordInTheNamespace) {
  ASSERT_EQ(unshare(CLONE_NEWNET), 0) << std::strerror(errno);
  ASSERT_EQ(run("ip link set lo up").status, 0);
  const auto recorded = [](int port) {
    run("bash -c 'echo x > /dev/udp/127.0.0.1/" + std::to_string(port) + "'");
    return run("conntrack -L -p udp --dport " + std::to_string(port)).text.find("dport=") !=
           std::string::npos;
  };
  EXPECT_FALSE(recorded(40001));
  ASSERT_NO_FATAL_FAILURE(open(options(AttachPoint::tc, {})));
  EXPECT_TRUE(recorded(40002));
}

TEST_F(EbpfBackendTest, InstallAttachesAndTheSnapshotEqualsTheSpec) {
  ASSERT_NO_FATAL_FAILURE(install_sample());
  const json filter = own_filter("veth0");
  ASSERT_FALSE(filter.is_null());
  EXPECT_EQ(filter["options"]["prog"].value("name", ""), "jitd_tc") << filter.dump();
  EXPECT_TRUE(filter["options"].value("direct-action", false)) << filter.dump();
  EXPECT_EQ(filter.value("pref", 0), 1) << filter.dump();
  EXPECT_TRUE(own_filter("veth1").is_null());  // not named
  EXPECT_EQ(backend_->where(), "tc ingress on veth0");
  EXPECT_NE(backend_->protection().find(backend_->pin_directory().string()), std::string::npos);
  for (const char* program : {"prog_tc", "prog_xdp"}) {
    EXPECT_TRUE(std::filesystem::exists(pin(program))) << program;
  }

  auto snapshot = backend_->snapshot();
  ASSERT_TRUE(succeeded(snapshot));
  const EnforcementSpec spec = sample_spec();
  EXPECT_TRUE(snapshot->installed);
  EXPECT_EQ(snapshot->protected_ports, spec.protected_ports);
  EXPECT_EQ(snapshot->permanent, spec.permanent);
  expect_grants(snapshot->grants, spec.grants);
  auto installed = backend_->installed();
  ASSERT_TRUE(succeeded(installed));
  EXPECT_TRUE(*installed);

  // Installing what was read gives the same content; a second install replaces everything.
  ASSERT_TRUE(succeeded(backend_->install(
      EnforcementSpec{snapshot->protected_ports, snapshot->permanent, snapshot->grants})));
  auto again = backend_->snapshot();
  ASSERT_TRUE(succeeded(again));
  EXPECT_EQ(again->permanent, spec.permanent);
  EXPECT_EQ(keys_of(again->grants), keys_of(spec.grants));

  const ElementKey other = key("192.0.2.99", Protocol::tcp, 2222);
  ASSERT_TRUE(
      succeeded(backend_->install(EnforcementSpec{{{Protocol::tcp, 2222}}, {}, {{other, 1h}}})));
  auto replaced = backend_->snapshot();
  ASSERT_TRUE(succeeded(replaced));
  EXPECT_EQ(replaced->protected_ports, (std::vector<PortKey>{{Protocol::tcp, 2222}}));
  EXPECT_TRUE(replaced->permanent.empty());
  EXPECT_EQ(keys_of(replaced->grants), (std::vector<ElementKey>{other}));
  EXPECT_EQ(pinned_entries(pin("allow4")).size(), 0U);
  EXPECT_EQ(pinned_entries(pin("grants6")).size(), 0U);
  EXPECT_EQ(pinned_entries(pin("protected_ports")).size(), 1U);
  EXPECT_EQ(pinned_entries(pin("counters")).size(), 1U);
}

// A range is its fewest CIDR prefixes in the trie: 198.51.100.8-10 is .8/31 and .10/32,
// 10.1.0.1-6 is .1/32, .2/31, .4/31, .6/32; the trie key's prefix length counts the 32 bits
// of protocol, pad and port too.
TEST_F(EbpfBackendTest, RangesAreStoredAsTheirFewestPrefixes) {
  ASSERT_NO_FATAL_FAILURE(install_sample());
  const auto prefix_lengths = [](const json& entries) {
    std::vector<int> lengths;
    for (const json& entry : entries) lengths.push_back(entry["formatted"]["key"]["prefixlen"]);
    std::sort(lengths.begin(), lengths.end());
    return lengths;
  };
  const json grants4 = pinned_entries(pin("grants4"));
  EXPECT_EQ(prefix_lengths(grants4), (std::vector<int>{32 + 24, 32 + 31, 32 + 32, 32 + 32}))
      << grants4.dump();
  EXPECT_EQ(prefix_lengths(pinned_entries(pin("allow4"))),
            (std::vector<int>{32 + 0, 32 + 24, 32 + 31, 32 + 31, 32 + 32, 32 + 32}));
  // 2001:db8:1::1-1ff: ::1, ::2/127, ::4/126, ..., ::100/120.
  EXPECT_EQ(pinned_entries(pin("grants6")).size(), 1U + 9U);
  // Allowed sources never end.
  for (const json& entry : pinned_entries(pin("allow6"))) {
    EXPECT_EQ(entry["formatted"]["value"].get<std::uint64_t>(), ~std::uint64_t{0});
  }
}

TEST_F(EbpfBackendTest, ApplyAddsRemovesAndUpdates) {
  ASSERT_NO_FATAL_FAILURE(open(options()));
  ASSERT_TRUE(succeeded(backend_->install(EnforcementSpec{{{Protocol::tcp, 22}}, {}, {}})));
  ASSERT_TRUE(succeeded(backend_->apply(
      ElementChanges{{}, {{host_tcp22, 60s}, {net_udp53, 120s}, {v6_range_tcp22, 90s}}})));
  EXPECT_TRUE(succeeded(backend_->apply(ElementChanges{})));
  expect_grants(grants(), {{host_tcp22, 60s}, {net_udp53, 120s}, {v6_range_tcp22, 90s}});

  // Removed and added in one call: updated in place. Removing what is not there is fine.
  ASSERT_TRUE(succeeded(backend_->apply(ElementChanges{{host_tcp22, v6_range_tcp22, v6_tcp22},
                                                       {{host_tcp22, 1h}, {v6_range_tcp22, 2h}}})));
  expect_grants(grants(), {{host_tcp22, 1h}, {net_udp53, 120s}, {v6_range_tcp22, 2h}});

  // A range replaced by a part of it: the rest of its prefixes go.
  const ElementKey part = key("2001:db8:1::100", "2001:db8:1::1ff", Protocol::tcp, 22);
  ASSERT_TRUE(succeeded(backend_->apply(ElementChanges{{v6_range_tcp22}, {{part, 1h}}})));
  expect_grants(grants(), {{host_tcp22, 1h}, {net_udp53, 120s}, {part, 1h}});
  EXPECT_EQ(pinned_entries(pin("grants6")).size(), 1U);

  ASSERT_TRUE(succeeded(backend_->apply(ElementChanges{{host_tcp22, net_udp53, part}, {}})));
  EXPECT_TRUE(grants().empty());
  EXPECT_EQ(pinned_entries(pin("grants4")).size(), 0U);
  EXPECT_EQ(pinned_entries(pin("grants6")).size(), 0U);

  auto refused = backend_->apply(ElementChanges{{}, {{host_tcp22, 0ms}}});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, jitd::core::ErrorCode::invalid_argument);
}

// A map frozen by someone else (bpftool map freeze) refuses writes from user space: the IPv6
// step of an apply fails after the IPv4 one, which is then undone.
TEST_F(EbpfBackendTest, ApplyUndoesItsStepsWhenOneFails) {
  ASSERT_NO_FATAL_FAILURE(open(options()));
  ASSERT_TRUE(succeeded(backend_->install(EnforcementSpec{{{Protocol::tcp, 22}}, {}, {}})));
  ASSERT_TRUE(succeeded(backend_->apply(ElementChanges{{}, {{host_tcp22, 1h}, {net_udp53, 1h}}})));
  ASSERT_EQ(run("bpftool map freeze pinned " + pin("grants6").string()).status, 0);

  const ElementKey other = key("198.51.100.99", Protocol::tcp, 22);
  auto failed = backend_->apply(
      ElementChanges{{host_tcp22, net_udp53}, {{host_tcp22, 2h}, {other, 1h}, {v6_tcp22, 1h}}});
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, jitd::core::ErrorCode::kernel);
  EXPECT_EQ(failed.error().sys_errno, EPERM);
  EXPECT_NE(failed.error().message.find("update map grants6 2001:db8::7/128 tcp/22: "),
            std::string::npos)
      << failed.error().message;
  expect_grants(grants(), {{host_tcp22, 1h}, {net_udp53, 1h}});
  EXPECT_EQ(pinned_entries(pin("grants4")).size(), 2U);
}

// The program ignores an entry whose end has passed; snapshot() leaves it out, as nftables
// does, and the next apply() deletes it, so a wider grant added later is not hidden by it.
TEST_F(EbpfBackendTest, EndedGrantsAreOmittedAndDeletedByTheNextApply) {
  ASSERT_NO_FATAL_FAILURE(open(options()));
  ASSERT_TRUE(succeeded(backend_->install(EnforcementSpec{{{Protocol::tcp, 22}}, {}, {}})));
  const ElementKey inside = key("10.3.0.5", Protocol::tcp, 22);
  ASSERT_TRUE(succeeded(backend_->apply(ElementChanges{{}, {{inside, 1000ms}, {v6_tcp22, 1h}}})));
  std::this_thread::sleep_for(1500ms);
  expect_grants(grants(), {{v6_tcp22, 1h}});
  EXPECT_EQ(pinned_entries(pin("grants4")).size(), 1U);  // still in the trie

  const ElementKey wider = key("10.3.0.0", "10.3.0.255", Protocol::tcp, 22);
  ASSERT_TRUE(succeeded(backend_->apply(ElementChanges{{}, {{wider, 1h}}})));
  const json grants4 = pinned_entries(pin("grants4"));
  ASSERT_EQ(grants4.size(), 1U);
  EXPECT_EQ(grants4[0]["formatted"]["key"]["prefixlen"], 32 + 24);
  expect_grants(grants(), {{wider, 1h}, {v6_tcp22, 1h}});
}

TEST_F(EbpfBackendTest, RestartReusesPinnedMapsAndSwapsTheProgram) {
  ASSERT_NO_FATAL_FAILURE(install_sample());
  // The restart below takes seconds under emulation (the VM test): the grants count down.
  const auto installed_at = std::chrono::steady_clock::now();
  const auto directory = backend_->pin_directory();
  const auto first_program = own_filter("veth0")["options"]["prog"].value("id", 0U);
  ASSERT_NE(first_program, 0U);
  backend_.reset();

  // With no jitd: the filter and the maps stay, and so does the program behind the filter.
  EXPECT_EQ(own_filter("veth0")["options"]["prog"].value("id", 0U), first_program);
  EXPECT_EQ(pinned_entries(directory / "grants4").size(), 4U);
  EXPECT_EQ(pinned_entries(directory / "grants6").size(), 1U + 9U);
  EXPECT_EQ(pinned_entries(directory / "protected_ports").size(), 3U);
  const json program = parsed("bpftool -j prog show pinned " + (directory / "prog_tc").string());
  EXPECT_EQ(program.value("id", 0U), first_program) << program.dump();

  ASSERT_NO_FATAL_FAILURE(open(options()));
  EXPECT_EQ(backend_->pin_directory(), directory);
  auto before = backend_->snapshot();
  ASSERT_TRUE(succeeded(before));
  // Before this process installs: the earlier one's enforcement (pins, its program behind the
  // filter) counts, so the daemon does not adopt sessions that enforcement cut off.
  EXPECT_TRUE(before->installed);
  expect_grants(before->grants, sample_spec().grants, counted_down_since(installed_at));

  // Changes before the first install work on what the maps hold.
  ASSERT_TRUE(succeeded(backend_->apply(ElementChanges{{host_tcp22}, {}})));
  EXPECT_EQ(pinned_entries(directory / "grants4").size(), 3U);

  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  const auto reinstalled_at = std::chrono::steady_clock::now();
  // Replaced in place (same handle and priority), never removed: one filter, the new program.
  const json filters = parsed("tc -j filter show dev veth0 ingress");
  EXPECT_EQ(std::count_if(filters.begin(), filters.end(),
                          [](const json& filter) { return filter.contains("options"); }),
            1)
      << filters.dump();
  const auto second_program = own_filter("veth0")["options"]["prog"].value("id", 0U);
  EXPECT_NE(second_program, first_program);
  EXPECT_EQ(
      parsed("bpftool -j prog show pinned " + (directory / "prog_tc").string()).value("id", 0U),
      second_program);
  auto after = backend_->snapshot();
  ASSERT_TRUE(succeeded(after));
  EXPECT_TRUE(after->installed);
  expect_grants(after->grants, sample_spec().grants, counted_down_since(reinstalled_at));
}

TEST_F(EbpfBackendTest, UninstallLeavesNothing) {
  ASSERT_NO_FATAL_FAILURE(install_sample());
  ASSERT_TRUE(has_clsact("veth0"));
  ASSERT_TRUE(succeeded(backend_->uninstall()));
  EXPECT_TRUE(own_filter("veth0").is_null());
  EXPECT_FALSE(has_clsact("veth0"));  // nothing else used it
  EXPECT_FALSE(std::filesystem::exists(bpffs_ / "jitd"));
  EXPECT_NE(run("nft list table inet jitd_conntrack").status, 0);
  auto installed = backend_->installed();
  ASSERT_TRUE(succeeded(installed));
  EXPECT_FALSE(*installed);
  EXPECT_TRUE(succeeded(backend_->uninstall()));  // idempotent
}

// Under the unit without the eBPF drop-in /sys/fs/bpf is read-only, and the nftables backend's
// start looks for eBPF pins to remove: finding none is no warning.
TEST_F(EbpfBackendTest, NothingToRemoveOnAReadOnlyBpffsIsNoWarning) {
  ASSERT_EQ(mount(nullptr, bpffs_.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr), 0)
      << std::strerror(errno);
  const auto logged = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(16);
  const auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", logged));
  const auto removed = EbpfBackend::remove_installed(bpffs_);
  spdlog::set_default_logger(previous);
  ASSERT_TRUE(succeeded(removed));
  EXPECT_FALSE(*removed);
  EXPECT_EQ(logged->last_formatted(), std::vector<std::string>{});
}

// Another tool's filters (classic BPF ones here: this kernel may lack matchall) stay, on
// either hook, and with them the clsact qdisc.
TEST_F(EbpfBackendTest, UninstallLeavesOtherFiltersAndTheirQdisc) {
  ASSERT_EQ(run("ip link add veth2 type veth peer name veth3").status, 0);
  ASSERT_NO_FATAL_FAILURE(open(options(AttachPoint::tc, {"veth0", "veth2"})));
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  const std::string accept_all = " pref 5 bpf bytecode '1,6 0 0 4294967295,'";
  ASSERT_EQ(run("tc filter add dev veth0 ingress" + accept_all).status, 0);
  ASSERT_EQ(run("tc filter add dev veth2 egress" + accept_all).status, 0);
  ASSERT_TRUE(succeeded(backend_->uninstall()));
  for (const char* interface : {"veth0", "veth2"}) {
    EXPECT_TRUE(own_filter(interface).is_null()) << interface;
    EXPECT_TRUE(has_clsact(interface)) << interface;
  }
  const json filters = parsed("tc -j filter show dev veth0 ingress");
  ASSERT_TRUE(filters.is_array());
  EXPECT_TRUE(std::any_of(filters.begin(), filters.end(), [](const json& filter) {
    return filter.value("pref", 0) == 5;
  })) << filters.dump();
}

TEST_F(EbpfBackendTest, ForcedProbeFailuresNameWhatIsMissing) {
  const std::vector<std::pair<const char*, std::string>> probes = {
      {"btf", "no BTF: /sys/kernel/btf/vmlinux"},
      {"kfunc", "conntrack kfuncs not found in vmlinux or nf_conntrack BTF"},
      {"ct_opts", "struct bpf_ct_opts not found"},
      {"cap_bpf", "needs CAP_BPF"},
      {"bpffs", "no bpffs at " + bpffs_.string()}};
  for (const auto& [probe, message] : probes) {
    ASSERT_EQ(setenv("JITD_EBPF_PROBE_FAIL", probe, 1), 0);
    auto opened = EbpfBackend::open(options());
    ASSERT_FALSE(opened) << probe;
    EXPECT_NE(opened.error().message.find(message), std::string::npos)
        << probe << ": " << opened.error().message;
  }
  unsetenv("JITD_EBPF_PROBE_FAIL");
  // No probe loaded anything.
  EXPECT_FALSE(std::filesystem::exists(bpffs_ / "jitd"));
}

// A named interface that is not there yet (udev renames, a VPN's tun) is no reason to leave
// the others open: it is protected when it appears, the others at once.
TEST_F(EbpfBackendTest, NamedInterfaceThatAppearsLaterIsProtectedThen) {
  ASSERT_NO_FATAL_FAILURE(open(options(AttachPoint::tc, {"veth0", "later0"})));
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  EXPECT_FALSE(own_filter("veth0").is_null());
  EXPECT_TRUE(own_filter("veth1").is_null());  // not named
  auto watch = backend_->watch();
  ASSERT_TRUE(succeeded(watch));
  ASSERT_TRUE(succeeded((*watch)->drain()));
  ASSERT_EQ(run("ip link add later0 type veth peer name later1").status, 0);
  pollfd ready{(*watch)->fd(), POLLIN, 0};
  ASSERT_EQ(poll(&ready, 1, 2000), 1);
  auto changes = (*watch)->drain();
  ASSERT_TRUE(succeeded(changes));
  EXPECT_EQ(changes->foreign, "");
  EXPECT_FALSE(own_filter("later0").is_null());
  EXPECT_TRUE(own_filter("later1").is_null());
  EXPECT_EQ(backend_->where(), "tc ingress on later0, veth0");
  ASSERT_EQ(run("ip link del later0").status, 0);  // the tests share one namespace
}

TEST_F(EbpfBackendTest, LoopbackIsRefused) {
  auto loopback = EbpfBackend::open(options(AttachPoint::tc, {"lo"}));
  ASSERT_FALSE(loopback);
  EXPECT_NE(loopback.error().message.find("loopback"), std::string::npos);
}

// With no interfaces named, every interface but loopback, also those created later.
TEST_F(EbpfBackendTest, NewInterfaceGetsTheProgramOnDrain) {
  ASSERT_NO_FATAL_FAILURE(open(options(AttachPoint::tc, {})));
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  EXPECT_FALSE(own_filter("veth0").is_null());
  EXPECT_FALSE(own_filter("veth1").is_null());
  EXPECT_TRUE(own_filter("lo").is_null());
  auto watch = backend_->watch();
  ASSERT_TRUE(succeeded(watch));
  auto quiet = (*watch)->drain();  // jitd's own install is not foreign
  ASSERT_TRUE(succeeded(quiet));
  EXPECT_EQ(quiet->foreign, "");

  ASSERT_EQ(run("ip link add veth2 type veth peer name veth3").status, 0);
  pollfd ready{(*watch)->fd(), POLLIN, 0};
  ASSERT_EQ(poll(&ready, 1, 2000), 1);
  auto changes = (*watch)->drain();
  ASSERT_TRUE(succeeded(changes));
  EXPECT_EQ(changes->foreign, "");
  EXPECT_EQ(changes->lost, "");
  EXPECT_FALSE(own_filter("veth2").is_null());
  EXPECT_FALSE(own_filter("veth3").is_null());
  EXPECT_EQ(backend_->where(), "tc ingress on veth0, veth1, veth2, veth3");
  auto installed = backend_->installed();
  ASSERT_TRUE(succeeded(installed));
  EXPECT_TRUE(*installed);

  // Gone again: forgotten, not foreign.
  ASSERT_EQ(run("ip link del veth2").status, 0);
  ASSERT_EQ(poll(&ready, 1, 2000), 1);
  auto removed = (*watch)->drain();
  ASSERT_TRUE(succeeded(removed));
  EXPECT_EQ(removed->foreign, "");
  EXPECT_EQ(backend_->where(), "tc ingress on veth0, veth1");
}

TEST_F(EbpfBackendTest, RemovedFilterOrPinIsForeignAndInstallRepairs) {
  ASSERT_NO_FATAL_FAILURE(install_sample());
  auto watch = backend_->watch();
  ASSERT_TRUE(succeeded(watch));
  pollfd ready{(*watch)->fd(), POLLIN, 0};

  ASSERT_EQ(run(std::string("tc filter del dev veth0 ingress pref 1 handle ") + own_handle + " bpf")
                .status,
            0);
  ASSERT_EQ(poll(&ready, 1, 2000), 1);
  auto changes = (*watch)->drain();
  ASSERT_TRUE(succeeded(changes));
  EXPECT_EQ(changes->foreign, "tc filter removed from veth0");
  auto installed = backend_->installed();
  ASSERT_TRUE(succeeded(installed));
  EXPECT_FALSE(*installed);
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  EXPECT_FALSE(own_filter("veth0").is_null());
  auto repaired = (*watch)->drain();
  ASSERT_TRUE(succeeded(repaired));
  EXPECT_EQ(repaired->foreign, "");

  ASSERT_TRUE(std::filesystem::remove(pin("grants4")));
  ASSERT_EQ(poll(&ready, 1, 2000), 1);
  changes = (*watch)->drain();
  ASSERT_TRUE(succeeded(changes));
  EXPECT_EQ(changes->foreign, "pin grants4 removed");
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  EXPECT_EQ(pinned_entries(pin("grants4")).size(), 4U);

  // The whole directory, and again after the repair: the watch follows the new directory.
  for (int round = 0; round < 2; ++round) {
    std::filesystem::remove_all(bpffs_ / "jitd");
    ASSERT_EQ(poll(&ready, 1, 2000), 1);
    changes = (*watch)->drain();
    ASSERT_TRUE(succeeded(changes));
    EXPECT_EQ(changes->foreign, "pin directory " + backend_->pin_directory().string() + " removed");
    ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
    auto restored = backend_->snapshot();
    ASSERT_TRUE(succeeded(restored));
    EXPECT_TRUE(restored->installed);
    expect_grants(restored->grants, sample_spec().grants);
    EXPECT_TRUE(succeeded((*watch)->drain()));
  }

  // jitd's own uninstall is not foreign.
  ASSERT_TRUE(succeeded(backend_->uninstall()));
  auto own = (*watch)->drain();
  ASSERT_TRUE(succeeded(own));
  EXPECT_EQ(own->foreign, "");
}

TEST_F(EbpfBackendTest, XdpAttachesNativeWhereTheDriverCanAndDetaches) {
  ASSERT_NO_FATAL_FAILURE(open(options(AttachPoint::xdp)));
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));   // over its own program
  EXPECT_EQ(backend_->kernel_features().xdp_mode, "native");  // veth has native XDP
  EXPECT_EQ(backend_->where(), "xdp (native) on veth0");
  EXPECT_NE(backend_->protection().find("XDP programs outlive jitd"), std::string::npos);
  const auto attached = xdp_id("veth0");
  ASSERT_NE(attached, 0U);
  EXPECT_EQ(xdp_id("veth1"), 0U);
  EXPECT_TRUE(own_filter("veth0").is_null());
  auto snapshot = backend_->snapshot();
  ASSERT_TRUE(succeeded(snapshot));
  EXPECT_TRUE(snapshot->installed);

  // A restarted jitd swaps its program in atomically.
  backend_.reset();
  EXPECT_EQ(xdp_id("veth0"), attached);
  ASSERT_NO_FATAL_FAILURE(open(options(AttachPoint::xdp)));
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  EXPECT_NE(xdp_id("veth0"), attached);
  EXPECT_NE(xdp_id("veth0"), 0U);

  auto watch = backend_->watch();
  ASSERT_TRUE(succeeded(watch));
  ASSERT_EQ(run("ip link set dev veth0 xdp off").status, 0);
  pollfd ready{(*watch)->fd(), POLLIN, 0};
  ASSERT_EQ(poll(&ready, 1, 2000), 1);
  auto changes = (*watch)->drain();
  ASSERT_TRUE(succeeded(changes));
  EXPECT_EQ(changes->foreign, "xdp program removed from veth0");
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  EXPECT_NE(xdp_id("veth0"), 0U);

  ASSERT_TRUE(succeeded(backend_->uninstall()));
  EXPECT_EQ(xdp_id("veth0"), 0U);
  EXPECT_FALSE(std::filesystem::exists(bpffs_ / "jitd"));
}

// A bridge has no native XDP: generic there, native on the veth.
TEST_F(EbpfBackendTest, XdpFallsBackToGenericWhereNativeIsRefused) {
  ASSERT_EQ(run("ip link add br0 type bridge").status, 0);
  ASSERT_NO_FATAL_FAILURE(open(options(AttachPoint::xdp, {"veth0", "br0"})));
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  EXPECT_EQ(backend_->where(), "xdp (generic) on br0; xdp (native) on veth0");
  EXPECT_EQ(backend_->kernel_features().xdp_mode, "native and generic");
  const json links = parsed("ip -j link show dev br0");
  ASSERT_TRUE(links.is_array() && !links.empty());
  EXPECT_EQ(links[0]["xdp"].value("mode", 0), XDP_ATTACHED_SKB) << links.dump();
  auto installed = backend_->installed();
  ASSERT_TRUE(succeeded(installed));
  EXPECT_TRUE(*installed);
  ASSERT_TRUE(succeeded(backend_->uninstall()));
  EXPECT_EQ(xdp_id("br0"), 0U);
}

// Another tool's XDP program is never replaced at start; one put in place of jitd's is.
TEST_F(EbpfBackendTest, XdpReplacesAnotherProgramOnlyWhereItHeldTheSlot) {
  // XDP_PASS and nothing else, named other_xdp.
  const std::array<bpf_insn, 2> pass{{
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, XDP_PASS},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  }};
  const UniqueFd other(
      bpf_prog_load(BPF_PROG_TYPE_XDP, "other_xdp", "GPL", pass.data(), pass.size(), nullptr));
  ASSERT_TRUE(other) << std::strerror(errno);
  const int veth0 = static_cast<int>(if_nametoindex("veth0"));
  ASSERT_EQ(bpf_xdp_attach(veth0, other.get(), XDP_FLAGS_DRV_MODE, nullptr), 0);
  const auto other_id = xdp_id("veth0");

  ASSERT_NO_FATAL_FAILURE(open(options(AttachPoint::xdp)));
  auto refused = backend_->install(sample_spec());
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("another XDP program is attached"), std::string::npos)
      << refused.error().message;
  EXPECT_NE(refused.error().message.find("other_xdp"), std::string::npos);
  EXPECT_EQ(xdp_id("veth0"), other_id);

  ASSERT_EQ(bpf_xdp_detach(veth0, XDP_FLAGS_DRV_MODE, nullptr), 0);
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  const auto own_id = xdp_id("veth0");
  auto watch = backend_->watch();
  ASSERT_TRUE(succeeded(watch));
  ASSERT_EQ(bpf_xdp_attach(veth0, other.get(), XDP_FLAGS_DRV_MODE, nullptr), 0);
  pollfd ready{(*watch)->fd(), POLLIN, 0};
  ASSERT_EQ(poll(&ready, 1, 2000), 1);
  auto changes = (*watch)->drain();
  ASSERT_TRUE(succeeded(changes));
  EXPECT_EQ(changes->foreign,
            "xdp program on veth0 replaced (program id " + std::to_string(other_id) + ")");
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  EXPECT_NE(xdp_id("veth0"), other_id);
  EXPECT_EQ(xdp_id("veth0"), own_id);

  // Uninstall leaves another tool's program alone.
  ASSERT_EQ(bpf_xdp_attach(veth0, other.get(), XDP_FLAGS_DRV_MODE, nullptr), 0);
  ASSERT_TRUE(succeeded(backend_->uninstall()));
  EXPECT_EQ(xdp_id("veth0"), other_id);
}

// What the program would count, the same on every CPU (bpftool writes one value to all):
// counters() returns each field times the number of CPUs.
TEST_F(EbpfBackendTest, CountersSumThePerCpuValues) {
  ASSERT_NO_FATAL_FAILURE(install_sample());
  auto counted = backend_->counters();
  ASSERT_TRUE(succeeded(counted));
  ASSERT_EQ(counted->size(), 3U);
  for (const auto& port : *counted) EXPECT_EQ(port, PortCounters{port.port});

  // tcp/22 (key: protocol 6, pad, port 22 in network byte order); four little-endian u64.
  ASSERT_EQ(run("bpftool map update pinned " + pin("counters").string() +
                " key 6 0 0 22 value 5 0 0 0 0 0 0 0 3 0 0 0 0 0 0 0 2 0 0 0 0 0 0 0"
                " 1 0 0 0 0 0 0 0")
                .status,
            0);
  const json entries = pinned_entries(pin("counters"));
  std::size_t cpus = 0;
  for (const json& entry : entries) {
    if (entry["formatted"]["key"]["port"] == htons(22)) {
      cpus = entry["formatted"]["values"].size();
    }
  }
  ASSERT_GT(cpus, 0U) << entries.dump();
  counted = backend_->counters();
  ASSERT_TRUE(succeeded(counted));
  const auto tcp22 = std::find_if(counted->begin(), counted->end(), [](const auto& port) {
    return port.port == PortKey{Protocol::tcp, 22};
  });
  ASSERT_NE(tcp22, counted->end());
  EXPECT_EQ(tcp22->dropped_packets, 5U * cpus);
  EXPECT_EQ(tcp22->dropped_connections, 3U * cpus);
  EXPECT_EQ(tcp22->admitted_connections, 2U * cpus);
  EXPECT_EQ(tcp22->would_drop_packets, 1U * cpus);
}

// A TCP SYN from `source` to 10.9.0.1 (veth0's address: for this host, so judged) and `dport`.
std::vector<std::uint8_t> syn(const char* source, std::uint16_t dport) {
  std::vector<std::uint8_t> frame(14 + 20 + 20, 0);
  frame[12] = 0x08;  // IPv4
  std::uint8_t* ip = frame.data() + 14;
  ip[0] = 0x45;
  ip[3] = 40;  // total length
  ip[8] = 64;
  ip[9] = IPPROTO_TCP;
  inet_pton(AF_INET, source, ip + 12);
  inet_pton(AF_INET, "10.9.0.1", ip + 16);
  std::uint8_t* tcp = ip + 20;
  tcp[0] = 40000 >> 8;
  tcp[1] = 40000 & 0xFF;
  tcp[2] = static_cast<std::uint8_t>(dport >> 8);
  tcp[3] = static_cast<std::uint8_t>(dport);
  tcp[12] = 0x50;  // data offset
  tcp[13] = 0x02;  // SYN
  return frame;
}

// A UDP datagram from `source` to 10.9.0.1 and `dport`.
std::vector<std::uint8_t> udp(const char* source, std::uint16_t dport) {
  std::vector<std::uint8_t> frame = syn(source, dport);
  frame[14 + 9] = IPPROTO_UDP;
  frame.resize(14 + 20 + 8);
  frame[14 + 3] = 28;
  frame[14 + 20 + 5] = 8;  // length
  return frame;
}

// The pinned tc program's verdict on `frame` arriving on veth0 (BPF_PROG_TEST_RUN).
int verdict(const std::filesystem::path& program, const std::vector<std::uint8_t>& frame) {
  const UniqueFd fd(bpf_obj_get(program.c_str()));
  if (!fd) throw std::runtime_error("open " + program.string() + ": " + std::strerror(errno));
  __sk_buff skb{};
  skb.ifindex = if_nametoindex("veth0");
  bpf_test_run_opts run{};
  run.sz = sizeof(run);
  run.data_in = frame.data();
  run.data_size_in = static_cast<__u32>(frame.size());
  run.ctx_in = &skb;
  run.ctx_size_in = sizeof(skb);
  run.repeat = 1;
  if (const int error = bpf_prog_test_run_opts(fd.get(), &run); error != 0) {
    throw std::runtime_error("test run of " + program.string() + ": " + std::strerror(-error));
  }
  return static_cast<int>(run.retval);
}

// The whole path: install() marks the audited port, the program (run on crafted packets)
// counts, counters() and would_block() read it back; an enforce install later keeps the
// counts and stops listing the port's sources.
TEST_F(EbpfBackendTest, AuditedPortCountsAndListsWhatItWouldBlock) {
  ASSERT_EQ(run("ip addr add 10.9.0.1/24 dev veth0").status, 0);
  ASSERT_NO_FATAL_FAILURE(open(options()));
  EnforcementSpec spec = sample_spec();
  spec.audited_ports = {{Protocol::tcp, 22}};
  ASSERT_TRUE(succeeded(backend_->install(spec)));
  for (const json& entry : pinned_entries(pin("protected_ports"))) {
    const bool ssh = entry["formatted"]["key"]["port"] == htons(22) &&
                     entry["formatted"]["key"]["protocol"] == IPPROTO_TCP;
    EXPECT_EQ(entry["formatted"]["value"], ssh ? JITD_PORT_AUDIT : JITD_PORT_ENFORCE)
        << entry.dump();
  }
  auto snapshot = backend_->snapshot();
  ASSERT_TRUE(succeeded(snapshot));
  EXPECT_EQ(snapshot->audited_ports, spec.audited_ports);
  const auto program = pin("prog_tc");
  constexpr int pass = 0;                                       // TC_ACT_OK
  constexpr int drop = 2;                                       // TC_ACT_SHOT
  EXPECT_EQ(verdict(program, syn("198.51.100.99", 22)), pass);  // audited: would drop
  EXPECT_EQ(verdict(program, syn("198.51.100.99", 22)), pass);
  EXPECT_EQ(verdict(program, syn("198.51.100.7", 22)), pass);   // granted
  EXPECT_EQ(verdict(program, udp("198.51.100.99", 53)), drop);  // enforced beside it

  auto counted = backend_->counters();
  ASSERT_TRUE(succeeded(counted));
  const auto find = [&counted](PortKey port) {
    const auto found = std::find_if(counted->begin(), counted->end(),
                                    [&port](const auto& entry) { return entry.port == port; });
    return found == counted->end() ? PortCounters{} : *found;
  };
  EXPECT_EQ(find({Protocol::tcp, 22}), (PortCounters{{Protocol::tcp, 22}, 0, 0, 1, 2}));
  EXPECT_EQ(find({Protocol::udp, 53}), (PortCounters{{Protocol::udp, 53}, 1, 1, 0, 0}));

  // Besides what the program remembered: an entry older than an hour (when the boot clock
  // goes back that far) and one of the enforced port, neither listed.
  const UniqueFd sources(bpf_obj_get(pin("would_block").c_str()));
  ASSERT_TRUE(sources) << std::strerror(errno);
  timespec now{};
  clock_gettime(CLOCK_BOOTTIME, &now);
  const std::uint64_t boot_ns = static_cast<std::uint64_t>(now.tv_sec) * 1'000'000'000U;
  constexpr std::uint64_t two_hours_ns = 7200ULL * 1'000'000'000U;
  const auto remember = [&sources](const char* source, std::uint8_t protocol, std::uint16_t port,
                                   std::uint64_t last_seen) {
    jitd_source_key key{AF_INET, protocol, htons(port), {}};
    inet_pton(AF_INET, source, key.addr);
    const jitd_source_seen seen{7, last_seen};
    return bpf_map_update_elem(sources.get(), &key, &seen, BPF_ANY) == 0;
  };
  if (boot_ns > two_hours_ns) {
    ASSERT_TRUE(remember("198.51.100.100", IPPROTO_TCP, 22, boot_ns - two_hours_ns));
  }
  ASSERT_TRUE(remember("198.51.100.101", IPPROTO_UDP, 53, boot_ns));
  auto blocked = backend_->would_block();
  ASSERT_TRUE(succeeded(blocked));
  const std::vector<WouldBlock> expected{
      {key("198.51.100.99", Protocol::tcp, 22).source, {Protocol::tcp, 22}, 2}};
  EXPECT_EQ(*blocked, expected);

  // Enforced now: the same source is dropped; the counts carry on, the list is empty.
  ASSERT_TRUE(succeeded(backend_->install(sample_spec())));
  EXPECT_EQ(pinned_entries(pin("protected_ports"))[0]["formatted"]["value"], JITD_PORT_ENFORCE);
  EXPECT_EQ(verdict(program, syn("198.51.100.99", 22)), drop);
  counted = backend_->counters();
  ASSERT_TRUE(succeeded(counted));
  EXPECT_EQ(find({Protocol::tcp, 22}), (PortCounters{{Protocol::tcp, 22}, 1, 1, 1, 2}));
  blocked = backend_->would_block();
  ASSERT_TRUE(succeeded(blocked));
  EXPECT_TRUE(blocked->empty());
}

// An upgraded jitd (a new map layout) starts from maps of its own layout and removes the
// pins of the earlier one once its program is attached.
TEST_F(EbpfBackendTest, PinsOfAnEarlierLayoutAreRemovedAtInstall) {
  struct stat netns {};
  ASSERT_EQ(stat("/proc/self/ns/net", &netns), 0);
  const auto earlier = bpffs_ / "jitd" / std::to_string(netns.st_ino) / "v1";
  std::filesystem::create_directories(earlier);
  const UniqueFd map(bpf_map_create(BPF_MAP_TYPE_HASH, "drops", 4, 8, 16, nullptr));
  ASSERT_TRUE(map) << std::strerror(errno);
  ASSERT_EQ(bpf_obj_pin(map.get(), (earlier / "drops").c_str()), 0) << std::strerror(errno);

  ASSERT_NO_FATAL_FAILURE(install_sample());
  EXPECT_FALSE(std::filesystem::exists(earlier));
  EXPECT_TRUE(std::filesystem::exists(pin("counters")));
  auto snapshot = backend_->snapshot();
  ASSERT_TRUE(succeeded(snapshot));
  EXPECT_TRUE(snapshot->installed);
}

}  // namespace

// A private mount namespace as well: the tests' bpffs mounts are then invisible to the host and
// go away with the process, whatever happens.
int main(int argc, char** argv) {
  if (unshare(CLONE_NEWNS) == 0) mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
  return jitd::test::run_in_private_network_namespace(argc, argv);
}
