// SessionTerminator against the running kernel. main() first moves the process into a new
// network namespace, so nothing here can touch the host; each test then takes a fresh,
// anonymous one of its own (gone with its last socket, even when the test fails) with a table
// like jitd's: established flows pass, new ones to the protected port only from granted
// sources. Sessions run over loopback between 127.0.0.x addresses (and ::1).
#include "jitd/conntrack/session_cut.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>

#include "jitd/sys/handle.hpp"
#include "jitd/sys/unique_fd.hpp"
#include "kernel_test_support.hpp"
#include "session_test_support.hpp"

namespace {

using jitd::conntrack::SessionTerminator;
using jitd::core::AddressRange;
using jitd::core::CutReport;
using jitd::core::Family;
using jitd::core::PortKey;
using jitd::core::Protocol;
using jitd::core::SessionCut;
using jitd::sys::UniqueFd;
using namespace jitd::test;  // feed, skip_all, address, sockets

constexpr std::uint16_t protected_port = 2222;
constexpr std::uint16_t other_port = 2223;

// What jitd's table does to the protected port, with the grants as two sets.
void install_rules() {
  const std::string port = std::to_string(protected_port);
  const std::string ruleset =
      "table inet cut_test {\n"
      " set granted4 { type ipv4_addr; }\n"
      " set granted6 { type ipv6_addr; }\n"
      " chain input {\n"
      "  type filter hook input priority 0; policy accept;\n"
      "  ct state established,related accept\n"
      "  meta l4proto { tcp, udp } th dport " +
      port + " ip saddr @granted4 accept\n  meta l4proto { tcp, udp } th dport " + port +
      " ip6 saddr @granted6 accept\n  meta l4proto { tcp, udp } th dport " + port +
      " drop\n }\n}\n";
  check(feed("nft -f -", ruleset) == 0, "nft -f -");
}

void grant(const std::string& source) {
  const std::string set = source.find(':') == std::string::npos ? "granted4" : "granted6";
  check(feed("nft -f -", "add element inet cut_test " + set + " { " + source + " }\n") == 0,
        "grant " + source);
}

void end_grant(const std::string& source) {
  const std::string set = source.find(':') == std::string::npos ? "granted4" : "granted6";
  check(feed("nft -f -", "delete element inet cut_test " + set + " { " + source + " }\n") == 0,
        "end grant " + source);
}

AddressRange range(const char* first, const char* last) {
  return AddressRange{std::strchr(first, ':') ? Family::ipv6 : Family::ipv4, address(first),
                      address(last)};
}
AddressRange single(const char* text) { return range(text, text); }

// One conntrack entry's original tuple, read back through libnetfilter_conntrack.
struct Flow {
  Protocol protocol;
  std::string source;
  std::uint16_t source_port;
  std::uint16_t destination_port;
};

int on_entry(nf_conntrack_msg_type /*type*/, nf_conntrack* entry, void* data) {
  std::array<char, INET6_ADDRSTRLEN> text{};
  const auto family = nfct_get_attr_u8(entry, ATTR_ORIG_L3PROTO);
  inet_ntop(family,
            nfct_get_attr(entry, family == AF_INET ? ATTR_ORIG_IPV4_SRC : ATTR_ORIG_IPV6_SRC),
            text.data(), text.size());
  static_cast<std::vector<Flow>*>(data)->push_back(
      Flow{static_cast<Protocol>(nfct_get_attr_u8(entry, ATTR_ORIG_L4PROTO)), text.data(),
           ntohs(nfct_get_attr_u16(entry, ATTR_ORIG_PORT_SRC)),
           ntohs(nfct_get_attr_u16(entry, ATTR_ORIG_PORT_DST))});
  return NFCT_CB_CONTINUE;
}

std::vector<Flow> flows() {
  const jitd::sys::Handle<nfct_handle, nfct_close> handle(nfct_open(CONNTRACK, 0));
  check(handle != nullptr, "nfct_open");
  std::vector<Flow> result;
  check(nfct_callback_register(handle.get(), NFCT_T_ALL, on_entry, &result) == 0,
        "nfct_callback_register");
  std::uint32_t family = AF_UNSPEC;
  check(nfct_query(handle.get(), NFCT_Q_DUMP, &family) == 0, "dump conntrack");
  return result;
}

bool tracked(Protocol protocol, const std::string& source, std::uint16_t source_port,
             std::uint16_t destination_port) {
  for (const Flow& flow : flows()) {
    if (flow.protocol == protocol && flow.source == source && flow.source_port == source_port &&
        flow.destination_port == destination_port) {
      return true;
    }
  }
  return false;
}

// What a read on `socket` reports within wait_ms: its errno, 0 at end of stream, or -1 when
// nothing happened (no data, no error).
int read_outcome(const UniqueFd& socket) {
  pollfd entry{socket.get(), POLLIN, 0};
  if (poll(&entry, 1, wait_ms) != 1) return -1;
  char byte = 0;
  const ssize_t count = recv(socket.get(), &byte, 1, 0);
  if (count < 0) return errno;
  return count == 0 ? 0 : -1;
}

// The server's socket was destroyed (ECONNABORTED) and the client got its RST (ECONNRESET).
testing::AssertionResult aborted(const Connection& session) {
  const int server = read_outcome(session.server);
  const int client = read_outcome(session.client);
  if (server == ECONNABORTED && client == ECONNRESET) return testing::AssertionSuccess();
  return testing::AssertionFailure()
         << "server read: " << server << " (" << std::strerror(server)
         << "), client read: " << client << " (" << std::strerror(client) << ")";
}

testing::AssertionResult alive(const Connection& session) {
  if (delivers(session.client, session.server, "ping") &&
      delivers(session.server, session.client, "pong")) {
    return testing::AssertionSuccess();
  }
  return testing::AssertionFailure() << "the session no longer passes data";
}

// A UDP "session": the client's socket connected to the server's, one exchange each way so
// conntrack has seen the reply.
struct Datagrams {
  UniqueFd server;
  UniqueFd client;
  std::uint16_t client_port = 0;
};

Datagrams open_datagrams(const std::string& server_address, const std::string& client_address,
                         std::uint16_t port) {
  const Address at = make_address(server_address, port);
  const Address from = make_address(client_address, 0);
  Datagrams flow;
  flow.server = UniqueFd(socket(at.family(), SOCK_DGRAM | SOCK_NONBLOCK, 0));
  flow.client = UniqueFd(socket(at.family(), SOCK_DGRAM | SOCK_NONBLOCK, 0));
  check(flow.server && flow.client, "udp sockets");
  check(bind(flow.server.get(), at.get(), at.length) == 0, "bind udp server");
  check(bind(flow.client.get(), from.get(), from.length) == 0, "bind udp client");
  check(connect(flow.client.get(), at.get(), at.length) == 0, "connect udp client");
  flow.client_port = local_port(flow.client);
  check(send(flow.client.get(), "hello", 5, 0) == 5, "send udp");
  pollfd entry{flow.server.get(), POLLIN, 0};
  check(poll(&entry, 1, wait_ms) == 1, "udp datagram arrives");
  std::array<char, 16> buffer{};
  sockaddr_storage peer{};
  socklen_t length = sizeof peer;
  check(recvfrom(flow.server.get(), buffer.data(), buffer.size(), 0,
                 reinterpret_cast<sockaddr*>(&peer), &length) == 5,
        "recvfrom");
  check(sendto(flow.server.get(), "hi", 2, 0, reinterpret_cast<sockaddr*>(&peer), length) == 2,
        "sendto");
  entry = pollfd{flow.client.get(), POLLIN, 0};
  check(poll(&entry, 1, wait_ms) == 1, "udp reply arrives");
  check(recv(flow.client.get(), buffer.data(), buffer.size(), 0) == 2, "recv reply");
  return flow;
}

bool datagram_arrives(const Datagrams& flow) {
  check(send(flow.client.get(), "again", 5, 0) == 5, "send udp");
  pollfd entry{flow.server.get(), POLLIN, 0};
  return poll(&entry, 1, wait_ms) == 1;
}

class SessionCutTest : public testing::Test {
 protected:
  void SetUp() override {
    if (skip_all()) GTEST_SKIP() << "no private network namespace (needs root or CAP_SYS_ADMIN)";
    ASSERT_EQ(unshare(CLONE_NEWNET), 0) << std::strerror(errno);
    bring_loopback_up();
    install_rules();
  }

  // Sockets destroyed when the kernel can; without CONFIG_INET_DIAG_DESTROY the report says
  // so and the flow's next packet must be dropped instead.
  static void expect_cut(const CutReport& report, const Connection& session) {
    if (report.sockets_unsupported) {
      EXPECT_EQ(report.sockets, 0U);
      EXPECT_FALSE(delivers(session.client, session.server, "after the cut"));
    } else {
      EXPECT_EQ(report.sockets, 1U);
      EXPECT_TRUE(aborted(session));
    }
  }

  SessionTerminator terminator;
};

TEST_F(SessionCutTest, CutsIpv4TcpSession) {
  grant("127.0.0.2");
  const UniqueFd listener = listen_on("127.0.0.1", protected_port);
  const Connection session = open_connection(listener, "127.0.0.1", "127.0.0.2", protected_port);
  ASSERT_TRUE(alive(session));
  ASSERT_TRUE(tracked(Protocol::tcp, "127.0.0.2", session.client_port, protected_port));
  end_grant("127.0.0.2");

  const auto report =
      terminator.cut({SessionCut{{Protocol::tcp, protected_port}, {single("127.0.0.2")}, {}}});

  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->flows, 1U);
  EXPECT_EQ(report->failed, 0U) << report->first_error;
  EXPECT_FALSE(tracked(Protocol::tcp, "127.0.0.2", session.client_port, protected_port));
  expect_cut(*report, session);
}

TEST_F(SessionCutTest, SparesSessionsFromKeptSources) {
  grant("127.0.0.2");
  grant("127.0.0.3");
  const UniqueFd listener = listen_on("127.0.0.1", protected_port);
  const Connection cut = open_connection(listener, "127.0.0.1", "127.0.0.2", protected_port);
  const Connection kept = open_connection(listener, "127.0.0.1", "127.0.0.3", protected_port);
  end_grant("127.0.0.2");

  // The ended grant covered 127.0.0.0/8; another still admits 127.0.0.3.
  const auto report = terminator.cut({SessionCut{{Protocol::tcp, protected_port},
                                                 {range("127.0.0.0", "127.255.255.255")},
                                                 {single("127.0.0.3")}}});

  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->flows, 1U);
  EXPECT_EQ(report->failed, 0U) << report->first_error;
  EXPECT_FALSE(tracked(Protocol::tcp, "127.0.0.2", cut.client_port, protected_port));
  expect_cut(*report, cut);
  EXPECT_TRUE(tracked(Protocol::tcp, "127.0.0.3", kept.client_port, protected_port));
  EXPECT_TRUE(alive(kept));
}

TEST_F(SessionCutTest, LeavesOtherPortsAndProtocolsAlone) {
  grant("127.0.0.2");
  const UniqueFd listener = listen_on("127.0.0.1", protected_port);
  const Connection cut = open_connection(listener, "127.0.0.1", "127.0.0.2", protected_port);
  const UniqueFd other_listener = listen_on("127.0.0.1", other_port);
  const Connection other = open_connection(other_listener, "127.0.0.1", "127.0.0.2", other_port);
  const Datagrams udp = open_datagrams("127.0.0.1", "127.0.0.2", protected_port);

  const auto report =
      terminator.cut({SessionCut{{Protocol::tcp, protected_port}, {single("127.0.0.2")}, {}}});

  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->flows, 1U);
  expect_cut(*report, cut);
  EXPECT_TRUE(tracked(Protocol::tcp, "127.0.0.2", other.client_port, other_port));
  EXPECT_TRUE(alive(other));
  EXPECT_TRUE(tracked(Protocol::udp, "127.0.0.2", udp.client_port, protected_port));
  EXPECT_TRUE(datagram_arrives(udp));
}

TEST_F(SessionCutTest, CutsIpv6TcpSession) {
  grant("::1");
  const UniqueFd listener = listen_on("::1", protected_port);
  const Connection session = open_connection(listener, "::1", "::1", protected_port);
  ASSERT_TRUE(alive(session));
  end_grant("::1");

  // An IPv4 range of the same numbers must not match an IPv6 peer.
  const auto report = terminator.cut(
      {SessionCut{{Protocol::tcp, protected_port}, {single("0.0.0.1"), single("::1")}, {}}});

  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->flows, 1U);
  EXPECT_EQ(report->failed, 0U) << report->first_error;
  EXPECT_FALSE(tracked(Protocol::tcp, "::1", session.client_port, protected_port));
  expect_cut(*report, session);
}

TEST_F(SessionCutTest, CutsIpv4PeerOfDualStackListener) {
  grant("127.0.0.2");
  const UniqueFd listener = listen_on("::", protected_port);
  const Connection session = open_connection(listener, "127.0.0.1", "127.0.0.2", protected_port);
  end_grant("127.0.0.2");

  const auto report =
      terminator.cut({SessionCut{{Protocol::tcp, protected_port}, {single("127.0.0.2")}, {}}});

  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->flows, 1U);
  EXPECT_EQ(report->failed, 0U) << report->first_error;
  EXPECT_FALSE(tracked(Protocol::tcp, "127.0.0.2", session.client_port, protected_port));
  expect_cut(*report, session);
}

TEST_F(SessionCutTest, CutsUdpFlowSoItsNextDatagramIsDropped) {
  grant("127.0.0.2");
  const Datagrams flow = open_datagrams("127.0.0.1", "127.0.0.2", protected_port);
  ASSERT_TRUE(tracked(Protocol::udp, "127.0.0.2", flow.client_port, protected_port));
  end_grant("127.0.0.2");
  ASSERT_TRUE(datagram_arrives(flow)) << "the established flow outlives its grant until cut";
  std::array<char, 16> buffer{};
  ASSERT_EQ(recv(flow.server.get(), buffer.data(), buffer.size(), 0), 5);

  const auto report =
      terminator.cut({SessionCut{{Protocol::udp, protected_port}, {single("127.0.0.2")}, {}}});

  ASSERT_TRUE(report) << report.error().message;
  EXPECT_EQ(report->flows, 1U);
  EXPECT_EQ(report->sockets, 0U);
  EXPECT_EQ(report->failed, 0U) << report->first_error;
  EXPECT_FALSE(tracked(Protocol::udp, "127.0.0.2", flow.client_port, protected_port));
  EXPECT_FALSE(datagram_arrives(flow));
}

TEST_F(SessionCutTest, NothingToCutChangesNothing) {
  grant("127.0.0.2");
  const UniqueFd listener = listen_on("127.0.0.1", protected_port);
  const Connection session = open_connection(listener, "127.0.0.1", "127.0.0.2", protected_port);

  for (const auto& cuts : {std::vector<SessionCut>{},
                           std::vector<SessionCut>{{{Protocol::tcp, protected_port}, {}, {}}},
                           std::vector<SessionCut>{{{Protocol::tcp, protected_port},
                                                    {single("127.0.0.2")},
                                                    {range("127.0.0.0", "127.0.0.255")}}}}) {
    const auto report = terminator.cut(cuts);
    ASSERT_TRUE(report) << report.error().message;
    EXPECT_EQ(report->flows, 0U);
    EXPECT_EQ(report->sockets, 0U);
    EXPECT_FALSE(report->sockets_unsupported);
  }
  EXPECT_TRUE(tracked(Protocol::tcp, "127.0.0.2", session.client_port, protected_port));
  EXPECT_TRUE(alive(session));
}

}  // namespace

int main(int argc, char** argv) { return jitd::test::run_in_private_network_namespace(argc, argv); }
