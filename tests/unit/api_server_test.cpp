// The HTTP server over a real Unix socket, driven the way the daemon's loop drives it:
// run() until the client has its answer. No thread, no kernel enforcement involved.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fake_backend.hpp"
#include "jitd/api/router.hpp"
#include "jitd/api/server.hpp"
#include "jitd/sys/unique_fd.hpp"
#include "state_test_files.hpp"

namespace jitd::api {
namespace {

class ServerTest : public ::testing::Test, protected test::FakeEngine {
 protected:
  Router router{engine, clock, [](const core::Caller&) { return ReloadOutcome{}; }};
  test::TempDir dir;
  std::unique_ptr<Server> server;
  // Every answered request, as the daemon's metrics see them: "POST /v1/grants 201".
  std::vector<std::string> observed;
  RequestObserver observe = [this](std::string_view method, std::string_view path, unsigned status,
                                   std::chrono::nanoseconds took) {
    EXPECT_GE(took.count(), 0);
    observed.push_back(std::string(method) + " " + std::string(path) + " " +
                       std::to_string(status));
  };

  void SetUp() override { restart(ServerLimits{}); }

  // One turn of the daemon's loop: the server's run with the engine's group commit.
  void serve() {
    server->run([this] { engine.commit(); });
  }

  void restart(const ServerLimits& limits) {
    server.reset();
    auto listener = ListenSocket::create(dir.file("jitd.sock"), std::nullopt, 0600);
    ASSERT_TRUE(listener.has_value()) << listener.error().message;
    auto started =
        Server::start(ServerOptions{dir.file("jitd.sock"), std::nullopt, limits, observe}, router,
                      std::move(*listener));
    ASSERT_TRUE(started.has_value()) << started.error().message;
    server = std::move(*started);
  }

  sys::UniqueFd connect_client() {
    sys::UniqueFd client(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const auto path = dir.file("jitd.sock").string();
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    EXPECT_EQ(connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    return client;
  }

  // Runs the server for up to `rounds` x 2 ms; whether the server closed `client` (EOF).
  bool closed_by_server(int client, int rounds) {
    for (int round = 0; round < rounds; ++round) {
      serve();
      pollfd readable{client, POLLIN, 0};
      if (poll(&readable, 1, 2) <= 0) continue;
      char buffer[4096];
      if (recv(client, buffer, sizeof buffer, MSG_DONTWAIT) == 0) return true;
    }
    return false;
  }

  // Sends `request` on a new connection and runs the server until the reply is complete.
  std::string exchange(const std::string& request) {
    const auto client = connect_client();
    EXPECT_EQ(send(client.get(), request.data(), request.size(), 0),
              static_cast<ssize_t>(request.size()));
    std::string reply;
    for (int round = 0; round < 500; ++round) {
      serve();
      pollfd readable{client.get(), POLLIN, 0};
      if (poll(&readable, 1, 2) <= 0) continue;
      char buffer[4096];
      const auto got = recv(client.get(), buffer, sizeof buffer, 0);
      if (got <= 0) break;
      reply.append(buffer, static_cast<std::size_t>(got));
    }
    return reply;
  }
};

TEST_F(ServerTest, PathThatIsNotUtf8IsAnsweredAndTheServerGoesOn) {
  // No route for the first; the second is not a grant id.
  for (const auto& [request, status] :
       {std::pair{"GET /%ff", " 404 "}, std::pair{"DELETE /v1/grants/%ff%fe", " 400 "}}) {
    const auto reply =
        exchange(std::string(request) + " HTTP/1.1\r\nHost: jitd\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(reply.rfind("HTTP/1.1 ", 0), 0u) << reply;
    EXPECT_NE(reply.find(status), std::string::npos) << reply;
  }
  const auto listed =
      exchange("GET /v1/grants HTTP/1.1\r\nHost: jitd\r\nConnection: close\r\n\r\n");
  EXPECT_NE(listed.find(" 200 "), std::string::npos) << listed;
  EXPECT_NE(listed.find(R"({"grants":[]})"), std::string::npos) << listed;
}

TEST_F(ServerTest, NulInPathIsNeverServedAsTheTruncatedRoute) {
  using namespace std::string_literals;
  for (const auto* path : {"/v1/grants%00/x", "/v1/grants%00", "/v1/policy%00%2freload"}) {
    const auto request = "GET "s + path + " HTTP/1.1\r\nHost: jitd\r\nConnection: close\r\n\r\n";
    const auto reply = exchange(request);
    EXPECT_EQ(reply.rfind("HTTP/1.1 4", 0), 0u) << request << reply;
    EXPECT_EQ(reply.find("\"grants\""), std::string::npos) << reply;
    EXPECT_EQ(reply.find("\"ports\""), std::string::npos) << reply;
  }
}

TEST_F(ServerTest, EveryAnswerIsObservedAGrantAfterItsCommit) {
  core::PortRule ssh;
  ssh.port = {22, core::ProtocolSpec::tcp};
  ssh.any_source = true;
  ssh.max_duration = std::chrono::hours(1);
  core::Policy policy;
  policy.rules = {ssh};
  ASSERT_TRUE(engine.replace_policy(policy));
  const std::string body =
      R"({"ports":[{"number":22}],"allowedSourceAddressPrefix":"203.0.113.7","duration":"PT5M",)"
      R"("justification":"INC-1"})";
  exchange("POST /v1/grants HTTP/1.1\r\nHost: jitd\r\nConnection: close\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body);
  exchange("GET /v1/grants?limit=1 HTTP/1.1\r\nHost: jitd\r\nConnection: close\r\n\r\n");
  exchange("GET /nowhere HTTP/1.1\r\nHost: jitd\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(observed, (std::vector<std::string>{"POST /v1/grants 201", "GET /v1/grants 200",
                                                "GET /nowhere 404"}));
}

TEST_F(ServerTest, AResponseCarriesItsOwnContentType) {
  router.set_metrics_reader([] {
    return Response{200, "a_total 1\n", "text/plain; version=0.0.4"};
  });
  const auto reply = exchange("GET /metrics HTTP/1.1\r\nHost: jitd\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(reply.rfind("HTTP/1.1 200 ", 0), 0u) << reply;
  EXPECT_NE(reply.find("Content-Type: text/plain; version=0.0.4\r\n"), std::string::npos) << reply;
  // The text as given: no second line break after its own.
  EXPECT_TRUE(reply.ends_with("\r\n\r\na_total 1\n")) << reply;
}

TEST_F(ServerTest, TwoContentLengthHeadersAreRefused) {
  for (const auto* lengths :
       {"Content-Length: 0\r\nContent-Length: 0\r\n", "Content-Length: 2\r\nContent-Length: 0\r\n",
        "Content-Length: 0\r\ncontent-length: 2\r\n"}) {
    const auto reply = exchange(std::string("GET /v1/grants HTTP/1.1\r\nHost: jitd\r\n") + lengths +
                                "Connection: close\r\n\r\n{}");
    EXPECT_EQ(reply.rfind("HTTP/1.1 400 ", 0), 0u) << lengths << reply;
  }
}

// Logs to a string while alive, at debug level; the previous logger comes back after.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>(
        "captured", std::make_shared<spdlog::sinks::ostream_sink_st>(lines_));
    logger->set_level(spdlog::level::debug);
    logger->set_pattern("%v");
    spdlog::set_default_logger(logger);
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::string text() const { return lines_.str(); }

 private:
  std::ostringstream lines_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST_F(ServerTest, PathCannotForgeALogLineOrReachTheTerminal) {
  CapturedLog log;
  exchange(
      "GET /v1/grants%0a%5binfo%5d%20forged%1b%5b2J%c2%9b HTTP/1.1\r\nHost: jitd\r\n"
      "Connection: close\r\n\r\n");
  const auto text = log.text();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  EXPECT_EQ(text.find("\xc2\x9b"), std::string::npos) << text;
  EXPECT_NE(text.find("/v1/grants\\n[info] forged\\x1b[2J\\u009b"), std::string::npos) << text;
}

TEST_F(ServerTest, NextRunIsDueWhileAConnectionWaits) {
  // A connection that has sent half a request keeps a timeout pending in libmicrohttpd: the
  // loop's timer must be armed for it, or a stalled client would never be timed out.
  const auto client = connect_client();
  ASSERT_EQ(send(client.get(), "GET /v1/gr", 10, 0), 10);
  for (int round = 0; round < 5; ++round) serve();
  const auto next = server->next_run();
  ASSERT_TRUE(next.has_value());
  EXPECT_GT(*next, std::chrono::seconds(1));
  EXPECT_LE(*next, std::chrono::seconds(10));
}

// Regression (issue 7, #6): a thousand connections of one user locked everyone else out.
TEST_F(ServerTest, ConnectionOverTheCapOfItsUidIsClosedAtOnceAndItsSlotComesBack) {
  restart(ServerLimits{.connections = 8, .connections_per_uid = 2});
  std::vector<sys::UniqueFd> held;
  for (int i = 0; i < 2; ++i) held.push_back(connect_client());
  EXPECT_FALSE(closed_by_server(held[0].get(), 10));
  const auto over = connect_client();
  EXPECT_TRUE(closed_by_server(over.get(), 100)) << "a third connection of one uid was kept";
  EXPECT_FALSE(closed_by_server(held[1].get(), 1));
  held.pop_back();  // its close frees the slot for the next connection of the same uid
  for (int round = 0; round < 10; ++round) serve();
  const auto listed =
      exchange("GET /v1/grants HTTP/1.1\r\nHost: jitd\r\nConnection: close\r\n\r\n");
  EXPECT_NE(listed.find(" 200 "), std::string::npos) << listed;
}

TEST_F(ServerTest, ConnectionThatDripsIsClosedAtItsDeadline) {
  // Every byte restarts libmicrohttpd's inactivity timeout; only the deadline ends this one.
  restart(ServerLimits{.connection_deadline = std::chrono::milliseconds(300)});
  const auto client = connect_client();
  const auto started = std::chrono::steady_clock::now();
  const std::string request = "GET /v1/grants HTTP/1.1\r\nX-Drip: aaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  bool closed = false;
  for (std::size_t sent = 0; sent < request.size() && !closed; ++sent) {
    send(client.get(), &request[sent], 1, MSG_NOSIGNAL);
    serve();
    const auto next = server->next_run();
    if (!next) {
      // This run found the deadline passed and closed the connection: no timer is needed.
      closed = closed_by_server(client.get(), 1);
      ASSERT_TRUE(closed) << "no timer armed for a connection that is still open";
      break;
    }
    ASSERT_LE(*next, std::chrono::milliseconds(300));  // the loop's timer is armed for it
    closed = closed_by_server(client.get(), 25);       // about 50 ms between bytes
  }
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_TRUE(closed) << "a dripping connection outlived its deadline";
  EXPECT_GE(took, std::chrono::milliseconds(300));
  EXPECT_LT(took, std::chrono::milliseconds(1000));
}

TEST_F(ServerTest, KeptAliveConnectionGetsADeadlinePerRequest) {
  // A client that keeps its connection for many quick requests (jitctl in a script, the
  // benchmark) is not cut off by the time since accept.
  restart(ServerLimits{.connection_deadline = std::chrono::milliseconds(300)});
  const auto client = connect_client();
  const auto started = std::chrono::steady_clock::now();
  int answered = 0;
  while (std::chrono::steady_clock::now() - started < std::chrono::milliseconds(900)) {
    const std::string request = "GET /v1/grants HTTP/1.1\r\nHost: jitd\r\n\r\n";
    ASSERT_EQ(send(client.get(), request.data(), request.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(request.size()))
        << "the connection was closed after " << answered << " requests";
    std::string reply;
    for (int round = 0; round < 200 && reply.find(R"({"grants":[]})") == std::string::npos;
         ++round) {
      serve();
      pollfd readable{client.get(), POLLIN, 0};
      if (poll(&readable, 1, 2) <= 0) continue;
      char buffer[4096];
      const auto got = recv(client.get(), buffer, sizeof buffer, 0);
      ASSERT_GT(got, 0) << "closed after " << answered << " requests";
      reply.append(buffer, static_cast<std::size_t>(got));
    }
    ASSERT_NE(reply.find(" 200 "), std::string::npos) << reply;
    ++answered;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GT(answered, 5);
}

TEST_F(ServerTest, RequestHeadOverTheMemoryLimitIsRefused) {
  const auto reply =
      exchange("GET /v1/grants HTTP/1.1\r\nHost: jitd\r\nX-Big: " + std::string(20 * 1024, 'a') +
               "\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(reply.rfind("HTTP/1.1 431 ", 0), 0u) << reply.substr(0, 200);
}

// Requests read in one run share one journal sync and one kernel transaction, and each is
// answered with its own grant.
TEST_F(ServerTest, GrantsReadInOneRunShareOneSyncAndOneTransaction) {
  core::Policy policy;
  core::PortRule ssh;
  ssh.port = {22, core::ProtocolSpec::tcp};
  ssh.any_source = true;
  ssh.max_duration = std::chrono::hours(1);
  policy.rules = {ssh};
  ASSERT_TRUE(engine.replace_policy(policy).has_value());
  const auto syncs_before = journal.syncs;
  const auto applies_before = backend.applies.size();

  constexpr int clients = 4;
  std::vector<sys::UniqueFd> connections;
  for (int i = 0; i < clients; ++i) {
    connections.push_back(connect_client());
    const std::string body = R"({"allowedSourceAddressPrefix":"10.0.0.)" +
                             std::to_string(2 * i + 1) +
                             R"(","ports":[{"number":22,"protocol":"TCP"}],"duration":"PT10M"})";
    const std::string request =
        "POST /v1/grants HTTP/1.1\r\nHost: jitd\r\nConnection: close\r\n"
        "Content-Type: application/json\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    ASSERT_EQ(send(connections.back().get(), request.data(), request.size(), 0),
              static_cast<ssize_t>(request.size()));
  }
  std::vector<std::string> replies(clients);
  for (int round = 0; round < 500; ++round) {
    serve();
    bool all_closed = true;
    for (int i = 0; i < clients; ++i) {
      char buffer[4096];
      const auto got = recv(connections[i].get(), buffer, sizeof buffer, MSG_DONTWAIT);
      if (got > 0) replies[i].append(buffer, static_cast<std::size_t>(got));
      if (got != 0) all_closed = false;
    }
    if (all_closed) break;
    poll(nullptr, 0, 2);
  }
  for (const auto& reply : replies) {
    EXPECT_EQ(reply.rfind("HTTP/1.1 201 ", 0), 0u) << reply;
  }
  EXPECT_EQ(journal.syncs - syncs_before, 1u);
  ASSERT_EQ(backend.applies.size() - applies_before, 1u);
  EXPECT_EQ(backend.applies.back().add.size(), static_cast<std::size_t>(clients));
  EXPECT_EQ(engine.active_grants().size(), static_cast<std::size_t>(clients));
}

}  // namespace
}  // namespace jitd::api
