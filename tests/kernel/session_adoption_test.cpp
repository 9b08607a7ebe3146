// adopt_established_sessions against the running kernel. main() first moves the process into
// a new network namespace, so nothing here can touch the host; each test then takes a fresh
// one of its own, so it starts like a host before jitd's first start: no conntrack hooks, no
// entries. `conntrack` and `nft` children inherit the namespace.
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "jitd/conntrack/session_adoption.hpp"
#include "jitd/sys/unique_fd.hpp"
#include "kernel_test_support.hpp"
#include "session_test_support.hpp"

namespace {

using jitd::conntrack::adopt_established_sessions;
using jitd::core::PortKey;
using jitd::core::Protocol;
using jitd::sys::UniqueFd;
using namespace jitd::test;  // run, feed, skip_all, sockets

constexpr std::uint16_t protected_port = 2222;
constexpr std::uint16_t other_port = 2223;

// Whether `size` bytes sent on `from` all arrive on `to`, no pause longer than wait_ms. Far
// more than one unscaled window, so window tracking would see it out of window.
bool transfers(const UniqueFd& from, const UniqueFd& to, std::size_t size) {
  const std::vector<char> chunk(64 * 1024, 'x');
  std::size_t sent = 0;
  std::size_t received = 0;
  std::vector<char> buffer(chunk.size());
  while (received < size) {
    std::array<pollfd, 2> entries{
        pollfd{to.get(), POLLIN, 0},
        pollfd{from.get(), static_cast<short>(sent < size ? POLLOUT : 0), 0}};
    if (poll(entries.data(), entries.size(), wait_ms) <= 0) return false;
    if (entries[1].revents & POLLOUT) {
      const ssize_t count =
          send(from.get(), chunk.data(), std::min(chunk.size(), size - sent), MSG_NOSIGNAL);
      check(count > 0 || errno == EAGAIN, "send");
      if (count > 0) sent += static_cast<std::size_t>(count);
    }
    if (entries[0].revents & POLLIN) {
      const ssize_t count = recv(to.get(), buffer.data(), buffer.size(), 0);
      if (count <= 0) return false;
      received += static_cast<std::size_t>(count);
    }
  }
  return true;
}

// What jitd's table does to the port: only packets of known sessions pass.
void install_stateful_rules(std::uint16_t port) {
  const std::string match = "  tcp dport " + std::to_string(port);
  const std::string ruleset =
      "table inet t {\n chain i {\n  type filter hook input priority 0; policy accept;\n" + match +
      " ct state established accept\n" + match + " drop\n }\n}\n";
  const int status = feed("nft -f -", ruleset);
  check(status == 0, "nft -f - exited " + std::to_string(status));
}

// The `conntrack -L` line whose original tuple is peer -> server:port, "" when none.
std::string conntrack_entry(const std::string& family, const std::string& peer,
                            std::uint16_t peer_port, const std::string& server,
                            std::uint16_t port) {
  const std::string original = "src=" + peer + " dst=" + server +
                               " sport=" + std::to_string(peer_port) +
                               " dport=" + std::to_string(port) + " ";
  std::istringstream lines(run("conntrack -L -p tcp -f " + family).text);
  for (std::string line; std::getline(lines, line);) {
    if (line.find(original) != std::string::npos) return line;
  }
  return "";
}

std::size_t conntrack_count() {
  std::istringstream lines(run("conntrack -L").text);
  std::size_t count = 0;
  for (std::string line; std::getline(lines, line);) ++count;
  return count;
}

// The remaining lifetime `conntrack -L` prints as the third field.
long remaining_seconds(const std::string& line) {
  std::istringstream fields(line);
  std::string protocol;
  int number = 0;
  long seconds = -1;
  fields >> protocol >> number >> seconds;
  return seconds;
}

long established_timeout_setting() {
  std::ifstream file("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established");
  long seconds = 0;
  file >> seconds;
  return seconds;
}

// An ESTABLISHED, assured entry for peer -> server:port with the reply tuple reversed and
// the namespace's established timeout.
testing::AssertionResult adopted(const std::string& family, const std::string& peer,
                                 std::uint16_t peer_port, const std::string& server,
                                 std::uint16_t port) {
  const std::string line = conntrack_entry(family, peer, peer_port, server, port);
  if (line.empty()) return testing::AssertionFailure() << "no conntrack entry";
  const std::string reply = "src=" + server + " dst=" + peer + " sport=" + std::to_string(port) +
                            " dport=" + std::to_string(peer_port) + " ";
  const long timeout = established_timeout_setting();
  const long remaining = remaining_seconds(line);
  if (line.find(" ESTABLISHED ") == std::string::npos || line.find(reply) == std::string::npos ||
      line.find("[ASSURED]") == std::string::npos || remaining > timeout ||
      remaining < timeout - 60) {
    return testing::AssertionFailure()
           << "unexpected entry (timeout setting " << timeout << "): " << line;
  }
  return testing::AssertionSuccess();
}

class SessionAdoptionTest : public testing::Test {
 protected:
  void SetUp() override {
    if (skip_all()) GTEST_SKIP() << "no private network namespace (needs root or CAP_SYS_ADMIN)";
    ASSERT_EQ(unshare(CLONE_NEWNET), 0) << std::strerror(errno);
    bring_loopback_up();
  }
};

TEST_F(SessionAdoptionTest, AdoptsIpv4SessionAsEstablished) {
  const UniqueFd listener = listen_on("127.0.0.1", protected_port);
  const Connection session = open_connection(listener, "127.0.0.1", "127.0.0.2", protected_port);
  ASSERT_TRUE(conntrack_entry("ipv4", "127.0.0.2", session.client_port, "127.0.0.1", protected_port)
                  .empty());

  const auto result = adopt_established_sessions({{Protocol::tcp, protected_port}});

  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->adopted, 1U);  // the server's socket only, not the client's
  EXPECT_EQ(result->failed, 0U);
  EXPECT_EQ(result->first_error, "");
  EXPECT_TRUE(adopted("ipv4", "127.0.0.2", session.client_port, "127.0.0.1", protected_port));
}

TEST_F(SessionAdoptionTest, TimeoutFollowsTheNamespacesSetting) {
  // The setting is per namespace; this one is ours.
  std::ofstream("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established") << 3600;
  ASSERT_EQ(established_timeout_setting(), 3600);
  const UniqueFd listener = listen_on("127.0.0.1", protected_port);
  const Connection session = open_connection(listener, "127.0.0.1", "127.0.0.2", protected_port);

  const auto result = adopt_established_sessions({{Protocol::tcp, protected_port}});

  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->adopted, 1U);
  EXPECT_TRUE(adopted("ipv4", "127.0.0.2", session.client_port, "127.0.0.1", protected_port));
}

TEST_F(SessionAdoptionTest, LeavesSessionsToOtherPortsAlone) {
  const UniqueFd kept_listener = listen_on("127.0.0.1", protected_port);
  const Connection kept = open_connection(kept_listener, "127.0.0.1", "127.0.0.2", protected_port);
  const UniqueFd other_listener = listen_on("127.0.0.1", other_port);
  const Connection other = open_connection(other_listener, "127.0.0.1", "127.0.0.2", other_port);

  // other_port is protected for udp only: its tcp session is not jitd's business.
  const auto result =
      adopt_established_sessions({{Protocol::tcp, protected_port}, {Protocol::udp, other_port}});

  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->adopted, 1U);
  EXPECT_EQ(result->failed, 0U);
  EXPECT_TRUE(adopted("ipv4", "127.0.0.2", kept.client_port, "127.0.0.1", protected_port));
  EXPECT_EQ(conntrack_entry("ipv4", "127.0.0.2", other.client_port, "127.0.0.1", other_port), "");
  EXPECT_EQ(conntrack_count(), 1U);
}

TEST_F(SessionAdoptionTest, NoProtectedTcpPortMeansNothingToAdopt) {
  const UniqueFd listener = listen_on("127.0.0.1", protected_port);
  const Connection session = open_connection(listener, "127.0.0.1", "127.0.0.2", protected_port);

  const auto result = adopt_established_sessions({{Protocol::udp, protected_port}});

  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->adopted, 0U);
  EXPECT_EQ(result->failed, 0U);
  EXPECT_EQ(conntrack_count(), 0U);
}

TEST_F(SessionAdoptionTest, SecondRunCountsExistingEntriesAsAdopted) {
  const UniqueFd listener = listen_on("127.0.0.1", protected_port);
  const Connection first = open_connection(listener, "127.0.0.1", "127.0.0.2", protected_port);
  ASSERT_TRUE(adopt_established_sessions({{Protocol::tcp, protected_port}}));
  const Connection second = open_connection(listener, "127.0.0.1", "127.0.0.3", protected_port);

  const auto result = adopt_established_sessions({{Protocol::tcp, protected_port}});

  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->adopted, 2U);
  EXPECT_EQ(result->failed, 0U);
  EXPECT_EQ(result->first_error, "");
  EXPECT_TRUE(adopted("ipv4", "127.0.0.2", first.client_port, "127.0.0.1", protected_port));
  EXPECT_TRUE(adopted("ipv4", "127.0.0.3", second.client_port, "127.0.0.1", protected_port));
  EXPECT_EQ(conntrack_count(), 2U);
}

TEST_F(SessionAdoptionTest, AdoptsIpv6Session) {
  const UniqueFd listener = listen_on("::1", protected_port);
  const Connection session = open_connection(listener, "::1", "::1", protected_port);

  const auto result = adopt_established_sessions({{Protocol::tcp, protected_port}});

  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->adopted, 1U);
  EXPECT_EQ(result->failed, 0U);
  EXPECT_TRUE(adopted("ipv6", "::1", session.client_port, "::1", protected_port));
}

TEST_F(SessionAdoptionTest, AdoptsIpv4PeerOfDualStackListenerAsIpv4) {
  const UniqueFd listener = listen_on("::", protected_port);
  const Connection session = open_connection(listener, "127.0.0.1", "127.0.0.2", protected_port);

  const auto result = adopt_established_sessions({{Protocol::tcp, protected_port}});

  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->adopted, 1U);
  EXPECT_EQ(result->failed, 0U);
  EXPECT_TRUE(adopted("ipv4", "127.0.0.2", session.client_port, "127.0.0.1", protected_port));
}

TEST_F(SessionAdoptionTest, AdoptsHalfClosedSession) {
  const UniqueFd listener = listen_on("127.0.0.1", protected_port);
  const Connection session = open_connection(listener, "127.0.0.1", "127.0.0.2", protected_port);
  ASSERT_EQ(shutdown(session.client.get(), SHUT_WR), 0);  // the server side goes CLOSE_WAIT
  pollfd entry{session.server.get(), POLLIN, 0};
  ASSERT_EQ(poll(&entry, 1, wait_ms), 1);

  const auto result = adopt_established_sessions({{Protocol::tcp, protected_port}});

  ASSERT_TRUE(result) << result.error().message;
  EXPECT_EQ(result->adopted, 1U);
  EXPECT_TRUE(adopted("ipv4", "127.0.0.2", session.client_port, "127.0.0.1", protected_port));
}

// The point of adoption: jitd's rules would drop the session's mid-stream packets as NEW.
TEST_F(SessionAdoptionTest, PreexistingSessionStallsWithoutAdoption) {
  const UniqueFd listener = listen_on("127.0.0.1", protected_port);
  const Connection session = open_connection(listener, "127.0.0.1", "127.0.0.2", protected_port);
  ASSERT_TRUE(delivers(session.client, session.server, "before"));

  install_stateful_rules(protected_port);

  EXPECT_FALSE(delivers(session.client, session.server, "after"));
}

TEST_F(SessionAdoptionTest, AdoptedIpv4SessionKeepsFlowingUnderStatefulRules) {
  const UniqueFd listener = listen_on("127.0.0.1", protected_port);
  const Connection session = open_connection(listener, "127.0.0.1", "127.0.0.2", protected_port);
  ASSERT_TRUE(delivers(session.client, session.server, "before"));
  const auto result = adopt_established_sessions({{Protocol::tcp, protected_port}});
  ASSERT_TRUE(result) << result.error().message;
  ASSERT_EQ(result->adopted, 1U);

  install_stateful_rules(protected_port);

  for (int round = 0; round < 3; ++round) {
    EXPECT_TRUE(delivers(session.client, session.server, "ping " + std::to_string(round)));
    EXPECT_TRUE(delivers(session.server, session.client, "pong " + std::to_string(round)));
  }
  EXPECT_TRUE(transfers(session.client, session.server, 16 << 20));
  EXPECT_TRUE(transfers(session.server, session.client, 16 << 20));
  const UniqueFd fresh = start_connect("127.0.0.2", "127.0.0.1", protected_port);
  EXPECT_FALSE(connected_within(fresh, wait_ms)) << "a new session must not pass";
}

TEST_F(SessionAdoptionTest, AdoptedIpv6SessionKeepsFlowingUnderStatefulRules) {
  const UniqueFd listener = listen_on("::1", protected_port);
  const Connection session = open_connection(listener, "::1", "::1", protected_port);
  const auto result = adopt_established_sessions({{Protocol::tcp, protected_port}});
  ASSERT_TRUE(result) << result.error().message;
  ASSERT_EQ(result->adopted, 1U);

  install_stateful_rules(protected_port);

  EXPECT_TRUE(delivers(session.client, session.server, "ping"));
  EXPECT_TRUE(delivers(session.server, session.client, "pong"));
  EXPECT_TRUE(transfers(session.client, session.server, 16 << 20));
  EXPECT_TRUE(transfers(session.server, session.client, 16 << 20));
  const UniqueFd fresh = start_connect("::1", "::1", protected_port);
  EXPECT_FALSE(connected_within(fresh, wait_ms)) << "a new session must not pass";
}

}  // namespace

int main(int argc, char** argv) { return jitd::test::run_in_private_network_namespace(argc, argv); }
