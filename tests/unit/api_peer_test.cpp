// The caller's identity from the kernel's record of the peer (socketpair: the peer is us).
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "jitd/api/peer.hpp"
#include "jitd/sys/unique_fd.hpp"

namespace jitd::api {
namespace {

struct SocketPair {
  sys::UniqueFd ours;
  sys::UniqueFd theirs;
  SocketPair() {
    int ends[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
    ours.reset(ends[0]);
    theirs.reset(ends[1]);
  }
};

std::vector<gid_t> own_groups() {
  std::vector<gid_t> groups(static_cast<std::size_t>(getgroups(0, nullptr)));
  groups.resize(
      static_cast<std::size_t>(getgroups(static_cast<int>(groups.size()), groups.data())));
  std::sort(groups.begin(), groups.end());
  return groups;
}

TEST(PeerTest, GroupsAreThePeersAndSizedFromTheKernelsAnswer) {
  SocketPair pair;
  auto groups = peer_groups(pair.ours.get());
  ASSERT_TRUE(groups.has_value()) << groups.error().message;
  // A buffer of NGROUPS_MAX (65536) ids per request would be 256 KiB for a typical caller.
  EXPECT_EQ(groups->capacity(), groups->size());
  std::sort(groups->begin(), groups->end());
  EXPECT_EQ(*groups, own_groups());
}

TEST(PeerTest, GroupsOfSomethingThatIsNotASocketIsAnError) {
  int ends[2];
  ASSERT_EQ(pipe(ends), 0);
  const sys::UniqueFd read_end(ends[0]);
  const sys::UniqueFd write_end(ends[1]);
  const auto groups = peer_groups(read_end.get());
  ASSERT_FALSE(groups.has_value());
  EXPECT_NE(groups.error().message.find("SO_PEERGROUPS"), std::string::npos);
}

TEST(PeerTest, RootMayManage) {
  if (getuid() != 0) GTEST_SKIP() << "needs uid 0: the peer is this process";
  SocketPair pair;
  const auto caller = identify_peer(pair.ours.get(), std::nullopt);
  EXPECT_EQ(caller.uid, 0u);
  EXPECT_EQ(caller.name, "root");
  EXPECT_TRUE(caller.in_socket_group);
}

TEST(PeerTest, WithoutCredentialsNobodyMayManage) {
  const auto caller = identify_peer(-1, gid_t{0});
  EXPECT_FALSE(caller.in_socket_group);
  EXPECT_EQ(caller.uid, core::unknown_uid);
  EXPECT_EQ(caller.name, "unknown");
}

}  // namespace
}  // namespace jitd::api
