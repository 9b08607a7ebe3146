// The HTTP server over a real Unix socket, driven the way the daemon's loop drives it:
// run() until the client has its answer. No thread, no kernel enforcement involved.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "fake_backend.hpp"
#include "jitd/api/router.hpp"
#include "jitd/api/server.hpp"
#include "jitd/sys/unique_fd.hpp"
#include "state_test_files.hpp"

namespace jitd::api {
namespace {

class ServerTest : public ::testing::Test {
 protected:
  core::FakeClock clock{core::TimePoint{std::chrono::hours(24 * 20000)}};
  test::FakeBackend backend{clock};
  test::FakeJournal journal;
  test::RecordingAudit audit;
  core::AccessEngine engine{backend, journal, audit, clock, [] { return std::string("g1"); },
                            core::Policy{}};
  Router router{engine, clock, [](const core::Caller&) { return ReloadOutcome{}; }};
  test::TempDir dir;
  std::unique_ptr<Server> server;

  void SetUp() override {
    auto started = Server::start(ServerOptions{dir.file("jitd.sock"), std::nullopt}, router);
    ASSERT_TRUE(started.has_value()) << started.error().message;
    server = std::move(*started);
  }

  // Sends `request` on a new connection and runs the server until the reply is complete.
  std::string exchange(const std::string& request) {
    sys::UniqueFd client(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const auto path = dir.file("jitd.sock").string();
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    EXPECT_EQ(connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    EXPECT_EQ(send(client.get(), request.data(), request.size(), 0),
              static_cast<ssize_t>(request.size()));
    std::string reply;
    for (int round = 0; round < 500; ++round) {
      server->run();
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
  for (const char* path : {"/%ff", "/v1/grants/%ff%fe"}) {
    const auto method = std::string(path) == "/%ff" ? "GET " : "DELETE ";
    const auto reply = exchange(method + std::string(path) +
                                " HTTP/1.1\r\nHost: jitd\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(reply.rfind("HTTP/1.1 ", 0), 0u) << reply;
    EXPECT_NE(reply.find(" 404 "), std::string::npos) << reply;
  }
  const auto listed = exchange("GET /v1/grants HTTP/1.1\r\nHost: jitd\r\nConnection: close\r\n\r\n");
  EXPECT_NE(listed.find(" 200 "), std::string::npos) << listed;
  EXPECT_NE(listed.find(R"({"grants":[]})"), std::string::npos) << listed;
}

TEST_F(ServerTest, NextRunIsDueWhileAConnectionWaits) {
  // A connection that has sent half a request keeps a timeout pending in libmicrohttpd: the
  // loop's timer must be armed for it, or a stalled client would never be timed out.
  sys::UniqueFd client(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const auto path = dir.file("jitd.sock").string();
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(send(client.get(), "GET /v1/gr", 10, 0), 10);
  for (int round = 0; round < 5; ++round) server->run();
  const auto next = server->next_run();
  ASSERT_TRUE(next.has_value());
  EXPECT_GT(*next, std::chrono::seconds(1));
  EXPECT_LE(*next, std::chrono::seconds(10));
}

}  // namespace
}  // namespace jitd::api
