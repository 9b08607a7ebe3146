// The API socket's life: removed by its owner only while the path still holds it, never under
// socket activation, and a live socket is never taken over.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>

#include "jitd/api/listen_socket.hpp"
#include "state_test_files.hpp"

namespace jitd::api {
namespace {

bool holds_socket(const std::filesystem::path& path) {
  struct stat info {};
  return ::lstat(path.c_str(), &info) == 0 && S_ISSOCK(info.st_mode);
}

// A socket bound at `path` by someone else (a test stands in for systemd or a second jitd).
sys::UniqueFd bound_socket(const std::filesystem::path& path, bool listening) {
  sys::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strcpy(address.sun_path, path.c_str());
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  if (listening) {
    EXPECT_EQ(::listen(fd.get(), 4), 0);
  }
  return fd;
}

TEST(ListenSocket, CreatedSocketIsRemovedByItsOwner) {
  test::TempDir dir;
  const auto path = dir.file("jitd.sock");
  {
    auto made = ListenSocket::create(path, std::nullopt, 0600);
    ASSERT_TRUE(made.has_value()) << made.error().message;
    EXPECT_TRUE(made->created());
    EXPECT_TRUE(holds_socket(path));
    struct stat info {};
    ASSERT_EQ(::stat(path.c_str(), &info), 0);
    EXPECT_EQ(info.st_mode & 0777, 0600u);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(ListenSocket, SocketReplacedAfterBindIsNotRemoved) {
  test::TempDir dir;
  const auto path = dir.file("jitd.sock");
  auto made = ListenSocket::create(path, std::nullopt, 0600);
  ASSERT_TRUE(made.has_value());
  ASSERT_TRUE(std::filesystem::remove(path));
  const auto other = bound_socket(path, false);
  { const ListenSocket gone = std::move(*made); }
  EXPECT_TRUE(holds_socket(path));
}

TEST(ListenSocket, StaleSocketIsReplacedLiveOneIsRefused) {
  test::TempDir dir;
  const auto path = dir.file("jitd.sock");
  { const auto stale = bound_socket(path, true); }  // closed: nobody accepts on it any more
  auto made = ListenSocket::create(path, std::nullopt, 0600);
  ASSERT_TRUE(made.has_value()) << made.error().message;

  const auto second = ListenSocket::create(path, std::nullopt, 0600);
  ASSERT_FALSE(second.has_value());
  EXPECT_NE(second.error().message.find("is in use"), std::string::npos);
  EXPECT_TRUE(holds_socket(path));
}

TEST(ListenSocket, ActivatedSocketIsCheckedAndNeverRemoved) {
  test::TempDir dir;
  const auto path = dir.file("jitd.sock");
  {
    auto adopted = ListenSocket::adopt(bound_socket(path, true));
    ASSERT_TRUE(adopted.has_value()) << adopted.error().message;
    EXPECT_FALSE(adopted->created());
    EXPECT_EQ(adopted->path(), path);
  }
  EXPECT_TRUE(holds_socket(path));

  const auto not_listening = ListenSocket::adopt(bound_socket(dir.file("idle.sock"), false));
  ASSERT_FALSE(not_listening.has_value());
  EXPECT_NE(not_listening.error().message.find("not a listening Unix stream socket"),
            std::string::npos);
}

TEST(ListenSocket, DatagramSocketAtThePathIsNotTakenForStale) {
  test::TempDir dir;
  const auto path = dir.file("jitd.sock");
  sys::UniqueFd datagram(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strcpy(address.sun_path, path.c_str());
  ASSERT_EQ(::bind(datagram.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  const auto made = ListenSocket::create(path, std::nullopt, 0600);
  ASSERT_FALSE(made.has_value());
  EXPECT_NE(made.error().message.find("is in use"), std::string::npos);
  EXPECT_TRUE(holds_socket(path));
}

}  // namespace
}  // namespace jitd::api
