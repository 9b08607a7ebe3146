#include "jitd/api/peer.hpp"

#include <pwd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "jitd/sys/system_error.hpp"

namespace jitd::api {

namespace {

std::string user_name(uid_t uid) {
  std::vector<char> buffer(4096);
  passwd entry{};
  passwd* found = nullptr;
  if (getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found != nullptr) {
    return found->pw_name;
  }
  return "uid" + std::to_string(uid);
}

}  // namespace

core::Result<std::vector<gid_t>> peer_groups(int fd) {
  std::vector<gid_t> groups;
  // Asking with no room makes the kernel say how much it needs (ERANGE); a caller may belong
  // to 65536 groups, but most belong to a handful.
  socklen_t size = 0;
  for (;;) {
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &size) == 0) {
      groups.resize(size / sizeof(gid_t));
      return groups;
    }
    if (errno != ERANGE || size <= groups.size() * sizeof(gid_t)) {
      return sys::fail_system(core::ErrorCode::io, "read peer groups (SO_PEERGROUPS)", errno);
    }
    groups.resize(size / sizeof(gid_t));
  }
}

core::Caller identify_peer(int fd, const std::optional<gid_t>& manage_group) {
  core::Caller caller;
  ucred credentials{};
  socklen_t length = sizeof credentials;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) {
    caller.uid = core::unknown_uid;
    caller.name = "unknown";
    return caller;  // no identity: outside every role
  }
  caller.uid = credentials.uid;
  caller.gid = credentials.gid;
  caller.name = user_name(credentials.uid);
  if (auto groups = peer_groups(fd)) {
    caller.groups.assign(groups->begin(), groups->end());
  }
  caller.in_socket_group = credentials.uid == 0 ||
                           (manage_group && (credentials.gid == *manage_group ||
                                             std::find(caller.groups.begin(), caller.groups.end(),
                                                       *manage_group) != caller.groups.end()));
  return caller;
}

}  // namespace jitd::api
