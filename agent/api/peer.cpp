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
    caller.uid = static_cast<std::uint32_t>(-1);
    caller.name = "unknown";
    return caller;  // may_manage stays false: no identity, no rights
  }
  caller.uid = credentials.uid;
  caller.gid = credentials.gid;
  caller.name = user_name(credentials.uid);
  bool in_group = manage_group && credentials.gid == *manage_group;
  if (manage_group && !in_group) {
    const auto groups = peer_groups(fd);
    in_group = groups && std::find(groups->begin(), groups->end(), *manage_group) != groups->end();
  }
  caller.may_manage = credentials.uid == 0 || in_group;
  return caller;
}

}  // namespace jitd::api
